"""inrlib.models: ModelConfig as data (round trip, refusals) and CoordinateMLP.from_config, the one builder,
against the construction it replaced (the flat-keyword constructor, written out here layer by layer)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from inrlib import encodings as E
from inrlib.layers import STAF, Dense, simple_sine_layer, siren_layer
from inrlib.models import OPTIONS, CoordinateMLP, DenseOptions, ModelConfig, SineOptions, StafOptions, build_encoding

#: one non-default setting per activation (every option set)
SETTINGS = {
    "relu": {"parameterization": "standard", "beta": 0.3},
    "tanh": {"parameterization": "ntk", "beta": 0.25},
    "sine": {"w0": 12.0},
    "simple_sine": {"w": 7.0, "trainable_w": True},
    "staf": {"tau": 3, "w0": 5.0, "shared": True, "init": "laplace"},
}
ENCODING = {"type": "multigrid", "resolutions": [4, 7], "features": 2}


def old_construction(encoding: dict, hidden, out, activation, *, parameterization="ntk", beta=0.1, w0=30.0, w=1.0,
                     trainable_w=False, tau=5, staf_shared=False, staf_init="normal", output_activation=None):
    """The layers the flat-keyword CoordinateMLP built before ModelConfig (its code, inlined), in the
    same order of random draws: the encoding, then each hidden layer, then the last layer."""
    enc = build_encoding(encoding)
    widths = [enc.out_features, *hidden]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        first = i == 0
        if activation in ("relu", "tanh"):
            layers += [Dense(n_in, n_out, parameterization=parameterization, beta=beta),
                       nn.ReLU() if activation == "relu" else nn.Tanh()]
        elif activation == "sine":
            layers += list(siren_layer(n_in, n_out, w0=w0, is_first=first))
        elif activation == "simple_sine":
            layers += list(simple_sine_layer(n_in, n_out, w=w, is_first=first, trainable_w=trainable_w))
        else:
            dense = Dense(n_in, n_out, parameterization="standard")
            bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / w0
            nn.init.uniform_(dense.weight, -bound, bound)
            nn.init.uniform_(dense.bias, -1 / math.sqrt(n_in), 1 / math.sqrt(n_in))
            layers += [dense, STAF(n_out, tau, shared=staf_shared, w0=w0, amplitude_init=staf_init)]
    last = Dense(widths[-1], out, parameterization=parameterization if activation in ("relu", "tanh") else "standard",
                 beta=beta)
    if activation in ("sine", "staf"):
        bound = math.sqrt(6.0 / widths[-1]) / w0
        nn.init.uniform_(last.weight, -bound, bound)
    layers.append(last)
    if output_activation == "sigmoid":
        layers.append(nn.Sigmoid())
    return enc, nn.Sequential(*layers)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("activation", list(SETTINGS))
@pytest.mark.parametrize("options", ["defaults", "set"])
def test_from_config_builds_the_old_constructions_weights(activation, options):
    """Same seed, same weights, bit for bit, as the construction before ModelConfig, for every activation
    with its default options and with every option set; the old keywords reach the same network."""
    opts = {} if options == "defaults" else SETTINGS[activation]
    legacy = {{"shared": "staf_shared", "init": "staf_init"}.get(k, k): v for k, v in opts.items()}
    config = ModelConfig(ENCODING, (9, 6), activation, opts, output_activation="sigmoid")
    model = CoordinateMLP.from_config(config, dim=2, out_features=3, seed=11)
    torch.manual_seed(11)
    enc, mlp = old_construction({**ENCODING, "dim": 2}, [9, 6], 3, activation, output_activation="sigmoid", **legacy)
    assert [type(m) for m in model.mlp] == [type(m) for m in mlp]
    assert same_weights(model.encoding, enc) and same_weights(model.mlp, mlp)
    torch.manual_seed(11)
    old_style = CoordinateMLP({**ENCODING, "dim": 2}, [9, 6], 3, activation, output_activation="sigmoid", **legacy)
    assert same_weights(old_style, model) and old_style.config == model.config


@pytest.mark.parametrize("activation", list(SETTINGS))
def test_model_config_round_trips_through_json_and_model_config_rebuilds_the_model(activation):
    config = ModelConfig(ENCODING, [9, 6], activation, SETTINGS[activation])
    data = json.loads(json.dumps(config.to_dict()))
    assert data == {"encoding": ENCODING, "hidden": [9, 6], "activation": activation, "options": SETTINGS[activation],
                    "output_activation": None, "out_features": None}
    assert ModelConfig.from_dict(data) == config and ModelConfig.from_dict(config) is config
    assert isinstance(config.options, OPTIONS[activation]) and config.hidden == (9, 6)
    model = CoordinateMLP.from_config(data, dim=2, out_features=2, seed=4)
    assert model.config == config.replace(encoding={**ENCODING, "dim": 2}, out_features=2)   # dim and outputs filled in
    assert same_weights(CoordinateMLP.from_config(model.config, seed=4), model)
    assert not same_weights(CoordinateMLP.from_config(model.config, seed=5), model)


def test_a_model_built_around_an_encoding_module_reads_its_settings_back():
    """model.config holds the encoding module's own settings: rebuilt with the same seed, the same grid values."""
    modules = [lambda: E.IdentityEncoding(3, clamp=True), lambda: E.FourierEncoding(2, 3, include_input=False),
               lambda: E.MultigridEncoding(2, [3, 5], 3, include_input=False, init_std=0.2),
               lambda: E.HashGridEncoding(2, levels=3, features=2, log2_table_size=5, min_resolution=4,
                                          max_resolution=20, init_scale=0.3)]
    for make in modules:
        torch.manual_seed(8)
        model = CoordinateMLP(make(), [5], 2, "tanh")
        assert same_weights(CoordinateMLP.from_config(model.config, seed=8), model), type(model.encoding).__name__
    gauss = CoordinateMLP(E.GaussianFourierEncoding(2, 4, 1.0, seed=3), [5], 1)
    with pytest.raises(ValueError, match=r"GaussianFourierEncoding was passed as a module.*build the model from a "
                                         r"config \(CoordinateMLP.from_config\)"):
        _ = gauss.config
    built = CoordinateMLP.from_config({"encoding": {"type": "gaussian_fourier", "dim": 2, "features": 4, "sigma": 1.0,
                                                    "seed": 3}, "hidden": [5]})
    assert built.config.encoding["seed"] == 3                      # from a dict: the dict itself


