"""The Reproduction chapter: every chapter's claim records gathered into one table, beside the papers.

A chapter records the claims it tests under ``numbers.claims`` of its results file
(:mod:`inrlib.research.claims`). :func:`gather` reads the results files of the chapters of one profile, checks
them (a missing file, a file of another profile, a chapter without claims, a claim without a field,
a chapter whose source is newer than its results: each is a *problem*), and lists the paper values
of :data:`inrlib.research.claims.PAPER_VALUES` that no chapter recorded as *missing*. :func:`require_complete`
turns problems into an error, so the table is never built from partial or stale data silently.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...io import read_json
from ...research.claims import VERDICTS, check_claims
from ...research.papers import PAPER_VALUES, PAPERS
from ..runtime import results_dir
from ..toc import GATHERING, book_toc, sources_dir, toc_chapters  # noqa: F401 (the chapters call them as R.*)

__all__ = ["GATHERING", "DATA_KEYS", "PAPERS", "ReproductionError", "book_toc", "sources_dir", "toc_chapters", "gather", "covers",
           "missing_claims", "counts_by_paper", "require_complete", "chapter_title", "claims_html"]

#: Chapter parameters that name the data a chapter ran on (shown beside its claims).
DATA_KEYS = ("image", "imagenet_root", "n_images", "n_synsets", "meshes", "side", "resolution")

class ReproductionError(ValueError):
    """The gathered results are incomplete or inconsistent; the message lists every problem."""


def _parse_time(stamp: str | None) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def _data_of(params: Mapping[str, Any]) -> str:
    shown = [f"{k}={params[k]}" for k in DATA_KEYS if params.get(k) is not None]
    return ", ".join(shown) if shown else "generated in the chapter"


def gather(chapters: Sequence[str], profile: str, *, folder: str | Path | None = None,
           sources: str | Path | None = None) -> dict[str, Any]:
    """Read ``<folder>/<chapter>.json`` for each chapter (``folder``: :func:`inrlib.book.results_dir`
    of ``profile``) and gather their claims.

    ``sources``: the folder of the chapters' ``<chapter>.py`` files; when given, a results file
    older than its chapter's source is a problem (stale). Returns ``{"profile", "rows", "chapters",
    "problems", "missing"}``: ``rows`` the claim records with ``chapter``, ``profile``, ``data`` and
    ``timestamp`` added; ``chapters`` one record per chapter (path, profile, device, data, time,
    claims); ``missing`` the :data:`PAPER_VALUES` ids no row covers (see :func:`covers`).
    """
    folder = Path(folder) if folder is not None else results_dir(profile)
    rows: list[dict[str, Any]] = []
    per_chapter: list[dict[str, Any]] = []
    problems: list[str] = []
    if not chapters:
        problems.append("no chapters to gather (the toc lists none besides the gathering pages)")
    for chapter in chapters:
        path = folder / f"{chapter}.json"
        info: dict[str, Any] = {"chapter": chapter, "path": str(path), "n_claims": 0}
        per_chapter.append(info)
        if not path.is_file():
            problems.append(f"{chapter}: no results file {path}; execute the chapter first (make book, or "
                            f"make chapter CHAPTER={chapter} PARAMS=\"-p profile {profile}\")")
            continue
        try:
            record = read_json(path)
        except (OSError, ValueError) as err:
            problems.append(f"{chapter}: cannot read {path}: {err}")
            continue
        params = record.get("params", {})
        info.update(profile=params.get("profile"), device=record.get("device"), timestamp=record.get("timestamp"),
                    wall_time_s=record.get("wall_time_s"), data=_data_of(params), params=params)
        if params.get("profile") != profile:
            problems.append(f"{chapter}: {path} holds a run of profile {params.get('profile')!r}, not {profile!r}; "
                            "results of two profiles are never mixed in one table")
            continue
        if sources is not None:
            src = Path(sources) / f"{chapter}.py"
            ran = _parse_time(record.get("timestamp"))
            if src.is_file() and ran is not None and _dt.datetime.fromtimestamp(
                    src.stat().st_mtime, _dt.timezone.utc) > ran + _dt.timedelta(seconds=2):
                problems.append(f"{chapter}: its source {src.name} changed after the results were written "
                                f"({record.get('timestamp')}): stale; re-execute it (make book)")
        claims = record.get("numbers", {}).get("claims")
        if not claims:
            problems.append(f"{chapter}: its results record no claims (numbers.claims is "
                            f"{'empty' if claims == [] else 'absent'}); every chapter in the toc records the "
                            "papers' claims it tests")
            continue
        try:
            claims = check_claims(claims)
        except ValueError as err:
            problems.append(f"{chapter}: {err}")
            continue
        info["n_claims"] = len(claims)
        for c in claims:
            rows.append({**c, "chapter": chapter, "profile": profile, "data": info["data"],
                         "timestamp": record.get("timestamp")})
    seen: dict[str, str] = {}
    for r in rows:
        if r["id"] in seen:
            problems.append(f"claim {r['id']!r} is recorded by both {seen[r['id']]} and {r['chapter']}")
        seen[r["id"]] = r["chapter"]
    return {"profile": profile, "rows": rows, "chapters": per_chapter, "problems": problems,
            "missing": missing_claims(rows)}


def covers(row_id: str, paper_id: str) -> bool:
    """Whether a claim recorded as ``row_id`` tests the paper value ``paper_id``: the same id, or a
    per-case id under it (``000.appE.iou_order.bunny`` covers ``000.appE.iou_order``)."""
    return row_id == paper_id or row_id.startswith(paper_id + ".")


def missing_claims(rows: Iterable[Mapping[str, Any]], paper_values: Mapping[str, Any] = PAPER_VALUES) -> list[str]:
    """The ids of ``paper_values`` that no row covers, in their order."""
    ids = [r["id"] for r in rows]
    return [p for p in paper_values if not any(covers(i, p) for i in ids)]


def counts_by_paper(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """``{paper: {verdict: count}}`` over ``rows`` (every paper of :data:`PAPERS` and every verdict
    listed, zeros included), plus ``"all"``."""
    out = {p: {v: 0 for v in VERDICTS} for p in (*PAPERS, "all")}
    for r in rows:
        out.setdefault(r["paper"], {v: 0 for v in VERDICTS})[r["verdict"]] += 1
        out["all"][r["verdict"]] += 1
    return out


def require_complete(gathered: Mapping[str, Any], *, allow_missing: bool = False) -> None:
    """Raise :class:`ReproductionError` listing every problem of ``gathered`` (and every missing
    claim, unless ``allow_missing``)."""
    problems = list(gathered["problems"])
    if gathered["missing"] and not allow_missing:
        problems.append(f"{len(gathered['missing'])} paper values no chapter recorded: "
                        + ", ".join(gathered["missing"]))
    if problems:
        raise ReproductionError(f"the reproduction table of profile {gathered['profile']!r} is incomplete:\n- "
                                + "\n- ".join(problems))


def chapter_title(chapter: str, sources: str | Path) -> str:
    """The first Markdown heading of ``<sources>/<chapter>.py`` (the chapter's title), else its stem."""
    path = Path(sources) / f"{chapter}.py"
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith("# # "):
                return line[4:].strip()
    return chapter


def _esc(text: Any) -> str:
    import html
    return html.escape(str(text), quote=True)


def claims_html(rows: Sequence[Mapping[str, Any]], titles: Mapping[str, str]) -> str:
    """One HTML table of claim rows, sized to the page (fixed column widths, text wraps): per claim
    a row with the claim (id, statement, where in the paper), the paper's value (the quoted sentence
    for a qualitative claim), ours, the verdict and the chapter it came from, linked to that
    chapter's *Findings* section (``<chapter>.html#findings``, where it shows and judges its
    claims); under it a full-width row with the chapter's note on how the verdict was reached."""
    from ..tables import claim_value
    colour = {"holds": "#1a7f37", "approximately": "#9a6700", "differs": "#bc4c00", "fails": "#cf222e",
              "not tested": "#57606a"}
    widths = (35, 29, 11, 13, 12)
    cols = "".join(f"<col style='width:{w}%'>" for w in widths)
    head = ("<table class='table inrlib-claims' style='table-layout:fixed; width:100%; overflow-wrap:anywhere'>"
            f"<colgroup>{cols}</colgroup><thead><tr><th>claim</th><th>the paper</th><th>ours</th>"
            "<th>verdict</th><th>from</th></tr></thead><tbody>")
    body = []
    for r in rows:
        paper = r["paper_value"]
        paper_cell = (f"<em>&ldquo;{_esc(paper)}&rdquo;</em>" if isinstance(paper, str)
                      else _esc(claim_value(paper, r["unit"])))
        ours = claim_value(r["ours"], r["unit"], r.get("ours_bound")).replace("*a sentence (below)*", "see the note")
        unit = (f" <small>({_esc(r['unit'])})</small>" if r["unit"] and r["unit"] not in ("dB", "epochs")
                and r["ours"] is not None else "")
        body.append(
            f"<tr><td><code>{_esc(r['id'])}</code><br><small>{_esc(r['statement'])}; {_esc(r['source'])}</small></td>"
            f"<td><small>{paper_cell}</small></td><td>{ours}{unit}</td>"
            f"<td><strong style='color:{colour.get(r['verdict'], '#000')}'>{_esc(r['verdict'])}</strong></td>"
            f"<td><a href='{_esc(r['chapter'])}.html#findings'>{_esc(titles.get(r['chapter'], r['chapter']))}</a></td></tr>"
            f"<tr class='inrlib-claim-note'><td colspan='5' style='border-top:none; padding-top:0'><small>"
            f"<em>How it was judged:</em> {_esc(r['note']) or '-'}</small></td></tr>")
    return head + "".join(body) + "</tbody></table>"
