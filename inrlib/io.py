"""Atomic file writes and the cache folder.

Everything ``inrlib`` writes (cached data, results JSON, executed notebooks) goes
through :func:`atomic_write`: the bytes land in a temporary file in the target's
folder and are moved into place with :func:`os.replace`, so an interrupted run
never leaves a half-written file where a good one was.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .resources import env_path

__all__ = ["cache_dir", "atomic_write", "atomic_path", "write_json", "read_json", "json_default"]


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the inrlib cache.

    The root is ``$INRLIB_CACHE`` when set, else ``$XDG_CACHE_HOME/inrlib``, else
    ``~/.cache/inrlib``.
    """
    root = env_path("INRLIB_CACHE")
    if root is not None:
        base = root
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inrlib"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    >>> with atomic_path("out.npz") as tmp:      # doctest: +SKIP
    ...     np.savez(tmp, a=1)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():      # mkstemp makes 0600 files; give the result the usual umask mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def json_default(obj: Any) -> Any:
    """The JSON value of one object :mod:`json` cannot write itself (its ``default=`` hook): a NumPy
    scalar its Python number, an array or tensor its nested lists, a path, dtype or device its string,
    a set or tuple a list. Anything else raises ``TypeError`` (a file of results must not hold a
    ``repr`` by accident). :meth:`inrlib.train.History.to_dict` uses it for its leaves."""
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch
        if isinstance(obj, torch.Tensor):
            return obj.detach().cpu().tolist()
        if isinstance(obj, (torch.dtype, torch.device)):
            return str(obj)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON; convert it to numbers, lists or strings")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NumPy and torch values converted)."""
    return atomic_write(path, json.dumps(obj, indent=2, default=json_default, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSON file at {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and re-run the step that writes it") from None