def test_builder_fills_in_dim_and_out_features_and_refuses_conflicts():
    config = ModelConfig({"type": "fourier", "levels": 2}, (4,))
    m = CoordinateMLP.from_config(config, dim=3)
    assert (m.dim, m.out_features, m.encoding.out_features) == (3, 1, 2 * 3 * 2 + 3)
    assert CoordinateMLP.from_config(config.replace(out_features=2), dim=1).out_features == 2
    assert CoordinateMLP.from_config(config.replace(out_features=2), dim=1, out_features=2).out_features == 2
    with pytest.raises(ValueError, match=r"^the 'fourier' encoding needs a dim: pass dim=\.\.\. to from_config"):
        CoordinateMLP.from_config(config)
    with pytest.raises(ValueError, match=r"^the encoding has dim=2 but the builder was given dim=3"):
        CoordinateMLP.from_config(config.replace(encoding={"type": "fourier", "levels": 2, "dim": 2}), dim=3)
    with pytest.raises(ValueError, match=r"^the config has out_features=2 but the builder was given out_features=3"):
        CoordinateMLP.from_config(config.replace(out_features=2), dim=1, out_features=3)
    torch.manual_seed(0)
    a = CoordinateMLP.from_config(config, dim=1)                   # no seed: the global generator, as it stands
    torch.manual_seed(0)
    assert same_weights(a, CoordinateMLP.from_config(config, dim=1))


