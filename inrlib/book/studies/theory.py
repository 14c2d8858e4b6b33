"""The Theory chapter's verdicts: paper 000's identities (Eq. 2, 9, 11, 13, 14) as claim records.

The chapter measures each identity as a relative error between the formula built by hand and the
empirical NTK engine (or autograd); :func:`identity_claims` turns those errors into claims with
the rule :data:`TOLERANCES` states.

The chapter's NTK explorer computes here too: :func:`explorer_config` (its 1D networks as
:class:`~inrlib.models.ModelConfig`), :func:`explorer_state` (a kernel, its spectrum and floor);
:mod:`inrlib.book.widgets` wires them to controls.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...models import CoordinateMLP, ModelConfig
from ...research.claims import claim

__all__ = ["IDENTITY_CHECKS", "TOLERANCES", "identity_claims", "ENCODINGS", "TERMS", "grid_levels", "explorer_config",
           "explorer_state"]

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


# ----------------------------------------------------------------------------------------------
# the explorer's networks and kernels (the widgets in inrlib.book.widgets only draw them)
# ----------------------------------------------------------------------------------------------

#: Encodings the 1D explorer offers: label -> key.
ENCODINGS = {"none (baseline MLP)": "none", "Fourier features (FFE)": "fourier", "multigrid (MPE)": "multigrid"}
#: Kernel terms it can show: the whole NTK, the MLP-on-embedding term, the grid term.
TERMS = {"total K": "total", "MLP term (no grid)": "mlp", "grid term K+": "grid"}
#: The most Fourier levels the explorer accepts (frequencies up to ``2^23``).
MAX_FOURIER_LEVELS = 24


def grid_levels(resolution: int, levels: int) -> list[int]:
    """Resolutions of ``levels`` grids, the finest with ``resolution`` nodes, each coarser one about half.

    >>> grid_levels(16, 3)
    [4, 8, 16]
    """
    resolution, levels = int(resolution), int(levels)
    out = [max(2, round(resolution / 2 ** (levels - 1 - l))) for l in range(levels)]
    return out


def explorer_config(encoding: str = "multigrid", resolution: int = 16, levels: int = 2, fourier_levels: int = 4, *,
                    features: int = 2, width: int = 128, depth: int = 2) -> ModelConfig:
    """The explorer's 1D network: ``encoding`` then ``depth`` ReLU layers of ``width`` (NTK
    parameterization), as a :class:`~inrlib.models.ModelConfig` (``dim`` 1 comes with the builder).

    ``encoding`` is ``"none"``, ``"fourier"`` (``fourier_levels`` frequencies ``2^0 .. 2^(L-1)``) or
    ``"multigrid"`` (``levels`` grids, the finest with ``resolution`` nodes, see :func:`grid_levels`;
    ``features`` values per node).
    """
    if encoding == "none":
        enc: dict[str, Any] = {"type": "identity"}
    elif encoding == "fourier":
        if not 1 <= fourier_levels <= MAX_FOURIER_LEVELS:
            raise ValueError(f"fourier_levels must be in [1, {MAX_FOURIER_LEVELS}], got {fourier_levels}")
        enc = {"type": "fourier", "levels": int(fourier_levels)}
    elif encoding == "multigrid":
        if int(resolution) < 2 or int(levels) < 1:
            raise ValueError(f"multigrid needs resolution >= 2 and levels >= 1, got {resolution}, {levels}")
        enc = {"type": "multigrid", "resolutions": grid_levels(resolution, levels), "features": int(features)}
    else:
        raise ValueError(f"encoding must be one of {sorted(ENCODINGS.values())}, got {encoding!r}")
    return ModelConfig(enc, (int(width),) * int(depth), "relu")


def explorer_state(encoding: str = "multigrid", resolution: int = 16, levels: int = 2, fourier_levels: int = 4,
                   term: str = "total", *, features: int = 2, n_points: int = 128, width: int = 128, depth: int = 2,
                   seed: int = 0) -> dict[str, Any]:
    """Everything the explorer shows for one setting: the kernel of :func:`explorer_config`'s network
    (built with ``seed``) on ``n_points`` evenly spaced points of ``[0, 1]``, its spectrum (float64,
    descending) and its rounding floor.

    ``term``: ``"total"`` (the NTK), ``"mlp"`` (the MLP-on-embedding term) or ``"grid"`` (the
    grid term, zero without a grid). Returns ``{"K", "eigenvalues", "floor", "x", "label",
    "settings", "n_below_floor", "zero"}`` (NumPy arrays).
    """
    from ...ntk import empirical_ntk, rounding_floor, spectrum
    if term not in TERMS.values():
        raise ValueError(f"term must be one of {sorted(TERMS.values())}, got {term!r}")
    if int(n_points) < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    config = explorer_config(encoding, resolution, levels, fourier_levels, features=features, width=width, depth=depth)
    model = CoordinateMLP.from_config(config, dim=1, seed=int(seed))
    x = torch.linspace(0, 1, int(n_points), dtype=torch.float64)[:, None]
    K = empirical_ntk(model, x, groups=True)[term]
    ev = spectrum(K)
    zero = not bool(K.abs().max() > 0)
    floor = 0.0 if zero else rounding_floor(K, ev)
    settings = {"encoding": encoding, "term": term, "n_points": int(n_points), "width": int(width),
                "depth": int(depth), "seed": int(seed)}
    if encoding == "fourier":
        settings["fourier_levels"] = int(fourier_levels)
        label = f"FFE, L = {int(fourier_levels)}"
    elif encoding == "multigrid":
        settings.update(resolutions=model.encoding.resolutions, features=int(features))
        label = f"MPE, grids {model.encoding.resolutions}, k = {int(features)}"
    else:
        label = "no encoding"
    if term != "total":
        label += f" ({term} term)"
    return {"K": K.cpu().numpy(), "eigenvalues": ev, "floor": floor, "x": x[:, 0].numpy(), "label": label,
            "settings": settings, "n_below_floor": int((ev <= floor).sum()), "zero": zero}
