"""Layers and models: parameterizations, initializations (paper 001 Lemma 1, paper 002), stability."""
import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats

from inrlib.encodings import FourierEncoding, IdentityEncoding, MultigridEncoding
from inrlib.layers import STAF, Dense, Sine, simple_sine_layer, siren_layer
from inrlib.models import CoordinateMLP, build_encoding


def test_dense_ntk_parameterization_forward_and_init():
    torch.manual_seed(0)
    layer = Dense(400, 300, parameterization="ntk", beta=0.1).double()
    a = torch.randn(5, 400, dtype=torch.float64)
    ref = a @ layer.weight.T / math.sqrt(400) + 0.1 * layer.bias
    torch.testing.assert_close(layer(a), ref)
    w = layer.weight.detach()
    assert abs(float(w.mean())) < 0.01 and abs(float(w.std()) - 1) < 0.01      # N(0, 1)
    std = Dense(400, 300, parameterization="standard")
    assert abs(float(std.weight.detach().std()) - math.sqrt(2 / 400)) < 0.002 and float(std.bias.detach().abs().max()) == 0
    torch.testing.assert_close(std(a.float()), a.float() @ std.weight.T)
    with pytest.raises(ValueError, match="parameterization"):
        Dense(2, 2, parameterization="mup")


def test_lemma1_normal_and_uniform_have_equal_variance():
    """Paper 001, Lemma 1: N(0, c^2/3) and U(-c, c) both have variance c^2 / 3; applied to the library's
    inits: SIREN's hidden U(-c / w0, c / w0) scaled by w0 and the simple network's N(0, 2/n) are the two
    sides of the lemma with c = sqrt(6/n), and their shapes differ (uniform vs normal)."""
    torch.manual_seed(0)
    for n, w0 in ((64, 30.0), (256, 10.0), (1024, 1.0)):
        c = math.sqrt(6 / n)
        uniform = (w0 * siren_layer(n, 4000, w0=w0)[0].weight.detach().double()).ravel()
        normal = simple_sine_layer(n, 4000)[0].weight.detach().double().ravel()
        for sample in (uniform, normal):
            assert abs(float(sample.var()) / (c * c / 3) - 1) < 0.01, (n, w0)
        assert float(uniform.abs().max()) <= c + 1e-12 < float(normal.abs().max())
        assert stats.kstest(uniform.numpy() / c, "uniform", args=(-1, 2)).pvalue > 1e-3
        assert stats.kstest(normal.numpy() / (c / math.sqrt(3)), "norm").pvalue > 1e-3


def test_simple_sine_init_matches_siren_variance_through_lemma1():
    """Simple sine hidden weights N(0, 2/n) = SIREN's U(-sqrt(6/n)/w0, .) once w0 is folded in."""
    torch.manual_seed(0)
    n, w0 = 256, 30.0
    siren = siren_layer(n, 2000, w0=w0)[0].weight.detach().double()
    simple = simple_sine_layer(n, 2000)[0].weight.detach().double()
    c = math.sqrt(6 / n) / w0
    assert float(siren.abs().max()) <= c
    assert abs(float((w0 * siren).var()) / float(simple.var()) - 1) < 0.02
    assert abs(float(simple.var()) / (2 / n) - 1) < 0.02
    first = siren_layer(3, 1000, w0=w0, is_first=True)[0].weight
    assert float(first.detach().abs().max()) <= 1 / 3


@pytest.mark.parametrize("activation,band", [("sine", (0.66, 0.76)), ("simple_sine", (0.55, 0.8)),
                                             ("staf", (0.85, 1.15))])
def test_activations_stay_stable_across_depth(activation, band):
    """At init the post-activation spread neither explodes nor vanishes through 8 layers.

    SIREN's activations are arcsine distributed, std 1/sqrt(2) ~ 0.707, at every layer; STAF's
    initialization makes them N(0, 1).
    """
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [256] * 8, 1, activation)
    h = model.encoding(torch.rand(4096, 2))
    stds = []
    for layer in model.mlp:
        h = layer(h)
        if not isinstance(layer, Dense):
            stds.append(float(h.std()))
    assert len(stds) == 8
    assert all(band[0] < s < band[1] for s in stds), stds


