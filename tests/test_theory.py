"""Paper 000's kernel algebra by hand (inrlib.research.theory) against the engine, the Weyl chains, and the widgets' logic."""
import math

import numpy as np
import pytest
import torch

from inrlib.book import markdown_table
from inrlib.book.plotting import draw_explorer, figure_png
from inrlib.book.studies.theory import explorer_config, explorer_state, grid_levels
from inrlib.book.studies.weyl import chain_b_verdict, weyl_chains, weyl_study
from inrlib.book.widgets import explorer_figure, ntk_explorer
from inrlib.encodings import FourierEncoding, HashGridEncoding, IdentityEncoding, MultigridEncoding
from inrlib.models import CoordinateMLP, ModelConfig
from inrlib.ntk import empirical_ntk
from inrlib.research.theory import (
    bilinear_cell,
    bilinear_check,
    embed,
    embedding_sensitivities,
    grid_term,
    interpolation_matrix,
    one_hidden_layer_ntk,
    relative_error,
)

TOL = 1e-12


def net(encoding, hidden=(32,), out=1, activation="relu", seed=0):
    torch.manual_seed(seed)
    return CoordinateMLP(encoding, list(hidden), out, activation)


# ---------------------------------------------------------------------------- Eq. 8-9, 14
@pytest.mark.parametrize("make", [lambda: IdentityEncoding(2), lambda: FourierEncoding(2, 3),
                                  lambda: MultigridEncoding(2, [4, 9], 2)])
@pytest.mark.parametrize("activation,out", [("relu", 1), ("tanh", 3)])
def test_eq9_by_hand_is_the_engines_mlp_group(make, activation, out):
    model = net(make(), out=out, activation=activation)
    x = torch.rand(30, 2)
    K = empirical_ntk(model, x, groups=True)
    H = one_hidden_layer_ntk(model, x)
    assert relative_error(H["total"], K["mlp"]) < TOL
    assert relative_error(H["W2"] + H["W1"] + H["b1"] + H["b2"], H["total"]) < TOL
    # every term matters: leaving the output bias (which Eq. 8 omits) out is detectably wrong
    assert relative_error(H["total"] - H["b2"], K["mlp"]) > 1e-3
    assert relative_error(H["total"] - H["W1"], K["mlp"]) > 1e-3


def test_eq9_refuses_deeper_networks():
    with pytest.raises(ValueError, match="one hidden layer"):
        one_hidden_layer_ntk(net(IdentityEncoding(2), hidden=(8, 8)), torch.rand(4, 2))


def test_eq14_fourier_kernel_is_the_mlp_on_the_embedding():
    model = net(FourierEncoding(2, 4), hidden=(16, 16))
    x = torch.rand(25, 2)
    K = empirical_ntk(model, x, groups=True)
    assert float(K["grid"].abs().max()) == 0.0
    assert relative_error(empirical_ntk(model.mlp, embed(model, x)), K["total"]) < TOL


# ---------------------------------------------------------------------------- Eq. 2, 11
def test_eq2_and_eq11_from_the_cell_geometry():
    torch.manual_seed(1)
    enc = MultigridEncoding(2, [3, 6], features=2, init_std=1.0)
    for level in (0, 1):
        c = bilinear_check(enc, torch.rand(40, 2, dtype=torch.float64), level)
        assert c["eq2_max_abs_error"] < 1e-12 and c["eq11_max_rel_error"] < 1e-12
        assert c["min_nonzeros"] == c["max_nonzeros"] == 4 and c["max_partition_error"] < 1e-12
    one = bilinear_cell(enc, (0.3, 0.8), level=1, feature=1)
    assert one["grad_eq11"].shape == (2, 2) and abs(one["grad_eq11"].sum() - 1) < 1e-12
    # the outer product is not symmetric in x and y: swapping the axes would be caught
    c = bilinear_cell(enc, (0.13, 0.71), level=1)
    assert np.abs(c["grad_eq11"] - c["grad_eq11"].T).max() > 1e-3
    with pytest.raises(ValueError, match="2D MultigridEncoding"):
        bilinear_cell(MultigridEncoding(1, [4], 1), (0.5,))


# ---------------------------------------------------------------------------- Eq. 12-13
def test_interpolation_matrix_reproduces_the_encoding():
    torch.manual_seed(2)
    enc = MultigridEncoding(2, [5, 7], features=3, init_std=1.0).double()
    x = torch.rand(20, 2, dtype=torch.float64)
    for level in (0, 1):
        S = interpolation_matrix(enc, x, level).to_dense()
        assert S.shape == (20, enc.resolutions[level] ** 2)
        assert torch.allclose(S.sum(1), torch.ones(20, dtype=torch.float64))
        assert torch.allclose(S @ enc.tables[level], enc.interpolate(x, level), atol=1e-13)


@pytest.mark.parametrize("dim", [1, 2])
def test_grid_term_by_hand_equals_the_engine(dim):
    model = net(MultigridEncoding(dim, [4, 11], 2), hidden=(24,), out=2)
    x = torch.rand(35, dim)
    K = empirical_ntk(model, x, groups=True)
    for method in ("formula", "autograd"):
        G = grid_term(model, x, method)
        assert relative_error(G["total"], K["grid"]) < TOL
        for level in (0, 1):
            assert relative_error(G[f"level{level}"], K[f"encoding.level{level}"]) < TOL
    # E E^T alone (without the interpolation overlap S S^T) is not the grid term
    E = embedding_sensitivities(model, x).reshape(35, -1)
    assert relative_error(E @ E.T, K["grid"]) > 0.1


