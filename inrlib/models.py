"""Coordinate MLPs: an encoding followed by dense layers, described by one :class:`ModelConfig`.

- :class:`ModelConfig`: the architecture as plain data (encoding dict, hidden widths, activation,
  the activation's options, output activation), JSON-able through ``to_dict`` / ``from_dict``.
- The activations' options, one small typed object each: :class:`DenseOptions` (``relu`` /
  ``tanh``: ``parameterization``, ``beta``), :class:`SineOptions` (SIREN: ``w0``),
  :class:`SimpleSineOptions` (paper 001: ``w``, ``trainable_w``), :class:`StafOptions` (paper 002:
  ``tau``, ``w0``, ``shared``, ``init``). Each builds its own hidden and output layers.
- :class:`CoordinateMLP`: the network; :meth:`CoordinateMLP.from_config` is the one builder
  (seeded when given a seed), and ``model.config`` gives back the ``ModelConfig`` that rebuilds it.

Example::

    config = ModelConfig({"type": "fourier", "levels": 8}, hidden=(256, 256, 256), activation="sine",
                         options={"w0": 30.0})
    model = CoordinateMLP.from_config(config, dim=2, out_features=3, seed=0)
"""
from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from . import encodings as enc
from .layers import PARAMETERIZATIONS, STAF, Dense, simple_sine_layer, siren_layer

__all__ = ["CoordinateMLP", "ModelConfig", "DenseOptions", "SineOptions", "SimpleSineOptions", "StafOptions",
           "ActivationOptions", "OPTIONS", "build_encoding", "ACTIVATIONS", "OUTPUT_ACTIVATIONS"]

ACTIVATIONS = ("relu", "tanh", "sine", "simple_sine", "staf")
OUTPUT_ACTIVATIONS = (None, "sigmoid")


# ----------------------------------------------------------------------------------------------
# the activations' options
# ----------------------------------------------------------------------------------------------

def _real(owner: str, name: str, value: Any, *, positive: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0) or (not positive and value < 0):
        raise ValueError(f"{owner} option {name} must be a finite {'positive' if positive else 'non-negative'} "
                         f"number, got {value!r}")
    return float(value)


def _flag(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner} option {name} must be True or False, got {value!r}")
    return value


class _Options:
    """Shared by the options classes: validation hooks, ``to_dict`` / ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)            # type: ignore[call-overload]

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]          # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], activation: str) -> _Options:
        """The options in ``data`` (missing ones take their defaults); a key this activation does not
        have is refused with the valid ones (and the activations that do have it)."""
        unknown = sorted(set(data) - set(cls.names()))
        if unknown:
            owners = {k: [a for a, c in OPTIONS.items() if k in c.names()] for k in unknown}
            where = "; ".join(f"{k!r} belongs to {', '.join(map(repr, o))}" for k, o in owners.items() if o)
            raise ValueError(f"activation {activation!r} has no option(s) {unknown}; its options are {cls.names()}"
                             + (f" ({where})" if where else ""))
        return cls(**dict(data))

    def output_layer(self, n_in: int, n_out: int) -> Dense:
        """The last (linear) layer after a hidden layer of ``n_in`` units."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class DenseOptions(_Options):
    """``relu`` / ``tanh``: ``parameterization`` ``"ntk"`` (paper 000, Appendix A.1) or ``"standard"``
    (see :class:`inrlib.layers.Dense`), ``beta`` the bias scale of the NTK parameterization."""

    parameterization: str = "ntk"
    beta: float = 0.1

    def __post_init__(self):
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}")
        object.__setattr__(self, "beta", _real("relu/tanh", "beta", self.beta))

    def hidden_layer(self, n_in: int, n_out: int, first: bool, activation: str) -> list[nn.Module]:
        return [Dense(n_in, n_out, parameterization=self.parameterization, beta=self.beta),
                nn.ReLU() if activation == "relu" else nn.Tanh()]

    def output_layer(self, n_in: int, n_out: int) -> Dense:
        return Dense(n_in, n_out, parameterization=self.parameterization, beta=self.beta)


