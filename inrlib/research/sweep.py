"""A resumable sweep over independent runs.

:func:`sweep` runs independent tasks through any :class:`concurrent.futures.Executor` (``None``: in
this process; a process pool; Dask's ``Client.get_executor()``), writes each finished run at once
(atomically) under a key from its task and the library's code, and skips what exists: an interrupted
sweep resumes where it stopped.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import json
import pickle
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..io import atomic_path

__all__ = ["sweep", "task_key", "code_fingerprint", "SweepError", "load_run"]


class SweepError(RuntimeError):
    """A task of a sweep failed; the runs finished before it are saved (``saved``: their paths)."""

    def __init__(self, message: str, *, task: Mapping[str, Any], saved: list[Path]):
        super().__init__(message)
        self.task = dict(task)
        self.saved = saved


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


def _path(store: Path, task: Mapping[str, Any], key: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(task.get("name", "run")))[:60] or "run"
    return store / f"{stem}-{key}.pkl"


def load_run(path: str | Path) -> dict[str, Any]:
    """A run a sweep saved: ``{"key", "task", "result", "seconds"}`` (a clear error when unreadable)."""
    try:
        with open(path, "rb") as f:
            record = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError) as err:
        raise ValueError(f"cannot read the saved run {path} ({type(err).__name__}: {err}); delete it to recompute") from None
    if not isinstance(record, dict) or "result" not in record:
        raise ValueError(f"{path} is not a saved sweep run; delete it to recompute")
    return record


def _save(path: Path, key: str, task: Mapping[str, Any], result: Any, seconds: float) -> None:
    with atomic_path(path, suffix=".tmp") as tmp:
        with open(tmp, "wb") as f:
            pickle.dump({"key": key, "task": dict(task), "result": result, "seconds": seconds}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)


def _timed(fn: Callable, task: Mapping[str, Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn(**task)
    return result, time.perf_counter() - t0


def sweep(fn: Callable[..., Any], tasks: Sequence[Mapping[str, Any]], store: str | Path, *,
          executor: cf.Executor | None = None, code: str | None = "auto",
          progress: Callable[[Iterable], Iterable] | None = None) -> list[dict[str, Any]]:
    """Run ``fn(**task)`` for every task, saving each finished run at once; reuse saved runs.

    Args:
        fn: a module-level function (so that process pools and Dask can send it to workers)
            returning picklable data.
        tasks: JSON-able dicts of ``fn``'s keyword arguments; ``task["name"]`` (if any) names the file.
        store: folder of the saved runs, ``<name>-<key>.pkl`` (:func:`task_key`).
        executor: where to run: ``None`` in this process, one task after another; any
            ``concurrent.futures.Executor`` otherwise (``ProcessPoolExecutor``, Dask's
            ``Client(...).get_executor()``). Runs are written by this process as they finish, so
            workers need no access to ``store``.
        code: ``"auto"``: keys include :func:`code_fingerprint` (a changed library recomputes);
            ``None``: they do not.

    Returns one record per task, in task order: ``{"task", "key", "path", "result", "seconds",
    "cached"}``. Raises :class:`SweepError` when a task fails, after saving every run that finished.
    """
    store = Path(store)
    tasks = [dict(t) for t in tasks]
    keys = [task_key(fn, t, code) for t in tasks]
    if len(set(keys)) != len(keys):
        dup = [t.get("name", t) for t, k in zip(tasks, keys) if keys.count(k) > 1]
        raise ValueError(f"the sweep has identical tasks {dup}: each task must differ (a seed, a name, ...)")
    paths = [_path(store, t, k) for t, k in zip(tasks, keys)]
    records: list[dict[str, Any] | None] = [None] * len(tasks)
    todo = []
    for i, (task, key, path) in enumerate(zip(tasks, keys, paths)):
        if path.is_file():
            try:
                saved = load_run(path)
            except ValueError:
                saved = None
            if saved is not None and saved.get("key") == key:
                records[i] = {"task": task, "key": key, "path": path, "result": saved["result"],
                              "seconds": saved.get("seconds"), "cached": True}
                continue
        todo.append(i)
    store.mkdir(parents=True, exist_ok=True)
    saved_paths: list[Path] = []

    def finish(i: int, result: Any, seconds: float) -> None:
        _save(paths[i], keys[i], tasks[i], result, seconds)
        saved_paths.append(paths[i])
        records[i] = {"task": tasks[i], "key": keys[i], "path": paths[i], "result": result, "seconds": seconds,
                      "cached": False}

    def failure(i: int, err: BaseException) -> SweepError:
        name = tasks[i].get("name", f"task {i}")
        done = sum(r is not None for r in records)
        return SweepError(f"sweep task {name!r} failed: {type(err).__name__}: {err}. The {done} finished run(s) "
                          f"are saved in {store}; run the sweep again to compute only the rest",
                          task=tasks[i], saved=list(saved_paths))

    if executor is None:
        for i in (progress(todo) if progress else todo):
            try:
                result, seconds = _timed(fn, tasks[i])
            except Exception as err:  # noqa: BLE001 - re-raised with what was saved
                raise failure(i, err) from err
            finish(i, result, seconds)
    else:
        futures = {executor.submit(_timed, fn, tasks[i]): i for i in todo}
        first_error: tuple[int, BaseException] | None = None
        done_iter = cf.as_completed(futures)
        for fut in (progress(done_iter) if progress else done_iter):
            i = futures[fut]
            if fut.cancelled():
                continue
            err = fut.exception()
            if err is not None:
                if first_error is None:
                    first_error = (i, err)
                    for other in futures:
                        other.cancel()
                continue
            finish(i, *fut.result())
        if first_error is not None:
            raise failure(*first_error) from first_error[1]
    return records  # type: ignore[return-value]