def test_staf_post_activation_is_standard_normal_over_initializations():
    """Paper 002 (iii): amplitudes ~ Rayleigh(1/sqrt(tau)), phases ~ U(-pi, pi) give N(0, 1) exactly."""
    torch.manual_seed(0)
    staf = STAF(40_000, tau=5)                   # one independent draw per neuron
    for z in (0.0, 0.37, -2.0):
        out = staf(torch.full((1, 40_000), z)).detach().numpy().ravel()
        ks = stats.kstest(out, "norm")
        assert ks.pvalue > 1e-3, (z, ks)
    lap = STAF(40_000, tau=5, amplitude_init="laplace")
    out = lap(torch.full((1, 40_000), 0.3)).detach().numpy().ravel()
    assert abs(out.std() - 0.5) < 0.02             # the public code's init: N(0, 1/4)
    assert stats.kstest(out / 0.5, "norm").pvalue > 1e-3


def test_staf_matches_formula_and_sharing():
    staf = STAF(4, tau=3, shared=True).double()
    z = torch.randn(6, 4, dtype=torch.float64)
    ref = sum(staf.amplitudes[t] * torch.sin(staf.frequencies[t] * z + staf.phases[t]) for t in range(3))
    torch.testing.assert_close(staf(z), ref)
    assert staf.amplitudes.shape == (3,) and STAF(4, 3).amplitudes.shape == (4, 3)
    with pytest.raises(ValueError, match="tau"):
        STAF(4, tau=0)


def test_sine_trainable_w():
    s = Sine(2.5, trainable=True)
    assert [n for n, _ in s.named_parameters()] == ["w0"]
    torch.testing.assert_close(s(torch.tensor([0.3])), torch.sin(torch.tensor([0.75])))


def test_coordinate_mlp_shapes_and_config():
    torch.manual_seed(0)
    x = torch.rand(10, 2)
    for act in ("relu", "tanh", "sine", "simple_sine", "staf"):
        m = CoordinateMLP(MultigridEncoding(2, [8, 16], 2), [32, 32], 3, act)
        assert m(x).shape == (10, 3)
    m = CoordinateMLP({"type": "fourier", "dim": 2, "levels": 4}, [16], 1, output_activation="sigmoid")
    y = m(x)
    assert float(y.min()) > 0 and float(y.max()) < 1
    counts = CoordinateMLP(MultigridEncoding(2, [10], 2), [8], 1).count_parameters()
    assert counts["encoding"] == 200 and counts["mlp"] == (2 + 2) * 8 + 8 + 8 + 1
    rebuilt = CoordinateMLP.from_config({"encoding": {"type": "identity", "dim": 3}, "hidden": [4, 4],
                                         "out_features": 2, "activation": "sine"})
    assert rebuilt(torch.rand(5, 3)).shape == (5, 2)
    base = CoordinateMLP(MultigridEncoding(2, [8], 2), [16, 16], 1).without_encoding()
    assert isinstance(base.encoding, IdentityEncoding) and base.config.hidden == (16, 16)


def test_coordinate_mlp_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        CoordinateMLP(IdentityEncoding(2), [8], 1, "gelu")
    with pytest.raises(ValueError, match="hidden"):
        CoordinateMLP(IdentityEncoding(2), [], 1)
    with pytest.raises(ValueError, match="output_activation"):
        CoordinateMLP(IdentityEncoding(2), [8], 1, output_activation="softmax")
    with pytest.raises(TypeError, match="encoding"):
        CoordinateMLP("fourier", [8], 1)
    with pytest.raises(ValueError, match="encoding type"):
        build_encoding({"type": "wavelet"})
    with pytest.raises(ValueError, match="bad arguments"):
        build_encoding({"type": "fourier", "dim": 2, "levles": 3})
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        CoordinateMLP(FourierEncoding(2, 2), [8], 1)(torch.rand(4, 3))


def _sine_arguments(model, x):
    """The argument w0 * z of every Sine layer of a CoordinateMLP, layer by layer."""
    from inrlib.layers import Sine
    args = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: args.append((mod.w0 * inp[0]).detach()))
             for m in model.mlp if isinstance(m, Sine)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return args


