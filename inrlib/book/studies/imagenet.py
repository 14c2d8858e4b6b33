r"""Paper 000's ImageNet study (Section 5 "ImageNet Analysis", Table 2, Table 1's ImageNet columns,
Fig. 5a): the three Optuna-tuned encodings of Table 2 fitted to many photos.

- :func:`image_list`: the photos: the 20 bundled ImageNet validation photos, or one seeded random
  photo from each of ``n_synsets`` seeded random synsets of a local ImageNet copy;
- :func:`imagenet_task`: one encoding on a group of photos (a sweep task), the photos trained together
  as one ensemble (:func:`inrlib.train.fit_ensemble`), NTK spectra at chosen epochs, the final
  reconstructions, PSNR and MS-SSIM;
- :func:`summarize`, :func:`per_image`, :func:`mean_spectra`, :func:`imagenet_claims`: the tables,
  Fig. 5a's mean spectra and the claim records;
- :data:`SEARCH_SPACE`, :func:`space_rows`, :func:`tune_task`: the Optuna re-tuning.

The resolution rule, the same for every photo: the largest centred square, resized (Lanczos,
antialiased) to ``side x side`` RGB pixels (:func:`inrlib.data.load_image`), all pixels trained on.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ...ntk.spectra import mean_resampled, ordered_fraction
from ...research.claims import claim, verdict_from_difference
from ...research.experiments import RunConfig, run_ensemble
from ...research.papers import PAPER_VALUES, TABLE2
from .common import TOLERANCES, kernel_dtype, ms_ssim_clamped, psnr64, setting_text

__all__ = ["ENCODINGS", "LR_READINGS", "table2_configs", "image_list", "imagenet_task", "summarize", "per_image", "mean_spectra", "spectrum_order",
           "imagenet_claims", "SEARCH_SPACE", "space_rows", "suggest", "tune_task"]

#: Table 2's rows in the paper's order.
ENCODINGS = tuple(TABLE2)


#: How Table 2's learning rates are read: ``"printed"`` uses them as printed with our mean-reduced
#: loss; ``"summed"`` multiplies each by its batch size times the channels (3), the step a loss
#: *summed* over the batch's pixels and channels would take (the paper does not state its reduction).
LR_READINGS = {"printed": "as printed, mean-reduced loss", "summed": "x batch x channels (a summed loss)"}


def table2_configs(reading: str, epochs: int, channels: int = 3) -> list[RunConfig]:
    """Table 2's three configurations for ``epochs`` with their learning rate read as ``reading``
    (:data:`LR_READINGS`); each config's ``note`` says what changed."""
    if reading not in LR_READINGS:
        raise ValueError(f"reading must be one of {sorted(LR_READINGS)}, got {reading!r}")
    out = []
    for c in TABLE2.values():
        lr = c.lr * (c.batch_size * channels if reading == "summed" else 1)
        out.append(c.replace(epochs=int(epochs), lr=float(lr),
                             note=f"lr {LR_READINGS[reading]}: {lr:.4g} (Table 2: {c.lr:g}); {epochs} epochs"))
    return out


def image_list(imagenet_root: str | None = None, n_synsets: int = 100, n_images: int | None = None,
               seed: int = 0) -> list[dict[str, Any]]:
    """The photos of the study as ``[{"path", "label", "id"}]``.

    Without ``imagenet_root``: the 20 bundled ImageNet validation photos
    (:func:`inrlib.data.imagenet_photos`; ``id`` the class index, ``label`` its name), or
    ``n_images`` of them chosen at random with ``seed`` (kept in file order). With it: one random
    photo from each of ``n_synsets`` random synsets (:func:`inrlib.data.sample_imagenet`, seeded;
    ``id`` and ``label`` the synset), as the paper did with 100.
    """
    from ...data import IMAGENET_CLASS_NAMES, imagenet_photos, sample_imagenet

    if imagenet_root:
        return [{"path": str(p), "label": syn, "id": syn} for p, syn in sample_imagenet(imagenet_root, n_synsets, seed)]
    photos = [{"path": str(p), "label": IMAGENET_CLASS_NAMES[c], "id": int(c)} for p, c in imagenet_photos()]
    if n_images is not None:
        if not 1 <= int(n_images) <= len(photos):
            raise ValueError(f"n_images must be between 1 and {len(photos)} (the bundled photos), got {n_images}; "
                             "for more photos pass imagenet_root (a local ImageNet folder)")
        keep = sorted(np.random.default_rng(seed).choice(len(photos), int(n_images), replace=False))
        photos = [photos[i] for i in keep]
    return photos


