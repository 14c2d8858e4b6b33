"""scripts/mutants.py: the recorded scores as a table, and the refusals (mutmut itself is not run here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import mutants as M  # noqa: E402


def _record(folder: Path, name: str, stats: dict, **extra) -> None:
    rec = {"modules": [f"inrlib/{name.replace('.', '/')}.py"], "tests": ["tests/test_x.py"], "stats": stats,
           "score": (stats["killed"] + stats["timeout"]) / (stats["killed"] + stats["timeout"] + stats["survived"]
                                                            + stats["no_tests"]), **extra}
    (folder / f"{name}.json").write_text(json.dumps(rec))


def test_report_counts_timeouts_as_kills_and_stopped_runs_as_not_run(tmp_path):
    _record(tmp_path, "ntk", {"total": 100, "killed": 80, "timeout": 5, "survived": 9, "no_tests": 1}, seconds=600)
    _record(tmp_path, "data.meshes", {"total": 20, "killed": 18, "timeout": 0, "survived": 2, "no_tests": 0})
    lines = M.report(tmp_path).splitlines()
    assert lines[0].startswith("| module | tests | mutants | killed (of which timeouts) | survived | not run |")
    assert lines[2] == "| `inrlib/data/meshes.py` | `tests/test_x.py` | 20 | 18 (0) | 2 | 0 | 90.0% | - |"
    assert lines[3] == "| `inrlib/ntk.py` | `tests/test_x.py` | 100 | 85 (5) | 10 | 5 | 89.5% | 10.0 |"


@pytest.mark.parametrize("args, message", [
    (["inrlib/nope.py"], "inrlib/nope.py is not a module file under inrlib/"),
    (["tests/test_ntk.py"], "tests/test_ntk.py is not a module file under inrlib/"),
    (["inrlib/ntk.py", "--match", "spectrum"], "--match selects among the survivors: use it with --rerun-survivors"),
    (["inrlib/ntk.py", "--rerun-survivors"], "--rerun-survivors needs the --work folder of an earlier run"),
    ([], "name at least one module"),
])
def test_refusals_name_the_fix(args, message, capsys):
    try:
        code = M.main(args)
    except SystemExit as stop:     # argparse's errors
        code = stop.code
    assert code == 2 and message in capsys.readouterr().err
