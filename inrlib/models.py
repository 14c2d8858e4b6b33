"""Coordinate MLPs: an encoding followed by dense layers, built from arguments or a plain dict."""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

from torch import Tensor, nn

from . import encodings as enc
from .layers import PARAMETERIZATIONS, STAF, Dense, siren_layer, simple_sine_layer

__all__ = ["CoordinateMLP", "build_encoding", "ACTIVATIONS"]

ACTIVATIONS = ("relu", "tanh", "sine", "simple_sine", "staf")
OUTPUT_ACTIVATIONS = (None, "sigmoid")


class CoordinateMLP(nn.Module):
    """``f(x) = out_act(L_out(h_m(... h_1(gamma(x)))))``: an encoding ``gamma`` and an MLP.

    Args:
        encoding: an encoding module (``inrlib.encodings``; anything with ``dim`` and
            ``out_features``), or a config dict for :func:`build_encoding`.
        hidden: widths of the hidden layers, e.g. ``[512, 512]`` (paper 000's 2D model) or
            ``[256] * 8`` (its 3D model).
        out_features: output channels (1 grayscale / occupancy, 3 RGB).
        activation: ``"relu"`` / ``"tanh"`` (with ``parameterization``), ``"sine"`` (SIREN,
            ``w0``), ``"simple_sine"`` (paper 001, ``w``), ``"staf"`` (paper 002, ``tau``,
            ``staf_shared``, ``w0``, ``staf_init``: ``"normal"`` or ``"laplace"`` amplitudes, see
            :class:`inrlib.layers.STAF`).
        parameterization: ``"ntk"`` (paper 000, Appendix A.1) or ``"standard"``; the
            sinusoidal networks use their own (standard-parameterized) initializations.
        output_activation: ``None`` or ``"sigmoid"`` (occupancy).

    Shapes: ``(N, encoding.dim)`` coordinates in ``[0, 1]^d`` to ``(N, out_features)``.
    ``model.encoding`` and ``model.mlp`` are the two halves; ``model.config`` rebuilds it.
    """

    def __init__(self, encoding: nn.Module | Mapping[str, Any], hidden: Sequence[int], out_features: int = 1,
                 activation: str = "relu", *, parameterization: str = "ntk", beta: float = 0.1,
                 w0: float = 30.0, w: float = 1.0, trainable_w: bool = False, tau: int = 5,
                 staf_shared: bool = False, staf_init: str = "normal", output_activation: str | None = None):
        super().__init__()
        if isinstance(encoding, Mapping):
            encoding = build_encoding(encoding)
        if not isinstance(encoding, nn.Module) or not all(hasattr(encoding, a) for a in ("dim", "out_features")):
            raise TypeError("encoding must be an inrlib encoding module (with .dim and .out_features) or a "
                            f"config dict, got {type(encoding).__name__}")
        if isinstance(hidden, int):
            hidden = [hidden]
        hidden = [int(h) for h in hidden]
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
        if int(out_features) != out_features or out_features < 1:
            raise ValueError(f"out_features must be a positive integer, got {out_features}")
        self.encoding = encoding
        self.activation, self.parameterization = activation, parameterization
        self.config = dict(hidden=hidden, out_features=int(out_features), activation=activation,
                           parameterization=parameterization, beta=beta, w0=w0, w=w, trainable_w=trainable_w,
                           tau=tau, staf_shared=staf_shared, staf_init=staf_init,
                           output_activation=output_activation)

        widths = [encoding.out_features] + hidden
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            first = i == 0
            if activation in ("relu", "tanh"):
                layers += [Dense(n_in, n_out, parameterization=parameterization, beta=beta),
                           nn.ReLU() if activation == "relu" else nn.Tanh()]
            elif activation == "sine":
                layers += list(siren_layer(n_in, n_out, w0=w0, is_first=first))
            elif activation == "simple_sine":
                layers += list(simple_sine_layer(n_in, n_out, w=w, is_first=first, trainable_w=trainable_w))
            else:  # staf
                dense = Dense(n_in, n_out, parameterization="standard")
                bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / w0
                nn.init.uniform_(dense.weight, -bound, bound)
                nn.init.uniform_(dense.bias, -1 / math.sqrt(n_in), 1 / math.sqrt(n_in))
                layers += [dense, STAF(n_out, tau, shared=staf_shared, w0=w0, amplitude_init=staf_init)]
        last = Dense(widths[-1], out_features, parameterization=parameterization if activation in ("relu", "tanh")
                     else "standard", beta=beta)
        if activation in ("sine", "staf"):
            bound = math.sqrt(6.0 / widths[-1]) / w0
            nn.init.uniform_(last.weight, -bound, bound)
        # simple_sine: the standard Dense init is already paper 001's Kaiming normal N(0, 2/n)
        layers.append(last)
        if output_activation == "sigmoid":
            layers.append(nn.Sigmoid())
        self.mlp = nn.Sequential(*layers)

    @property
    def dim(self) -> int:
        return self.encoding.dim

    @property
    def out_features(self) -> int:
        return self.config["out_features"]

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.encoding(x))

    def without_encoding(self) -> "CoordinateMLP":
        """The same MLP type and widths on raw coordinates (``IdentityEncoding``), freshly initialized."""
        return CoordinateMLP(enc.IdentityEncoding(self.dim), **self.config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "CoordinateMLP":
        """Build from a plain dict: ``{"encoding": {...}, "hidden": [...], ...}`` (see :func:`build_encoding`)."""
        if "encoding" not in config:
            raise ValueError("model config needs an 'encoding' entry, e.g. {'type': 'identity', 'dim': 2}")
        return cls(**copy.deepcopy(dict(config)))          # the encoding's dict goes to build_encoding

    def count_parameters(self) -> dict[str, int]:
        """Trainable parameter counts: ``{"encoding": ..., "mlp": ..., "total": ...}``."""
        e = sum(p.numel() for p in self.encoding.parameters() if p.requires_grad)
        m = sum(p.numel() for p in self.mlp.parameters() if p.requires_grad)
        return {"encoding": e, "mlp": m, "total": e + m}


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
