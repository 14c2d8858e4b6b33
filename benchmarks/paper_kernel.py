#!/usr/bin/env python
"""The largest kernel of the paper profiles, snapshot after snapshot: the Weyl chapter's per-group NTK
(``empirical_ntk(model, x, groups=True)``: total, MLP and grid kernels) of its MPE model (grids
64 and 128, k = 2, two hidden layers of 512) on the 128 x 128 pixel grid, N = 16,384, and the
spectrum of its total kernel on the same device.

A training run takes such a snapshot at several epochs: the second one used to be refused on a
GPU, because the memory the caching allocator kept from the first counted as used. Each snapshot
prints its time, the memory the engine counted as available before it and the peak it reached.

    python benchmarks/paper_kernel.py --device cuda            # N = 16384 (about 34 GiB a snapshot)
    python benchmarks/paper_kernel.py --side 32 --snapshots 2  # a CPU-sized rehearsal
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inrlib.book.studies.weyl import model_from_config  # noqa: E402
from inrlib.ntk import available_memory, empirical_ntk, spectrum  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--side", type=int, default=128, help="pixels a side (N = side^2); the grids are side/2 and side")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--snapshots", type=int, default=3)
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    s = args.side
    config = dict(name="paper", encoding=dict(type="multigrid", resolutions=[s // 2, s], features=2),
                  hidden=[args.width, args.width], seed=0)
    model = model_from_config(config, 2, 3).to(dev)
    grid = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    x = torch.cartesian_prod(grid, grid).to(dev)
    gib = 2 ** 30
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'host'}), torch {torch.__version__}, "
          f"N = {x.shape[0]}, {sum(q.numel() for q in model.parameters())} parameters")
    for i in range(args.snapshots):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            torch.cuda.synchronize(dev)
        avail = available_memory(dev)
        t0 = time.perf_counter()
        K = empirical_ntk(model, x, groups=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t1 = time.perf_counter()
        ev = spectrum(K["total"])
        t2 = time.perf_counter()
        peak = torch.cuda.max_memory_allocated(dev) / gib if dev.type == "cuda" else float("nan")
        held = torch.cuda.memory_reserved(dev) / gib if dev.type == "cuda" else float("nan")
        print(f"snapshot {i + 1}: kernels {t1 - t0:6.1f} s, spectrum {t2 - t1:5.1f} s; available before {avail / gib:6.1f} GiB, "
              f"peak {peak:6.1f} GiB, allocator holds {held:6.1f} GiB; lambda_max {ev[0]:.4g}, "
              f"K_total dtype {K['total'].dtype}", flush=True)
        del K
    return 0


if __name__ == "__main__":
    sys.exit(main())
