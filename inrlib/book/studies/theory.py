"""The Theory chapter's verdicts: paper 000's identities (Eq. 2, 9, 11, 13, 14) as claim records.

The chapter measures each identity as a relative error between the formula built by hand and the
empirical NTK engine (or autograd); :func:`identity_claims` turns those errors into claims with
the rule :data:`TOLERANCES` states.
"""
from __future__ import annotations

from typing import Mapping

from ...research.claims import claim

__all__ = ["IDENTITY_CHECKS", "TOLERANCES", "identity_claims"]

#: claim id -> the prefixes of the chapter's check keys that test it (the largest error counts).
IDENTITY_CHECKS = {
    "000.eq2": ("eq2_",),
    "000.eq9": ("eq9_",),
    "000.eq11": ("eq11_",),
    "000.eq13.grid_term": ("eq13_", "eq12_"),
    "000.eq14.ffe_no_grid_term": ("eq14_total_vs_mlp", "eq14_mlp_on_embedding", "eq14_by_hand"),
}
#: (holds below, approximately below): float64 identities agree to ~1e-15 relative error; 1e-12 leaves
#: room for long sums, 1e-6 would be float32-level agreement (a formula that is right up to rounding of
#: a lower precision), anything larger is a wrong formula.
TOLERANCES = (1e-12, 1e-6)


def identity_claims(checks: Mapping[str, float], grid_max_abs_ffe: float | None = None,
                    tolerances: tuple[float, float] = TOLERANCES) -> list[dict]:
    """One claim per entry of :data:`IDENTITY_CHECKS`, ``ours`` the largest relative error of its
    checks (a ``ValueError`` names an identity with no check). For ``000.eq14.ffe_no_grid_term``
    the engine's grid group of the FFE network (``grid_max_abs_ffe``, max absolute entry) must
    also be exactly zero."""
    holds, approx = tolerances
    out = []
    for id_, prefixes in IDENTITY_CHECKS.items():
        keys = sorted(k for k in checks if k.startswith(prefixes))
        if not keys:
            raise ValueError(f"no check for {id_}: expected keys starting with {prefixes}, got {sorted(checks)}")
        worst_key = max(keys, key=lambda k: checks[k])
        worst = float(checks[worst_key])
        verdict = "holds" if worst < holds else "approximately" if worst < approx else "fails"
        note = (f"largest relative error over {len(keys)} checks ({', '.join(keys)}): {worst:.1e} "
                f"({worst_key}); holds below {holds:g}, approximately below {approx:g}")
        if id_ == "000.eq14.ffe_no_grid_term" and grid_max_abs_ffe is not None:
            note += f"; the FFE network's grid group has max |entry| {grid_max_abs_ffe:g}"
            if grid_max_abs_ffe != 0:
                verdict = "fails"
        out.append(claim(id_, worst, verdict, note, unit="relative error"))
    return out
