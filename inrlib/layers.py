"""Layers of coordinate networks: dense layers in two parameterizations and sinusoidal activations.

- :class:`Dense`: ``z = w_scale * W a + b_scale * b``. The NTK parameterization of paper 000
  (Appendix A.1, after Jacot et al. 2018) has ``W, b ~ N(0, 1)``, ``w_scale = 1/sqrt(n_in)``,
  ``b_scale = beta = 0.1``; the standard parameterization has ``w_scale = b_scale = 1`` and the
  scale in the initialization.
- :class:`Sine`: ``sin(w0 * z)``, ``w0`` fixed or trainable.
- :func:`siren_layer`, :func:`simple_sine_layer`: SIREN (Sitzmann et al. 2020) and the simple
  sinusoidal network of paper 001 as ``Dense`` + ``Sine`` pairs with their initializations.
- :class:`STAF`: paper 002's trainable activation ``sum_t a_t sin(omega_t z + phi_t)``.

Each ``Dense`` states its gradient structure for the empirical NTK engine (:mod:`inrlib.ntk`):
its kernel term is ``w_scale^2 (D_a D_b^T) * (A A^T) + b_scale^2 D_a D_b^T`` with ``A`` the
layer inputs and ``D`` the sensitivities of its outputs.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .ntk import terms as ntk_terms

__all__ = ["Dense", "Sine", "STAF", "siren_layer", "simple_sine_layer", "PARAMETERIZATIONS"]

PARAMETERIZATIONS = ("ntk", "standard")


class Dense(nn.Module):
    """Affine layer ``z = w_scale * a @ W.T + b_scale * b``; ``a`` is ``(N, in)``, ``z`` is ``(N, out)``.

    Args:
        parameterization: ``"ntk"`` (``W, b ~ N(0, 1)``, ``w_scale = 1/sqrt(in)``,
            ``b_scale = beta``) or ``"standard"`` (``w_scale = b_scale = 1``; ``W`` Kaiming-normal
            for ReLU, ``std = sqrt(2 / in)``, ``b = 0``). Other initializations are set by the
            factory functions below or by calling ``nn.init`` on ``weight``/``bias``.
        beta: bias scale of the NTK parameterization (paper 000 uses 0.1).
    """

    ntk_group = "mlp"

    def __init__(self, in_features: int, out_features: int, *, parameterization: str = "ntk",
                 beta: float = 0.1, bias: bool = True):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Dense needs positive sizes, got in={in_features}, out={out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.parameterization = parameterization
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        if parameterization == "ntk":
            self.w_scale, self.b_scale = 1.0 / math.sqrt(in_features), float(beta)
            nn.init.normal_(self.weight)
            if self.bias is not None:
                nn.init.normal_(self.bias)
        else:
            self.w_scale, self.b_scale = 1.0, 1.0
            nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def forward(self, a: Tensor) -> Tensor:
        if self.bias is None:
            z = a @ self.weight.T
            return z * self.w_scale if self.w_scale != 1.0 else z
        # one fused kernel: b_scale * bias + w_scale * (a @ W^T)
        return torch.addmm(self.bias, a, self.weight.T, beta=self.b_scale, alpha=self.w_scale)

    # -- empirical NTK protocol (see inrlib.ntk) -------------------------------------------
    def ntk_capture(self, inputs: tuple, output: Tensor) -> Tensor:
        return inputs[0].detach()

    def ntk_gram(self, saved_a: Tensor, grad_a: Tensor, saved_b: Tensor, grad_b: Tensor) -> dict[str, Tensor]:
        return {"": ntk_terms.dense_gram(saved_a, grad_a, saved_b, grad_b, self.w_scale,
                                         self.b_scale if self.bias is not None else None)}

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, parameterization={self.parameterization}"
                + (f", beta={self.b_scale}" if self.parameterization == "ntk" else ""))


class Sine(nn.Module):
    """Elementwise ``sin(w0 * z)``. With ``trainable=True``, ``w0`` is one learnable scalar."""

    def __init__(self, w0: float = 1.0, trainable: bool = False):
        super().__init__()
        if trainable:
            self.w0 = nn.Parameter(torch.tensor(float(w0)))
        else:
            # float64: a float64 network then computes sin(w0 z) with w0 as given (0.1 is not a float32)
            self.register_buffer("w0", torch.tensor(float(w0), dtype=torch.float64), persistent=False)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sin(self.w0.to(z.dtype) * z)

    def extra_repr(self) -> str:
        return f"w0={float(self.w0.detach()):g}, trainable={isinstance(self.w0, nn.Parameter)}"


def siren_layer(in_features: int, out_features: int, *, w0: float = 30.0, is_first: bool = False) -> nn.Sequential:
    """SIREN's sine layer ``sin(w0 (W a + b))`` (Sitzmann et al. 2020).

    Initialization: first layer ``W ~ U(-1/n, 1/n)``; later layers ``W ~ U(-c, c)`` with
    ``c = sqrt(6/n) / w0`` (``n = in_features``); ``b ~ U(-1/sqrt(n), 1/sqrt(n))`` (PyTorch's
    default, as in SIREN's code).
    """
    dense = Dense(in_features, out_features, parameterization="standard")
    bound = 1.0 / in_features if is_first else math.sqrt(6.0 / in_features) / w0
    nn.init.uniform_(dense.weight, -bound, bound)
    assert dense.bias is not None
    nn.init.uniform_(dense.bias, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))
    return nn.Sequential(dense, Sine(w0))


def simple_sine_layer(in_features: int, out_features: int, *, w: float = 1.0, is_first: bool = False,
                      trainable_w: bool = False) -> nn.Sequential:
    """Paper 001's simple sinusoidal layer: ``sin(w (W a + b))`` first, ``sin(W a + b)`` after.

    All parameters Kaiming (He) normal, ``N(0, 2/n)`` with ``n = in_features``, biases
    included (paper 001: "initializing all parameters ... using a default Kaiming normal").
    By Lemma 1 of paper 001 this has the variance of SIREN's ``U(-c, c)`` hidden init with
    ``c = sqrt(6/n)`` once SIREN's ``w0`` is folded into the weights.
    """
    dense = Dense(in_features, out_features, parameterization="standard")
    std = math.sqrt(2.0 / in_features)
    nn.init.normal_(dense.weight, 0.0, std)
    assert dense.bias is not None
    nn.init.normal_(dense.bias, 0.0, std)
    return nn.Sequential(dense, Sine(w if is_first else 1.0, trainable=trainable_w and is_first))


class STAF(nn.Module):
    """Sinusoidal trainable activation (paper 002): ``sigma(z) = sum_t a_t sin(omega_t z + phi_t)``.

    Args:
        features: width of the layer it follows (used when ``shared=False``).
        tau: number of sinusoids.
        shared: one set of ``tau`` (amplitude, frequency, phase) per layer (the public STAF
            code's choice) instead of one per neuron.
        w0: frequencies start as ``w0 * U(0, 1)`` (public STAF code).
        amplitude_init: ``"normal"`` (default): ``a_t ~ Rayleigh(1/sqrt(tau))`` with phases
            ``U(-pi, pi)``: each ``a_t sin(theta_t)`` with a uniform phase is then exactly
            ``N(0, 1/tau)`` (Box-Muller), so for any input ``z`` the post-activation is exactly
            ``N(0, 1)`` over the initialization, with no central-limit argument (paper 002's
            claim (iii)). ``"laplace"``: the public code's signed square root of
            ``Laplace(0, 1/(2 tau))``, which gives ``N(0, 1/4)`` by the same argument.
    Parameters ``amplitudes``, ``frequencies``, ``phases`` have shape ``(tau,)`` if shared,
    else ``(features, tau)``. Input and output ``(N, features)``.
    """

    def __init__(self, features: int, tau: int = 5, *, shared: bool = False, w0: float = 30.0,
                 amplitude_init: str = "normal"):
        super().__init__()
        if tau < 1:
            raise ValueError(f"STAF needs tau >= 1 sinusoids, got {tau}")
        shape = (tau,) if shared else (features, tau)
        self.features, self.tau, self.shared = int(features), int(tau), shared
        self.frequencies = nn.Parameter(w0 * torch.rand(shape))
        self.phases = nn.Parameter(math.pi * (2 * torch.rand(shape) - 1))
        if amplitude_init == "normal":
            # Rayleigh(s) = s * sqrt(-2 log U)
            amp = math.sqrt(1.0 / tau) * torch.sqrt(-2 * torch.log1p(-torch.rand(shape)))
        elif amplitude_init == "laplace":
            lap = torch.distributions.Laplace(0.0, 1.0 / (2 * tau)).sample(shape)
            amp = torch.sign(lap) * lap.abs().sqrt()
        else:
            raise ValueError(f"amplitude_init must be 'normal' or 'laplace', got {amplitude_init!r}")
        self.amplitudes = nn.Parameter(amp)

    def forward(self, z: Tensor) -> Tensor:
        if z.shape[-1] != self.features and not self.shared:
            raise ValueError(f"STAF built for {self.features} features got input of width {z.shape[-1]}")
        s = torch.sin(z[..., None] * self.frequencies + self.phases)        # (N, n, tau)
        return (s * self.amplitudes).sum(dim=-1)

    def extra_repr(self) -> str:
        return f"features={self.features}, tau={self.tau}, shared={self.shared}"
