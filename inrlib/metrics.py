"""Image and occupancy quality metrics: PSNR, MS-SSIM and IoU.

All three take ``torch`` tensors (numpy arrays are accepted and converted) and return
``torch`` tensors on the input's device, in ``float64`` for PSNR and IoU and in the
input's floating dtype for MS-SSIM.

* :func:`psnr` -- peak signal-to-noise ratio in dB, ``10 log10(data_range**2 / MSE)``.
* :func:`ms_ssim` -- multi-scale structural similarity (Wang, Simoncelli & Bovik 2003) through
  ``pytorch_msssim``, with a documented rule for images too small for its five scales
  (see :func:`ms_ssim_scales`).
* :func:`iou` -- intersection over union of two occupancy sets.

Shapes are never broadcast: a prediction of shape ``(N, 1)`` against a target of shape
``(N,)`` is an error (broadcasting would silently compare every pair), not a result.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "psnr",
    "psnr_from_mse",
    "ms_ssim",
    "ms_ssim_scales",
    "MS_SSIM_WEIGHTS",
    "iou",
]

#: The five per-scale exponents of Wang et al. (2003), finest scale first (pytorch_msssim's default).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_WIN_SIZE = 11      # Gaussian window of the standard SSIM, pixels
_WIN_SIGMA = 1.5    # its standard deviation, pixels


# ----------------------------------------------------------------------------- input checks
def _as_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a torch.Tensor or an array-like of numbers, got {type(x).__name__} ({err})") from None


def _pair(pred: Any, target: Any, names: tuple[str, str] = ("pred", "target")) -> tuple[Tensor, Tensor]:
    p, t = _as_tensor(pred, names[0]), _as_tensor(target, names[1])
    if p.shape != t.shape:
        hint = ""
        if p.numel() == t.numel():
            hint = f" They hold the same number of elements: reshape one, e.g. {names[0]}.reshape({names[1]}.shape)."
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(p.shape)} and "
                         f"{tuple(t.shape)} (shapes are never broadcast).{hint}")
    if p.device != t.device:
        raise ValueError(f"{names[0]} is on {p.device} and {names[1]} on {t.device}; move both to one device first")
    if p.numel() == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty (shape {tuple(p.shape)}); a metric needs at least one value")
    return p, t


def _check_finite(x: Tensor, name: str) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} holds {n_bad} non-finite value(s) (NaN or inf); a metric of it is meaningless. "
                         "Check the model output (did training diverge?) or the data.")


def _check_data_range(data_range: Any) -> float:
    try:
        value = float(data_range)
    except (TypeError, ValueError):
        raise TypeError(f"data_range must be a positive number (1.0 for images in [0, 1], 255 for 8-bit), got {data_range!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"data_range must be a positive finite number (1.0 for images in [0, 1], 255 for 8-bit), got {data_range!r}")
    return value


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' (one number) or 'none' (one value per image), got {reduction!r}")
    return reduction


# ----------------------------------------------------------------------------- PSNR
def psnr_from_mse(mse: Tensor | float, *, data_range: float = 1.0) -> Tensor:
    """PSNR in dB from a mean squared error: ``10 log10(data_range**2 / mse)``.

    ``mse`` is a tensor (any shape, elementwise) or a float, in squared data units; the result
    has its shape, in ``float64``. ``mse == 0`` gives ``+inf`` (a perfect reconstruction).
    """
    data_range = _check_data_range(data_range)
    m = torch.as_tensor(mse, dtype=torch.float64)
    if bool((m < 0).any()) or bool(torch.isnan(m).any()):
        raise ValueError(f"mse must be >= 0 and not NaN, got {mse!r}")
    return 10.0 * torch.log10(data_range ** 2 / m)


def psnr(pred: Tensor, target: Tensor, *, data_range: float = 1.0, reduction: str = "mean") -> Tensor:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)``.

    Parameters
    ----------
    pred, target:
        Tensors of one and the same shape (never broadcast), values nominally in ``[0, data_range]``
        (values outside are used as they are: clamp a network's output first if that is what
        you want to score).

        * A 4-D tensor ``(B, C, H, W)`` is a batch of ``B`` images: the MSE is taken per image
          (over ``C, H, W``) and gives one PSNR per image.
        * Any other shape (``(H, W)``, ``(H, W, C)``, a coordinate network's ``(N, C)`` output,
          ...) is one signal: one PSNR over all its elements.
    data_range:
        The peak value: 1.0 for images in ``[0, 1]``, 255 for 8-bit images.
    reduction:
        ``"mean"`` (default): a 0-d tensor, the mean over the batch of the per-image PSNRs
        (not the PSNR of the mean MSE). ``"none"``: shape ``(B,)`` for 4-D input, a 0-d
        tensor otherwise.

    Returns
    -------
    Tensor, ``float64``, in dB. A perfect reconstruction (MSE exactly 0) gives ``+inf``; a batch
    mean containing one ``+inf`` is ``+inf``.
    """
    p, t = _pair(pred, target)
    _check_reduction(reduction)
    data_range = _check_data_range(data_range)
    _check_finite(p, "pred")
    _check_finite(t, "target")
    diff = p.to(torch.float64) - t.to(torch.float64)
    if p.dim() == 4:
        mse = diff.pow(2).flatten(1).mean(dim=1)          # (B,)
    else:
        mse = diff.pow(2).mean()                           # ()
    values = psnr_from_mse(mse, data_range=data_range)
    if reduction == "mean" and values.dim() > 0:
        return values.mean()
    return values


