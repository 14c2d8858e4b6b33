#!/usr/bin/env python
"""Training engine benchmark: member-steps per second of the fused step and of autograd, against the floor.

For each configuration of the papers (Table 2's MPE, FFE and baseline at batches 10 / 92 / 10; Table 3's
fine MPE and high FFE at batch 32; Table 4's occupancy MLP at a large batch; the sine chapters' simple
sine and STAF networks) and each member count M, one run measures:

- ``fused``: :func:`inrlib.train.fit` / :func:`~inrlib.train.fit_ensemble` with ``engine="fused"``;
- ``autograd``: the same call with ``engine="autograd"`` (the plain path, kept as the reference);
- ``floor``: ``max(GEMM seconds, bytes / bandwidth)`` per step: the step's matrix products timed alone at
  their own shapes (``torch.mm`` / ``torch.bmm``, forward and backward), and the bytes a step must move
  (every parameter read twice and written once, the gradient written and read, Adam's two moments read
  and written; grid tables: only the rows a batch touches under SGD) over the copy bandwidth measured in
  the same run.

Member-steps per second are optimization steps summed over members over the wall time of the epochs'
steps (``History.epoch_seconds``, evaluation left out, the first epoch left out as warm-up). The ratios in
the table are measured in one run; the absolute numbers depend on the day's machine (its float32 GEMM
rate at 4096^3 and its copy bandwidth are printed with them).

Usage::

    python benchmarks/train_bench.py                        # CPU, M = 1, 5, 20
    python benchmarks/train_bench.py --device cuda --members 1 5 20 100 --configs t2_mpe

Results: ``benchmarks/results/train_bench-<device>.json`` (written atomically).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def configs():
    """``{name: (ModelConfig, batch, loss, optimizer, lr, dim)}`` of the papers' networks."""
    from inrlib.book.studies.bandwidth import sine_config
    from inrlib.book.studies.staf import network_config
    from inrlib.research.papers import TABLE2, TABLE3, TABLE4

    out = {}
    for name, batch in (("mpe", 10), ("ffe", 92), ("baseline", 10)):
        c = TABLE2[name]
        out[f"t2_{name}"] = (c.model, batch, "mse", "sgd", c.lr, 2)
    for name in ("mpe_fine", "ffe_high"):
        c = TABLE3[name]
        out[f"t3_{name}"] = (c.model, 32, "mse", "sgd", c.lr / 100, 2)   # Table 3's lr 100 diverges at random data
    c = TABLE4["dragon/mpe"]
    out["t4_dragon_mpe"] = (c.model, 10_000, "bce", "sgd", c.lr, 3)
    out["sine_simple"] = (sine_config("simple_sine", 256, 3, w=30.0), 32, "mse", "adam", 1e-4, 1)
    out["staf"] = (network_config("staf", 256, 3), 32, "mse", "adam", 1e-4, 2)
    return out


def _time(fn, repeats=7):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bandwidth(device):
    """Bytes per second of a 256 MB float32 copy (read + write counted)."""
    import torch
    a = torch.empty(64 * 2 ** 20, device=device)
    b = torch.empty_like(a)

    def copy():
        b.copy_(a)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return 2 * a.numel() * 4 / _time(copy)


def floor_seconds(model, batch, M, optimizer, device, bw):
    """The step's floor: its GEMMs timed alone at their shapes, or its bytes over the bandwidth."""
    import torch

    from inrlib.encodings import HashGridEncoding, MultigridEncoding
    from inrlib.layers import Dense

    gemm = 0.0
    nbytes = 0
    for m in model.modules():
        if isinstance(m, Dense):
            o, i = m.weight.shape
            h = torch.randn(M, batch, i, device=device)
            g = torch.randn(M, batch, o, device=device)
            W = torch.randn(M, o, i, device=device)

            def products():
                torch.bmm(h, W.transpose(1, 2))
                torch.bmm(g.transpose(1, 2), h)
                torch.bmm(g, W)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
            gemm += _time(products)
            params = o * i + o
            nbytes += 4 * M * params * (5 if optimizer == "sgd" else 9)
        elif isinstance(m, (MultigridEncoding, HashGridEncoding)):
            k, corners = m.features, 2 ** m.dim
            rows = sum(t.shape[0] for t in m.tables)
            touched = batch * corners * len(m.tables) if optimizer == "sgd" else rows
            nbytes += 4 * M * k * touched * (5 if optimizer == "sgd" else 9)
    return max(gemm, nbytes / bw), gemm, nbytes


