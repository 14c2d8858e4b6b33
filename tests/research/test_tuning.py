"""inrlib.research.tuning: where a study is stored, read-only storages, processes sharing n_trials,
and trials of killed processes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

from inrlib.research import tuning as T
from inrlib.research.experiments import RunConfig

ROOT = Path(__file__).resolve().parents[2]          # the repository: _toc.yml and inrlib/ live here
MODEL = {"encoding": {"type": "identity"}, "hidden": [4]}
SPACE = lambda t: {"lr": t.suggest_float("lr", 0.01, 100, log=True)}  # noqa: E731


def _base(name: str = "quad") -> RunConfig:
    return RunConfig(name=name, model=MODEL, lr=1.0)


def _score(cfg: RunConfig) -> float:
    return -(float(cfg.lr) - 1.0) ** 2


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _never(cfg):
    raise AssertionError("a finished study must be read, not run")


# --------------------------------------------------------------------------- storage forms

def test_a_relative_path_is_taken_from_the_repository_root_not_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert T.storage_url("runs/qa.db") == f"sqlite:///{ROOT / 'runs' / 'qa.db'}"
    assert T.storage_url("qa.db", root=tmp_path / "elsewhere") == f"sqlite:///{tmp_path / 'elsewhere' / 'qa.db'}"
    assert T.storage_url("sqlite:///rel.db") == f"sqlite:///{ROOT / 'rel.db'}"     # an SQLite URL's relative file too
    assert T.storage_url(tmp_path / "abs.db") == f"sqlite:///{tmp_path / 'abs.db'}"
    odd = tmp_path / "a b?#%.db"                       # quoted, so SQLAlchemy reads back the very file name
    assert make_url(T.storage_url(odd)).database == str(odd)
    assert not (tmp_path / "runs").exists() and not (ROOT / "runs").exists()      # a URL, no side effect


def test_tune_from_a_chapters_folder_writes_at_the_repository_root(monkeypatch):
    rel = Path("_build") / f"pytest-tuning-{uuid.uuid4().hex[:8]}" / "t.sqlite3"
    monkeypatch.chdir(ROOT / "book")                   # where a chapter runs
    try:
        res = T.tune(_score, _base(), SPACE, n_trials=1, storage=str(rel))
        assert (ROOT / rel).is_file() and not (ROOT / "book" / rel.parts[0]).exists()
        assert res["storage"] == f"sqlite:///{ROOT / rel}" and res["n_finished"] == 1
    finally:
        shutil.rmtree(ROOT / rel.parent, ignore_errors=True)


@pytest.mark.parametrize("text", ["sqlite//qa.db", "sqlite:qa.db", "postgresql+psycopg//host/db"])
def test_a_mistyped_url_is_refused_not_made_a_folder(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        T.storage_url(text)
    msg = str(err.value)
    assert f"{text!r}" in msg and "'://' mistyped" in msg and "file path" in msg and "database URL" in msg
    with pytest.raises(ValueError, match="mistyped"):
        T.tune(_never, _base(), SPACE, n_trials=1, storage=text)
    assert list(tmp_path.iterdir()) == [] and not (ROOT / text.split("/")[0].split(":")[0]).exists()


def test_urls_are_kept_and_unknown_schemes_refused():
    for url in ("postgresql://user@host:5432/db", "mysql+pymysql://u:p@h/db", "sqlite:////tmp/x.db",
                "sqlite:///file:/tmp/x.db?mode=ro&uri=true"):
        assert T.storage_url(url) == url
    with pytest.raises(ValueError, match=r"'redis://h/0' is a URL with scheme 'redis'.*file path.*database URL"):
        T.storage_url("redis://h/0")
    with pytest.raises(ValueError, match="scheme 'postgres',"):      # SQLAlchemy 1.4+ spells it postgresql
        T.storage_url("postgres://h/db")


def test_bad_counts_are_refused(tmp_path):
    for kw in ({"n_trials": 0}, {"n_trials": True}, {"heartbeat_interval": 0}, {"grace_period": 1.5}):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} must be a positive integer"):
            T.tune(_never, _base(), SPACE, storage=tmp_path / "s.db", **kw)


# --------------------------------------------------------------------------- read-only storage

def _finished_study(path: Path, n: int = 3) -> dict:
    return T.tune(_score, _base(), SPACE, n_trials=n, storage=path)


def test_a_finished_study_is_read_from_a_read_only_url_without_writing(tmp_path):
    path = tmp_path / "study.db"
    done = _finished_study(path)
    before = _digest(path)
    ro = f"sqlite:///file:{path}?mode=ro&uri=true"
    res = T.tune(_never, _base(), SPACE, n_trials=3, storage=ro)
    assert [(t["number"], t["value"]) for t in res["trials"]] == [(t["number"], t["value"]) for t in done["trials"]]
    assert res["best_value"] == done["best_value"] and res["n_finished"] == 3
    with pytest.raises(T.ReadOnlyStorageError) as err:
        T.tune(_never, _base(), SPACE, n_trials=5, storage=ro)
    msg = str(err.value)
    assert f"{path} is read-only" in msg and "3 finished trial(s), fewer than n_trials=5" in msg
    assert "copy it somewhere writable" in msg and "n_trials=3" in msg
    with pytest.raises(T.ReadOnlyStorageError, match=r"holds no study 'other' \(it has \['quad'\]\)"):
        T.tune(_never, _base("other"), SPACE, n_trials=1, storage=ro)
    assert _digest(path) == before


def test_a_write_refused_by_sqlite_names_the_cause_not_max_length(tmp_path, monkeypatch):
    """Where the up-front check cannot see it (a read-only server, a file system that lies), the write
    fails inside Optuna as "... e.g. exceeding max length"; tune reports SQLite's own reason instead."""
    path = tmp_path / "study.db"
    _finished_study(path, 1)
    monkeypatch.setattr(T, "_read_only_reason", lambda url: None)
    with pytest.raises(T.ReadOnlyStorageError) as err:
        T.tune(_score, _base(), SPACE, n_trials=2, storage=f"sqlite:///file:{path}?mode=ro&uri=true")
    assert "is read-only: " in str(err.value) and "readonly database" in str(err.value)
    assert "max length" not in str(err.value)


