"""The book pipeline, end to end, through the Makefile that `make book` uses.

- Fast tests: the chapters' runtime helpers (inrlib.book) and the pipeline's toc/parameter logic.
- ``book``: the fixture chapter (tests/fixtures/fixture_chapter.py) executed in the smoke profile
  into a temporary build folder by ``make book``; re-execution decided by Make; a failing cell
  failing the build without replacing the good notebook; ``make chapter`` with parameters.
- ``browser``: the built pages in headless chromium (figures, MathJax, widgets, screenshots), and
  a deliberately broken copy that the check must reject.
- Every chapter and page listed in ``_toc.yml`` is executed (smoke) and checked the same way:
  adding a chapter to the toc adds it here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bookpipe  # noqa: E402
import check_pages  # noqa: E402

from inrlib import book  # noqa: E402

FIXTURE = "tests/fixtures/fixture_chapter"
MAKE_TIMEOUT = 1800


def make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the project's make in the repository root (clean of an outer make's flags)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    environ.update(env or {})
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                          env=environ, timeout=MAKE_TIMEOUT)


def output(proc: subprocess.CompletedProcess) -> str:
    return f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"


# ============================================================ runtime helpers (fast)

def test_profile_value_picks_and_rejects_unknown():
    assert book.profile_value("smoke", smoke=1, quick=2, paper=3) == 1
    assert book.profile_value("paper", smoke=1, quick=2, paper=3) == 3
    with pytest.raises(ValueError, match="unknown profile 'fast'.*'smoke', 'quick', 'paper'"):
        book.profile_value("fast", smoke=1, quick=2, paper=3)


def test_resolve_device():
    import torch

    assert book.resolve_device("cpu") == torch.device("cpu")
    assert book.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="not a torch device name"):
        book.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
            book.resolve_device("cuda")


def test_progress_only_when_watched(monkeypatch):
    items = [1, 2, 3]
    monkeypatch.setenv("INRLIB_PROGRESS", "0")
    assert book.progress(items) is items
    monkeypatch.setenv("INRLIB_PROGRESS", "1")
    with open(os.devnull, "w") as sink:
        bar = book.progress(items, desc="x", file=sink)
        assert bar is not items and list(bar) == items
    monkeypatch.delenv("INRLIB_PROGRESS")
    monkeypatch.setenv("CI", "true")
    assert book.progress(items) is items


def test_chapter_results_written_atomically_with_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("INRLIB_RESULTS_DIR", str(tmp_path))
    run = book.ChapterResults("theory", profile="smoke", device="auto", seed=3)
    path = run.save({"min_eig": 1.5e-9, "n": 64}, device="cpu")
    assert path == tmp_path / "theory.json"
    data = json.loads(path.read_text())
    assert data["numbers"] == {"min_eig": 1.5e-9, "n": 64}
    assert data["params"] == {"profile": "smoke", "device": "auto", "seed": 3}
    assert data["device"] == "cpu" and data["torch_version"] and data["inrlib_version"]
    assert data["wall_time_s"] >= 0 and data["timestamp"].endswith("+00:00")
    assert [p.name for p in tmp_path.iterdir()] == ["theory.json"]  # no temporary left behind
    assert book.load_results("theory")["numbers"]["n"] == 64
    with pytest.raises(FileNotFoundError, match="make chapter CHAPTER=weyl_bound"):
        book.load_results("weyl_bound")
    with pytest.raises(ValueError, match="unknown profile"):
        book.ChapterResults("theory", profile="huge")
    with pytest.raises(ValueError, match="plain file stem"):
        book.save_results("../x", {}, {"profile": "smoke"})


def test_results_default_folder_is_per_profile(tmp_path, monkeypatch):
    monkeypatch.delenv("INRLIB_RESULTS_DIR", raising=False)
    monkeypatch.delenv("INRLIB_RESULTS_BASE", raising=False)
    monkeypatch.chdir(ROOT / "book")  # where Jupyter runs a chapter opened from book/
    assert book.results_dir("quick") == ROOT / "_build" / "results" / "quick"
    monkeypatch.setenv("INRLIB_RESULTS_BASE", str(tmp_path))   # make lab: apart from the book's results
    assert book.results_dir("smoke") == tmp_path / "smoke"
    with pytest.raises(ValueError, match="unknown profile"):
        book.results_dir("fast")


# ============================================================ pipeline logic (fast)

def test_toc_entries_and_missing_source(tmp_path):
    files = bookpipe.toc_files(ROOT / "_toc.yml")
    assert files[0] == "book/intro"
    for entry in files:  # every toc entry has a source
        bookpipe.resolve_entry(entry)
    toc = tmp_path / "toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/no_such_chapter\n")
    with pytest.raises(bookpipe.PipelineError, match=r"book/no_such_chapter.*expected book/no_such_chapter.py"):
        bookpipe.toc_chapters(toc)


def test_parameters_cell_is_required_and_unknown_parameters_rejected(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('# %%\nprofile = "quick"\n')
    with pytest.raises(bookpipe.PipelineError, match="0 cells tagged 'parameters'"):
        bookpipe.execute(bad, tmp_path / "out.ipynb", {}, tmp_path)
    partial = tmp_path / "partial.py"
    partial.write_text('# %% tags=["parameters"]\nprofile = "quick"\n')
    with pytest.raises(bookpipe.PipelineError, match="missing: device, seed"):
        bookpipe.execute(partial, tmp_path / "out.ipynb", {}, tmp_path)
    with pytest.raises(bookpipe.PipelineError, match="has no parameter 'profle'"):
        bookpipe.execute(ROOT / f"{FIXTURE}.py", tmp_path / "out.ipynb", {"profle": "paper"}, tmp_path)
    with pytest.raises(bookpipe.PipelineError, match="unknown profile 'huge'"):
        bookpipe.execute(ROOT / f"{FIXTURE}.py", tmp_path / "out.ipynb", {"profile": "huge"}, tmp_path)
    assert not (tmp_path / "out.ipynb").exists()
    assert bookpipe.parse_params([["seed", "3"], ["lr", "0.5"], ["fail", "True"], ["device", "cuda"]], [["tag", "7"]]) == \
        {"seed": 3, "lr": 0.5, "fail": True, "device": "cuda", "tag": "7"}


# ============================================================ the fixture chapter through `make book`

@pytest.fixture(scope="module")
def fixture_build(tmp_path_factory):
    """`make book` in the smoke profile over a toc of the intro and the fixture chapter."""
    toc = ROOT / "tests" / "fixtures" / "_toc.yml"
    build = tmp_path_factory.mktemp("book") / "build"
    args = (f"BUILD={build}", "PROFILE=smoke", f"TOC={toc}")
    proc = make("book", *args)
    assert proc.returncode == 0, f"make book failed\n{output(proc)}"
    return {"build": build, "toc": toc, "args": args, "log": proc.stderr}


@pytest.mark.book
def test_make_book_executes_fixture_in_smoke_profile(fixture_build):
    build = fixture_build["build"]
    nb = json.loads((build / "executed" / "smoke" / f"{FIXTURE}.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"] == {"profile": "smoke"}
    assert nb["metadata"]["kernelspec"]["name"] == "inrlib"
    assert nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"], "widget state not saved"
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure is missing (inline backend?)"
    results = json.loads((build / "results" / "smoke" / "fixture_chapter.json").read_text())
    assert results["params"]["profile"] == "smoke" and results["numbers"]["n"] == 64
    assert (build / "html" / f"{FIXTURE}.html").is_file() and (build / "html" / "index.html").is_file()
    # the sources get their executed notebooks only under the build folder
    assert not list((ROOT / "tests" / "fixtures").glob("*.ipynb"))


@pytest.mark.book
def test_make_reexecutes_only_what_changed(fixture_build):
    args = fixture_build["args"]
    execute = f"execute {FIXTURE}.py"

    def dry(*extra):
        proc = make("-n", *extra, "_book", *args)
        assert proc.returncode == 0, output(proc)
        return proc.stdout

    assert execute not in dry(), "nothing changed, yet make would re-execute the chapter"
    assert execute in dry("-W", f"{FIXTURE}.py"), "a changed chapter source must re-execute it"
    assert execute in dry("-W", "inrlib/io.py"), "a changed library file must re-execute the chapters"
    quick = make("-n", "_book", *args[:1], "PROFILE=quick", *args[2:])
    assert execute in quick.stdout and "-p profile quick" in quick.stdout, \
        "the smoke notebook must not be reused for the quick profile"


@pytest.mark.book
def test_failing_cell_fails_build_and_keeps_good_notebook(fixture_build):
    build, args = fixture_build["build"], fixture_build["args"]
    good = build / "executed" / "smoke" / f"{FIXTURE}.ipynb"
    before = good.read_bytes()
    proc = make("-W", f"{FIXTURE}.py", "_book", *args, env={"INRLIB_FIXTURE_FAIL": "1"})
    assert proc.returncode != 0, "a failing cell must fail the build"
    assert f"chapter {FIXTURE}.py FAILED" in proc.stderr, output(proc)
    assert "RuntimeError: fixture failure requested" in proc.stderr, output(proc)
    assert good.read_bytes() == before, "the failed run replaced the good notebook"
    failed = good.with_name("fixture_chapter.failed.ipynb")
    assert "fixture failure requested" in failed.read_text()
    # the failed run is kept for inspection, and never published
    assert not list((build / "src").rglob("*.failed.ipynb"))


@pytest.mark.book
def test_make_chapter_with_parameters(fixture_build):
    build, toc = fixture_build["build"], fixture_build["toc"]
    proc = make("chapter", f"CHAPTER={FIXTURE}", 'PARAMS=-p profile smoke -p seed 7', f"BUILD={build}", f"TOC={toc}")
    assert proc.returncode == 0, output(proc)
    custom = json.loads((build / "executed" / "custom" / f"{FIXTURE}.ipynb").read_text())
    assert custom["metadata"]["papermill"]["parameters"] == {"profile": "smoke", "seed": 7}
    page = (build / "html" / f"{FIXTURE}.html").read_text()
    assert re.search(r'tag_injected-parameters.*?seed</span> <span class="o">=</span> <span class="mi">7</span>', page, re.S), \
        "the page does not show the chapter run with seed 7"
    published = json.loads((build / "src" / f"{FIXTURE}.ipynb").read_text())
    assert published["metadata"]["papermill"]["parameters"]["seed"] == 7
    proc = make("chapter", "CHAPTER=no_such_chapter", f"BUILD={build}", f"TOC={toc}")
    assert proc.returncode != 0 and "no chapter 'no_such_chapter'" in proc.stderr, output(proc)


@pytest.fixture(scope="module")
def fixture_pages(fixture_build):
    return {r.page: r for r in check_pages.check_pages(fixture_build["build"])}


@pytest.mark.book
@pytest.mark.browser
def test_fixture_pages_render_in_chromium(fixture_pages):
    assert set(fixture_pages) == {"book/intro", FIXTURE}
    for report in fixture_pages.values():
        assert report.ok, f"{report.page}: {report.problems}"
        assert report.screenshot.is_file() and report.screenshot.stat().st_size > 10_000
    chapter = fixture_pages[FIXTURE]
    assert chapter.figures >= 1 and chapter.math >= 2 and chapter.widgets >= 1
    assert fixture_pages["book/intro"].math >= 1


@pytest.mark.book
@pytest.mark.browser
def test_page_check_rejects_broken_pages(fixture_build, fixture_pages, tmp_path):
    """Without MathJax, the widget bundle and the figure files, the check must fail on each."""
    src = fixture_build["build"]
    broken = tmp_path / "broken"
    shutil.copytree(src / "src", broken / "src")
    shutil.copytree(src / "html", broken / "html", ignore=shutil.ignore_patterns("mathjax", "embed-amd.js"))
    for png in (broken / "html" / "_images").glob("*.png"):
        png.write_bytes(b"")
    (report,) = check_pages.check_pages(broken, pages=[FIXTURE])
    problems = "\n".join(report.problems)
    assert "math not rendered by MathJax" in problems, problems
    assert "rendered by the widget manager" in problems, problems
    assert "missing or empty image file" in problems, problems
    (missing,) = check_pages.check_pages(broken, pages=["book/no_such_page"])
    assert "does not exist" in missing.problems[0]


# ============================================================ every chapter in _toc.yml

BOOK_TOC = ROOT / os.environ.get("INRLIB_BOOK_TOC", "_toc.yml")  # another toc to try this part on
TOC_PAGES = bookpipe.toc_files(BOOK_TOC)[1:]  # the root page is checked with the fixture above


@pytest.fixture(scope="module")
def toc_build(tmp_path_factory):
    build = tmp_path_factory.mktemp("toc") / "build"
    proc = make("-k", "book", f"BUILD={build}", "PROFILE=smoke", f"TOC={BOOK_TOC}")
    reports = {}
    if proc.returncode == 0:
        reports = {r.page: r for r in check_pages.check_pages(build)}
    return {"build": build, "proc": proc, "reports": reports}


#: What each page must show (at least) in the smoke profile, and what its results file must say.
#: A chapter added to the toc without an entry here fails: state what its page must have.
def _reproduction_complete(n):
    """The reproduction table covers every paper value, from every chapter, with no problem."""
    from inrlib.book.studies.reproduction import covers, toc_chapters
    from inrlib.research.claims import PAPER_VALUES
    ids = list(n["verdicts"])
    return (n["problems"] == [] and n["missing"] == [] and n["n_claims"] == len(ids)
            and all(any(covers(i, p) for i in ids) for p in PAPER_VALUES)
            and [c["chapter"] for c in n["chapters"]] == toc_chapters(ROOT / "_toc.yml")
            and all(c["n_claims"] >= 1 and c["profile"] == "smoke" for c in n["chapters"])
            and n["counts"]["all"] == {v: list(n["verdicts"].values()).count(v) for v in n["counts"]["all"]})


PAGE_REQUIREMENTS = {
    "book/intro": {"figures": 0, "math": 1, "tables": 1, "widgets": 0, "results": None},
    "book/theory": {"figures": 2, "math": 30, "tables": 2, "widgets": 1,
                    "results": lambda n: n["identities_hold"] is True and n["max_identity_error"] < 1e-12
                    and {c["id"]: c["verdict"] for c in n["claims"]} == {
                        "000.eq2": "holds", "000.eq9": "holds", "000.eq11": "holds", "000.eq13.grid_term": "holds",
                        "000.eq14.ffe_no_grid_term": "holds"}},
    "book/weyl_bound": {"figures": 3, "math": 20, "tables": 5, "widgets": 0,
                        "results": lambda n: n["summary"]["chain_a_holds_all"] is True
                        and {c["id"]: c["verdict"] for c in n["claims"]}["000.theorem1.chain_a"] == "holds"
                        and {c["id"] for c in n["claims"]} == {"000.theorem1.chain_a", "000.theorem1.chain_b"}},
    "book/reproduction": {"figures": 1, "math": 0, "tables": 5, "widgets": 0, "results": _reproduction_complete},
    "book/scaling": {"figures": 7, "math": 10, "tables": 8, "widgets": 1,
                     "results": lambda n: len(n["claims"]) >= 26 and all(c["verdict"] for c in n["claims"])},
    "book/imagenet": {"figures": 3, "math": 8, "tables": 8, "widgets": 1,
                      "results": lambda n: {f"000.{t}.{e}" for t in ("table2.psnr", "table1.imagenet_msssim")
                                            for e in ("mpe", "ffe", "baseline")} | {"000.fig5a.order",
                                                                                    "000.table2.psnr_order"}
                      <= {c["id"] for c in n["claims"]}
                      and all(n["tuning"][e]["n_finished"] >= 1 for e in ("mpe", "ffe", "baseline"))
                      and n["tuning_tiny"] is True and len(n["photos"]) >= 2},
    "book/occupancy": {"figures": 3, "math": 10, "tables": 5, "widgets": 0,
                       "results": lambda n: {"000.fig5b.order", "000.fig5b.min_eig_ffe_close_to_mpe"}
                       | {f"000.appE.iou_order.{m['name']}" for m in n["meshes"]} <= {c["id"] for c in n["claims"]}
                       and len(n["meshes"]) >= 1 and len(n["rows"]) == 3 * len(n["meshes"])
                       and {"output", "logit"} <= set(n["spectra"])},
    "book/sinusoidal_bandwidth": {"figures": 5, "math": 20, "tables": 4, "widgets": 1,
                                  "results": lambda n: {"001.lemma1", "001.ntk_low_pass", "001.bandwidth_grows_with_w",
                                                        "001.best_w_tracks_signal_frequency", "001.simple_matches_siren"}
                                  <= {c["id"] for c in n["claims"]} and n["lemma1"]["n"] > 1000
                                  and len(n["bandwidth"]) == 3 * len(n["tuning"]) // len({r["max_frequency"] for r in n["tuning"]})},
    "book/staf_init": {"figures": 4, "math": 10, "tables": 4, "widgets": 1,
                       "results": lambda n: {"002.init_standard_normal", "002.kronecker_equivalence",
                                             "002.ntk_spectrum_changes", "002.psnr_vs_siren"}
                       <= {c["id"] for c in n["claims"]}
                       and {c["id"]: c for c in n["claims"]}["002.kronecker_equivalence"]["verdict"] == "holds"
                       and len(n["comparison"]) == 5},
}


@pytest.mark.book
@pytest.mark.browser
@pytest.mark.parametrize("entry", [e for e in TOC_PAGES if bookpipe.resolve_entry(e)[0] == "chapter"])
def test_toc_chapter_shows_what_it_must(toc_build, entry):
    """Not just 'whatever the notebook shows renders': each chapter's page holds its figures, math,
    tables and explorer, and its results file says what the chapter found (smoke profile)."""
    kind, path = bookpipe.resolve_entry(entry)
    stem = str(path.relative_to(ROOT).with_suffix(""))
    assert stem in PAGE_REQUIREMENTS, f"{stem} is in the toc but PAGE_REQUIREMENTS in {__file__} says nothing about it"
    need = PAGE_REQUIREMENTS[stem]
    assert toc_build["proc"].returncode == 0, f"make book (smoke) failed\n{output(toc_build['proc'])}"
    report = toc_build["reports"][stem]
    for what in ("figures", "math", "tables", "widgets"):
        assert getattr(report, what) >= need[what], f"{stem}: {getattr(report, what)} {what} on the page, needs {need[what]}"
    if need["results"] is None:      # a page without a results file of its own (the front page)
        return
    results = json.loads((toc_build["build"] / "results" / "smoke" / f"{path.stem}.json").read_text())
    assert results["params"]["profile"] == "smoke"
    assert need["results"](results["numbers"]), f"{stem}: its results do not say what they must"
    if "claims" in results["numbers"]:
        from inrlib.research.claims import check_claims
        check_claims(results["numbers"]["claims"])


@pytest.mark.book
@pytest.mark.browser
@pytest.mark.parametrize("entry", TOC_PAGES)
def test_toc_page_executes_and_renders(toc_build, entry):
    kind, path = bookpipe.resolve_entry(entry)
    stem = str(path.relative_to(ROOT).with_suffix(""))
    if kind == "chapter":
        nb = toc_build["build"] / "executed" / "smoke" / f"{stem}.ipynb"
        assert nb.is_file(), f"{stem} did not execute in the smoke profile\n{output(toc_build['proc'])}"
    assert toc_build["proc"].returncode == 0, f"make book (smoke) failed\n{output(toc_build['proc'])}"
    report = toc_build["reports"][stem]
    assert report.ok, f"{stem}: {report.problems}"


# ============================================================ static-page explorers, clicked in the browser

def _has_static_explorer(nb_path: Path) -> bool:
    nb = json.loads(nb_path.read_text())
    state = nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return any(check_pages.EXPLORER in m.get("state", {}).get("_dom_classes", []) for m in state.get("state", {}).values())


# chapters that must carry a static explorer, and how many controls it has at least
EXPLORER_PAGES = {"book/theory": 2, "book/scaling": 2, "book/imagenet": 2, "book/sinusoidal_bandwidth": 1,
                  "book/staf_init": 2}


@pytest.mark.book
@pytest.mark.browser
@pytest.mark.parametrize("stem", EXPLORER_PAGES)
def test_static_explorer_moves_its_picture_without_a_kernel(toc_build, stem):
    """Selenium + chromium-driver: every control of the page's explorer changes the picture shown."""
    assert toc_build["proc"].returncode == 0, f"make book (smoke) failed\n{output(toc_build['proc'])}"
    nb = toc_build["build"] / "executed" / "smoke" / f"{stem}.ipynb"
    assert _has_static_explorer(nb), f"{stem} saved no static explorer in its widget state"
    page = toc_build["build"] / "html" / f"{stem}.html"
    shot = toc_build["build"] / "screenshots" / f"{stem.replace('/', '__')}.explorer.png"
    result = check_pages.check_explorers(page, screenshot=shot)
    assert result["explorers"] >= 1 and result["moves"] >= EXPLORER_PAGES[stem], result
    assert not result["problems"], result["problems"]
    assert shot.is_file() and shot.stat().st_size > 10_000


