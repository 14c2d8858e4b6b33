"""scripts/bookpipe.py on the problems users met: `make chapter` on a fresh clone, a failed HTML step
after a good run, two runs of one chapter at once, the kernel's files after a failed or killed run,
a second checkout sharing the environment. Each test reproduces the problem as the user met it.

The fresh-clone build is the fixture book tests/fixtures/_toc_linked.yml (the front page, the
fixture chapter, and fixture_link, which links to both) in a new build folder: only fixture_link is
executed, so the other two have never been, as on a fresh clone (`make chapter CHAPTER=theory`
there: the front page and the chapters theory links to were never executed).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bookpipe  # noqa: E402
import bookrun  # noqa: E402

from tests.test_book import make, output  # noqa: E402

LINKED_TOC = ROOT / "tests" / "fixtures" / "_toc_linked.yml"
LINK = "tests/fixtures/fixture_link"
FIXTURE = "tests/fixtures/fixture_chapter"
PIPE = [sys.executable, str(ROOT / "scripts" / "bookpipe.py")]


def _text(page: Path) -> str:
    """A page's text without its tags."""
    return re.sub(r"<[^>]+>", "", page.read_text())


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """`make chapter` of fixture_link into a new build folder (the chapters it links to never executed)."""
    build = tmp_path_factory.mktemp("fresh") / "build"
    args = (f"CHAPTER={LINK}", f"BUILD={build}", f"TOC={LINKED_TOC}")
    proc = make("chapter", *args, "PARAMS=-p profile smoke", env={"INRLIB_PROGRESS": "log:0"})
    return {"build": build, "args": args, "proc": proc}


@pytest.mark.book
def test_make_chapter_on_a_fresh_build_folder_publishes_placeholders_that_links_resolve_to(fresh):
    build, proc = fresh["build"], fresh["proc"]
    assert proc.returncode == 0, f"make chapter on a fresh build folder failed\n{output(proc)}"
    html = build / "html"
    page = (html / f"{LINK}.html").read_text()
    assert 'href="fixture_chapter.html"' in page and 'href="../../book/intro.html"' in page
    for stem, title in (("book/intro", "Coordinate networks and their neural tangent kernels"),
                        (FIXTURE, "Pipeline fixture chapter")):
        text = (html / f"{stem}.html").read_text()
        assert "Not built yet." in text and title in text, stem
    assert f"Run make chapter CHAPTER={FIXTURE} (this chapter)" in _text(html / f"{FIXTURE}.html")
    assert "Run make chapter CHAPTER=intro (this chapter)" in _text(html / "book" / "intro.html")
    assert "published as placeholder pages: book/intro, tests/fixtures/fixture_chapter" in proc.stderr
    assert not (build / "html.failed").exists() and not (build / ".html-staging").exists()


@pytest.mark.book
def test_the_run_reports_each_cell_and_the_kernels_progress_lines_on_the_terminal(fresh):
    err = fresh["proc"].stderr
    assert fresh["proc"].returncode == 0, output(fresh["proc"])
    assert "[fixture_link] cell 1/3 (0.0 min elapsed)" in err and "[fixture_link] cell 3/3 (" in err
    assert "[fixture_link] fixture steps: 3/3 items (100%)" in err and "left" in err
    nb = json.loads((fresh["build"] / "executed" / "custom" / f"{LINK}.ipynb").read_text())
    outputs = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert "fixture_link.json" in outputs and "fixture steps" not in outputs, \
        "progress lines belong on the terminal, not on the page"


@pytest.mark.book
def test_a_failed_html_step_leaves_page_notebook_and_results_as_they_were(fresh):
    build = fresh["build"]
    assert fresh["proc"].returncode == 0, output(fresh["proc"])
    published = [build / "html" / f"{LINK}.html", build / "executed" / "custom" / f"{LINK}.ipynb",
                 build / "results" / "custom" / "smoke" / "fixture_link.json", build / "src" / f"{LINK}.ipynb"]
    before = [p.read_bytes() for p in published]
    proc = make("chapter", *fresh["args"], "PARAMS=-p profile smoke -p target no_such_page")
    assert proc.returncode != 0, "an unknown document is a Sphinx warning: the HTML step must fail"
    assert "unknown document: 'no_such_page'" in proc.stderr, output(proc)
    assert "rolled back" in proc.stderr and "is unchanged; the failed build is in" in proc.stderr, output(proc)
    assert [p.read_bytes() for p in published] == before, "the page, the notebook or the results changed"
    kept = build / "executed" / "custom" / "tests" / "fixtures"
    assert json.loads((kept / "fixture_link.failed.json").read_text())["params"]["target"] == "no_such_page"
    assert "no_such_page" in (kept / "fixture_link.failed.ipynb").read_text()
    assert "no_such_page" in (build / "html.failed" / f"{LINK}.html").read_text()


