#!/usr/bin/env python
"""Empirical-NTK benchmark: ``inrlib``'s structured engine against the textbook ways, in one run.

On the same networks and the same points it times (median of repeats) and measures the peak
memory of:

- ``structured``: :func:`inrlib.ntk.empirical_ntk` (float32), the engine under test;
- ``jacobian``: ``method="jacobian"``, the ``torch.func`` Jacobian contraction ``J J^T``;
- ``ntk_vp``: ``method="ntk_vp"``, ``torch.func`` NTK-vector products (vjp then jvp per column).
  Its cost grows as ``N^2 P``; above ``--vp-max-n`` points it runs at ``--vp-max-n`` and its time
  is extrapolated by ``(N / n)^2`` (marked ``extrapolated`` in the table and the JSON);
- ``neural-tangents``: ``nt.empirical_ntk_fn(..., implementation=STRUCTURED_DERIVATIVES)`` on the
  same network written in ``stax`` (``benchmarks/nt_reference.py``), run with ``.venv-nt``'s python
  (``scripts/setup_nt_venv.sh``); skipped, saying why, when that environment is absent. It runs
  with ``vmap_axes=0`` (declaring the batch axis: its fastest setting, found here);
- ``nt_default``: the same with neural-tangents' default ``vmap_axes=None``, at most
  ``--nt-default-max-n`` points (default 1024: on the MPE model it takes ~9 GB there, and more
  than this machine's memory at 4096).

Every method runs in a fresh subprocess, so peak memory (the peak resident set size, and its rise
over the process's size just before the first timed call) belongs to that method alone; with
``--device cuda`` the peak allocated GPU memory is reported as well. The machine's float32 GEMM
peak is measured in the same run (a 4096 x 4096 x 4096 ``torch.matmul``, at the start and at the
end), and the dense-layer terms of the structured engine are timed separately to report the GFLOP/s
they achieve: counted flops are ``2 N^2 (n_in + C n_out)`` per dense layer (the two Gram GEMMs of
:func:`inrlib.ntk.dense_gram` over the whole ``N x N`` kernel) plus 3 ``N^2`` elementwise; the engine
computes only the blocks on and above the diagonal, so the flops it performs are about half that
(also reported).

Networks (paper 000): the 2D image model, 2 x 512 ReLU in NTK parameterization (beta 0.1), with no
encoding, Fourier features (L = 8) or a one-level 100 x 100 multigrid (k = 2); the 3D occupancy
model, 8 x 256 ReLU, trilinear 140^3 grid (k = 2), sigmoid output, whose Jacobian does not fit in
memory (the table says how much it would need).

Usage::

    python benchmarks/ntk_bench.py                 # N = 1024 and 4096
    python benchmarks/ntk_bench.py --quick         # N = 1024 only
    python benchmarks/ntk_bench.py --device cuda --n 1024 4096 16384

Results: ``benchmarks/results/ntk_bench-<device>.json`` (written atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from procmem import peak_rss_mb, rss_mb  # noqa: E402

MODELS = {
    "identity": {"encoding": {"type": "identity", "dim": 2}, "hidden": [512, 512]},
    "ffe": {"encoding": {"type": "fourier", "dim": 2, "levels": 8}, "hidden": [512, 512]},
    "mpe": {"encoding": {"type": "multigrid", "dim": 2, "resolutions": [100], "features": 2}, "hidden": [512, 512]},
    "occupancy": {"encoding": {"type": "multigrid", "dim": 3, "resolutions": [140], "features": 2},
                  "hidden": [256] * 8, "output_activation": "sigmoid"},
}
COMMON = {"out_features": 1, "activation": "relu", "parameterization": "ntk", "beta": 0.1}
METHODS = ("structured", "jacobian", "ntk_vp", "neural_tangents", "nt_default")
NT_PYTHON = ROOT / ".venv-nt" / "bin" / "python"
SEED = 0


# ----------------------------------------------------------------------------------------------
# helpers shared by the parent and the children
# ----------------------------------------------------------------------------------------------

def config(name: str) -> dict:
    return {**COMMON, **json.loads(json.dumps(MODELS[name]))}


def build(name: str, n: int, device: str = "cpu"):
    """The network (seeded) and the first ``n`` of a fixed sequence of points in [0, 1]^d."""
    import torch

    from inrlib.models import CoordinateMLP
    torch.manual_seed(SEED)
    model = CoordinateMLP.from_config(config(name)).to(device)
    dim = MODELS[name]["encoding"]["dim"]
    g = torch.Generator().manual_seed(SEED + 1)
    x = torch.rand(max(n, 16384), dim, generator=g)[:n].to(device)
    return model, x


def n_params(name: str) -> int:
    cfg = MODELS[name]
    enc = cfg["encoding"]
    widths = [enc["dim"]]
    if enc["type"] == "fourier":
        widths = [2 * enc["dim"] * enc["levels"] + enc["dim"]]
    grid = 0
    if enc["type"] == "multigrid":
        widths = [len(enc["resolutions"]) * enc["features"] + enc["dim"]]
        grid = sum(r ** enc["dim"] * enc["features"] for r in enc["resolutions"])
    widths += cfg["hidden"] + [1]
    return grid + sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def dense_layers(name: str) -> list[tuple[int, int]]:
    """(n_in, n_out) of every dense layer."""
    cfg = MODELS[name]
    enc = cfg["encoding"]
    first = {"identity": enc["dim"], "fourier": 2 * enc["dim"] * enc.get("levels", 0) + enc["dim"],
             "multigrid": len(enc.get("resolutions", [])) * enc.get("features", 0) + enc["dim"]}[enc["type"]]
    widths = [first] + cfg["hidden"] + [1]
    return list(zip(widths[:-1], widths[1:]))


def counted_dense_flops(name: str, n: int) -> float:
    """``2 N^2 (n_in + n_out)`` per dense layer plus 3 ``N^2`` elementwise (the whole N x N kernel)."""
    return float(sum(2 * n * n * (a + b) + 3 * n * n for a, b in dense_layers(name)))


def fmt_gb(b: float) -> str:
    return f"{b / 1e9:.1f} GB"


# ----------------------------------------------------------------------------------------------
# child processes: one method, one model, one N
# ----------------------------------------------------------------------------------------------

def _sync(device: str) -> None:
    """Wait for the work queued on ``device`` itself (``cuda:1`` is not the current device)."""
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def child_gemm(spec: dict) -> dict:
    import torch
    dev = spec["device"]
    a = torch.randn(4096, 4096, device=dev)
    b = torch.randn(4096, 4096, device=dev)
    c = a @ b
    _sync(dev)
    times = []
    for _ in range(spec.get("repeats", 5)):
        t0 = time.perf_counter()
        c = torch.matmul(a, b, out=c)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return {"times": times, "gflops": 2 * 4096 ** 3 / min(times) / 1e9, "threads": torch.get_num_threads()}


def child_method(spec: dict) -> dict:
    import torch

    import inrlib.ntk as ntk
    dev, method, name = spec["device"], spec["method"], spec["model"]
    n = spec["n"]
    model, x = build(name, n, dev)
    ntk.empirical_ntk(model, x[:64], dtype=torch.float32, method=method)        # warm-up (one-time costs)
    _sync(dev)
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(dev))
    base = rss_mb()
    out: dict = {"n": n, "threads": torch.get_num_threads()}
    times = []
    K = None
    try:
        for _ in range(spec["repeats"]):
            del K
            t0 = time.perf_counter()
            K = ntk.empirical_ntk(model, x, dtype=torch.float32, method=method)
            _sync(dev)
            times.append(time.perf_counter() - t0)
            if times[-1] > spec["max_seconds"]:
                break
    except ntk.NTKMemoryError as err:
        return {"skipped": f"NTKMemoryError: {err}"}
    out.update(times=times, median_s=statistics.median(times), baseline_rss_mb=base, peak_rss_mb=peak_rss_mb())
    out["peak_delta_mb"] = out["peak_rss_mb"] - base
    if dev.startswith("cuda"):
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(torch.device(dev)) / 2 ** 20
    out["kernel_fro"] = float(K.double().norm())
    if spec.get("save"):
        import numpy as np
        np.save(spec["save"], K.float().cpu().numpy())
    if method == "structured":
        out["dense"] = _time_dense_terms(model, x, dev)
    return out


def _time_dense_terms(model, x, dev: str) -> dict:
    """Three more structured runs with :func:`inrlib.ntk.dense_gram` wrapped: the fastest run's
    dense-term time and its flops (the GEMM peak is the fastest of its repeats too: best against best)."""
    import torch

    import inrlib.ntk as ntk
    import inrlib.ntk.terms as terms  # where the engine and the layers look dense_gram up
    original = terms.dense_gram
    acc = {"seconds": 0.0, "performed_flops": 0.0, "calls": 0}

    def timed(a_a, grad_a, a_b, grad_b, w_scale, b_scale):
        _sync(dev)
        t0 = time.perf_counter()
        k = original(a_a, grad_a, a_b, grad_b, w_scale, b_scale)
        _sync(dev)
        acc["seconds"] += time.perf_counter() - t0
        na, nb = a_a.shape[0], a_b.shape[0]
        inner = a_a.reshape(na, -1).shape[1] + grad_a.reshape(na, -1).shape[1]
        acc["performed_flops"] += 2.0 * na * nb * inner + 3.0 * na * nb
        acc["calls"] += 1
        return k

    terms.dense_gram = timed
    best: dict = {}
    try:
        for _ in range(3):
            acc.update(seconds=0.0, performed_flops=0.0, calls=0)
            t0 = time.perf_counter()
            ntk.empirical_ntk(model, x, dtype=torch.float32)
            _sync(dev)
            acc["engine_seconds"] = time.perf_counter() - t0
            if not best or acc["seconds"] < best["seconds"]:
                best = dict(acc)
    finally:
        terms.dense_gram = original
    return best


def run_child(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    return _run(cmd, timeout)


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"skipped": f"failed (exit {proc.returncode}): " + " | ".join(tail)}


# ----------------------------------------------------------------------------------------------
# neural-tangents
# ----------------------------------------------------------------------------------------------

def nt_unavailable(device: str) -> str | None:
    if not NT_PYTHON.exists():
        return f"no {NT_PYTHON.relative_to(ROOT)} (run scripts/setup_nt_venv.sh)"
    if device != "cpu":
        return "the .venv-nt jaxlib is CPU-only: not comparable with a GPU run"
    return None


def export_for_nt(name: str, n: int, path: Path, n_check: int) -> None:
    """Weights, points and a float64 reference kernel of the first ``n_check`` points, for nt_reference.py."""
    import numpy as np
    import torch

    from inrlib.layers import Dense
    from inrlib.ntk import empirical_ntk
    model, x = build(name, n)
    arrays = {"x": x.numpy().astype(np.float32), "config": np.array(json.dumps(config(name)))}
    dense = [m for m in model.mlp if isinstance(m, Dense)]
    for i, layer in enumerate(dense):
        arrays[f"W{i}"] = layer.weight.detach().numpy()
        arrays[f"b{i}"] = layer.bias.detach().numpy()
    for i, table in enumerate(getattr(model.encoding, "tables", [])):
        arrays[f"table{i}"] = table.detach().numpy()
    arrays["K_check"] = empirical_ntk(model, x[:n_check].double(), dtype=torch.float64).numpy()
    np.savez(path, **arrays)


# ----------------------------------------------------------------------------------------------
# the parent: plan, run, tabulate
# ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Empirical-NTK benchmark (see the module docstring).")
    ap.add_argument("--quick", action="store_true", help="N = 1024 only")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--n", type=int, nargs="+", default=None, help="numbers of points (default 1024 4096)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per method (median reported)")
    ap.add_argument("--max-seconds", type=float, default=30.0,
                    help="a method whose run takes longer than this is not repeated")
    ap.add_argument("--vp-max-n", type=int, default=1024,
                    help="ntk_vp runs at most this many points; larger N are extrapolated by (N/n)^2")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")
    ap.add_argument("--nt-default-max-n", type=int, default=1024,
                    help="nt_default (vmap_axes=None) runs only up to this many points")
    ap.add_argument("--nt-check-n", type=int, default=256, help="points for the NT-vs-inrlib kernel check")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/results/ntk_bench-<device>.json)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        spec = json.loads(args.child)
        res = child_gemm(spec) if spec["method"] == "gemm" else child_method(spec)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    import torch

    from inrlib.io import write_json

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda asked for, but torch sees no CUDA device", file=sys.stderr)
        return 2
    sizes = args.n or ([1024] if args.quick else [1024, 4096])
    dev_name = "cuda" if device.startswith("cuda") else "cpu"
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"ntk_bench-{dev_name}.json"
    load = os.getloadavg()
    print(f"ntk_bench: device={device}, N={sizes}, models={args.models}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load[0]:.2f} at start", flush=True)

    results: dict = {"device": device, "sizes": sizes, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "platform": platform.platform(), "processor": platform.processor(),
                     "load_average_start": load, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "models": {k: config(k) for k in args.models}, "runs": [], "nt_checks": {}}
    if device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(0)

    gemm0 = run_child({"method": "gemm", "device": device}, args.timeout)
    print(f"float32 GEMM 4096^3: {gemm0.get('gflops', float('nan')):.0f} GFLOP/s", flush=True)

    nt_reason = nt_unavailable(device) if "neural_tangents" in args.methods else "not requested"
    tmp = Path(tempfile.mkdtemp(prefix="ntk_bench-"))
    avail = _mem_available(device)
    measured: dict = {}

    # neural-tangents: check the kernel first (float64 and float32) on a few points
    if nt_reason is None:
        for name in args.models:
            if MODELS[name]["encoding"]["dim"] != 2:
                continue
            wpath = tmp / f"{name}.npz"
            export_for_nt(name, max(sizes), wpath, args.nt_check_n)
            chk = {}
            for x64 in (True, False):
                cmd = [str(NT_PYTHON), str(ROOT / "benchmarks" / "nt_reference.py"), "--weights", str(wpath),
                       "--n", str(args.nt_check_n), "--check"] + (["--x64"] if x64 else [])
                r = _run(cmd, args.timeout)
                chk["float64" if x64 else "float32"] = r
            results["nt_checks"][name] = chk
            print(f"neural-tangents vs inrlib kernel, {name}, N={args.nt_check_n}, same weights: rel. Frobenius "
                  + ", ".join(f"{k} {v['rel_frobenius_vs_inrlib']:.1e}" if "rel_frobenius_vs_inrlib" in v
                              else f"{k} {v.get('skipped')}" for k, v in chk.items()), flush=True)

    for name in args.models:
        P = n_params(name)
        for n in sizes:
            row_structured = None
            for method in args.methods:
                rec = {"model": name, "n": n, "method": method, "params": P}
                j_bytes = n * P * 4
                if method in ("jacobian", "neural_tangents", "nt_default") and j_bytes > 0.5 * avail:
                    rec["skipped"] = (f"J would need {fmt_gb(j_bytes)} (N={n} x P={P:,} float32; "
                                      f"{fmt_gb(2 * j_bytes)} in float64)")
                    _report(rec, results)
                    continue
                if method == "nt_default" and n > args.nt_default_max_n:
                    below = get_run(results, name, args.nt_default_max_n, method)
                    seen = (f"; at N={args.nt_default_max_n} it took {below['median_s']:.1f} s and "
                            f"{below['peak_rss_mb'] / 1024:.1f} GB" if below and "median_s" in below else "")
                    rec["skipped"] = f"run only up to --nt-default-max-n={args.nt_default_max_n} points{seen}"
                    _report(rec, results)
                    continue
                if method in ("neural_tangents", "nt_default"):
                    if nt_reason is not None:
                        rec["skipped"] = nt_reason
                        _report(rec, results)
                        continue
                    wpath = tmp / f"{name}.npz"
                    if not wpath.exists():
                        export_for_nt(name, max(sizes), wpath, args.nt_check_n)
                    kpath = tmp / f"K-{name}-{n}-{method}.npy"
                    cmd = [str(NT_PYTHON), str(ROOT / "benchmarks" / "nt_reference.py"), "--weights", str(wpath),
                           "--n", str(n), "--repeats", str(args.repeats), "--max-seconds", str(args.max_seconds),
                           "--vmap-axes", "none" if method == "nt_default" else "0"]
                    res = _run(cmd, args.timeout, env={"NT_SAVE_KERNEL": str(kpath)})
                    rec.update(res)
                    rec["kernel_file"] = str(kpath)
                else:
                    n_run = min(n, args.vp_max_n) if method == "ntk_vp" else n
                    kpath = tmp / f"K-{name}-{n_run}-{method}.npy"
                    spec = {"method": method, "model": name, "n": n_run, "device": device,
                            "repeats": args.repeats, "max_seconds": args.max_seconds, "save": str(kpath)}
                    key = (name, n_run, method)
                    if key not in measured:                  # ntk_vp at several N runs once at n_run
                        measured[key] = run_child(spec, args.timeout)
                    rec.update(json.loads(json.dumps(measured[key])))
                    rec["n"] = n
                    rec["kernel_file"] = str(kpath)
                    if method == "ntk_vp" and n_run < n and "median_s" in rec:
                        rec["measured_n"] = n_run
                        rec["measured_median_s"] = rec["median_s"]
                        rec["median_s"] = rec["median_s"] * (n / n_run) ** 2
                        rec["extrapolated"] = True
                if method == "structured":
                    row_structured = rec
                _compare(rec, row_structured, tmp)
                _report(rec, results)

    gemm1 = run_child({"method": "gemm", "device": device}, args.timeout)
    results["gemm"] = {"start": gemm0, "end": gemm1}
    peak = max(gemm0.get("gflops", 0.0), gemm1.get("gflops", 0.0)) or float("nan")
    results["gemm_peak_gflops"] = peak
    results["load_average_end"] = os.getloadavg()
    print(f"float32 GEMM 4096^3 at the end: {gemm1.get('gflops', float('nan')):.0f} GFLOP/s; "
          f"peak used below: {peak:.0f} GFLOP/s; load average {results['load_average_end'][0]:.2f}", flush=True)
    _dense_rates(results, peak)
    _table(results)
    results["targets"] = _targets(results)
    write_json(out_path, results)
    print(f"\nwrote {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    return 0


def get_run(results: dict, model: str, n: int, method: str) -> dict | None:
    for r in results["runs"]:
        if (r["model"], r["n"], r["method"]) == (model, n, method):
            return r
    return None


def _mem_available(device: str = "cpu") -> int:
    """Bytes free where the methods allocate: the GPU's free memory (with the caching allocator's
    free blocks, as inrlib.ntk.available_memory counts it) on CUDA, else MemAvailable."""
    if device.startswith("cuda"):
        import torch

        from inrlib.ntk import available_memory
        return available_memory(torch.device(device))
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 * 2 ** 30


def _compare(rec: dict, ref: dict | None, tmp: Path) -> None:
    """Relative Frobenius difference of this method's kernel to the structured one (same points)."""
    import numpy as np
    if rec["method"] == "structured" or ref is None or "kernel_file" not in rec or "kernel_file" not in ref:
        return
    try:
        K = np.load(rec["kernel_file"])
        R = np.load(ref["kernel_file"])
    except (OSError, ValueError):
        return
    m = K.shape[0]
    R = R[:m, :m].astype(np.float64)
    rec["rel_fro_vs_structured"] = float(np.linalg.norm(K.astype(np.float64) - R) / np.linalg.norm(R))