@dataclasses.dataclass(frozen=True)
class SineOptions(_Options):
    """``sine`` (SIREN, Sitzmann et al. 2020): ``sin(w0 z)`` in every layer, SIREN's initialization
    (:func:`inrlib.layers.siren_layer`); the last layer ``U(-c, c)``, ``c = sqrt(6/n) / w0``."""

    w0: float = 30.0

    def __post_init__(self):
        object.__setattr__(self, "w0", _real("sine", "w0", self.w0, positive=True))

    def hidden_layer(self, n_in: int, n_out: int, first: bool, activation: str) -> list[nn.Module]:
        return list(siren_layer(n_in, n_out, w0=self.w0, is_first=first))

    def output_layer(self, n_in: int, n_out: int) -> Dense:
        return _siren_output(n_in, n_out, self.w0)


@dataclasses.dataclass(frozen=True)
class SimpleSineOptions(_Options):
    """``simple_sine`` (paper 001): ``sin(w z)`` in the first layer, ``sin(z)`` after, Kaiming normal
    everywhere (:func:`inrlib.layers.simple_sine_layer`); ``trainable_w`` makes ``w`` a parameter."""

    w: float = 1.0
    trainable_w: bool = False

    def __post_init__(self):
        object.__setattr__(self, "w", _real("simple_sine", "w", self.w, positive=True))
        _flag("simple_sine", "trainable_w", self.trainable_w)

    def hidden_layer(self, n_in: int, n_out: int, first: bool, activation: str) -> list[nn.Module]:
        return list(simple_sine_layer(n_in, n_out, w=self.w, is_first=first, trainable_w=self.trainable_w))

    def output_layer(self, n_in: int, n_out: int) -> Dense:
        return Dense(n_in, n_out, parameterization="standard")    # Kaiming normal N(0, 2/n): paper 001's


@dataclasses.dataclass(frozen=True)
class StafOptions(_Options):
    """``staf`` (paper 002, :class:`inrlib.layers.STAF`): ``tau`` sinusoids per neuron (per layer when
    ``shared``), frequencies ``w0 U(0, 1)``, amplitudes ``init`` ``"normal"`` (Rayleigh) or
    ``"laplace"`` (the public code's); the dense layers take SIREN's initialization with ``w0``."""

    tau: int = 5
    w0: float = 30.0
    shared: bool = False
    init: str = "normal"

    def __post_init__(self):
        if isinstance(self.tau, bool) or not isinstance(self.tau, numbers.Integral) or self.tau < 1:
            raise ValueError(f"staf option tau must be a positive integer (sinusoids per neuron), got {self.tau!r}")
        object.__setattr__(self, "tau", int(self.tau))
        object.__setattr__(self, "w0", _real("staf", "w0", self.w0, positive=True))
        _flag("staf", "shared", self.shared)
        if self.init not in ("normal", "laplace"):
            raise ValueError(f"staf option init must be 'normal' or 'laplace', got {self.init!r}")

    def hidden_layer(self, n_in: int, n_out: int, first: bool, activation: str) -> list[nn.Module]:
        dense = Dense(n_in, n_out, parameterization="standard")
        bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / self.w0
        nn.init.uniform_(dense.weight, -bound, bound)
        nn.init.uniform_(dense.bias, -1 / math.sqrt(n_in), 1 / math.sqrt(n_in))  # type: ignore[arg-type]
        return [dense, STAF(n_out, self.tau, shared=self.shared, w0=self.w0, amplitude_init=self.init)]

    def output_layer(self, n_in: int, n_out: int) -> Dense:
        return _siren_output(n_in, n_out, self.w0)


def _siren_output(n_in: int, n_out: int, w0: float) -> Dense:
    last = Dense(n_in, n_out, parameterization="standard")
    bound = math.sqrt(6.0 / n_in) / w0
    nn.init.uniform_(last.weight, -bound, bound)
    return last


ActivationOptions = DenseOptions | SineOptions | SimpleSineOptions | StafOptions
#: activation name -> its options class.
OPTIONS: dict[str, type[_Options]] = {"relu": DenseOptions, "tanh": DenseOptions, "sine": SineOptions,
                            "simple_sine": SimpleSineOptions, "staf": StafOptions}


