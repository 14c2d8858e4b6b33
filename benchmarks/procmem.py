"""Memory of the running process, from ``/proc/self/status`` (standard library only, so that the
neural-tangents side, which runs in ``.venv-nt`` without torch, can import it too)."""
from __future__ import annotations


def _status_mb(field: str) -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mb() -> float:
    """Resident set size now (MB)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size of this process (``VmHWM``, MB). Not ``ru_maxrss``: Linux carries that
    across ``execve`` from the forking parent, so a child would report its parent's size."""
    return _status_mb("VmHWM")
