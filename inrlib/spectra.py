r"""Reading NTK spectra against the float64 rounding floor.

A spectrum here is a float64 NumPy array of eigenvalues sorted descending (:func:`inrlib.ntk.spectrum`)
with its rounding floor ``N eps lambda_max`` (:func:`inrlib.ntk.rounding_floor`). Below the floor an
eigenvalue is rounding noise, so every comparison of two spectra says whether it is a measurement or
only a bound:

- :func:`percentile_eigenvalue`: the ``q``-th percentile (``q = 50`` the median, ``q = 0`` the minimum);
- :func:`log10_ratio`: orders of magnitude between two positive numbers (NaN otherwise);
- :func:`compare_at`: ``log10(lambda_A / lambda_B)`` at a percentile, with the floor substituted for a
  value below it and a flag saying whether the result is exact, a lower bound, an upper bound or
  no measurement at all;
- :func:`mean_log_spectrum`: the mean of ``log10 lambda_i`` over the indices where both spectra
  are above their floors (a one-number summary of how high a spectrum sits);
- :func:`mean_resampled`: many spectra (of different lengths) resampled to one length and averaged
  in ``log10`` with their spread and mean floor (paper 000's Fig. 5); :func:`ordered_fraction`:
  where such mean curves are in a given order.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["percentile_eigenvalue", "log10_ratio", "compare_at", "mean_log_spectrum", "resolved_fraction",
           "mean_resampled", "ordered_fraction"]


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
    (:func:`inrlib.ntk.resample_spectrum`, linear in ``log10``, values below the floor, or below
    the smallest positive eigenvalue when the floor is 0, clipped to it), then over the spectra the
    mean of ``log10 lambda`` (``mean``, returned as ``10**``), its 10th and 90th percentiles
    (``lo``, ``hi``), and the mean log floor (``floor``). ``None`` for no spectra."""
    from .ntk import resample_spectrum
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
    return {"resolved": float(above.mean()), "ordered_resolved": float(ordered[above].mean()) if above.any() else float("nan"),
            "ordered_all": float(ordered.mean())}
