"""What several studies share: the verdict tolerances of paper 000's numbers, the one-line description
of an encoding, the scores of a reconstruction, Kendall's tau, and the NTK dtype a sweep task is given.

The held-out pixels between a photo's training pixels are data, not a study:
:func:`inrlib.data.image_split`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["TOLERANCES", "setting_text", "psnr64", "ms_ssim_clamped", "kendall_tau", "kernel_dtype"]

#: Verdict tolerances of the paper-000 studies (scaling, ImageNet) for a number compared with the paper's:
#: ``(holds within, approximately within)`` in dB of PSNR, in MS-SSIM, and in orders of magnitude of an
#: eigenvalue ratio (:func:`inrlib.research.claims.verdict_from_difference`).
TOLERANCES = {"dB": (1.0, 3.0), "msssim": (0.05, 0.15), "orders": (0.5, 1.5)}


def setting_text(encoding: Mapping[str, Any]) -> str:
    """A short description of an encoding dict: ``"none"``, ``"L = 8"``, ``"100 nodes per side, k = 2"``."""
    kind = encoding.get("type")
    if kind == "identity":
        return "none"
    if kind == "fourier":
        return f"L = {encoding.get('levels')}"
    if kind == "multigrid":
        res = encoding.get("resolutions", [])
        return f"{', '.join(map(str, res))} nodes per side, k = {encoding.get('features', 2)}"
    return str(kind)


def psnr64(pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> float:
    """:func:`inrlib.metrics.psnr` (peak 1) of two tensors or arrays of one shape, computed in float64."""
    from ...metrics import psnr
    return float(psnr(torch.as_tensor(pred).double(), torch.as_tensor(truth).double()))


def ms_ssim_clamped(pred: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    """MS-SSIM (:func:`inrlib.metrics.ms_ssim`, float64) of an ``(H, W, C)`` reconstruction clamped to
    ``[0, 1]`` against the ``(H, W, C)`` truth, and the number of scales it used (fewer than 5 for
    small images)."""
    from ...metrics import ms_ssim
    p = torch.from_numpy(np.clip(pred, 0, 1)).double().permute(2, 0, 1)[None]
    t = torch.from_numpy(truth).double().permute(2, 0, 1)[None]
    value, scales = ms_ssim(p, t, return_scales=True)
    return float(value), int(scales)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's rank correlation of two equally long sequences over the pairs where both are finite
    (1: same order; -1: reversed; NaN with fewer than two such pairs)."""
    from scipy.stats import kendalltau
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return float("nan")
    return float(kendalltau(a[keep], b[keep]).statistic)


def kernel_dtype(name: str) -> torch.dtype:
    """The torch dtype of a sweep task's ``ntk_dtype`` argument (a string, so the task stays plain data):
    ``"float64"`` (the default of every study) or ``"float32"``."""
    if name not in ("float64", "float32"):
        raise ValueError(f"ntk_dtype must be 'float64' or 'float32', got {name!r}")
    return getattr(torch, name)
