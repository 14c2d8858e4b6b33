"""Papers 001 and 002 studies: the sine network's closed-form NTK, bandwidths, Lemma 1, STAF's
initialization and its Kronecker equivalence, each against an independent computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import toeplitz

from inrlib.book.studies import bandwidth as B
from inrlib.book.studies import staf as T
from inrlib.models import CoordinateMLP
from inrlib.ntk import empirical_ntk

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def sine_net(kind, width, depth, *, dim=1, w=30.0, seed=0, dtype=torch.float32):
    """``bandwidth.sine_config`` through the one builder, seeded."""
    return CoordinateMLP.from_config(B.sine_config(kind, width, depth, w=w), dim=dim, seed=seed).to(dtype)


def staf_net(label, width, depth, *, seed=0, dtype=torch.float32, **options):
    """``staf.network_config`` (``tau``, ``w0``, ``shared``) through the one builder on 2D inputs, seeded."""
    return CoordinateMLP.from_config(T.network_config(label, width, depth, **options), dim=2, seed=seed).to(dtype)


def test_expected_ntk_is_the_mean_of_empirical_kernels():
    """Average the empirical NTK over 300 random narrow networks: it converges to the closed form,
    within a few Monte Carlo standard errors, entry by entry."""
    x = torch.tensor([[0.0], [0.1], [0.35], [0.8], [1.0]], dtype=torch.float64)
    Ks = torch.stack([empirical_ntk(sine_net("simple", 16, 1, w=3.0, seed=s, dtype=torch.float64), x)
                      for s in range(300)])
    E = B.expected_ntk(x, w=3.0, width=16)
    se = Ks.std(0) / math.sqrt(len(Ks))
    assert float(((Ks.mean(0) - E).abs() / se).max()) < 4.5
    # and a wrong width or w would be far off
    assert float(((Ks.mean(0) - B.expected_ntk(x, w=3.0, width=20)).abs() / se).max()) > 6


def test_bandwidth_of_the_closed_form_is_the_prediction():
    x = torch.linspace(0, 1, 200, dtype=torch.float64)[:, None]
    for w in (4.0, 10.0):
        G = B.expected_ntk(x, w=w, width=10 ** 7).numpy()          # the output-weight term dominates: ~ G
        m = B.measured_bandwidth(G, 1 / 199)
        assert m["bandwidth"] == pytest.approx(B.predicted_bandwidth(w), rel=0.01)
        assert m["tail"] == pytest.approx(2 * (1 - 0.9965), abs=0.003)      # P(|Z| > 4 * 0.6745) = 0.0070
        assert B.shift_invariance_error(G) < 1e-3


def test_shift_invariance_error_is_zero_for_toeplitz_and_not_otherwise():
    r = np.exp(-np.arange(50) / 7.0)
    assert B.shift_invariance_error(toeplitz(r)) < 1e-14
    x = np.linspace(0, 1, 50)
    assert B.shift_invariance_error(np.outer(x, x) + np.eye(50)) > 0.3


def test_band_limited_signal_has_its_maximum_frequency():
    x = np.arange(2 ** 16) / 1024                      # 64 units long: 1/64-cycle resolution
    y = B.band_limited_signal(x, 12.0, seed=3)
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    f = np.fft.rfftfreq(y.size, d=1 / 1024)
    assert np.abs(y).max() == pytest.approx(1.0)
    assert spec[np.abs(f - 12.0) < 0.05].max() > 0.1 * spec.max()          # the top frequency is there
    assert spec[f > 12.5].max() < 1e-3 * spec.max()                        # and nothing above it


def test_lemma1_through_the_library_layers():
    r = B.lemma1_check(128, seed=1)
    assert r["predicted"] == pytest.approx(2 / 128)
    assert abs(r["siren"] - r["predicted"]) < 4 * r["se_siren"]
    assert abs(r["simple"] - r["predicted"]) < 4 * r["se_simple"]


def test_layer_activations_are_the_sine_inputs_and_outputs():
    m = sine_net("siren", 8, 2, dim=2, w=30.0, seed=0, dtype=torch.float64)
    x = torch.rand(5, 2, dtype=torch.float64)
    acts = B.layer_activations(m, x)
    assert len(acts) == 2
    np.testing.assert_allclose(np.sin(acts[0]["pre"]), acts[0]["post"], atol=1e-12)
    first = m.mlp[0]
    np.testing.assert_allclose(acts[0]["pre"], (30.0 * first(x)).reshape(-1).detach().numpy(), atol=1e-12)


@pytest.mark.parametrize("init, var", [("normal", 1.0), ("laplace", 0.25)])
def test_staf_post_activations_are_exactly_normal(init, var):
    assert T.laplace_variance(3) == T.laplace_variance(9) == 0.25
    v = T.post_activation_draws(init, 5, z=-1.3, draws=100_000, seed=2)
    assert v.var() == pytest.approx(var, rel=0.02)
    ks = T.ks_against_normal(v / math.sqrt(var))
    assert ks["ks"] < ks["critical"]
    # and a wrong variance is detected by the same statistic
    assert T.ks_against_normal(v / math.sqrt(var) * 1.1)["ks"] > ks["critical"]


@pytest.mark.parametrize("shared", [False, True])
def test_a_staf_network_is_a_sine_network_of_width_n_tau(shared):
    m = staf_net("STAF", 12, 3, tau=4, seed=5, dtype=torch.float64, shared=shared)
    layers = T.sine_equivalent(m)
    assert [tuple(W.shape) for W, _ in layers] == [(48, 2), (48, 48), (48, 48), (1, 48)]
    x = torch.rand(64, 2, dtype=torch.float64)
    with torch.no_grad():
        assert float((T.run_equivalent(layers, x) - m(x)).abs().max()) < 1e-12
    if shared:             # W' = omega (x) W for the first layer
        d, a = m.mlp[0], m.mlp[1]
        W = d.w_scale * d.weight.detach()
        kron = torch.kron(W, a.frequencies.detach()[:, None])
        torch.testing.assert_close(layers[0][0], kron, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- gaps found by mutation testing
def test_ks_against_normal_is_scipys_test_on_a_seeded_subsample():
    from scipy import stats
    v = np.random.default_rng(4).standard_normal(30_000) * 1.02
    r = T.ks_against_normal(v)
    sub = np.random.default_rng(0).choice(v, 20_000, replace=False)      # n = 20000, seed 0, no repeats
    ref = stats.kstest(sub, "norm")
    assert set(r) == {"ks", "p", "critical", "n"} and r["n"] == 20_000
    assert r["ks"] == ref.statistic and r["p"] == ref.pvalue
    assert r["critical"] == pytest.approx(stats.kstwo.ppf(0.95, 20_000), rel=0.01)   # the 5 % critical value
    small = v[:500]
    assert T.ks_against_normal(small)["ks"] == stats.kstest(small, "norm").statistic     # fewer values: all of them
    assert T.ks_against_normal(small)["critical"] == pytest.approx(stats.kstwo.ppf(0.95, 500), rel=0.02)


def test_post_activation_draws_are_one_value_per_unit_and_seeded():
    v = T.post_activation_draws("normal", 3, z=0.7, draws=50)
    assert v.shape == (50,) and v.dtype == np.float64
    assert np.array_equal(v, T.post_activation_draws("normal", 3, z=0.7, draws=50, seed=0))
    assert not np.array_equal(v, T.post_activation_draws("normal", 3, z=0.7, draws=50, seed=1))


def test_network_config_builds_what_networks_says_with_its_defaults():
    from inrlib.layers import STAF, Sine
    # tau / w0 / shared go to the activations that have them, and only there
    assert T.network_config("STAF", 8, 2, tau=3, w0=9.0, shared=True).options.to_dict() == {
        "tau": 3, "w0": 9.0, "shared": True, "init": "normal"}
    assert T.network_config("SIREN", 8, 2, tau=3, w0=9.0).options.to_dict() == {"w0": 9.0}
    assert T.network_config("simple sine", 8, 2, w0=9.0).options.to_dict() == {"w": 10.0, "trainable_w": False}
    assert T.network_config("ReLU + MPE", 8, 3).to_dict()["options"] == {"parameterization": "ntk", "beta": 0.1}
    assert T.network_config("ReLU + MPE", 8, 3).hidden == (8, 8, 8)
    with pytest.raises(ValueError, match=r"^network must be one of \['STAF', .*got 'GELU'$"):
        T.network_config("GELU", 8, 1)
    for label, spec in T.NETWORKS.items():
        m = staf_net(label, 8, 2)
        acts = [type(x) for x in m.mlp if not type(x).__name__ == "Dense"]
        want = {"staf": STAF, "sine": Sine, "simple_sine": Sine, "relu": torch.nn.ReLU}[spec["activation"]]
        assert acts == [want, want], label
        assert type(m.encoding).__name__ == {"identity": "IdentityEncoding", "fourier": "FourierEncoding",
                                             "multigrid": "MultigridEncoding"}[spec["encoding"]["type"]], label
        assert next(m.parameters()).dtype == torch.float32
    assert staf_net("ReLU + FFE", 8, 1).encoding.levels == 8
    assert staf_net("ReLU + MPE", 8, 1).encoding.resolutions == [16, 64]
    assert float(staf_net("simple sine", 8, 1).mlp[1].w0) == 10.0 and float(staf_net("SIREN", 8, 1).mlp[1].w0) == 30.0
    staf = staf_net("STAF", 8, 2).mlp[1]
    assert staf.tau == 5 and not staf.shared and float(staf.frequencies.detach().max()) <= 30.0
    assert float(staf.frequencies.detach().max()) > 25.0                            # omega = w0 U[0, 1): w0 = 30
    assert (staf.amplitudes > 0).all()                                     # Rayleigh amplitudes
    assert (staf_net("STAF (Laplace init)", 8, 2).mlp[1].amplitudes < 0).any()   # sign(X) sqrt|X|
    assert torch.equal(staf_net("STAF", 8, 2).mlp[0].weight, staf_net("STAF", 8, 2, seed=0).mlp[0].weight)
    slow = staf_net("STAF", 8, 2, w0=5.0).mlp[1].frequencies.detach()
    assert float(slow.max()) <= 5.0 and float(staf_net("SIREN", 8, 1, w0=5.0).mlp[1].w0) == 5.0  # w0 reaches them


def test_the_equivalent_sine_network_carries_the_output_bias_and_refuses_other_models():
    m = staf_net("STAF", 6, 2, tau=3, seed=1, dtype=torch.float64)
    with torch.no_grad():
        m.mlp[-1].bias.normal_()                                          # non-zero: its sign matters
    x = torch.rand(20, 2, dtype=torch.float64)
    with torch.no_grad():
        assert float((T.run_equivalent(T.sine_equivalent(m), x.float()) - m(x)).abs().max()) < 1e-6
        assert float((T.run_equivalent(T.sine_equivalent(m), x) - m(x)).abs().max()) < 1e-12
    with pytest.raises(ValueError, match=r"^sine_equivalent needs a STAF CoordinateMLP \(Dense, STAF, \.\.\., Dense\)$"):
        T.sine_equivalent(staf_net("SIREN", 6, 2))


def test_train_and_kernels_reports_the_networks_own_kernels_and_psnr(monkeypatch, capsys):
    """The initial spectrum is the NTK of the freshly seeded network on the training pixels, the final
    one that of the trained network; the PSNRs are those of its predictions; a divergence is recorded
    (and then no final spectrum)."""
    from inrlib.data import image_split
    from inrlib.metrics import psnr
    from inrlib.ntk import empirical_ntk, spectrum
    side = 6
    siren = T.network_config("SIREN", 8, 1).to_dict()
    r = T.train_and_kernels("SIREN", siren, "astronaut", side, epochs=3, seed=2)   # a colour photo
    assert capsys.readouterr().err == ""                                  # no progress bar
    d = image_split("astronaut", side, grayscale=True, heldout=(2 * side - 1) ** 2)
    fresh = staf_net("SIREN", 8, 1, seed=2)
    np.testing.assert_allclose(r["spectrum_init"], spectrum(empirical_ntk(fresh, d["coords"])), rtol=1e-9, atol=1e-12)
    assert r["params"] == sum(p.numel() for p in fresh.parameters()) and r["lr"] == T.TRAIN_LR["SIREN"]
    assert r["diverged"] is None and len(r["curve"]) == 3 and r["floor_init"] > 0
    assert r["prediction"].shape == (side, side) and r["prediction"].dtype == np.float32
    assert not np.allclose(r["spectrum_end"], r["spectrum_init"])        # taken after training
    trained = staf_net("SIREN", 8, 1, seed=2)
    from inrlib.train import fit
    fit(trained, d["coords"], d["targets"], epochs=3, lr=T.TRAIN_LR["SIREN"], optimizer="adam", batch_size=None,
        seed=2, progress=False)
    np.testing.assert_allclose(r["spectrum_end"], spectrum(empirical_ntk(trained, d["coords"])), rtol=1e-6, atol=1e-9)
    with torch.no_grad():
        assert r["psnr"] == pytest.approx(float(psnr(trained(d["coords"]).double(), d["targets"].double())), abs=1e-4)
        assert r["psnr_heldout"] == pytest.approx(float(psnr(trained(d["held_coords"]).double(),
                                                             d["held_targets"].double())), abs=1e-4)
        np.testing.assert_allclose(r["prediction"], trained(d["coords"]).reshape(side, side).numpy(), atol=1e-6)
    assert r["psnr_heldout"] != r["psnr"]
    monkeypatch.setitem(T.TRAIN_LR, "SIREN", 1e30)
    bad = T.train_and_kernels("SIREN", siren, "astronaut", side, epochs=3, seed=2)
    assert bad["diverged"].startswith("training diverged") and "spectrum_end" not in bad
    assert isinstance(bad["curve"], list)
    staf = T.train_and_kernels("STAF", T.network_config("STAF", 4, 1, tau=3).to_dict(), "astronaut", side, epochs=1,
                               seed=1)
    assert staf["params"] == sum(p.numel() for p in staf_net("STAF", 4, 1, tau=3).parameters())    # tau reaches the net
    np.testing.assert_allclose(staf["spectrum_init"], spectrum(empirical_ntk(staf_net("STAF", 4, 1, tau=3, seed=1),
                                                                             d["coords"])), rtol=1e-6, atol=1e-9)


def test_sine_config_kinds_defaults_and_refusal():
    assert B.sine_config("siren", 8, 3, w=4.0).to_dict() == {
        "encoding": {"type": "identity"}, "hidden": [8, 8, 8], "activation": "sine", "options": {"w0": 4.0},
        "output_activation": None, "out_features": None}
    assert (B.sine_config("simple", 8, 1, w=4.0).activation, B.sine_config("simple", 8, 1, w=4.0).options.w) == (
        "simple_sine", 4.0)
    assert float(sine_net("siren", 8, 1).mlp[1].w0) == 30.0 and sine_net("siren", 8, 1).mlp[0].weight.shape == (8, 1)
    assert float(sine_net("siren", 8, 1, w=10.0).mlp[1].w0) == 10.0        # w is SIREN's w0
    assert float(sine_net("simple", 8, 1, w=4.0).mlp[1].w0) == 4.0
    assert torch.equal(sine_net("simple", 8, 2).mlp[0].weight, sine_net("simple", 8, 2, seed=0).mlp[0].weight)
    with pytest.raises(ValueError, match=r"^kind must be 'simple' or 'siren', got 'relu'$"):
        B.sine_config("relu", 8, 1)


def test_expected_ntk_in_two_dimensions_and_between_two_sets():
    """The closed form at a small w (where the cos(w(x + x')) term matters) in 2D, against the mean of
    empirical kernels, and its cross-kernel form against the joint kernel's off-diagonal block."""
    x = torch.tensor([[0.0, 0.0], [0.3, 0.2], [0.9, 0.5], [0.1, 0.95]], dtype=torch.float64)
    Ks = torch.stack([empirical_ntk(sine_net("simple", 16, 1, dim=2, w=0.7, seed=s, dtype=torch.float64), x)
                      for s in range(300)])
    se = Ks.std(0) / math.sqrt(len(Ks))
    E = B.expected_ntk(x, w=0.7, width=16)
    assert float(((Ks.mean(0) - E).abs() / se).max()) < 4.5
    # a formula in 1/dim instead of 2/dim, or without the x + x' term, would be far off
    wrong = B.expected_ntk(x, w=0.7 / math.sqrt(2), width=16)
    assert float(((Ks.mean(0) - wrong).abs() / se).max()) > 6
    both = B.expected_ntk(torch.cat([x, x[:2] * 0.5]), w=0.7, width=16)
    torch.testing.assert_close(B.expected_ntk(x, x[:2] * 0.5, w=0.7, width=16), both[:4, 4:], rtol=1e-14, atol=0)
    assert B.expected_ntk(x.float(), w=0.7, width=16).dtype == torch.float64
    assert B.predicted_bandwidth(2 * math.pi, dim=2) == pytest.approx(B.MEDIAN_HALF_NORMAL)   # s = sqrt(2/2) = 1


def test_measured_bandwidth_of_a_gaussian_kernel_is_its_closed_form():
    """exp(-d^2 / (2 l^2)) has a Gaussian spectral density of standard deviation 1 / (2 pi l): median
    frequency 0.6745 / (2 pi l), and P(|f| > 2 x median) = 2 (1 - Phi(1.349)) = 0.177."""
    from scipy import stats
    n, spacing, ell = 400, 1 / 400, 0.01
    t = np.arange(n) * spacing
    K = np.exp(-(t[:, None] - t[None, :]) ** 2 / (2 * ell ** 2))
    m = B.measured_bandwidth(K, spacing, tail_factor=2.0)
    assert m["bandwidth"] == pytest.approx(B.MEDIAN_HALF_NORMAL / (2 * math.pi * ell), rel=0.01)
    assert m["tail"] == pytest.approx(2 * stats.norm.sf(2 * B.MEDIAN_HALF_NORMAL), abs=0.005)
    assert m["freqs"][0] == 0 and m["freqs"][-1] == pytest.approx(1 / (2 * spacing), rel=1e-3)
    assert m["density"][0] == 1.0 and m["density"].shape == m["freqs"].shape
    np.testing.assert_allclose(m["density"][m["freqs"] < 20], np.exp(-2 * (math.pi * ell * m["freqs"][m["freqs"] < 20]) ** 2),
                               atol=0.01)                                   # the Gaussian density itself
    tiny = B.measured_bandwidth(K * 1e-9, spacing, tail_factor=2.0)         # scale-free
    assert tiny["bandwidth"] == pytest.approx(m["bandwidth"], rel=1e-9) and tiny["tail"] == pytest.approx(m["tail"])
    assert B.measured_bandwidth(K, spacing, tail_factor=1e6)["tail"] == 0.0   # beyond the Nyquist frequency
    zero = B.measured_bandwidth(np.zeros((5, 5)), 0.1)
    assert set(zero) == {"bandwidth", "tail", "freqs", "density"}
    assert math.isnan(zero["bandwidth"]) and math.isnan(zero["tail"]) and not zero["density"].any()


def test_lemma1_check_statistics_are_the_closed_forms():
    r = B.lemma1_check(64, seed=3, w0=10.0)
    c = math.sqrt(6 / 64)
    var, m = c ** 2 / 3, 64 * 64
    assert r["n"] == m and r["predicted"] == pytest.approx(2 / 64, rel=1e-14)
    assert r["se_siren"] == pytest.approx(math.sqrt((c ** 4 / 5 - var ** 2) / m), rel=1e-12)   # uniform: mu4 = c^4 / 5
    assert r["se_simple"] == pytest.approx(math.sqrt(2 / m) * var, rel=1e-12)                   # normal: mu4 = 3 var^2
    assert abs(r["siren"] - var) < 4 * r["se_siren"] and abs(r["simple"] - var) < 4 * r["se_simple"]   # w0 folded in once
    assert r["ks_siren_p"] > 0.01 and r["ks_simple_p"] > 0.01             # each sample fits its own law
    assert B.lemma1_check() == B.lemma1_check(256, seed=0, w0=30.0)


def test_band_limited_signal_defaults_and_a_single_term():
    x = np.linspace(0, 2, 801)
    assert np.array_equal(B.band_limited_signal(x, 5.0), B.band_limited_signal(x, 5.0, terms=6, seed=0))
    assert not np.array_equal(B.band_limited_signal(x, 5.0), B.band_limited_signal(x, 5.0, seed=1))
    y = B.band_limited_signal(x, 5.0, terms=1, seed=2)                      # one sinusoid at the top frequency
    basis = np.stack([np.sin(2 * np.pi * 5 * x), np.cos(2 * np.pi * 5 * x)], 1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    np.testing.assert_allclose(basis @ coef, y, atol=1e-12)
    assert np.hypot(*coef) == pytest.approx(1.0, abs=1e-3) and np.abs(y).max() == 1.0


def test_tuning_sweep_rows_are_the_members_own_fits(capsys):
    """Each row is the simple network of its w trained alone (fit follows the ensemble member), scored
    on the midpoints; the truth is the band-limited signal of that frequency on the fine grid."""
    from inrlib.train import fit
    rows = B.tuning_sweep([3.0, 5.0], [2.0, 6.0], n_train=12, width=8, depth=1, epochs=4, lr=1e-2, seed=1)
    assert [(r["max_frequency"], r["w"]) for r in rows] == [(3.0, 2.0), (3.0, 6.0), (5.0, 2.0), (5.0, 6.0)]
    assert capsys.readouterr().err == ""                                  # no progress bars
    x = np.linspace(0, 1, 12)
    mid, fine = (x[:-1] + x[1:]) / 2, np.linspace(0, 1, 512)
    for r in rows:
        f = r["max_frequency"]
        signal_seed = 1 + (f == 5.0)                                     # the k-th frequency's signal: seed + k
        m = sine_net("simple", 8, 1, w=r["w"], seed=1)
        h = fit(m, torch.tensor(x, dtype=torch.float32)[:, None],
                torch.tensor(B.band_limited_signal(x, f, seed=signal_seed), dtype=torch.float32)[:, None],
                epochs=4, lr=1e-2, optimizer="adam", batch_size=None, progress=False, data_range=2.0)
        with torch.no_grad():
            pm = m(torch.tensor(mid, dtype=torch.float32)[:, None]).double().numpy().ravel()
            pf = m(torch.tensor(fine, dtype=torch.float32)[:, None]).numpy().ravel()
        mse = np.mean((pm - B.band_limited_signal(mid, f, seed=signal_seed)) ** 2)
        assert r["psnr_heldout"] == pytest.approx(10 * math.log10(4 / mse), abs=1e-3)
        assert r["psnr_train"] == pytest.approx(h.psnr[-1], abs=1e-3) and r["diverged"] is None
        np.testing.assert_allclose(r["fit"], pf, atol=1e-5)
        np.testing.assert_allclose(r["truth"], B.band_limited_signal(fine, f, seed=signal_seed), atol=1e-6)
        assert r["bandwidth"] == B.predicted_bandwidth(r["w"]) and r["fit"].dtype == r["truth"].dtype == np.float32


def test_photo_sweep_rows_are_the_members_own_fits(capsys):
    from inrlib.data import image_split
    from inrlib.metrics import psnr
    from inrlib.train import fit
    side = 6
    rows = B.photo_sweep("astronaut", side, {"siren": [20.0], "simple": [5.0, 9.0]}, width=8, depth=1, epochs=3,
                         target_psnr=-100.0, seed=2)                      # a colour photo, in grayscale
    assert capsys.readouterr().err == ""                                  # no progress bars
    assert [(r["kind"], r["w"]) for r in rows] == [("siren", 20.0), ("simple", 5.0), ("simple", 9.0)]
    d = image_split("astronaut", side, grayscale=True, heldout=(2 * side - 1) ** 2)
    for r in rows:
        m = sine_net(r["kind"], 8, 1, dim=2, w=r["w"], seed=2)
        h = fit(m, d["coords"], d["targets"], epochs=3, lr=B.PHOTO_LR[r["kind"]], optimizer="adam", batch_size=None,
                progress=False)
        with torch.no_grad():
            held = float(psnr(m(d["held_coords"]).double(), d["held_targets"].double()))
            np.testing.assert_allclose(r["prediction"], m(d["coords"]).reshape(side, side).numpy(), atol=1e-5)
        assert r["psnr_heldout"] == pytest.approx(held, abs=1e-3) and r["psnr_train"] == pytest.approx(h.psnr[-1], abs=1e-3)
        assert r["lr"] == B.PHOTO_LR[r["kind"]] and r["params"] == sum(p.numel() for p in m.parameters())
        assert r["epoch_to_target"] == 1 and r["seconds_to_target"] > 0 and len(r["curve"]) == 3
    never = B.photo_sweep("camera", side, {"simple": [5.0]}, width=8, depth=1, epochs=2, target_psnr=1e9)
    assert never[0]["epoch_to_target"] is None and never[0]["seconds_to_target"] is None


def test_expected_ntk_in_three_dimensions_where_the_variance_is_two_thirds():
    """In 3D the first-layer variance is 2/3: the closed form's two Gaussians both scale with it (in
    2D, where it is 1, multiplying or dividing by it cannot be told apart)."""
    x = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.2, 0.6], [0.9, 0.5, 0.1], [0.1, 0.95, 0.4]], dtype=torch.float64)
    Ks = torch.stack([empirical_ntk(sine_net("simple", 16, 1, dim=3, w=0.5, seed=s, dtype=torch.float64), x)
                      for s in range(300)])
    se = Ks.std(0) / math.sqrt(len(Ks))
    E = B.expected_ntk(x, w=0.5, width=16)
    assert float(((Ks.mean(0) - E).abs() / se).max()) < 4.5
    s2 = 2 / 3                                   # the x + x' term with w^2 / s2 instead of w^2 s2: far off
    summ, diff = torch.cdist(x, -x) ** 2, torch.cdist(x, x) ** 2
    g, h_wrong = torch.exp(-0.25 * s2 * diff / 2), torch.exp(-0.25 / s2 * (summ + 4) / 2)
    wrong = 16 * (g - h_wrong) / 2 + 2 * 0.25 * (x @ x.T + 1) * (g + h_wrong) / 2 + 1
    assert float(((Ks.mean(0) - wrong).abs() / se).max()) > 6
    # a second set of points in float32 is taken in float64 too
    torch.testing.assert_close(B.expected_ntk(x, x[:2].float(), w=0.5, width=16), E[:, :2], rtol=1e-6, atol=0)


def test_band_limited_signal_draws_its_terms_as_documented():
    """f_1 = the maximum, the other frequencies U(1, max), amplitudes U(0.5, 1), phases U(0, 2 pi), in
    that order from one seeded generator; the sum is scaled to a peak of 1."""
    x = np.linspace(0, 1, 257)
    rng = np.random.default_rng(11)
    f = np.concatenate([[9.0], rng.uniform(1.0, 9.0, 4)])
    a, phi = rng.uniform(0.5, 1.0, 5), rng.uniform(0, 2 * np.pi, 5)
    y = sum(a[k] * np.sin(2 * np.pi * f[k] * x + phi[k]) for k in range(5))
    np.testing.assert_allclose(B.band_limited_signal(x, 9.0, terms=5, seed=11), y / np.abs(y).max(), rtol=0, atol=1e-12)


def test_measured_density_is_normalized_to_one_at_zero_frequency_at_any_scale():
    x = np.linspace(0, 1, 64)
    K = np.exp(-((x[:, None] - x[None]) ** 2) / (2 * 0.05 ** 2))
    small, big = B.measured_bandwidth(1e-3 * K, x[1] - x[0]), B.measured_bandwidth(K, x[1] - x[0])
    assert small["density"][0] == 1.0 and big["density"][0] == 1.0
    np.testing.assert_allclose(small["density"], big["density"], rtol=0, atol=1e-12)
    assert small["bandwidth"] == pytest.approx(big["bandwidth"], rel=1e-9)


@pytest.mark.parametrize("which", ["tuning", "photo"])
def test_the_sweeps_train_on_the_device_they_are_given(which, monkeypatch):
    """The sweeps hand fit_ensemble networks and data on ``device`` (PyTorch's ``meta`` device
    stands in for a GPU: the call is stopped there, before any value is read)."""
    import inrlib.train as T
    seen = {}

    class Stop(Exception):
        pass

    def spy(models, coords, targets, **kw):
        seen["devices"] = {p.device.type for m in models for p in m.parameters()} | {coords.device.type, targets.device.type}
        raise Stop

    monkeypatch.setattr(T, "fit_ensemble", spy)
    with pytest.raises(Stop):
        if which == "tuning":
            B.tuning_sweep([3.0], [2.0, 8.0], n_train=16, width=8, epochs=1, device="meta")
        else:
            B.photo_sweep("camera", 8, {"simple": [1.0]}, width=8, epochs=1, device=torch.device("meta"))
    assert seen["devices"] == {"meta"}


def _fake_histories(psnr_by_member, seconds=0.5):
    from types import SimpleNamespace

    def fake(models, coords, targets, **kw):
        fake.kw = kw
        return [SimpleNamespace(psnr=list(p), epochs=list(range(1, len(p) + 1)), epoch_seconds=[seconds] * len(p),
                                stopped=None) for p in psnr_by_member[:len(models)]]
    return fake


def test_photo_sweep_rows_read_the_histories_and_the_untrained_networks(monkeypatch):
    """With fit_ensemble replaced by a stand-in that trains nothing, every field of a row has an
    independent value: the target epoch (the first at or above target_psnr), its seconds (epochs x
    the ensemble's epoch time / members), held-out PSNR and prediction of the untouched networks."""
    import inrlib.train as T
    from inrlib.data import image_split
    from inrlib.metrics import psnr
    fake = _fake_histories([[20.0, 25.0, 26.0], [10.0, 12.0, 24.9]], seconds=0.6)
    monkeypatch.setattr(T, "fit_ensemble", fake)
    rows = B.photo_sweep("camera", 8, {"simple": [1.0, 3.0]}, width=8, depth=2, epochs=3, target_psnr=25.0, seed=2)
    assert fake.kw == {"epochs": 3, "lr": B.PHOTO_LR["simple"], "optimizer": "adam", "batch_size": None, "progress": None}
    a, b = rows
    assert (a["epoch_to_target"], b["epoch_to_target"]) == (2, None)
    assert a["seconds_to_target"] == pytest.approx(2 * 0.6 / 2) and b["seconds_to_target"] is None
    assert a["psnr_train"] == 26.0 and b["psnr_train"] == 24.9 and a["curve"] == [20.0, 25.0, 26.0]
    assert (a["kind"], a["w"], a["lr"]) == ("simple", 1.0, B.PHOTO_LR["simple"])
    d = image_split("camera", 8, grayscale=True, heldout=15 ** 2)
    net = sine_net("simple", 8, 2, dim=2, w=3.0, seed=2)
    with torch.no_grad():
        assert b["psnr_heldout"] == pytest.approx(float(psnr(net(d["held_coords"]).double(), d["held_targets"].double())))
        np.testing.assert_array_equal(b["prediction"], net(d["coords"]).reshape(8, 8).numpy().astype(np.float32))
    assert b["prediction"].dtype == np.float32 and b["params"] == sum(p.numel() for p in net.parameters())
    assert d["held_coords"].shape[0] == 15 * 15 - 8 * 8          # every between-pixel is held out


def test_tuning_sweep_rows_read_the_histories_and_the_untrained_networks(monkeypatch):
    import inrlib.train as T
    fake = _fake_histories([[5.0, 7.0], []])
    monkeypatch.setattr(T, "fit_ensemble", fake)
    rows = B.tuning_sweep([3.0], [2.0, 8.0], n_train=16, width=8, depth=2, epochs=2, lr=0.01, seed=4)
    assert fake.kw == {"epochs": 2, "lr": 0.01, "optimizer": "adam", "batch_size": None, "progress": None,
                       "data_range": 2.0}
    a, b = rows
    assert a["psnr_train"] == 7.0 and math.isnan(b["psnr_train"])              # no epochs recorded: NaN
    x = np.linspace(0, 1, 16)
    mid = (x[:-1] + x[1:]) / 2
    net = sine_net("simple", 8, 2, w=8.0, seed=4)
    with torch.no_grad():
        pm = net(torch.tensor(mid, dtype=torch.float32)[:, None]).double().numpy().ravel()
    mse = np.mean((pm - B.band_limited_signal(mid, 3.0, seed=4)) ** 2)
    assert b["psnr_heldout"] == pytest.approx(10 * math.log10(4.0 / mse), rel=1e-9)
    assert (b["max_frequency"], b["w"], b["diverged"]) == (3.0, 8.0, None) and b["fit"].shape == (512,)
    assert b["bandwidth"] == B.predicted_bandwidth(8.0)
