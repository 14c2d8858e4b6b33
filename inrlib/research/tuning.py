"""The papers' hyperparameter search: Optuna over a :class:`~inrlib.research.experiments.RunConfig`,
in an RDB storage (an SQLite file by default) that resumes and can be shared between processes.

- :func:`storage_url`: a storage given as a file path or a database URL, checked, as a URL.
- :func:`tune`: run (or continue, or only read) a study until it holds ``n_trials`` trials.
- :class:`ReadOnlyStorageError`: the storage cannot be written and the study is not finished.
"""
from __future__ import annotations

import inspect
import os
import re
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .experiments import RunConfig

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: processes sharing a study may race (see tune)
    fcntl = None  # type: ignore[assignment]

__all__ = ["tune", "storage_url", "ReadOnlyStorageError"]

_FORMS = ("a file path (a relative one is taken from the repository root), e.g. '_build/tuning.sqlite3', "
          "or a database URL with a scheme SQLAlchemy knows, e.g. 'sqlite:////abs/path.db' or "
          "'postgresql://user@host/db'")


class ReadOnlyStorageError(PermissionError):
    """The study's storage cannot be written and the study has fewer trials than asked for (the
    message names the storage, the reason and the fix)."""


def _default_root() -> Path:
    """The repository holding this ``inrlib`` (the first folder above with ``_toc.yml`` and ``inrlib/``,
    as :func:`inrlib.book.toc.repo_root`, which this layer may not import), else the working folder
    (an installed copy of the package has no repository)."""
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "_toc.yml").is_file() and (folder / "inrlib").is_dir():
            return folder
    return Path.cwd()


def _known_scheme(name: str) -> bool:
    """Whether SQLAlchemy has a dialect ``name`` (``sqlite``, ``postgresql+psycopg``, ...)."""
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url
    try:
        make_url(f"{name}://").get_dialect()
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError):
        return False
    return True


def _sqlite_url(path: Path, *, read_only: bool = False) -> str:
    """``sqlite:///<path>`` (``path`` absolute), percent-quoted so that any file name survives
    SQLAlchemy's URL parsing; ``read_only``: SQLite's URI form ``file:<path>?mode=ro``, which
    refuses every write (even root's)."""
    quoted = urllib.parse.quote(str(path), safe="/")
    if not read_only:
        return f"sqlite:///{quoted}"
    # SQLAlchemy unquotes the database once, SQLite's URI parser once more
    return f"sqlite:///file:{urllib.parse.quote(quoted, safe='/')}?mode=ro&uri=true"


def _sqlite_file(url: str) -> Path | None:
    """The file of an ``sqlite`` URL (absolute), ``None`` for an in-memory or server database."""
    from sqlalchemy.engine import make_url
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = parsed.database
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        database = urllib.parse.unquote(urllib.parse.urlsplit(database).path)
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            return None
    return Path(database)