def test_grid_term_with_hash_collisions_and_a_deep_mlp():
    enc = HashGridEncoding(2, levels=2, features=2, log2_table_size=4, min_resolution=3, max_resolution=9)
    model = net(enc, hidden=(16, 16))
    x = torch.rand(30, 2)
    K = empirical_ntk(model, x, groups=True)
    assert relative_error(grid_term(model, x)["total"], K["grid"]) < TOL
    with pytest.raises(ValueError, match="one hidden layer"):
        grid_term(model, x, method="formula")


def test_sensitivity_formula_matches_autograd():
    model = net(MultigridEncoding(2, [3, 5], 2), hidden=(20,), out=3)
    x = torch.rand(12, 2)
    a, f = embedding_sensitivities(model, x, "autograd"), embedding_sensitivities(model, x, "formula")
    assert a.shape == (12, 3, model.encoding.out_features)
    assert relative_error(f, a) < TOL


# ---------------------------------------------------------------------------- Theorem 1
def _psd(n, rank, seed):
    g = torch.Generator().manual_seed(seed)
    F = torch.randn(n, rank, generator=g, dtype=torch.float64)
    return F @ F.T


def test_weyl_chains_on_known_matrices():
    A, B = _psd(30, 30, 0), _psd(30, 12, 1)          # B rank-deficient: lambda_n(B) = 0
    r = weyl_chains(A + B, A, B, A)
    assert r["a_holds"] and r["ineq1_holds"] and r["c_holds"] and r["b_holds"]
    assert abs(r["lambda_n_grid"]) <= r["floor_grid"]
    # a "baseline" with a larger top eigenvalue breaks chain (b) at the top, not chain (a)
    base = A + 50 * torch.outer(torch.ones(30, dtype=torch.float64), torch.ones(30, dtype=torch.float64))
    r = weyl_chains(A + B, A, B, base)
    assert r["a_holds"] and not r["c_holds"] and r["c_first_fail"] == 0 and r["c_worst_ratio"] < 1
    assert 0 < r["c_fraction_fail"] < 0.2
    # a total that is not mlp + grid can violate chain (a): the check is not vacuous
    I = torch.eye(30, dtype=torch.float64)
    shift = 2 * float(torch.linalg.eigvalsh(B)[-1])      # beyond Weyl's upper bound lambda_i(A) + lambda_1(B)
    A2 = A + 2 * shift * I                               # keeps the shifted total positive definite
    r = weyl_chains(A2 + B - shift * I, A2, B, A2)
    assert not r["a_holds"] and r["a_violations"] > 0 and r["sum_relative_error"] > 1e-3
    assert set(r["spectra"]) >= {"total", "mlp", "grid", "base", "ratio"}


def test_chain_b_verdict_thresholds():
    row = {"c_holds": False, "c_fraction_fail": 0.005, "c_worst_ratio": 0.8}
    assert chain_b_verdict(row) == "approximately"
    assert chain_b_verdict({**row, "c_worst_ratio": 0.2}) == "fails"
    assert chain_b_verdict({**row, "c_fraction_fail": 0.3}) == "fails"
    assert chain_b_verdict({**row, "c_holds": True}) == "holds"


def test_weyl_study_small_run():
    torch.manual_seed(0)
    t = (torch.arange(5, dtype=torch.float32) + 0.5) / 5
    coords = torch.stack(torch.meshgrid(t, t, indexing="xy"), -1).reshape(-1, 2)
    targets = torch.rand(25, 1)
    def grid(r):
        return {"encoding": {"type": "multigrid", "resolutions": r, "features": 2}, "hidden": [8, 8]}

    configs = [{"name": "a", "model": grid([3, 5]), "seed": 0},
               {"name": "b", "model": grid([5]), "seed": 0},
               {"name": "c", "model": ModelConfig.from_dict(grid([5])), "seed": 1}]             # an object or its dict
    out = weyl_study(configs, (coords, targets), ("init", "end"), epochs=2,
                     train={"lr": 0.5, "batch_size": 10})
    assert [(r["config"], r["stage"], r["epoch"]) for r in out["rows"]] == [
        ("a", "init", 0), ("a", "end", 2), ("b", "init", 0), ("b", "end", 2), ("c", "init", 0), ("c", "end", 2)]
    assert all(r["a_holds"] and r["ineq1_holds"] for r in out["rows"])
    assert all(r["sum_relative_error"] < TOL for r in out["rows"])
    h = out["histories"]
    assert h["a"]["base"] is h["b"]["base"] and h["c"]["base"] is not h["a"]["base"]   # one baseline per seed
    assert out["rows"][1]["psnr_mpe"] == pytest.approx(h["a"]["mpe"].psnr[-1])
    with pytest.raises(ValueError, match="unique"):
        weyl_study([configs[0], configs[0]], (coords, targets), epochs=1, train={"lr": 0.1})
    flat = {"name": "d", **grid([5])}                      # the old format
    with pytest.raises(ValueError, match=r"got keys \['encoding', 'hidden', 'name'\]: put the network's settings"):
        weyl_study([flat], (coords, targets), epochs=1)


def test_markdown_table():
    text = markdown_table([{"a": 1, "b": 0.123456, "c": True}, {"a": 2, "b": 1e-9, "c": False}],
                          {"A": "a", "B": "b", "C": "c", "twice": lambda r: str(2 * r["a"])}, {"B": ".2e"})
    lines = text.splitlines()
    assert lines[0] == "| A | B | C | twice |" and lines[2] == "| 1 | 1.23e-01 | yes | 2 |"
    assert lines[3] == "| 2 | 1.00e-09 | **no** | 4 |"


# ---------------------------------------------------------------------------- widgets
def test_grid_levels():
    assert grid_levels(16, 3) == [4, 8, 16]
    assert grid_levels(5, 1) == [5]
    assert grid_levels(4, 4) == [2, 2, 2, 4]