def _report(rec: dict, results: dict) -> None:
    results["runs"].append(rec)
    if "skipped" in rec:
        print(f"  {rec['model']:<10} N={rec['n']:<6} {rec['method']:<16} skipped: {rec['skipped']}", flush=True)
        return
    extra = f" (measured at N={rec['measured_n']}, extrapolated)" if rec.get("extrapolated") else ""
    diff = f", rel. diff {rec['rel_fro_vs_structured']:.1e}" if "rel_fro_vs_structured" in rec else ""
    memory = (f"GPU peak {rec['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in rec   # on CUDA the GPU's memory counts
              else f"peak RSS {rec['peak_rss_mb']:.0f} MB (+{rec['peak_delta_mb']:.0f})")
    print(f"  {rec['model']:<10} N={rec['n']:<6} {rec['method']:<16} {rec['median_s']:9.3f} s "
          f"[{' '.join(f'{t:.3f}' for t in rec['times'])}]{extra}, {memory}{diff}", flush=True)


def _dense_rates(results: dict, peak: float) -> None:
    for rec in results["runs"]:
        d = rec.get("dense")
        if not d or not d.get("seconds"):
            continue
        counted = counted_dense_flops(rec["model"], rec["n"])
        d["counted_flops"] = counted
        d["counted_gflops_per_s"] = counted / d["seconds"] / 1e9
        d["performed_gflops_per_s"] = d["performed_flops"] / d["seconds"] / 1e9
        d["fraction_of_peak_counted"] = d["counted_gflops_per_s"] / peak
        d["fraction_of_peak_performed"] = d["performed_gflops_per_s"] / peak


