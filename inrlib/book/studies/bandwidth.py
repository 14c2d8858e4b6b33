r"""Paper 001's simple sinusoidal networks: Lemma 1, activations across depth, the NTK as a low-pass
filter of bandwidth set by ``w``, and the tuning rule (pick ``w`` from the signal's frequency).

The one-hidden-layer network of the closed form (``inrlib``'s ``simple_sine`` with one hidden layer,
``d``-dimensional input, width ``n``):

.. math:: f(x) = \sum_{j=1}^n v_j \sin\big(w (u_j \cdot x + b_j)\big) + c,

``u_j ~ N(0, s^2 I_d)``, ``b_j ~ N(0, s^2)`` with ``s^2 = 2 / d`` (Kaiming normal, biases included),
``v_j ~ N(0, 2/n)``, ``c = 0``. Its NTK, in expectation over the initialization (exact for every
``n``; the empirical NTK converges to it as ``n`` grows, relative error ``~ n^{-1/2}``):

.. math:: \mathbb E\,K(x, x') = n\,E_s(x, x') + 2 w^2 (x \cdot x' + 1)\,E_c(x, x') + 1,

with ``E_{s,c} = (G(x - x') \mp H(x + x')) / 2``, ``G(\delta) = \exp(-w^2 s^2 |\delta|^2 / 2)``,
``H(\sigma) = \exp(-w^2 s^2 (|\sigma|^2 + 4) / 2)`` (Gaussian expectations of products of sines and
cosines: ``E[\sin z \sin z'] = (E\cos(z - z') - E\cos(z + z'))/2`` and ``E \cos Z = e^{-Var Z / 2}``).
:func:`expected_ntk` computes it. ``G`` is shift-invariant, a Gaussian of width ``1/(w s)``; ``H`` is
not, and is at most ``e^{-2 w^2 s^2}``. The Fourier transform of ``G`` is a Gaussian low-pass filter,
a half-normal density in the frequency ``f`` (cycles per unit length) of standard deviation
``w s / (2 pi)``. The **bandwidth** used here is its median frequency, below which half of the
kernel's spectral mass lies (robust to the noise of a finite-width kernel's spectrum):

.. math:: f_{1/2} = \Phi^{-1}(3/4)\, \frac{w s}{2\pi} \approx 0.674\, \frac{w s}{2\pi}

(:func:`predicted_bandwidth`); :func:`measured_bandwidth` reads the same quantity off any kernel.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...models import CoordinateMLP, ModelConfig

__all__ = ["expected_ntk", "predicted_bandwidth", "measured_bandwidth", "shift_invariance_error", "sine_config",
           "layer_activations", "band_limited_signal", "lemma1_check", "tuning_sweep", "photo_sweep", "PHOTO_LR"]


def sine_config(kind: str, width: int, depth: int, *, w: float = 30.0) -> ModelConfig:
    """``"simple"`` (paper 001's ``simple_sine``, first-layer frequency ``w``) or ``"siren"`` (``sine``,
    ``w0 = w``): ``depth`` hidden layers of ``width``, no encoding. Build it with
    ``CoordinateMLP.from_config(sine_config(...), dim=d, seed=s)``."""
    if kind not in ("simple", "siren"):
        raise ValueError(f"kind must be 'simple' or 'siren', got {kind!r}")
    if kind == "simple":
        return ModelConfig({"type": "identity"}, (width,) * depth, "simple_sine", {"w": w})
    return ModelConfig({"type": "identity"}, (width,) * depth, "sine", {"w0": w})


def expected_ntk(x: Tensor, x2: Tensor | None = None, *, w: float, width: int) -> Tensor:
    """The one-hidden-layer simple sine network's NTK averaged over its initialization (module notes).

    ``x`` ``(N, d)``, ``x2`` ``(M, d)`` (default ``x``); returns ``(N, M)`` float64."""
    x = torch.as_tensor(x, dtype=torch.float64)
    x2 = x if x2 is None else torch.as_tensor(x2, dtype=torch.float64)
    s2 = 2.0 / x.shape[1]
    diff = torch.cdist(x, x2) ** 2
    summ = torch.cdist(x, -x2) ** 2
    g = torch.exp(-w ** 2 * s2 * diff / 2)
    h = torch.exp(-w ** 2 * s2 * (summ + 4) / 2)
    es, ec = (g - h) / 2, (g + h) / 2
    return width * es + 2 * w ** 2 * (x @ x2.T + 1) * ec + 1


MEDIAN_HALF_NORMAL = 0.6744897501960817      # Phi^{-1}(3/4): the median of |N(0, 1)|


def predicted_bandwidth(w: float, dim: int = 1) -> float:
    """Median frequency (cycles per unit) of the spectral density of the shift-invariant part ``G``:
    ``Phi^{-1}(3/4) w s / (2 pi)``, ``s = sqrt(2 / dim)``."""
    return MEDIAN_HALF_NORMAL * w * math.sqrt(2.0 / dim) / (2 * math.pi)


def _stationary_profile(K: np.ndarray) -> np.ndarray:
    """Mean of ``K`` along each diagonal ``i - j = k`` for ``k = -(N-1) .. N-1`` (a 1D regular grid)."""
    n = K.shape[0]
    return np.array([np.diagonal(K, offset=k).mean() for k in range(-(n - 1), n)])


def measured_bandwidth(K: np.ndarray, spacing: float, tail_factor: float = 4.0) -> dict[str, Any]:
    """Median frequency of a kernel's spectral density, on a regular 1D grid of step ``spacing``.

    The kernel's mean along its diagonals gives a profile ``k(delta)``; the magnitude of its discrete
    Fourier transform (zero-padded 8x) is the spectral density ``S(f)`` on ``0 <= f <= 1/(2 spacing)``;
    the bandwidth is the ``f`` with half of ``S``'s mass below it (linear interpolation). Returns
    ``{"bandwidth", "tail": the mass fraction above tail_factor x bandwidth, "freqs", "density"}``
    (``density`` normalized to ``S(0) = 1``)."""
    prof = _stationary_profile(np.asarray(K, dtype=np.float64))
    m = prof.size
    pad = 8 * m
    spec = np.abs(np.fft.rfft(np.fft.ifftshift(np.pad(prof, (0, pad - m)))))
    freqs = np.fft.rfftfreq(pad, d=spacing)
    cum = np.concatenate([[0.0], np.cumsum((spec[1:] + spec[:-1]) / 2 * np.diff(freqs))])
    total = cum[-1]
    if not total > 0:
        return {"bandwidth": float("nan"), "tail": float("nan"), "freqs": freqs, "density": spec}
    bw = float(np.interp(0.5 * total, cum, freqs))
    tail = float(1 - np.interp(tail_factor * bw, freqs, cum) / total) if tail_factor * bw < freqs[-1] else 0.0
    return {"bandwidth": bw, "tail": tail, "freqs": freqs, "density": spec / spec[0] if spec[0] > 0 else spec}


def shift_invariance_error(K: np.ndarray) -> float:
    """``||K - T|| / ||K||`` (Frobenius), ``T`` the Toeplitz matrix of ``K``'s diagonal means: 0 for a
    kernel that depends on ``x - x'`` only (on a regular 1D grid)."""
    K = np.asarray(K, dtype=np.float64)
    n = K.shape[0]
    prof = _stationary_profile(K)
    idx = np.arange(n)
    T = prof[(idx[:, None] - idx[None, :]) + (n - 1)]
    return float(np.linalg.norm(K - T) / np.linalg.norm(K))