@pytest.mark.parametrize("encoding", ["none", "fourier", "multigrid"])
def test_explorer_state(encoding):
    s = {t: explorer_state(encoding, 8, 2, 3, t, n_points=20, width=16) for t in ("total", "mlp", "grid")}
    K = s["total"]["K"]
    assert K.shape == (20, 20) and np.allclose(K, K.T)
    ev = s["total"]["eigenvalues"]
    assert np.all(np.diff(ev) <= 0) and s["total"]["floor"] > 0
    assert np.allclose(s["mlp"]["K"] + s["grid"]["K"], K, rtol=0, atol=1e-12 * np.abs(K).max())
    assert s["grid"]["zero"] == (encoding != "multigrid")
    with pytest.raises(ValueError, match="term"):
        explorer_state(encoding, term="everything")


def test_explorer_config_is_the_explorers_network_and_its_kernel_is_that_networks():
    """The explorer's 1D networks as ModelConfigs (ReLU, NTK parameterization, the grids of grid_levels),
    and explorer_state's kernel is the empirical NTK of that config built with the seed."""
    assert explorer_config("none", width=8, depth=3).to_dict() == {
        "encoding": {"type": "identity"}, "hidden": [8, 8, 8], "activation": "relu",
        "options": {"parameterization": "ntk", "beta": 0.1}, "output_activation": None, "out_features": None}
    assert explorer_config("fourier", fourier_levels=5).encoding == {"type": "fourier", "levels": 5}
    assert explorer_config("multigrid", 16, 3, features=1).encoding == {"type": "multigrid", "resolutions": [4, 8, 16],
                                                                        "features": 1}
    s = explorer_state("multigrid", 8, 2, term="grid", n_points=9, width=8, depth=1, seed=4)
    torch.manual_seed(4)
    model = CoordinateMLP(MultigridEncoding(1, [4, 8], 2), [8], 1, "relu")
    want = empirical_ntk(model, torch.linspace(0, 1, 9, dtype=torch.float64)[:, None], groups=True)["grid"]
    np.testing.assert_array_equal(s["K"], want.numpy())
    for bad, match in ((dict(encoding="wavelet"), r"^encoding must be one of \['fourier', 'multigrid', 'none'\]"),
                       (dict(encoding="fourier", fourier_levels=25), r"^fourier_levels must be in \[1, 24\], got 25$"),
                       (dict(encoding="multigrid", resolution=1), r"^multigrid needs resolution >= 2")):
        with pytest.raises(ValueError, match=match):
            explorer_config(**bad)


def test_explorer_figure_and_drawing():
    fig, states = explorer_figure([{"encoding": "none"}, {"encoding": "multigrid", "term": "grid"},
                                   {"encoding": "fourier", "term": "grid"}], n_points=16, width=8)
    assert len(states) == 3 and len(fig.axes) >= 6
    assert figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    fig = draw_explorer(states[0])
    spectrum_ax = fig.axes[1]
    assert spectrum_ax.get_yscale() == "log"
    assert any(np.allclose(line.get_ydata(), states[0]["floor"]) for line in spectrum_ax.get_lines())


