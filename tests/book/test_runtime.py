"""The ``log`` progress mode (INRLIB_PROGRESS=log, the book pipeline's): plain lines with the time left
from inrlib.book.progress (sweeps) and from training, written to INRLIB_PROGRESS_FILE, none for a task
shorter than the interval; counted against a naive count of the steps."""
from __future__ import annotations

import re
import time

import pytest
import torch

from inrlib.book import progress
from inrlib.resources import progress_enabled, progress_mode
from inrlib.train import fit

LINE = re.compile(r"^(?P<desc>.+): (?P<n>\d+)/(?P<total>\d+) (?P<unit>\S+) \((?P<pct>\d+)%\), "
                  r"(?P<elapsed>[\d:]+) elapsed, ~(?P<left>[\d:]+|\?) left$")


@pytest.fixture
def log_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.log"
    monkeypatch.setenv("INRLIB_PROGRESS_FILE", str(path))
    return path


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_log_mode_and_its_interval_are_read_from_inrlib_progress(monkeypatch):
    for raw, mode in (("log", "log"), ("LOG:5", "log"), ("log:0", "log"), ("1", "bar"), ("0", None)):
        monkeypatch.setenv("INRLIB_PROGRESS", raw)
        assert progress_mode() == mode and progress_enabled() is (mode is not None), raw
    for bad in ("log:soon", "log:-1", "logs"):
        monkeypatch.setenv("INRLIB_PROGRESS", bad)
        with pytest.raises(ValueError, match=f"INRLIB_PROGRESS='{bad}'"):
            progress_mode()


def test_a_sweep_in_log_mode_writes_a_line_per_interval_with_the_time_left(log_file, monkeypatch):
    monkeypatch.setenv("INRLIB_PROGRESS", "log:0")
    assert list(progress(["a", "b", "c", "d"], desc="encodings")) == ["a", "b", "c", "d"]
    lines = [LINE.match(line) for line in _lines(log_file)]
    assert all(lines), _lines(log_file)
    assert [(m["desc"], m["n"], m["total"], m["unit"]) for m in lines][-1] == ("encodings", "4", "4", "items")
    assert [int(m["n"]) for m in lines] == sorted({int(m["n"]) for m in lines}), "no line twice"
    assert lines[-1]["pct"] == "100"


def test_a_task_shorter_than_the_interval_writes_nothing(log_file, monkeypatch):
    monkeypatch.setenv("INRLIB_PROGRESS", "log:5")
    assert list(progress(range(3), desc="fast")) == [0, 1, 2]
    assert _lines(log_file) == []
    monkeypatch.setenv("INRLIB_PROGRESS", "log:0.3")
    for _ in progress(range(4), desc="slow"):
        time.sleep(0.2)
    assert 1 <= len(_lines(log_file)) <= 4 and _lines(log_file)[-1].startswith("slow: 4/4 items (100%)")


def test_training_in_log_mode_counts_optimizer_steps_not_epochs(log_file, monkeypatch):
    """100 samples, batches of 32, 3 epochs: 4 steps an epoch (the last batch is short), 12 in all."""
    monkeypatch.setenv("INRLIB_PROGRESS", "log:0")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    fit(model, torch.rand(100, 2), torch.rand(100, 1), epochs=3, lr=1e-2, batch_size=32, progress=None, desc="probe")
    lines = [LINE.match(line) for line in _lines(log_file)]
    assert lines and all(lines), _lines(log_file)
    assert {(m["desc"], m["total"], m["unit"]) for m in lines} == {("probe", "12", "steps")}
    assert lines[-1]["n"] == "12" and lines[-1]["pct"] == "100"
    log_file.unlink()
    fit(model, torch.rand(100, 2), torch.rand(100, 1), epochs=1, lr=1e-2, batch_size=32, progress=False)
    assert not log_file.exists(), "progress=False is off whatever INRLIB_PROGRESS says"