@pytest.mark.parametrize("activation", ["sine", "simple_sine"])
def test_sine_pre_activations_follow_their_analytic_variance(activation):
    """Through CoordinateMLP: the variance of each sine layer's argument against its closed form.

    Inputs x ~ U(0, 1)^2 (E x^2 = 1/3). SIREN (w0 = 30): first W ~ U(-1/2, 1/2), b ~ U(-1/sqrt 2, 1/sqrt 2),
    Var = w0^2 (2 * 1/12 * 1/3 + 1/6); hidden W ~ U(-c, c), c = sqrt(6/n) / w0, b ~ U(-1/sqrt n, 1/sqrt n),
    Var = 2 E[h^2] + w0^2 / (3 n). Simple sine (w = 1): all N(0, 2/n): first Var = 2/3 + 1, hidden
    2 E[h^2] + 2/n. E[h^2] = E sin^2(u) = (1 - exp(-2 s^2)) / 2 for a Gaussian argument of variance
    s^2 (the first layer's argument spans many periods: E sin^2 = 1/2 to 1e-3 checked below).
    An init scaled by 1.5 in any layer moves its variance by 125 %: far outside the 8 % tolerance."""
    torch.manual_seed(1)
    n, depth = 2048, 3          # wide: the first layer's variance over 2048 neurons is within ~3 %
    model = CoordinateMLP(IdentityEncoding(2), [n] * depth, 1, activation)
    x = torch.rand(4096, 2)
    args = _sine_arguments(model, x)
    assert len(args) == depth
    w0 = 30.0 if activation == "sine" else 1.0
    if activation == "sine":
        var = w0 ** 2 * (2 * (1 / 12) * (1 / 3) + 1 / 6)
        hidden_bias = w0 ** 2 / (3 * n)
    else:
        var = 2 / 3 + 1
        hidden_bias = 2 / n
    for layer, a in enumerate(args):
        measured = float(a.double().var())
        assert measured == pytest.approx(var, rel=0.08), (layer, measured, var)
        h2 = float(torch.sin(a.double()).pow(2).mean())
        if layer == 0 and activation == "sine":
            assert h2 == pytest.approx(0.5, abs=2e-2)
        else:
            assert h2 == pytest.approx((1 - np.exp(-2 * var)) / 2, abs=2e-2)
        var = 2 * h2 + hidden_bias
    # the weight bounds inside the model, last layer included
    denses = [m for m in model.mlp if isinstance(m, Dense)]
    if activation == "sine":
        bounds = [1 / 2] + [np.sqrt(6 / n) / w0] * depth
        for d, b in zip(denses, bounds):
            wmax = float(d.weight.detach().abs().max())
            assert 0.95 * b < wmax <= b, (d, wmax, b)
    else:
        for d in denses[:-1]:
            assert float(d.weight.detach().std()) == pytest.approx(np.sqrt(2 / d.in_features), rel=0.05)
        assert float(denses[-1].weight.detach().std()) == pytest.approx(np.sqrt(2 / n), rel=0.15)


def test_staf_pre_activations_are_the_siren_layers():
    """STAF's Dense layers use SIREN's bounds (first 1/n, then sqrt(6/n)/w0), last layer included."""
    torch.manual_seed(0)
    n = 256
    model = CoordinateMLP(IdentityEncoding(2), [n] * 3, 1, "staf", w0=30.0)
    denses = [m for m in model.mlp if isinstance(m, Dense)]
    bounds = [1 / 2] + [np.sqrt(6 / n) / 30.0] * 3
    for d, b in zip(denses, bounds):
        wmax = float(d.weight.detach().abs().max())
        assert 0.95 * b < wmax <= b, (wmax, b)


def test_layer_reprs_state_their_settings():
    assert Dense(3, 4, beta=0.25).extra_repr() == "in=3, out=4, parameterization=ntk, beta=0.25"
    assert Dense(3, 4, parameterization="standard").extra_repr() == "in=3, out=4, parameterization=standard"
    assert Sine(2.5, trainable=True).extra_repr() == "w0=2.5, trainable=True"
    assert Sine(30.0).extra_repr() == "w0=30, trainable=False"
    assert STAF(4, tau=3, shared=True).extra_repr() == "features=4, tau=3, shared=True"
    assert "Sine(w0=30, trainable=False)" in repr(siren_layer(2, 3))