def test_ntk_explorer_reacts_to_its_controls(monkeypatch):
    box = ntk_explorer(n_points=12, width=8, encoding="multigrid", resolution=8, levels=2)
    assert box.png[:4] == b"\x89PNG" and 'src="data:image/png;base64,' in box.image.value
    assert box.state["settings"]["resolutions"] == [4, 8]
    first = box.image.value
    box.controls["encoding"].value = "fourier"
    assert box.state["settings"]["encoding"] == "fourier" and box.image.value != first
    box.controls["fourier_levels"].value = 5
    assert box.state["settings"]["fourier_levels"] == 5
    box.controls["term"].value = "grid"
    assert box.state["zero"]
    import inrlib.book.widgets as W

    def broken(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(W, "explorer_state", broken)
    box.controls["levels"].value = 3                     # shown in the widget, not raised
    assert "boom" in box.message.value


def test_static_explorer_links_every_stack_to_its_control():
    from inrlib.book.widgets import STATIC_CLASS, static_explorer
    calls = []

    def picture(idx):
        calls.append(idx)
        return f"<p>{idx}</p>"

    box = static_explorer([("a", ["x", "y"]), ("b", ["1", "2", "3"])], picture, sliders=("b",), caption="hi")
    assert sorted(calls) == [(i, j) for i in range(2) for j in range(3)]
    assert STATIC_CLASS in box._dom_classes
    assert type(box.controls["a"]).__name__ == "Dropdown" and type(box.controls["b"]).__name__ == "SelectionSlider"
    # one stack at level 0, two at level 1: three links, each from a control's index to a stack's selected_index
    sources = [(l.source[0], l.source[1], l.target[1]) for l in box.links]
    assert sources.count((box.controls["a"], "index", "selected_index")) == 1
    assert sources.count((box.controls["b"], "index", "selected_index")) == 2
    # following the links by hand from a choice of indices reaches that picture
    root = box.children[-1]
    for i in range(2):
        for j in range(3):
            assert root.children[i].children[j] is box.pictures[(i, j)]
            assert box.pictures[(i, j)].value == f"<p>{(i, j)}</p>"
    with pytest.raises(ValueError, match="sliders"):
        static_explorer([("a", ["x"])], picture, sliders=("z",))
    with pytest.raises(ValueError, match="at least one option"):
        static_explorer([("a", [])], picture)


def test_live_explorer_draws_on_demand_and_caches():
    from inrlib.book.widgets import LIVE_CLASS, live_explorer
    calls = []

    def picture(idx):
        calls.append(idx)
        if idx == (1, 2):
            raise RuntimeError("no such run")
        return f"<p>{idx}</p>"

    box = live_explorer([("a", ["x", "y"]), ("b", ["1", "2", "3"])], picture, sliders=("b",), caption="hi")
    assert calls == [(0, 0)]                               # one picture up front, not six
    assert LIVE_CLASS in box._dom_classes and box.image.value == "<p>(0, 0)</p>"
    assert type(box.controls["b"]).__name__ == "SelectionSlider" and not box.controls["b"].continuous_update
    box.controls["b"].value = "2"
    assert box.indices == (0, 1) and box.image.value == "<p>(0, 1)</p>"
    box.controls["a"].value = 1                            # Dropdown values are the option indices
    assert box.indices == (1, 1) and box.image.value == "<p>(1, 1)</p>"
    box.controls["b"].value = "3"                          # a failing picture: the message says so, the image stays
    assert "no such run" in box.message.value and box.image.value == "<p>(1, 1)</p>" and box.indices == (1, 1)
    box.controls["b"].value = "2"
    box.controls["a"].value = 0
    assert box.message.value == "" and calls.count((0, 1)) == 1   # cached: drawn once
    with pytest.raises(ValueError, match="distinct names"):
        live_explorer([("a", ["x"]), ("a", ["y"])], picture)


def test_explorer_is_static_in_the_book_build_and_live_elsewhere(monkeypatch):
    from inrlib.book.widgets import LIVE_CLASS, STATIC_CLASS, explorer
    axes = [("a", ["x", "y"])]
    monkeypatch.setenv("INRLIB_STATIC_PAGE", "1")
    assert STATIC_CLASS in explorer(axes, lambda i: f"{i}")._dom_classes
    monkeypatch.delenv("INRLIB_STATIC_PAGE")
    assert LIVE_CLASS in explorer(axes, lambda i: f"{i}")._dom_classes
    assert STATIC_CLASS in explorer(axes, lambda i: f"{i}", live=False)._dom_classes


def test_theory_static_explorer_pictures_are_the_live_explorers(monkeypatch):
    import inrlib.book.widgets as W
    # a smaller grid of settings than the page's (63 pictures there): the same code, a third of the pictures
    monkeypatch.setattr(W, "STATIC_FOURIER_LEVELS", (2, 4))
    monkeypatch.setattr(W, "STATIC_RESOLUTIONS", (8, 16, 32))
    monkeypatch.setattr(W, "STATIC_LEVELS", (1, 2))
    from inrlib.book.widgets import STATIC_FOURIER_LEVELS, STATIC_LEVELS, STATIC_RESOLUTIONS, theory_static_explorer
    box = theory_static_explorer(n_points=8, width=4, dpi=20)
    dropdown = box.controls["encoding"]
    assert [o[0] for o in dropdown.options] == ["none (baseline MLP)", "Fourier features (FFE)", "multigrid (MPE)"]
    none, ffe, mpe = box.children[1].children
    assert len(none.pictures) == 3 and len(ffe.pictures) == len(STATIC_FOURIER_LEVELS) * 3
    assert len(mpe.pictures) == len(STATIC_RESOLUTIONS) * len(STATIC_LEVELS) * 3
    # a picture is the PNG of draw_explorer(explorer_state(...)) for its setting
    import base64
    live = figure_png(draw_explorer(explorer_state("multigrid", STATIC_RESOLUTIONS[2], STATIC_LEVELS[1], term="mlp",
                                                   n_points=8, width=4)), 20)
    html = mpe.pictures[(2, 1, 1)].value
    assert base64.b64encode(live).decode() in html


def test_weyl_chains_numbers_against_diagonal_closed_forms():
    """Diagonal kernels have their diagonals as spectra, so every field has a closed form; chain (b)
    (a baseline that is not the MPE's own mlp term) fails here while chain (a) holds."""
    n = 40
    rng = np.random.default_rng(0)
    mlp = np.sort(rng.uniform(1, 10, n))[::-1]
    grid = np.full(n, 0.5)
    base = np.sort(rng.uniform(0.1, 20, n))[::-1]
    base[-3:] = 0.0                                     # three eigenvalues at the floor
    D = lambda v: torch.diag(torch.tensor(v.copy(), dtype=torch.float64))   # noqa: E731
    r = weyl_chains(D(mlp + grid), D(mlp), D(grid), D(base))
    total = np.sort(mlp + grid)[::-1]
    eps = np.finfo(np.float64).eps
    floor_b = n * eps * base.max()
    assert r["floor_base"] == pytest.approx(floor_b)
    assert r["lambda_n_grid"] == pytest.approx(0.5) and r["a_holds"] and r["ineq1_holds"]
    assert r["a_min_slack"] == pytest.approx(0.0, abs=1e-12)
    # chain (b): lambda_i(base) <= lambda_i(total) fails wherever base is larger
    fail = base > total + (r["floor_total"] + floor_b)
    assert r["c_fraction_fail"] == pytest.approx(fail.mean()) and not r["c_holds"]
    assert r["c_first_fail"] == int(np.argmax(fail))
    resolved = base > floor_b
    ratio = total[resolved] / base[resolved]
    assert r["c_worst_ratio"] == pytest.approx(ratio.min())
    assert r["c_worst_index"] == int(np.flatnonzero(resolved)[ratio.argmin()])
    assert r["c_fraction_resolved"] == pytest.approx(resolved.mean())
    assert r["base_fraction_below_floor"] == pytest.approx(3 / n) and not r["p10_base_below_floor"]
    for q in (50, 10):
        expect = np.log10(np.percentile(total, q) / np.percentile(base, q))
        assert r[f"log10_ratio_p{q}"] == pytest.approx(expect)
        assert r[f"log10_ratio_mlp_vs_base_p{q}"] == pytest.approx(np.log10(np.percentile(mlp, q) / np.percentile(base, q)))
    assert r["log10_ratio_max"] == pytest.approx(np.log10(total[0] / base[0]))
    assert r["log10_ratio_min_floored"] == pytest.approx(np.log10(total[-1] / floor_b))
    b_slack = total - base - 0.5
    assert r["b_min_slack"] == pytest.approx(b_slack.min()) and r["b_argmin"] == int(b_slack.argmin())
    # a baseline spectrum passed in (a shared baseline decomposed once) gives the same numbers
    cached = weyl_chains(D(mlp + grid), D(mlp), D(grid), D(base), base_spectrum=np.sort(base)[::-1])
    assert {k: v for k, v in cached.items() if k != "spectra"} == pytest.approx(
        {k: v for k, v in r.items() if k != "spectra"}, nan_ok=True)
    with pytest.raises(ValueError, match="base_spectrum has shape"):
        weyl_chains(D(mlp + grid), D(mlp), D(grid), D(base), base_spectrum=base[:-1])


def test_weyl_study_end_kernels_are_taken_after_training():
    """The 'end' row's spectrum is the kernel of the model trained for all epochs (rebuilt and
    trained here independently), not the initial one."""
    from inrlib.book.studies.weyl import model_from_config
    from inrlib.ntk import spectrum
    from inrlib.train import fit
    torch.manual_seed(0)
    t = (torch.arange(5, dtype=torch.float32) + 0.5) / 5
    coords = torch.stack(torch.meshgrid(t, t, indexing="xy"), -1).reshape(-1, 2)
    targets = torch.rand(25, 1)
    config = {"name": "a", "model": {"encoding": {"type": "multigrid", "resolutions": [4], "features": 2},
                                     "hidden": [8, 8]}, "seed": 3}
    out = weyl_study([config], (coords, targets), ("init", "end"), epochs=3, train={"lr": 0.5, "batch_size": 10})
    model = model_from_config(config, 2, 1)
    ev0 = spectrum(empirical_ntk(model, coords))
    fit(model, coords, targets, epochs=3, lr=0.5, batch_size=10, seed=3, progress=False)
    ev3 = spectrum(empirical_ntk(model, coords))
    init, end = out["rows"]
    assert init["lambda_max_total"] == pytest.approx(ev0[0], rel=1e-10)
    assert end["lambda_max_total"] == pytest.approx(ev3[0], rel=1e-10)
    assert end["lambda_min_total"] == pytest.approx(ev3[-1], rel=1e-6, abs=1e-12)
    assert abs(ev3[0] - ev0[0]) > 1e-6 * ev0[0], "training should move the kernel"


# ----------------------------------------------------------------------------- the Weyl study's helpers and plots
def test_stage_epochs_by_name_or_epoch_and_their_bounds():
    from inrlib.book.studies.weyl import _stage_epochs
    assert _stage_epochs(("init", "middle", "end"), 9) == {"init": 0, "middle": 4, "end": 9}
    assert _stage_epochs(["end"], 6) == {"end": 6}
    assert _stage_epochs({"a": 0, "b": 7.0}, 7) == {"a": 0, "b": 7}
    with pytest.raises(ValueError) as err:
        _stage_epochs(("init", "late", "early"), 5)
    assert str(err.value) == "stages ['late', 'early'] unknown; use 'init', 'middle', 'end' or a dict name -> epoch"
    for bad in ({"x": -1}, {"x": 6}):
        with pytest.raises(ValueError) as err:
            _stage_epochs(bad, 5)
        assert str(err.value) == f"stage epochs {bad} must lie in [0, epochs=5]"


def test_psnr_at_reads_the_history_at_an_epoch():
    from types import SimpleNamespace

    from inrlib.book.studies.weyl import _psnr_at
    h = SimpleNamespace(initial={"psnr": 11.0}, psnr=[12.0, 13.0, 14.0], epochs=[2, 4, 6])
    assert _psnr_at(h, 0) == 11.0 and _psnr_at(h, 4) == 13.0 and _psnr_at(h, 6) == 14.0
    assert math.isnan(_psnr_at(h, 5)) and math.isnan(_psnr_at(None, 4))
    assert math.isnan(_psnr_at(SimpleNamespace(psnr=[1.0], epochs=[2, 4]), 2))       # misaligned: not trusted
    assert math.isnan(_psnr_at(SimpleNamespace(), 0)) and math.isnan(_psnr_at(SimpleNamespace(), 3))


def test_baseline_from_model_is_seeded():
    from inrlib.book.studies.weyl import baseline_from_model, model_from_config
    cfg = dict(name="c", model=ModelConfig(dict(type="multigrid", resolutions=[4, 8], features=2), (8, 8)), seed=3)
    model = model_from_config(cfg, 2, 1)
    torch.manual_seed(3)
    by_hand = CoordinateMLP(MultigridEncoding(2, [4, 8], 2), [8, 8], 1, "relu")
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), by_hand.parameters()))
    a, b = baseline_from_model(model, 5), baseline_from_model(model, 5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    torch.manual_seed(5)
    want = model.without_encoding()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), want.parameters()))
    assert not torch.equal(next(baseline_from_model(model, 6).parameters()), next(a.parameters()))


