"""The neural-tangents side of ``ntk_bench.py``: the same network in ``stax``, its empirical NTK by
neural-tangents' structured derivatives, timed, with its peak memory.

Runs in ``.venv-nt`` (``scripts/setup_nt_venv.sh``: jax 0.4.25, neural-tangents 0.6.5), never in the
project's environment, and imports nothing from ``inrlib``: ``ntk_bench.py`` writes the network's
weights and points to an ``.npz`` file, this script rebuilds the network from them:

- the MLP is ``stax.serial`` of ``stax.Dense(n, W_std=1, b_std=beta, parameterization='ntk')``
  (``z = W a / sqrt(n_in) + beta b``, our ``Dense`` in NTK parameterization; stax stores ``W`` as
  ``(n_in, n_out)``, the transpose of torch's) and ``stax.Relu()``, no output activation (the 2D
  image models have none; the 3D occupancy model is out of reach for Jacobian methods anyway);
- the encoding is a custom stax layer (an ``(init_fn, apply_fn, kernel_fn)`` triple) written in
  JAX: identity, the axis-aligned Fourier features in ``inrlib``'s feature order, or the multigrid
  encoding (bilinear interpolation of a dense grid gathered at the four corners of each point's cell),
  whose grid values are parameters. neural-tangents has no structure rule for the gather, so it
  differentiates that part through the plain Jacobian.

Prints one line ``RESULT {json}`` (times, peak memory, and, with ``--check``, the relative Frobenius
difference to the kernel ``ntk_bench.py`` stored in the file).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procmem import peak_rss_mb, rss_mb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help=".npz written by ntk_bench.py")
    ap.add_argument("--n", type=int, required=True, help="points (the first n rows of x)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--x64", action="store_true", help="float64 (jax_enable_x64); default float32")
    ap.add_argument("--check", action="store_true", help="compare with the stored kernel instead of timing")
    ap.add_argument("--vmap-axes", choices=["0", "none"], default="0",
                    help="neural-tangents' vmap_axes: 0 declares the batch axis (its fastest setting), "
                         "none is its default")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="stop repeating once one run took longer than this")
    args = ap.parse_args()

    import jax
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np
    from neural_tangents import stax

    dtype = jnp.float64 if args.x64 else jnp.float32
    data = np.load(args.weights, allow_pickle=False)
    cfg = json.loads(str(data["config"]))
    enc = cfg["encoding"]
    x = jnp.asarray(data["x"][: args.n], dtype=dtype)

    # -- the encoding as a custom stax layer -------------------------------------------------
    def no_kernel(*a, **k):                       # only the empirical NTK is used here
        raise NotImplementedError("no infinite-width kernel for this layer")

    dim = int(enc["dim"])
    if enc["type"] == "identity":
        enc_params = ()

        def enc_apply(params, inputs, **kwargs):
            return inputs
        enc_width = dim
    elif enc["type"] == "fourier":
        levels, include = int(enc["levels"]), bool(enc.get("include_input", True))
        enc_params = ()

        def enc_apply(params, inputs, **kwargs):
            freqs = jnp.pi * 2.0 ** jnp.arange(levels, dtype=inputs.dtype)
            ang = inputs[:, None, :] * freqs[None, :, None]                       # (N, L, d)
            feats = jnp.stack([jnp.sin(ang), jnp.cos(ang)], axis=2).reshape(inputs.shape[0], -1)
            return jnp.concatenate([feats, inputs], axis=1) if include else feats
        enc_width = 2 * dim * levels + (dim if include else 0)
    elif enc["type"] == "multigrid":
        res = [int(r) for r in enc["resolutions"]]
        k = int(enc["features"])
        include = bool(enc.get("include_input", True))
        enc_params = tuple(jnp.asarray(data[f"table{i}"], dtype=dtype) for i in range(len(res)))
        corners = np.array([[(c >> a) & 1 for a in range(dim)] for c in range(2 ** dim)])   # (2^d, d)

        def enc_apply(params, inputs, **kwargs):
            parts = []
            for r, table in zip(res, params):
                t = inputs * (r - 1)
                cell = jnp.clip(jnp.floor(jax.lax.stop_gradient(t)), 0, r - 2)
                frac = t - cell
                node = cell.astype(jnp.int32)[:, None, :] + corners[None]           # (N, 2^d, d)
                rows = (node * (r ** np.arange(dim))[None, None, :]).sum(-1)        # (N, 2^d)
                w = jnp.where(corners[None].astype(bool), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)
                parts.append((table[rows] * w[..., None]).sum(1))                  # gather + weights
            if include:
                parts.append(inputs)
            return jnp.concatenate(parts, axis=1)
        enc_width = len(res) * k + (dim if include else 0)
    else:
        raise SystemExit(f"nt_reference: no JAX version of encoding {enc['type']!r}")

    def enc_init(rng, input_shape):
        return input_shape[:-1] + (enc_width,), enc_params

    encoding_layer = (enc_init, enc_apply, no_kernel)

    # -- the MLP in stax, NTK parameterization -----------------------------------------------
    beta = float(cfg["beta"])
    widths = [int(h) for h in cfg["hidden"]] + [int(cfg["out_features"])]
    layers = []
    for i, w in enumerate(widths):
        layers.append(stax.Dense(w, W_std=1.0, b_std=beta, parameterization="ntk"))
        if i < len(widths) - 1:
            layers.append(stax.Relu())
    try:                                          # the encoding as the first layer of one stax.serial
        _, apply_fn, _ = stax.serial(encoding_layer, *layers)
        combined = True
    except Exception:  # noqa: BLE001 - a stax that rejects the custom layer: compose by hand
        combined = False
    _, mlp_apply, _ = stax.serial(*layers)
    # parameters in stax order: (W (n_in, n_out), b (n_out,)) per Dense, () per Relu
    mlp_params = []
    for i in range(len(layers)):
        if i % 2 == 0:
            mlp_params.append((jnp.asarray(data[f"W{i // 2}"].T, dtype=dtype),
                               jnp.asarray(data[f"b{i // 2}"], dtype=dtype)))
        else:
            mlp_params.append(())
    if combined:
        params = [enc_params] + mlp_params
        f = apply_fn
    else:
        params = (enc_params, mlp_params)

        def f(p, inputs, **kwargs):
            return mlp_apply(p[1], enc_apply(p[0], inputs))

    vmap_axes = None if args.vmap_axes == "none" else 0
    ntk_fn = jax.jit(nt.empirical_ntk_fn(
        f, trace_axes=(-1,), vmap_axes=vmap_axes, implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))

    out: dict = {"n": args.n, "dtype": "float64" if args.x64 else "float32", "jax": jax.__version__,
                 "neural_tangents": nt.__version__, "combined_stax_serial": combined,
                 "vmap_axes": args.vmap_axes,
                 "n_params": int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))}
    if args.check:
        K = np.asarray(ntk_fn(x, None, params).block_until_ready(), dtype=np.float64)
        ref = data["K_check"][: args.n, : args.n]
        out["rel_frobenius_vs_inrlib"] = float(np.linalg.norm(K - ref) / np.linalg.norm(ref))
        out["max_abs_rel_vs_inrlib"] = float(np.abs(K - ref).max() / np.abs(ref).max())
        print("RESULT " + json.dumps(out), flush=True)
        return

    base = rss_mb()
    t0 = time.perf_counter()
    K = ntk_fn(x, None, params).block_until_ready()
    out["first_call_s"] = time.perf_counter() - t0                 # includes XLA compilation
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        K = ntk_fn(x, None, params).block_until_ready()
        times.append(time.perf_counter() - t0)
        if times[-1] > args.max_seconds:
            break
    out.update(times=times, median_s=statistics.median(times), baseline_rss_mb=base,
               peak_rss_mb=peak_rss_mb(), kernel_fro=float(jnp.linalg.norm(K)))
    out["peak_delta_mb"] = out["peak_rss_mb"] - base
    if os.environ.get("NT_SAVE_KERNEL"):
        np.save(os.environ["NT_SAVE_KERNEL"], np.asarray(K, dtype=np.float32))
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
