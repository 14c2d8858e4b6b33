"""The papers' values and the claim records (inrlib.research.claims, inrlib.research.papers); reading spectra
against the floor is tested in tests/ntk/test_spectra.py."""
import numpy as np
import pytest

from inrlib.research.claims import (
    CLAIM_FIELDS,
    PAPER_VALUES,
    VERDICTS,
    check_claims,
    claim,
    paper_value,
    verdict_counts,
    verdict_from_difference,
)


def test_paper_values_are_the_papers():
    """A few values checked against the paper's text (Tables 1-3 and the abstract of paper 000)."""
    expect = {"000.table3.psnr.baseline": 20, "000.table3.psnr.ffe_high": 36.5, "000.table3.psnr.mpe_fine": 41.5,
              "000.table1.msssim.mpe_coarse": 0.37, "000.table1.msssim.ffe_mid": 0.23, "000.table2.psnr.mpe": 45.28,
              "000.table1.imagenet_msssim.ffe": 0.39, "000.abstract.lambda_min.mpe_over_baseline": 8,
              "000.abstract.psnr_gain.over_ffe": 12, "000.fig6.mpe_loss_1e-3_sooner": 125}
    for id_, value in expect.items():
        assert PAPER_VALUES[id_]["value"] == value, id_
    for id_, entry in PAPER_VALUES.items():
        assert entry["paper"] == id_.split(".")[0] and entry["source"].startswith("paper ")
        assert entry["value"] is not None or entry.get("quote"), f"{id_} has neither a value nor a quote"
    assert "125 epochs sooner" in PAPER_VALUES["000.fig6.mpe_loss_1e-3_sooner"]["quote"]


def test_claim_records():
    c = claim("000.table3.psnr.mpe_fine", np.float64(40.2), "approximately", "note")
    assert set(CLAIM_FIELDS) <= set(c) and c["paper_value"] == 41.5 and c["unit"] == "dB" and c["ours"] == 40.2
    assert type(c["ours"]) is float
    q = claim("000.fig4.ffe_saturates", 0.2, "holds")
    assert q["paper_value"].startswith("we see that the FFE saturates")
    assert claim("000.table3.psnr.baseline", float("nan"), "not tested", "diverged")["ours"] is None
    assert claim("000.abstract.lambda_min.mpe_over_baseline", 9.0, "holds", bound="lower bound")["ours_bound"] == "lower bound"
    with pytest.raises(KeyError, match="ids of that group: 000.table3.psnr"):
        claim("000.table3.psnr.mpe_huge", 1, "holds")
    with pytest.raises(ValueError, match="must be one of"):
        claim("000.table3.psnr.baseline", 1, "true")
    with pytest.raises(ValueError, match="give a note"):
        claim("000.table3.psnr.baseline", None, "not tested")
    assert paper_value("000.table2.psnr.ffe")["value"] == 33.47


def test_check_claims_names_every_problem():
    good = [claim("000.table3.psnr.baseline", 19.0, "approximately"), claim("000.table3.psnr.ffe_low", 25.0, "holds")]
    assert check_claims(good, required=["000.table3.psnr.baseline"]) == good
    bad = [dict(good[0], verdict="maybe"), {k: v for k, v in good[1].items() if k != "note"}, good[0]]
    with pytest.raises(ValueError) as info:
        check_claims(bad, required=["000.fig2.no_grid_near_baseline"])
    msg = str(info.value)
    assert "verdict 'maybe'" in msg and "lacks note" in msg and "recorded twice" in msg
    assert "claims not recorded: 000.fig2.no_grid_near_baseline" in msg
    assert verdict_counts(good) == {v: (1 if v in ("approximately", "holds") else 0) for v in VERDICTS}


def test_verdict_from_difference_boundaries():
    assert verdict_from_difference(41.0, 41.5, 1, 3) == "holds"
    assert verdict_from_difference(40.5, 41.5, 1, 3) == "holds"
    assert verdict_from_difference(40.4, 41.5, 1, 3) == "approximately"
    assert verdict_from_difference(38.5, 41.5, 1, 3) == "approximately"
    assert verdict_from_difference(38.4, 41.5, 1, 3) == "differs"
    assert verdict_from_difference(float("nan"), 1, 1, 3) == "not tested"
    assert verdict_from_difference(None, 1, 1, 3) == "not tested"