def _weyl_spec():
    total = np.array([4.0, 2.0, 1.0, 1e-3])
    return {"total": total, "mlp": np.array([3.0, 1.5, 0.5, -1e-3]), "grid": np.array([1.0, 0.5, 0.2, 0.01]),
            "base": np.array([2.5, 1.0, 0.0, 1e-20]), "floor_total": 1e-9, "floor_base": 1e-11}


def test_plot_weyl_panel_draws_the_spectra_and_both_lower_bounds():
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from inrlib.book.plotting import plot_weyl_panel
    spec = _weyl_spec()
    ax = Figure().add_subplot()
    plot_weyl_panel(ax, spec, title="grids 4,8 / end", legend=True)
    lines = {l.get_label(): l for l in ax.get_lines()}
    lam_n = 0.01
    want = {"$\\lambda_i(K_{MLP})$, no encoding": (spec["base"], "C3", "-", 1.0),
            "(b) $\\lambda_i(K_{MLP}) + \\lambda_n(K^+)$": (spec["base"] + lam_n, "C3", "--", 1.6),
            "(a) $\\lambda_i(K_{mlp\\ on\\ \\gamma}) + \\lambda_n(K^+)$": (spec["mlp"] + lam_n, "C0", "--", 1.6),
            "$\\lambda_i(K_{MPE})$": (spec["total"], "k", "-", 1.2)}
    for label, (y, color, ls, lw) in want.items():
        line = lines[label]
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_array_equal(line.get_ydata(), np.where(y > 0, y, np.nan))     # 0 and below: not drawn
        assert to_rgba(line.get_color()) == to_rgba(color) and line.get_linestyle() == ls and line.get_linewidth() == lw
    floors = {l.get_label(): l.get_ydata()[0] for l in ax.get_lines() if l.get_linestyle() == ":"}
    assert floors == {"rounding floor, $K_{MPE}$": 1e-9, "rounding floor, no encoding": 1e-11}
    # the axis stops 4 decades below the lowest floor: the 1e-20 eigenvalue below it is not shown
    assert ax.get_xscale() == ax.get_yscale() == "log" and ax.get_ylim()[0] == pytest.approx(1e-15, rel=1e-12)
    assert ax.get_title() == "grids 4,8 / end" and ax.get_xlabel() == "index $i$ (descending)"
    assert ax.get_legend() is not None and ax.get_title(loc="center") == "grids 4,8 / end"
    ax2 = Figure().add_subplot()
    plot_weyl_panel(ax2, spec)
    assert ax2.get_legend() is None and ax2.get_title() == ""