def test_a_second_run_of_a_chapter_says_who_holds_its_results_and_stops(tmp_path):
    """The last writer used to win: now the second run names the first and exits non-zero at once."""
    results = tmp_path / "results"
    with bookrun.hold_lock(results / "smoke" / ".fixture_chapter.lock", "the results of chapter fixture_chapter"):
        t0 = time.monotonic()
        proc = subprocess.run([*PIPE, "execute", f"{FIXTURE}.py", str(tmp_path / "out.ipynb"), "-p", "profile", "smoke",
                               "--results", str(results)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        seconds = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    assert f"in use by another run: pid {os.getpid()} ({sys.executable} " in proc.stderr and "started " in proc.stderr
    assert "executing" not in proc.stderr and not (tmp_path / "out.ipynb").exists()
    assert seconds < 60


def _run(tmp_path: Path, tmpdir: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([*PIPE, "execute", f"{FIXTURE}.py", str(tmp_path / "out" / "fixture_chapter.ipynb"),
                             "-p", "profile", "smoke", "--results", str(tmp_path / "results")],
                            cwd=ROOT, env={**os.environ, "TMPDIR": str(tmpdir), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.book
def test_the_kernels_connection_file_is_gone_after_a_killed_and_a_failed_run(tmp_path):
    """A SIGKILL (the OOM killer, `timeout -s KILL`) cannot clean up: the next run removes what it left.
    A failing cell's run removes its own connection file and temporaries."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    killed = _run(tmp_path, tmpdir, INRLIB_FIXTURE_SLEEP="60")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmpdir.rglob("*.json")):
            assert killed.poll() is None, killed.communicate()
            time.sleep(0.2)
        assert list(tmpdir.rglob("*.json")), "the kernel never started"
        time.sleep(1)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
    assert list(tmpdir.rglob("*.json")), "a SIGKILL leaves the connection file (the next run removes it)"
    failed = _run(tmp_path, tmpdir, INRLIB_FIXTURE_FAIL="1")
    _, err = failed.communicate(timeout=300)
    assert failed.returncode == 1 and "fixture failure requested" in err, err
    assert not list(tmpdir.iterdir()), f"left in the temporary folder: {list(tmpdir.rglob('*'))}"
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["fixture_chapter.failed.ipynb"]
    kernels = subprocess.run(["pgrep", "-f", f"ipykernel_launcher -f {tmpdir}"], capture_output=True, text=True)
    assert not kernels.stdout.strip(), "a kernel was left running"


def test_the_kernel_must_import_this_checkouts_inrlib(tmp_path):
    """A second checkout sharing the environment: its kernel would import the other inrlib; the run stops
    before papermill starts and says which one it found and how to fix it."""
    other = tmp_path / "other_checkout"
    (other / "inrlib").mkdir(parents=True)
    (other / "inrlib" / "__init__.py").write_text("raise ImportError('the other checkout')\n")
    proc = subprocess.run([*PIPE, "execute", f"{FIXTURE}.py", str(tmp_path / "out.ipynb"), "-p", "profile", "smoke",
                           "--results", str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(other)})
    assert proc.returncode == 1, proc.stderr
    assert f"the kernel would import inrlib from {other / 'inrlib'}, not from this checkout ({ROOT / 'inrlib'})" \
        in proc.stderr
    assert "unset PYTHONPATH" in proc.stderr and "executing" not in proc.stderr


def test_a_placeholder_page_has_the_chapters_title_and_how_to_build_it():
    nb = json.loads(bookpipe.placeholder_notebook("book/theory", ROOT / "book" / "theory.py"))
    (cell,) = nb["cells"]
    title = next(line[4:] for line in (ROOT / "book" / "theory.py").read_text().splitlines() if line.startswith("# # "))
    assert "".join(cell["source"]).startswith(f"# {title}\n\n**Not built yet.**")
    assert "make chapter CHAPTER=theory" in "".join(cell["source"]) and nb["metadata"]["inrlib"]["placeholder"]


def test_the_kernel_gets_log_progress_unless_the_caller_said_no_or_log(monkeypatch):
    for said, kernel in (("", "log"), ("1", "log"), ("yes", "log"), ("0", "0"), ("no", "no"), ("log:5", "log:5")):
        monkeypatch.setenv("INRLIB_PROGRESS", said)
        assert bookpipe._progress_setting() == kernel, said
