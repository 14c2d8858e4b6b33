r"""Paper 002's STAF: the initialization with standard normal post-activations, the Kronecker
equivalence with plain sine networks, and NTK spectra beside SIREN, the simple sine network and
ReLU networks with Fourier features or a grid.

STAF's activation on a pre-activation ``z`` is ``sigma(z) = sum_{t=1}^tau a_t sin(omega_t z + phi_t)``
(:class:`inrlib.layers.STAF`), frequencies ``omega_t = w0 U[0, 1)``, phases ``phi_t ~ U(-pi, pi)``.

**Why the post-activation is exactly normal.** For any fixed ``z``, ``theta_t = omega_t z + phi_t`` is
uniform on the circle (a uniform phase plus anything is uniform mod ``2 pi``), independent across
``t``. With ``a_t ~ Rayleigh(1/sqrt(tau))`` (``inrlib``'s init), ``a_t sin theta_t`` is exactly
``N(0, 1/tau)`` (the Box-Muller construction), so ``sigma(z) ~ N(0, 1)`` exactly, no central limit
needed. The public code's amplitudes ``a_t = sign(X) sqrt|X|``, ``X ~ Laplace(0, b = 1/(2 tau))``,
have ``a_t^2 = |X| ~ Exponential(mean b)``: ``|a_t|`` is Rayleigh with ``2 s^2 = b``, so
``a_t sin theta_t ~ N(0, b/2)`` and ``sigma(z) ~ N(0, tau b / 2) = N(0, 1/4)``: normal, with
variance 1/4 whatever ``tau`` (:func:`laplace_variance`).

**Kronecker equivalence.** A STAF layer on ``z = W x + b`` (``n`` neurons, per-neuron parameters) is
``h_i = sum_t a_{it} sin(omega_{it} (W_i . x + b_i) + phi_{it})``: the sine layer of width ``n tau``
with weights ``omega_{it} W_i`` and biases ``omega_{it} b_i + phi_{it}``, followed by the fixed
``n x n tau`` matrix ``A`` with ``A_{i,(i,t)} = a_{it}``; with layer-wise shared parameters,
``W' = omega (x) W`` and ``A = a^T (x) I_n`` (Kronecker products). The next layer's ``W_{l+1}``
absorbs ``A`` (``W_{l+1} A``), so a STAF network *is* a sine network of width ``n tau`` per layer
(:func:`sine_equivalent`), with structured, fewer free parameters.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...models import CoordinateMLP, ModelConfig

__all__ = ["laplace_variance", "post_activation_draws", "network_config", "ks_against_normal", "sine_equivalent",
           "run_equivalent", "NETWORKS", "train_and_kernels"]


def laplace_variance(tau: int) -> float:
    """Variance of the STAF post-activation with the public code's Laplace amplitudes: ``tau * b / 2``
    with ``b = 1 / (2 tau)``, i.e. 1/4 for every ``tau`` (module notes)."""
    b = 1.0 / (2 * tau)
    return tau * b / 2


def post_activation_draws(init: str, tau: int, z: float, draws: int, seed: int = 0) -> np.ndarray:
    """``sigma(z)`` for one fixed pre-activation ``z`` over ``draws`` independent initializations of
    one STAF unit (``init``: ``"normal"`` or ``"laplace"``)."""
    from ...layers import STAF
    torch.manual_seed(seed)
    act = STAF(draws, tau, amplitude_init=init, w0=30.0)          # one unit per draw
    with torch.no_grad():
        return act(torch.full((1, draws), float(z))).double().numpy().ravel()


#: The networks of the comparison: label -> their ModelConfig settings besides the widths (and, for
#: STAF and SIREN, besides tau / w0 / sharing, see :func:`network_config`).
NETWORKS = {
    "STAF": {"activation": "staf", "encoding": {"type": "identity"}, "options": {"init": "normal"}},
    "STAF (Laplace init)": {"activation": "staf", "encoding": {"type": "identity"}, "options": {"init": "laplace"}},
    "SIREN": {"activation": "sine", "encoding": {"type": "identity"}},
    "simple sine": {"activation": "simple_sine", "encoding": {"type": "identity"}, "options": {"w": 10.0}},
    "ReLU + FFE": {"activation": "relu", "encoding": {"type": "fourier", "levels": 8}},
    "ReLU + MPE": {"activation": "relu", "encoding": {"type": "multigrid", "resolutions": [16, 64], "features": 2}},
}


def network_config(label: str, width: int, depth: int, *, tau: int = 5, w0: float = 30.0,
                   shared: bool = False) -> ModelConfig:
    """One network of :data:`NETWORKS` with ``depth`` hidden layers of ``width``: STAF networks take
    ``tau``, ``w0`` and ``shared``, SIREN ``w0``, the others none of them. Build it with
    ``CoordinateMLP.from_config(network_config(...), dim=2, seed=s)``."""
    if label not in NETWORKS:
        raise ValueError(f"network must be one of {list(NETWORKS)}, got {label!r}")
    spec = NETWORKS[label]
    options = dict(spec.get("options", {}))
    if spec["activation"] == "staf":
        options.update(tau=tau, w0=w0, shared=shared)
    elif spec["activation"] == "sine":
        options.update(w0=w0)
    return ModelConfig(spec["encoding"], (width,) * depth, spec["activation"], options)


def ks_against_normal(values: np.ndarray, n: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Kolmogorov-Smirnov statistic and p-value of (a seeded subsample of ``n``) ``values`` against
    ``N(0, 1)``, and the 5 % critical value ``1.358 / sqrt(n)``."""
    from scipy import stats
    v = np.asarray(values, np.float64)
    if v.size > n:
        v = np.random.default_rng(seed).choice(v, n, replace=False)
    res = stats.kstest(v, "norm")
    return {"ks": float(res.statistic), "p": float(res.pvalue), "critical": 1.358 / math.sqrt(v.size), "n": int(v.size)}


