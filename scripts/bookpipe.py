#!/usr/bin/env python
"""The book pipeline: execute chapters with papermill, assemble a Sphinx source tree, build HTML.

The Makefile calls this script; so do the tests, through the Makefile. Three steps:

``chapters``
    Print the chapter sources (``*.py``, jupytext ``py:percent``) the table of contents lists.
``execute SRC OUT [-p NAME VALUE]... [-r NAME VALUE]...``
    ``jupytext`` turns ``SRC`` into a notebook; papermill runs it with the parameters (a cell
    tagged ``parameters`` must define ``profile``, ``device`` and ``seed``; an unknown parameter
    is an error, not a silent no-op) in the chapter's folder, on the ``inrlib`` kernel (this
    interpreter). The result is written to a temporary file and moved onto ``OUT`` only when
    every cell succeeded: a failed run leaves ``OUT`` as it was and keeps the failed notebook as
    ``OUT`` with ``.failed.ipynb`` for inspection. Results JSON go to ``RESULTS/<profile>``.
``html``
    Assemble ``BUILD/src`` (the configs, the Markdown pages, the executed notebooks in place of
    the chapter sources; files are rewritten only when their bytes change, so Sphinx rebuilds
    only what changed) and run jupyter-book's Sphinx build into ``BUILD/html``.
``chapter NAME [-p NAME VALUE]...``
    Re-execute one chapter with any parameters into ``BUILD/executed/custom`` (its results into
    ``RESULTS/custom/<profile>``, apart from the book's) and rebuild the HTML with it; the other
    chapters, the reproduction table among them, keep the version last published.

Run ``python scripts/bookpipe.py -h`` (or ``... STEP -h``) for the options.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `inrlib` importable without installing
    sys.path.insert(0, str(ROOT))

from inrlib.book import PROFILES, TocError, toc_entries  # noqa: E402
from inrlib.io import atomic_path, atomic_write  # noqa: E402

KERNEL = "inrlib"
REQUIRED_PARAMETERS = ("profile", "device", "seed")
PAGE_SUFFIXES = (".md", ".rst")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class PipelineError(Exception):
    """A problem the user can fix; main() prints it without a traceback."""


def rel(path: Path) -> str:
    """``path`` relative to the repository root when inside it (for messages)."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- table of contents

