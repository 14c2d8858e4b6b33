#!/usr/bin/env python
"""Run a chapter as a plain Python script, without Jupyter: for a GPU server that has PyTorch but
no papermill, IPython or ipywidgets.

    python scripts/run_headless.py book/weyl_bound.py OUT -p profile paper -p device cuda

The chapter's ``py:percent`` source is split into cells; its code cells run in order, in one
namespace, in the chapter's folder, with ``-p NAME VALUE`` (typed) / ``-r NAME VALUE`` (raw string)
assigned right after the cell tagged ``parameters`` (papermill's rule; an unknown name is an
error). What the chapter displays goes to ``OUT`` instead of a notebook:

- ``OUT/report.md``: the Markdown and HTML the chapter displays, each figure as ``fig-NNN.png``
  beside it, and a line per cell with its wall time, appended as the chapter runs (a run stopped
  part way leaves what it reached);
- ``OUT/cells.json``: ``[{"cell", "line", "seconds", "status"}]``, rewritten after every cell;
- ``OUT/results/``: the chapter's results JSON (``INRLIB_RESULTS_DIR``).

The explorers (ipywidgets) are not built: each is replaced by a line in the report, and so
costs nothing. Each cell's end is a line on stderr; inside training and sweeps a line every 30 s
says how far they are and the time left (``INRLIB_PROGRESS=log``; set it to ``0`` for none, or to
``log:SECONDS``). ``--memory-fraction F`` caps this process at ``F`` of the GPU
(``torch.cuda.set_per_process_memory_fraction``; the NTK engine sizes its work to the cap), for
chapters that share one card. Exit status 1 when a cell raises, 130 when interrupted (SIGINT, e.g.
``timeout -s INT``); the traceback is in the report either way.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bookpipe import PROFILES, PipelineError, parameters_in, parse_params, rel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def percent_cells(text: str) -> list[dict[str, Any]]:
    """The cells of a ``py:percent`` file: ``[{"kind": "code"|"markdown"|"raw", "tags": [...],
    "line": first line (1-based), "source": str}]``; the jupytext header before the first marker is
    dropped."""
    cells: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.startswith("# %%"):
            header = line[4:].strip()
            kind = "code"
            if header.startswith("["):
                kind = header[1:header.index("]")] if "]" in header else "code"
            tags: list[str] = []
            if "tags=" in header:
                try:
                    tags = list(ast.literal_eval(header.split("tags=", 1)[1].split("]", 1)[0] + "]"))
                except (SyntaxError, ValueError):
                    raise PipelineError(f"line {number}: cannot read the cell's tags in {line.strip()!r}") from None
            cells.append({"kind": kind, "tags": tags, "line": number + 1, "source": ""})
        elif cells:
            cells[-1]["source"] += line
    return cells


class Report:
    """Where the chapter's displays go: Markdown, HTML and PNG figures in ``out``."""

    def __init__(self, out: Path):
        self.out = out
        self.figures = 0
        self.md = (out / "report.md").open("w", encoding="utf-8")

    def write(self, text: str) -> None:
        self.md.write(text.rstrip("\n") + "\n\n")
        self.md.flush()

    def display(self, *objs: Any, **_: Any) -> None:
        for obj in objs:
            kind = type(obj).__name__
            if obj is None:
                continue
            if kind == "Image":
                self.figures += 1
                name = f"fig-{self.figures:03d}.png"
                (self.out / name).write_bytes(obj.data)
                self.write(f"![figure {self.figures}]({name})")
            elif kind in ("Markdown", "HTML"):
                self.write(obj.data)
            elif kind == "Skipped":
                self.write(f"*({obj.data}: not built in a headless run)*")
            else:
                self.write(f"```\n{obj!r}\n```")


class _Shown:
    """What ``IPython.display``'s ``Image``/``Markdown``/``HTML`` hold, where IPython is absent."""

    def __init__(self, data: Any = None, **_: Any):
        self.data = data


class Skipped(_Shown):
    """An explorer that was not built."""


def install_stand_ins(report: Report):
    """``IPython.display.display`` writes to the report (a minimal ``IPython.display`` stands in
    where IPython is not installed); the explorers, which need ipywidgets, are skipped. Returns a
    function that puts everything back (a run inside a longer process, a test, leaves no trace)."""
    import inrlib.book.widgets as widgets

    names = ("explorer", "ntk_explorer", "theory_static_explorer", "choice_stack")
    saved_widgets = {name: getattr(widgets, name) for name in names}
    saved_modules = {k: sys.modules.get(k, _ABSENT) for k in ("IPython", "IPython.display")}
    try:
        import IPython.display as shown
        saved_display = shown.display
    except ImportError:
        saved_display = _ABSENT
        ipython = types.ModuleType("IPython")
        ipython.version_info = (9, 0, 0, "")   # read by matplotlib: no old-IPython workaround needed
        ipython.get_ipython = lambda: None
        shown = ipython.display = types.ModuleType("IPython.display")
        for name in ("Image", "Markdown", "HTML"):
            setattr(shown, name, type(name, (_Shown,), {}))
        sys.modules["IPython"], sys.modules["IPython.display"] = ipython, shown
    shown.display = report.display
    for name in names:
        setattr(widgets, name, lambda *a, _name=name, **k: Skipped(f"explorer `{_name}`"))

    def restore() -> None:
        for name, fn in saved_widgets.items():
            setattr(widgets, name, fn)
        if saved_display is not _ABSENT:
            shown.display = saved_display
        for key, module in saved_modules.items():
            if module is _ABSENT:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module
    return restore


