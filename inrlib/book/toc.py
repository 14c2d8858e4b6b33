"""The book's table of contents: the repository root, the toc's file entries, the chapters it lists.

A jupyter-book 1.x toc (``_toc.yml``, ``format: jb-book``) names pages by their path from the
repository root. The gathering pages (the front page and the Reproduction page) read the other
chapters' results; :func:`toc_chapters` lists the chapters that record claims.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..resources import env_path

__all__ = ["GATHERING", "TocError", "repo_root", "toc_entries", "book_toc", "sources_dir", "toc_chapters"]

#: Pages that gather the other chapters' results instead of recording claims of their own.
GATHERING = ("intro", "reproduction")


def repo_root(start: Path) -> Path | None:
    """The first folder at or above ``start`` that holds ``_toc.yml`` and ``inrlib/``, else ``None``."""
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


def book_toc() -> Path:
    """The toc of the book being built: ``$INRLIB_TOC`` (the book pipeline sets it), else the
    repository's ``_toc.yml`` (found from the working directory)."""
    toc = env_path("INRLIB_TOC")
    if toc is not None:
        return toc
    cwd = Path.cwd().resolve()
    return (repo_root(cwd) or cwd) / "_toc.yml"


def sources_dir(start: str | Path | None = None) -> Path:
    """The folder of the chapters' ``.py`` sources: ``start`` (default: the working directory) when
    it holds a gathering page (papermill runs each page in its own folder), else its ``book/``."""
    folder = Path(start) if start is not None else Path.cwd()
    if any((folder / f"{page}.py").is_file() for page in GATHERING):
        return folder
    return folder / "book"


def toc_chapters(toc: str | Path) -> list[str]:
    """The chapter stems (``"theory"``, ...) a jupyter-book toc lists, in reading order, the pages
    of :data:`GATHERING` and Markdown pages left out. Entries are paths from the repository root
    (the toc's folder or the first folder above it that holds ``inrlib/``); a chapter has a ``.py``
    source there."""
    toc = Path(toc).resolve()
    root = repo_root(toc.parent) or toc.parent
    entries = toc_entries(toc)
    out = []
    for e in entries:
        stem = Path(e).with_suffix("") if Path(e).suffix == ".py" else Path(e)
        if (root / f"{stem}.py").is_file() and stem.name not in GATHERING and stem.name not in out:
            out.append(stem.name)
    return out
