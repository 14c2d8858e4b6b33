r"""NTK spectra: eigenvalues against the float64 rounding floor, and how two spectra compare.

A spectrum here is a float64 NumPy array of eigenvalues sorted descending (:func:`spectrum`) with its
rounding floor ``N eps lambda_max`` (:func:`rounding_floor`). Below the floor an eigenvalue is rounding
noise, so every comparison of two spectra says whether it is a measurement or only a bound.

Computing spectra:

- :func:`spectrum`: the eigenvalues of a kernel matrix, after checking it is symmetric and positive
  semi-definite up to round-off;
- :func:`rounding_floor`: the level below which eigenvalues are noise;
- :func:`resample_spectrum`: a spectrum resampled to a fixed length (paper 000 scaled spectra to 8000);
- :func:`weyl_check`: Weyl's lower bound ``lambda_i(A) + lambda_min(B) <= lambda_i(A + B)``, per index.

Reading them:

- :func:`percentile_eigenvalue`: the ``q``-th percentile (``q = 50`` the median, ``q = 0`` the minimum);
- :func:`log10_ratio`: orders of magnitude between two positive numbers (NaN otherwise);
- :func:`compare_at`: ``log10(lambda_A / lambda_B)`` at a percentile, with the floor substituted for a
  value below it and a flag saying whether the result is exact, a lower bound, an upper bound or
  no measurement at all;
- :func:`mean_log_spectrum`: the mean of ``log10 lambda_i`` over the indices where both spectra
  are above their floors (a one-number summary of how high a spectrum sits);
- :func:`resolved_fraction`: the fraction of eigenvalues above the floor;
- :func:`mean_resampled`: many spectra (of different lengths) resampled to one length and averaged
  in ``log10`` with their spread and mean floor (paper 000's Fig. 5); :func:`ordered_fraction`:
  where such mean curves are in a given order.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["spectrum", "rounding_floor", "resample_spectrum", "weyl_check", "percentile_eigenvalue", "log10_ratio",
           "compare_at", "mean_log_spectrum", "resolved_fraction", "mean_resampled", "ordered_fraction"]


def _eps(dtype: torch.dtype | np.dtype) -> float:
    return float(torch.finfo(dtype).eps) if isinstance(dtype, torch.dtype) else float(np.finfo(dtype).eps)


def rounding_floor(K: Tensor | np.ndarray, eigenvalues: np.ndarray | None = None) -> float:
    """The level below which eigenvalues of ``K`` are rounding noise: ``N * eps * lambda_max``.

    ``eps`` is the machine epsilon of ``K``'s dtype (2.2e-16 for float64): an eigenvalue
    solver's backward error is of order ``eps ||K||``, and sums of ``N`` terms add ``N eps``.
    Show it on every log-scale spectrum plot.
    """
    n = K.shape[0]
    eps = _eps(K.dtype)
    if eigenvalues is None:
        eigenvalues = spectrum(K, check=False)
    return float(n * eps * max(abs(eigenvalues[0]), abs(eigenvalues[-1])))


def spectrum(K: Tensor | np.ndarray, *, check: bool = True, symmetry_tol: float | None = None,
             negative_tol: float | None = None) -> np.ndarray:
    """Eigenvalues of a kernel matrix in float64, sorted descending, as a NumPy array.

    With ``check`` (default) a matrix that is not symmetric, or has eigenvalues below
    ``-negative_tol * lambda_max`` (default ``N * eps(K.dtype) * 10``, i.e. beyond round-off),
    raises a ``ValueError``; ``K`` is symmetrized before solving.
    """
    if isinstance(K, np.ndarray):
        K = torch.from_numpy(K)
    if not isinstance(K, Tensor):
        raise TypeError(f"spectrum expects a square tensor or array, got {type(K).__name__}")
    if K.dim() != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"spectrum expects a square (N, N) matrix, got shape {tuple(K.shape)}")
    if not K.is_floating_point():
        raise TypeError(f"spectrum expects a floating-point matrix, got {K.dtype}")
    if not bool(torch.isfinite(K).all()):
        raise ValueError("the kernel has NaN or infinite entries; check the model's outputs and parameters")
    eps = _eps(K.dtype)
    n = K.shape[0]
    Kd = K.detach().to(dtype=torch.float64)
    if check:
        tol = symmetry_tol if symmetry_tol is not None else 100 * eps * math.sqrt(n)
        norm = float(torch.linalg.matrix_norm(Kd))
        asym = float(torch.linalg.matrix_norm(Kd - Kd.T))
        if norm > 0 and asym > tol * norm:
            raise ValueError(f"the kernel is not symmetric: ||K - K^T|| / ||K|| = {asym / norm:.3g} > {tol:.3g}; "
                             "pass a kernel K(x, x) (not a cross-kernel), or symmetrize it with (K + K.T) / 2")
    Kd = 0.5 * (Kd + Kd.T)
    eig = torch.linalg.eigvalsh(Kd).flip(0).cpu().numpy()
    if check and n > 0:
        tol = negative_tol if negative_tol is not None else 10 * n * eps
        scale = max(abs(eig[0]), abs(eig[-1]))
        if scale > 0 and eig[-1] < -tol * scale:
            raise ValueError(f"the kernel is indefinite beyond round-off: lambda_min / lambda_max = "
                             f"{eig[-1] / scale:.3g} < -{tol:.3g}; an NTK is positive semi-definite, so the "
                             "matrix is not one (or was computed in too low a precision: use float64)")
    return eig


def resample_spectrum(eigenvalues: np.ndarray, length: int = 8000, *, log: bool = True,
                      floor: float | None = None) -> np.ndarray:
    """A descending spectrum resampled to ``length`` values (paper 000 scaled spectra to 8000).

    Index ``i`` of ``n`` maps to ``i / (n - 1)`` in ``[0, 1]``; values are interpolated there
    linearly in ``log10`` (``log=True``; eigenvalues below ``floor``, default the smallest
    positive one, are clipped to it first) or linearly.
    """
    ev = np.asarray(eigenvalues, dtype=np.float64)
    if ev.ndim != 1 or ev.size < 2:
        raise ValueError(f"need a 1-D spectrum with at least 2 values, got shape {ev.shape}")
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    src = np.linspace(0.0, 1.0, ev.size)
    dst = np.linspace(0.0, 1.0, length)
    if not log:
        return np.interp(dst, src, ev)
    positive = ev[ev > 0]
    if positive.size == 0:
        raise ValueError("no positive eigenvalues to interpolate in log scale; pass log=False")
    lo = floor if floor is not None else positive.min()
    return 10 ** np.interp(dst, src, np.log10(np.maximum(ev, lo)))


def weyl_check(K_A: Tensor | np.ndarray, K_B: Tensor | np.ndarray, K_sum: Tensor | np.ndarray | None = None,
               ) -> dict[str, Any]:
    """Check Weyl's lower bound ``lambda_i(A) + lambda_min(B) <= lambda_i(A + B)`` for every ``i``.

    ``K_sum`` defaults to ``K_A + K_B``; passing another matrix checks whether it really is
    a sum of the two (e.g. the MPE kernel against the un-encoded MLP's). Returns the three
    spectra, the bound, ``slack = lambda_i(sum) - bound`` per ``i``, its minimum and relative
    minimum, and ``holds`` (every slack above ``-floor``, the rounding floor of ``K_sum``).
    """
    ev_a = spectrum(K_A)
    ev_b = spectrum(K_B)
    if K_sum is None:
        K_A64 = torch.as_tensor(K_A, dtype=torch.float64)
        K_sum = K_A64 + torch.as_tensor(K_B, dtype=torch.float64, device=K_A64.device)
    ev_s = spectrum(K_sum)
    if not (ev_a.size == ev_b.size == ev_s.size):
        raise ValueError(f"the kernels have different sizes: {ev_a.size}, {ev_b.size}, {ev_s.size}")
    bound = ev_a + ev_b[-1]
    slack = ev_s - bound
    floor = rounding_floor(torch.as_tensor(K_sum), ev_s)
    denom = np.maximum(np.abs(ev_s), floor)                 # 0 only for a zero matrix: its slack is 0 too
    rel = np.divide(slack, denom, out=np.zeros_like(slack), where=denom > 0)
    return {"lambda_A": ev_a, "lambda_B": ev_b, "lambda_sum": ev_s, "lambda_min_B": float(ev_b[-1]),
            "bound": bound, "slack": slack, "min_slack": float(slack.min()),
            "argmin_slack": int(slack.argmin()), "min_relative_slack": float(rel.min()),
            "floor": floor, "holds": bool((slack >= -floor).all())}


def percentile_eigenvalue(eigenvalues: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of a spectrum (``q = 50``: median; ``q = 10``: 90% of eigenvalues above it;
    ``q = 0``: the smallest)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must lie in [0, 100], got {q}")
    return float(np.percentile(np.asarray(eigenvalues, dtype=np.float64), q))


def log10_ratio(a: float, b: float) -> float:
    """``log10(a / b)`` for positive ``a`` and ``b``, else NaN."""
    return float(np.log10(a / b)) if a > 0 and b > 0 else float("nan")


def compare_at(ev_a: np.ndarray, floor_a: float, ev_b: np.ndarray, floor_b: float, q: float) -> dict[str, Any]:
    """Orders of magnitude between spectrum A and spectrum B at percentile ``q``.

    Each value below its floor is replaced by the floor. Returns ``{"value", "kind", "a", "b",
    "a_below_floor", "b_below_floor"}`` with ``kind``:

    - ``"exact"``: both values are above their floors, ``value = log10(a / b)``;
    - ``"lower bound"``: only B is at its floor: the true ratio is at least ``value``;
    - ``"upper bound"``: only A is at its floor: the true ratio is at most ``value``;
    - ``"noise"``: both are rounding noise; ``value`` is NaN.
    """
    a, b = percentile_eigenvalue(ev_a, q), percentile_eigenvalue(ev_b, q)
    a_low, b_low = not a > floor_a, not b > floor_b
    if a_low and b_low:
        kind, value = "noise", float("nan")
    else:
        value = log10_ratio(max(a, floor_a), max(b, floor_b))
        kind = "lower bound" if b_low else "upper bound" if a_low else "exact"
    return {"value": value, "kind": kind, "a": a, "b": b, "a_below_floor": a_low, "b_below_floor": b_low}


def mean_log_spectrum(ev: np.ndarray, floor: float, mask: np.ndarray | None = None) -> float:
    """Mean of ``log10 lambda_i`` over the indices above ``floor`` (and in ``mask`` when given); NaN if none."""
    ev = np.asarray(ev, dtype=np.float64)
    keep = ev > max(floor, 0.0)
    if mask is not None:
        keep &= mask
    return float(np.log10(ev[keep]).mean()) if keep.any() else float("nan")


def resolved_fraction(ev: np.ndarray, floor: float) -> float:
    """Fraction of the eigenvalues above the rounding floor."""
    ev = np.asarray(ev, dtype=np.float64)
    return float((ev > floor).mean()) if ev.size else float("nan")


def mean_resampled(spectra: Sequence[tuple[np.ndarray, float]], length: int = 8000) -> dict[str, Any] | None:
    """Paper 000's Fig. 5 curve: each ``(eigenvalues, floor)`` resampled to ``length`` values
    (:func:`resample_spectrum`, linear in ``log10``, values below the floor, or below
    the smallest positive eigenvalue when the floor is 0, clipped to it), then over the spectra the
    mean of ``log10 lambda`` (``mean``, returned as ``10**``), its 10th and 90th percentiles
    (``lo``, ``hi``), and the mean log floor (``floor``). ``None`` for no spectra."""
    logs, floors = [], []
    for ev, fl in spectra:
        ev = np.asarray(ev, dtype=np.float64)
        positive = ev[ev > 0]
        lo = max(fl, positive.min() if positive.size else fl)
        logs.append(np.log10(resample_spectrum(ev, length, floor=lo)))
        floors.append(math.log10(lo) if lo > 0 else float("nan"))
    if not logs:
        return None
    L = np.stack(logs)
    return {"mean": 10 ** L.mean(0), "lo": 10 ** np.percentile(L, 10, axis=0), "hi": 10 ** np.percentile(L, 90, axis=0),
            "floor": 10 ** float(np.nanmean(floors)), "n": len(logs)}


def ordered_fraction(curves: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> dict[str, float]:
    """Where the curves ``curves[name]["mean"]`` (same length, with ``"floor"``) are strictly ordered
    ``order[0] > order[1] > ...``: ``resolved`` (fraction of indices where every curve is above its
    floor), ``ordered_resolved`` (fraction of those that are ordered; NaN if none), ``ordered_all``."""
    means = [np.asarray(curves[n]["mean"]) for n in order]
    above = np.all([m > curves[n]["floor"] for m, n in zip(means, order)], axis=0)
    ordered = np.all([a > b for a, b in zip(means[:-1], means[1:])], axis=0)
    return {"resolved": float(above.mean()),
            "ordered_resolved": float(ordered[above].mean()) if above.any() else float("nan"),
            "ordered_all": float(ordered.mean())}
