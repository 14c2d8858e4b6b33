"""scripts/run_headless.py: a chapter run as a plain script, without Jupyter (for GPU servers
that have PyTorch but no IPython, ipywidgets or papermill)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import run_headless as H  # noqa: E402

CHAPTER = '''# ---
# jupyter:
#   jupytext:
#     format_name: percent
# ---

# %% [markdown]
# # A toy chapter
# x = 1 / 0   (markdown: never run)

# %% tags=["parameters"]
profile = "quick"
device = "cpu"
seed = 0
scale = 2.0

# %% tags=["hide-input"]
from IPython.display import HTML, Markdown, display
from matplotlib.figure import Figure
from inrlib.book import ChapterResults
from inrlib.book.widgets import explorer, show_figure
order = [profile, scale]

# %%
display(Markdown(f"**scale** is {scale}"), HTML("<b>bold</b>"))
fig = Figure()
fig.add_subplot().plot([0, 1], [0, scale])
show_figure(fig)
explorer([("a", ["1", "2"])], lambda idx: b"")

# %%
ChapterResults("toy", profile=profile, device=device, seed=seed).save({"scale": scale})
Markdown("the last expression is shown")
'''


def _write(tmp_path: Path, text: str = CHAPTER) -> Path:
    src = tmp_path / "book" / "toy.py"
    src.parent.mkdir()
    src.write_text(text)
    return src


def test_percent_cells_reads_kinds_tags_lines_and_drops_the_header():
    cells = H.percent_cells(CHAPTER)
    assert [c["kind"] for c in cells] == ["markdown", "code", "code", "code", "code"]
    assert [c["tags"] for c in cells] == [[], ["parameters"], ["hide-input"], [], []]
    lines = CHAPTER.splitlines()
    for cell in cells:   # "line" is the cell's first source line (1-based), right under its marker
        assert lines[cell["line"] - 2].startswith("# %%")
        assert cell["source"].startswith(lines[cell["line"] - 1])
    assert cells[1]["source"] == 'profile = "quick"\ndevice = "cpu"\nseed = 0\nscale = 2.0\n\n'
    assert "jupytext" not in "".join(c["source"] for c in cells)
    with pytest.raises(H.PipelineError, match="line 1: cannot read the cell's tags"):
        H.percent_cells('# %% tags=["a" "b\nx = 1\n')


def _check_run(out: Path, scale: float) -> None:
    report = (out / "report.md").read_text()
    assert f'`{{"scale": {scale!r}, "profile": "smoke"}}`' in report
    assert f"**scale** is {scale}" in report and "<b>bold</b>" in report
    assert "![figure 1](fig-001.png)" in report and (out / "fig-001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "*(explorer `explorer`: not built in a headless run)*" in report
    assert "the last expression is shown" in report
    assert "finished after" in report and "(4 of 4 code cells)" in report
    cells = json.loads((out / "cells.json").read_text())
    assert [c["status"] for c in cells] == ["ok"] * 4 and [c["line"] for c in cells] == [12, 18, 25, 32]
    saved = json.loads((out / "results" / "toy.json").read_text())
    assert saved["numbers"]["scale"] == scale and saved["params"]["profile"] == "smoke"


def test_a_chapter_runs_with_its_parameters_and_its_displays_go_to_the_report(tmp_path):
    src = _write(tmp_path)
    assert H.main([str(src), str(tmp_path / "out"), "-p", "scale", "3.5", "-p", "profile", "smoke"]) == 0
    _check_run(tmp_path / "out", 3.5)


def test_without_ipython_or_ipywidgets_a_stand_in_display_is_used(tmp_path):
    """The GPU image has neither: a fresh interpreter where both imports fail runs the chapter."""
    src = _write(tmp_path)
    code = ("import runpy, sys; sys.modules['IPython'] = None; sys.modules['ipywidgets'] = None; "
            f"sys.argv = ['run_headless.py', {str(src)!r}, {str(tmp_path / 'out')!r}, '-p', 'scale', '0.5', "
            "'-p', 'profile', 'smoke']; runpy.run_path(" + repr(str(ROOT / "scripts" / "run_headless.py"))
            + ", run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "INRLIB_PROGRESS": "0"})
    assert done.returncode == 0, done.stderr
    assert "toy: cell 4/4 (line 32) ok" in done.stderr
    assert "toy: cell 1/4 (line 12) running (0.0 min elapsed)" in done.stderr   # a long cell is seen to start
    _check_run(tmp_path / "out", 0.5)


def test_a_failing_cell_stops_the_run_and_leaves_what_it_reached(tmp_path):
    src = _write(tmp_path, CHAPTER.replace('show_figure(fig)', 'show_figure(fig)\nraise KeyError("boom")'))
    assert H.main([str(src), str(tmp_path / "out")]) == 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**cell at line 25 raised:**" in report and "KeyError: 'boom'" in report
    assert f'File "{src}", line 29' in report and 'raise KeyError("boom")' in report   # the chapter's own line
    assert "![figure 1](fig-001.png)" in report and "stopped by an error" in report and "(3 of 4 code cells)" in report
    cells = json.loads((tmp_path / "out" / "cells.json").read_text())
    assert [c["status"] for c in cells] == ["ok", "ok", "error"]
    assert not (tmp_path / "out" / "results").exists()


@pytest.mark.parametrize("args, message", [
    (["-p", "width", "3"], "has no parameter 'width'; its parameters cell defines: profile, device, seed, scale"),
    (["-p", "profile", "huge"], "profile 'huge' is not one of smoke, quick, paper"),
    (["--memory-fraction", "1.5"], "--memory-fraction is a share of the GPU, 0 < F <= 1; got 1.5"),
])
def test_bad_arguments_are_refused_with_the_fix(tmp_path, capsys, args, message):
    src = _write(tmp_path)
    assert H.main([str(src), str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_source_without_one_parameters_cell_or_missing_is_refused(tmp_path, capsys):
    src = _write(tmp_path, CHAPTER.replace('tags=["parameters"]', ""))
    assert H.main([str(src), str(tmp_path / "out")]) == 2
    assert "has 0 cells tagged 'parameters'; it needs exactly one" in capsys.readouterr().err
    assert H.main([str(tmp_path / "nope.py"), str(tmp_path / "out")]) == 2
    assert "nope.py not found" in capsys.readouterr().err


def test_an_interrupted_run_says_where_it_stopped(tmp_path):
    """``timeout -s INT`` (the GPU script's time limit) ends a run with the cell it was in."""
    src = _write(tmp_path, CHAPTER.replace('show_figure(fig)', 'show_figure(fig)\nraise KeyboardInterrupt'))
    assert H.main([str(src), str(tmp_path / "out")]) == 130
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**interrupted in the cell at line 25:**" in report and "interrupted after" in report
    cells = json.loads((tmp_path / "out" / "cells.json").read_text())
    assert [c["status"] for c in cells] == ["ok", "ok", "interrupted"] and cells[-1]["seconds"] is not None


def test_a_run_leaves_no_trace_in_the_process(tmp_path, monkeypatch):
    """The working directory, the environment, the explorers and IPython's display are put back."""
    import os

    import inrlib.book.widgets as widgets
    monkeypatch.delenv("INRLIB_RESULTS_DIR", raising=False)
    before = (os.getcwd(), widgets.explorer, widgets.choice_stack, dict(os.environ))
    src = _write(tmp_path, CHAPTER.replace('show_figure(fig)', 'show_figure(fig)\nraise KeyError("boom")'))
    assert H.main([str(src), str(tmp_path / "out")]) == 1
    assert (os.getcwd(), widgets.explorer, widgets.choice_stack, dict(os.environ)) == before
    try:
        import IPython.display as shown
    except ImportError:
        assert "IPython" not in sys.modules or sys.modules["IPython"] is None
    else:
        assert shown.display.__module__.startswith("IPython")
