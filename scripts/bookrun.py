"""What the book pipeline (scripts/bookpipe.py) puts around a chapter's papermill run.

- :func:`hold_lock`: one run at a time per results file and per HTML build (``fcntl.flock``); the
  second run says who holds it (pid, command, start time).
- :func:`kernel_folder`: a private folder in the temporary folder for the kernel's connection
  file and the progress log, removed on every way out (success, failure, SIGTERM, Ctrl-C; after
  a SIGKILL the next run removes the folders of runs that are no longer alive).
- :class:`Reporter`: the terminal lines of a run: one per code cell, one every few minutes while
  a cell runs, the kernel's progress lines (``INRLIB_PROGRESS=log`` lines, which the kernel appends
  to the progress log; the notebook never sees them) and a warning when a progress line's estimate
  passes the cell time limit.
- :func:`check_checkout`: the kernel imports ``inrlib`` from this checkout, not from another one
  that shares the virtual environment.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR_PREFIX = "inrlib-kernel-"
#: Seconds between two "still running" lines of a long cell.
HEARTBEAT_S = 300.0


class PipelineError(Exception):
    """A problem the user can fix; the pipeline prints it without a traceback."""


# --------------------------------------------------------------------------- locks

_HELD: dict[Path, int] = {}   # lock file -> descriptor, for the locks this process holds


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if "pid" not in info:
        return "a run that is starting (it has not written its pid yet)"
    started = dt.datetime.fromisoformat(info["started"])
    minutes = (dt.datetime.now(dt.timezone.utc) - started).total_seconds() / 60
    return f"pid {info['pid']} ({info['command']}), started {info['started']} ({minutes:.1f} min ago)"


@contextlib.contextmanager
def hold_lock(path: Path, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on the file ``path`` for the block; ``what`` names the
    thing it guards in messages.

    When another process holds it: ``wait=False`` raises :class:`PipelineError` at once, naming the
    holder (pid, command, start time) and what to do; ``wait=True`` says who it waits for and
    waits. Re-entrant within one process (the ``chapter`` step holds the lock that its ``execute``
    takes again). The lock file holds the holder's details and is removed when released.
    """
    path = Path(path).absolute()
    if path in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                os.close(fd)
                raise PipelineError(
                    f"{what} is in use by another run: {holder}. Wait for it to finish or stop it "
                    f"(kill {holder.split()[1] if holder.startswith('pid') else 'PID'}); to run both at once, give "
                    "this one another build folder (make ... BUILD=_build/other, or --build and --results)") from None
            print(f"book: waiting for {what}, held by {holder}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:   # the holder removes the file when done: a lock on a removed file guards nothing
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"pid": os.getpid(), "command": shlex.join([sys.executable, *sys.argv]),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    _HELD[path] = fd
    try:
        yield
    finally:
        del _HELD[path]
        path.unlink(missing_ok=True)   # before unlocking: a waiter then retries on a new file
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------- the kernel's folder

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def kernel_folder() -> Iterator[Path]:
    """A new folder ``$TMPDIR/inrlib-kernel-<pid>-XXXX`` for the kernel's connection file and the
    progress log, removed when the block ends however it ends. Folders that runs killed with
    SIGKILL left (their pid is gone) are removed first."""
    tmp = Path(tempfile.gettempdir())
    for old in tmp.glob(f"{KERNEL_DIR_PREFIX}*"):
        pid = old.name[len(KERNEL_DIR_PREFIX):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- the terminal

_LEFT = re.compile(r"~(?:(\d+):)?(\d+):(\d\d) left")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


class Reporter:
    """Lines on stderr while chapter ``name`` runs, each starting ``[name]``.

    :meth:`cell_start` (called by the papermill engine) prints ``cell 7/31 (2.3 min elapsed)`` for
    each code cell; a thread prints ``still running`` every ``heartbeat`` seconds of one cell and
    copies the lines that the kernel appends to ``progress_file``; when one of those says
    ``~H:MM:SS left`` and the cell would then pass ``cell_timeout`` seconds, a warning says so once
    per cell. Use as a context manager (the thread stops, the last lines are copied, at exit).
    """

    def __init__(self, name: str, progress_file: Path, cell_timeout: float | None = None,
                 heartbeat: float = HEARTBEAT_S, stream=None):
        self.name, self.progress_file = name, Path(progress_file)
        self.cell_timeout, self.heartbeat = cell_timeout, heartbeat
        self.stream = stream
        self.t0 = time.monotonic()
        self.cell: tuple[int, int] | None = None
        self.cell_t0 = self.beat_t = self.t0
        self.warned = False
        self._pos, self._partial = 0, ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"report-{name}", daemon=True)

    def say(self, text: str) -> None:
        print(f"[{self.name}] {text}", file=self.stream or sys.stderr, flush=True)

    def cell_start(self, cells, index: int | None) -> None:
        """Cell ``index`` of the notebook's ``cells`` starts (markdown cells are not counted)."""
        code = [i for i, c in enumerate(cells) if c.get("cell_type") == "code"]
        if index not in code:
            return
        with self._lock:
            now = time.monotonic()
            self.cell, self.cell_t0, self.beat_t, self.warned = (code.index(index) + 1, len(code)), now, now, False
            self.say(f"cell {self.cell[0]}/{self.cell[1]} ({_minutes(now - self.t0)} elapsed)")

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._drain()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._drain()
            with self._lock:
                now = time.monotonic()
                if self.cell is not None and now - self.beat_t >= self.heartbeat:
                    self.beat_t = now
                    self.say(f"cell {self.cell[0]}/{self.cell[1]} still running: {_minutes(now - self.cell_t0)} "
                             f"in it ({_minutes(now - self.t0)} elapsed)")

    def _drain(self) -> None:
        try:
            with open(self.progress_file, encoding="utf-8") as fh:
                fh.seek(self._pos)
                text = fh.read()
                self._pos = fh.tell()
        except FileNotFoundError:
            return
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self.say(line)
                self._check_estimate(line)

    def _check_estimate(self, line: str) -> None:
        match = _LEFT.search(line)
        if not match or not self.cell_timeout or self.warned or self.cell is None:
            return
        h, m, s = (int(g) if g else 0 for g in match.groups())
        left = 3600 * h + 60 * m + s
        in_cell = time.monotonic() - self.cell_t0
        if in_cell + left > self.cell_timeout:
            self.warned = True
            self.say(f"WARNING: at this rate cell {self.cell[0]} needs ~{_minutes(left)} more, past the cell time "
                     f"limit of {_minutes(self.cell_timeout)} ({self.cell_timeout:.0f} s), which stops the chapter: "
                     f"allow more (make ... EXEC_FLAGS=\"--cell-timeout {int(3 * (in_cell + left))}\", or "
                     "--cell-timeout), or run it with smaller parameters")


# --------------------------------------------------------------------------- the checkout

def check_checkout(python: str, cwd: Path, env: Mapping[str, str]) -> Path:
    """Check that ``python`` started in ``cwd`` with ``env`` (what the kernel gets) imports
    ``inrlib`` from this checkout, and so does this process; return the package folder. A
    :class:`PipelineError` names the one it found and the fix."""
    import inrlib

    mine = (ROOT / "inrlib").resolve()
    fix = (f"fix: install this checkout into that environment ({python} -m pip install -e {ROOT}), "
           f"or give this checkout its own environment (make venv in {ROOT})")
    here = Path(inrlib.__file__).resolve().parent
    if here != mine:
        raise PipelineError(f"the pipeline imported inrlib from {here}, not from this checkout ({mine}); {fix}")
    code = "import importlib.util as u; s = u.find_spec('inrlib'); print(s.origin if s and s.origin else '')"
    done = subprocess.run([python, "-c", code], cwd=str(cwd), env=dict(env), capture_output=True, text=True,
                          timeout=120)
    found = done.stdout.strip()
    if done.returncode or not found:
        raise PipelineError(f"the kernel's python ({python}) cannot import inrlib"
                            f"{': ' + done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}; {fix}")
    theirs = Path(found).resolve().parent
    if theirs != mine:
        entries = [Path(p).resolve() for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        why = (f"PYTHONPATH={env['PYTHONPATH']} puts that one first; unset PYTHONPATH (or put {ROOT} first)"
               if theirs.parent in entries
               else f"this environment's inrlib is another checkout's (an editable install); {fix}")
        raise PipelineError(f"the kernel would import inrlib from {theirs}, not from this checkout ({mine}): {why}")
    return theirs
