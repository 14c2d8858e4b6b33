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
    _record(tmp_path, "data.meshes", {"total": 22, "killed": 18, "timeout": 0, "survived": 2, "no_tests": 0,
                                      "segfault": 2})
    lines = M.report(tmp_path).splitlines()
    assert lines[0].startswith("| module | tests | mutants | killed (of which timeouts or crashes) | survived | not run "
                               "| score |")
    # two mutants that crash the test process count as killed: 20 of 22
    assert lines[2] == "| `inrlib/data/meshes.py` | `tests/test_x.py` | 22 | 20 (2) | 2 | 0 | 90.9% | 90.9% | - |"
    assert lines[3] == "| `inrlib/ntk.py` | `tests/test_x.py` | 100 | 85 (5) | 10 | 5 | 89.5% | - | 10.0 |"


def test_a_sampled_run_estimates_the_score_over_all_mutants():
    from scipy.stats import binomtest
    # 80 mutants tested before the draw (72 killed), 20 drawn from the 50 untested (18 killed).
    est, low, high = M.estimate(killed=90, survived=10, sample={"pool": 50, "drawn": 20, "killed": 18})
    assert est == pytest.approx((72 + 50 * 18 / 20) / 130, abs=1e-12)
    ci = binomtest(18, 20).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx((72 + 50 * ci.low) / 130, abs=1e-4)
    assert high == pytest.approx((72 + 50 * ci.high) / 130, abs=1e-4)
    # a draw of the whole pool leaves no uncertainty about the pool's count, only the interval's width
    assert M.estimate(90, 10, {"pool": 20, "drawn": 20, "killed": 18})[0] == pytest.approx(0.9)


def test_the_table_shows_a_sampled_record_with_its_interval(tmp_path):
    _record(tmp_path, "train", {"total": 130, "killed": 88, "timeout": 2, "survived": 10, "no_tests": 0},
            sample={"pool": 50, "drawn": 20, "killed": 18, "seed": 1})
    row = M.report(tmp_path).splitlines()[2]
    est, low, high = M.estimate(90, 10, {"pool": 50, "drawn": 20, "killed": 18})
    assert row == (f"| `inrlib/train.py` | `tests/test_x.py` | 130 | 90 (2) | 10 | 30 | 90.0% "
                   f"| {est:.1%} ({low:.1%}-{high:.1%}; 20 of 50 drawn) | - |")


@pytest.mark.parametrize("args, message", [
    (["inrlib/nope.py"], "inrlib/nope.py is not a module file under inrlib/"),
    (["tests/test_ntk.py"], "tests/test_ntk.py is not a module file under inrlib/"),
    (["inrlib/ntk.py", "--match", "spectrum"], "--match selects among the survivors: use it with --rerun-survivors"),
    (["inrlib/ntk.py", "--rerun-survivors"], "--rerun-survivors needs the --work folder of an earlier run"),
    (["inrlib/ntk.py", "--sample", "10"], "--sample N (N >= 1) draws from the untested mutants of an earlier run"),
    (["inrlib/ntk.py", "--sample", "0", "--work", "w"], "--sample N (N >= 1)"),
    (["inrlib/ntk.py", "--sample", "5", "--work", "w", "--rerun-survivors"], "without --rerun-survivors"),
    ([], "name at least one module"),
])
def test_refusals_name_the_fix(args, message, capsys):
    try:
        code = M.main(args)
    except SystemExit as stop:     # argparse's errors
        code = stop.code
    assert code == 2 and message in capsys.readouterr().err


def _doc(tmp_path: Path, text: str) -> Path:
    doc = tmp_path / "testing.md"
    doc.write_text(text, encoding="utf-8")
    return doc


def test_report_writes_the_table_between_the_markers_and_keeps_the_rest(tmp_path, capsys):
    records = tmp_path / "records"
    records.mkdir()
    _record(records, "ntk", {"total": 100, "killed": 80, "timeout": 5, "survived": 9, "no_tests": 1}, seconds=600)
    before, after = "# Testing\n\nprose before\n", "\n\nprose after, `code`\n"
    doc = _doc(tmp_path, f"{before}{M.BEGIN}\n| a stale table |\n{M.END}{after}")
    assert M.main(["--report", "--out", str(records), "--doc", str(doc)]) == 0
    table = M.report(records)
    assert doc.read_text(encoding="utf-8") == f"{before}{M.BEGIN}\n{table}\n{M.END}{after}"
    assert table in capsys.readouterr().out          # still printed for the terminal
    # a second report with the same records changes nothing (idempotent)
    first = doc.read_bytes()
    assert M.main(["--report", "--out", str(records), "--doc", str(doc)]) == 0
    assert doc.read_bytes() == first


@pytest.mark.parametrize("text", [
    "no markers at all\n",
    f"{M.BEGIN}\nonly the first\n",
    f"{M.END}\nthe end before the begin\n{M.BEGIN}\n",
    f"{M.BEGIN}\n{M.END}\n{M.BEGIN}\n{M.END}\n",          # two tables: which one?
])
def test_report_refuses_a_doc_without_one_pair_of_markers(tmp_path, capsys, text):
    doc = _doc(tmp_path, text)
    assert M.main(["--report", "--out", str(tmp_path), "--doc", str(doc)]) == 2
    err = capsys.readouterr().err
    assert str(doc) in err and M.BEGIN in err and M.END in err and "add the two lines" in err
    assert doc.read_text(encoding="utf-8") == text     # nothing written


def test_report_refuses_a_missing_doc(tmp_path, capsys):
    assert M.main(["--report", "--out", str(tmp_path), "--doc", str(tmp_path / "nope.md")]) == 2
    assert "nope.md needs one line" in capsys.readouterr().err


def test_the_tracked_table_is_the_report_of_the_tracked_records():
    """docs/testing.md holds what `scripts/mutants.py --report` writes from docs/mutants/ (run it after a
    mutants run, or when this fails)."""
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    inside = text.split(M.BEGIN)[1].split(M.END)[0]
    assert inside == f"\n{M.report(ROOT / 'docs' / 'mutants')}\n", \
        "docs/testing.md's mutation table is stale: run .venv/bin/python scripts/mutants.py --report"
