"""Figure code the chapters share: spectra on a log scale with their rounding floors, image grids,
training curves.

Every function draws on :class:`matplotlib.figure.Figure` axes it is given (no pyplot state), so
it works under any backend; :func:`inrlib.book.widgets.show_figure` displays the result.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "clip_below_floor",
    "floor_line",
    "plot_spectrum",
    "image_panel",
    "image_grid",
    "error_map",
    "plot_curves",
    "label_map",
]


def clip_below_floor(ax, floors: Sequence[float], decades: float = 4.0) -> None:
    """Limit a log axis to ``decades`` decades below the lowest positive rounding floor: what lies
    further down is rounding noise and would only squash the rest of the plot."""
    positive = [f for f in floors if f > 0]
    if positive:
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, min(positive) / 10 ** decades), hi)


def floor_line(ax, value: float, color: str, label: str | None) -> None:
    """A dotted horizontal line at a rounding floor (nothing when the floor is not positive)."""
    if value > 0:
        ax.axhline(value, color=color, ls=":", lw=1, label=label)


def plot_spectrum(ax, eigenvalues: np.ndarray, *, floor: float | None = None, label: str | None = None,
                  color: Any = None, ls: str = "-", lw: float = 1.3, loglog: bool = False,
                  floor_label: str | None = None) -> None:
    """One spectrum (descending) against its index on a log y axis; non-positive values are not
    drawn, and ``floor`` (if given) is drawn as a dotted line in the same colour."""
    ev = np.asarray(eigenvalues, dtype=np.float64)
    i = np.arange(1, ev.size + 1)
    y = np.where(ev > 0, ev, np.nan)
    draw = ax.loglog if loglog else ax.semilogy
    (line,) = draw(i, y, color=color, ls=ls, lw=lw, label=label)
    if floor is not None:
        floor_line(ax, floor, line.get_color(), floor_label)


def image_panel(ax, image: np.ndarray, title: str = "", *, cmap: str | None = None, vmin: float | None = 0.0,
                vmax: float | None = 1.0, fontsize: int = 8) -> Any:
    """Show an ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` image without ticks; values clipped to
    ``[vmin, vmax]`` for colour images. Returns the ``AxesImage``."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        im = ax.imshow(np.clip(img, vmin if vmin is not None else 0.0, vmax if vmax is not None else 1.0),
                       interpolation="nearest")
    else:
        im = ax.imshow(img, cmap=cmap or "gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)
    return im


def error_map(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-pixel absolute error, averaged over colour channels: ``(H, W)``."""
    diff = np.abs(np.asarray(prediction, dtype=np.float64) - np.asarray(truth, dtype=np.float64))
    return diff.mean(axis=2) if diff.ndim == 3 else diff


def image_grid(fig, rows: Sequence[Sequence[Mapping[str, Any]]], *, colorbar_rows: Sequence[int] = ()) -> np.ndarray:
    """A grid of image panels: ``rows[r][c]`` is a dict of :func:`image_panel` arguments
    (``image``, ``title``, ``cmap``, ``vmin``, ``vmax``) or ``None`` for an empty cell. A colour bar is
    added to the right of each row listed in ``colorbar_rows``. Returns the axes array."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, row in enumerate(rows):
        last = None
        for c in range(n_cols):
            ax = axes[r, c]
            spec = row[c] if c < len(row) else None
            if spec is None:
                ax.axis("off")
                continue
            last = image_panel(ax, **spec)
        if r in colorbar_rows and last is not None:
            fig.colorbar(last, ax=list(axes[r]), shrink=0.8, pad=0.01)
    return axes


def plot_curves(ax, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, logy: bool = False,
                colors: Mapping[str, Any] | None = None, hline: float | None = None, hline_label: str | None = None,
                xlabel: str = "epoch", ylabel: str = "", title: str = "", legend: bool = True) -> None:
    """Curves ``{label: (x, y)}`` on one axis (log y with ``logy``), an optional horizontal line."""
    for k, (label, (x, y)) in enumerate(curves.items()):
        color = (colors or {}).get(label, f"C{k % 10}")
        (ax.semilogy if logy else ax.plot)(np.asarray(x), np.asarray(y, dtype=np.float64), color=color, lw=1.3,
                                          label=label)
    if hline is not None:
        ax.axhline(hline, color="0.3", ls="--", lw=1, label=hline_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize=7)


def label_map(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """An ``(H, W)`` integer label image as ``(H, W, 3)`` colours, one random colour per label
    (activation-region maps: neighbouring regions get unrelated colours)."""
    labels = np.asarray(labels)
    uniq, inverse = np.unique(labels, return_inverse=True)
    palette = np.random.default_rng(seed).uniform(0.05, 0.95, size=(uniq.size, 3))
    return palette[inverse.reshape(labels.shape)]
