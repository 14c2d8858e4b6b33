"""The ImageNet study: photos, the ensemble task, Fig. 5a's mean spectra, the claims, Optuna re-tuning."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from inrlib.book.studies import imagenet as I
from inrlib.ntk import resample_spectrum
from inrlib.research.experiments import RunConfig
from inrlib.research.papers import TABLE2
from inrlib.research.tuning import tune

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def test_bundled_photos_and_a_seeded_subset():
    photos = I.image_list()
    assert len(photos) == 20 and all(isinstance(p["id"], int) and p["label"] for p in photos)
    a, b = I.image_list(n_images=4, seed=1), I.image_list(n_images=4, seed=1)
    assert a == b and len(a) == 4 and a != I.image_list(n_images=4, seed=2)
    ids = [p["id"] for p in photos]
    assert [ids.index(p["id"]) for p in a] == sorted(ids.index(p["id"]) for p in a)    # kept in file order
    with pytest.raises(ValueError, match="imagenet_root"):
        I.image_list(n_images=21)


def test_a_local_imagenet_folder_gives_one_photo_per_synset(tmp_path):
    for k, syn in enumerate(["n01440764", "n01443537", "n01484850"]):
        (tmp_path / "val" / syn).mkdir(parents=True)
        for j in range(3):
            Image.fromarray(np.full((9, 7, 3), 40 * k + j, np.uint8)).save(tmp_path / "val" / syn / f"{j}.JPEG")
    photos = I.image_list(str(tmp_path), n_synsets=2, seed=0)
    assert len(photos) == 2 and len({p["id"] for p in photos}) == 2
    assert all(p["path"].startswith(str(tmp_path / "val" / p["id"])) for p in photos)


def tiny(name: str) -> dict:
    cfg = TABLE2[name].replace(hidden=(16, 16), epochs=3)
    if name == "mpe":
        cfg = cfg.replace(encoding={"resolutions": [5, 11]})
    return cfg.to_dict()


def test_imagenet_task_scores_each_photo_against_its_own_truth():
    paths = [p["path"] for p in I.image_list(n_images=2, seed=0)]
    out = I.imagenet_task("mpe-0", tiny("mpe"), paths, 8, [0, 1], ntk_epochs=[1, 3])
    assert len(out) == 2 and out[0]["path"] == paths[0]
    for r in out:
        assert sorted(e for e in r["snapshots"] if "spectra" in r["snapshots"][e]) == [1, 3]
        mse = float(np.mean((r["prediction"].astype(np.float64) - r["truth"]) ** 2))
        assert r["psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
        assert 0 < r["msssim"] <= 1 and r["msssim_scales"] >= 1
        assert r["prediction"].shape == r["truth"].shape == (8, 8, 3)
        np.testing.assert_allclose(r["history"]["psnr"][-1], r["psnr"], rtol=1e-4)   # fit's own full-data PSNR
        assert r["n_heldout"] == 15 * 15 - 8 * 8 and math.isfinite(r["psnr_heldout"])
    assert not np.array_equal(out[0]["truth"], out[1]["truth"])


def fake_run(ev, floor, epoch=10, psnr=30.0):
    return {"snapshots": {epoch: {"spectra": {"total": np.asarray(ev, float)}, "floors": {"total": floor}}},
            "psnr": psnr}


def test_mean_spectra_is_the_mean_log_of_the_resampled_spectra():
    a = np.logspace(0, -6, 50)
    b = np.logspace(1, -4, 80)
    b[-5:] = 1e-20                                       # below its floor: clipped to it
    runs = [fake_run(a, 1e-12), fake_run(b, 1e-9)]
    m = I.mean_spectra(runs, 10, length=200)
    expect = 10 ** ((np.log10(resample_spectrum(a, 200, floor=1e-6)) + np.log10(resample_spectrum(b, 200, floor=1e-9))) / 2)
    np.testing.assert_allclose(m["mean"], expect, rtol=1e-12)
    assert m["n"] == 2 and m["floor"] == pytest.approx(10 ** ((-6 - 9) / 2))
    assert np.all(m["lo"] <= m["mean"]) and np.all(m["mean"] <= m["hi"])
    assert I.mean_spectra(runs, 99) is None


def test_spectrum_order_counts_only_resolved_indices():
    x = np.arange(10.0)
    curves = {"mpe": {"mean": 10 ** (-x), "floor": 1e-20}, "ffe": {"mean": 10 ** (-x - 1), "floor": 1e-20},
              "baseline": {"mean": 10 ** (-x - 2), "floor": 10 ** -8.5}}
    curves["ffe"]["mean"][0] = 10.0                      # one index out of order
    res = I.spectrum_order(curves)
    assert res["resolved"] == pytest.approx(0.7)         # baseline above its floor at x = 0..6
    assert res["ordered_resolved"] == pytest.approx(6 / 7) and res["ordered_all"] == pytest.approx(0.9)


def test_claims_follow_the_stated_rules():
    rows = [{"encoding": n, "label": n, "setting": "-", "images": 4, "diverged": 0, "psnr_mean": p, "psnr_std": 1.0,
             "psnr_min": p - 1, "psnr_max": p + 1, "msssim_mean": s, "msssim_std": 0.1, "msssim_min": s, "msssim_max": s}
            for n, p, s in (("mpe", 45.0, 0.5), ("ffe", 31.0, 0.40), ("baseline", 20.0, 0.30))]
    images = [{"order_holds": True}] * 3 + [{"order_holds": False}]
    claims = {c["id"]: c for c in I.imagenet_claims(rows, images, {"resolved": 0.8, "ordered_resolved": 0.95,
                                                                  "ordered_all": 0.8}, "ctx")}
    assert claims["000.table2.psnr.mpe"]["verdict"] == "holds"             # 45.0 vs 45.28
    assert claims["000.table2.psnr.ffe"]["verdict"] == "approximately"     # 31.0 vs 33.47
    assert claims["000.table2.psnr.baseline"]["verdict"] == "differs"      # 20.0 vs 29.94
    assert claims["000.table1.imagenet_msssim.mpe"]["verdict"] == "differs"  # 0.5 vs 0.79
    assert claims["000.table1.imagenet_msssim.ffe"]["verdict"] == "holds"    # 0.40 vs 0.39
    assert claims["000.table2.psnr_order"]["verdict"] == "approximately" and claims["000.table2.psnr_order"]["ours"] == 0.75
    assert claims["000.fig5a.order"]["verdict"] == "holds"
    none = {c["id"]: c for c in I.imagenet_claims(rows, images, None, "ctx")}
    assert none["000.fig5a.order"]["verdict"] == "not tested"


def test_search_space_draws_valid_configs():
    import optuna
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        ch = I.suggest(trial, "multigrid")
        cfg = TABLE2["mpe"].replace(**ch)
        res = cfg.encoding["resolutions"]
        assert 1 <= len(res) <= 3 and res == sorted(res) and 8 <= res[0] and res[-1] <= 512
        assert 1 <= cfg.encoding["features"] <= 3 and 0.01 <= cfg.lr <= 300 and 8 <= cfg.batch_size <= 256
        study.tell(trial, 0.0)


def test_an_interrupted_study_resumes_from_its_sqlite_file(tmp_path):
    """Two trials finish, the third is interrupted; a second call runs only the missing three of five,
    and the first two trials are the ones stored in the file."""
    base = RunConfig(name="quad", model={"encoding": {"type": "identity"}, "hidden": [4]}, lr=1.0)
    calls = []

    def objective(cfg):
        calls.append(cfg.lr)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return -(math.log10(cfg.lr) - 0.3) ** 2

    space = lambda t: {"lr": t.suggest_float("lr", 0.01, 100, log=True)}  # noqa: E731
    path = tmp_path / "study.sqlite3"
    with pytest.raises(KeyboardInterrupt):
        tune(objective, base, space, n_trials=5, storage=path)
    first = tune(lambda cfg: (_ for _ in ()).throw(AssertionError("should not run")), base, space, n_trials=2,
                 storage=path)
    assert first["n_finished"] == 2 and [t["params"]["lr"] for t in first["trials"][:2]] == calls[:2]
    res = tune(objective, base, space, n_trials=5, storage=str(path))
    assert res["n_finished"] == 5 and len(calls) == 6
    assert [t["state"] for t in res["trials"]].count("complete") == 5
    best = max((t for t in res["trials"] if t["state"] == "complete"), key=lambda t: t["value"])
    assert res["best_config"]["lr"] == pytest.approx(best["params"]["lr"]) and res["storage"].startswith("sqlite:///")


def test_a_diverged_trial_is_pruned(tmp_path):
    base = RunConfig(name="nan", model={"encoding": {"type": "identity"}, "hidden": [4]})
    res = tune(lambda cfg: float("nan") if cfg.lr > 1 else 1.0, base,
               lambda t: {"lr": t.suggest_float("lr", 0.1, 10, log=True)}, n_trials=6, storage=tmp_path / "s.db", seed=3)
    states = {t["state"] for t in res["trials"]}
    assert states <= {"complete", "pruned"} and res["n_finished"] == 6
    assert all((t["state"] == "pruned") == (t["params"]["lr"] > 1) for t in res["trials"])


def test_tune_task_runs_a_tiny_study(tmp_path):
    res = I.tune_task("ffe", "camera", 8, 2, 2, str(tmp_path / "t.sqlite3"))
    assert res["n_finished"] == 2 and res["best_config"]["encoding"]["type"] == "fourier"
    assert 1 <= res["best_config"]["encoding"]["levels"] <= 16


# ----------------------------------------------------------------------------- gaps found by mutation testing
def test_table2_configs_read_the_learning_rate_two_ways():
    printed = I.table2_configs("printed", 7)
    summed = I.table2_configs("summed", 7, channels=3)
    assert [c.name for c in printed] == ["mpe", "ffe", "baseline"] and all(c.epochs == 7 for c in printed)
    assert [c.lr for c in printed] == [c.lr for c in TABLE2.values()]
    assert [c.lr for c in summed] == pytest.approx([0.3932 * 30, 0.3865 * 276, 0.2394 * 30])
    assert [c.lr for c in I.table2_configs("summed", 7, channels=1)] == pytest.approx([3.932, 0.3865 * 92, 2.394])
    assert summed[1].note == "lr x batch x channels (a summed loss): 106.7 (Table 2: 0.3865); 7 epochs"
    assert printed[0].note == "lr as printed, mean-reduced loss: 0.3932 (Table 2: 0.3932); 7 epochs"
    with pytest.raises(ValueError, match=r"^reading must be one of \['printed', 'summed'\], got 'mean'$"):
        I.table2_configs("mean", 7)


def _run(psnr, msssim, *, heldout=None, diverged=None, scales=5):
    r = {"config": {"label": "MPE", "encoding": {"type": "multigrid", "resolutions": [8, 16], "features": 2},
                    "lr": 0.4, "batch_size": 10, "epochs": 30},
         "psnr": psnr, "msssim": msssim, "diverged": diverged, "msssim_scales": scales}
    if heldout is not None:
        r["psnr_heldout"] = heldout
    return r


def test_summarize_gives_mean_std_min_max_over_the_photos_that_finished():
    runs = [_run(30.0, 0.9, heldout=25.0), _run(34.0, 0.7, heldout=27.0, scales=4),
            _run(float("nan"), float("nan"), diverged={"epoch": 3}, scales=0)]
    (row,) = I.summarize({"mpe": runs})
    assert row == {"encoding": "mpe", "label": "MPE", "setting": "8, 16 nodes per side, k = 2", "lr": 0.4,
                   "batch_size": 10, "epochs": 30, "images": 3, "diverged": 1,
                   "psnr_mean": 32.0, "psnr_std": pytest.approx(math.sqrt(8.0)), "psnr_min": 30.0, "psnr_max": 34.0,
                   "msssim_mean": pytest.approx(0.8), "msssim_std": pytest.approx(math.sqrt(0.02)),
                   "msssim_min": 0.7, "msssim_max": 0.9,
                   "heldout_mean": 26.0, "heldout_std": pytest.approx(math.sqrt(2.0)), "heldout_min": 25.0,
                   "heldout_max": 27.0, "msssim_scales": [4, 5]}
    (one,) = I.summarize({"mpe": [_run(30.0, 0.9)]})
    assert one["psnr_std"] == 0.0 and math.isnan(one["heldout_mean"]) and math.isnan(one["heldout_std"])
    assert math.isnan(one["heldout_min"]) and math.isnan(one["heldout_max"]) and one["diverged"] == 0


def test_per_image_rows_and_the_psnr_order():
    res = {"mpe": [_run(35.0, 0.9), _run(30.0, 0.8)], "ffe": [_run(33.0, 0.85), _run(31.0, 0.7)],
           "baseline": [_run(29.0, 0.5), _run(29.5, 0.6)]}
    rows = I.per_image(res, ["cat", "dog"])
    assert rows[0] == {"image": "cat", "psnr_mpe": 35.0, "msssim_mpe": 0.9, "psnr_ffe": 33.0, "msssim_ffe": 0.85,
                       "psnr_baseline": 29.0, "msssim_baseline": 0.5, "order_holds": True}
    assert rows[1]["order_holds"] is False and rows[1]["image"] == "dog"
    assert "order_holds" not in I.per_image({"mpe": res["mpe"]}, ["cat", "dog"])[0]


def test_space_rows_describe_the_search_space():
    rows = I.space_rows()
    assert rows[0] == {"encoding": "all", "parameter": "lr", "range": "0.01 to 300", "scale": "log-uniform"}
    assert rows[1] == {"encoding": "all", "parameter": "batch_size", "range": "8 to 256", "scale": "log-uniform integers"}
    assert {"encoding": "fourier", "parameter": "levels", "range": "1 to 16", "scale": "uniform integers"} in rows
    assert len(rows) == sum(len(v) for v in I.SEARCH_SPACE.values())


def test_claim_notes_word_for_word_and_the_order_rules():
    rows = [{"encoding": n, "label": n.upper(), "setting": "S", "images": 5, "diverged": d, "psnr_mean": p,
             "psnr_std": 1.25, "psnr_min": p - 2, "psnr_max": p + 2, "msssim_mean": s, "msssim_std": 0.125,
             "msssim_min": s - 0.1, "msssim_max": s + 0.1}
            for n, p, s, d in (("mpe", 40.0, 0.6, 1), ("ffe", 35.0, 0.4, 0), ("baseline", 30.0, 0.3, 0))]
    order = {"resolved": 0.8, "ordered_resolved": 0.6, "ordered_all": 0.45}
    imgs = [{"order_holds": True}] * 9 + [{"order_holds": False}, {"image": "x"}]       # 90 % of the judged ones
    cl = {c["id"]: c for c in I.imagenet_claims(rows, imgs, order, "CTX.")}
    assert cl["000.table2.psnr.mpe"]["note"] == ("MPE (S), mean over 4 photos, spread 1.2 (min 38.0, max 42.0); "
                                                 "1 diverged. CTX.")
    assert cl["000.table1.imagenet_msssim.ffe"]["note"] == "FFE (S), mean over 5 photos, spread 0.12 (min 0.30, max 0.50). CTX."
    o = cl["000.table2.psnr_order"]
    assert o["verdict"] == "holds" and o["ours"] == 0.9 and o["unit"] == "fraction of photos"
    assert o["note"] == ("mean PSNR MPE 40.0, FFE 35.0, baseline 30.0 dB (MPE lead +5.0 dB; Table 2: 45.28, 33.47, "
                         "29.94 dB); MPE > FFE > baseline on 90% of the photos. Holds when the means are so ordered "
                         "and the order holds on >= 90 % of the photos. CTX.")
    f = cl["000.fig5a.order"]
    assert f["verdict"] == "approximately" and f["unit"] == "fraction of indices"
    assert f["note"] == ("the mean end-of-training spectra are ordered MPE > FFE > baseline at 60% of the indices "
                         "resolved in all three (80% of all; 45% of all indices counting the floor-clipped ones). Holds "
                         "at >= 90 %, approximately at >= 50 %. CTX.")
    for frac, verdict in ((0.5, "approximately"), (0.49, "fails")):
        got = {c["id"]: c for c in I.imagenet_claims(rows, imgs, {**order, "ordered_resolved": frac}, "")}
        assert got["000.fig5a.order"]["verdict"] == verdict
    swapped = [dict(r, psnr_mean=r["psnr_mean"] if r["encoding"] != "ffe" else 41.0) for r in rows]
    assert {c["id"]: c for c in I.imagenet_claims(swapped, imgs, order, "")}["000.table2.psnr_order"]["verdict"] \
        == "approximately"                                                  # photos ordered, means not
    few = [{"order_holds": True}, {"order_holds": False}, {"order_holds": False}]
    assert {c["id"]: c for c in I.imagenet_claims(swapped, few, order, "")}["000.table2.psnr_order"]["verdict"] == "fails"
    missing = {c["id"]: c for c in I.imagenet_claims(rows[:2], imgs, {**order, "ordered_resolved": float("nan")}, "C.")}
    assert missing["000.table2.psnr.baseline"]["note"] == "no trained network for baseline. C."
    assert missing["000.table2.psnr_order"]["note"] == "an encoding is missing. C."
    assert missing["000.fig5a.order"]["note"] == ("no end-of-training spectra for all three encodings (or none "
                                                  "resolved). C.")


def test_bundled_photo_labels_ids_bounds_and_the_default_seed():
    from inrlib.data import IMAGENET_CLASS_NAMES
    photos = I.image_list()
    assert [p["label"] for p in photos] == [IMAGENET_CLASS_NAMES[p["id"]] for p in photos]
    assert photos[0]["id"] == 243 and photos[0]["label"] == "bull mastiff"
    assert I.image_list(n_images=5) == I.image_list(n_images=5, seed=0)
    keep = sorted(np.random.default_rng(3).choice(20, 5, replace=False))
    assert I.image_list(n_images=5, seed=3) == [photos[i] for i in keep]
    assert I.image_list(n_images=20, seed=4) == photos            # every photo once: drawn without replacement
    assert len(I.image_list(n_images=1)) == 1
    for bad in (0, 21):
        with pytest.raises(ValueError) as err:
            I.image_list(n_images=bad)
        assert str(err.value) == (f"n_images must be between 1 and 20 (the bundled photos), got {bad}; "
                                  "for more photos pass imagenet_root (a local ImageNet folder)")


def test_a_local_imagenet_folder_is_sampled_with_the_papers_100_synsets_by_default(monkeypatch):
    from pathlib import Path

    import inrlib.data as D
    calls = []
    monkeypatch.setattr(D, "sample_imagenet", lambda root, n, seed: calls.append((root, n, seed)) or
                        [(Path("/in/n02/x.JPEG"), "n02"), (Path("/in/n07/y.JPEG"), "n07")])
    assert I.image_list("/in") == [{"path": "/in/n02/x.JPEG", "label": "n02", "id": "n02"},
                                   {"path": "/in/n07/y.JPEG", "label": "n07", "id": "n07"}]
    I.image_list("/in", n_synsets=7, seed=5)
    assert calls == [("/in", 100, 0), ("/in", 7, 5)]


def test_imagenet_task_measures_the_end_diverges_cleanly_and_keeps_float32_kernels():
    paths = [p["path"] for p in I.image_list(n_images=1, seed=0)]
    # a kernel at epoch 1 only: the final prediction must come from the "end" measurement, not a kernel epoch
    r, = I.imagenet_task("ffe-0", tiny("ffe"), paths, 8, [0], ntk_epochs=[1], ntk_dtype="float32")
    assert r["name"] == "ffe-0" and r["path"] == paths[0] and r["shape"] == (8, 8, 3)
    assert r["prediction"].dtype == np.float32 and r["truth"].dtype == np.float32
    ev = r["snapshots"][1]["spectra"]["total"]
    eps32 = float(np.finfo(np.float32).eps)           # a float64 kernel's floor would be 5e8 times lower
    assert r["snapshots"][1]["floors"]["total"] == pytest.approx(64 * eps32 * max(abs(ev[0]), abs(ev[-1])), rel=1e-6)
    # all 15 x 15 - 8 x 8 between-pixels even when they outnumber image_split's default of 1024 (side 24)
    big, = I.imagenet_task("ffe-0", {**tiny("ffe"), "epochs": 1}, paths, 24, [0], ntk_epochs=[1])
    assert big["n_heldout"] == 47 * 47 - 24 * 24
    bad = {**tiny("mpe"), "lr": 1e12}
    out = I.imagenet_task("mpe-0", bad, paths, 8, [2], ntk_epochs=[3])
    d = out[0]
    assert d["diverged"] is not None and d["prediction"] is None and d["msssim_scales"] == 0
    assert all(math.isnan(d[k]) for k in ("psnr", "msssim", "psnr_heldout")) and d["n_heldout"] == 161
    assert d["name"] == "mpe-0" and d["shape"] == (8, 8, 3)
    with pytest.raises(ValueError) as err:
        I.imagenet_task("x", tiny("ffe"), paths, 8, [0], ntk_epochs=[1], ntk_dtype="float16")
    assert str(err.value) == "ntk_dtype must be 'float64' or 'float32', got 'float16'"
    with pytest.raises(ValueError) as err:
        I.imagenet_task("x", tiny("ffe"), paths, 8, [0, 1], ntk_epochs=[1])
    assert str(err.value) == "one seed per image: 1 images, 2 seeds"


def test_ms_ssim_scores_the_prediction_clamped_to_the_unit_range():
    import torch

    from inrlib.metrics import ms_ssim
    rng = np.random.default_rng(0)
    truth = rng.random((48, 48, 3)).astype(np.float32)
    pred = (truth + rng.normal(0, 0.4, truth.shape)).astype(np.float32)     # well outside [0, 1] in places
    assert pred.min() < -0.2 and pred.max() > 1.2
    from inrlib.book.studies.common import ms_ssim_clamped
    value, scales = ms_ssim_clamped(pred, truth)
    ref, ref_scales = ms_ssim(torch.from_numpy(np.clip(pred, 0, 1)).double().permute(2, 0, 1)[None],
                              torch.from_numpy(truth).double().permute(2, 0, 1)[None], return_scales=True)
    assert value == pytest.approx(float(ref), rel=1e-12) and scales == int(ref_scales)


def test_suggest_draws_each_parameter_on_its_stated_scale_and_builds_grids():
    from inrlib.encodings import grid_resolutions

    class Trial:
        def __init__(self, values):
            self.values, self.calls = values, []

        def suggest_float(self, p, lo, hi, log=False):
            self.calls.append((p, "float", lo, hi, log))
            return self.values[p]

        def suggest_int(self, p, lo, hi, log=False):
            self.calls.append((p, "int", lo, hi, log))
            return self.values[p]

    t = Trial({"lr": 0.5, "batch_size": 16, "features": 2, "levels": 3, "min_resolution": 2, "max_resolution": 2})
    changes = I.suggest(t, "multigrid")
    assert t.calls == [tuple(row) for row in I.SEARCH_SPACE["common"] + I.SEARCH_SPACE["multigrid"]]
    assert changes == {"lr": 0.5, "batch_size": 16,
                       "encoding": {"features": 2, "resolutions": grid_resolutions(2, 2, 3, "log")}}
    t = Trial({"lr": 1.0, "batch_size": 8, "features": 1, "levels": 2, "min_resolution": 300, "max_resolution": 20})
    assert I.suggest(t, "multigrid")["encoding"]["resolutions"] == grid_resolutions(20, 300, 2, "log")
    t = Trial({"lr": 1.0, "batch_size": 8, "levels": 5})
    assert I.suggest(t, "fourier") == {"lr": 1.0, "batch_size": 8, "encoding": {"levels": 5}}
    assert I.suggest(Trial({"lr": 2.0, "batch_size": 9}), "identity") == {"lr": 2.0, "batch_size": 9}


def test_tune_task_scores_the_final_psnr_of_a_seeded_fit_and_names_its_study(monkeypatch):
    import inrlib.research.experiments as E
    import inrlib.research.tuning as TU
    import inrlib.train as T
    from inrlib.data import load_image
    seen = {}

    def fake_tune(objective, base, space, *, n_trials, storage, study_name, seed):
        seen.update(n_trials=n_trials, storage=storage, study_name=study_name, seed=seed, base=base)
        seen["score"] = objective(base)
        return {"ok": True}

    monkeypatch.setattr(TU, "tune", fake_tune)
    assert I.tune_task("ffe", "camera", 8, 2, 3, "/tmp/s.sqlite3") == {"ok": True}
    assert seen["study_name"] == "imagenet-ffe-8px-2ep-seed0" and seen["seed"] == 0
    assert seen["storage"] == "/tmp/s.sqlite3" and seen["n_trials"] == 3 and seen["base"].epochs == 2
    coords, targets, _ = load_image("camera", 8)
    model = E.build_model(seen["base"], 2, int(targets.shape[1]), 0)
    h = T.fit(model, coords, targets, **seen["base"].train_settings, seed=0, progress=False)
    assert seen["score"] == h.psnr[-1] and seen["score"] != h.psnr[-2]
    I.tune_task("ffe", "camera", 8, 2, 3, "/tmp/s.sqlite3", seed=4)
    assert seen["study_name"] == "imagenet-ffe-8px-2ep-seed4" and seen["seed"] == 4

    def diverge(*a, **k):
        raise T.TrainingDiverged("boom", history=None, epoch=1, lr=1.0, optimizer="sgd", loss_value=float("inf"))

    monkeypatch.setattr(T, "fit", diverge)
    I.tune_task("ffe", "camera", 8, 2, 3, "/tmp/s.sqlite3")
    assert math.isnan(seen["score"])


def test_final_prediction_is_float32_on_the_pixels_and_the_heldout_points():
    import torch

    from inrlib.data import image_split
    d = image_split(I.image_list(n_images=1)[0]["path"], 6, heldout=10)
    model = torch.nn.Linear(2, 3)
    assert I._FinalPrediction(d)(model, 3, None, False) is None
    out = I._FinalPrediction(d)(model, 3, None, True)
    assert out["prediction"].dtype == np.float32 and out["prediction"].shape == (6, 6, 3)
    np.testing.assert_allclose(out["heldout"], model(d["held_coords"]).detach().numpy(), rtol=1e-6)
