"""The papers' claims: their own values in one place, and the records chapters write about them.

:data:`PAPER_VALUES` holds every number and sentence of the three papers that a chapter tests, each
with its source (paper, table / figure / section, row) and, for a sentence, the quoted text. Nothing
else in the library or the book types in a paper's number: chapters call :func:`paper_value` or
:func:`claim`.

A chapter records what it found as a list of claim records under
``numbers.claims`` of its results file::

    {"id": "000.table3.psnr.mpe_fine", "paper": "000", "statement": "...", "paper_value": 41.5,
     "ours": 38.2, "unit": "dB", "verdict": "differs", "note": "...", "source": "Table 3, row Fine (MPE)"}

``verdict`` is one of :data:`VERDICTS`. :func:`claim` builds a record from an id (the paper's side
comes from :data:`PAPER_VALUES`), :func:`check_claims` validates a list, and
:func:`verdict_from_difference` is the rule for numeric comparisons, stated where it is used.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .papers import PAPER_VALUES

__all__ = ["PAPER_VALUES", "VERDICTS", "CLAIM_FIELDS", "paper_value", "claim", "check_claims",
           "verdict_from_difference", "verdict_counts"]

VERDICTS = ("holds", "approximately", "differs", "fails", "not tested")
CLAIM_FIELDS = ("id", "paper", "statement", "paper_value", "ours", "unit", "verdict", "note", "source")

def paper_value(id_: str) -> dict[str, Any]:
    """The paper's side of claim ``id_`` (a copy); a clear error for an unknown id."""
    if id_ not in PAPER_VALUES:
        near = [k for k in PAPER_VALUES if k.split(".")[:2] == id_.split(".")[:2]]
        raise KeyError(f"no paper value {id_!r} in inrlib.research.papers.PAPER_VALUES"
                       + (f"; ids of that group: {', '.join(near)}" if near else ""))
    return dict(PAPER_VALUES[id_])


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def claim(id_: str, ours: Any, verdict: str, note: str = "", *, statement: str | None = None,
          unit: str | None = None, bound: str | None = None, paper_id: str | None = None) -> dict[str, Any]:
    """A claim record: the paper's side from :data:`PAPER_VALUES`, ours as given.

    ``paper_id`` (default ``id_``) names the paper's entry when one statement is tested several
    times under its own ids, e.g. ``000.appE.iou_order.bunny`` against ``000.appE.iou_order``.

    ``ours`` is a number, a short string or ``None`` (not measured); non-finite numbers become
    ``None``. ``verdict`` must be one of :data:`VERDICTS`; a ``"not tested"`` verdict needs a note
    saying why. ``bound="lower bound"`` (or ``"upper bound"``) marks ``ours`` as a bound, not a
    measurement (stored as ``ours_bound``).
    """
    ref = paper_value(paper_id or id_)
    if bound not in (None, "exact", "lower bound", "upper bound"):
        raise ValueError(f"bound must be None, 'exact', 'lower bound' or 'upper bound', got {bound!r}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} for claim {id_!r} must be one of {', '.join(VERDICTS)}")
    if verdict == "not tested" and not note:
        raise ValueError(f"claim {id_!r} is 'not tested': give a note saying why")
    if hasattr(ours, "item"):
        ours = ours.item()
    record = {"id": id_, "paper": ref["paper"], "statement": statement or ref["statement"],
              "paper_value": ref["value"] if ref["value"] is not None else ref.get("quote"),
              "ours": _finite_or_none(ours), "unit": ref["unit"] if unit is None else unit, "verdict": verdict,
              "note": note, "source": ref["source"]}
    if bound not in (None, "exact"):
        record["ours_bound"] = bound
    return record


def check_claims(claims: Iterable[Mapping[str, Any]], required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Validate claim records: every field present, known verdicts, unique ids, and every id in
    ``required`` recorded. Returns them as plain dicts; raises ``ValueError`` naming each problem."""
    out, problems, seen = [], [], set()
    for c in claims:
        c = dict(c)
        missing = [f for f in CLAIM_FIELDS if f not in c]
        if missing:
            problems.append(f"claim {c.get('id', '?')!r} lacks {', '.join(missing)}")
        if c.get("verdict") not in VERDICTS:
            problems.append(f"claim {c.get('id', '?')!r} has verdict {c.get('verdict')!r}, not one of {VERDICTS}")
        if c.get("id") in seen:
            problems.append(f"claim {c.get('id')!r} recorded twice")
        seen.add(c.get("id"))
        out.append(c)
    absent = [r for r in required if r not in seen]
    if absent:
        problems.append(f"claims not recorded: {', '.join(absent)}")
    if problems:
        raise ValueError("; ".join(problems))
    return out


def verdict_from_difference(ours: float, paper: float, holds_within: float, approximately_within: float) -> str:
    """``"holds"`` when ``|ours - paper| <= holds_within``, ``"approximately"`` when within
    ``approximately_within``, else ``"differs"``; ``"not tested"`` when ours is not a finite number."""
    if ours is None or not math.isfinite(float(ours)):
        return "not tested"
    gap = abs(float(ours) - float(paper))
    if gap <= holds_within:
        return "holds"
    if gap <= approximately_within:
        return "approximately"
    return "differs"


def verdict_counts(claims: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{verdict: count}`` over ``claims``, every verdict listed (zeros included)."""
    counts = {v: 0 for v in VERDICTS}
    for c in claims:
        counts[c["verdict"]] += 1
    return counts
