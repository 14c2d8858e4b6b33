#!/usr/bin/env python
"""Start JupyterLab on the book: every chapter (``book/*.py``, py:percent) opens as a notebook in the
``inrlib`` kernel, with live, kernel-backed explorers.

    python scripts/lab.py                 # or: make lab
    python scripts/lab.py --port 8890 --root /path/to/a/copy

What it sets up (nothing from the network; JupyterLab, jupytext and ipywidgets come with the
environment, see ``make venv``):

- the server listens on the loopback interface only (``127.0.0.1``) with a fresh token; the URL it
  prints holds the token and opens the book's folder;
- jupytext's contents manager opens ``book/*.py`` as notebooks (double click: the lab setting
  ``defaultViewers`` makes "Jupytext Notebook" the viewer of Python files); saving writes the
  py:percent text only: no outputs go into the source and no ``.ipynb`` is written beside it;
- checkpoints, lab settings, workspaces and the server's runtime files live under
  ``_build/lab/`` (not beside the chapters, not in your home folder); the token is a secret (it
  opens a Python kernel running as you), so ``_build/lab/`` and its ``runtime/`` folder are
  private (0700) and the files holding it (the config, the log, the runtime's ``jpserver-*``
  files) are 0600; the token is never on a command line, which every user can read;
- the kernel writes the chapters' results to ``_build/lab/results/<profile>``, apart from the book
  build's ``_build/results``, so numbers from a live session with changed parameters never reach
  the built book or the reproduction table; finished training runs under ``_build/runs`` are reused;
- ``INRLIB_STATIC_PAGE`` is unset, so explorers are the live ones (:func:`inrlib.book.widgets.explorer`).

The server stops on Ctrl-C (it shuts its kernels down first). :func:`lab_server` is the same
setup as a context manager, for tests.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Lab settings written (once; later edits are kept) into the lab's user-settings folder.
USER_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"defaultViewers": {"python": "Jupytext Notebook"}},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


class LabError(RuntimeError):
    """JupyterLab could not be started (the message says why and what to do)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((host, port)) == 0


def _private_dir(path: Path) -> Path:
    """``path`` created if missing, readable by its owner only (0700, also if it existed)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _open_private(path: Path, mode: str = "w"):
    """``open(path, mode)`` with the file readable by its owner only (0600, also if it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


def _privatize(folder: Path) -> None:
    """Make the files jupyter wrote in ``folder`` 0600 (``jpserver-*-open.html`` holds the token and
    is written 0644; the folder, 0700, already hides it)."""
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(path.stat().st_mode & 0o700)


def prepare(root: Path, state: Path) -> dict[str, str]:
    """Create ``state``'s folders (``state`` and ``runtime/`` private, 0700) and lab settings;
    return the server's environment."""
    import importlib.util
    missing = [m for m in ("jupyterlab", "jupytext", "ipywidgets", "jupyterlab_widgets")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise LabError(f"{', '.join(missing)} not installed in {sys.prefix}; run `make venv` (or "
                       "pip install -e '.[book,test,lab]' -c constraints.txt)")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        KernelSpecManager().get_kernel_spec("inrlib")
    except NoSuchKernel:
        raise LabError("the 'inrlib' Jupyter kernel is not installed; run `make venv` (it runs "
                       "python -m ipykernel install --sys-prefix --name inrlib)") from None
    _private_dir(state)
    settings = state / "user-settings"
    for rel, value in USER_SETTINGS.items():
        path = settings / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value, indent=2) + "\n")
    for sub in ("workspaces", "checkpoints", "results"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    _private_dir(state / "runtime")          # jupyter's server info, browser-open file, kernel keys
    # the book pipeline's variables would make explorers static and results land in the book's folder
    env = {k: v for k, v in os.environ.items() if k not in ("INRLIB_STATIC_PAGE", "INRLIB_RESULTS_DIR")}
    env.update({
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "INRLIB_RESULTS_BASE": str(state / "results"),   # inrlib.book.results_dir adds /<profile>
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    })
    return env


def server_command(root: Path, state: Path, port: int, token: str, *, expose_app: bool = False) -> list[str]:
    """The ``jupyter lab`` command line (a config file under ``state``, 0600, holds the settings and
    the token)."""
    config = {
        "ServerApp": {"ip": "127.0.0.1", "port": port, "port_retries": 0, "open_browser": False,
                      "root_dir": str(root), "terminals_enabled": False,
                      "allow_root": hasattr(os, "geteuid") and os.geteuid() == 0},   # containers run as root
        "IdentityProvider": {"token": token},
        "FileCheckpoints": {"checkpoint_dir": str(state / "checkpoints")},
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "extension_manager": "readonly", "expose_app_in_browser": bool(expose_app)},
    }
    path = state / "jupyter_lab_config.json"
    with _open_private(path) as fh:
        fh.write(json.dumps(config, indent=2) + "\n")
    return [sys.executable, "-m", "jupyterlab", f"--config={path}"]