_READER = """
import json, sys
from inrlib.research import tuning as T
from inrlib.research.experiments import RunConfig
base = RunConfig(name="quad", model={"encoding": {"type": "identity"}, "hidden": [4]}, lr=1.0)
space = lambda t: {"lr": t.suggest_float("lr", 0.01, 100, log=True)}
out = {"read": T.tune(lambda c: 1 / 0, base, space, n_trials=3, storage=sys.argv[1])["n_finished"]}
try:
    T.tune(lambda c: 1 / 0, base, space, n_trials=5, storage=sys.argv[1])
except T.ReadOnlyStorageError as err:
    out["error"] = str(err)
print(json.dumps(out))
"""


def _read_only_run(folder: Path, script: Path, db: Path) -> subprocess.CompletedProcess:
    """Run ``script db`` with ``folder`` read-only: permission bits for a normal user; as root (who
    ignores them) a read-only bind mount in a private mount namespace (``unshare -m``)."""
    if os.geteuid() != 0:
        db.chmod(0o444)
        folder.chmod(0o555)
        try:
            return subprocess.run([sys.executable, str(script), str(db)], capture_output=True, text=True, timeout=120)
        finally:
            folder.chmod(0o755)
            db.chmod(0o644)
    if shutil.which("unshare") is None:
        pytest.skip("running as root, whom file modes do not stop, and no `unshare` for a read-only mount")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro '{folder}' '{folder}'"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root (file modes do not stop root) and a read-only bind mount is not "
                    f"permitted here: {probe.stderr.strip()}")
    cmd = f"mount --bind -o ro '{folder}' '{folder}' && exec '{sys.executable}' '{script}' '{db}'"
    return subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=120)


