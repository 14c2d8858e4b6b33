"""A resumable sweep over independent runs, saved as checked data.

:func:`sweep` runs independent tasks through any :class:`concurrent.futures.Executor` (``None``: in
this process; :func:`process_pool`; Dask's ``Client.get_executor()``), writes each finished run at once
(atomically) under a key from its task and the library's code, and reuses what exists: an interrupted
sweep resumes where it stopped.

A saved run is data, never code: one ``<name>-<key>.npz`` file (a zip of uncompressed members, readable
with ``np.load``) holding ``record.json`` (the task, the timing and the result's structure) and one
``.npy`` member per array of the result. The record carries a SHA-256 of its own content and of every
array member; :func:`load_run` checks all of them before anything is decoded and never unpickles, so a
damaged file is recomputed instead of reused. The checksum detects damage, not forgery: a file written
on purpose with the right name and checksums is read as the data it holds (but cannot run code).
"""
from __future__ import annotations

import concurrent.futures as cf
import ctypes
import errno
import functools
import hashlib
import io
import json
import multiprocessing as mp
import numbers
import os
import re
import signal
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path

__all__ = ["sweep", "task_key", "code_fingerprint", "SweepError", "SweepWarning", "load_run", "save_run",
           "process_pool", "is_transient"]

#: The ``format`` of a saved run's record; a file with another one is recomputed.
FORMAT = "inrlib.sweep-run/1"
_RECORD = "record.json"


class SweepError(RuntimeError):
    """A task of a sweep failed; the runs finished before it are saved (``saved``: their paths).

    ``transient``: the cause is the machine, not the task (memory, a lost worker, a full disk), so
    running the sweep again can help; otherwise the same task fails the same way until it or the code
    is fixed."""

    def __init__(self, message: str, *, task: Mapping[str, Any], saved: list[Path], transient: bool = False):
        super().__init__(message)
        self.task = dict(task)
        self.saved = saved
        self.transient = transient