def _wait_up(proc: subprocess.Popen, port: int, token: str, timeout: float, log: Path) -> None:
    t0 = time.monotonic()
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise LabError(f"JupyterLab exited with status {proc.returncode} while starting; its log:\n"
                           + log.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise LabError(f"JupyterLab did not answer on port {port} within {timeout:.0f} s; its log: {log}")


def shutdown(proc: subprocess.Popen, port: int, token: str, timeout: float = 30) -> None:
    """Ask the server to stop (it shuts its kernels down), then make sure it has."""
    if proc.poll() is None:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=5).close()
        except OSError:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def lab_server(root: Path = ROOT, *, port: int | None = None, state: Path | None = None, expose_app: bool = False,
               timeout: float = 120, quiet: bool = True) -> Iterator[dict]:
    """Run JupyterLab on ``root`` while the ``with`` block runs; yields ``{"url", "port", "token",
    "proc", "state", "log"}`` (``url``: the lab page, token included). The server is shut down on exit."""
    root = Path(root).resolve()
    state = Path(state or root / "_build" / "lab").resolve()
    env = prepare(root, state)
    if port is None:
        port = free_port()
    elif _port_in_use(port):
        raise LabError(f"port {port} is in use on 127.0.0.1; pass another (--port N, or make lab PORT=N)")
    token = secrets.token_hex(24)
    log = state / "server.log"
    with _open_private(log) as fh:           # the server logs its URL, token included
        proc = subprocess.Popen(server_command(root, state, port, token, expose_app=expose_app), cwd=root, env=env,
                                stdout=fh if quiet else None, stderr=subprocess.STDOUT if quiet else None)
    try:
        _wait_up(proc, port, token, timeout, log)
        _privatize(state / "runtime")
        yield {"url": f"http://127.0.0.1:{port}/lab?token={token}", "port": port, "token": token, "proc": proc,
               "state": state, "log": log}
    finally:
        shutdown(proc, port, token)


# --------------------------------------------------------------------------- browser check

class LabCheckError(RuntimeError):
    """A step of :func:`check_chapter` failed; ``step`` names it (server start, open, kernel, cell
    error, widget, save)."""

    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step


_PANEL_JS = """
const app = window.jupyterapp;
if (!app) return null;
const w = app.shell.currentWidget;
if (!w || !w.content || !w.content.model || !w.sessionContext) return null;
if (!w.context.path.endsWith(arguments[0])) return null;
return w.id;
"""

_KERNEL_JS = """
const w = window.jupyterapp.shell.currentWidget;
const k = w.sessionContext.session && w.sessionContext.session.kernel;
return k ? [k.name, k.status] : null;
"""

# Cells' state from the notebook model: [n code cells, n executed, n running, errors]
_CELLS_JS = """
const w = window.jupyterapp.shell.currentWidget;
const cells = w.content.model.cells;
let code = 0, done = 0, running = 0; const errors = [];
for (let i = 0; i < cells.length; i++) {
  const c = cells.get(i);
  if (c.type !== 'code') continue;
  code += 1;
  if (c.executionCount !== null && c.executionCount !== undefined) done += 1;
  if (c.executionState === 'running') running += 1;
  for (const o of c.outputs.toJSON()) {
    if (o.output_type === 'error') errors.push('cell ' + i + ': ' + o.ename + ': ' + o.evalue);
  }
}
const prompts = Array.from(document.querySelectorAll('.jp-InputPrompt')).filter(p => p.textContent.includes('*')).length;
return [code, done, running + prompts, errors];
"""

_PICTURE_JS = """
const root = arguments[0];
const img = root.querySelector('.inrlib-explorer-picture img, img');
return img ? img.getAttribute('src').slice(-200) + ':' + img.getAttribute('src').length : null;
"""


def _wait(what, fn, timeout: float, step: str, message: str, poll: float = 0.5):
    t_end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > t_end:
            raise LabCheckError(step, f"{message} (waited {timeout:.0f} s for {what})")
        time.sleep(poll)