def measure(name, spec, M, device, epochs, n):
    import torch

    from inrlib.models import CoordinateMLP
    from inrlib.train import fit, fit_ensemble

    config, batch, loss, optimizer, lr, dim = spec
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, dim, generator=g)
    out = config.out_features or (1 if loss == "bce" else 3)
    y = torch.rand(n, out, generator=g)
    if loss == "bce":
        y = (y > 0.5).float()
    batch = min(batch, n)
    steps = -(-n // batch)
    kw = dict(epochs=epochs, lr=lr, optimizer=optimizer, loss=loss, batch_size=batch, full_eval=False,
              progress=False)
    row = {"config": name, "batch_size": batch, "members": M, "steps_per_epoch": steps, "loss": loss,
           "optimizer": optimizer}
    for engine in ("fused", "autograd"):
        models = [CoordinateMLP.from_config(config, dim=dim, out_features=out, seed=m).to(device) for m in range(M)]
        if M == 1:
            hists = [fit(models[0], x, y, engine=engine, **kw)]
        else:
            hists = fit_ensemble(models, x, [y] * M, engine=engine, **kw)
        row[f"{engine}_member_steps_per_s"] = M * steps / statistics.median(hists[0].epoch_seconds[1:])
        row[f"{engine}_engine"] = hists[0].config["engine"]
    model = CoordinateMLP.from_config(config, dim=dim, out_features=out, seed=0)
    floor, gemm, nbytes = floor_seconds(model, batch, M, optimizer, device, BW[0])
    row.update(floor_member_steps_per_s=M / floor, floor_gemm_s=gemm, floor_bytes=nbytes,
               fused_over_autograd=row["fused_member_steps_per_s"] / row["autograd_member_steps_per_s"],
               floor_over_fused=(M / floor) / row["fused_member_steps_per_s"])
    return row


BW = [0.0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--members", type=int, nargs="+", default=[1, 5, 20])
    p.add_argument("--configs", nargs="+", default=None, help="names from configs() (default: all)")
    p.add_argument("--samples", type=int, default=400, help="samples per member (steps per epoch = samples / batch)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per timing (the first is warm-up)")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/train_bench-<device>.json)")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is left out as warm-up)")

    import torch
    from ntk_bench import child_gemm

    from inrlib.io import write_json

    dev = args.device
    specs = configs()
    names = args.configs or list(specs)
    unknown = sorted(set(names) - set(specs))
    if unknown:
        p.error(f"unknown configs {unknown}; known: {', '.join(specs)}")
    gemm0 = child_gemm({"device": dev})
    BW[0] = bandwidth(dev)
    print(f"float32 GEMM 4096^3: {gemm0['gflops']:.0f} GFLOP/s; copy bandwidth {BW[0] / 1e9:.1f} GB/s; "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'config':14s} {'batch':>6s} {'M':>4s} {'fused':>9s} {'autograd':>9s} {'floor':>9s} "
          f"{'fused/ag':>8s} {'floor/fused':>11s}   (member-steps/s)")
    rows = []
    for name in names:
        spec = specs[name]
        n = max(args.samples, 3 * spec[1]) if spec[1] > args.samples else args.samples
        for M in args.members:
            row = measure(name, spec, M, dev, args.epochs, n)
            rows.append(row)
            print(f"{name:14s} {row['batch_size']:6d} {M:4d} {row['fused_member_steps_per_s']:9.0f} "
                  f"{row['autograd_member_steps_per_s']:9.0f} {row['floor_member_steps_per_s']:9.0f} "
                  f"{row['fused_over_autograd']:8.2f} {row['floor_over_fused']:11.2f}", flush=True)
    gemm1 = child_gemm({"device": dev})
    results = {"device": dev, "platform": platform.platform(), "processor": platform.processor(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "epochs": args.epochs,
               "gemm_gflops": {"start": gemm0["gflops"], "end": gemm1["gflops"]}, "copy_bandwidth_bytes_s": BW[0],
               "load_average_end": os.getloadavg(), "rows": rows}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"train_bench-{dev.replace(':', '')}.json"
    write_json(out, results)
    print(f"float32 GEMM at the end: {gemm1['gflops']:.0f} GFLOP/s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
