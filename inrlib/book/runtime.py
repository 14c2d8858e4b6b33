"""The chapters' runtime: profiles, the results and runs folders, a chapter's results file.

(:mod:`inrlib.book` shows a chapter's first calls.)

Results land in ``$INRLIB_RESULTS_DIR`` when set (the book pipeline sets it to
``_build/results/<profile>``), else in ``_build/results/<profile>`` under the repository root
(found from the working directory), else under the working directory.
"""
from __future__ import annotations

import datetime as _dt
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..io import read_json, write_json
from ..resources import env_flag, env_path, log_progress_options, progress_mode
from .toc import repo_root

__all__ = [
    "PROFILES",
    "check_profile",
    "profile_value",
    "progress",
    "results_dir",
    "runs_dir",
    "ChapterResults",
    "save_results",
    "load_results",
    "static_page",
]

PROFILES = ("smoke", "quick", "paper")
T = TypeVar("T")


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; use one of {', '.join(repr(p) for p in PROFILES)} "
            "(smoke: seconds, for tests; quick: minutes on 2 CPU cores, the default; paper: the papers' sizes, for a GPU)"
        )
    return profile


def profile_value(profile: str, *, smoke: T, quick: T, paper: T) -> T:
    """Pick the value that belongs to ``profile`` (``"smoke"``, ``"quick"`` or ``"paper"``)."""
    return {"smoke": smoke, "quick": quick, "paper": paper}[check_profile(profile)]


def progress(iterable: Iterable[T], desc: str | None = None, total: int | None = None, **kwargs: Any) -> Iterable[T]:
    """The iterable with progress shown as :func:`inrlib.resources.progress_mode` says: a ``tqdm.auto``
    bar for a person watching; in the ``log`` mode (the book pipeline's) a plain line every 30 s with
    the time left, e.g. ``encodings: 2/6 items (33%), 04:10 elapsed, ~08:20 left``; else nothing (the
    iterable itself). ``kwargs`` go to tqdm (``unit``, ``file``, ...)."""
    mode = progress_mode()
    if mode is None:
        return iterable
    if mode == "log":
        from tqdm.std import tqdm as plain

        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        return plain(iterable, desc=desc or "progress", **{"unit": "items", **log_progress_options(total), **kwargs})
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, **kwargs)


def results_dir(profile: str | None = None) -> Path:
    """Folder for results JSON: ``$INRLIB_RESULTS_DIR``, else ``$INRLIB_RESULTS_BASE/<profile>`` (``make
    lab`` sets it to ``_build/lab/results``), else ``<repo>/_build/results/<profile>``."""
    env = env_path("INRLIB_RESULTS_DIR")
    if env is not None:
        return env
    cwd = Path.cwd().resolve()
    base = env_path("INRLIB_RESULTS_BASE") or (repo_root(cwd) or cwd) / "_build" / "results"
    return base / check_profile(profile) if profile else base


def runs_dir(chapter: str, profile: str) -> Path:
    """Folder of a chapter's saved sweep runs: ``$INRLIB_RUNS_DIR/<chapter>`` (the book pipeline sets it
    to ``_build/runs/<profile>``), else ``<repo>/_build/runs/<profile>/<chapter>``. A re-run of the
    chapter reuses what is there (see :func:`inrlib.research.experiments.sweep`)."""
    if not chapter or any(c in chapter for c in "/\\") or chapter.startswith("."):
        raise ValueError(f"chapter name {chapter!r} must be a plain file stem such as 'scaling'")
    env = env_path("INRLIB_RUNS_DIR")
    if env is not None:
        return env / chapter
    cwd = Path.cwd().resolve()
    return (repo_root(cwd) or cwd) / "_build" / "runs" / check_profile(profile) / chapter


def _environment(device: Any) -> dict[str, Any]:
    import torch

    from .. import __version__

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
        check_profile(profile)
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
            check_profile(params["profile"])
        self.chapter = chapter
        self.params = params
        self._t0 = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def save(self, numbers: Mapping[str, Any], device: Any = None) -> Path:
        return save_results(self.chapter, numbers, self.params, device=device, wall_time_s=self.elapsed_s)


def static_page() -> bool:
    """Whether this chapter runs to become a static HTML page (the book pipeline sets
    ``INRLIB_STATIC_PAGE=1``): explorers then show their precomputed, browser-side versions; in a
    live notebook they show the kernel-backed ones."""
    return bool(env_flag("INRLIB_STATIC_PAGE"))