def test_coordinate_mlp_builds_the_layers_it_is_asked_for():
    """Every argument reaches its layer: types, parameterizations, beta, w0 / w, tau, sharing, last layer."""
    torch.manual_seed(0)
    enc = IdentityEncoding(2)
    for act, cls in (("relu", torch.nn.ReLU), ("tanh", torch.nn.Tanh)):
        for par in ("ntk", "standard"):
            m = CoordinateMLP(enc, [8, 6], 3, act, parameterization=par, beta=0.3)
            kinds = [type(layer) for layer in m.mlp]
            assert kinds == [Dense, cls, Dense, cls, Dense], kinds
            denses = [layer for layer in m.mlp if isinstance(layer, Dense)]
            assert [(d.in_features, d.out_features) for d in denses] == [(2, 8), (8, 6), (6, 3)]
            assert all(d.parameterization == par for d in denses)
            assert all(d.b_scale == (0.3 if par == "ntk" else 1.0) for d in denses)
    siren = CoordinateMLP(enc, [16, 16], 1, "sine", w0=12.0)
    assert [float(s.w0) for s in siren.mlp if isinstance(s, Sine)] == [12.0, 12.0]
    assert all(d.parameterization == "standard" for d in siren.mlp if isinstance(d, Dense))
    simple = CoordinateMLP(enc, [16, 16], 1, "simple_sine", w=7.0, trainable_w=True)
    sines = [s for s in simple.mlp if isinstance(s, Sine)]
    assert [float(s.w0) for s in sines] == [7.0, 1.0]
    assert isinstance(sines[0].w0, torch.nn.Parameter) and not isinstance(sines[1].w0, torch.nn.Parameter)
    assert not any(isinstance(s.w0, torch.nn.Parameter)
                   for s in CoordinateMLP(enc, [16, 16], 1, "simple_sine", w=7.0).mlp if isinstance(s, Sine))
    n = 4000
    staf = CoordinateMLP(enc, [n, 32], 1, "staf", tau=3, staf_shared=True, w0=5.0, staf_init="laplace")
    stafs = [s for s in staf.mlp if isinstance(s, STAF)]
    assert [(s.features, s.tau, s.shared) for s in stafs] == [(n, 3, True), (32, 3, True)]
    freqs = torch.cat([s.frequencies.detach() for s in stafs])
    assert float(freqs.min()) >= 0 and 3.0 < float(freqs.max()) < 5.0          # w0 U(0, 1)
    first, hidden = [d for d in staf.mlp if isinstance(d, Dense)][:2]
    for d, n_in in ((first, 2), (hidden, n)):                                 # PyTorch's default bias bounds
        b = d.bias.detach()
        assert -1 / math.sqrt(n_in) <= float(b.min()) < -0.9 / math.sqrt(n_in), (n_in, b)
        assert 0.9 / math.sqrt(n_in) < float(b.max()) <= 1 / math.sqrt(n_in), (n_in, b)
    assert all(d.parameterization == "standard" for d in staf.mlp if isinstance(d, Dense))
    assert float(stafs[0].amplitudes.min()) < 0                                # signed: the Laplace init
    default = CoordinateMLP(enc, [64], 1, "staf")
    assert default.mlp[1].tau == 5 and float(default.mlp[1].amplitudes.min()) >= 0    # Rayleigh amplitudes
    assert 29 < float(default.mlp[1].frequencies.max()) < 30                  # w0 = 30
    # the last layer: N(0, 1) under the NTK parameterization; SIREN's bound from the last hidden width
    wide = CoordinateMLP(enc, [512], 64, "relu")
    assert float(wide.mlp[-1].weight.detach().std()) == pytest.approx(1.0, rel=0.03)
    for act in ("sine", "staf"):
        narrow_last = CoordinateMLP(enc, [300, 64], 8, act, w0=20.0).mlp[-1].weight.detach()
        bound = math.sqrt(6 / 64) / 20.0
        assert 0.9 * bound < float(narrow_last.abs().max()) <= bound, act
    simple_last = CoordinateMLP(enc, [300, 64], 200, "simple_sine").mlp[-1].weight.detach()
    assert float(simple_last.std()) == pytest.approx(math.sqrt(2 / 64), rel=0.05) and abs(float(simple_last.mean())) < 0.01
    assert CoordinateMLP(enc, [4]).out_features == 1 and CoordinateMLP(enc, [1], 1)(torch.rand(3, 2)).shape == (3, 1)
    assert [float(s.w0) for s in CoordinateMLP(enc, [8], 1, "sine").mlp if isinstance(s, Sine)] == [30.0]
    sig = CoordinateMLP(enc, [4], 2, output_activation="sigmoid")
    assert isinstance(sig.mlp[-1], torch.nn.Sigmoid) and isinstance(CoordinateMLP(enc, [4], 2).mlp[-1], Dense)