def storage_url(storage: str | os.PathLike, *, root: str | os.PathLike | None = None) -> str:
    """An Optuna RDB storage URL from a file path or a database URL.

    ``storage`` is either a **database URL** whose scheme SQLAlchemy knows (``sqlite:///...``,
    ``postgresql://...``, ``mysql+pymysql://...``; kept as given, except that a relative SQLite file
    is taken from ``root`` too), or a **file path** (``~`` expanded; a relative one is taken from
    ``root``, never from the working folder, which is ``book/`` while a chapter runs), turned into
    ``sqlite:///<absolute path>``. ``root`` defaults to the repository holding this package (the
    folder with ``_toc.yml`` and ``inrlib/``), or the working folder for an installed copy.

    Raises:
        ValueError: ``storage`` is neither (an unknown scheme such as ``redis://``, or a URL with
            its ``://`` mistyped, such as ``sqlite//x`` or ``sqlite:x``, which would otherwise
            become a folder ``sqlite/``); the message names the string and the two forms.
    """
    text = os.fspath(storage)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"storage must be {_FORMS}; got {storage!r}")
    base = Path(root).expanduser().resolve() if root is not None else _default_root()
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if not _known_scheme(scheme):
            raise ValueError(f"storage {text!r} is a URL with scheme {scheme!r}, which SQLAlchemy does not know; "
                             f"pass {_FORMS}")
        from sqlalchemy.engine import make_url
        parsed = make_url(text)
        file = _sqlite_file(text)
        if file is not None and not file.is_absolute() and parsed.query.get("uri") != "true":
            return parsed.set(database=str((base / file).resolve())).render_as_string(hide_password=False)
        return text
    mistyped = re.match(r"^([A-Za-z][\w.]*(?:\+\w+)?)(:|//)", text)
    if mistyped and _known_scheme(mistyped.group(1)):
        raise ValueError(f"storage {text!r} looks like a database URL with its '://' mistyped (it would become a "
                         f"folder {mistyped.group(1)!r}); pass {_FORMS}")
    path = Path(text).expanduser()
    return _sqlite_url((path if path.is_absolute() else base / path).resolve())


def _read_only_reason(url: str) -> str | None:
    """Why ``url`` cannot be written (checked before opening it), or ``None``."""
    from sqlalchemy.engine import make_url
    query = make_url(url).query
    if query.get("mode") == "ro" or query.get("immutable") == "1":
        return "its URL opens it read-only (mode=ro or immutable=1)"
    file = _sqlite_file(url)
    if file is None:
        return None
    if file.exists():
        if not os.access(file, os.W_OK):
            return f"the file {file} is not writable"
        folder = file.parent
    else:
        folder = next(p for p in file.parents if p.exists())
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable (SQLite writes its journal beside the file)"
    return None