def test_claim_options_and_messages_name_the_claim():
    c = claim("000.table3.psnr.baseline", 1.0, "holds", statement="mine", unit="nats", bound="exact")
    assert c["statement"] == "mine" and c["unit"] == "nats" and "ours_bound" not in c
    assert claim("000.table3.psnr.baseline", 1.0, "holds", bound="upper bound")["ours_bound"] == "upper bound"
    with pytest.raises(ValueError, match=r"bound must be None, 'exact', 'lower bound' or 'upper bound', got 'side'"):
        claim("000.table3.psnr.baseline", 1.0, "holds", bound="side")
    with pytest.raises(ValueError, match=r"verdict 'true' for claim '000.table3.psnr.baseline' must be one of holds, approximately"):
        claim("000.table3.psnr.baseline", 1.0, "true")
    with pytest.raises(KeyError, match=r"ids of that group: 000.table3.psnr.baseline, 000.table3.psnr.ffe_low"):
        paper_value("000.table3.psnr.nothing")
    with pytest.raises(KeyError) as info:
        paper_value("999.nothing")
    assert "ids of that group" not in str(info.value)
    good = claim("000.table3.psnr.baseline", 19.0, "holds")
    other = claim("000.table3.psnr.ffe_low", 25.0, "holds")
    with pytest.raises(ValueError) as info:
        check_claims([{k: v for k, v in good.items() if k not in ("note", "unit")}, dict(other, verdict="maybe"), other],
                     required=["000.fig2.no_grid_near_baseline", "000.fig4.ffe_saturates"])
    msg = str(info.value)
    assert "claim '000.table3.psnr.baseline' lacks unit, note" in msg
    assert "claim '000.table3.psnr.ffe_low' has verdict 'maybe', not one of" in msg
    assert "claim '000.table3.psnr.ffe_low' recorded twice" in msg
    assert "claims not recorded: 000.fig2.no_grid_near_baseline, 000.fig4.ffe_saturates" in msg
    assert msg.count("; ") >= 3
    with pytest.raises(ValueError, match=r"claim '\?' lacks"):
        check_claims([{"paper": "000"}])
    assert verdict_counts([good, other])["holds"] == 2


def test_quotes_are_the_papers_words():
    """Every quoted sentence occurs in its paper's text (letters and digits compared, so spacing and
    punctuation do not matter; ``[...]`` marks an elision). The exceptions quote formulas, which the
    papers' text renders as LaTeX and the quotes write in ASCII (lambda_i, w, K_NTK, ...)."""
    import re
    from pathlib import Path
    formulas = {"000.eq2", "000.eq9", "000.eq11", "000.eq5.kernel_predicts_order", "000.theorem1.chain_a",
                "000.theorem1.chain_b", "001.bandwidth_grows_with_w"}
    papers = Path(__file__).resolve().parents[2] / "shared" / "papers"
    if not papers.is_dir():
        pytest.skip(f"the papers' text is not at {papers}")

    def norm(t):
        return re.sub(r"[^a-z0-9]+", "", t.lower())
    texts = {p.name[:3]: norm(p.read_text()) for p in papers.glob("*.txt")}
    checked = 0
    for id_, entry in PAPER_VALUES.items():
        if "quote" not in entry or id_ in formulas:
            continue
        for part in entry["quote"].split("[...]"):
            assert norm(part) in texts[entry["paper"]], f"{id_}: not the paper's words: {part[:80]!r}"
        checked += 1
    assert checked >= 20


def test_add_builds_one_entry_and_refuses_a_duplicate(monkeypatch):
    """`_add` fills PAPER_VALUES at import time (mutation testing cannot see that run): called here on an empty table."""
    import inrlib.research.papers as C
    monkeypatch.setattr(C, "PAPER_VALUES", {})
    C._add("000.fig9.x", "paper 000, Fig. 9", "a statement", 3.5, "dB")
    C._add("002.claim", "paper 002, Sec. 3", "a sentence", quote="the words")
    assert C.PAPER_VALUES == {
        "000.fig9.x": {"paper": "000", "source": "paper 000, Fig. 9", "statement": "a statement", "value": 3.5, "unit": "dB"},
        "002.claim": {"paper": "002", "source": "paper 002, Sec. 3", "statement": "a sentence", "value": None, "unit": "",
                      "quote": "the words"}}
    with pytest.raises(ValueError, match=r"^duplicate paper value id '000\.fig9\.x'$"):
        C._add("000.fig9.x", "elsewhere", "again")