def layer_activations(model: nn.Module, x: Tensor) -> list[dict[str, np.ndarray]]:
    """Pre- and post-activations of every sine (or STAF) layer of a ``CoordinateMLP`` on ``x``:
    ``[{"pre": (N * width,), "post": (N * width,)}, ...]``, first hidden layer first. The
    "pre-activation" is the input of the nonlinearity (for SIREN and the first simple layer it still
    lacks the ``w`` factor, which the layer applies)."""
    from ...layers import STAF, Sine
    acts: list[dict[str, np.ndarray]] = []
    hooks = []

    def hook(module, inputs, output):
        pre = inputs[0]
        if isinstance(module, Sine):
            pre = pre * module.w0
        acts.append({"pre": pre.detach().double().reshape(-1).cpu().numpy(),
                     "post": output.detach().double().reshape(-1).cpu().numpy()})

    for mod in model.modules():
        if isinstance(mod, (Sine, STAF)):
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return acts


def band_limited_signal(x: np.ndarray, max_frequency: float, *, terms: int = 6, seed: int = 0) -> np.ndarray:
    """A 1D test signal of known maximum frequency: ``sum_k a_k sin(2 pi f_k x + phi_k)`` with
    ``f_1 = max_frequency`` and the other ``f_k`` uniform in ``[1, max_frequency]`` (cycles per unit),
    ``a_k ~ U(0.5, 1)``, ``phi_k ~ U(0, 2 pi)``, scaled to ``[-1, 1]`` peak (seeded)."""
    rng = np.random.default_rng(seed)
    f = np.concatenate([[max_frequency], rng.uniform(1.0, max_frequency, terms - 1)])
    a, phi = rng.uniform(0.5, 1.0, terms), rng.uniform(0, 2 * np.pi, terms)
    y = (a[None] * np.sin(2 * np.pi * f[None] * np.asarray(x, np.float64)[:, None] + phi[None])).sum(1)
    return y / np.abs(y).max()