def _read_only_cause(err: BaseException | None) -> str | None:
    """The SQLite "readonly database" error in ``err``'s chain (Optuna wraps it as an
    ``StorageInternalError`` "... e.g. exceeding max length"), or ``None``."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if "readonly database" in text or "read-only file system" in text.lower():
            return text.splitlines()[0]
        err = err.__cause__ or err.__context__
    return None


class _TrialGate:
    """Lets one process at a time count a study's trials and open the next one: an exclusive
    ``flock`` on ``<file>.lock`` beside an SQLite file; nothing for a server database (or without
    ``fcntl``), whose processes may then race (see :func:`tune`)."""

    def __init__(self, file: Path | None):
        self._fh = open(f"{file}.lock", "a") if file is not None and fcntl is not None else None
        self._held = False

    def acquire(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_EX)
            self._held = True

    def release(self) -> None:
        if self._held and self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._held = False

    def close(self) -> None:
        self.release()
        if self._fh is not None:
            self._fh.close()


def _gate_for(url: str) -> _TrialGate:
    return _TrialGate(_sqlite_file(url))


def _results(study: Any, name: str, url: str, direction: str) -> dict[str, Any]:
    trials = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
               "config": t.user_attrs.get("config")} for t in study.get_trials(deepcopy=False)]
    complete = [t for t in trials if t["state"] == "complete"]
    best = (max if direction == "maximize" else min)(complete, key=lambda t: t["value"]) if complete else None
    return {"study_name": name, "storage": url, "direction": direction,
            "best_value": best["value"] if best else None, "best_config": best["config"] if best else None,
            "n_finished": sum(t["state"] in ("complete", "pruned") for t in trials), "trials": trials}


def _check_direction(study: Any, name: str, url: str, direction: str) -> None:
    if study.direction.name.lower() != direction:
        raise ValueError(f"the study {name!r} in {url} was created to {study.direction.name.lower()}, not {direction}; "
                         "use another study_name")


def _read_finished(url: str, name: str, n_trials: int, direction: str, reason: str) -> dict[str, Any]:
    """Read the study ``name`` from a read-only storage without writing; it must hold ``n_trials``
    finished trials (complete or pruned)."""
    import optuna

    file = _sqlite_file(url)
    where = str(file) if file is not None else url
    fix = (f"copy it somewhere writable (e.g. cp {file} /tmp/) and pass that path as storage="
           if file is not None else "pass a writable storage=")
    if file is not None and not file.is_file():
        raise ReadOnlyStorageError(f"the study storage {where} is read-only: {reason}, and it does not exist yet; "
                                   f"pass a storage= in a writable folder")
    ro_url = _sqlite_url(file, read_only=True) if file is not None else url
    try:
        storage = optuna.storages.RDBStorage(ro_url, skip_table_creation=True)
        names = optuna.study.get_all_study_names(storage)
        study = optuna.load_study(study_name=name, storage=storage) if name in names else None
    except Exception as err:
        cause = str(err.__cause__ or err).splitlines()[0]
        raise ReadOnlyStorageError(f"the study storage {where} is read-only: {reason}, and reading a study from it "
                                   f"failed ({cause}); {fix}") from err
    if study is None:
        raise ReadOnlyStorageError(f"the study storage {where} is read-only: {reason}; it holds no study {name!r} "
                                   f"(it has {names}), so none can be run there; {fix}")
    _check_direction(study, name, url, direction)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done < n_trials:
        raise ReadOnlyStorageError(f"the study storage {where} is read-only: {reason}; study {name!r} has {done} "
                                   f"finished trial(s), fewer than n_trials={n_trials}, and no more can be written; "
                                   f"{fix}" + (f", or pass n_trials={done} to only read it" if done else ""))
    return _results(study, name, url, direction)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def tune(objective: Callable[[RunConfig], float], base: RunConfig,
         space: Callable[[Any], Mapping[str, Any]], *, n_trials: int = 30,
         storage: str | os.PathLike = "_build/tuning.sqlite3", study_name: str | None = None, seed: int = 0,
         direction: str = "maximize", heartbeat_interval: int = 60,
         grace_period: int | None = None) -> dict[str, Any]:
    """Search ``base``'s hyperparameters with Optuna (paper 000 tuned Table 2 this way: 30 trials,
    maximizing PSNR); the study lives in Optuna's RDB storage, so it resumes and can be shared.

    ``space(trial)`` draws one configuration's changes with Optuna's ``trial.suggest_*`` (e.g.
    ``{"lr": trial.suggest_float("lr", 1e-2, 10, log=True), "encoding": {...}}``; they go to
    :meth:`RunConfig.replace`), and ``objective(config)`` scores it (a PSNR; return ``nan`` or raise
    ``optuna.TrialPruned`` for a run that diverged: the trial is recorded as pruned).

    **Storage**: the study ``study_name`` (default ``base.name``) in ``storage``, a file path (default
    ``_build/tuning.sqlite3`` under the repository root; relative paths are taken from there, not from
    the working folder) or a database URL, see :func:`storage_url`. It is created, or loaded if it
    exists. Beside an SQLite file, ``<file>.lock`` serializes the processes that share it.

    **Sharing ``n_trials``**: before each trial the trials that are complete, pruned or *running*
    are counted, and a new one starts only while they are fewer than ``n_trials``; so an interrupted
    search continues where it stopped, and several processes pointing at one storage share the
    ``n_trials`` (three processes with ``n_trials=40`` run 40 between them). For an SQLite file the
    count and the start of the next trial happen under a lock (``<file>.lock``), so the total is
    exact; for a server database (PostgreSQL, MySQL) processes can count at the same moment, so up
    to ``workers - 1`` trials beyond ``n_trials`` may run.

    **Killed processes**: a running trial records a heartbeat every ``heartbeat_interval`` seconds;
    one whose heartbeat is older than ``grace_period`` (default ``2 * heartbeat_interval``) belonged
    to a killed process (SIGKILL, SIGTERM, a lost machine). The next :func:`tune` call on the study
    marks it failed and runs its parameters again (at most twice).

    **Read-only storage** (a file or folder without write permission, a read-only mount, a
    ``mode=ro`` URL): a study that already has ``n_trials`` finished trials is read without writing;
    otherwise :class:`ReadOnlyStorageError` says so and how to fix it.

    The sampler is Optuna's TPE, seeded with ``seed``. Returns ``{"study_name", "storage",
    "direction", "best_value", "best_config" (a RunConfig dict), "n_finished", "trials": [{"number",
    "state", "value", "params", "config"}]}``.
    """
    import optuna

    _positive_int("n_trials", n_trials)
    _positive_int("heartbeat_interval", heartbeat_interval)
    if grace_period is not None:
        _positive_int("grace_period", grace_period)
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(storage)
    name = study_name or base.name
    reason = _read_only_reason(url)
    if reason is not None:
        return _read_finished(url, name, n_trials, direction, reason)
    file = _sqlite_file(url)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _run_study(optuna, objective, base, space, n_trials, url, name, seed, direction,
                          heartbeat_interval, grace_period)
    except Exception as err:
        cause = _read_only_cause(err)
        if cause is None:
            raise
        raise ReadOnlyStorageError(f"the study storage {file or url} is read-only: {cause}; copy it somewhere "
                                   "writable or pass a writable storage=") from err


def _open_storage(optuna: Any, url: str, heartbeat_interval: int, grace_period: int | None) -> Any:
    """Optuna's RDB storage with heartbeats; a trial whose process died is re-queued (twice at most)."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    retry_kw = "heartbeat_stale_trial_callback"                        # optuna >= 4.9
    if retry_cls is None or retry_kw not in inspect.signature(optuna.storages.RDBStorage).parameters:
        retry_cls, retry_kw = optuna.storages.RetryFailedTrialCallback, "failed_trial_callback"
    engine = {"connect_args": {"timeout": 60}} if _sqlite_file(url) is not None else {}   # writers queue
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)   # heartbeats, retries
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat_interval,
                                                  grace_period=grace_period, **{retry_kw: retry_cls(max_retry=2)})
        except (IntegrityError, OperationalError):
            # two processes creating a new database's tables at once (no lock on a server database):
            # the loser finds them made on its next try
            if attempt == 2:
                raise
            time.sleep(0.5)


