#!/usr/bin/env python
"""Extreme NTK eigenvalues of a full 256 x 256 image (N = 65,536) without forming the kernel.

Paper 000's 2D model (multigrid encoding, one 100 x 100 level with k = 2, then 2 x 512 ReLU in NTK
parameterization, beta 0.1), at initialization, on every pixel of a 256 x 256 image. Its kernel
would take 34 GB in float64 (and ``eigvalsh`` hours); the matrix-free path needs only products
``K v``: :class:`inrlib.ntk.NTKOperator` (structured: per module, a ``vjp`` and a ``jvp`` on that
module alone, from the inputs and sensitivities recorded in one forward/backward pass) and
:func:`inrlib.ntk.extreme_eigenvalues` (Lanczos with full reorthogonalization: both ends of the
spectrum from one Krylov space).

It does two things:

1. **Validation** at ``--validate-n`` points (default 2048, a random subset of the pixels): the
   Lanczos extremes against ``eigvalsh`` of the dense kernel, with the residual norms
   ``||K v - lambda v||`` that the matrix-free run reports for itself, and the interlacing
   bounds checked against the exact spectrum.
2. **The full image**: time per product (structured, and once the whole-model ``autodiff``
   product for comparison); the ``k`` largest eigenvalues by Lanczos, with their residual norms
   (a residual ``r`` puts the value within ``r`` of a true eigenvalue: ``K`` is symmetric); and
   the bottom of the spectrum by :func:`inrlib.ntk.interlacing_bounds`: the dense kernel of a
   compact ``--patch`` of pixels is a principal submatrix of ``K``, so its smallest eigenvalues
   are rigorous upper bounds on ``K``'s (Cauchy interlacing), and ``K`` is positive semi-definite,
   so ``0 <= lambda_min(K) <= bound``. Lanczos alone needs hundreds of products for the smallest
   eigenvalues even at N = 2048 (the validation shows it) and does not reach them at N = 65,536
   in minutes; ``--bottom-lanczos`` runs it anyway (``--max-products`` steps, both ends) for its
   Ritz values, which are upper bounds too.

Usage::

    python benchmarks/matrix_free_demo.py               # validation + full image (minutes on 2 cores)
    python benchmarks/matrix_free_demo.py --quick       # validation at N = 1024, full image at 128 x 128
    python benchmarks/matrix_free_demo.py --device cuda

Results: ``benchmarks/results/matrix_free-<device>.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inrlib.io import write_json  # noqa: E402
from inrlib.models import CoordinateMLP  # noqa: E402
from inrlib.ntk import NTKOperator, empirical_ntk, extreme_eigenvalues, interlacing_bounds, spectrum  # noqa: E402

CONFIG = {"encoding": {"type": "multigrid", "dim": 2, "resolutions": [100], "features": 2},
          "hidden": [512, 512], "out_features": 1, "activation": "relu", "parameterization": "ntk", "beta": 0.1}


def pixel_grid(side: int) -> torch.Tensor:
    """Pixel coordinates of a ``side x side`` image in [0, 1]^2, row-major, float64."""
    t = torch.linspace(0.0, 1.0, side, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def sync(device: str) -> None:
    """Wait for the work queued on ``device`` itself (``cuda:1`` is not the current device)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def time_products(op: NTKOperator, repeats: int, device: str, seed: int = 1) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(op.n, generator=g, dtype=torch.float64).to(op.device)
    op.matvec(v)                                   # warm-up: first calls allocate and dispatch
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        op.matvec(v)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def summarize(res: dict, scale: float) -> dict:
    out = {}
    for end in ("largest", "smallest"):
        if end in res:
            lam, r = np.asarray(res[end]), np.asarray(res[f"residual_{end}"])
            out[end] = lam.tolist()
            out[f"residual_{end}"] = r.tolist()
            out[f"residual_over_lambda_{end}"] = (r / np.maximum(np.abs(lam), 1e-300)).tolist()
            out[f"residual_over_lambda_max_{end}"] = (r / scale).tolist()
    out["products"] = int(res["products"])
    out["lanczos_steps"] = int(res.get("lanczos_steps", 0))
    out["converged"] = bool(res.get("converged", False))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=256, help="image side (N = side^2)")
    ap.add_argument("--validate-n", type=int, default=2048)
    ap.add_argument("--k", type=int, default=6, help="eigenvalues at each end")
    ap.add_argument("--max-products", type=int, default=300, help="most Lanczos steps for the full image")
    ap.add_argument("--patch", type=int, default=1024,
                    help="points of the compact patch whose dense kernel bounds the bottom of the spectrum")
    ap.add_argument("--bottom-lanczos", action="store_true",
                    help="also run Lanczos for both ends on the full image (--max-products steps; slow)")
    ap.add_argument("--validate-max-products", type=int, default=600)
    ap.add_argument("--tol", type=float, default=1e-8, help="stop when residual estimates < tol * lambda_max")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="validation at N = 1024, a 128 x 128 image")
    ap.add_argument("--skip-validation", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.side, args.validate_n, args.max_products = 128, 1024, 200
    device = args.device
    dev_name = "cuda" if device.startswith("cuda") else "cpu"
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"matrix_free-{dev_name}.json"
    torch.manual_seed(0)
    model = CoordinateMLP.from_config(CONFIG).to(device)
    x_all = pixel_grid(args.side).to(device)
    n = x_all.shape[0]
    results: dict = {"config": CONFIG, "side": args.side, "n": n, "k": args.k, "device": device,
                     "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "load_average_start": os.getloadavg(), "tol": args.tol}
    print(f"matrix_free_demo: paper 000's 2D MPE model, {args.side} x {args.side} image (N = {n:,}), "
          f"device {device}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"the dense float64 kernel would take {n * n * 8 / 1e9:.1f} GB")

    # 1. validation against the dense kernel ---------------------------------------------------
    if not args.skip_validation:
        g = torch.Generator().manual_seed(2)
        xv = x_all[torch.randperm(n, generator=g)[: args.validate_n].to(device)]
        t0 = time.perf_counter()
        K = empirical_ntk(model, xv, dtype=torch.float64)
        ev = spectrum(K)
        t_dense = time.perf_counter() - t0
        del K
        val = {"n": args.validate_n, "dense_kernel_and_eigvalsh_s": t_dense,
               "exact_largest": ev[: args.k].tolist(), "exact_smallest": ev[-args.k:].tolist(),
               "condition": float(ev[0] / ev[-1]) if ev[-1] > 0 else float("inf")}
        op = NTKOperator(model, xv, dtype=torch.float64, method="structured")
        ref_op = NTKOperator(model, xv, dtype=torch.float64, method="autodiff")
        v = torch.randn(args.validate_n, dtype=torch.float64, device=op.device)
        val["product_rel_diff_structured_vs_autodiff"] = float((op.matvec(v) - ref_op.matvec(v)).norm()
                                                                / ref_op.matvec(v).norm())
        t0 = time.perf_counter()
        res = extreme_eigenvalues(op, k=args.k, which="both", tol=args.tol, maxiter=args.validate_max_products)
        val["lanczos_s"] = time.perf_counter() - t0
        val.update(summarize(res, ev[0]))
        val["rel_error_largest"] = (np.abs(np.asarray(res["largest"]) - ev[: args.k]) / ev[: args.k]).tolist()
        val["rel_error_smallest"] = (np.abs(np.asarray(res["smallest"]) - ev[-args.k:])
                                     / np.abs(ev[-args.k:])).tolist()
        # the same Krylov space, cut short: how accurate after fewer products?
        cut = []
        for m in (50, 100, 200, 300):
            if m >= args.validate_max_products:
                break
            r = extreme_eigenvalues(op, k=args.k, which="both", tol=0.0, maxiter=m)
            cut.append({"products_budget": m,
                        "max_rel_error_largest": float(np.max(np.abs(r["largest"] - ev[: args.k]) / ev[: args.k])),
                        "rel_error_smallest": (np.abs(r["smallest"] - ev[-args.k:]) / np.abs(ev[-args.k:])).tolist(),
                        "residual_over_lambda_smallest": (r["residual_smallest"] / np.abs(r["smallest"])).tolist()})
        val["budget_study"] = cut
        t0 = time.perf_counter()
        ib = interlacing_bounds(model, xv, args.k, size=min(args.patch, args.validate_n // 2))
        val["interlacing"] = {"s": time.perf_counter() - t0, "size": ib["size"], "allowance": ib["allowance"],
                              "smallest_upper": ib["smallest_upper"].tolist(),
                              "largest_lower": ib["largest_lower"].tolist(),
                              "holds": bool(np.all(ib["smallest_upper"] >= ev[-args.k:])
                                            and np.all(ib["largest_lower"] <= ev[: args.k]))}
        results["validation"] = val
        print(f"\nvalidation at N = {args.validate_n}: dense kernel + eigvalsh {t_dense:.1f} s; "
              f"structured vs autodiff product rel. diff {val['product_rel_diff_structured_vs_autodiff']:.1e}")
        print(f"  Lanczos: {res['products']} products ({res['lanczos_steps']} steps), {val['lanczos_s']:.1f} s, "
              f"converged to tol {args.tol:g}: {res['converged']}")
        print("  largest : " + "  ".join(f"{a:.6e} (exact {b:.6e}, rel.err {e:.1e}, res/lam {r:.1e})"
                                         for a, b, e, r in zip(res["largest"][:3], ev[:3], val["rel_error_largest"],
                                                               val["residual_over_lambda_largest"])))
        print("  smallest: " + "  ".join(f"{a:.6e} (exact {b:.6e}, rel.err {e:.1e}, res/lam {r:.1e})"
                                         for a, b, e, r in zip(res["smallest"][-3:], ev[-3:],
                                                               val["rel_error_smallest"][-3:],
                                                               val["residual_over_lambda_smallest"][-3:])))
        print(f"  condition number lambda_max / lambda_min = {val['condition']:.3g}")
        vi = val["interlacing"]
        print(f"  interlacing bounds from a {vi['size']}-point patch ({vi['s']:.1f} s): lambda_min <= "
              f"{vi['smallest_upper'][-1]:.3e} (exact {ev[-1]:.3e}), lambda_max >= {vi['largest_lower'][0]:.3e} "
              f"(exact {ev[0]:.3e}); all {2 * args.k} bounds hold: {vi['holds']}")
        for c in cut:
            print(f"  after {c['products_budget']:>4} products: largest max rel.err {c['max_rel_error_largest']:.1e}; "
                  f"smallest rel.err " + " ".join(f"{e:.1e}" for e in c["rel_error_smallest"][-3:]))

    # 2. the full image --------------------------------------------------------------------------
    print(f"\nfull image, N = {n:,}")
    t0 = time.perf_counter()
    op = NTKOperator(model, x_all, dtype=torch.float64, method="structured")
    sync(device)
    full = {"setup_s": time.perf_counter() - t0, "chunk": op.chunk}
    full["product_times_structured"] = time_products(op, 3, device)
    full["product_s_structured"] = statistics.median(full["product_times_structured"])
    ref = NTKOperator(model, x_all, dtype=torch.float64, method="autodiff")
    full["product_times_autodiff"] = time_products(ref, 2, device)
    full["product_s_autodiff"] = statistics.median(full["product_times_autodiff"])
    del ref
    print(f"  setup (forward/backward, captures) {full['setup_s']:.1f} s; one product K v: "
          f"structured {full['product_s_structured']:.2f} s, whole-model autodiff {full['product_s_autodiff']:.2f} s")
    op.products = 0
    t0 = time.perf_counter()
    which = "both" if args.bottom_lanczos else "largest"
    res = extreme_eigenvalues(op, k=args.k, which=which, tol=args.tol, maxiter=args.max_products)
    full["lanczos_s"] = time.perf_counter() - t0
    full["lanczos_which"] = which
    scale = float(res["largest"][0])
    full.update(summarize(res, scale))
    print(f"  Lanczos ({which}): {res['products']} products in {full['lanczos_s']:.0f} s "
          f"({full['lanczos_s'] / max(res['products'], 1):.2f} s each, reorthogonalization included); "
          f"converged to tol {args.tol:g}: {res['converged']}")
    print("  largest  (lambda, residual / lambda): "
          + ", ".join(f"{a:.6e} ({r:.1e})" for a, r in zip(res["largest"], full["residual_over_lambda_largest"])))
    if "smallest" in res:
        print("  smallest Ritz values (upper bounds; residual / lambda): "
              + ", ".join(f"{a:.3e} ({r:.1e})" for a, r in zip(res["smallest"], full["residual_over_lambda_smallest"])))

    # the bottom: interlacing on a compact patch, against the rounding floor of a float64 product
    t0 = time.perf_counter()
    ib = interlacing_bounds(model, x_all, args.k, size=args.patch)
    full["interlacing_s"] = time.perf_counter() - t0
    floor = n * float(np.finfo(np.float64).eps) * scale
    lam_min_upper = float(ib["smallest_upper"][-1])
    if "smallest" in res:
        lam_min_upper = min(lam_min_upper, float(np.min(res["smallest"])))
    patch = x_all[torch.as_tensor(ib["indices"], device=x_all.device)]
    span = (patch.max(0).values - patch.min(0).values).cpu().numpy() * (args.side - 1) + 1
    full["interlacing"] = {"size": ib["size"], "patch_span_pixels": span.tolist(), "allowance": ib["allowance"],
                           "smallest_upper": ib["smallest_upper"].tolist(),
                           "largest_lower": ib["largest_lower"].tolist()}
    full["float64_rounding_floor"] = floor
    full["lambda_min_bracket"] = [0.0, lam_min_upper]
    full["condition_lower_bound"] = scale / lam_min_upper if lam_min_upper > 0 else float("inf")
    full["total_s"] = full["setup_s"] + full["lanczos_s"] + full["interlacing_s"]
    results["full"] = full
    print(f"  bottom: the dense kernel of a {ib['size']}-point patch ({span[0]:.0f} x {span[1]:.0f} pixels), "
          f"{full['interlacing_s']:.1f} s, bounds the {args.k} smallest eigenvalues of K from above (interlacing): "
          + ", ".join(f"{u:.2e}" for u in ib["smallest_upper"]))
    print(f"  so 0 <= lambda_min(K) <= {lam_min_upper:.2e}; condition number >= {full['condition_lower_bound']:.2e}; "
          f"the float64 rounding floor of K (N eps lambda_max) is {floor:.2e}")
    if lam_min_upper <= floor:
        print(f"  the bottom of the spectrum lies {floor / lam_min_upper:.0e} x below the rounding floor: K is "
              "numerically singular, and no method that applies K in float64 can resolve its smallest eigenvalues "
              "further (one product's rounding error is already of the floor's size)")
    print(f"  total: {full['total_s']:.0f} s (setup, Lanczos, patch)")
    results["load_average_end"] = os.getloadavg()
    write_json(out_path, results)
    print(f"\nwrote {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
