"""The book's runtime: what a chapter calls, above the library.

- :mod:`~inrlib.book.runtime`: profiles, :class:`ChapterResults`, the results and runs folders.
- :mod:`~inrlib.book.toc`: the table of contents and the chapters it lists.
- :mod:`~inrlib.book.params`: each parameter's type, range and value by profile; checked before a cell computes.
- :mod:`~inrlib.book.tables`: Markdown tables, the claims table.
- :mod:`~inrlib.book.widgets`: explorers that work live and on the static page.
- :mod:`~inrlib.book.plotting`: every figure the chapters draw.
- :mod:`~inrlib.book.studies`: one module per chapter: what it computes and its claim rules.

A chapter's parameters cell and first calls::

    profile = "quick"   # "smoke" (seconds, tests) | "quick" (minutes on 2 CPU cores) | "paper" (the papers' sizes)
    device = "auto"     # "auto" | "cpu" | "cuda" | "cuda:1" | "mps"
    seed = 0

    from inrlib.book import ChapterResults, profile_value, progress, resolve_device
    run = ChapterResults("theory", profile=profile, device=device, seed=seed)
    n = profile_value(profile, smoke=64, quick=1024, paper=4096)
    run.save({"min_eig": 1.2e-9}, device=resolve_device(device))   # -> <results dir>/theory.json
"""
from ..resources import progress_enabled, resolve_device
from .params import COMMON, ListOf, Param, ParameterError, epoch_list, name_list, resolve
from .runtime import (
                      PROFILES,
                      ChapterResults,
                      check_profile,
                      load_results,
                      profile_value,
                      progress,
                      results_dir,
                      runs_dir,
                      save_results,
                      static_page,
)
from .tables import claim_value, claims_markdown, markdown_table
from .toc import TocError, toc_entries

__all__ = [
    "PROFILES", "check_profile", "profile_value", "progress", "progress_enabled", "resolve_device",
    "results_dir", "runs_dir", "ChapterResults", "save_results", "load_results", "static_page",
    "markdown_table", "claim_value", "claims_markdown", "TocError", "toc_entries",
    "Param", "ListOf", "name_list", "epoch_list", "ParameterError", "resolve", "COMMON",
]