_ABSENT = object()


def run_cell(source: str, filename: str, first_line: int, namespace: dict, display) -> None:
    """Execute ``source`` (which starts at ``first_line`` of ``filename``: tracebacks point into the
    chapter's file); a last bare expression is displayed, as in a notebook."""
    tree = ast.parse(source, filename)
    ast.increment_lineno(tree, first_line - 1)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
        if value is not None:
            display(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", type=Path, help="a chapter source, e.g. book/weyl_bound.py")
    parser.add_argument("out", type=Path, help="folder for report.md, figures, cells.json and results/")
    parser.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a parameter (typed)")
    parser.add_argument("-r", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a parameter (raw string)")
    parser.add_argument("--memory-fraction", type=float, default=None,
                        help="cap this process at this share of the GPU's memory (0 < F <= 1)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except PipelineError as err:
        print(f"run_headless: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    src = args.chapter.absolute()
    if not src.is_file():
        raise PipelineError(f"chapter source {rel(src)} not found")
    cells = percent_cells(src.read_text(encoding="utf-8"))
    marked = [i for i, c in enumerate(cells) if c["kind"] == "code" and "parameters" in c["tags"]]
    if len(marked) != 1:
        raise PipelineError(f"{rel(src)} has {len(marked)} cells tagged 'parameters'; it needs exactly one")
    params = parse_params(args.p, args.r)
    declared = parameters_in(cells[marked[0]]["source"], src)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise PipelineError(f"{rel(src)} has no parameter {', '.join(map(repr, unknown))}; "
                            f"its parameters cell defines: {', '.join(declared)}")
    if params.get("profile", declared["profile"]) not in PROFILES:
        raise PipelineError(f"profile {params['profile']!r} is not one of {', '.join(PROFILES)}")
    fraction = args.memory_fraction
    if fraction is not None and not 0 < fraction <= 1:
        raise PipelineError(f"--memory-fraction is a share of the GPU, 0 < F <= 1; got {fraction}")

    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    if fraction is not None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(fraction)
    # progress as plain lines with the time left on stderr (INRLIB_PROGRESS=0 silences them)
    env = {"INRLIB_RESULTS_DIR": str(out / "results"), "INRLIB_PROGRESS": os.environ.get("INRLIB_PROGRESS", "log"),
           "MPLBACKEND": os.environ.get("MPLBACKEND", "Agg")}
    saved_env = {k: os.environ.get(k) for k in env}
    cwd = os.getcwd()
    os.environ.update(env)
    report = Report(out)
    restore = install_stand_ins(report)
    try:
        os.chdir(src.parent)
        return _run_cells(src, cells, params, out, report)
    finally:      # put back what the run changed: a run inside a longer process leaves no trace
        restore()
        os.chdir(cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        report.md.close()


def _run_cells(src: Path, cells: list[dict[str, Any]], params: dict[str, Any], out: Path, report: Report) -> int:
    report.write(f"# {src.stem}, run headless\n\nparameters: `{json.dumps(params)}`")
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(src)}
    log: list[dict[str, Any]] = []
    status = 0
    code = [c for c in cells if c["kind"] == "code"]
    start = time.perf_counter()
    for index, cell in enumerate(code):
        source = cell["source"]
        if "parameters" in cell["tags"]:
            source += "".join(f"\n{name} = {value!r}" for name, value in params.items())
        t0 = time.perf_counter()
        print(f"{src.stem}: cell {index + 1}/{len(code)} (line {cell['line']}) running "
              f"({(t0 - start) / 60:.1f} min elapsed)", file=sys.stderr, flush=True)
        entry = {"cell": index, "line": cell["line"], "seconds": None, "status": "running"}
        log.append(entry)
        (out / "cells.json").write_text(json.dumps(log, indent=1))
        try:
            run_cell(source, str(src), cell["line"], namespace, report.display)
        except KeyboardInterrupt:   # a time limit (timeout -s INT): say where it stopped
            entry["status"] = "interrupted"
            report.write(f"**interrupted in the cell at line {cell['line']}:**\n\n```\n{traceback.format_exc()}```")
            traceback.print_exc()
            status = 130
        except Exception:  # noqa: BLE001 - reported, and the run stops here as a notebook's would
            entry["status"] = "error"
            report.write(f"**cell at line {cell['line']} raised:**\n\n```\n{traceback.format_exc()}```")
            traceback.print_exc()
            status = 1
        else:
            entry["status"] = "ok"
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        (out / "cells.json").write_text(json.dumps(log, indent=1))
        print(f"{src.stem}: cell {index + 1}/{len(code)} (line {cell['line']}) {entry['status']} "
              f"in {entry['seconds']:.1f} s", file=sys.stderr, flush=True)
        if status:
            break
    total = time.perf_counter() - start
    ending = {0: "finished", 1: "stopped by an error", 130: "interrupted"}[status]
    report.write(f"---\n{ending} after {total:.1f} s "
                 f"({len(log)} of {len(code)} code cells)")
    return status


if __name__ == "__main__":
    sys.exit(main())