def test_coordinate_mlp_config_properties_and_counts():
    enc = MultigridEncoding(2, [4], 2)
    # the old flat keywords: those of the activation reach its options, the others are ignored (as before)
    m = CoordinateMLP(enc, 8, 3, "tanh", parameterization="standard", beta=0.2, w0=3.0, w=2.0, trainable_w=True,
                      tau=4, staf_shared=True, staf_init="laplace", output_activation="sigmoid")
    assert m.config.to_dict() == {
        "encoding": {"type": "multigrid", "dim": 2, "resolutions": [4], "features": 2, "include_input": True,
                     "init_std": 0.01},
        "hidden": [8], "activation": "tanh", "options": {"parameterization": "standard", "beta": 0.2},
        "output_activation": "sigmoid", "out_features": 3}
    assert (m.dim, m.out_features, m.activation, m.hidden, m.options.parameterization) == (2, 3, "tanh", (8,),
                                                                                           "standard")
    assert m.without_encoding().config == m.config.replace(encoding={"type": "identity", "dim": 2})
    width = 1 * 2 + 2                                          # one level of k = 2 features, then x
    assert m.count_parameters() == {"encoding": 4 * 4 * 2, "mlp": width * 8 + 8 + 8 * 3 + 3,
                                    "total": 32 + width * 8 + 8 + 8 * 3 + 3}
    for p in m.encoding.parameters():
        p.requires_grad_(False)
    m.mlp[0].bias.requires_grad_(False)
    assert m.count_parameters() == {"encoding": 0, "mlp": width * 8 + 8 * 3 + 3, "total": width * 8 + 8 * 3 + 3}
    config = {"encoding": {"type": "fourier", "dim": 2, "levels": 3}, "hidden": [5], "out_features": 2}
    frozen = copy.deepcopy(config)
    assert CoordinateMLP.from_config(config)(torch.rand(3, 2)).shape == (3, 2)
    assert config == frozen                                    # the caller's dict is not consumed
    enc_config = {"type": "identity", "dim": 3}
    assert isinstance(build_encoding(enc_config), IdentityEncoding) and enc_config == {"type": "identity", "dim": 3}
    assert build_encoding(enc) is enc


def test_coordinate_mlp_messages():
    enc = IdentityEncoding(2)
    with pytest.raises(ValueError, match=r"^out_features must be a positive integer, got 2.5$"):
        CoordinateMLP(enc, [4], 2.5)
    with pytest.raises(ValueError, match=r"^out_features must be a positive integer, got 0$"):
        CoordinateMLP(enc, [4], 0)
    with pytest.raises(ValueError, match=r"^hidden must be a non-empty list of positive widths, got \[4, 0\]$"):
        CoordinateMLP(enc, [4, 0], 1)
    with pytest.raises(ValueError, match=r"^parameterization must be one of \('ntk', 'standard'\), got 'mup'$"):
        CoordinateMLP(enc, [4], 1, parameterization="mup")
    with pytest.raises(ValueError, match=r"^activation must be one of \('relu', 'tanh', 'sine', 'simple_sine', 'staf'\), got 'gelu'$"):
        CoordinateMLP(enc, [4], 1, "gelu")
    with pytest.raises(ValueError, match=r"^output_activation must be one of \(None, 'sigmoid'\), got 'softmax'$"):
        CoordinateMLP(enc, [4], 1, output_activation="softmax")
    with pytest.raises(TypeError, match=r"^encoding must be an inrlib encoding module \(with \.dim and \.out_features\) "
                                        r"or a config dict, got Linear$"):
        CoordinateMLP(torch.nn.Linear(2, 2), [4], 1)
    with pytest.raises(ValueError, match=r"^a model config needs \['encoding'\]"):
        CoordinateMLP.from_config({"hidden": [4]})
    with pytest.raises(ValueError, match=r"^encoding type must be one of \['fourier', 'gaussian_fourier', 'hashgrid', "
                                         r"'identity', 'multigrid'\], got None$"):
        build_encoding({"dim": 2})
    with pytest.raises(ValueError, match=r"^bad arguments for a 'fourier' encoding: "):
        build_encoding({"type": "fourier", "dim": 2})