def test_plot_weyl_ratio_draws_one_line_per_config_over_the_violation_band():
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from inrlib.book.plotting import plot_weyl_ratio
    spectra = {("a", "end"): {"ratio": np.array([1.5, 1.2, 0.9])}, ("b", "end"): {"ratio": np.array([3.0, 2.5])},
               ("a", "init"): {"ratio": np.array([9.0])}}
    ax = Figure().add_subplot()
    plot_weyl_ratio(ax, spectra, ["a", "b"], "end", title="end of training")
    lines = [l for l in ax.get_lines() if l.get_label() in ("a", "b")]
    assert [l.get_label() for l in lines] == ["a", "b"]
    np.testing.assert_array_equal(lines[0].get_ydata(), [1.5, 1.2, 0.9])
    np.testing.assert_array_equal(lines[1].get_xdata(), [1, 2])
    assert to_rgba(lines[0].get_color()) == to_rgba("C0") and to_rgba(lines[1].get_color()) == to_rgba("C1")
    unit = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert len(unit) == 1 and list(unit[0].get_ydata()) == [1.0, 1.0]
    lo, hi = ax.get_ylim()
    assert lo <= 0.5 and hi >= 3.0
    band = [p for p in ax.patches if p.get_label() == "ratio < 1: chain (b) violated"]
    assert len(band) == 1
    assert ax.get_title() == "end of training" and ax.get_xlabel() == "index $i$ (descending)"
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_weyl_claims_notes_and_units_word_for_word():
    from inrlib.book.studies.weyl import APPROX_MAX_FRACTION, APPROX_MIN_RATIO, weyl_claims
    s = {"n_cases": 1, "chain_a_holds_all": True, "chain_a_min_slack_over_tol": 12.3456, "chain_b_holds": 0,
         "chain_b_approximately": 1, "chain_b_fails": 0, "chain_b_worst_ratio": 0.98765, "chain_b_worst_case": "g / end"}
    a, b = weyl_claims(s)                                   # one case is enough to judge
    assert a["note"] == "every one of 1 cases (configs x stages) holds; smallest slack 12.3 x the rounding tolerance"
    assert a["unit"] == b["unit"] == "fraction of cases"
    assert b["note"] == (f"of 1 cases 0 hold, 1 approximately (violations at <= {APPROX_MAX_FRACTION:.0%} of the indices, "
                         f"worst ratio >= {APPROX_MIN_RATIO:g}), 0 fail; worst ratio 0.988 (g / end)")
    a, _ = weyl_claims({**s, "chain_a_holds_all": False})
    assert a["note"].startswith("not every one of 1 cases")
    with pytest.raises(ValueError) as err:
        weyl_claims({**s, "n_cases": 0})
    assert str(err.value) == "the Weyl summary has no cases (n_cases = 0): nothing to judge"


def test_plot_weyl_panel_styles_floors_title_and_legend():
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from inrlib.book.plotting import plot_weyl_panel
    ax = Figure().add_subplot()
    plot_weyl_panel(ax, _weyl_spec(), title="t", legend=True)
    floors = {l.get_label(): to_rgba(l.get_color()) for l in ax.get_lines() if l.get_linestyle() == ":"}
    assert floors == {"rounding floor, $K_{MPE}$": to_rgba("k"), "rounding floor, no encoding": to_rgba("C3")}
    assert ax.title.get_fontsize() == 9
    legend = ax.get_legend()
    assert legend._loc == 3 and all(t.get_fontsize() == 7 for t in legend.get_texts())   # 3: "lower left"
    assert any(line.get_visible() for line in ax.xaxis.get_gridlines())


def test_plot_weyl_ratio_title_size_and_grid():
    from matplotlib.figure import Figure

    from inrlib.book.plotting import plot_weyl_ratio
    ax = Figure().add_subplot()
    plot_weyl_ratio(ax, {("a", "end"): {"ratio": np.array([1.5, 0.8])}}, ["a"], "end")
    assert ax.get_title() == "" and ax.title.get_fontsize() == 9
    assert any(line.get_visible() for line in ax.yaxis.get_gridlines())