def _table(results: dict) -> None:
    runs = results["runs"]
    ref = {(r["model"], r["n"]): r for r in runs if r["method"] == "structured" and "median_s" in r}
    print("\n| model | N | method | time (s) | runs | peak RSS (MB) | rise (MB) | time / structured | "
          "rise / structured | rel. diff to structured |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        if "skipped" in r:
            print(f"| {r['model']} | {r['n']} | {r['method']} | skipped: {r['skipped']} | | | | | | |")
            continue
        s = ref.get((r["model"], r["n"]))
        ratio = f"{r['median_s'] / s['median_s']:.1f}x" if s and r is not s else "1"
        mem = (f"{r['peak_delta_mb'] / max(s['peak_delta_mb'], 1):.1f}x" if s and r is not s else "1")
        if r.get("extrapolated"):
            ratio += f" (extrapolated from N={r['measured_n']})"
            mem = f"(at N={r['measured_n']})"
        diff = f"{r['rel_fro_vs_structured']:.1e}" if "rel_fro_vs_structured" in r else ""
        print(f"| {r['model']} | {r['n']} | {r['method']} | {r['median_s']:.3f} | {len(r['times'])} | "
              f"{r['peak_rss_mb']:.0f} | {r['peak_delta_mb']:.0f} | {ratio} | {mem} | {diff} |")
    peak = results["gemm_peak_gflops"]
    print(f"\nDense-layer terms of the structured engine (float32 GEMM peak measured in this run: {peak:.0f} GFLOP/s)")
    print("| model | N | dense terms (s) | engine (s) | counted GFLOP | counted GFLOP/s | % of peak | "
          "performed GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        d = r.get("dense")
        if not d or "counted_flops" not in d:
            continue
        print(f"| {r['model']} | {r['n']} | {d['seconds']:.3f} | {d['engine_seconds']:.3f} | "
              f"{d['counted_flops'] / 1e9:.1f} | {d['counted_gflops_per_s']:.0f} | "
              f"{100 * d['fraction_of_peak_counted']:.0f} % | {d['performed_gflops_per_s']:.0f} | "
              f"{100 * d['fraction_of_peak_performed']:.0f} % |")
    if results["nt_checks"]:
        print("\nneural-tangents vs inrlib on the same weights (relative Frobenius difference):")
        for name, chk in results["nt_checks"].items():
            cells = ", ".join(f"{k}: {v['rel_frobenius_vs_inrlib']:.1e}" if "rel_frobenius_vs_inrlib" in v
                              else f"{k}: {v.get('skipped', '?')}" for k, v in chk.items())
            print(f"  {name}: {cells}")


def _targets(results: dict) -> dict:
    """The performance targets at the largest N run, each with its measured value and verdict."""
    runs = results["runs"]
    n = max(results["sizes"])
    get = {(r["model"], r["n"], r["method"]): r for r in runs}
    out = {}
    for name in results["models"]:
        s = get.get((name, n, "structured"))
        if not s or "median_s" not in s:
            continue
        peak = s.get("peak_gpu_mb", s["peak_rss_mb"])     # on CUDA the memory that counts is the GPU's
        t = {"structured_s": s["median_s"], "structured_peak_rss_mb": s["peak_rss_mb"],
             "structured_peak_mb": peak, "memory_ok(<=1.5GB)": peak <= 1536}
        j = get.get((name, n, "jacobian"))
        if j and "median_s" in j:
            t["speedup_vs_jacobian"] = j["median_s"] / s["median_s"]
            t["jacobian_ok(>=50x)"] = t["speedup_vs_jacobian"] >= 50
        nt_ = get.get((name, n, "neural_tangents"))
        if nt_ and "median_s" in nt_:
            t["speedup_vs_nt"] = nt_["median_s"] / s["median_s"]
            need = 100 if name == "mpe" else 2
            t[f"nt_ok(>={need}x)"] = t["speedup_vs_nt"] >= need
        nd = [r for r in runs if r["model"] == name and r["method"] == "nt_default" and "median_s" in r]
        if nd:
            r = max(nd, key=lambda r: r["n"])
            s_at = get.get((name, r["n"], "structured"))
            if s_at and "median_s" in s_at:
                t[f"speedup_vs_nt_default_at_N={r['n']}"] = r["median_s"] / s_at["median_s"]
        d = s.get("dense")
        if d and "fraction_of_peak_counted" in d:
            t["dense_fraction_of_peak_counted"] = d["fraction_of_peak_counted"]
            t["dense_fraction_of_peak_performed"] = d["fraction_of_peak_performed"]
            t["gemm_ok(>=70%, performed)"] = d["fraction_of_peak_performed"] >= 0.7
        out[name] = t
    print(f"\nTargets at N={n}:")
    for name, t in out.items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.items()))
    return out


if __name__ == "__main__":
    sys.exit(main())