def test_config_refuses_what_does_not_belong_and_names_the_valid_choices():
    enc = {"type": "identity"}
    cases = [
        (lambda: ModelConfig(enc, (4,), "sine", {"tau": 3}),
         r"^activation 'sine' has no option\(s\) \['tau'\]; its options are \['w0'\] \('tau' belongs to 'staf'\)$"),
        (lambda: ModelConfig(enc, (4,), "relu", {"w0": 3.0, "depth": 2}),
         r"^activation 'relu' has no option\(s\) \['depth', 'w0'\]; its options are \['parameterization', 'beta'\] "
         r"\('w0' belongs to 'sine', 'staf'\)$"),
        (lambda: ModelConfig(enc, (4,), "sine", StafOptions()),
         r"^options StafOptions do not belong to activation 'sine'; it takes SineOptions \(or a dict of \['w0'\]\)$"),
        (lambda: ModelConfig.from_dict({"encoding": enc, "hidden": [4], "widths": [4]}),
         r"^unknown ModelConfig key\(s\) \['widths'\]; the keys are \['encoding', 'hidden', 'activation', 'options', "
         r"'output_activation', 'out_features'\]$"),
        (lambda: ModelConfig.from_dict({"encoding": enc}), r"^a model config needs \['hidden'\]"),
        (lambda: ModelConfig({"type": "wavelet"}, (4,)), r"^encoding type must be one of \['fourier', "),
        (lambda: ModelConfig(enc, (4,), "gelu"), r"^activation must be one of \('relu', 'tanh', 'sine', 'simple_sine', "
                                                 r"'staf'\), got 'gelu'$"),
        (lambda: ModelConfig(enc, (4, 0)), r"^hidden must be a non-empty list of positive widths, got \[4, 0\]$"),
        (lambda: ModelConfig(enc, (4,), output_activation="softmax"), r"^output_activation must be one of"),
        (lambda: ModelConfig(enc, (4,), out_features=0), r"^out_features must be a positive integer, got 0$"),
        (lambda: DenseOptions(parameterization="mup"), r"^parameterization must be one of \('ntk', 'standard'\), "
                                                       r"got 'mup'$"),
        (lambda: DenseOptions(beta=-1), r"^relu/tanh option beta must be a finite non-negative number, got -1$"),
        (lambda: SineOptions(w0=0), r"^sine option w0 must be a finite positive number, got 0$"),
        (lambda: ModelConfig(enc, (4,), "simple_sine", {"trainable_w": "yes"}),
         r"^simple_sine option trainable_w must be True or False, got 'yes'$"),
        (lambda: StafOptions(tau=0), r"^staf option tau must be a positive integer \(sinusoids per neuron\), got 0$"),
        (lambda: StafOptions(init="uniform"), r"^staf option init must be 'normal' or 'laplace', got 'uniform'$"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()
    with pytest.raises(TypeError, match=r"^pass the activation's options either as options=\.\.\. or as the old "
                                        r"keywords \['tau'\], not both$"):
        CoordinateMLP(E.IdentityEncoding(2), [4], 1, "staf", options={"w0": 3.0}, tau=2)


def test_config_is_frozen_copies_its_encoding_and_replace_resets_options_for_a_new_activation():
    enc = {"type": "multigrid", "resolutions": [4], "features": 2}
    config = ModelConfig(enc, 8, "staf", {"tau": 2})
    enc["resolutions"].append(9)                                    # the caller's dict is not the config's
    assert config.encoding == {"type": "multigrid", "resolutions": [4], "features": 2} and config.hidden == (8,)
    with pytest.raises(AttributeError):
        config.hidden = (4,)                                        # type: ignore[misc]
    assert config.replace(hidden=(3, 3)).options == StafOptions(tau=2)              # the same activation keeps them
    assert config.replace(activation="sine").options == SineOptions()             # a new one starts from defaults
    assert config.replace(activation="sine", options={"w0": 2.0}).options.w0 == 2.0
    assert ModelConfig({"type": "identity"}, (4,)).options == DenseOptions("ntk", 0.1)   # ReLU, paper 000's NTK