def test_kernels_at_epochs_trains_only_when_an_epoch_needs_it():
    from inrlib.book.studies.weyl import _kernels_at_epochs
    calls = []

    def trainer(model, coords, targets, **kw):
        calls.append(kw)
        for e in kw["snapshot_epochs"]:
            kw["callbacks"]["ntk"](model, e, None)
        return "history"

    model = torch.nn.Linear(2, 1)
    x, y = torch.rand(4, 2), torch.rand(4, 1)
    assert _kernels_at_epochs(model, x, y, [], {}, 0, trainer, lambda m: 1 / 0) == ({}, None)
    assert _kernels_at_epochs(model, x, y, [0], {}, 0, trainer, lambda m: m) == ({0: model}, None) and not calls
    kernels, history = _kernels_at_epochs(model, x, y, [6, 0, 3, 3], {"lr": 0.5, "progress": True}, 7, trainer,
                                          lambda m: "K")
    assert kernels == {0: "K", 3: "K", 6: "K"} and history == "history"
    assert calls == [{"epochs": 6, "seed": 7, "snapshot_epochs": [0, 3, 6], "callbacks": calls[0]["callbacks"],
                      "progress": True, "lr": 0.5}] and list(calls[0]["callbacks"]) == ["ntk"]
    _kernels_at_epochs(model, x, y, [2], {"lr": 0.5}, 1, trainer, lambda m: "K")
    assert calls[-1]["progress"] is False                       # quiet unless the settings say otherwise

    def lazy(model, coords, targets, **kw):
        return "h"

    with pytest.raises(RuntimeError) as err:
        _kernels_at_epochs(model, x, y, [0, 2], {}, 0, lazy, lambda m: "K")
    assert str(err.value) == "the trainer did not call the snapshot callback at epochs [0, 2]"
    k, h = _kernels_at_epochs(torch.nn.Linear(2, 1), x, y, [1], {"lr": 0.1}, 0, None, lambda m: "K")   # inrlib's fit
    assert k == {1: "K"} and h.epochs == [1]


def test_chain_b_verdict_boundaries():
    from inrlib.book.studies.weyl import APPROX_MAX_FRACTION, APPROX_MIN_RATIO
    row = {"c_holds": False, "c_fraction_fail": APPROX_MAX_FRACTION, "c_worst_ratio": APPROX_MIN_RATIO}
    assert chain_b_verdict(row) == "approximately"                 # both limits are inclusive
    assert chain_b_verdict({**row, "c_worst_ratio": float("nan")}) == "approximately"
    assert chain_b_verdict({**row, "c_fraction_fail": APPROX_MAX_FRACTION * 1.01}) == "fails"
    assert chain_b_verdict({**row, "c_worst_ratio": APPROX_MIN_RATIO * 0.99}) == "fails"
    assert chain_b_verdict({**row, "c_holds": True}) == "holds"


def test_weyl_study_on_the_first_points_with_unnamed_configs_and_their_own_settings():
    torch.manual_seed(0)
    coords, targets = torch.rand(12, 2), torch.rand(12, 1)
    grid = {"type": "multigrid", "resolutions": [3, 5], "features": 1}
    seen = []

    def trainer(model, x, y, **kw):
        seen.append((kw["seed"], kw["lr"], x.shape[0]))
        from inrlib.train import fit
        return fit(model, x, y, **kw)

    model = ModelConfig(grid, (6,))
    out = weyl_study([{"model": model, "train": {"lr": 0.05}},
                      {"model": model.to_dict(), "seed": 3}], (coords, targets), ("end",), epochs=1,
                     train={"lr": 0.2, "batch_size": 4}, ntk_points=7, fit=trainer)
    assert [r["config"] for r in out["rows"]] == ["config0", "config1"]
    assert all(s["total"].size == 7 for s in out["spectra"].values())         # the first 7 points only
    # config0: seed 0 and its own lr for both networks; config1: seed 3 and the common lr
    assert seen == [(0, 0.05, 12), (0, 0.05, 12), (3, 0.2, 12), (3, 0.2, 12)]