def lemma1_check(width: int = 256, seed: int = 0, w0: float = 30.0) -> dict[str, Any]:
    """Paper 001, Lemma 1 through the library's layers: the hidden weights of SIREN (``U(-c, c)``,
    ``c = sqrt(6/n)/w0``, times ``w0`` once folded in) and of the simple network (``N(0, 2/n)``) have
    the same variance ``c'^2 / 3 = 2/n``. Returns the two sample variances, the predicted one, their
    standard errors, and Kolmogorov-Smirnov p-values of each sample against its distribution."""
    from scipy import stats

    from ...layers import simple_sine_layer, siren_layer
    torch.manual_seed(seed)
    siren = siren_layer(width, width, w0=w0)[0].weight.detach().double().numpy().ravel() * w0
    simple = simple_sine_layer(width, width)[0].weight.detach().double().numpy().ravel()
    c = math.sqrt(6.0 / width)
    var = c ** 2 / 3
    m = siren.size
    # standard error of a sample variance: sqrt((mu4 - sigma^4) / m); mu4 = 9/5 var^2 (uniform), 3 var^2 (normal)
    return {"predicted": var, "siren": float(siren.var()), "simple": float(simple.var()),
            "se_siren": math.sqrt((9 / 5 - 1) * var ** 2 / m), "se_simple": math.sqrt(2 * var ** 2 / m),
            "ks_siren_p": float(stats.kstest(siren, stats.uniform(-c, 2 * c).cdf).pvalue),
            "ks_simple_p": float(stats.kstest(simple, stats.norm(0, math.sqrt(var)).cdf).pvalue), "n": m}