class _FinalPrediction:
    """``measure`` of :func:`inrlib.research.experiments.run_ensemble`: the reconstruction at the last epoch
    and the outputs at the held-out pixels."""

    def __init__(self, data: Mapping[str, Any]):
        self.data = data

    def __call__(self, model, epoch, kernels, final):
        if not final:
            return None
        dev = next(model.parameters()).device
        with torch.no_grad():
            pred = model(self.data["coords"].to(dev)).detach().cpu()
            held = model(self.data["held_coords"].to(dev)).detach().cpu()
        return {"prediction": pred.numpy().reshape(self.data["shape"]).astype(np.float32), "heldout": held.numpy()}


def imagenet_task(name: str, config: Mapping[str, Any], images: Sequence[str], side: int, seeds: Sequence[int],
                  ntk_epochs: Sequence[int], device: str = "cpu", ntk_dtype: str = "float64") -> list[dict[str, Any]]:
    """One encoding on a group of photos (a sweep task; arguments are plain data).

    Photo ``i`` (a path) is loaded at ``side x side`` RGB and fitted by ``config`` built with
    ``seeds[i]``; the photos train together as one ensemble (each its own network, data and
    shuffling). At ``ntk_epochs`` the float64 NTK of each network on its photo's pixels gives the
    spectrum (``"total"``) and its rounding floor. Returns one result per photo: :func:`run`'s
    fields plus ``name``, ``path``, ``shape``, ``truth``, ``prediction`` (final), ``psnr`` (of the
    final output against the photo, all pixels), ``psnr_heldout`` (at pixels halfway between the
    training pixels, all of them, read from the photo at ``2 side - 1`` px: :func:`inrlib.data.image_split`),
    ``msssim`` and ``msssim_scales`` (of the output clamped to ``[0, 1]``), ``NaN`` for a network
    that diverged.
    """
    from ...data import image_split
    dtype = kernel_dtype(ntk_dtype)
    if len(images) != len(seeds):
        raise ValueError(f"one seed per image: {len(images)} images, {len(seeds)} seeds")
    cfg = RunConfig.from_dict(config)
    loaded = [image_split(p, int(side), heldout=(2 * int(side) - 1) ** 2) for p in images]   # all between-pixels
    results = run_ensemble(cfg, [(d["coords"], d["targets"]) for d in loaded], seeds=list(seeds),
                           ntk_epochs=list(ntk_epochs), measure_epochs="end", measure=[_FinalPrediction(d) for d in loaded],
                           device=device, ntk_dtype=dtype)
    for r, path, d in zip(results, images, loaded):
        truth = d["targets"].numpy().reshape(d["shape"]).astype(np.float32)
        end = r["snapshots"].get(cfg.epochs, {}).get("measure") if r["diverged"] is None else None
        r.update({"name": name, "path": str(path), "shape": d["shape"], "truth": truth,
                  "prediction": end["prediction"] if end else None, "psnr": float("nan"), "msssim": float("nan"),
                  "msssim_scales": 0, "psnr_heldout": float("nan"), "n_heldout": int(d["held_coords"].shape[0])})
        if end:
            r["psnr"] = psnr64(end["prediction"], truth)
            r["msssim"], r["msssim_scales"] = ms_ssim_clamped(end["prediction"], truth)
            if r["n_heldout"]:
                r["psnr_heldout"] = psnr64(end["heldout"], d["held_targets"].numpy())
    return results


# ----------------------------------------------------------------------------------------------
# reading the runs
# ----------------------------------------------------------------------------------------------

def _stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if x == x], dtype=np.float64)
    if not v.size:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "min": float(v.min()),
            "max": float(v.max()), "n": int(v.size)}


