"""scripts/bookrun.py: the lock, the kernel's private folder, the terminal reporter and the checkout
check, each against what a second process, a clock or a fake interpreter actually does (fast)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bookrun as R  # noqa: E402

HOLD = """
import sys, time
sys.path.insert(0, {scripts!r})
import bookrun
with bookrun.hold_lock({path!r}, "the test's results"):
    print("held", flush=True)
    time.sleep({seconds})
"""


def _holder(tmp_path: Path, lock: Path, seconds: float) -> subprocess.Popen:
    """Another process that holds ``lock`` for ``seconds``; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(scripts=str(ROOT / "scripts"), path=str(lock),
                                                               seconds=seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_held_by_another_process_names_it_and_refuses_at_once(tmp_path):
    lock = tmp_path / "results" / ".scaling.lock"
    proc = _holder(tmp_path, lock, 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(R.PipelineError) as err:
            with R.hold_lock(lock, "the results of chapter scaling"):
                pass
        assert time.monotonic() - t0 < 2, "the second run must not wait"
        text = str(err.value)
        assert f"the results of chapter scaling is in use by another run: pid {proc.pid} (" in text
        assert f"({sys.executable} -c)" in text and "started 20" in text and "min ago" in text  # command, start
        assert f"kill {proc.pid}" in text and "BUILD=" in text                       # what to do
    finally:
        proc.kill()
        proc.wait()


def test_a_waiting_lock_says_whom_it_waits_for_then_takes_it(tmp_path, capsys):
    lock = tmp_path / ".html.lock"
    proc = _holder(tmp_path, lock, 1.5)
    try:
        t0 = time.monotonic()
        with R.hold_lock(lock, "the HTML build", wait=True):
            waited = time.monotonic() - t0
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert waited > 0.5
        assert f"waiting for the HTML build, held by pid {proc.pid}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_is_reentrant_in_one_process_and_its_file_goes_when_released(tmp_path):
    lock = tmp_path / ".x.lock"
    with R.hold_lock(lock, "x"):
        with R.hold_lock(lock, "x"):          # the chapter step, then its execute
            assert lock.is_file()
        assert lock.is_file(), "the inner block must not release the outer one's lock"
    assert not lock.exists()
    with pytest.raises(KeyError):
        with R.hold_lock(lock, "x"):
            raise KeyError("boom")
    assert not lock.exists() and not R._HELD


def test_the_kernel_folder_goes_on_every_exit_and_dead_runs_folders_with_it(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{R.KERNEL_DIR_PREFIX}{dead.pid}-abc"
    stale.mkdir()
    (stale / "kernel.json").write_text("{}")
    live = tmp_path / f"{R.KERNEL_DIR_PREFIX}{os.getppid()}-def"   # a run that is still going
    live.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with R.kernel_folder() as folder:
            assert folder.parent == tmp_path and folder.name.startswith(f"{R.KERNEL_DIR_PREFIX}{os.getpid()}-")
            (folder / "kernel.json").write_text("{}")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def _cells(*kinds):
    return [{"cell_type": k} for k in kinds]


def test_the_reporter_counts_code_cells_copies_progress_lines_and_warns_past_the_limit(tmp_path):
    out = io.StringIO()
    log = tmp_path / "progress.log"
    cells = _cells("markdown", "code", "code", "markdown", "code")
    with R.Reporter("scaling", log, cell_timeout=600, heartbeat=3600, stream=out) as rep:
        rep.cell_start(cells, 0)                          # markdown: not counted, no line
        rep.cell_start(cells, 2)
        with open(log, "a") as fh:
            fh.write("fit sgd lr=10: 10/1000 steps (1%), 00:30 elapsed, ~0:09:00 left\nhalf a li")
        time.sleep(2.5)
        with open(log, "a") as fh:
            fh.write("ne\nfit sgd lr=10: 20/1000 steps (2%), 01:00 elapsed, ~1:40:00 left\n")
            fh.write("fit sgd lr=10: 30/1000 steps (3%), 01:30 elapsed, ~1:50:00 left\n")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[scaling] cell 2/3 (0.0 min elapsed)")
    assert "[scaling] fit sgd lr=10: 10/1000 steps (1%), 00:30 elapsed, ~0:09:00 left" in lines   # 9 min < 10: quiet
    assert "[scaling] half a line" in lines                    # a line written in two pieces stays one
    warnings = [line for line in lines if "WARNING" in line]
    assert len(warnings) == 1, "one warning per cell"
    assert "cell 2 needs ~100.0 min more, past the cell time limit of 10.0 min (600 s)" in warnings[0]
    assert '--cell-timeout' in warnings[0]
    assert lines.index(warnings[0]) == lines.index("[scaling] fit sgd lr=10: 20/1000 steps (2%), 01:00 elapsed, "
                                                   "~1:40:00 left") + 1


def test_the_reporter_says_a_long_cell_is_still_running(tmp_path):
    out = io.StringIO()
    with R.Reporter("imagenet", tmp_path / "none.log", heartbeat=0.5, stream=out) as rep:
        rep.cell_start(_cells("code"), 0)
        time.sleep(2.2)
    beats = [line for line in out.getvalue().splitlines() if "still running" in line]
    assert 2 <= len(beats) <= 4 and beats[0].startswith("[imagenet] cell 1/1 still running: 0.0 min in it (")


def test_the_checkout_check_names_the_inrlib_it_found_and_the_fix(tmp_path):
    assert R.check_checkout(sys.executable, ROOT / "book", os.environ) == ROOT / "inrlib"
    other = tmp_path / "other_checkout"
    (other / "inrlib").mkdir(parents=True)
    (other / "inrlib" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(other)}
    with pytest.raises(R.PipelineError) as err:
        R.check_checkout(sys.executable, ROOT / "book", env)
    assert f"would import inrlib from {other / 'inrlib'}, not from this checkout ({ROOT / 'inrlib'})" in str(err.value)
    assert "unset PYTHONPATH" in str(err.value)
    # an environment whose editable install is another checkout's: a python that finds another inrlib
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho {other / 'inrlib' / '__init__.py'}\n")
    fake.chmod(0o755)
    with pytest.raises(R.PipelineError) as err:
        R.check_checkout(str(fake), ROOT / "book", {k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert "another checkout's (an editable install)" in str(err.value)
    assert f"{fake} -m pip install -e {ROOT}" in str(err.value) and "make venv" in str(err.value)
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: no inrlib' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(R.PipelineError, match="cannot import inrlib: ModuleNotFoundError: no inrlib"):
        R.check_checkout(str(broken), ROOT / "book", os.environ)
