#!/usr/bin/env python
"""Ensemble training benchmark: ``fit_ensemble`` of M members against a loop of M ``fit`` calls.

Paper 000's Table 2 trains 2 x 512 ReLU networks with batches of 10 (MPE, baseline) or 92 (FFE):
each step is small, so one model at a time leaves the machine mostly idle. This script trains
the same M models on the same data both ways, in one run, and reports **member-steps per
second** (optimization steps summed over members, divided by the wall time of the epochs' steps,
``History.epoch_seconds``: no evaluation, the first epoch left out as warm-up) and the ratio.

Configurations: batch 10 with Table 2's MPE (k = 3, resolutions 96 and 277), batch 92 with its
FFE (L = 6); RGB targets from a photo (``--side`` pixels a side, default 32: 1024 samples, so
103 steps an epoch at batch 10); M = 1, 5, 20; float32; SGD at Table 2's learning rates.
Before timing, the first member of each ensemble is checked against its ``fit`` twin.

Usage::

    python benchmarks/train_bench.py                   # CPU
    python benchmarks/train_bench.py --device cuda --members 1 5 20 100

Results: ``benchmarks/results/train_bench-<device>.json`` (written atomically).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--members", type=int, nargs="+", default=[1, 5, 20])
    p.add_argument("--side", type=int, default=32, help="image side in pixels (N = side^2 samples)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per timing (the first is warm-up)")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/train_bench-<device>.json)")
    args = p.parse_args(argv)

    import torch

    from inrlib.data import load_image
    from inrlib.research.papers import TABLE2
    from inrlib.research.experiments import build_model
    from inrlib.io import write_json
    from inrlib.train import fit, fit_ensemble
    from ntk_bench import child_gemm

    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is left out as warm-up)")
    dev = args.device
    gemm0 = child_gemm({"device": dev})
    print(f"float32 GEMM 4096^3: {gemm0['gflops']:.0f} GFLOP/s; torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    coords, pixels, shape = load_image("astronaut", args.side)
    img = pixels.reshape(shape)                                     # (side, side, 3) in [0, 1]
    targets = [torch.roll(img, shifts=(3 * m, 5 * m), dims=(0, 1)).reshape(-1, 3) for m in range(max(args.members))]
    n = coords.shape[0]
    rows = []
    for batch, name in ((10, "mpe"), (92, "ffe")):
        cfg = TABLE2[name]
        steps = -(-n // batch)
        kw = dict(epochs=args.epochs, lr=cfg.lr, batch_size=batch, full_eval=False, progress=False)
        for M in args.members:
            models = [build_model(cfg, 2, 3, seed=m).to(dev) for m in range(M)]
            twins = copy.deepcopy(models)
            hists = fit_ensemble(models, coords, targets[:M], **kw)
            loop_seconds = 0.0
            for m in range(M):
                h = fit(twins[m], coords, targets[m], seed=m, **kw)
                loop_seconds += statistics.median(h.epoch_seconds[1:])
                if m == 0:
                    gap = max(float((a - b).detach().abs().max()) for a, b in zip(models[0].parameters(), twins[0].parameters()))
            ens_seconds = statistics.median(hists[0].epoch_seconds[1:])
            row = {"encoding": name, "batch_size": batch, "members": M, "steps_per_epoch": steps,
                   "ensemble_member_steps_per_s": M * steps / ens_seconds,
                   "loop_member_steps_per_s": M * steps / loop_seconds,
                   "speedup": loop_seconds / ens_seconds, "max_param_gap_member0": gap}
            rows.append(row)
            print(f"{name:4s} batch {batch:3d}  M {M:3d}: ensemble {row['ensemble_member_steps_per_s']:9.0f} "
                  f"member-steps/s, fit loop {row['loop_member_steps_per_s']:8.0f}, x{row['speedup']:.2f} "
                  f"(member 0 gap {gap:.1e})", flush=True)
    gemm1 = child_gemm({"device": dev})
    results = {"device": dev, "platform": platform.platform(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "side": args.side, "epochs": args.epochs,
               "gemm_gflops": {"start": gemm0["gflops"], "end": gemm1["gflops"]},
               "load_average_end": os.getloadavg(), "rows": rows}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"train_bench-{dev.replace(':', '')}.json"
    write_json(out, results)
    print(f"float32 GEMM at the end: {gemm1['gflops']:.0f} GFLOP/s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
