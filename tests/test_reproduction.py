"""The reproduction table's gather and the Theory / Weyl chapters' claim builders."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from inrlib.book.studies import reproduction as R
from inrlib.book.studies.theory import IDENTITY_CHECKS, identity_claims
from inrlib.book.studies.weyl import weyl_claims
from inrlib.research.claims import CLAIM_FIELDS, PAPER_VALUES, claim

ROOT = Path(__file__).resolve().parents[1]


def _write(folder: Path, chapter: str, claims, profile="smoke", stamp="2026-12-02T06:00:00+00:00", **params):
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"chapter": chapter, "params": {"profile": profile, **params}, "numbers": {"claims": claims},
           "timestamp": stamp, "device": "cpu", "wall_time_s": 1.5}
    (folder / f"{chapter}.json").write_text(json.dumps(rec))


def test_gather_collects_rows_with_their_chapter_and_data(tmp_path):
    _write(tmp_path, "a", [claim("000.eq9", 1e-16, "holds"), claim("000.appE.iou_order", "x", "fails",
                                                                    paper_id="000.appE.iou_order")], image="cat")
    _write(tmp_path, "b", [claim("000.appE.iou_order.bunny", "y", "holds", paper_id="000.appE.iou_order")])
    g = R.gather(["a", "b"], "smoke", folder=tmp_path)
    assert g["problems"] == []
    assert [(r["id"], r["chapter"], r["data"]) for r in g["rows"]] == [
        ("000.eq9", "a", "image=cat"), ("000.appE.iou_order", "a", "image=cat"),
        ("000.appE.iou_order.bunny", "b", "generated in the chapter")]
    assert [c["n_claims"] for c in g["chapters"]] == [2, 1]
    # missing: every paper value but the two covered, in PAPER_VALUES order
    assert g["missing"] == [p for p in PAPER_VALUES if p not in ("000.eq9", "000.appE.iou_order")]
    counts = R.counts_by_paper(g["rows"])
    assert counts["000"] == {"holds": 2, "approximately": 0, "differs": 0, "fails": 1, "not tested": 0}
    assert counts["all"]["holds"] == 2 and sum(counts["001"].values()) == 0
    with pytest.raises(R.ReproductionError, match="paper values no chapter recorded"):
        R.require_complete(g)
    R.require_complete(g, allow_missing=True)


def test_gather_names_every_problem(tmp_path):
    good = [claim("000.eq9", 0.0, "holds")]
    _write(tmp_path, "other_profile", good, profile="quick")
    _write(tmp_path, "no_claims", [])
    broken = [dict(claim("000.eq11", 0.0, "holds"))]
    del broken[0]["note"]
    _write(tmp_path, "lacks_field", broken)
    _write(tmp_path, "twice", [claim("000.eq2", 0.0, "holds")])
    _write(tmp_path, "twice_too", [claim("000.eq2", 0.0, "holds")])
    (tmp_path / "garbled.json").write_text("{not json")
    g = R.gather(["absent", "other_profile", "no_claims", "lacks_field", "twice", "twice_too", "garbled"], "smoke",
                 folder=tmp_path)
    text = "\n".join(g["problems"])
    assert "absent: no results file" in text and "make chapter CHAPTER=absent" in text
    assert "other_profile" in text and "profile 'quick', not 'smoke'" in text
    assert "no_claims: its results record no claims" in text
    assert "lacks_field" in text and "lacks note" in text
    assert "recorded by both twice and twice_too" in text
    assert "garbled: cannot read" in text
    assert len(g["problems"]) == 6
    assert all(r["chapter"] in ("twice", "twice_too") for r in g["rows"])   # nothing from a broken file
    with pytest.raises(R.ReproductionError) as err:
        R.require_complete(g, allow_missing=True)
    assert str(err.value).count("\n- ") == 6
    assert R.gather([], "smoke", folder=tmp_path)["problems"]


def test_gather_flags_results_older_than_the_chapter_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("# # A: title\n")
    now = time.time()
    os.utime(src / "a.py", (now, now))
    old = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 3600))
    new = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + 60))
    _write(tmp_path / "r", "a", [claim("000.eq9", 0.0, "holds")], stamp=old)
    assert "stale" in R.gather(["a"], "smoke", folder=tmp_path / "r", sources=src)["problems"][0]
    _write(tmp_path / "r", "a", [claim("000.eq9", 0.0, "holds")], stamp=new)
    assert R.gather(["a"], "smoke", folder=tmp_path / "r", sources=src)["problems"] == []
    assert R.chapter_title("a", src) == "A: title" and R.chapter_title("zz", src) == "zz"


def test_covers_is_the_id_or_a_case_under_it():
    assert R.covers("000.appE.iou_order.bunny", "000.appE.iou_order")
    assert R.covers("000.eq9", "000.eq9")
    assert not R.covers("000.eq13.grid_term", "000.eq1")         # a prefix of the text is not a case
    assert not R.covers("000.table2.psnr", "000.table2.psnr_order")


def test_toc_chapters_of_the_book_leave_out_the_gathering_pages(monkeypatch):
    monkeypatch.setenv("INRLIB_TOC", str(ROOT / "tests" / "fixtures" / "_toc.yml"))
    assert R.book_toc() == ROOT / "tests" / "fixtures" / "_toc.yml"
    # entries are paths from the repository root, also for a toc in another folder
    assert R.toc_chapters(R.book_toc()) == ["fixture_chapter"]
    monkeypatch.delenv("INRLIB_TOC")
    monkeypatch.chdir(ROOT / "book")
    assert R.book_toc() == ROOT / "_toc.yml"
    chapters = R.toc_chapters(ROOT / "_toc.yml")
    assert chapters[:2] == ["theory", "weyl_bound"] and "intro" not in chapters and "reproduction" not in chapters
    assert set(chapters) == {"theory", "weyl_bound", "scaling", "imagenet", "occupancy", "sinusoidal_bandwidth",
                             "staf_init"}


def test_sources_dir_is_the_folder_of_the_pages():
    assert R.sources_dir(ROOT / "book") == ROOT / "book"      # papermill runs a page in its folder
    assert R.sources_dir(ROOT) == ROOT / "book"               # a notebook or script at the root


def test_toc_entries_walk_parts_chapters_and_sections_in_reading_order(tmp_path):
    from inrlib.book import TocError, toc_entries
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: a\nparts:\n- caption: P\n  chapters:\n  - file: b\n"
                   "    sections:\n    - file: c.py\n  - file: d\n- caption: Q\n  chapters:\n  - file: e\n")
    assert toc_entries(toc) == ["a", "b", "c.py", "d", "e"]
    toc.write_text("format: jb-book\nroot: a\nchapters:\n- glob: book/*\n")
    with pytest.raises(TocError, match="'glob' entries are not supported"):
        toc_entries(toc)
    toc.write_text("format: jb-book\nchapters:\n- file: b\n")
    with pytest.raises(TocError, match="no 'root' entry"):
        toc_entries(toc)
    toc.write_text("root: [a\n")
    with pytest.raises(TocError, match="not valid YAML"):
        toc_entries(toc)
    with pytest.raises(TocError, match="not found"):
        toc_entries(tmp_path / "missing.yml")


def test_claims_html_links_each_row_to_its_chapter_findings():
    rows = [{**claim("000.eq9", 2e-16, "holds", "fine"), "chapter": "theory"},
            {**claim("000.fig5a.order", 0.9, "fails", "a <b> note"), "chapter": "imagenet"}]
    html = R.claims_html(rows, {"theory": "Theory: the kernel"})
    assert html.count("<tr>") == 3 and html.count("<tr class='inrlib-claim-note'>") == 2
    assert "href='theory.html#findings'>Theory: the kernel</a>" in html and "href='imagenet.html#findings'>imagenet" in html
    assert "a &lt;b&gt; note" in html and "2e-16" in html
    assert PAPER_VALUES["000.fig5a.order"]["quote"][:30] in html


def test_identity_claims_take_the_worst_check_and_the_stated_tolerances():
    checks = {"eq2_level0": 1e-17, "eq2_level1": 3e-16, "eq9_identity": 5e-13, "eq9_identity_rgb": 2e-13,
              "eq11_level0": 2e-9, "eq13_grid_formula": 1e-15, "eq12_mlp_by_hand": 4e-3,
              "eq14_total_vs_mlp": 0.0, "eq14_mlp_on_embedding": 1e-16, "eq14_by_hand": 1e-16,
              "mlp_on_embedding_vs_unencoded": 0.4, "eq14_grid_max_abs": 0.0}
    out = {c["id"]: c for c in identity_claims(checks, grid_max_abs_ffe=0.0)}
    assert list(out) == list(IDENTITY_CHECKS)
    assert out["000.eq2"]["ours"] == 3e-16 and out["000.eq2"]["verdict"] == "holds"
    assert out["000.eq9"]["ours"] == 5e-13 and out["000.eq9"]["verdict"] == "holds"
    assert out["000.eq11"]["verdict"] == "approximately"                 # 2e-9: above 1e-12, below 1e-6
    assert out["000.eq13.grid_term"]["ours"] == 4e-3 and out["000.eq13.grid_term"]["verdict"] == "fails"
    assert "eq12_mlp_by_hand" in out["000.eq13.grid_term"]["note"]
    assert out["000.eq14.ffe_no_grid_term"]["verdict"] == "holds"
    assert all(set(CLAIM_FIELDS) <= set(c) for c in out.values())
    # a non-zero FFE grid group fails Eq. 14 whatever the relative errors
    assert {c["id"]: c for c in identity_claims(checks, grid_max_abs_ffe=1e-30)}[
        "000.eq14.ffe_no_grid_term"]["verdict"] == "fails"
    with pytest.raises(ValueError, match="no check for 000.eq2"):
        identity_claims({k: v for k, v in checks.items() if not k.startswith("eq2_")})
    # the boundaries: exactly 1e-12 is not below 1e-12
    assert identity_claims({**checks, "eq2_level1": 1e-12})[0]["verdict"] == "approximately"


def _summary(**kw):
    base = {"n_cases": 6, "chain_a_holds_all": True, "chain_a_min_slack_over_tol": 3.0, "chain_b_holds": 6,
            "chain_b_approximately": 0, "chain_b_fails": 0, "chain_b_worst_ratio": float("nan"),
            "chain_b_worst_case": "fine / end"}
    return {**base, **kw}


def test_weyl_claims_read_the_chain_counts():
    a, b = weyl_claims(_summary())
    assert (a["id"], a["verdict"], a["ours"]) == ("000.theorem1.chain_a", "holds", 1.0)
    assert (b["id"], b["verdict"], b["ours"]) == ("000.theorem1.chain_b", "holds", 1.0)
    a, b = weyl_claims(_summary(chain_a_holds_all=False, chain_b_holds=4, chain_b_approximately=2))
    assert a["verdict"] == "fails" and a["ours"] is None
    assert b["verdict"] == "approximately" and b["ours"] == pytest.approx(4 / 6)
    _, b = weyl_claims(_summary(chain_b_holds=4, chain_b_approximately=1, chain_b_fails=1, chain_b_worst_ratio=0.1))
    assert b["verdict"] == "fails" and "1 fail" in b["note"] and "0.1" in b["note"]
    with pytest.raises(ValueError, match="do not add up"):
        weyl_claims(_summary(chain_b_holds=5))
    with pytest.raises(ValueError, match="no cases"):
        weyl_claims(_summary(n_cases=0))


# ----------------------------------------------------------------------------- gaps found by mutation testing
def test_gather_records_each_chapters_run_and_says_empty_or_absent(tmp_path):
    _write(tmp_path, "a", [claim("000.eq9", 1e-16, "holds")], stamp="2026-12-02T06:00:00+00:00", image="cat", side=64)
    rec = json.loads((tmp_path / "a.json").read_text())
    g = R.gather(["a"], "smoke", folder=tmp_path)
    (info,) = g["chapters"]
    assert info == {"chapter": "a", "path": str(tmp_path / "a.json"), "n_claims": 1, "profile": "smoke", "device": "cpu",
                    "timestamp": "2026-12-02T06:00:00+00:00", "wall_time_s": 1.5, "data": "image=cat, side=64",
                    "params": rec["params"]}
    assert g["rows"][0]["timestamp"] == "2026-12-02T06:00:00+00:00" and g["rows"][0]["profile"] == "smoke"
    assert R.gather(["zz"], "smoke", folder=tmp_path)["chapters"] == [
        {"chapter": "zz", "path": str(tmp_path / "zz.json"), "n_claims": 0}]
    assert R.gather([], "smoke", folder=tmp_path)["problems"] == [
        "no chapters to gather (the toc lists none besides the gathering pages)"]
    _write(tmp_path, "e", [])
    (tmp_path / "n.json").write_text(json.dumps({"params": {"profile": "smoke"}}))
    p = R.gather(["e", "n", "a"], "smoke", folder=tmp_path)["problems"]
    assert p == ["e: its results record no claims (numbers.claims is empty); every chapter in the toc records the "
                 "papers' claims it tests",
                 "n: its results record no claims (numbers.claims is absent); every chapter in the toc records the "
                 "papers' claims it tests"]
    _write(tmp_path, "q", [claim("000.eq9", 0.0, "holds")], profile="quick")
    assert R.gather(["q"], "smoke", folder=tmp_path)["problems"] == [
        f"q: {tmp_path / 'q.json'} holds a run of profile 'quick', not 'smoke'; results of two profiles are never "
        "mixed in one table"]


def test_stale_results_are_named_with_their_time_and_the_margin_is_two_seconds(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("# # A\n")
    ran = 1_700_000_000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ran))
    _write(tmp_path / "r", "a", [claim("000.eq9", 0.0, "holds")], stamp=stamp)
    for edited, stale in ((ran + 1.9, False), (ran + 2.5, True), (ran - 100, False)):
        os.utime(src / "a.py", (edited, edited))
        problems = R.gather(["a"], "smoke", folder=tmp_path / "r", sources=src)["problems"]
        assert problems == ([f"a: its source a.py changed after the results were written ({stamp}): stale; re-execute "
                             "it (make book)"] if stale else []), edited


def test_claims_html_row_word_for_word():
    rows = [{**claim("000.table2.psnr.mpe", 44.123, "approximately", "within <1 dB> & more"), "chapter": "imagenet"},
            {**claim("000.fig4.ffe_saturates", None, "not tested", "no run"), "chapter": "scaling"},
            {**claim("000.abstract.lambda_min.mpe_over_ffe", 1.5, "holds", "", bound="lower bound"), "chapter": "x"}]
    out = R.claims_html(rows, {"imagenet": "ImageNet <photos>"})
    head = ("<table class='table inrlib-claims' style='table-layout:fixed; width:100%; overflow-wrap:anywhere'>"
            "<colgroup><col style='width:35%'><col style='width:29%'><col style='width:11%'><col style='width:13%'>"
            "<col style='width:12%'></colgroup><thead><tr><th>claim</th><th>the paper</th><th>ours</th>"
            "<th>verdict</th><th>from</th></tr></thead><tbody>")
    assert out.startswith(head) and out.endswith("</tbody></table>")
    r0, r1, r2 = rows
    first = (f"<tr><td><code>000.table2.psnr.mpe</code><br><small>{r0['statement']}; {r0['source']}</small></td>"
             "<td><small>45.3 dB</small></td><td>44.1 dB</td>"
             "<td><strong style='color:#9a6700'>approximately</strong></td>"
             "<td><a href='imagenet.html#findings'>ImageNet &lt;photos&gt;</a></td></tr>"
             "<tr class='inrlib-claim-note'><td colspan='5' style='border-top:none; padding-top:0'><small>"
             "<em>How it was judged:</em> within &lt;1 dB&gt; &amp; more</small></td></tr>")
    assert out[len(head):].startswith(first)
    rest = out[len(head) + len(first):]
    quote = r1["paper_value"].replace("'", "&#x27;").replace('"', "&quot;")
    assert f"<td><small><em>&ldquo;{quote}&rdquo;</em></small></td><td>-</td>" in rest
    assert "<strong style='color:#57606a'>not tested</strong>" in rest and "<a href='scaling.html#findings'>scaling</a>" in rest
    assert "<td>&ge; 1.5 <small>(orders of magnitude)</small></td>" in rest          # a bound, with its unit
    assert "<strong style='color:#1a7f37'>holds</strong>" in rest and "How it was judged:</em> -</small>" in rest
    colours = {"differs": "#bc4c00", "fails": "#cf222e"}
    for verdict, colour in colours.items():
        one = R.claims_html([{**claim("000.eq9", 0.1, verdict), "chapter": "t"}], {})
        assert f"<strong style='color:{colour}'>{verdict}</strong>" in one
    long = R.claims_html([{**claim("000.eq9", "x" * 41, "holds"), "chapter": "t"}], {})
    assert "<td>see the note</td>" in long                                   # a sentence is in the note


def test_identity_claim_notes_word_for_word_and_the_tolerance_edges():
    checks = {"eq2_a": 1e-17, "eq2_b": 3e-16, "eq9_x": 1e-6, "eq11_x": 1e-12, "eq13_x": 0.0, "eq14_total_vs_mlp": 0.0,
              "eq14_mlp_on_embedding": 2e-16, "eq14_by_hand": 1e-16}
    out = {c["id"]: c for c in identity_claims(checks, grid_max_abs_ffe=0.0)}
    assert out["000.eq2"]["note"] == ("largest relative error over 2 checks (eq2_a, eq2_b): 3.0e-16 (eq2_b); holds "
                                      "below 1e-12, approximately below 1e-06")
    assert out["000.eq14.ffe_no_grid_term"]["note"] == (
        "largest relative error over 3 checks (eq14_by_hand, eq14_mlp_on_embedding, eq14_total_vs_mlp): 2.0e-16 "
        "(eq14_mlp_on_embedding); holds below 1e-12, approximately below 1e-06; the FFE network's grid group has "
        "max |entry| 0")
    assert all(c["unit"] == "relative error" for c in out.values())
    assert out["000.eq9"]["verdict"] == "fails" and out["000.eq11"]["verdict"] == "approximately"   # the edges are out


def test_plot_verdict_counts_draws_one_segment_per_verdict_with_its_count():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    counts = {"000": {"holds": 3, "approximately": 0, "differs": 2, "fails": 1, "not tested": 0},
              "001": {"holds": 0, "approximately": 0, "differs": 0, "fails": 0, "not tested": 0},     # no claims: no bar
              "002": {"holds": 1, "approximately": 2, "differs": 0, "fails": 0, "not tested": 4}}
    fig, ax = plt.subplots()
    from inrlib.book.plotting import plot_verdict_counts
    plot_verdict_counts(ax, counts)
    bars = [(round(b.get_y() + b.get_height() / 2), b.get_x(), b.get_width(), to_hex(b.get_facecolor()))
            for b in ax.patches]
    assert bars == [(0, 0, 3, "#2da44e"), (0, 3, 2, "#fb8f44"), (0, 5, 1, "#cf222e"),
                    (1, 0, 1, "#2da44e"), (1, 1, 2, "#d4a72c"), (1, 3, 4, "#afb8c1")]
    assert all(to_hex(b.get_edgecolor()) == "#ffffff" for b in ax.patches)
    assert [(t.get_text(), t.get_position()) for t in ax.texts] == [
        ("3", (1.5, 0)), ("2", (4.0, 0)), ("1", (5.5, 0)), ("1", (0.5, 1)), ("2", (2.0, 1)), ("4", (5.0, 1))]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["paper 000", "paper 002"]
    assert ax.yaxis_inverted() and ax.get_xlabel() == "claims"
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["holds", "differs", "fails", "approximately", "not tested"]
    assert legend._ncols == 5                                              # one row, every verdict
    plt.close(fig)


def test_toc_chapters_take_entries_written_with_or_without_py(tmp_path):
    (tmp_path / "inrlib").mkdir()
    (tmp_path / "book").mkdir()
    for stem in ("theory", "scaling", "intro"):
        (tmp_path / "book" / f"{stem}.py").write_text("# %%\n")
    (tmp_path / "book" / "notes.md").write_text("# notes\n")
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n- file: book/theory.py\n- file: book/notes\n"
                   "- file: book/scaling\n- file: book/theory\n")
    assert R.toc_chapters(toc) == ["theory", "scaling"]       # once each, Markdown and gathering pages left out


def test_sources_dir_defaults_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "reproduction.py").write_text("# %%\n")
    assert R.sources_dir(tmp_path) == tmp_path
    assert R.sources_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere" / "book"
    monkeypatch.chdir(tmp_path)
    assert R.sources_dir() == tmp_path
    monkeypatch.chdir(ROOT)
    assert R.sources_dir() == ROOT / "book"


def test_counts_by_paper_takes_a_paper_it_does_not_list():
    rows = [{"paper": "000", "verdict": "holds"}, {"paper": "999", "verdict": "fails"},
            {"paper": "999", "verdict": "fails"}]
    out = R.counts_by_paper(rows)
    assert out["999"] == {"holds": 0, "approximately": 0, "differs": 0, "fails": 2, "not tested": 0}
    assert out["all"]["fails"] == 2 and out["all"]["holds"] == 1 and out["000"]["holds"] == 1


def test_require_complete_lists_every_problem_and_escaping_covers_quotes():
    gathered = {"profile": "quick", "problems": ["theory: no results", "scaling: stale"], "missing": ["a.b", "c.d"]}
    with pytest.raises(R.ReproductionError) as err:
        R.require_complete(gathered)
    assert str(err.value) == ("the reproduction table of profile 'quick' is incomplete:\n- theory: no results\n"
                              "- scaling: stale\n- 2 paper values no chapter recorded: a.b, c.d")
    R.require_complete({"profile": "quick", "problems": [], "missing": ["a.b"]}, allow_missing=True)
    assert R._esc("<a href='x'>\"&") == "&lt;a href=&#x27;x&#x27;&gt;&quot;&amp;"
