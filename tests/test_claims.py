"""The papers' values (inrlib.research.claims) and reading spectra against the floor (inrlib.spectra)."""
import math

import numpy as np
import pytest

from inrlib.research.claims import (CLAIM_FIELDS, PAPER_VALUES, VERDICTS, check_claims, claim, paper_value,
                           verdict_counts, verdict_from_difference)
from inrlib.spectra import compare_at, log10_ratio, mean_log_spectrum, percentile_eigenvalue, resolved_fraction


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


def test_spectrum_comparisons_against_the_floor():
    a = np.array([10.0, 1.0, 1e-3])
    b = np.array([10.0, 1e-2, 1e-9])
    assert percentile_eigenvalue(a, 0) == 1e-3 and percentile_eigenvalue(a, 50) == 1.0
    with pytest.raises(ValueError, match="percentile"):
        percentile_eigenvalue(a, 120)
    exact = compare_at(a, 1e-12, b, 1e-12, 0)
    assert exact["kind"] == "exact" and exact["value"] == pytest.approx(6.0)
    low = compare_at(a, 1e-12, b, 1e-6, 0)                      # b's minimum is noise: at least 3 orders
    assert low["kind"] == "lower bound" and low["value"] == pytest.approx(3.0)
    up = compare_at(b, 1e-6, a, 1e-12, 0)
    assert up["kind"] == "upper bound" and up["value"] == pytest.approx(-3.0)
    assert compare_at(b, 1e-6, b, 1e-6, 0)["kind"] == "noise" and math.isnan(compare_at(b, 1e-6, b, 1e-6, 0)["value"])
    assert compare_at(a, 0, b, 0, 50)["value"] == pytest.approx(2.0)
    assert log10_ratio(1, 0) != log10_ratio(1, 0) and log10_ratio(100, 1) == pytest.approx(2)
    assert mean_log_spectrum(a, 1e-12) == pytest.approx(np.mean([1, 0, -3]))
    assert mean_log_spectrum(a, 1e-12, mask=np.array([True, True, False])) == pytest.approx(0.5)
    assert resolved_fraction(b, 1e-6) == pytest.approx(2 / 3)


def test_spectrum_helpers_at_their_boundaries():
    """Edges the comparisons must get right: an eigenvalue exactly at its floor is noise, q = 100 is a
    percentile, an empty selection is NaN, and a mask narrows the floor's selection, never widens it."""
    ev = np.array([4.0, 2.0, 1.0])
    assert percentile_eigenvalue(ev, 100) == 4.0 and percentile_eigenvalue(ev, 0) == 1.0
    with pytest.raises(ValueError):
        percentile_eigenvalue(ev, 100.5)
    with pytest.raises(ValueError):
        percentile_eigenvalue(ev, -0.5)
    assert math.isnan(log10_ratio(0.0, 1.0)) and math.isnan(log10_ratio(1.0, 0.0))
    at_floor = compare_at(np.array([1.0]), 1.0, np.array([10.0]), 1e-9, 0)      # A exactly at its floor
    assert at_floor == {"value": pytest.approx(-1.0), "kind": "upper bound", "a": 1.0, "b": 10.0,
                        "a_below_floor": True, "b_below_floor": False}
    b_floor = compare_at(np.array([10.0]), 1e-9, np.array([1.0]), 1.0, 0)
    assert b_floor["kind"] == "lower bound" and b_floor["b_below_floor"] and not b_floor["a_below_floor"]
    assert mean_log_spectrum(np.array([100.0, 1.0]), 1.0) == pytest.approx(2.0)          # 1.0 is at the floor
    assert mean_log_spectrum(np.array([100.0, 10.0, 0.1]), 1.0, mask=np.array([False, True, True])) == pytest.approx(1.0)
    assert math.isnan(mean_log_spectrum(np.array([0.5, 0.1]), 1.0))
    assert math.isnan(mean_log_spectrum(np.array([100.0]), 1.0, mask=np.array([False])))
    assert resolved_fraction(np.array([2.0, 1.0]), 1.0) == 0.5
    assert math.isnan(resolved_fraction(np.array([]), 1.0))


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


def test_mean_resampled_is_the_log_mean_of_clipped_resampled_spectra():
    """Two spectra of 3 values resampled to 5 (log10-linear): by hand, then the mean, percentiles and floor."""
    from inrlib.spectra import mean_resampled
    a = ([100.0, 10.0, 1.0], 0.0)                 # log10: 2, 1, 0 -> 2, 1.5, 1, 0.5, 0
    b = ([1000.0, 1.0, 0.0], 0.1)                 # the 0 is clipped to the smallest positive, 1: 3, 0, 0
    r = mean_resampled([a, b], length=5)
    la = np.array([2, 1.5, 1, 0.5, 0])
    lb = np.array([3, 1.5, 0, 0, 0])
    np.testing.assert_allclose(np.log10(r["mean"]), (la + lb) / 2, atol=1e-12)
    mn, mx = np.minimum(la, lb), np.maximum(la, lb)             # percentiles of two values interpolate
    np.testing.assert_allclose(np.log10(r["lo"]), mn + 0.1 * (mx - mn), atol=1e-12)
    np.testing.assert_allclose(np.log10(r["hi"]), mn + 0.9 * (mx - mn), atol=1e-12)
    assert r["n"] == 2 and r["floor"] == pytest.approx(10 ** ((math.log10(1.0) + math.log10(1.0)) / 2))
    r2 = mean_resampled([([100.0, 10.0, 1e-3], 0.5)], length=3)   # a floor above the smallest value clips to it
    np.testing.assert_allclose(np.log10(r2["mean"]), [2, 1, math.log10(0.5)], atol=1e-12)
    assert r2["floor"] == pytest.approx(0.5) and mean_resampled([]) is None
    assert mean_resampled([([3.0, 1.0], 0.0)])["mean"].shape == (8000,)


def test_ordered_fraction_counts_resolved_and_strictly_ordered_indices():
    from inrlib.spectra import ordered_fraction
    curves = {"mpe": {"mean": np.array([9.0, 8, 7, 6]), "floor": 1.0},
              "ffe": {"mean": np.array([5.0, 8, 2, 0.5]), "floor": 1.0},
              "base": {"mean": np.array([4.0, 3, 2, 0.1]), "floor": 1.0}}
    r = ordered_fraction(curves, ["mpe", "ffe", "base"])
    # resolved: index 0, 1, 2 (index 3 below the floor); ordered: 0 and 3 (8 = 8 and 2 = 2 are ties)
    assert r == {"resolved": 0.75, "ordered_resolved": pytest.approx(1 / 3), "ordered_all": 0.5}
    low = ordered_fraction({k: {**v, "floor": 100.0} for k, v in curves.items()}, ["mpe", "ffe", "base"])
    assert low["resolved"] == 0.0 and math.isnan(low["ordered_resolved"]) and low["ordered_all"] == 0.5