def summarize(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per encoding: mean, standard deviation (over photos, ``ddof=1``), min and max of the
    final PSNR, MS-SSIM and held-out PSNR, the number of photos and of diverged networks."""
    rows = []
    for name, runs in results.items():
        cfg = runs[0]["config"]
        p, s = _stats([r["psnr"] for r in runs]), _stats([r["msssim"] for r in runs])
        h = _stats([r.get("psnr_heldout", float("nan")) for r in runs])
        rows.append({"encoding": name, "label": cfg["label"], "setting": setting_text(cfg["encoding"]),
                     "lr": cfg["lr"], "batch_size": cfg["batch_size"], "epochs": cfg["epochs"],
                     "images": len(runs), "diverged": sum(r["diverged"] is not None for r in runs),
                     **{f"psnr_{k}": v for k, v in p.items() if k != "n"},
                     **{f"msssim_{k}": v for k, v in s.items() if k != "n"},
                     **{f"heldout_{k}": v for k, v in h.items() if k != "n"},
                     "msssim_scales": sorted({r["msssim_scales"] for r in runs if r["msssim_scales"]})})
    return rows


def per_image(results: Mapping[str, Sequence[Mapping[str, Any]]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """One row per photo: each encoding's PSNR and MS-SSIM, and whether PSNR orders them MPE > FFE > baseline."""
    names = list(results)
    rows = []
    for i, label in enumerate(labels):
        row: dict[str, Any] = {"image": label}
        for n in names:
            row[f"psnr_{n}"] = results[n][i]["psnr"]
            row[f"msssim_{n}"] = results[n][i]["msssim"]
        if {"mpe", "ffe", "baseline"} <= set(names):
            row["order_holds"] = bool(row["psnr_mpe"] > row["psnr_ffe"] > row["psnr_baseline"])
        rows.append(row)
    return rows


def mean_spectra(runs: Sequence[Mapping[str, Any]], epoch: int, length: int = 8000) -> dict[str, Any] | None:
    """Fig. 5a's curve for one encoding at ``epoch`` (:func:`inrlib.spectra.mean_resampled` of every
    photo's ``"total"`` spectrum there); ``None`` when no photo has one (all diverged before it)."""
    pairs = [(r["snapshots"][epoch]["spectra"]["total"], r["snapshots"][epoch]["floors"]["total"])
             for r in runs if "spectra" in r["snapshots"].get(epoch, {})]
    out = mean_resampled(pairs, length)
    if out is not None:
        out["epoch"] = int(epoch)
    return out


def spectrum_order(curves: Mapping[str, Mapping[str, Any]], order: Sequence[str] = ("mpe", "ffe", "baseline")) -> dict:
    """:func:`inrlib.spectra.ordered_fraction` of the mean spectra, MPE > FFE > baseline by default."""
    return ordered_fraction(curves, order)


def imagenet_claims(rows: Sequence[Mapping[str, Any]], images: Sequence[Mapping[str, Any]],
                    order_end: Mapping[str, Any] | None, context: str) -> list[dict[str, Any]]:
    """The claim records of the ImageNet study.

    Rules, stated here once and on the page: a mean PSNR within 1 dB of Table 2 holds, within 3 dB
    approximately, else differs; MS-SSIM within 0.05 / 0.15 (:data:`inrlib.book.studies.common.TOLERANCES`).
    ``000.table2.psnr_order``: the mean PSNRs ordered MPE > FFE > baseline holds when the order also
    holds on at least 90 % of the photos (approximately: on average only, or on >= 50 %).
    ``000.fig5a.order``: the mean end-of-training spectra ordered MPE > FFE > baseline at >= 90 % of the
    indices resolved in all three holds, >= 50 % approximately, else fails.
    """
    by = {r["encoding"]: r for r in rows}
    out = []
    for n in ENCODINGS:
        r = by.get(n)
        for metric, id_, tol in (("psnr", f"000.table2.psnr.{n}", TOLERANCES["dB"]),
                                 ("msssim", f"000.table1.imagenet_msssim.{n}", TOLERANCES["msssim"])):
            if r is None or r[f"{metric}_mean"] != r[f"{metric}_mean"]:
                out.append(claim(id_, None, "not tested", f"no trained network for {n}. {context}"))
                continue
            mean = r[f"{metric}_mean"]
            fmt = ".1f" if metric == "psnr" else ".2f"
            out.append(claim(id_, mean, verdict_from_difference(mean, PAPER_VALUES[id_]["value"], *tol),
                             f"{r['label']} ({r['setting']}), mean over {r['images'] - r['diverged']} photos, spread "
                             f"{r[f'{metric}_std']:{fmt}} (min {r[f'{metric}_min']:{fmt}}, max {r[f'{metric}_max']:{fmt}})"
                             + (f"; {r['diverged']} diverged" if r["diverged"] else "") + f". {context}"))
    if {"mpe", "ffe", "baseline"} <= set(by):
        means = [by[n]["psnr_mean"] for n in ("mpe", "ffe", "baseline")]
        mean_order = means[0] > means[1] > means[2]
        judged = [i for i in images if "order_holds" in i]
        frac = float(np.mean([i["order_holds"] for i in judged])) if judged else float("nan")
        verdict = ("holds" if mean_order and frac >= 0.9 else "approximately" if mean_order or frac >= 0.5
                   else "fails")
        lead = means[0] - max(means[1], means[2])
        out.append(claim("000.table2.psnr_order", frac, verdict,
                         f"mean PSNR MPE {means[0]:.1f}, FFE {means[1]:.1f}, baseline {means[2]:.1f} dB "
                         f"(MPE lead {lead:+.1f} dB; Table 2: "
                         + ", ".join(f"{PAPER_VALUES[f'000.table2.psnr.{n}']['value']:g}" for n in ("mpe", "ffe", "baseline"))
                         + f" dB); MPE > FFE > baseline on {frac:.0%} of the photos. Holds when the means are so "
                         f"ordered and the order holds on >= 90 % of the photos. {context}", unit="fraction of photos"))
    else:
        out.append(claim("000.table2.psnr_order", None, "not tested", f"an encoding is missing. {context}"))
    if order_end is None or order_end["ordered_resolved"] != order_end["ordered_resolved"]:
        out.append(claim("000.fig5a.order", None, "not tested",
                         f"no end-of-training spectra for all three encodings (or none resolved). {context}"))
    else:
        f = order_end["ordered_resolved"]
        verdict = "holds" if f >= 0.9 else "approximately" if f >= 0.5 else "fails"
        out.append(claim("000.fig5a.order", f, verdict,
                         f"the mean end-of-training spectra are ordered MPE > FFE > baseline at {f:.0%} of the indices "
                         f"resolved in all three ({order_end['resolved']:.0%} of all; {order_end['ordered_all']:.0%} of all "
                         f"indices counting the floor-clipped ones). Holds at >= 90 %, approximately at >= 50 %. {context}",
                         unit="fraction of indices"))
    return out


# ----------------------------------------------------------------------------------------------
# re-tuning (paper 000 tuned Table 2 with Optuna: 30 trials, maximizing PSNR)
# ----------------------------------------------------------------------------------------------

#: The search space, per encoding type: ``(parameter, kind, low, high, log)``. The paper says only
#: that the tuner chose "learning rate, batch size, and encoding specific parameters"; the ranges
#: are ours, wide around Table 2's values (the learning rate's covers both of :data:`LR_READINGS`), and the grid is
#: limited as Table 4 limits its grids
#: (at most 3 levels and 3 features per node).
SEARCH_SPACE: dict[str, list[tuple[str, str, float, float, bool]]] = {
    "common": [("lr", "float", 0.01, 300.0, True), ("batch_size", "int", 8, 256, True)],
    "identity": [],
    "fourier": [("levels", "int", 1, 16, False)],
    "multigrid": [("features", "int", 1, 3, False), ("levels", "int", 1, 3, False),
                  ("min_resolution", "int", 8, 128, True), ("max_resolution", "int", 16, 512, True)],
}


def space_rows() -> list[dict[str, Any]]:
    """The search space as table rows (for the page)."""
    rows = []
    for enc, params in SEARCH_SPACE.items():
        for p, kind, lo, hi, log in params:
            rows.append({"encoding": "all" if enc == "common" else enc, "parameter": p,
                         "range": f"{lo:g} to {hi:g}", "scale": ("log-" if log else "") + ("uniform" if kind == "float"
                                                                                          else "uniform integers")})
    return rows


def suggest(trial: Any, encoding_type: str) -> dict[str, Any]:
    """One configuration's changes drawn from :data:`SEARCH_SPACE` (an ``optuna.Trial``)."""
    from ...encodings import grid_resolutions

    def draw(p, kind, lo, hi, log):
        return trial.suggest_float(p, lo, hi, log=log) if kind == "float" else trial.suggest_int(p, int(lo), int(hi), log=log)

    changes = {p: draw(p, *rest) for p, *rest in SEARCH_SPACE["common"]}
    enc = {p: draw(p, *rest) for p, *rest in SEARCH_SPACE[encoding_type]}
    if encoding_type == "multigrid":
        lo, hi = sorted((enc.pop("min_resolution"), enc.pop("max_resolution")))
        enc["resolutions"] = grid_resolutions(max(lo, 2), max(hi, 2), enc.pop("levels"), "log")
    if enc:
        changes["encoding"] = enc
    return changes


def tune_task(name: str, image: str, side: int, epochs: int, n_trials: int, storage: str, seed: int = 0,
              device: str = "cpu") -> dict[str, Any]:
    """Re-tune Table 2's ``name`` encoding on one photo with :func:`inrlib.research.experiments.tune`: each trial
    trains for ``epochs`` at ``side x side`` and scores the final PSNR; a diverged trial is pruned."""
    from ...data import load_image
    from ...research.experiments import build_model
    from ...research.tuning import tune
    from ...train import TrainingDiverged, fit

    base = TABLE2[name].replace(epochs=int(epochs))
    coords, targets, _ = load_image(image, int(side))

    def objective(cfg: RunConfig) -> float:
        model = build_model(cfg, 2, int(targets.shape[1]), seed).to(device)
        try:
            h = fit(model, coords, targets, **cfg.train_settings, seed=seed, progress=None)
        except TrainingDiverged:
            return float("nan")
        return h.psnr[-1]

    return tune(objective, base, lambda t: suggest(t, base.encoding["type"]), n_trials=int(n_trials),
                storage=storage, study_name=f"imagenet-{name}-{side}px-{epochs}ep-seed{seed}", seed=seed)
