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
    While it runs, the terminal gets a line per code cell (``[scaling] cell 7/31 (2.3 min
    elapsed)``), a line every ``--heartbeat`` seconds of a long cell, and the kernel's progress
    lines (training and sweeps, ``INRLIB_PROGRESS=log``: every 30 s, with the time left; a warning
    when that passes ``--cell-timeout``). One run per chapter and results folder at a time: a
    second one says who runs (pid, command, start) and stops. The kernel's connection file and
    the progress log live in a private temporary folder, removed however the run ends. The
    kernel must import ``inrlib`` from this checkout (checked before it starts).
``html``
    Assemble ``BUILD/src`` (the configs, the Markdown pages, the executed notebooks in place of
    the chapter sources; files are rewritten only when their bytes change, so Sphinx rebuilds
    only what changed) and run jupyter-book's Sphinx build into a copy of ``BUILD/html`` that
    replaces it only when the build succeeded.
``chapter NAME [-p NAME VALUE]...``
    Re-execute one chapter with any parameters into ``BUILD/executed/custom`` (its results into
    ``RESULTS/custom/<profile>``, apart from the book's) and rebuild the HTML with it; the other
    chapters, the reproduction table among them, keep the version last published, and those
    never executed in this build folder (a fresh clone) get a "not built yet" placeholder page,
    so that the toc and the links to them resolve. When the execution or the HTML build fails,
    the notebook and the results file are rolled back: page, notebook and results still agree.

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


if str(ROOT / "scripts") not in sys.path:   # imported from elsewhere (the tests, run_headless)
    sys.path.insert(0, str(ROOT / "scripts"))

from bookrun import HEARTBEAT_S, PipelineError, Reporter, check_checkout, hold_lock, kernel_folder  # noqa: E402


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
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
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


def check_parameters(nb, src: Path, declared: dict[str, Any], params: dict[str, Any]) -> None:
    """Run the chapter's schema cell (the code cell right after its parameters cell, when it assigns
    ``schema``; see :mod:`inrlib.book.params`) on the parameters cell's defaults updated with ``params``:
    a value the schema refuses stops the run here, with the chapter's own message, before any cell runs."""
    import inrlib.book.params as P

    code = [c for c in nb.cells if c.cell_type == "code"]
    at = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    if at + 1 >= len(code):
        return
    source = code[at + 1].source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return   # not a schema cell; the kernel reports it
    if not any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "schema" for t in n.targets)
               for n in tree.body):
        return
    namespace = {"__name__": "__schema__", **declared, **params}
    try:
        exec(compile(tree, f"{rel(src)} (the cell after the parameters cell)", "exec"), namespace)
    except P.ParameterError as err:
        raise PipelineError(f"{rel(src)}: {err}\n(nothing was executed; the parameters cell documents each one)") \
            from None
    except Exception as err:
        raise PipelineError(f"{rel(src)}: its schema cell (after the parameters cell) failed on the parameters "
                            f"given: {type(err).__name__}: {err}") from None


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


def _kernel_config(connection_file: Path):
    """The kernel's connection file at ``connection_file`` (in the run's private folder, which is
    removed however the run ends), and its local ZeroMQ traffic encrypted where pyzmq can (which
    also skips ipykernel's warning)."""
    import zmq
    from traitlets.config import Config

    return Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled",
                                     "connection_file": str(connection_file)}})


def execute(src: Path, out: Path, params: dict[str, Any], results_root: Path,
            log_output: bool = False, timeout: float | None = None, toc: Path | None = None,
            heartbeat: float = HEARTBEAT_S) -> Path:
    """Execute chapter ``src`` into ``out`` (atomically); see the module docstring."""
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
    check_parameters(nb, src, declared, params)   # a refused value: an error here, before papermill starts
    ensure_kernel()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python (inrlib)", "language": "python"}

    results = Path(results_root).absolute() / profile
    # one run at a time per results file (and so per executed notebook): the second says who runs
    with hold_lock(results / f".{src.stem}.lock", f"the results of chapter {src.stem} in {rel(results)}"), \
            kernel_folder() as private:
        return _execute_locked(src, out, nb, params, profile, results, private, log_output=log_output,
                               timeout=timeout, toc=toc, heartbeat=heartbeat)