def check_chapter(lab: dict, chapter: str = "book/theory.py", *, screenshot: Path | None = None,
                  run_timeout: float = 900, chromium: str | None = None, explorer: bool = True) -> dict:
    """Drive JupyterLab (a :func:`lab_server` started with ``expose_app=True``) in headless Chromium:
    open ``chapter`` from the file browser's URL, check it is a notebook in the ``inrlib`` kernel,
    run all cells, check no cell raised, move the explorer's controls (class
    ``inrlib-live-explorer``; skipped when ``explorer`` is false) and see the picture change each
    time, save. Raises
    :class:`LabCheckError` naming the failed step; returns what it measured."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import check_pages
    from selenium.webdriver.common.by import By

    out: dict = {"chapter": chapter}
    driver = check_pages._driver(check_pages.find_chromium(chromium), 1400, 1000)
    try:
        t0 = time.monotonic()
        driver.get(f"http://127.0.0.1:{lab['port']}/lab/tree/{chapter}?token={lab['token']}")
        _wait("the chapter's notebook panel", lambda: driver.execute_script(_PANEL_JS, chapter.split("/")[-1]),
              120, "open", f"JupyterLab did not open {chapter} as a notebook (is jupytext's contents manager on?)")
        out["open_s"] = round(time.monotonic() - t0, 1)
        name, status = _wait("a kernel", lambda: driver.execute_script(_KERNEL_JS), 120, "kernel",
                             "no kernel started for the notebook")
        if name != "inrlib":
            raise LabCheckError("kernel", f"the notebook runs kernel {name!r}, not 'inrlib' (its header's kernelspec)")
        _wait("the kernel to be idle", lambda: (driver.execute_script(_KERNEL_JS) or [None, None])[1] == "idle",
              120, "kernel", "the kernel did not become idle")
        t1 = time.monotonic()
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")

        def finished():
            code, done, running, errors = driver.execute_script(_CELLS_JS)
            if errors:
                raise LabCheckError("cell error", "; ".join(errors))
            idle = (driver.execute_script(_KERNEL_JS) or [None, None])[1] == "idle"
            return code and done == code and not running and idle
        _wait("every cell to run", finished, run_timeout, "cell error", "the chapter did not finish", poll=1)
        out["run_s"] = round(time.monotonic() - t1, 1)
        out["code_cells"] = driver.execute_script(_CELLS_JS)[0]
        roots = driver.find_elements(By.CSS_SELECTOR, ".inrlib-live-explorer")
        if not explorer:
            roots, out["moves"] = [], []
        elif not roots:
            raise LabCheckError("widget", "no live explorer (class inrlib-live-explorer) is shown after the run")
        moves = []
        for root in roots[:1]:
            _move_explorer(driver, root, moves, check_pages, By)
        out["moves"] = moves
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        driver.execute_script("window.jupyterapp.commands.execute('docmanager:save');")
        _wait("the save", lambda: driver.execute_script(
            "return !window.jupyterapp.shell.currentWidget.context.model.dirty;"), 60, "save", "the notebook was not saved")
    finally:
        driver.quit()
    return out


def _move_explorer(driver, root, moves: list, check_pages, By) -> None:
    """Move a slider, then a dropdown, of the explorer ``root``; each must change its picture."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", root)
    controls = [c for c in root.find_elements(By.CSS_SELECTOR, "select, .noUi-handle") if c.is_displayed()]
    if not controls:
        raise LabCheckError("widget", "the live explorer shows no control")
    sliders = [c for c in controls if c.tag_name != "select"]
    selects = [c for c in controls if c.tag_name == "select"]
    for control in (sliders[:1] + selects[:1]) or controls[:1]:   # a slider (the grid), then the encoding
        before = _wait("the explorer's picture", lambda: driver.execute_script(_PICTURE_JS, root), 60, "widget",
                       "the live explorer shows no picture")
        what = check_pages._move(driver, control)
        t2 = time.monotonic()
        _wait("a new picture", lambda: driver.execute_script(_PICTURE_JS, root) not in (None, before), 120,
              "widget", f"'{what}' did not change the explorer's picture (is the kernel-side comm working?)")
        moves.append({"move": what, "s": round(time.monotonic() - t2, 1)})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="folder to serve (default: this repository)")
    ap.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: 8888, else a free one)")
    args = ap.parse_args(argv)
    port = args.port
    if port is None:
        port = 8888 if not _port_in_use(8888) else free_port()
    try:
        with lab_server(args.root, port=port, quiet=False, timeout=180) as lab:
            book = f"http://127.0.0.1:{lab['port']}/lab/tree/book?token={lab['token']}"
            print("\n" + "=" * 78 + f"\nJupyterLab is running (Ctrl-C stops it). Open in your browser:\n\n    {book}\n\n"
                  "Double-click a chapter (book/theory.py, ...): it opens as a notebook in the 'Python (inrlib)'\n"
                  "kernel. Run > Run All Cells runs it in the profile of its parameters cell (quick; set\n"
                  "profile = \"smoke\" for seconds). Results go to _build/lab/results, not into the book.\n"
                  + "=" * 78 + "\n", flush=True)
            try:
                lab["proc"].wait()
            except KeyboardInterrupt:
                print("\nstopping JupyterLab ...", flush=True)
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