def load_yaml(path: Path) -> Any:
    import yaml

    if not path.is_file():
        raise PipelineError(f"{rel(path)} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"{rel(path)} is not valid YAML: {err}") from None


def toc_files(toc: Path) -> list[str]:
    """Every ``file`` entry of a jupyter-book toc, the root first, in reading order."""
    try:
        return toc_entries(toc)
    except TocError as err:
        raise PipelineError(str(err).replace(str(toc), rel(toc), 1)) from None


def resolve_entry(entry: str, base: Path = ROOT) -> tuple[str, Path]:
    """Map a toc entry to ``("chapter", path.py)`` or ``("page", path.md)``; clear error if neither."""
    stem = Path(entry)
    if stem.suffix in (".py", *PAGE_SUFFIXES):
        candidates = [base / stem]
        stem = stem.with_suffix("")
    else:
        candidates = [base / f"{entry}{suffix}" for suffix in (".py", *PAGE_SUFFIXES)]
    for path in candidates:
        if path.is_file():
            return ("chapter" if path.suffix == ".py" else "page"), path
    if (base / f"{stem}.ipynb").is_file():
        raise PipelineError(f"toc entry '{entry}' is a .ipynb; chapters are jupytext py:percent files "
                            f"(convert: jupytext --to py:percent {stem}.ipynb)")
    raise PipelineError(f"toc entry '{entry}' has no source: expected {stem}.py (a chapter) or {stem}.md (a page)")


def toc_chapters(toc: Path) -> list[Path]:
    return [path for kind, path in (resolve_entry(e) for e in toc_files(toc)) if kind == "chapter"]


# --------------------------------------------------------------------------- execution

def parse_params(pairs_p: list[list[str]] | None, pairs_r: list[list[str]] | None) -> dict[str, Any]:
    """papermill's ``-p NAME VALUE`` (typed: int, float, bool, None, else str) and ``-r NAME VALUE`` (raw str)."""
    params: dict[str, Any] = {}
    for name, value in pairs_p or []:
        params[name] = _typed(value)
    for name, value in pairs_r or []:
        params[name] = value
    return params


def _typed(value: str) -> Any:
    if value in ("True", "true"):
        return True
    if value in ("False", "false"):
        return False
    if value in ("None", "none"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_chapter(src: Path):
    """The chapter as a notebook, with a clear error for a missing file or a wrong format."""
    import jupytext

    if not src.is_file():
        raise PipelineError(f"chapter source {rel(src)} not found")
    text = src.read_text(encoding="utf-8")
    if "# %%" not in text:
        raise PipelineError(f"{rel(src)} is not a jupytext py:percent file (no '# %%' cell markers)")
    return jupytext.reads(text, fmt="py:percent")


def declared_parameters(nb, src: Path) -> dict[str, Any]:
    """Names (and literal defaults, else None) assigned in the cell tagged ``parameters``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise PipelineError(
            f"{rel(src)} has {len(cells)} cells tagged 'parameters'; it needs exactly one, e.g.\n"
            '# %% tags=["parameters"]\nprofile = "quick"\ndevice = "auto"\nseed = 0')
    return parameters_in(cells[0].source, src)


def parameters_in(source: str, src: Path) -> dict[str, Any]:
    """Names (and literal defaults, else None) assigned in a ``parameters`` cell's ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise PipelineError(f"{rel(src)}: the parameters cell does not parse: {err}") from None
    found: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    found[target.id] = ast.literal_eval(node.value) if node.value is not None else None
                except ValueError:
                    found[target.id] = None
    missing = [name for name in REQUIRED_PARAMETERS if name not in found]
    if missing:
        raise PipelineError(f"{rel(src)}: the parameters cell must define {', '.join(REQUIRED_PARAMETERS)}; "
                            f"missing: {', '.join(missing)}")
    return found


def ensure_kernel() -> None:
    """Make sure the ``inrlib`` kernel exists and runs this interpreter (install it if absent)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(KERNEL)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL, display_name="Python (inrlib)", prefix=sys.prefix)
        print(f"book: installed the '{KERNEL}' Jupyter kernel into {sys.prefix}", file=sys.stderr)
        spec = ksm.get_kernel_spec(KERNEL)
    exe = spec.argv[0]
    if exe in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        return  # jupyter_client substitutes this interpreter
    # Same environment = same bin/ folder (not resolved: every venv's python links to one base python).
    if Path(os.path.abspath(exe)).parent != Path(os.path.abspath(sys.executable)).parent:
        raise PipelineError(
            f"the '{KERNEL}' Jupyter kernel in {spec.resource_dir} runs {exe}, not this environment's "
            f"{sys.executable}; reinstall it: {sys.executable} -m ipykernel install --sys-prefix --name {KERNEL}"
            " (and remove the other one if it shadows it)")


def _kernel_config():
    """Encrypt the kernel's local ZeroMQ traffic where pyzmq can (and so skip ipykernel's warning)."""
    import zmq
    from traitlets.config import Config

    return Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled"}})


def execute(src: Path, out: Path, params: dict[str, Any], results_root: Path,
            log_output: bool = False, timeout: float | None = None, toc: Path | None = None) -> Path:
    """Execute chapter ``src`` into ``out`` (atomically); see the module docstring."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    src, out = Path(src).absolute(), Path(out).absolute()
    nb = read_chapter(src)
    declared = declared_parameters(nb, src)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise PipelineError(f"{rel(src)} has no parameter {', '.join(map(repr, unknown))}; "
                            f"its parameters cell defines: {', '.join(declared)}")
    profile = params.get("profile", declared["profile"])
    if profile not in PROFILES:
        raise PipelineError(f"{rel(src)}: unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    ensure_kernel()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python (inrlib)", "language": "python"}

    # What the kernel inherits: no progress bars in logs, results in this build's folder, the
    # inline figure backend (a MPLBACKEND=Agg from the caller would silently drop every figure).
    os.environ.update({
        "INRLIB_PROGRESS": "0",
        "INRLIB_RESULTS_DIR": str(Path(results_root).absolute() / profile),
        "INRLIB_RUNS_DIR": str(Path(results_root).absolute().parent / "runs" / profile),
        "INRLIB_STATIC_PAGE": "1",
        # the book this chapter is part of: the pages that gather results read its chapters
        "INRLIB_TOC": str(Path(toc or ROOT / "_toc.yml").absolute()),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    })
    failed = out.with_name(out.stem + ".failed.ipynb")
    for stale in out.parent.glob(f".{out.name}.*"):   # temporaries of a run that was killed
        stale.unlink(missing_ok=True)
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "defaults"
    print(f"book: executing {rel(src)} ({shown}) -> {rel(out)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        with atomic_path(out, suffix=".ipynb") as tmp:
            try:
                papermill.execute_notebook(
                    nb, str(tmp), parameters=params, kernel_name=KERNEL, progress_bar=False,
                    log_output=log_output, cwd=str(src.parent), execution_timeout=timeout,
                    request_save_on_cell_execute=True, config=_kernel_config(),
                )
            except BaseException:
                if tmp.is_file() and tmp.stat().st_size:
                    shutil.copyfile(tmp, failed)
                raise
            _hide_injected_parameters(tmp)
    except PapermillExecutionError as err:
        tb = ANSI.sub("", "\n".join(err.traceback))
        kept = f"the previous notebook {rel(out)} is kept" if out.is_file() else f"{rel(out)} was not written"
        raise PipelineError(
            f"chapter {rel(src)} FAILED (profile {profile}) in cell In[{err.exec_count}]:\n"
            f"{'-' * 72}\n{err.source}\n{'-' * 72}\n{tb}\n{'-' * 72}\n"
            f"chapter {rel(src)} failed with {err.ename}: {err.evalue}\n"
            f"{kept}; the failed run is in {rel(failed)}") from None
    except PipelineError:
        raise
    except Exception as err:  # kernel died, timeout, ...
        raise PipelineError(f"chapter {rel(src)} FAILED (profile {profile}): {type(err).__name__}: "
                            f"{ANSI.sub('', str(err))}") from None
    if failed.exists():
        failed.unlink()
    print(f"book: {rel(src)} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return out


def _hide_injected_parameters(path: Path) -> None:
    """A parameters cell tagged ``remove-cell`` (the front page hides its plumbing) gets papermill's
    injected-parameters cell removed from the page too."""
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    tags = lambda c: c.get("metadata", {}).get("tags", [])  # noqa: E731
    if not any("parameters" in tags(c) and "remove-cell" in tags(c) for c in nb.cells):
        return
    for c in nb.cells:
        if "injected-parameters" in tags(c) and "remove-cell" not in tags(c):
            c.setdefault("metadata", {}).setdefault("tags", []).append("remove-cell")
    nbformat.write(nb, str(path))


# --------------------------------------------------------------------------- HTML

# Paths in _config.yml that are relative to the config file; the generated config makes them
# absolute so that the source tree under BUILD/src needs no copies of them.
_CONFIG_PATHS = (("bibtex_bibfiles",), ("logo",), ("html", "favicon"),
                 ("sphinx", "config", "html_static_path"), ("sphinx", "config", "html_extra_path"),
                 ("sphinx", "config", "templates_path"))


def _absolutize(config: dict, base: Path) -> dict:
    import copy

    config = copy.deepcopy(config)
    for keys in _CONFIG_PATHS:
        node = config
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or keys[-1] not in node or not node[keys[-1]]:
            continue
        value = node[keys[-1]]
        items = value if isinstance(value, list) else [value]
        fixed = []
        for item in items:
            path = Path(item) if Path(item).is_absolute() else base / item
            if not path.exists():
                raise PipelineError(f"{'.'.join(keys)} in the book config names {item}, which does not exist"
                                    + (" (run scripts/vendor_js.sh)" if "_vendor" in str(item) else ""))
            fixed.append(str(path))
        node[keys[-1]] = fixed if isinstance(value, list) else fixed[0]
    return config


def _filter_toc(node: Any, keep: set[str]) -> Any:
    """The toc without the entries whose ``file`` is not in ``keep`` (and emptied lists)."""
    if isinstance(node, list):
        items = [_filter_toc(child, keep) for child in node]
        return [item for item in items if item is not None]
    if isinstance(node, dict):
        if "file" in node and str(node["file"]) not in keep:
            return None
        node = dict(node)
        for key in ("parts", "chapters", "sections"):
            if key in node:
                node[key] = _filter_toc(node[key], keep)
                if not node[key]:
                    del node[key]
        if "file" not in node and "url" not in node and not any(k in node for k in ("parts", "chapters", "sections")) \
                and "caption" in node:
            return None
        return node
    return node


def _sync(target: Path, data: bytes) -> bool:
    """Write ``data`` to ``target`` only when it differs; True when written."""
    if target.is_file() and target.read_bytes() == data:
        return False
    atomic_write(target, data)
    return True


def build_html(toc: Path, config: Path, executed: Path, build: Path, *, overrides: dict[str, Path] | None = None,
               keep_published: bool = False, strict_warnings: bool = True) -> Path:
    """Assemble ``build/src`` and build ``build/html``; return the path of ``index.html``."""
    import yaml

    toc, config, executed, build = (Path(p).absolute() for p in (toc, config, executed, build))
    overrides = {k: Path(v).absolute() for k, v in (overrides or {}).items()}
    src_root, html = build / "src", build / "html"
    wanted: dict[Path, bytes] = {}
    published, dropped = [], []
    for entry in toc_files(toc):
        kind, path = resolve_entry(entry)
        stem = str(Path(entry).with_suffix("")) if Path(entry).suffix in (".py", *PAGE_SUFFIXES) else entry
        if kind == "page":
            wanted[src_root / path.relative_to(ROOT)] = path.read_bytes()
            published.append(entry)
            continue
        target = src_root / f"{stem}.ipynb"
        source = overrides.get(stem) or executed / f"{stem}.ipynb"
        if source.is_file():
            wanted[target] = source.read_bytes()
        elif keep_published and target.is_file():
            wanted[target] = target.read_bytes()
        elif keep_published:
            dropped.append(entry)
            continue
        else:
            raise PipelineError(f"no executed notebook for chapter {rel(path)} at {rel(source)}; "
                                "execute it first (make book)")
        published.append(entry)
    if dropped:
        print(f"book: WARNING: left out of this build (never executed): {', '.join(dropped)}", file=sys.stderr)

    toc_data = load_yaml(toc)
    if dropped:
        toc_data = _filter_toc(toc_data, set(published))
    conf_data = _absolutize(load_yaml(config), config.parent)
    conf_data.setdefault("execute", {})["execute_notebooks"] = "off"  # executed above; never here
    wanted[src_root / "_toc.yml"] = yaml.safe_dump(toc_data, sort_keys=False).encode()
    wanted[src_root / "_config.yml"] = yaml.safe_dump(conf_data, sort_keys=False).encode()

    changed = [p for p, data in wanted.items() if _sync(p, data)]
    if src_root.is_dir():  # files no longer in the book
        for path in sorted(src_root.rglob("*"), reverse=True):
            if path.is_file() and path not in wanted:
                path.unlink()
                changed.append(path)
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    print(f"book: source tree {rel(src_root)}: {len(wanted)} files, {len(changed)} changed", file=sys.stderr)

    from jupyter_book.sphinx import build_sphinx

    t0 = time.perf_counter()
    result = build_sphinx(
        str(src_root), str(html), path_config=str(src_root / "_config.yml"), noconfig=True,
        confoverrides={"external_toc_path": str(src_root / "_toc.yml"), "latex_individualpages": False},
        doctreedir=str(build / "doctrees"), quiet=True, warningiserror=strict_warnings, keep_going=True,
    )
    if isinstance(result, BaseException) or result:
        raise PipelineError(f"the Sphinx build of {rel(src_root)} failed ({result!r}); its messages are above"
                            + (" (warnings count as errors)" if strict_warnings else ""))
    index = html / "index.html"
    root_page = str(Path(toc_files(toc)[0]).with_suffix(""))
    if root_page != "index":
        atomic_write(index, f'<!DOCTYPE html>\n<meta http-equiv="Refresh" content="0; url={root_page}.html" />\n'
                            f'<a href="{root_page}.html">{root_page}</a>\n')
    print(f"book: HTML built in {time.perf_counter() - t0:.1f} s: {rel(index)}", file=sys.stderr)
    return index


def resolve_chapter_name(name: str) -> Path:
    """``theory``, ``theory.py`` or ``book/theory.py`` -> the chapter source."""
    candidates = [ROOT / name, ROOT / f"{name}.py", ROOT / "book" / name, ROOT / "book" / f"{name}.py"]
    for path in candidates:
        if path.is_file() and path.suffix == ".py":
            return path
    available = ", ".join(p.stem for p in sorted((ROOT / "book").glob("*.py"))) or "none yet"
    raise PipelineError(f"no chapter {name!r}: expected book/{Path(name).stem}.py (chapters: {available})")


# --------------------------------------------------------------------------- command line

def _terminate(signum, frame):
    # make (or a person) stopping the build sends SIGTERM or SIGHUP: raise, so that every `finally`
    # runs and no temporary notebook is left behind.
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    ap = argparse.ArgumentParser(description="inrlib book pipeline (see the module docstring)")
    sub = ap.add_subparsers(dest="step", required=True)

    p = sub.add_parser("chapters", help="print the chapter sources listed in the toc")
    p.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")

    def add_params(parser):
        parser.add_argument("-p", "--parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                            help="parameter (typed as papermill does)")
        parser.add_argument("-r", "--parameters-raw", nargs=2, action="append", metavar=("NAME", "VALUE"),
                            help="parameter kept as a string")
        parser.add_argument("--results", type=Path, default=ROOT / "_build" / "results",
                            help="results root; a chapter writes into RESULTS/<profile>/")
        parser.add_argument("--log-output", action="store_true", help="stream the cells' output")
        parser.add_argument("--cell-timeout", type=float, default=1800,
                            help="seconds per cell before the chapter fails (default 1800; a hung widget or kernel must not hang the build)")

    p = sub.add_parser("execute", help="execute one chapter into a notebook (atomically)")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--toc", type=Path, default=ROOT / "_toc.yml", help="the book the chapter belongs to")
    add_params(p)

    def add_html(parser):
        parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
        parser.add_argument("--config", type=Path, default=ROOT / "_config.yml")
        parser.add_argument("--build", type=Path, default=ROOT / "_build")
        parser.add_argument("--allow-warnings", action="store_true", help="do not treat Sphinx warnings as errors")

    p = sub.add_parser("html", help="assemble BUILD/src from executed notebooks and build BUILD/html")
    add_html(p)
    p.add_argument("--executed", type=Path, required=True, help="folder of executed notebooks (one profile)")

    p = sub.add_parser("chapter", help="re-execute one chapter with any parameters and rebuild the HTML")
    p.add_argument("name", help="theory, theory.py or book/theory.py")
    add_params(p)
    add_html(p)
    p.add_argument("--fallback-profile", default="quick",
                   help="chapters never published take their notebook from BUILD/executed/<this>")

    args = ap.parse_args(argv)
    try:
        if args.step == "chapters":
            print(" ".join(rel(p) for p in toc_chapters(args.toc)))
        elif args.step == "execute":
            execute(args.src, args.out, parse_params(args.parameters, args.parameters_raw), args.results,
                    log_output=args.log_output, timeout=args.cell_timeout, toc=args.toc)
        elif args.step == "html":
            build_html(args.toc, args.config, args.executed, args.build, strict_warnings=not args.allow_warnings)
        elif args.step == "chapter":
            src = resolve_chapter_name(args.name)
            stem = str(src.relative_to(ROOT).with_suffix(""))
            out = args.build / "executed" / "custom" / f"{stem}.ipynb"
            # its results go apart (RESULTS/custom/<profile>): a run with changed parameters must not
            # replace the book's results of that profile, which the reproduction table gathers
            execute(src, out, parse_params(args.parameters, args.parameters_raw), args.results / "custom",
                    log_output=args.log_output, timeout=args.cell_timeout, toc=args.toc)
            build_html(args.toc, args.config, args.build / "executed" / args.fallback_profile, args.build,
                       overrides={stem: out}, keep_published=True, strict_warnings=not args.allow_warnings)
    except PipelineError as err:
        print(f"book: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