class SweepWarning(UserWarning):
    """A saved run that is not used (damaged, another format, an old pickle) or a run kept elsewhere."""


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of every ``inrlib/**/*.py`` file: runs computed by other
    library code are not reused."""
    root = Path(__file__).resolve().parents[1]   # the inrlib package
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _canonical(obj: Any) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except TypeError as err:
        raise TypeError(f"a sweep task must be JSON data (numbers, strings, lists, dicts) so that it has a "
                        f"stable key; {err}. Pass names and sizes (e.g. an image name and a resolution), not "
                        "tensors or modules") from None


def task_key(fn: Callable, task: Mapping[str, Any], code: str | None = "auto") -> str:
    """The key a sweep stores ``fn(**task)`` under: a hash of the function's name, the task and
    (``code="auto"``) :func:`code_fingerprint`; ``code=None`` leaves the code out."""
    code = code_fingerprint() if code == "auto" else code
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    return hashlib.sha256(_canonical({"fn": name, "task": task, "code": code}).encode()).hexdigest()[:20]


def _path(store: Path, task: Mapping[str, Any], key: str, suffix: str = ".npz") -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(task.get("name", "run")))[:60] or "run"
    return store / f"{stem}-{key}{suffix}"


# ----------------------------------------------------------------------------------------------
# a run as data: JSON structure + .npy arrays
# ----------------------------------------------------------------------------------------------

def _unsupported(where: str, obj: Any, hint: str = "") -> TypeError:
    return TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; a run must be JSON data "
                     f"(None, bool, int, float, str, list, tuple, dict) and numpy arrays/scalars or torch "
                     f"tensors{hint}")


def _encode(obj: Any, where: str, arrays: list[bytes], stack: set[int]) -> Any:
    """``obj`` as JSON: plain scalars and lists as themselves, everything else a one-key tag
    (``{"tuple": [...]}``, ``{"dict": [[key, value], ...]}``, ``{"array": "a3"}``, ``{"scalar": "a4"}``,
    ``{"tensor": ["a5", "torch.float32"]}``); arrays are appended to ``arrays`` as ``.npy`` bytes."""
    kind = type(obj)
    if obj is None or kind in (bool, int, float, str):
        return obj
    if kind in (list, tuple, dict):
        if id(obj) in stack:
            raise TypeError(f"{where} contains itself; a run must be a tree of data")
        stack.add(id(obj))
        try:
            if kind is dict:
                items = []
                for k, v in obj.items():
                    if not (k is None or type(k) in (bool, int, float, str, tuple) or isinstance(k, np.generic)):
                        raise _unsupported(f"a key of {where} ({k!r})", k)
                    items.append([_encode(k, f"a key of {where}", arrays, stack),
                                  _encode(v, f"{where}[{k!r}]", arrays, stack)])
                return {"dict": items}
            values = [_encode(v, f"{where}[{i}]", arrays, stack) for i, v in enumerate(obj)]
            return values if kind is list else {"tuple": values}
        finally:
            stack.discard(id(obj))
    if kind is np.ndarray or isinstance(obj, np.generic):
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise _unsupported(where, obj, f" (this one holds Python objects, dtype {arr.dtype}: it would need "
                                           "pickle; store numbers)")
        name = f"a{len(arrays)}"
        arrays.append(_npy(arr))
        return {"array": name} if kind is np.ndarray else {"scalar": name}
    if kind is torch.Tensor:
        t = obj.detach().cpu()
        if t.layout != torch.strided:
            raise _unsupported(where, obj, f" (this one is {t.layout}: call .to_dense())")
        try:
            arr = t.numpy()
        except TypeError:          # bfloat16, float8, ...: keep the bits
            bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}.get(t.element_size())
            if bits is None:
                raise _unsupported(where, obj, f" (dtype {t.dtype} has no numpy equivalent)") from None
            arr = t.view(bits).numpy()
        name = f"a{len(arrays)}"
        arrays.append(_npy(arr))
        return {"tensor": [name, str(t.dtype)]}
    hint = ""
    if isinstance(obj, np.ndarray):
        hint = " (a subclass of np.ndarray: pass np.asarray(...))"
    elif isinstance(obj, torch.Tensor):
        hint = " (a subclass of torch.Tensor, e.g. a Parameter: pass .detach())"
    elif isinstance(obj, os.PathLike):
        hint = " (pass str(path))"
    raise _unsupported(where, obj, hint)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _decode(enc: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if enc is None or type(enc) in (bool, int, float, str):
        return enc
    if type(enc) is list:
        return [_decode(v, arrays) for v in enc]
    if type(enc) is dict and len(enc) == 1:
        ((tag, value),) = enc.items()
        if tag == "tuple":
            return tuple(_decode(v, arrays) for v in value)
        if tag == "dict":
            return {_decode(k, arrays): _decode(v, arrays) for k, v in value}
        if tag == "array":
            return arrays[value]
        if tag == "scalar":
            return arrays[value][()]
        if tag == "tensor":
            name, dtype = value
            dt = getattr(torch, dtype.removeprefix("torch."))
            t = torch.from_numpy(arrays[name])
            return t if t.dtype == dt else t.view(dt)
    raise ValueError(f"unknown entry {str(enc)[:80]}")


def _digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()).hexdigest()


def _encode_run(key: str, task: Mapping[str, Any], result: Any, seconds: float | None) -> dict[str, bytes]:
    """The members of a run file: ``record.json`` and ``a<i>.npy``."""
    arrays: list[bytes] = []
    structure = _encode(result, "result", arrays, set())
    record = {"format": FORMAT, "key": key, "task": json.loads(_canonical(dict(task))),
              "seconds": None if seconds is None else float(seconds), "result": structure,
              "arrays": {f"a{i}": hashlib.sha256(b).hexdigest() for i, b in enumerate(arrays)}}
    record["sha256"] = _digest(record)
    members = {_RECORD: json.dumps(record, sort_keys=True, indent=1, allow_nan=True).encode()}
    members.update({f"a{i}.npy": b for i, b in enumerate(arrays)})
    return members


def save_run(path: str | Path, key: str, task: Mapping[str, Any], result: Any, seconds: float | None = None) -> Path:
    """Write one run to ``path`` (atomically): what :func:`load_run` reads. Raises :class:`TypeError`
    naming the place in ``result`` that is not JSON data, a numpy array/scalar or a torch tensor."""
    members = _encode_run(key, task, result, seconds)
    _write(Path(path), members)
    return Path(path)


def _write(path: Path, members: Mapping[str, bytes]) -> None:
    with atomic_path(path, suffix=".tmp") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for name, data in members.items():
                z.writestr(name, data)


def _read_verified(path: Path) -> dict[str, Any]:
    """Read and check a run file; raises with the reason when anything is off."""
    size = path.stat().st_size
    members: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if (info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or info.file_size != info.compress_size
                    or info.file_size > size or info.filename in members):
                raise ValueError(f"member {info.filename!r} is not one this library writes")
            members[info.filename] = z.read(info)   # zipfile checks each member's CRC-32
    if _RECORD not in members:
        raise ValueError(f"no {_RECORD}")
    record = json.loads(members.pop(_RECORD).decode("utf-8"))
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"not a run in the format {FORMAT!r}")
    if record.get("sha256") != _digest(record):
        raise ValueError("the record does not match its SHA-256")
    expected = record["arrays"]
    if set(members) != {f"{name}.npy" for name in expected}:
        raise ValueError("its arrays are not the ones the record lists")
    arrays = {}
    for name, sha in expected.items():
        data = members[f"{name}.npy"]
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"array {name} does not match its SHA-256")
        arrays[name] = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    return {"key": record["key"], "task": record["task"], "seconds": record["seconds"],
            "result": _decode(record["result"], arrays)}


def load_run(path: str | Path) -> dict[str, Any]:
    """A run a sweep saved: ``{"key", "task", "result", "seconds"}``, after checking every checksum.

    The result comes back as it was saved (types, dtypes, shapes, NaN/inf, tuples vs lists, dict key
    types and order); torch tensors come back detached, on the CPU. Raises :class:`ValueError` naming
    the file and the reason when it is missing, damaged or not a run (nothing in it is executed)."""
    path = Path(path)
    try:
        return _read_verified(path)
    except Exception as err:  # noqa: BLE001 - any failure to parse a damaged file means "not usable"
        raise ValueError(f"cannot use the saved run {path}: {type(err).__name__}: {err}") from None


# ----------------------------------------------------------------------------------------------
# workers that die with their parent
# ----------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int, use_prctl: bool = True) -> None:
    """Pool initializer: end this worker when the process ``parent`` dies (see :func:`process_pool`)."""
    armed = False
    if use_prctl and sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:      # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_exit_with, args=(parent,), name="inrlib-parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    proc = mp.parent_process()
    if proc is not None:
        proc.join()                 # returns when the parent's end of the spawn pipe closes: it died
    else:
        while os.getppid() == parent:
            time.sleep(0.5)
    os._exit(1)


def process_pool(workers: int) -> cf.ProcessPoolExecutor | None:
    """A spawn-context process pool of ``workers`` processes whose workers exit when this process dies
    (also by ``kill -9``); ``0`` gives ``None`` (a sweep then runs in this process).

    Linux: each worker asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``).
    The kernel sends it when the *thread* that started the worker ends, and the pool starts workers from
    the thread that submits, so submit from a thread that lives as long as the pool (the main thread,
    as the chapters do). Elsewhere a thread in each worker waits on the spawn pipe from the parent
    (``multiprocessing.parent_process()``) and exits the worker when it closes. Once the workers are
    gone, multiprocessing's resource tracker exits too."""
    if not isinstance(workers, numbers.Integral) or isinstance(workers, bool):
        raise TypeError(f"workers must be an integer >= 0, got {workers!r}")
    if workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if workers == 0:
        return None
    return cf.ProcessPoolExecutor(int(workers), mp_context=mp.get_context("spawn"), initializer=_die_with_parent,
                                  initargs=(os.getpid(),))