@pytest.mark.book
@pytest.mark.browser
def test_explorer_check_rejects_an_explorer_without_links(toc_build, tmp_path):
    """The same page with the jslink models taken out of its saved widget state: the controls move
    but the picture does not, and the check must say so."""
    assert toc_build["proc"].returncode == 0, output(toc_build["proc"])
    html_dir = toc_build["build"] / "html"
    broken = tmp_path / "html"
    shutil.copytree(html_dir, broken)
    page = broken / "book" / "scaling.html"
    text = page.read_text(encoding="utf-8")
    pattern = re.compile(r'(<script type="application/vnd.jupyter.widget-state\+json">)(.*?)(</script>)', re.S)
    match = pattern.search(text)
    assert match, "no embedded widget state on the page"
    state = json.loads(match.group(2))
    links = [k for k, m in state["state"].items() if m["model_name"] == "LinkModel"]
    assert links, "the page has no jslink models"
    for k in links:
        del state["state"][k]
    page.write_text(text[:match.start(2)] + json.dumps(state) + text[match.end(2):], encoding="utf-8")
    result = check_pages.check_explorers(page)
    assert any("did not change the picture" in p for p in result["problems"]), result


@pytest.mark.book
def test_stopped_execution_leaves_no_temporary_files(tmp_path):
    """SIGTERM during a chapter's run (make or a person stopping the build): no hidden temporary
    notebook is left, and no output written; a stale temporary from a killed run is removed."""
    import signal
    import time

    out = tmp_path / "executed" / "fixture_chapter.ipynb"
    out.parent.mkdir(parents=True)
    stale = out.parent / ".fixture_chapter.ipynb.abc123.ipynb"
    stale.write_text("{}")
    env = {**os.environ, "INRLIB_FIXTURE_SLEEP": "60"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bookpipe.py"), "execute", str(ROOT / f"{FIXTURE}.py"),
                             str(out), "-p", "profile", "smoke", "--results", str(tmp_path / "results")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.communicate()
            if not stale.exists() and list(out.parent.glob(".fixture_chapter.ipynb.*")):
                break
            time.sleep(0.2)
        temps = list(out.parent.glob(".fixture_chapter.ipynb.*"))
        assert temps and not stale.exists(), "the run should have removed the stale file and started its own"
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not out.exists()
    assert not list(out.parent.glob(".fixture_chapter.ipynb.*")), "a temporary notebook was left behind"