# ----------------------------------------------------------------------------- MS-SSIM
def ms_ssim_scales(height: int, width: int, *, win_size: int = _WIN_SIZE) -> tuple[int, int, float]:
    """The rule :func:`ms_ssim` follows for an image of ``height x width`` pixels.

    MS-SSIM halves the image between scales (``2 x 2`` average pooling, odd sides padded, so a
    side ``s`` becomes ``ceil(s / 2)``) and filters every scale with a Gaussian window of
    ``win_size`` pixels (sigma ``1.5 * win_size / 11``). ``pytorch_msssim`` demands the full five
    scales, i.e. ``min(height, width) > (win_size - 1) * 2**4`` (160 pixels for the standard
    11-pixel window). Smaller images get:

    1. the largest number of scales ``L`` in ``5, 4, 3, 2, 1`` with
       ``min(height, width) > (win_size - 1) * 2**(L - 1)``, i.e. the coarsest scale is still at
       least ``win_size`` pixels wide; the first ``L`` standard weights
       :data:`MS_SSIM_WEIGHTS` renormalized to sum to 1 (as the standard five do);
    2. if not even one scale fits (``min(height, width) < win_size``): one scale with the
       window shrunk to the largest odd size ``<= min(height, width)`` and its sigma scaled by
       the same factor (a 1-pixel window compares single pixels: luminance term only).

    For images larger than 160 pixels this is exactly ``pytorch_msssim.ms_ssim``'s default.

    Returns ``(scales, win_size, win_sigma)``.
    """
    for name, value in (("height", height), ("width", width), ("win_size", win_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if win_size % 2 == 0:
        raise ValueError(f"win_size must be odd (the window has a centre pixel), got {win_size}")
    side = min(height, width)
    sigma = _WIN_SIGMA * win_size / _WIN_SIZE
    for scales in range(len(MS_SSIM_WEIGHTS), 0, -1):
        if side > (win_size - 1) * 2 ** (scales - 1):
            return scales, win_size, sigma
    small = side if side % 2 == 1 else side - 1
    return 1, small, _WIN_SIGMA * small / _WIN_SIZE


def _gauss_window(size: int, sigma: float, channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """1-D Gaussian window, normalized to sum 1, shaped ``(channels, 1, size, 1)`` for a depthwise conv."""
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x.pow(2) / (2.0 * sigma ** 2))
    g = (g / g.sum()).to(dtype=dtype, device=device)       # float32 first, as pytorch_msssim
    return g.view(1, 1, size, 1).repeat(channels, 1, 1, 1)


def _ssim_terms(x: Tensor, y: Tensor, win: Tensor, data_range: float) -> tuple[Tensor, Tensor]:
    """Per-(image, channel) mean SSIM and mean contrast-structure term, each ``(B, C)``.

    Valid ('no padding') separable Gaussian filtering, constants ``K1 = 0.01, K2 = 0.03``.
    """
    channels = x.shape[1]
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def blur(z: Tensor) -> Tensor:
        z = F.conv2d(z, win, groups=channels)                        # along H
        return F.conv2d(z, win.transpose(2, 3), groups=channels)     # along W

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def _ms_ssim_levels(x: Tensor, y: Tensor, *, data_range: float, weights: Sequence[float],
                    win_size: int, win_sigma: float) -> Tensor:
    """MS-SSIM per image, ``(B,)``, over ``len(weights)`` scales (finest first).

    The same algorithm as ``pytorch_msssim.ms_ssim`` (negative contrast terms and a negative
    final SSIM clipped to 0, product of per-scale terms raised to ``weights``, mean over
    channels), without its fixed five-scale size check.
    """
    win = _gauss_window(win_size, win_sigma, x.shape[1], x.dtype, x.device)
    w = torch.as_tensor(list(weights), dtype=x.dtype, device=x.device)
    terms = []
    for level in range(len(weights)):
        ssim_val, cs = _ssim_terms(x, y, win, data_range)
        if level < len(weights) - 1:
            terms.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    terms.append(torch.relu(ssim_val))
    stacked = torch.stack(terms, dim=0)                        # (L, B, C)
    return torch.prod(stacked ** w.view(-1, 1, 1), dim=0).mean(dim=1)


def ms_ssim(pred: Tensor, target: Tensor, *, data_range: float = 1.0, reduction: str = "mean",
            return_scales: bool = False) -> Tensor | tuple[Tensor, int]:
    """Multi-scale structural similarity of two batches of images.

    Parameters
    ----------
    pred, target:
        ``(B, C, H, W)`` tensors of one shape, values in ``[0, data_range]`` (a network's
        output should be clamped to that range first). Any ``C`` works; the value is the mean
        over channels. Integer tensors (8-bit images) are converted to float.
    data_range:
        The peak value: 1.0 for images in ``[0, 1]``, 255 for 8-bit images.
    reduction:
        ``"mean"`` (default): a 0-d tensor, the mean over the batch; ``"none"``: shape ``(B,)``.
    return_scales:
        Also return the number of scales used (see below).

    Returns
    -------
    Tensor in ``[0, 1]`` (1 for identical images), in the input's floating dtype; with
    ``return_scales=True`` a tuple ``(value, scales)``.

    Notes
    -----
    When ``min(H, W) > 160`` this is exactly ``pytorch_msssim.ms_ssim(pred, target,
    data_range=data_range)``: 11-pixel Gaussian window (sigma 1.5), five scales, the standard
    weights :data:`MS_SSIM_WEIGHTS`. Smaller images, which ``pytorch_msssim`` refuses, use fewer
    scales with the first standard weights renormalized to sum to one, and below 11 pixels a
    smaller window: the rule is :func:`ms_ssim_scales`. Values computed with fewer scales are
    comparable with each other at one image size, not with five-scale values on large images.
    """
    p, t = _pair(pred, target)
    if p.dim() != 4:
        raise ValueError(f"ms_ssim needs 4-D tensors (B, C, H, W), got shape {tuple(p.shape)}. "
                         "For one (H, W) image use x[None, None]; for (H, W, C) use x.permute(2, 0, 1)[None].")
    _check_reduction(reduction)
    data_range = _check_data_range(data_range)
    if not p.is_floating_point():
        p = p.to(torch.float32)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if p.dtype != t.dtype:
        dtype = torch.promote_types(p.dtype, t.dtype)
        p, t = p.to(dtype), t.to(dtype)
    _check_finite(p, "pred")
    _check_finite(t, "target")
    height, width = p.shape[-2:]
    scales, win_size, win_sigma = ms_ssim_scales(int(height), int(width))
    if scales == len(MS_SSIM_WEIGHTS):
        import pytorch_msssim

        values = pytorch_msssim.ms_ssim(p, t, data_range=data_range, size_average=False)
    else:
        w = MS_SSIM_WEIGHTS[:scales]
        total = sum(w)
        values = _ms_ssim_levels(p, t, data_range=data_range, weights=[v / total for v in w],
                                 win_size=win_size, win_sigma=win_sigma)
    out = values.mean() if reduction == "mean" else values
    return (out, scales) if return_scales else out


# ----------------------------------------------------------------------------- IoU
def iou(pred_occupancy: Tensor, target_occupancy: Tensor, *, threshold: float = 0.5, logits: bool = False) -> Tensor:
    """Intersection over union of predicted and true occupancy, ``|P and T| / |P or T|``.

    Parameters
    ----------
    pred_occupancy:
        Occupancy probabilities in ``[0, 1]`` (a model with a sigmoid output), any shape; a point
        counts as inside when ``p >= threshold``. Boolean tensors are used as they are. With
        ``logits=True`` the values are logits and a point is inside when
        ``sigmoid(z) >= threshold`` (computed as ``z >= logit(threshold)``).
    target_occupancy:
        The true labels, same shape (never broadcast): booleans, or numbers that are exactly 0
        (outside) or 1 (inside).
    threshold:
        In ``(0, 1)``; 0.5 is the level set the renderer draws.

    Returns
    -------
    0-d ``float64`` tensor in ``[0, 1]``, over all elements together. When both sets are empty
    (no point inside in either) the union is empty and the IoU is defined as 1.0: the
    prediction agrees with the target everywhere.
    """
    p, t = _pair(pred_occupancy, target_occupancy, ("pred_occupancy", "target_occupancy"))
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise TypeError(f"threshold must be a number in (0, 1), got {threshold!r}") from None
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}")

    if t.dtype == torch.bool:
        t_in = t
    else:
        if t.is_floating_point():
            _check_finite(t, "target_occupancy")
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError("target_occupancy must hold labels 0 (outside) and 1 (inside) or booleans; "
                             f"it holds other values (min {float(t.min())}, max {float(t.max())}). "
                             "Threshold soft targets first, e.g. target >= 0.5.")
        t_in = t == 1

    if p.dtype == torch.bool:
        p_in = p
    else:
        if not p.is_floating_point():
            p = p.to(torch.float64)
        _check_finite(p, "pred_occupancy")
        if logits:
            p_in = p >= math.log(threshold / (1.0 - threshold))
        else:
            lo, hi = float(p.min()), float(p.max())
            if lo < 0.0 or hi > 1.0:
                raise ValueError(f"pred_occupancy must be probabilities in [0, 1], got values in [{lo:.4g}, {hi:.4g}]. "
                                 "If the model outputs logits, pass logits=True (or apply torch.sigmoid).")
            p_in = p >= threshold

    inter = (p_in & t_in).sum(dtype=torch.float64)
    union = (p_in | t_in).sum(dtype=torch.float64)
    if float(union) == 0.0:
        return torch.ones((), dtype=torch.float64, device=p.device)
    return inter / union