def tuning_sweep(max_frequencies: Sequence[float], ws: Sequence[float], *, n_train: int = 64, width: int = 128,
                 depth: int = 2, epochs: int = 1000, lr: float = 1e-3, seed: int = 0,
                 device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """Paper 001's tuning rule on 1D signals: for each maximum frequency, one simple sine network per
    ``w`` (trained together as an ensemble: the ``w`` are the members' own buffers) on ``n_train``
    samples in ``[0, 1]``, scored on the ``n_train - 1`` midpoints between them (interpolation, not
    memorization). Adam, full batch, MSE. Returns one row per (frequency, w) with ``psnr_train``,
    ``psnr_heldout`` (peak-to-peak 2: the signals span ``[-1, 1]``) and the fitted curve on a fine grid.
    The networks train on ``device``; the rows hold host arrays."""
    from ...train import fit_ensemble
    dev = torch.device(device)

    def on_dev(v):
        return torch.tensor(v, dtype=torch.float32, device=dev)[:, None]

    x = np.linspace(0, 1, n_train)
    mid = (x[:-1] + x[1:]) / 2
    fine = np.linspace(0, 1, 512)
    rows = []
    for k, f in enumerate(max_frequencies):
        y, ym, yf = (band_limited_signal(v, f, seed=seed + k) for v in (x, mid, fine))
        models = [CoordinateMLP.from_config(sine_config("simple", width, depth, w=w), dim=1, seed=seed).to(dev)
                  for w in ws]
        hists = fit_ensemble(models, on_dev(x), on_dev(y), epochs=epochs, lr=lr,
                             optimizer="adam", batch_size=None, progress=None, data_range=2.0)
        for w, m, h in zip(ws, models, hists):
            with torch.no_grad():
                pm = m(on_dev(mid)).double().cpu().numpy().ravel()
                pf = m(on_dev(fine)).double().cpu().numpy().ravel()
            mse = float(np.mean((pm - ym) ** 2))
            rows.append({"max_frequency": float(f), "w": float(w), "psnr_train": h.psnr[-1] if h.psnr else float("nan"),
                         "psnr_heldout": 10 * math.log10(4.0 / mse) if mse > 0 else float("inf"),
                         "diverged": h.stopped, "fit": pf.astype(np.float32), "truth": yf.astype(np.float32),
                         "bandwidth": predicted_bandwidth(w)})
    return rows


#: Adam learning rates of the photo comparison: SIREN's customary 1e-4; for the simple network the
#: same step in the folded hidden weights (SIREN's ``w0 W`` moves by ``w0 * lr`` per Adam step, 30 x 1e-4).
PHOTO_LR = {"siren": 1e-4, "simple": 3e-3}


def photo_sweep(image: str, side: int, ws: Mapping[str, Sequence[float]], *, width: int = 128, depth: int = 3,
                epochs: int = 300, lrs: Mapping[str, float] = PHOTO_LR, target_psnr: float = 25.0,
                seed: int = 0, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """SIREN and the simple network on a photo (grayscale, ``side`` px) for each of their ``w`` values
    (members of one ensemble per kind), Adam full batch at ``lrs[kind]``: final training and held-out PSNR (pixels halfway
    between the training pixels, :func:`inrlib.data.image_split`), and the first epoch and
    the wall time at which the training PSNR reaches ``target_psnr``. The networks train on
    ``device``; the rows hold host arrays."""
    from ...data import image_split
    from ...metrics import psnr
    from ...train import fit_ensemble
    dev = torch.device(device)
    d = image_split(image, side, grayscale=True, heldout=(2 * side - 1) ** 2)
    coords, held_coords = d["coords"].to(dev), d["held_coords"].to(dev)
    rows = []
    for kind, values in ws.items():
        models = [CoordinateMLP.from_config(sine_config(kind, width, depth, w=w), dim=2, seed=seed).to(dev)
                  for w in values]
        hists = fit_ensemble(models, coords, d["targets"].to(dev), epochs=epochs, lr=lrs[kind], optimizer="adam",
                             batch_size=None, progress=None)
        for w, m, h in zip(values, models, hists):
            with torch.no_grad():
                held = float(psnr(m(held_coords).double().cpu(), d["held_targets"].double()))
                pred = m(coords).reshape(side, side).cpu().numpy()
            reach = next((e for e, p in zip(h.epochs, h.psnr) if p >= target_psnr), None)
            per_epoch = float(np.mean(h.epoch_seconds)) / len(values) if h.epoch_seconds else float("nan")
            rows.append({"kind": kind, "w": float(w), "lr": lrs[kind], "psnr_train": h.psnr[-1], "psnr_heldout": held,
                         "epoch_to_target": reach, "seconds_to_target": None if reach is None else reach * per_epoch,
                         "prediction": pred.astype(np.float32), "curve": h.psnr,
                         "params": sum(p.numel() for p in m.parameters())})
    return rows
