#!/usr/bin/env python
"""Draw the README's figure, ``docs/ntk_spectra.png``: the empirical NTK of a 1D ReLU network
(2 x 256, NTK parameterization) on 256 evenly spaced points without encoding, with Fourier features
and with a multigrid encoding (three levels, 448 grid values): the three kernel matrices and their spectra on one log scale, with
the float64 rounding floor. Computed by ``inrlib`` (``inrlib.book.widgets.explorer_state``), never drawn
by hand; run ``.venv/bin/python scripts/readme_figure.py`` to redraw it."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from inrlib.book.widgets import explorer_state, figure_png  # noqa: E402
from inrlib.io import atomic_write  # noqa: E402

SETTINGS = [("no encoding", dict(encoding="none"), "C3"),
            ("Fourier features, L = 6", dict(encoding="fourier", fourier_levels=6), "C0"),
            ("multigrid, grids 32, 64, 128, k = 2", dict(encoding="multigrid", resolution=128, levels=3), "k")]


def main() -> int:
    states = [explorer_state(**kw, n_points=256, width=256, seed=0) for _, kw, _ in SETTINGS]
    fig = Figure(figsize=(11, 3.3), layout="constrained")
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 1.7]})
    for ax, (title, _, _), s in zip(axes[:3], SETTINGS, states):
        ax.imshow(s["K"], extent=(0, 1, 1, 0), cmap="viridis", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("$x_j$")
    axes[0].set_ylabel("$x_i$")
    ax = axes[3]
    for (title, _, color), s in zip(SETTINGS, states):
        ev = s["eigenvalues"]
        ax.semilogy(np.arange(1, ev.size + 1), np.where(ev > 0, ev, np.nan), color=color, lw=1.5, label=title)
    floor = max(s["floor"] for s in states)
    ax.axhline(floor, color="0.4", ls="--", lw=1, label="float64 rounding floor (largest of the three)")
    top = max(float(s["eigenvalues"][0]) for s in states) * 10
    ax.set_ylim(floor / 1e3, top)
    ax.axhspan(floor / 1e3, floor, color="0.9")
    ax.set_xlabel("index $i$ (descending)")
    ax.set_ylabel("eigenvalue of the NTK")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(True, alpha=0.3)
    fig.suptitle("Empirical NTK of a 1D ReLU MLP (2 x 256, NTK parameterization) on 256 points: the kernels and "
                 "their spectra (grey: below float64 rounding)", fontsize=10)
    out = ROOT / "docs" / "ntk_spectra.png"
    out.parent.mkdir(exist_ok=True)
    atomic_write(out, figure_png(fig, dpi=110))
    print(f"wrote {out.relative_to(ROOT)}; eigenvalues below the floor: "
          + ", ".join(f"{t}: {s['n_below_floor']}" for (t, _, _), s in zip(SETTINGS, states)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