def test_layer_defaults_and_the_bias_free_dense():
    torch.manual_seed(0)
    a = torch.randn(5, 3, dtype=torch.float64)
    for par, scale in (("ntk", 1 / math.sqrt(3)), ("standard", 1.0)):
        d = Dense(3, 4, parameterization=par, bias=False).double()
        assert d.bias is None and [n for n, _ in d.named_parameters()] == ["weight"]
        torch.testing.assert_close(d(a), scale * a @ d.weight.T, rtol=1e-15, atol=1e-15)
    d = Dense(3, 4).double()                                   # ntk, beta = 0.1
    torch.testing.assert_close(d(a), a @ d.weight.T / math.sqrt(3) + 0.1 * d.bias, rtol=1e-15, atol=1e-15)
    with pytest.raises(ValueError, match=r"^Dense needs positive sizes, got in=0, out=3$"):
        Dense(0, 3)
    with pytest.raises(ValueError, match=r"^Dense needs positive sizes, got in=2, out=0$"):
        Dense(2, 0)
    assert float(Sine().w0) == 1.0 and [n for n, _ in Sine().named_parameters()] == []
    assert float(siren_layer(2, 3)[1].w0) == 30.0
    assert float(simple_sine_layer(2, 3, is_first=True)[1].w0) == 1.0
    assert float(simple_sine_layer(2, 3, w=4.0)[1].w0) == 1.0                 # not the first layer by default
    assert [n for n, _ in simple_sine_layer(2, 3, w=4.0, is_first=True).named_parameters()] == ["0.weight", "0.bias"]
    staf = STAF(2000)
    assert (staf.tau, staf.shared, staf.amplitudes.shape) == (5, False, (2000, 5))
    assert 29.9 < float(staf.frequencies.max()) < 30.0 and float(staf.frequencies.min()) >= 0.0   # 30 U(0, 1)
    assert STAF(3, tau=1)(torch.zeros(2, 3)).shape == (2, 3)                # one sinusoid is allowed
    assert float(staf.phases.abs().max()) <= math.pi and float(staf.amplitudes.min()) >= 0.0    # Rayleigh
    with pytest.raises(ValueError, match=r"^amplitude_init must be 'normal' or 'laplace', got 'uniform'$"):
        STAF(4, amplitude_init="uniform")
    with pytest.raises(ValueError, match=r"^STAF built for 4 features got input of width 3$"):
        STAF(4)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"^STAF built for 4 features got input of width 3$"):
        STAF(4)(torch.zeros(2, 5, 3))
    assert STAF(4)(torch.zeros(2, 5, 4)).shape == (2, 5, 4)               # any leading batch shape
    assert STAF(4, shared=True)(torch.zeros(2, 3)).shape == (2, 3)     # one shared set serves any width


def test_sine_w0_is_exact_in_float64_and_saved_only_when_trained():
    z = torch.linspace(-50, 50, 101, dtype=torch.float64)
    torch.testing.assert_close(Sine(0.1)(z), torch.sin(0.1 * z), rtol=0, atol=1e-15)   # not a float32 0.1
    assert dict(Sine(3.0).state_dict()) == {}                  # a fixed w0 is part of the architecture
    assert list(Sine(3.0, trainable=True).state_dict()) == ["w0"]


def test_staf_sine_argument_and_sum_per_neuron():
    """Per-neuron STAF against a loop over neurons and sinusoids."""
    torch.manual_seed(0)
    staf = STAF(3, tau=4).double()
    z = torch.randn(5, 3, dtype=torch.float64)
    ref = torch.zeros(5, 3, dtype=torch.float64)
    for j in range(3):
        for t in range(4):
            ref[:, j] += staf.amplitudes[j, t] * torch.sin(staf.frequencies[j, t] * z[:, j] + staf.phases[j, t])
    torch.testing.assert_close(staf(z), ref, rtol=1e-14, atol=1e-14)


def test_dense_without_bias_in_the_ntk_and_its_group_names():
    """A bias-free Dense contributes no bias term to its kernel (against the Jacobian reference), and a
    Dense site's kernel is keyed by the layer's own name."""
    from inrlib.layers import Dense
    from inrlib.ntk import empirical_ntk
    torch.manual_seed(0)
    model = torch.nn.Sequential(Dense(2, 7, bias=False), torch.nn.Tanh(), Dense(7, 1, bias=False, beta=0.7))
    x = torch.rand(9, 2)
    K = empirical_ntk(model, x, groups=True)
    R = empirical_ntk(model, x, method="jacobian")
    assert float((K["total"] - R).norm() / R.norm()) < 1e-10
    assert set(K) == {"0", "2", "total", "mlp", "grid"}