def sine_equivalent(model: nn.Module) -> list[tuple[Tensor, Tensor]]:
    """The plain sine network a STAF ``CoordinateMLP`` (identity encoding, per-neuron or shared STAF)
    equals: ``[(W'_1, b'_1), ..., (W'_L, b'_L), (W_out, b_out)]`` with ``u_l = sin(W'_l u_{l-1} + b'_l)``
    (width ``n tau``, ``u_0 = x``) and ``f = W_out u_L + b_out`` (module notes). float64."""
    from ...layers import STAF, Dense
    mods = list(model.mlp)
    dense = [m for m in mods if isinstance(m, Dense)]
    acts = [m for m in mods if isinstance(m, STAF)]
    if len(dense) != len(acts) + 1:
        raise ValueError("sine_equivalent needs a STAF CoordinateMLP (Dense, STAF, ..., Dense)")
    layers, A_prev = [], None
    for d, a in zip(dense[:-1], acts):
        W = d.w_scale * d.weight.detach().double()
        b = d.b_scale * d.bias.detach().double()
        if A_prev is not None:
            W = W @ A_prev
        n, tau = W.shape[0], a.tau
        om = a.frequencies.detach().double().expand(n, tau) if a.shared else a.frequencies.detach().double()
        ph = a.phases.detach().double()                                  # (tau,) shared: broadcast below
        am = a.amplitudes.detach().double().expand(n, tau) if a.shared else a.amplitudes.detach().double()
        Wp = (om[:, :, None] * W[:, None, :]).reshape(n * tau, -1)           # unit (i, t) at row i * tau + t
        bp = (om * b[:, None] + ph).reshape(n * tau)
        A = torch.zeros(n, n * tau, dtype=torch.float64)
        A[torch.arange(n).repeat_interleave(tau), torch.arange(n * tau)] = am.reshape(-1)
        layers.append((Wp, bp))
        A_prev = A
    last = dense[-1]
    layers.append((last.w_scale * last.weight.detach().double() @ A_prev, last.b_scale * last.bias.detach().double()))
    return layers


def run_equivalent(layers: Sequence[tuple[Tensor, Tensor]], x: Tensor) -> Tensor:
    """Evaluate :func:`sine_equivalent`'s network on ``x`` ``(N, d)`` (float64)."""
    u = torch.as_tensor(x, dtype=torch.float64)
    for W, b in layers[:-1]:
        u = torch.sin(u @ W.T + b)
    W, b = layers[-1]
    return u @ W.T + b


#: Adam learning rates of the training comparison (each network's customary one; paper 002's code
#: trains STAF with 1e-3, SIREN's code uses 1e-4; the simple network gets SIREN's step in folded
#: weights, see :data:`inrlib.book.studies.bandwidth.PHOTO_LR`; the ReLU networks the usual 1e-3).
TRAIN_LR = {"STAF": 1e-3, "STAF (Laplace init)": 1e-3, "SIREN": 1e-4, "simple sine": 3e-3, "ReLU + FFE": 1e-3,
            "ReLU + MPE": 1e-3}


def train_and_kernels(label: str, model: Mapping[str, Any], image: str, side: int, *, epochs: int, seed: int = 0,
                      device: str = "cpu", name: str = "") -> dict[str, Any]:
    """The network ``model`` (a :class:`~inrlib.models.ModelConfig` dict, e.g.
    ``network_config(label, ...).to_dict()``) on a grayscale photo (all ``side^2`` pixels, Adam full
    batch at ``TRAIN_LR[label]``): the float64 NTK spectrum on those pixels at initialization and after
    training, the final PSNR (training pixels, and held-out pixels halfway between them) and the
    parameter count. A sweep task (plain arguments; ``name`` only labels its saved file)."""
    from ...data import image_split
    from ...metrics import psnr
    from ...ntk import empirical_ntk, rounding_floor, spectrum
    from ...train import TrainingDiverged, fit
    d = image_split(image, side, grayscale=True, heldout=(2 * side - 1) ** 2)
    if label not in TRAIN_LR:
        raise ValueError(f"label must be one of {list(TRAIN_LR)} (it picks the learning rate), got {label!r}")
    model = CoordinateMLP.from_config(model, dim=2, seed=seed).to(device)
    out: dict[str, Any] = {"label": label, "params": sum(p.numel() for p in model.parameters()), "lr": TRAIN_LR[label]}
    X = d["coords"].to(device)

    def kernel(tag):
        K = empirical_ntk(model, X)
        ev = spectrum(K)
        out[f"spectrum_{tag}"], out[f"floor_{tag}"] = ev, rounding_floor(K, ev)

    kernel("init")
    try:
        h = fit(model, X, d["targets"].to(device), epochs=epochs, lr=TRAIN_LR[label], optimizer="adam", batch_size=None,
                seed=seed, progress=None)
        out["diverged"] = None
        out["curve"] = h.psnr
    except TrainingDiverged as err:
        out["diverged"] = str(err)
        out["curve"] = err.history.psnr
    with torch.no_grad():
        out["psnr"] = float(psnr(model(X).double().cpu(), d["targets"].double()))
        out["psnr_heldout"] = float(psnr(model(d["held_coords"].to(device)).double().cpu(), d["held_targets"].double()))
        out["prediction"] = model(X).reshape(side, side).cpu().numpy().astype(np.float32)
    if out["diverged"] is None:
        kernel("end")
    return out