# ----------------------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------------------

_TRANSIENT_ERRNO = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "ENOMEM", "EAGAIN", "EMFILE", "ENFILE",
                                                      "EIO", "EINTR", "EBUSY") if hasattr(errno, name)}
_LOST_WORKER = {"KilledWorker", "CommClosedError"}     # Dask's names for a worker that died


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` is the machine's, not the task's, so that rerunning can help: out of memory
    (``MemoryError``, a torch "out of memory"), a worker that died (``BrokenExecutor``, Dask's
    ``KilledWorker``), a connection or timeout, a full disk or similar ``OSError``. Anything else
    (a wrong argument, a missing file, a bug) fails again the same way."""
    if isinstance(err, (MemoryError, cf.BrokenExecutor, ConnectionError, TimeoutError, cf.TimeoutError)):
        return True
    if isinstance(err, OSError):
        return err.errno in _TRANSIENT_ERRNO
    if isinstance(err, RuntimeError) and "out of memory" in str(err).lower():
        return True
    return type(err).__name__ in _LOST_WORKER


def _notice(message: str) -> None:
    warnings.warn(message, SweepWarning, stacklevel=3)


def _check_store(store: Path, paths: Sequence[Path], names: Sequence[Any]) -> None:
    """Before any work: the store is a folder this process can write, and no folder sits on a run's name."""
    if store.exists() and not store.is_dir():
        raise NotADirectoryError(f"the sweep store {store} is a file, not a folder: pass another store "
                                 "(or move the file); nothing was computed")
    try:
        store.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=store)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise type(err)(f"cannot write in the sweep store {store} ({type(err).__name__}: {err}): pass a folder "
                        "you can write (store=, or $INRLIB_RUNS_DIR for the chapters); nothing was computed") from None
    for path, name in zip(paths, names):
        if path.is_dir() and not path.is_symlink():
            raise IsADirectoryError(f"a folder sits where the run of task {name!r} is saved ({path}): move or "
                                    "delete it; nothing was computed")


def sweep(fn: Callable[..., Any], tasks: Sequence[Mapping[str, Any]], store: str | Path, *,
          executor: cf.Executor | None = None, code: str | None = "auto",
          progress: Callable[[Iterable], Iterable] | None = None) -> list[dict[str, Any]]:
    """Run ``fn(**task)`` for every task, saving each finished run at once; reuse saved runs.

    Args:
        fn: a module-level function (so that process pools and Dask can send it to workers)
            returning JSON data, numpy arrays/scalars and torch tensors (:func:`save_run`).
        tasks: JSON-able dicts of ``fn``'s keyword arguments; ``task["name"]`` (if any) names the file.
        store: folder of the saved runs, ``<name>-<key>.npz`` (:func:`task_key`, :func:`load_run`).
        executor: where to run: ``None`` in this process, one task after another; any
            ``concurrent.futures.Executor`` otherwise (:func:`process_pool`, Dask's
            ``Client(...).get_executor()``). Runs are written by this process as they finish, so
            workers need no access to ``store``.
        code: ``"auto"``: keys include :func:`code_fingerprint` (a changed library recomputes);
            ``None``: they do not.

    A saved run that cannot be read or does not match its checksums is recomputed, with a
    :class:`SweepWarning` naming the file and the reason; old ``*.pkl`` runs are never unpickled
    (a warning says they are ignored). When there is work to do, the store is checked first: a store
    that cannot be written, or a folder on a run's file name, raises before any task runs. A run that
    cannot be saved after all (a full disk) is written to ``$TMPDIR/inrlib-unsaved-runs`` instead,
    with a warning; it is still returned.

    Returns one record per task, in task order: ``{"task", "key", "path", "result", "seconds",
    "cached"}``. Raises :class:`SweepError` when a task fails (or returns something that cannot be
    saved), after saving every run that finished. Its message names the task and the cause and
    says whether to rerun: only a transient cause (:func:`is_transient`: memory, a lost worker, a full
    disk, ...) is worth a plain rerun, which then computes only the rest; any other error comes back
    until the task or the code is fixed.
    """
    store = Path(store)
    tasks = [dict(t) for t in tasks]
    keys = [task_key(fn, t, code) for t in tasks]
    if len(set(keys)) != len(keys):
        dup = [t.get("name", t) for t, k in zip(tasks, keys) if keys.count(k) > 1]
        raise ValueError(f"the sweep has identical tasks {dup}: each task must differ (a seed, a name, ...)")
    paths = [_path(store, t, k) for t, k in zip(tasks, keys)]
    names = [t.get("name", f"task {i}") for i, t in enumerate(tasks)]
    records: list[dict[str, Any] | None] = [None] * len(tasks)
    todo = []
    if store.is_dir():
        old = sorted(store.glob("*.pkl"))
        if old:
            _notice(f"{store} holds {len(old)} run file(s) in the old pickle format (*.pkl): they are ignored "
                    "(never unpickled) and can be deleted")
    for i, (task, key, path) in enumerate(zip(tasks, keys, paths)):
        if path.is_file():
            try:
                saved = load_run(path)
                if saved["key"] != key:
                    raise ValueError(f"cannot use the saved run {path}: it holds key {saved['key']!r}, not {key!r}")
            except ValueError as err:
                _notice(f"{err}; recomputing it")
            else:
                records[i] = {"task": task, "key": key, "path": path, "result": saved["result"],
                              "seconds": saved["seconds"], "cached": True}
                continue
        todo.append(i)
    if not todo:
        return records  # type: ignore[return-value]
    _check_store(store, [paths[i] for i in todo], [names[i] for i in todo])
    saved_paths: list[Path] = []

    def finish(i: int, result: Any, seconds: float) -> None:
        members = _encode_run(keys[i], tasks[i], result, seconds)   # TypeError: not data (a task failure)
        try:
            _write(paths[i], members)
            saved_paths.append(paths[i])
        except OSError as err:
            rescue = Path(tempfile.gettempdir()) / "inrlib-unsaved-runs" / paths[i].name
            try:
                _write(rescue, members)
                _notice(f"could not save the run of task {names[i]!r} to {paths[i]} ({type(err).__name__}: {err}); "
                        f"it is kept at {rescue}: move it into {store} to reuse it")
            except OSError as err2:
                _notice(f"could not save the run of task {names[i]!r} to {paths[i]} ({err}) nor to {rescue} "
                        f"({err2}); it is returned but will be recomputed next time")
        records[i] = {"task": tasks[i], "key": keys[i], "path": paths[i], "result": result, "seconds": seconds,
                      "cached": False}

    def failure(i: int, err: BaseException) -> SweepError:
        done = sum(r is not None for r in records)
        transient = is_transient(err)
        head = f"sweep task {names[i]!r} failed: {type(err).__name__}: {err}. "
        if transient:
            tail = (f"That is a resource or a lost worker, not the task: run the sweep again to compute only the "
                    f"rest ({done} finished run(s) are saved in {store})")
        else:
            tail = (f"Rerunning it unchanged fails the same way: fix the task or the code first ({done} finished "
                    f"run(s) are saved in {store}; they are reused unless inrlib's code changes)")
        return SweepError(head + tail, task=tasks[i], saved=list(saved_paths), transient=transient)

    if executor is None:
        for i in (progress(todo) if progress else todo):
            try:
                result, seconds = _timed(fn, tasks[i])
                finish(i, result, seconds)
            except Exception as err:  # noqa: BLE001 - re-raised with what was saved
                raise failure(i, err) from err
    else:
        futures = {executor.submit(_timed, fn, tasks[i]): i for i in todo}
        first_error: tuple[int, BaseException] | None = None
        done_iter = cf.as_completed(futures)
        for fut in (progress(done_iter) if progress else done_iter):
            i = futures[fut]
            if fut.cancelled():
                continue
            err = fut.exception()
            if err is None:
                try:
                    finish(i, *fut.result())
                except Exception as save_err:  # noqa: BLE001 - a result that is not data
                    err = save_err
            if err is not None and first_error is None:
                first_error = (i, err)
                for other in futures:
                    other.cancel()
        if first_error is not None:
            raise failure(*first_error) from first_error[1]
    return records  # type: ignore[return-value]


def _timed(fn: Callable, task: Mapping[str, Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn(**task)
    return result, time.perf_counter() - t0