# ----------------------------------------------------------------------------------------------
# the configuration
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A coordinate MLP as plain data.

    Args:
        encoding: a :func:`build_encoding` dict, e.g. ``{"type": "multigrid", "resolutions": [32, 96],
            "features": 2}``; ``dim`` may be left out (the builder's ``dim`` fills it in).
        hidden: hidden widths, e.g. ``(512, 512)`` (paper 000's 2D model) or ``(256,) * 8`` (its 3D one).
        activation: one of :data:`ACTIVATIONS`.
        options: the activation's options: its options object, a dict of some of them (the rest take
            their defaults, see :data:`OPTIONS`), or ``None`` (all defaults).
        output_activation: ``None`` or ``"sigmoid"`` (occupancy).
        out_features: output channels, or ``None`` to leave them to the builder (the data decides).

    Frozen; :meth:`replace` makes changed copies (a new ``activation`` without new ``options`` starts
    from the new activation's defaults). ``to_dict()`` is JSON-able and ``from_dict`` reads it back.
    """

    encoding: Mapping[str, Any]
    hidden: tuple[int, ...]
    activation: str = "relu"
    options: Any = None
    output_activation: str | None = None
    out_features: int | None = None

    def __post_init__(self):
        if not isinstance(self.encoding, Mapping):
            raise TypeError("ModelConfig.encoding must be a build_encoding dict such as {'type': 'identity'}, "
                            f"got {type(self.encoding).__name__}")
        if self.encoding.get("type") not in _ENCODINGS:
            raise ValueError(f"encoding type must be one of {sorted(_ENCODINGS)}, got {self.encoding.get('type')!r}")
        object.__setattr__(self, "encoding", copy.deepcopy(dict(self.encoding)))
        hidden = [self.hidden] if isinstance(self.hidden, int) else list(self.hidden)
        if not hidden or any(isinstance(h, bool) or int(h) != h or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        cls = OPTIONS[self.activation]
        if self.options is None or isinstance(self.options, Mapping):
            object.__setattr__(self, "options", cls.from_dict(self.options or {}, self.activation))
        elif not isinstance(self.options, cls):
            raise ValueError(f"options {type(self.options).__name__} do not belong to activation "
                             f"{self.activation!r}; it takes {cls.__name__} (or a dict of {cls.names()})")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {self.output_activation!r}")
        if self.out_features is not None:
            object.__setattr__(self, "out_features", _out_features(self.out_features))

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes``; a new ``activation`` without ``options`` gets its default options."""
        if "activation" in changes and "options" not in changes and changes["activation"] != self.activation:
            changes["options"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """``{"encoding", "hidden", "activation", "options", "output_activation", "out_features"}``,
        plain JSON types."""
        return {"encoding": copy.deepcopy(dict(self.encoding)), "hidden": list(self.hidden),
                "activation": self.activation, "options": self.options.to_dict(),
                "output_activation": self.output_activation, "out_features": self.out_features}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | ModelConfig) -> ModelConfig:
        """Read :meth:`to_dict`'s output (a ``ModelConfig`` passes through); unknown keys are refused."""
        if isinstance(data, ModelConfig):
            return data
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown ModelConfig key(s) {unknown}; the keys are {known}")
        missing = [k for k in ("encoding", "hidden") if k not in data]
        if missing:
            raise ValueError(f"a model config needs {missing}, e.g. {{'encoding': {{'type': 'identity'}}, "
                             "'hidden': [256, 256]}")
        return cls(**dict(data))


def _out_features(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ValueError(f"out_features must be a positive integer, got {value}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------

#: the flat keywords of earlier versions -> the option each one sets
_LEGACY = {"parameterization": "parameterization", "beta": "beta", "w0": "w0", "w": "w", "trainable_w": "trainable_w",
           "tau": "tau", "staf_shared": "shared", "staf_init": "init"}


class CoordinateMLP(nn.Module):
    """``f(x) = out_act(L_out(h_m(... h_1(gamma(x)))))``: an encoding ``gamma`` and an MLP.

    Build it with :meth:`from_config` (a :class:`ModelConfig`); the constructor takes the same pieces:

    Args:
        encoding: an encoding module (``inrlib.encodings``; anything with ``dim`` and
            ``out_features``), or a config dict for :func:`build_encoding` (with ``dim``).
        hidden: widths of the hidden layers.
        out_features: output channels (1 grayscale / occupancy, 3 RGB).
        activation: one of :data:`ACTIVATIONS`.
        options: the activation's options (an options object or a dict, see :class:`ModelConfig`).
        output_activation: ``None`` or ``"sigmoid"``.
        parameterization, beta, w0, w, trainable_w, tau, staf_shared, staf_init: the flat keywords
            of earlier versions, kept for existing callers: each goes to the activation's option of
            that name (``staf_shared`` -> ``shared``, ``staf_init`` -> ``init``) and, as before, is
            ignored by an activation without it. Not together with ``options``.

    Shapes: ``(N, encoding.dim)`` coordinates in ``[0, 1]^d`` to ``(N, out_features)``.
    ``model.encoding`` and ``model.mlp`` are the two halves; ``model.config`` rebuilds it.
    """

    def __init__(self, encoding: nn.Module | Mapping[str, Any], hidden: Sequence[int] | int, out_features: int = 1,
                 activation: str = "relu", *, options: Any = None, output_activation: str | None = None,
                 parameterization: str | None = None, beta: float | None = None, w0: float | None = None,
                 w: float | None = None, trainable_w: bool | None = None, tau: int | None = None,
                 staf_shared: bool | None = None, staf_init: str | None = None):
        super().__init__()
        legacy = {k: v for k, v in dict(parameterization=parameterization, beta=beta, w0=w0, w=w,
                                        trainable_w=trainable_w, tau=tau, staf_shared=staf_shared,
                                        staf_init=staf_init).items() if v is not None}
        if legacy and options is not None:
            raise TypeError(f"pass the activation's options either as options=... or as the old keywords "
                            f"{sorted(legacy)}, not both")
        if legacy and activation in OPTIONS:
            names = OPTIONS[activation].names()
            options = {_LEGACY[k]: v for k, v in legacy.items() if _LEGACY[k] in names}
        encoding_config = None
        if isinstance(encoding, Mapping):
            encoding_config = copy.deepcopy(dict(encoding))
            encoding = build_encoding(encoding)
        if not isinstance(encoding, nn.Module) or not all(hasattr(encoding, a) for a in ("dim", "out_features")):
            raise TypeError("encoding must be an inrlib encoding module (with .dim and .out_features) or a "
                            f"config dict, got {type(encoding).__name__}")
        # the architecture, validated once (the encoding's own dict when known, see `config`)
        widths_given = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        spec = ModelConfig({"type": "identity"}, widths_given, activation, options, output_activation,
                           _out_features(out_features))
        self.encoding = encoding
        self.activation = spec.activation
        self._spec = spec
        self._encoding_config = encoding_config if encoding_config is not None else _encoding_config(encoding)

        widths = [encoding.out_features, *spec.hidden]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers += spec.options.hidden_layer(n_in, n_out, i == 0, spec.activation)
        layers.append(spec.options.output_layer(widths[-1], spec.out_features))
        if spec.output_activation == "sigmoid":
            layers.append(nn.Sigmoid())
        self.mlp = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, config: ModelConfig | Mapping[str, Any], *, dim: int | None = None,
                    out_features: int | None = None, seed: int | None = None) -> CoordinateMLP:
        """The network of ``config`` (a :class:`ModelConfig` or its ``to_dict()``) for ``dim``-D inputs
        and ``out_features`` outputs; ``torch.manual_seed(seed)`` first when ``seed`` is given (same
        config and seed, same weights).

        ``dim`` fills in the encoding's ``dim`` and ``out_features`` the config's when they are left
        out (``out_features`` defaults to 1); given in both places they must agree.
        """
        config = ModelConfig.from_dict(config)
        encoding = dict(config.encoding)
        if dim is not None and encoding.setdefault("dim", dim) != dim:
            raise ValueError(f"the encoding has dim={encoding['dim']} but the builder was given dim={dim}; "
                             "leave 'dim' out of the encoding dict or pass the same value")
        if "dim" not in encoding:
            raise ValueError(f"the {encoding['type']!r} encoding needs a dim: pass dim=... to from_config "
                             "or put 'dim' in the encoding dict")
        if out_features is not None and config.out_features not in (None, out_features):
            raise ValueError(f"the config has out_features={config.out_features} but the builder was given "
                             f"out_features={out_features}; set one of them")
        out = out_features if out_features is not None else config.out_features or 1
        if seed is not None:
            torch.manual_seed(int(seed))
        return cls(encoding, config.hidden, out, config.activation, options=config.options,
                   output_activation=config.output_activation)

    @property
    def config(self) -> ModelConfig:
        """The :class:`ModelConfig` that rebuilds this network (``dim`` and ``out_features`` included):
        ``CoordinateMLP.from_config(model.config, seed=s)`` gives the weights ``model`` had when built
        after ``torch.manual_seed(s)``."""
        if self._encoding_config is None:
            raise ValueError(f"this model's {type(self.encoding).__name__} was passed as a module whose settings "
                             "cannot be read back (a GaussianFourierEncoding does not keep its seed); build the "
                             "model from a config (CoordinateMLP.from_config) to have model.config")
        return self._spec.replace(encoding=self._encoding_config)

    @property
    def hidden(self) -> tuple[int, ...]:
        return self._spec.hidden

    @property
    def options(self) -> ActivationOptions:
        return self._spec.options

    @property
    def dim(self) -> int:
        return int(self.encoding.dim)  # type: ignore[arg-type]

    @property
    def out_features(self) -> int:
        return int(self._spec.out_features or 1)        # always set: the constructor fills it in

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.encoding(x))

    def without_encoding(self) -> CoordinateMLP:
        """The same MLP type and widths on raw coordinates (``IdentityEncoding``), freshly initialized."""
        return CoordinateMLP.from_config(self._spec.replace(encoding={"type": "identity", "dim": self.dim}))

    def count_parameters(self) -> dict[str, int]:
        """Trainable parameter counts: ``{"encoding": ..., "mlp": ..., "total": ...}``."""
        e = sum(p.numel() for p in self.encoding.parameters() if p.requires_grad)
        m = sum(p.numel() for p in self.mlp.parameters() if p.requires_grad)
        return {"encoding": e, "mlp": m, "total": e + m}


# ----------------------------------------------------------------------------------------------
# encodings from dicts
# ----------------------------------------------------------------------------------------------

_ENCODINGS = {
    "identity": enc.IdentityEncoding,
    "fourier": enc.FourierEncoding,
    "gaussian_fourier": enc.GaussianFourierEncoding,
    "multigrid": enc.MultigridEncoding,
    "hashgrid": enc.HashGridEncoding,
}


def build_encoding(config: Mapping[str, Any] | nn.Module) -> nn.Module:
    """An encoding from ``{"type": "multigrid", "dim": 2, "resolutions": [32, 96], "features": 2}``.

    ``type`` is one of ``identity``, ``fourier``, ``gaussian_fourier``, ``multigrid``,
    ``hashgrid``; the other keys are that class's arguments. A module is returned unchanged.
    """
    if isinstance(config, nn.Module):
        return config
    config = dict(config)
    kind = config.pop("type", None)
    if kind not in _ENCODINGS:
        raise ValueError(f"encoding type must be one of {sorted(_ENCODINGS)}, got {kind!r}")
    try:
        return _ENCODINGS[kind](**config)
    except TypeError as err:
        raise ValueError(f"bad arguments for a {kind!r} encoding: {err}") from None


def _encoding_config(module: nn.Module) -> dict[str, Any] | None:
    """The :func:`build_encoding` dict of an inrlib encoding module (its settings read back), or
    ``None`` where they cannot be (a ``GaussianFourierEncoding`` keeps its matrix, not its seed;
    a module from elsewhere)."""
    m: Any = module
    clamp = {"clamp": True} if getattr(m, "clamp", False) else {}
    if type(m) is enc.IdentityEncoding:
        return {"type": "identity", "dim": m.dim, **clamp}
    if type(m) is enc.FourierEncoding:
        return {"type": "fourier", "dim": m.dim, "levels": m.levels, "include_input": m.include_input, **clamp}
    if type(m) is enc.MultigridEncoding:
        return {"type": "multigrid", "dim": m.dim, "resolutions": list(m.resolutions), "features": m.features,
                "include_input": m.include_input, "init_std": m.init_std, **clamp}
    if type(m) is enc.HashGridEncoding:
        return {"type": "hashgrid", "dim": m.dim, "resolutions": list(m.resolutions), "features": m.features,
                "log2_table_size": int(m.table_size).bit_length() - 1, "include_input": m.include_input,
                "init_scale": m.init_scale, **clamp}
    return None
