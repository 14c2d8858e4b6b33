"""The book's figure code, and how a figure is shown: the studies draw nothing themselves, and a
figure that more than one chapter draws is one function here (a chapter's one-off figures stay in
its cells, built from these pieces).

- pieces: :func:`plot_spectrum` (a spectrum on a log scale with its rounding floor),
  :func:`floor_line`, :func:`clip_below_floor`, :func:`image_panel`, :func:`image_grid`,
  :func:`error_map`, :func:`label_map`, :func:`plot_curves` (training curves);
- figures of more than one chapter: :func:`reconstruction_grid` (truth, fits and their errors: the
  scaling and ImageNet chapters), :func:`plot_mean_spectra` (paper 000's Fig. 5a and 5b: the ImageNet
  and occupancy chapters);
- one study's figures: :func:`plot_weyl_panel`, :func:`plot_weyl_ratio` (Theorem 1),
  :func:`plot_verdict_counts` (the reproduction table), :func:`draw_explorer` (a 1D kernel and its
  spectrum: the Theory chapter's explorer);
- display: :func:`figure_png`, :func:`show_figure`.

Every function draws on :class:`matplotlib.figure.Figure` axes it is given or makes (no pyplot
state), so it works under any backend; :func:`show_figure` displays the result as a PNG.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

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
    "reconstruction_grid",
    "plot_mean_spectra",
    "plot_weyl_panel",
    "plot_weyl_ratio",
    "plot_verdict_counts",
    "draw_explorer",
    "figure_png",
    "show_figure",
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


# ----------------------------------------------------------------------------------------------
# figures of more than one chapter
# ----------------------------------------------------------------------------------------------

def reconstruction_grid(fig, truth: np.ndarray, fits: Sequence[tuple[np.ndarray | None, str]], *, vmax: float,
                        truth_title: str = "truth", error_title: str = "error") -> np.ndarray:
    """Top row: the ``(H, W, C)`` truth, then each fit ``(image, title)``; bottom row, under each fit: its
    :func:`error_map` on one colour scale ``[0, vmax]`` (magma) with a colour bar. A fit whose image is
    ``None`` (a diverged run) leaves both its cells empty. Returns the axes array (:func:`image_grid`)."""
    top = [{"image": truth, "title": truth_title}]
    bottom: list[dict[str, Any] | None] = [None]
    for image, title in fits:
        if image is None:
            top.append(None)
            bottom.append(None)
            continue
        top.append({"image": image, "title": title})
        bottom.append({"image": error_map(image, truth), "title": error_title, "cmap": "magma", "vmin": 0,
                       "vmax": vmax})
    return image_grid(fig, [top, bottom], colorbar_rows=[1])


def plot_mean_spectra(ax, curves: Mapping[int, Mapping[str, Mapping[str, Any] | None]], x: np.ndarray, *,
                      names: Sequence[str], epochs: tuple[int, int], colors: Mapping[str, Any],
                      labels: Mapping[str, str], count: str | None = None, band_from: int = 1, xlabel: str,
                      ylabel: str | None = None, title: str = "") -> None:
    """Paper 000's Fig. 5: spectra averaged over photos or meshes, per encoding, at two epochs.

    ``curves[epoch][name]`` is a :func:`inrlib.ntk.spectra.mean_resampled` curve (``mean``, ``lo``, ``hi``
    (10th and 90th percentiles), ``floor``, ``n`` spectra averaged; arrays as long as ``x``) or
    ``None`` (not drawn). ``epochs = (mid, end)``: dashed at ``mid``, solid at ``end`` (only ``end``
    when they are equal). At ``end`` each curve is labelled (``"<label> (<n> <count>)"`` when
    ``count`` is given, e.g. ``"photos"``), gets its 10th-90th percentile band when it averages at
    least ``band_from`` spectra, and its mean rounding floor as a dotted line; the y axis stops a
    few decades below the lowest floor (:func:`clip_below_floor`)."""
    mid, end = epochs
    floors = []
    for n in names:
        for e, ls in ((mid, "--"), (end, "-")):
            c = curves[e][n]
            if c is None or (ls == "--" and mid == end):      # one epoch: drawn once, solid
                continue
            label = (f"{labels[n]} ({c['n']} {count})" if count else f"{labels[n]}") if e == end else None
            ax.semilogy(x, c["mean"], color=colors[n], ls=ls, lw=1.4, label=label)
            if e == end:
                if c["n"] >= band_from:
                    ax.fill_between(x, c["lo"], c["hi"], color=colors[n], alpha=0.15, lw=0)
                floor_line(ax, c["floor"], colors[n], None)
                floors.append(c["floor"])
    clip_below_floor(ax, floors)
    ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


# ----------------------------------------------------------------------------------------------
# one study's figures
# ----------------------------------------------------------------------------------------------

def plot_weyl_panel(ax, spec: Mapping[str, Any], *, title: str = "", legend: bool = False) -> None:
    """Theorem 1 at one stage of one config (``spec``: a ``spectra`` entry of
    :func:`inrlib.book.studies.weyl.weyl_chains`): ``lambda_i(K_MPE)``, the two lower bounds (chain
    (a): own MLP term ``+ lambda_n(K^+)``; chain (b): un-encoded network ``+ lambda_n(K^+)``),
    ``lambda_i`` of the un-encoded network, and the rounding floors, on log-log axes. Non-positive
    values are not drawn."""
    lam_n = float(spec["grid"][-1])
    n = spec["total"].size
    i = np.arange(1, n + 1)

    def pos(v):
        return np.where(v > 0, v, np.nan)

    ax.loglog(i, pos(spec["base"]), color="C3", lw=1, label="$\\lambda_i(K_{MLP})$, no encoding")
    ax.loglog(i, pos(spec["base"] + lam_n), color="C3", lw=1.6, ls="--",
              label="(b) $\\lambda_i(K_{MLP}) + \\lambda_n(K^+)$")
    ax.loglog(i, pos(spec["mlp"] + lam_n), color="C0", lw=1.6, ls="--",
              label="(a) $\\lambda_i(K_{mlp\\ on\\ \\gamma}) + \\lambda_n(K^+)$")
    ax.loglog(i, pos(spec["total"]), color="k", lw=1.2, label="$\\lambda_i(K_{MPE})$")
    floor_line(ax, spec["floor_total"], "k", "rounding floor, $K_{MPE}$")
    floor_line(ax, spec["floor_base"], "C3", "rounding floor, no encoding")
    clip_below_floor(ax, [spec["floor_total"], spec["floor_base"]])
    ax.set_xlabel("index $i$ (descending)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower left")


def plot_weyl_ratio(ax, spectra: Mapping[tuple, Mapping[str, Any]], names: Sequence[str], stage: str, *,
                    title: str = "") -> None:
    """``lambda_i(K_MPE) / lambda_i(K_no encoding)`` against ``i`` (log-log) for several configs at one
    stage (``spectra[(name, stage)]["ratio"]``, NaN where either eigenvalue is at its rounding floor,
    so only resolved indices are drawn), over a band below 1: where the paper's chain (b) is violated."""
    for c, name in enumerate(names):
        spec = spectra[(name, stage)]
        r = spec["ratio"]
        ax.loglog(np.arange(1, r.size + 1), r, lw=1.1, color=f"C{c % 10}", label=name)
    ax.axhline(1.0, color="k", lw=1, ls="--")
    lo, hi = ax.get_ylim()
    lo, hi = min(lo, 0.5), max(hi, 2.0)
    ax.axhspan(lo, 1.0, color="C3", alpha=0.07, zorder=0, label="ratio < 1: chain (b) violated")
    ax.set_ylim(lo, hi)
    ax.set_xlabel("index $i$ (descending)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)


#: The colour of each verdict in :func:`plot_verdict_counts`.
VERDICT_COLOURS = {"holds": "#2da44e", "approximately": "#d4a72c", "differs": "#fb8f44", "fails": "#cf222e",
                   "not tested": "#afb8c1"}


def plot_verdict_counts(ax, counts: Mapping[str, Mapping[str, int]]) -> None:
    """Stacked horizontal bars of :func:`inrlib.book.studies.reproduction.counts_by_paper`'s ``counts``:
    one bar per paper of :data:`inrlib.research.papers.PAPERS` with any claim, one segment per verdict
    (:data:`inrlib.research.claims.VERDICTS` order) with its count written on it."""
    from ..research.claims import VERDICTS
    from ..research.papers import PAPERS
    papers = [p for p in PAPERS if sum(counts.get(p, {}).values())]
    labelled: set[str] = set()
    for y, p in enumerate(papers):
        left = 0
        for v in VERDICTS:
            n = counts[p][v]
            if n:
                ax.barh(y, n, left=left, color=VERDICT_COLOURS[v], edgecolor="white", label=None if v in labelled else v)
                labelled.add(v)
                ax.text(left + n / 2, y, str(n), ha="center", va="center", fontsize=9)
                left += n
    ax.set_yticks(range(len(papers)), [f"paper {p}" for p in papers])
    ax.invert_yaxis()
    ax.set_xlabel("claims")
    ax.legend(ncols=len(VERDICTS), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)


def draw_explorer(state: Mapping[str, Any], axes: Sequence[Any] | None = None, *, ylim: tuple | None = None):
    """Draw a state of :func:`inrlib.book.widgets.explorer_state`: the kernel matrix (left) and its
    spectrum on a log scale with the rounding floor (right), on ``axes`` (two) or a new figure.
    Returns the figure."""
    from matplotlib.figure import Figure
    if axes is None:
        fig = Figure(figsize=(9.5, 3.6), layout="constrained")
        axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.35]})
    ax_k, ax_s = axes
    fig = ax_k.figure
    K, ev, floor = state["K"], state["eigenvalues"], state["floor"]
    x = state["x"]
    im = ax_k.imshow(K, extent=(x[0], x[-1], x[-1], x[0]), cmap="viridis", interpolation="nearest")
    ax_k.set_xlabel("$x_j$")
    ax_k.set_ylabel("$x_i$")
    ax_k.set_title(state["label"], fontsize=9)
    fig.colorbar(im, ax=ax_k, shrink=0.85, label="$K(x_i, x_j)$")
    idx = np.arange(1, ev.size + 1)
    if state.get("zero"):
        ax_s.text(0.5, 0.5, "this term is exactly zero\n(no grid parameters)", ha="center", va="center",
                  transform=ax_s.transAxes)
        ax_s.set_yscale("log")
        ax_s.set_ylim(*(ylim or (1e-16, 1e4)))
        ax_s.set_xlim(1, ev.size)
    else:
        pos = np.where(ev > 0, ev, np.nan)
        ax_s.semilogy(idx, pos, ".-", ms=3, lw=1, color="C0", label="$\\lambda_i$ (> 0)")
        ax_s.axhline(floor, color="0.3", ls="--", lw=1, label=f"rounding floor {floor:.1e}")
        lo, hi = ylim if ylim is not None else ax_s.get_ylim()
        lo = min(lo, floor / 10)
        ax_s.axhspan(lo, floor, color="0.88", zorder=0, label="rounding noise")
        ax_s.set_ylim(lo, hi)
        n_np = int((ev <= 0).sum())
        title = f"{state['n_below_floor']} of {ev.size} eigenvalues at or below the floor"
        if n_np:
            title += f" ({n_np} $\\leq 0$, not drawn)"
        ax_s.set_title(title, fontsize=9)
        ax_s.legend(fontsize=8, loc="best")
    ax_s.set_xlabel("index $i$ (descending)")
    ax_s.set_ylabel("eigenvalue $\\lambda_i$")
    ax_s.grid(True, which="major", alpha=0.3)
    return fig


# ----------------------------------------------------------------------------------------------
# display
# ----------------------------------------------------------------------------------------------

def figure_png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def show_figure(fig, path: str | None = None, dpi: int = 100) -> None:
    """Display a figure as a PNG image in the notebook (any backend), optionally also writing it to ``path``.

    A pyplot-managed figure is closed afterwards, so it is not shown a second time.
    """
    from IPython.display import Image, display
    png = figure_png(fig, dpi)
    if path is not None:
        from ..io import atomic_write
        atomic_write(path, png)
    display(Image(data=png, format="png"))
    try:
        import matplotlib.pyplot as plt
        if plt.fignum_exists(getattr(fig, "number", -1)):
            plt.close(fig)
    except ImportError:  # pragma: no cover
        pass