def test_weyl_chains_every_field_against_diagonal_closed_forms():
    """The fields the first closed-form test leaves out: floors of each term, tolerances as sums of the
    floors that enter, slack ratios, counts, positions, extremes and percentiles; then a kernel with no
    grid term (its floor 0) and a baseline with nothing resolved."""
    n = 40
    rng = np.random.default_rng(0)
    mlp = np.sort(rng.uniform(1, 10, n))[::-1]
    grid = np.full(n, 0.5)
    base = np.sort(rng.uniform(0.1, 20, n))[::-1]
    base[-3:] = 0.0
    D = lambda v: torch.diag(torch.tensor(v.copy(), dtype=torch.float64))   # noqa: E731
    r = weyl_chains(D(mlp + grid), D(mlp), D(grid), D(base), percentiles=(50, 25))
    total = np.sort(mlp + grid)[::-1]
    eps = np.finfo(np.float64).eps
    ft, fm, fb, fg = (n * eps * v.max() for v in (total, mlp, base, grid))
    assert r["n"] == n and (r["floor_total"], r["floor_mlp"], r["floor_grid"]) == pytest.approx((ft, fm, fg), rel=1e-12)
    assert r["lambda_n_grid_over_floor"] == pytest.approx(0.5 / fg)
    assert r["a_tol"] == pytest.approx(ft + fm + fg) and r["b_tol"] == pytest.approx(ft + fb + fg)
    a_slack, b_slack = total - mlp - 0.5, total - base - 0.5
    assert r["a_min_slack_over_tol"] == pytest.approx(a_slack.min() / (ft + fm + fg), abs=1e-3)
    assert r["b_min_slack_over_tol"] == pytest.approx(b_slack.min() / (ft + fb + fg))
    assert r["b_min_relative_slack"] == pytest.approx((b_slack / np.maximum(total, ft)).min())
    bad = b_slack < -(ft + fb + fg)
    assert (r["b_violations"], r["b_fraction_fail"], r["b_holds"]) == (int(bad.sum()), pytest.approx(bad.mean()), False)
    assert (r["a_violations"], r["a_fraction_fail"]) == (0, 0.0)
    fail, resolved = total - base < -(ft + fb), base > fb
    assert r["c_fraction_fail_resolved"] == pytest.approx((fail & resolved).sum() / resolved.sum())
    assert r["c_min_slack"] == pytest.approx((total - base).min())
    assert r["c_worst_position"] == pytest.approx(r["c_worst_index"] / (n - 1))
    assert (r["lambda_max_total"], r["lambda_max_base"], r["lambda_max_mlp"], r["lambda_max_grid"]) == pytest.approx(
        (total[0], base[0], mlp[0], 0.5))
    assert (r["lambda_min_total"], r["lambda_min_base"], r["lambda_min_mlp"]) == pytest.approx((total[-1], 0.0, mlp[-1]),
                                                                                                abs=1e-12)
    assert r["lambda_min_total_over_floor"] == pytest.approx(total[-1] / ft)
    assert r["lambda_min_mlp_over_floor"] == pytest.approx(mlp[-1] / fm)
    assert r["lambda_min_base_over_floor"] == pytest.approx(0.0, abs=1e-9)
    assert r["total_fraction_below_floor"] == 0.0 and r["mlp_fraction_below_floor"] == 0.0
    assert r["log10_ratio_min_mlp_vs_base_floored"] == pytest.approx(np.log10(mlp[-1] / fb))
    for key, arr in (("total", total), ("base", base), ("mlp", mlp)):
        assert r[f"p25_{key}"] == pytest.approx(np.percentile(arr, 25))
    assert r["p25_base_below_floor"] is False and "p10_total" not in r
    assert set(r["spectra"]) == {"total", "mlp", "grid", "base", "ratio", "floor_total", "floor_base", "floor_mlp",
                                 "floor_grid"}
    np.testing.assert_array_equal(np.isnan(r["spectra"]["ratio"]), ~resolved)
    # no grid term at all: its floor is 0 and the floor ratio undefined; inequality 1 holds at 0
    z = weyl_chains(D(mlp), D(mlp), D(np.zeros(n)), D(mlp))
    assert z["floor_grid"] == 0.0 and np.isnan(z["lambda_n_grid_over_floor"]) and z["ineq1_holds"]
    assert z["a_tol"] == pytest.approx(2 * n * eps * mlp.max())
    # a baseline of zeros: nothing resolved, no worst ratio
    e = weyl_chains(D(mlp), D(mlp), D(np.zeros(n)), D(np.zeros(n)))
    assert e["c_worst_index"] == -1 and np.isnan(e["c_worst_ratio"]) and np.isnan(e["c_worst_position"])
    assert e["c_fraction_resolved"] == 0.0 and e["c_fraction_fail_resolved"] == 0.0


def test_weyl_study_rows_describe_each_config_and_the_run():
    torch.manual_seed(0)
    coords, targets = torch.rand(10, 2), torch.rand(10, 1)
    cfg = {"name": "g", "model": {"encoding": {"type": "multigrid", "resolutions": [3, 6], "features": 2},
                                  "hidden": [5, 4]}, "seed": 2}
    out = weyl_study([cfg], (coords, targets), ("init", "end"), epochs=2, train={"lr": 0.1, "batch_size": 5},
                     ntk_points=8)
    from inrlib.book.studies.weyl import model_from_config
    counts = model_from_config(cfg, 2, 1).count_parameters()
    for row in out["rows"]:
        assert {k: row[k] for k in ("resolutions", "levels", "k", "hidden", "seed", "params_grid", "params_mlp")} == {
            "resolutions": [3, 6], "levels": 2, "k": 2, "hidden": [5, 4], "seed": 2,
            "params_grid": counts["encoding"], "params_mlp": counts["mlp"]}
    h = out["histories"]["g"]
    assert out["rows"][1]["psnr_base"] == pytest.approx(h["base"].psnr[-1]) and out["rows"][0]["psnr_base"] == \
        pytest.approx(h["base"].initial["psnr"])
    assert out["stage_epochs"] == {"init": 0, "end": 2} and out["n_points"] == 8 and 0 < out["seconds"] < 600
    # the shared baseline's spectrum is reused: the same numbers as decomposing it again
    s = out["spectra"][("g", "end")]
    np.testing.assert_allclose(s["base"], np.sort(s["base"])[::-1])


def test_plot_weyl_ratio_line_widths_band_and_limits():
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from inrlib.book.plotting import plot_weyl_ratio
    ax = Figure().add_subplot()
    names = [f"n{i}" for i in range(11)]
    plot_weyl_ratio(ax, {(n, "end"): {"ratio": np.array([1.2, 0.9])} for n in names}, names, "end")
    lines = [l for l in ax.get_lines() if l.get_label() in names]
    assert all(l.get_linewidth() == 1.1 for l in lines)
    assert to_rgba(lines[10].get_color()) == to_rgba("C0")                  # colours cycle through C0..C9
    unit, = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert to_rgba(unit.get_color()) == to_rgba("k") and unit.get_linewidth() == 1
    band, = [p for p in ax.patches if p.get_label() == "ratio < 1: chain (b) violated"]
    assert to_rgba(band.get_facecolor())[:3] == to_rgba("C3")[:3] and band.get_alpha() == 0.07 and band.get_zorder() == 0
    ys = band.get_path().transformed(band.get_patch_transform()).vertices[:, 1] if hasattr(band, "get_patch_transform") \
        else band.get_xy()[:, 1]
    assert max(ys) == pytest.approx(1.0)
    lo, hi = ax.get_ylim()
    assert lo == pytest.approx(0.5) and hi == pytest.approx(2.0)          # at least 0.5 to 2 around the data
