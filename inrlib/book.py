"""Small runtime helpers for the book's chapters.

Every chapter starts with a papermill ``parameters`` cell::

    profile = "quick"   # "smoke" (seconds, tests) | "quick" (minutes on 2 CPU cores) | "paper" (GPU sizes)
    device = "auto"     # "auto" | "cpu" | "cuda" | "cuda:1" | "mps"
    seed = 0

and then uses these helpers::

    from inrlib.book import ChapterResults, profile_value, progress, resolve_device
    run = ChapterResults("theory", profile=profile, device=device, seed=seed)
    dev = resolve_device(device)
    n = profile_value(profile, smoke=64, quick=1024, paper=4096)
    for step in progress(range(steps)): ...
    run.save({"min_eig": 1.2e-9}, device=dev)       # -> <results dir>/theory.json

Results land in ``$INRLIB_RESULTS_DIR`` when set (the book pipeline sets it to
``_build/results/<profile>``), else in ``_build/results/<profile>`` under the repository root
(found from the working directory), else under the working directory.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from .io import read_json, write_json

__all__ = [
    "PROFILES",
    "resolve_device",
    "profile_value",
    "progress",
    "progress_enabled",
    "results_dir",
    "runs_dir",
    "ChapterResults",
    "save_results",
    "load_results",
    "markdown_table",
    "static_page",
    "claim_value",
    "claims_markdown",
    "TocError",
    "toc_entries",
]

PROFILES = ("smoke", "quick", "paper")
T = TypeVar("T")


def _check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; use one of {', '.join(repr(p) for p in PROFILES)} "
            "(smoke: seconds, for tests; quick: minutes on 2 CPU cores, the default; paper: the papers' sizes, for a GPU)"
        )
    return profile


def profile_value(profile: str, *, smoke: T, quick: T, paper: T) -> T:
    """Pick the value that belongs to ``profile`` (``"smoke"``, ``"quick"`` or ``"paper"``)."""
    return {"smoke": smoke, "quick": quick, "paper": paper}[_check_profile(profile)]


def resolve_device(device: str = "auto"):
    """Turn a chapter's ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` picks CUDA when available, then Apple MPS, then the CPU. An explicit device that
    is not available raises a :class:`RuntimeError` that says so and what to pass instead.
    """
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a torch device name ({err}); use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but this torch ({torch.__version__}) sees no CUDA GPU; "
                               "pass device='auto' or 'cpu', or install a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError(f"device {device!r} requested but MPS is not available; pass device='auto' or 'cpu'")
    return dev


def progress_enabled() -> bool:
    """Whether progress bars should be drawn: only for a person watching.

    Off when ``INRLIB_PROGRESS=0`` (the book pipeline sets it for papermill runs) or ``CI`` is
    set; on when ``INRLIB_PROGRESS=1``; otherwise on in a Jupyter kernel or a terminal.
    """
    flag = os.environ.get("INRLIB_PROGRESS", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    if os.environ.get("CI"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(iterable: Iterable[T], desc: str | None = None, total: int | None = None, **kwargs: Any) -> Iterable[T]:
    """``tqdm.auto`` progress bar when someone is watching (see :func:`progress_enabled`), else the iterable itself."""
    if not progress_enabled():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, **kwargs)


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").is_file() and (folder / "inrlib").is_dir():
            return folder
    return None


class TocError(ValueError):
    """A jupyter-book toc this project cannot read; the message names the file and the fix."""


def _walk_toc(node: Any, toc: Path) -> Iterable[str]:
    if isinstance(node, dict):
        if "glob" in node:
            raise TocError(f"{toc}: 'glob' entries are not supported by the book pipeline; list each file")
        if "file" in node:
            yield str(node["file"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                yield from _walk_toc(child, toc)
    elif isinstance(node, list):
        for child in node:
            yield from _walk_toc(child, toc)


def toc_entries(toc: str | Path) -> list[str]:
    """Every ``file`` entry of a jupyter-book 1.x toc (``format: jb-book``), the root first, in
    reading order, as written (paths from the repository root, with or without a suffix)."""
    import yaml

    toc = Path(toc)
    if not toc.is_file():
        raise TocError(f"{toc} not found")
    try:
        data = yaml.safe_load(toc.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise TocError(f"{toc} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or "root" not in data:
        raise TocError(f"{toc} has no 'root' entry (jupyter-book 1.x toc, format: jb-book)")
    return [str(data["root"]), *_walk_toc(data, toc)]


def results_dir(profile: str | None = None) -> Path:
    """Folder for results JSON: ``$INRLIB_RESULTS_DIR``, else ``$INRLIB_RESULTS_BASE/<profile>`` (``make
    lab`` sets it to ``_build/lab/results``), else ``<repo>/_build/results/<profile>``."""
    env = os.environ.get("INRLIB_RESULTS_DIR")
    if env:
        return Path(env)
    cwd = Path.cwd().resolve()
    base = Path(os.environ.get("INRLIB_RESULTS_BASE") or (_repo_root(cwd) or cwd) / "_build" / "results")
    return base / _check_profile(profile) if profile else base


def runs_dir(chapter: str, profile: str) -> Path:
    """Folder of a chapter's saved sweep runs: ``$INRLIB_RUNS_DIR/<chapter>`` (the book pipeline sets it
    to ``_build/runs/<profile>``), else ``<repo>/_build/runs/<profile>/<chapter>``. A re-run of the
    chapter reuses what is there (see :func:`inrlib.experiments.sweep`)."""
    if not chapter or any(c in chapter for c in "/\\") or chapter.startswith("."):
        raise ValueError(f"chapter name {chapter!r} must be a plain file stem such as 'scaling'")
    env = os.environ.get("INRLIB_RUNS_DIR")
    if env:
        return Path(env) / chapter
    cwd = Path.cwd().resolve()
    return (_repo_root(cwd) or cwd) / "_build" / "runs" / _check_profile(profile) / chapter


def _environment(device: Any) -> dict[str, Any]:
    import torch

    from . import __version__

    return {
        "inrlib_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device) if device is not None else None,
        "cuda_device_name": (torch.cuda.get_device_name(torch.device(str(device)))
                             if device is not None and str(device).startswith("cuda") and torch.cuda.is_available()
                             else None),
        "torch_threads": torch.get_num_threads(),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def save_results(chapter: str, numbers: Mapping[str, Any], params: Mapping[str, Any], *,
                 device: Any = None, wall_time_s: float | None = None) -> Path:
    """Write ``<results dir>/<chapter>.json`` atomically and return its path.

    ``params`` are the chapter's parameters (``profile`` among them); the file also records the
    inrlib and torch versions, the device, the wall time and a UTC timestamp.
    """
    if not chapter or any(c in chapter for c in "/\\") or chapter.startswith("."):
        raise ValueError(f"chapter name {chapter!r} must be a plain file stem such as 'theory'")
    params = dict(params)
    profile = params.get("profile")
    if profile is not None:
        _check_profile(profile)
    record = {
        "chapter": chapter,
        "params": params,
        "numbers": dict(numbers),
        "wall_time_s": wall_time_s,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **_environment(device if device is not None else params.get("device")),
    }
    return write_json(results_dir(profile) / f"{chapter}.json", record)


def load_results(chapter: str, profile: str | None = None) -> dict[str, Any]:
    """Read what :func:`save_results` wrote for ``chapter`` (a clear error when it is missing)."""
    path = results_dir(profile) / f"{chapter}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results for chapter {chapter!r} at {path}; "
                                f"run it first: make chapter CHAPTER={chapter}"
                                + (f' PARAMS="-p profile {profile}"' if profile else ""))
    return read_json(path)


class ChapterResults:
    """A chapter's run: remembers its parameters and start time; :meth:`save` writes the JSON.

    >>> run = ChapterResults("theory", profile="smoke", device="auto", seed=0)   # doctest: +SKIP
    >>> run.save({"min_eig": 1e-9}, device=dev)                                   # doctest: +SKIP
    """

    def __init__(self, chapter: str, **params: Any) -> None:
        if "profile" in params:
            _check_profile(params["profile"])
        self.chapter = chapter
        self.params = params
        self._t0 = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def save(self, numbers: Mapping[str, Any], device: Any = None) -> Path:
        return save_results(self.chapter, numbers, self.params, device=device, wall_time_s=self.elapsed_s)


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


def static_page() -> bool:
    """Whether this chapter runs to become a static HTML page (the book pipeline sets
    ``INRLIB_STATIC_PAGE=1``): explorers then show their precomputed, browser-side versions; in a
    live notebook they show the kernel-backed ones."""
    return os.environ.get("INRLIB_STATIC_PAGE", "").strip().lower() in ("1", "true", "yes", "on")


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
    from .claims import VERDICTS, verdict_counts
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
