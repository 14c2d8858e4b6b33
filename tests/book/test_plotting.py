"""inrlib.book.plotting: the figures shared by chapters draw what they say (checked on the artists)."""
import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from inrlib.book import plotting as P

matplotlib.use("Agg")


def _curve(top, n, length=50):
    mean = 10.0 ** np.linspace(top, top - 12, length)
    return {"mean": mean, "lo": mean / 2, "hi": mean * 2, "floor": 10.0 ** (top - 9), "n": n}


# ----------------------------------------------------------------------------- reconstruction_grid
def test_reconstruction_grid_shows_truth_fits_and_their_error_maps():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (6, 5, 3))
    fits = [(np.clip(truth + rng.normal(0, 0.1, truth.shape), 0, 1), "A\n30.0 dB"), (None, "diverged"),
            (truth * 0.5, "B")]
    fig = Figure()
    axes = P.reconstruction_grid(fig, truth, fits, vmax=0.3, truth_title="the photo", error_title="|error|")
    assert axes.shape == (2, 4)
    assert [a.get_title() for a in axes[0]] == ["the photo", "A\n30.0 dB", "", "B"]
    assert [a.get_title() for a in axes[1]] == ["", "|error|", "", "|error|"]
    assert [len(a.images) for a in axes.ravel()] == [1, 1, 0, 1, 0, 1, 0, 1]
    assert not axes[0, 2].axison and not axes[1, 2].axison and not axes[1, 0].axison   # empty cells
    for col, (image, _) in ((1, fits[0]), (3, fits[2])):
        im = axes[1, col].images[0]
        np.testing.assert_allclose(im.get_array(), np.abs(image - truth).mean(axis=2), rtol=0, atol=1e-15)
        assert im.get_clim() == (0, 0.3) and im.get_cmap().name == "magma"
        np.testing.assert_allclose(axes[0, col].images[0].get_array(), image)
    np.testing.assert_allclose(axes[0, 0].images[0].get_array(), truth)
    assert len(fig.axes) == 2 * 4 + 1                                     # one colour bar, for the error row


# ----------------------------------------------------------------------------- plot_mean_spectra
def test_mean_spectra_draw_two_epochs_bands_floors_and_labels():
    x = np.linspace(0, 1, 50)
    curves = {5: {"mpe": _curve(3, 4), "ffe": _curve(2, 4), "baseline": None},
              10: {"mpe": _curve(4, 4), "ffe": _curve(1, 1), "baseline": _curve(0, 3)}}
    colors = {"mpe": "#006d2c", "ffe": "#08519c", "baseline": "#d62728"}
    labels = {"mpe": "MPE", "ffe": "FFE", "baseline": "Baseline"}
    fig = Figure()
    ax = fig.subplots()
    P.plot_mean_spectra(ax, curves, x, names=["mpe", "ffe", "baseline"], epochs=(5, 10), colors=colors,
                        labels=labels, count="photos", band_from=2, xlabel="u", ylabel="eigenvalue", title="Fig. 5a")
    lines = ax.get_lines()
    curves_drawn = [ln for ln in lines if np.size(ln.get_xdata()) == x.size]
    floors = [ln for ln in lines if ln.get_linestyle() == ":"]
    # mid (dashed) for mpe and ffe, end (solid) for all three; the baseline has no curve at mid
    assert [(to_hex(ln.get_color()), ln.get_linestyle()) for ln in curves_drawn] == [
        ("#006d2c", "--"), ("#006d2c", "-"), ("#08519c", "--"), ("#08519c", "-"), ("#d62728", "-")]
    np.testing.assert_array_equal(curves_drawn[1].get_xdata(), x)
    np.testing.assert_array_equal(curves_drawn[1].get_ydata(), curves[10]["mpe"]["mean"])
    # one dotted floor per end curve, at its floor, in its colour
    assert [(ln.get_ydata()[0], to_hex(ln.get_color())) for ln in floors] == [
        (curves[10][n]["floor"], colors[n]) for n in ("mpe", "ffe", "baseline")]
    # bands only for curves averaging >= band_from spectra (the FFE's end curve has one): mpe and baseline
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [to_hex(b.get_facecolor()[0]) for b in bands] == ["#006d2c", "#d62728"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MPE (4 photos)", "FFE (1 photos)",
                                                                   "Baseline (3 photos)"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "u" and ax.get_ylabel() == "eigenvalue"
    assert ax.get_title() == "Fig. 5a" and ax.title.get_fontsize() == 9
    assert ax.get_ylim()[0] >= min(curves[10][n]["floor"] for n in labels) / 10 ** 4 * (1 - 1e-12)   # clipped


def test_mean_spectra_one_epoch_no_count_and_default_band():
    x = np.arange(1, 51)
    curves = {7: {"a": _curve(2, 1), "b": _curve(1, 2)}}
    fig = Figure()
    ax = fig.subplots()
    P.plot_mean_spectra(ax, curves, x, names=["a", "b"], epochs=(7, 7), colors={"a": "C0", "b": "C1"},
                        labels={"a": "A", "b": "B"}, xlabel="i")
    assert [ln.get_linestyle() for ln in ax.get_lines() if np.size(ln.get_xdata()) == 50] == ["-", "-"]  # no dashed copy
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2      # band_from=1: every curve
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"] and ax.get_ylabel() == ""


# ----------------------------------------------------------------------------- display
def test_figure_png_and_show_figure(monkeypatch, tmp_path):
    import IPython.display
    import matplotlib.pyplot as plt
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    png = P.figure_png(fig, dpi=50)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    P.show_figure(fig, path=tmp_path / "f.png", dpi=50)
    assert shown[0].data == png and (tmp_path / "f.png").read_bytes() == png
    managed = plt.figure()
    P.show_figure(managed, dpi=20)
    assert not plt.fignum_exists(managed.number)                         # a pyplot figure is closed once shown


def test_widgets_show_the_plotting_layers_figures():
    from inrlib.book import widgets as W
    assert W.figure_png is P.figure_png and W.show_figure is P.show_figure and W.draw_explorer is P.draw_explorer


@pytest.mark.parametrize("name", P.__all__)
def test_every_listed_name_exists(name):
    assert callable(getattr(P, name))
