"""Markdown tables for the chapters' pages: generic rows, and the claims table every Findings section opens with."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["markdown_table", "claim_value", "claims_markdown"]


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str | Callable[[Mapping], str]],
                   formats: Mapping[str, str] | None = None) -> str:
    """A Markdown table: ``columns`` maps a header to a row key or to ``fn(row) -> str``; numbers
    are formatted with ``formats[header]`` (default ``.3g``)."""
    import numpy as np

    formats = dict(formats or {})
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    lines = []
    for row in rows:
        cells = []
        for header, spec in columns.items():
            value = spec(row) if callable(spec) else row[spec]
            if isinstance(value, bool):
                cells.append("yes" if value else "**no**")
            elif isinstance(value, (int, np.integer)):
                cells.append(str(int(value)))
            elif isinstance(value, (float, np.floating)):
                cells.append(format(float(value), formats.get(header, ".3g")))
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def claim_value(value: Any, unit: str = "", bound: str | None = None) -> str:
    """A claim's value for a table cell: ``-`` when not measured, a pointer to the notes for a
    sentence, else 3 significant digits (with ``dB`` / ``epochs``, and a >= / <= for a bound)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return "*a sentence (below)*" if len(value) > 40 else value
    sign = {"lower bound": "&ge; ", "upper bound": "&le; "}.get(bound or "", "")
    return f"{sign}{float(value):.3g}{' ' + unit if unit in ('dB', 'epochs') else ''}"


def claims_markdown(claims: Sequence[Mapping[str, Any]], context: str = "") -> str:
    """A chapter's claims as Markdown: the verdict counts, a table (claim, the paper's value, ours,
    verdict) and one note per claim (the paper's sentence where it is one, then how it was judged).
    ``context`` (the settings the claims were measured with) is said once, not in every note."""
    from ..research.claims import VERDICTS, verdict_counts
    counts = verdict_counts(claims)
    head = ", ".join(f"**{v}**: {counts[v]}" for v in VERDICTS) + f" (of {len(claims)} claims)."
    table = markdown_table(claims, {
        "claim": lambda c: f"`{c['id']}`", "the paper": lambda c: claim_value(c["paper_value"], c["unit"]),
        "ours": lambda c: claim_value(c["ours"], c["unit"], c.get("ours_bound")), "verdict": "verdict"})
    notes = "\n".join(
        f"- `{c['id']}` ({c['verdict']}): "
        + (f"the paper: *\"{c['paper_value']}\"* " if isinstance(c["paper_value"], str) else "")
        + (c["note"].replace(context, "").strip() if context else c["note"]) for c in claims)
    return f"{head}\n\n{table}\n\n" + (f"*All claims: {context}*\n\n" if context else "") + notes