def test_a_read_only_file_is_read_when_finished_and_refused_with_the_reason_otherwise(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "study.db"
    _finished_study(db)
    before, files = _digest(db), sorted(folder.iterdir())     # the study and its lock file
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    proc = _read_only_run(folder, script, db)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["read"] == 3
    assert f"{db.parent if os.geteuid() == 0 else db}" in out["error"] and "is not writable" in out["error"]
    assert "is read-only" in out["error"] and "copy it somewhere writable" in out["error"]
    assert _digest(db) == before and sorted(folder.iterdir()) == files


# --------------------------------------------------------------------------- processes sharing a study

_WORKER = """
import json, os, sys, time
from pathlib import Path
from inrlib.research import tuning as T
from inrlib.research.experiments import RunConfig
db, go, n, race = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "race"
if race:                       # as for a server database: no lock between counting and starting a trial
    T._gate_for = lambda url: T._TrialGate(None)
base = RunConfig(name="shared", model={"encoding": {"type": "identity"}, "hidden": [4]}, lr=1.0)
runs = []
def objective(cfg):
    runs.append(cfg.lr)
    time.sleep(0.15)
    return -(cfg.lr - 1.0) ** 2
while not go.exists():         # all workers start at once, after their imports
    time.sleep(0.01)
T.tune(objective, base, lambda t: {"lr": t.suggest_float("lr", 0.01, 100, log=True)}, n_trials=n, storage=db)
print(json.dumps({"runs": len(runs)}))
"""


def _share(tmp_path: Path, workers: int, n_trials: int, mode: str) -> tuple[list[int], list]:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    db, go = tmp_path / "shared.db", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(db), str(go), str(n_trials), mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    time.sleep(0.5)
    go.touch()
    runs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        runs.append(json.loads(out.strip().splitlines()[-1])["runs"])
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{db}")
    return runs, study.get_trials(deepcopy=False)


def test_three_processes_share_n_trials_exactly_on_an_sqlite_file(tmp_path):
    runs, trials = _share(tmp_path, 3, 12, "lock")
    assert sum(runs) == 12 and len(trials) == 12
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sum(r > 0 for r in runs) >= 2, f"the work was not shared: trials per process {runs}"


def test_without_the_lock_processes_overshoot_by_at_most_workers_minus_one(tmp_path):
    """A server database has no lock: each process counts complete + pruned + running trials before
    starting one, so only processes counting at the same moment can overshoot: one extra each,
    except the one that starts the n-th trial (a bound, not an expected value)."""
    runs, trials = _share(tmp_path, 3, 12, "race")
    assert 12 <= sum(runs) == len(trials) <= 12 + (3 - 1)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


# --------------------------------------------------------------------------- killed processes

_VICTIM = """
import sys, time
from pathlib import Path
from inrlib.research import tuning as T
from inrlib.research.experiments import RunConfig
base = RunConfig(name="victim", model={"encoding": {"type": "identity"}, "hidden": [4]}, lr=1.0)
def objective(cfg):
    Path(sys.argv[2]).write_text(repr(cfg.lr))
    time.sleep(600)
T.tune(objective, base, lambda t: {"lr": t.suggest_float("lr", 0.01, 100, log=True)}, n_trials=3,
       storage=sys.argv[1], heartbeat_interval=1, grace_period=2)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_trial_is_failed_after_the_grace_period_and_run_again(tmp_path, sig):
    db, started, script = tmp_path / "k.db", tmp_path / "started", tmp_path / "victim.py"
    script.write_text(_VICTIM)
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(started)], stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not started.exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() - t0 < 120, "the victim's trial did not start"
            time.sleep(0.05)
        time.sleep(1.5)                                # its heartbeat thread has written at least once
    finally:
        proc.send_signal(sig)
        proc.wait(30)
    killed_lr = float(started.read_text())
    S = optuna.trial.TrialState
    kw = dict(storage=db, n_trials=3, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="victim", storage=f"sqlite:///{db}")
    assert [t.state for t in study.get_trials()] == [S.RUNNING]          # the kill left it running
    time.sleep(3.5)                                    # > grace_period (SQLite's clock has 1 s steps)
    res = T.tune(_score, _base("victim"), SPACE, **kw)
    trials = study.get_trials()
    assert [t.state for t in trials] == [S.FAIL, S.COMPLETE, S.COMPLETE, S.COMPLETE]
    assert trials[1].params["lr"] == killed_lr and trials[1].system_attrs["failed_trial"] == 0   # run again
    assert res["n_finished"] == 3 and [t["state"] for t in res["trials"]][0] == "fail"


def test_a_running_trial_of_another_process_counts_towards_n_trials(tmp_path):
    """Within its grace period a running trial is some process's work in progress: it is counted."""
    db = tmp_path / "r.db"
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    study = optuna.create_study(study_name="quad", storage=storage, direction="maximize")
    study.ask()                                        # RUNNING, no heartbeat: never stale
    res = T.tune(_score, _base(), SPACE, n_trials=3, storage=db)
    assert [t["state"] for t in res["trials"]] == ["running", "complete", "complete"] and res["n_finished"] == 2