def _progress_setting() -> str:
    """The kernel's INRLIB_PROGRESS: the caller's "no" or "log[:S]" is kept, anything else becomes
    "log" (bars would land in the notebook; log lines go to the progress file, then the terminal)."""
    raw = os.environ.get("INRLIB_PROGRESS", "").strip().lower()
    if raw == "log" or raw.startswith("log:") or raw in ("0", "false", "no", "off"):
        return raw
    return "log"


def _execute_locked(src: Path, out: Path, nb, params: dict[str, Any], profile: str, results: Path, private: Path, *,
                    log_output: bool, timeout: float | None, toc: Path | None, heartbeat: float) -> Path:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    # What the kernel inherits: progress as plain lines into the run's private folder (this
    # process copies them to the terminal; the notebook never sees them), results in this build's
    # folder, the inline figure backend (a MPLBACKEND=Agg from the caller would silently drop
    # every figure).
    progress_file = private / "progress.log"
    os.environ.update({
        "INRLIB_PROGRESS": _progress_setting(),
        "INRLIB_PROGRESS_FILE": str(progress_file),
        "INRLIB_RESULTS_DIR": str(results),
        "INRLIB_RUNS_DIR": str(results.parent.parent / "runs" / profile),
        "INRLIB_STATIC_PAGE": "1",
        # the book this chapter is part of: the pages that gather results read its chapters
        "INRLIB_TOC": str(Path(toc or ROOT / "_toc.yml").absolute()),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    })
    check_checkout(sys.executable, src.parent, os.environ)   # what the kernel will import
    failed = out.with_name(out.stem + ".failed.ipynb")
    for stale in out.parent.glob(f".{out.name}.*"):   # temporaries of a run that was killed
        stale.unlink(missing_ok=True)
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "defaults"
    print(f"book: executing {rel(src)} ({shown}) -> {rel(out)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        with Reporter(src.stem, progress_file, cell_timeout=timeout, heartbeat=heartbeat) as reporter, \
                atomic_path(out, suffix=".ipynb") as tmp:
            try:
                papermill.execute_notebook(
                    nb, str(tmp), parameters=params, kernel_name=KERNEL, progress_bar=False,
                    log_output=log_output, cwd=str(src.parent), execution_timeout=timeout,
                    request_save_on_cell_execute=True, config=_kernel_config(private / "kernel.json"),
                    engine_name=_reporting_engine(reporter),
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


def _reporting_engine(reporter: Reporter) -> str:
    """Register (and name) papermill's nbclient engine with ``reporter.cell_start`` called as each
    cell starts."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ReportingEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                reporter.cell_start(nb_man.nb.cells, cell_index)
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("inrlib-reporting", ReportingEngine)
    return "inrlib-reporting"


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


def _sync(target: Path, data: bytes) -> bool:
    """Write ``data`` to ``target`` only when it differs; True when written."""
    if target.is_file() and target.read_bytes() == data:
        return False
    atomic_write(target, data)
    return True


def placeholder_notebook(entry: str, path: Path) -> bytes:
    """A page for chapter ``path`` (toc ``entry``) that was never executed in this build folder:
    its title and how to build it, so that the toc and every link to it still resolve."""
    import nbformat

    title = next((line[4:].strip() for line in path.read_text(encoding="utf-8").splitlines()
                  if line.startswith("# # ")), Path(entry).name)   # the first "# Title" markdown line
    name = path.stem if path.parent == ROOT / "book" else str(path.relative_to(ROOT).with_suffix(""))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        f"# {title}\n\n**Not built yet.** This chapter has not been executed in this build folder, so this page "
        f"is a placeholder. Run `make chapter CHAPTER={name}` (this chapter) or `make book` (every chapter).")])
    nb.metadata["inrlib"] = {"placeholder": True}
    return nbformat.writes(nb).encode()


def build_html(toc: Path, config: Path, executed: Path, build: Path, *, overrides: dict[str, Path] | None = None,
               keep_published: bool = False, strict_warnings: bool = True) -> Path:
    """Assemble ``build/src`` and build ``build/html``; return the path of ``index.html``.

    ``keep_published`` (the ``chapter`` step): a chapter with no executed notebook keeps the page
    published last, else gets a placeholder page ("not built yet"); without it such a chapter is
    an error. Sphinx builds into a copy of ``build/html`` that replaces it only when the build
    succeeded: a failed build leaves the published pages, and ``build/src``, as they were (and
    itself in ``build/html.failed``). One HTML build per build folder at a time (a second one waits)."""
    build = Path(build).absolute()
    with hold_lock(build / ".html.lock", f"the HTML build in {rel(build)}", wait=True):
        return _build_html_locked(toc, config, executed, build, overrides=overrides, keep_published=keep_published,
                                  strict_warnings=strict_warnings)


def _build_html_locked(toc: Path, config: Path, executed: Path, build: Path, *, overrides: dict[str, Path] | None,
                       keep_published: bool, strict_warnings: bool) -> Path:
    import yaml

    toc, config, executed, build = (Path(p).absolute() for p in (toc, config, executed, build))
    overrides = {k: Path(v).absolute() for k, v in (overrides or {}).items()}
    src_root, html = build / "src", build / "html"
    wanted: dict[Path, bytes] = {}
    placeholders = []
    for entry in toc_files(toc):
        kind, path = resolve_entry(entry)
        stem = str(Path(entry).with_suffix("")) if Path(entry).suffix in (".py", *PAGE_SUFFIXES) else entry
        if kind == "page":
            wanted[src_root / path.relative_to(ROOT)] = path.read_bytes()
            continue
        target = src_root / f"{stem}.ipynb"
        source = overrides.get(stem) or executed / f"{stem}.ipynb"
        if source.is_file():
            wanted[target] = source.read_bytes()
        elif keep_published and target.is_file() and b'"placeholder": true' not in target.read_bytes():
            wanted[target] = target.read_bytes()
        elif keep_published:
            wanted[target] = placeholder_notebook(entry, path)
            placeholders.append(entry)
        else:
            raise PipelineError(f"no executed notebook for chapter {rel(path)} at {rel(source)}; "
                                "execute it first (make book)")
    if placeholders:
        print(f"book: not built yet, published as placeholder pages: {', '.join(placeholders)}", file=sys.stderr)

    conf_data = _absolutize(load_yaml(config), config.parent)
    conf_data.setdefault("execute", {})["execute_notebooks"] = "off"  # executed above; never here
    wanted[src_root / "_toc.yml"] = yaml.safe_dump(load_yaml(toc), sort_keys=False).encode()
    wanted[src_root / "_config.yml"] = yaml.safe_dump(conf_data, sort_keys=False).encode()

    undo: dict[Path, bytes | None] = {}   # what a failed build puts back: BUILD/src stays what BUILD/html shows
    for path, data in wanted.items():
        before = path.read_bytes() if path.is_file() else None
        if _sync(path, data):
            undo[path] = before
    if src_root.is_dir():  # files no longer in the book
        for path in sorted(src_root.rglob("*"), reverse=True):
            if path.is_file() and path not in wanted:
                undo[path] = path.read_bytes()
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    print(f"book: source tree {rel(src_root)}: {len(wanted)} files, {len(undo)} changed", file=sys.stderr)

    from jupyter_book.sphinx import build_sphinx

    t0 = time.perf_counter()
    staging, failed = build / ".html-staging", build / "html.failed"
    shutil.rmtree(staging, ignore_errors=True)
    if html.is_dir():   # a copy (mtimes kept): Sphinx still rebuilds only what changed
        shutil.copytree(html, staging, symlinks=True)
    try:
        result = build_sphinx(
            str(src_root), str(staging), path_config=str(src_root / "_config.yml"), noconfig=True,
            confoverrides={"external_toc_path": str(src_root / "_toc.yml"), "latex_individualpages": False},
            doctreedir=str(build / "doctrees"), quiet=True, warningiserror=strict_warnings, keep_going=True,
        )
        if isinstance(result, BaseException) or result:
            shutil.rmtree(failed, ignore_errors=True)
            staging.rename(failed)
            # the next build must read every page again, and so report its warnings again
            shutil.rmtree(build / "doctrees", ignore_errors=True)
            raise PipelineError(f"the Sphinx build of {rel(src_root)} failed ({result!r}); its messages are above"
                                + (" (warnings count as errors)" if strict_warnings else "")
                                + f". {rel(html)} is unchanged; the failed build is in {rel(failed)}")
        root_page = str(Path(toc_files(toc)[0]).with_suffix(""))
        if root_page != "index":
            atomic_write(staging / "index.html",
                         f'<!DOCTYPE html>\n<meta http-equiv="Refresh" content="0; url={root_page}.html" />\n'
                         f'<a href="{root_page}.html">{root_page}</a>\n')
        old = build / ".html-old"
        shutil.rmtree(old, ignore_errors=True)
        if html.is_dir():
            html.rename(old)
        staging.rename(html)
        undo.clear()   # published
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(failed, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for path, data in undo.items():   # not published (failed or interrupted): BUILD/src as before
            if data is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, data)
    index = html / "index.html"
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

def run_chapter(name: str, params: dict[str, Any], *, results: Path, build: Path, toc: Path, config: Path,
                fallback_profile: str = "quick", strict_warnings: bool = True, **run: Any) -> Path:
    """The ``chapter`` step: execute chapter ``name`` into ``build/executed/custom``, its results into
    ``results/custom/<profile>``, then build the HTML with it; return ``index.html``.

    Page, notebook and results agree whatever fails: the executed notebook and the results file
    are rolled back to what they were before the run when the execution or the HTML build fails
    (the HTML is only replaced by a build that succeeded); the run that was not published is kept
    beside the notebook (``.failed.ipynb``, ``.failed.json``). ``run``: :func:`execute`'s options."""
    src = resolve_chapter_name(name)
    stem = str(src.relative_to(ROOT).with_suffix(""))
    build = Path(build).absolute()
    out = build / "executed" / "custom" / f"{stem}.ipynb"
    # its results go apart (RESULTS/custom/<profile>): a run with changed parameters must not
    # replace the book's results of that profile, which the reproduction table gathers
    root = Path(results).absolute() / "custom"
    profile = params.get("profile", declared_parameters(read_chapter(src), src)["profile"])
    if profile not in PROFILES:
        raise PipelineError(f"{rel(src)}: unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    results_file = root / profile / f"{src.stem}.json"
    with hold_lock(root / profile / f".{src.stem}.lock", f"the results of chapter {src.stem} in {rel(root / profile)}"):
        before = {path: path.read_bytes() if path.is_file() else None for path in (out, results_file)}
        try:
            execute(src, out, params, root, toc=toc, **run)
            return build_html(toc, config, build / "executed" / fallback_profile, build, overrides={stem: out},
                              keep_published=True, strict_warnings=strict_warnings)
        except BaseException as err:
            unpublished = {out: out.with_name(f"{out.stem}.failed.ipynb"),
                           results_file: out.with_name(f"{out.stem}.failed.json")}
            for path, data in before.items():
                if path.is_file() and (data is None or path.read_bytes() != data):
                    shutil.copyfile(path, unpublished[path])
                    if data is None:
                        path.unlink()
                    else:
                        atomic_write(path, data)
            if isinstance(err, PipelineError):
                raise PipelineError(f"{err}\nrolled back: {rel(out)} and {rel(results_file)} are as they were before "
                                    f"this run, so the page, the notebook and the results agree; this run's "
                                    f"notebook and results are in {rel(unpublished[out])} and "
                                    f"{rel(unpublished[results_file])} (where it got that far)") from None
            raise


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
                            help="seconds per cell before the chapter fails (default 1800; a hung widget or "
                                 "kernel must not hang the build)")
        parser.add_argument("--heartbeat", type=float, default=HEARTBEAT_S,
                            help=f"seconds between two 'still running' lines of a long cell (default {HEARTBEAT_S:g})")

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
                    log_output=args.log_output, timeout=args.cell_timeout, toc=args.toc, heartbeat=args.heartbeat)
        elif args.step == "html":
            build_html(args.toc, args.config, args.executed, args.build, strict_warnings=not args.allow_warnings)
        elif args.step == "chapter":
            run_chapter(args.name, parse_params(args.parameters, args.parameters_raw), results=args.results,
                        build=args.build, toc=args.toc, config=args.config, fallback_profile=args.fallback_profile,
                        strict_warnings=not args.allow_warnings, log_output=args.log_output,
                        timeout=args.cell_timeout, heartbeat=args.heartbeat)
    except PipelineError as err:
        print(f"book: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:   # Ctrl-C, or SIGTERM/SIGHUP (see _terminate): cleaned up on the way here
        print(f"book: {err or 'interrupted (Ctrl-C)'}; nothing was published", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