def _run_study(optuna: Any, objective: Callable[[RunConfig], float], base: RunConfig,
               space: Callable[[Any], Mapping[str, Any]], n_trials: int, url: str, name: str, seed: int,
               direction: str, heartbeat_interval: int, grace_period: int | None) -> dict[str, Any]:
    """:func:`tune` on a writable storage."""
    S = optuna.trial.TrialState
    counted = (S.COMPLETE, S.PRUNED, S.RUNNING)
    gate = _gate_for(url)

    def run_trial(trial: Any) -> float:
        gate.release()                     # the trial is RUNNING now: other processes count it
        config = base.replace(**dict(space(trial)))
        trial.set_user_attr("config", config.to_dict())
        value = float(objective(config))
        if value != value:
            raise optuna.TrialPruned("the run diverged (objective nan)")
        return value

    try:
        gate.acquire()                     # Optuna's first creation of a database is not process-safe
        storage = _open_storage(optuna, url, heartbeat_interval, grace_period)
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction=direction,
                                    sampler=optuna.samplers.TPESampler(seed=seed))
        gate.release()
        _check_direction(study, name, url, direction)
        while True:
            gate.acquire()                 # count, and start the next trial, one process at a time
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)   # a killed process's trial: failed, re-queued
            if len(study.get_trials(deepcopy=False, states=counted)) >= n_trials:
                break
            study.optimize(run_trial, n_trials=1)
            gate.release()                 # (already released, unless the trial failed to start)
    finally:
        gate.close()
    return _results(study, name, url, direction)
