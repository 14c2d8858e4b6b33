r"""Paper 000's scaling study (Section 5, Table 3, Figs. 2-4, 6, 11-13): six encodings on one photo.

What the chapter computes, as functions:

- :func:`scaled_configs`: Table 3's six configurations at a chosen image size (grid resolutions
  scaled with the image, so coarse < pixels per side < fine), lr, epochs and batch;
- the photo's pixels and held-out pixels *between* them come from :func:`inrlib.data.image_split`;
- :func:`probe_task` / :func:`choose_lr`: which learning rate of a ladder trains all six (Table 3's lr
  100 diverges with a mean-reduced loss);
- :func:`scaling_task`: one encoding's run (a sweep task): training with NTK snapshots, the
  reconstructions, the kernel-regression predictions of Eq. 5 with the NTK at init and at the end,
  the learned grid values and the activation regions;
- :func:`summarize` and :func:`scaling_claims`: the tables and the claim records (tolerances:
  :data:`inrlib.book.studies.common.TOLERANCES`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...data import image_split
from ...ntk.spectra import compare_at, percentile_eigenvalue
from ...research.claims import claim, verdict_from_difference
from ...research.experiments import RunConfig, run
from ...research.papers import PAPER_VALUES, TABLE3
from .common import TOLERANCES, kendall_tau, kernel_dtype, ms_ssim_clamped, psnr64, setting_text

__all__ = ["ENCODINGS", "KINDS", "scaled_configs", "probe_task", "choose_lr", "scaling_task",
           "activation_regions", "grid_values", "loss_below_epoch", "summarize", "scaling_claims",
           "LR_LADDER"]

#: Table 3's rows, in the paper's order.
ENCODINGS = tuple(TABLE3)
#: The kind of each encoding.
KINDS = {"baseline": "none", "ffe_low": "ffe", "ffe_mid": "ffe", "ffe_high": "ffe", "mpe_coarse": "mpe",
         "mpe_fine": "mpe"}
#: Learning rates tried, largest first, when the chapter is not given one: Table 3's 100, then down.
LR_LADDER = (100.0, 30.0, 10.0, 3.0, 1.0)
#: Activation regions are also counted on a grid this many times finer per axis than the pixels.
DENSE_FACTOR = 4
#: Paper 000's grids per image side (Table 3's coarse and fine MPE); the paper does not state its image
#: size, we assume 128 pixels per side (between the two, as Table 3's caption requires).
PAPER_SIDE = 128
PAPER_COARSE = TABLE3["mpe_coarse"].encoding["resolutions"][0]
PAPER_FINE = TABLE3["mpe_fine"].encoding["resolutions"][0]


def scaled_configs(side: int, *, lr: float, epochs: int, batch_size: int | None, coarse: int | None = None,
                   fine: int | None = None, hidden: Sequence[int] = (512, 512)) -> list[RunConfig]:
    """Table 3's six configurations for a ``side x side`` image.

    Grid resolutions default to the paper's ratios (``100 / 128`` and ``200 / 128`` of the side,
    rounded); ``coarse < side < fine`` is required (Table 3: "greater than or less than the number
    of pixels in the image"). Each config's ``note`` says what differs from Table 3.
    """
    side = int(side)
    coarse = int(coarse) if coarse is not None else max(2, round(side * PAPER_COARSE / PAPER_SIDE))
    fine = int(fine) if fine is not None else round(side * PAPER_FINE / PAPER_SIDE)
    if not coarse < side < fine:
        raise ValueError(f"the coarse grid ({coarse} nodes) must have fewer nodes per side than the image has pixels "
                         f"({side}) and the fine grid ({fine}) more; pass coarse < {side} < fine")
    out = []
    for cfg in TABLE3.values():
        changes: dict[str, Any] = {"lr": float(lr), "epochs": int(epochs), "batch_size": batch_size,
                                   "hidden": tuple(int(h) for h in hidden)}
        if cfg.name == "mpe_coarse":
            changes["encoding"] = {"resolutions": [coarse]}
        elif cfg.name == "mpe_fine":
            changes["encoding"] = {"resolutions": [fine]}
        new = cfg.replace(**changes)
        diffs = [f"{k} {getattr(new, k)} (Table 3: {getattr(cfg, k)})" for k in ("lr", "epochs", "batch_size", "hidden")
                 if getattr(new, k) != getattr(cfg, k)]
        if new.encoding != cfg.encoding:
            diffs.append(f"grid {new.encoding['resolutions'][0]} nodes per side (Table 3: "
                         f"{cfg.encoding['resolutions'][0]})")
        out.append(new.replace(note="; ".join(diffs) or "as Table 3"))
    return out


# ----------------------------------------------------------------------------------------------
# the learning rate
# ----------------------------------------------------------------------------------------------

def probe_task(name: str, config: Mapping[str, Any], image: str, side: int, grayscale: bool, seed: int,
               device: str = "cpu") -> dict[str, Any]:
    """Train ``config`` (a few epochs, its ``epochs``) and report whether it diverged: a sweep task."""
    from ...research.experiments import build_model
    from ...train import TrainingDiverged, fit
    cfg = RunConfig.from_dict(config)
    data = image_split(image, int(side), grayscale=grayscale, heldout=0)
    model = build_model(cfg, 2, data["shape"][2], seed).to(device)
    try:
        h = fit(model, data["coords"], data["targets"], **cfg.train_settings, seed=seed, progress=None)
        return {"diverged": False, "epoch": None, "loss": h.full_loss[-1], "psnr": h.psnr[-1]}
    except TrainingDiverged as err:
        return {"diverged": True, "epoch": err.epoch, "loss": err.loss_value, "psnr": None,
                "message": str(err)}


def choose_lr(configs: Sequence[RunConfig], run_probe, ladder: Sequence[float] = LR_LADDER,
              epochs: int = 2) -> tuple[float | None, list[dict[str, Any]]]:
    """The largest lr of ``ladder`` with which every config trains ``epochs`` epochs without diverging.

    ``run_probe(configs)`` trains the given configs (one lr each) and returns :func:`probe_task`
    results in order (the chapter passes a sweep, so probes are saved and resumed). Returns
    ``(lr or None, rows)``, one row per (lr, config) tried.
    """
    rows = []
    for lr in ladder:
        trial = [c.replace(lr=float(lr), epochs=int(epochs)) for c in configs]
        results = run_probe(trial)
        for c, r in zip(trial, results):
            rows.append({"lr": float(lr), "encoding": c.name, **r})
        if not any(r["diverged"] for r in results):
            return float(lr), rows
    return None, rows


# ----------------------------------------------------------------------------------------------
# one encoding's run
# ----------------------------------------------------------------------------------------------

def activation_regions(model: nn.Module, x: Tensor) -> dict[str, Any]:
    """Activation patterns of every ReLU of ``model`` at the points ``x`` (paper 000, Eq. 15).

    A point's pattern is the vector of ``1[ReLU input > 0]`` over all hidden units; points with the
    same pattern lie in one activation region. Returns ``{"count": distinct patterns, "labels": (N,)
    region index per point, "units": number of ReLU units}``.
    """
    bits: list[Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: bits.append((inp[0] > 0).detach().cpu()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    if not bits:
        raise ValueError("the model has no nn.ReLU modules: activation regions are defined for ReLU networks")
    pattern = torch.cat(bits, dim=1).numpy()
    packed = np.packbits(pattern, axis=1)
    _, labels = np.unique(packed, axis=0, return_inverse=True)
    return {"count": int(labels.max()) + 1, "labels": labels.reshape(-1).astype(np.int32), "units": int(pattern.shape[1])}


def grid_values(model: nn.Module) -> list[np.ndarray]:
    """The learned grid tables of a 2D multigrid encoding as images, one ``(R, R, k)`` array per level
    (row = y node, column = x node); ``[]`` without a grid."""
    enc = getattr(model, "encoding", None)
    tables = getattr(enc, "tables", None)
    if tables is None or getattr(enc, "dim", None) != 2 or not hasattr(enc, "resolutions"):
        return []
    return [t.detach().cpu().double().numpy().reshape(r, r, -1) for t, r in zip(tables, enc.resolutions)
            if t.shape[0] == r * r]


class _Measure:
    """What :func:`scaling_task` records at each snapshot (the ``measure`` of :func:`inrlib.research.experiments.run`)."""

    def __init__(self, data: Mapping[str, Any], t_flow: float, regression: bool):
        self.data, self.t_flow, self.regression = data, t_flow, regression
        self.f0: tuple[Tensor, Tensor] | None = None

    def __call__(self, model: nn.Module, epoch: int, kernels: Mapping[str, Tensor] | None, final: bool) -> dict:
        from ...ntk import empirical_ntk, kernel_regression
        d = self.data
        dev = next(model.parameters()).device
        X, Xh = d["coords"].to(dev), d["held_coords"].to(dev)
        with torch.no_grad():
            f_train, f_held = model(X).detach().cpu(), model(Xh).detach().cpu()
        out: dict[str, Any] = {"prediction": f_train.numpy().reshape(d["shape"]).astype(np.float32),
                               "psnr_train": psnr64(f_train, d["targets"])}
        if Xh.shape[0]:
            out["psnr_heldout"] = psnr64(f_held, d["held_targets"])
        if epoch == 0:
            self.f0 = (f_train.double(), f_held.double())
        if self.regression and kernels is not None and (epoch == 0 or final) and self.f0 is not None:
            K = kernels["total"]                   # stays on the model's device; only predictions come back
            K_held = empirical_ntk(model, Xh, X) if Xh.shape[0] else K[:0]
            f0_train, f0_held = self.f0
            pred = kernel_regression(K, d["targets"].double(), self.t_flow, K_test=torch.cat([K, K_held]),
                                     f0_train=f0_train, f0_test=torch.cat([f0_train, f0_held])).cpu()
            n = K.shape[0]
            out["kr_psnr_train"] = psnr64(pred[:n], d["targets"])
            if Xh.shape[0]:
                out["kr_psnr_heldout"] = psnr64(pred[n:], d["held_targets"])
            out["kr_prediction"] = pred[:n].numpy().reshape(d["shape"]).astype(np.float32)
        if final:
            out["grid_values"] = grid_values(model)
            from ...data import pixel_coords
            regions = activation_regions(model, X)
            h, w = d["shape"][:2]
            dense_shape = (DENSE_FACTOR * (h - 1) + 1, DENSE_FACTOR * (w - 1) + 1)
            dense = activation_regions(model, pixel_coords(*dense_shape, device=dev, dtype=X.dtype))
            out["regions"] = {"count": regions["count"], "units": regions["units"],
                              "labels": regions["labels"].reshape(h, w), "dense_count": dense["count"],
                              "dense_labels": dense["labels"].reshape(dense_shape)}
        return out


def scaling_task(name: str, config: Mapping[str, Any], image: str, side: int, grayscale: bool, seed: int,
                 ntk_epochs: Sequence[int], heldout: int = 1024, regression: bool = True,
                 device: str = "cpu", ntk_dtype: str = "float64") -> dict[str, Any]:
    """One encoding of the scaling study (a sweep task; arguments are plain data).

    Trains ``config`` on the photo, takes the float64 NTK on all training pixels at ``ntk_epochs``
    (spectra of the total and, for a grid, of its ``"mlp"`` term: the "MPE (No Grid)" of Fig. 2),
    and records at those epochs the reconstruction and its PSNR on training and held-out pixels; at
    the first and last NTK epochs also the kernel-regression prediction (Eq. 5) at the gradient-flow
    time of the whole run (:func:`inrlib.ntk.gradient_flow_time`), from the network's initial
    outputs; at the end the grid values and the activation regions. ``ntk_dtype``: ``"float64"``
    (default) or ``"float32"``.
    """
    from ...ntk import gradient_flow_time
    dtype = kernel_dtype(ntk_dtype)
    cfg = RunConfig.from_dict(config)
    data = image_split(image, int(side), grayscale=grayscale, heldout=int(heldout), seed=seed)
    n, channels = data["coords"].shape[0], data["shape"][2]
    bs = n if cfg.batch_size is None else min(int(cfg.batch_size), n)
    steps = cfg.epochs * math.ceil(n / bs)
    t_flow = gradient_flow_time(cfg.lr, steps, n, channels)
    groups = ("total", "mlp") if cfg.encoding.get("type") in ("multigrid", "hashgrid") else ("total",)
    result = run(cfg, data["coords"], data["targets"], seed=seed, ntk_epochs=list(ntk_epochs), ntk_groups=groups,
                 measure=_Measure(data, t_flow, regression), device=device, ntk_dtype=dtype)
    result.update({"name": name, "shape": data["shape"], "t_flow": t_flow, "steps": steps,
                   "truth": data["targets"].numpy().reshape(data["shape"]).astype(np.float32),
                   "n_heldout": int(data["held_coords"].shape[0])})
    return result


# ----------------------------------------------------------------------------------------------
# reading the runs
# ----------------------------------------------------------------------------------------------

def loss_below_epoch(history: Mapping[str, Any], threshold: float = 1e-3) -> int | None:
    """The first epoch whose full-data loss is below ``threshold`` (``None`` if never)."""
    losses = history.get("full_loss") or history.get("loss") or []
    for epoch, value in zip(history.get("epochs", []), losses):
        if value < threshold:
            return int(epoch)
    return None


def summarize(results: Mapping[str, Mapping[str, Any]], threshold: float = 1e-3) -> list[dict[str, Any]]:
    """One row per encoding: final PSNR (training pixels) and held-out PSNR, MS-SSIM of the clamped
    reconstruction, epoch the loss first drops below ``threshold``, grid and MLP sizes, activation
    regions, the kernel-regression PSNRs, and whether training diverged."""
    rows = []
    for name, r in results.items():
        snaps = r["snapshots"]
        last = max(snaps)
        m = snaps[last].get("measure", {})
        first = snaps[min(snaps)].get("measure", {})
        cfg = r["config"]
        row = {"encoding": name, "label": cfg["label"], "kind": KINDS.get(name, "?"),
               "diverged_epoch": r["diverged"]["epoch"] if r["diverged"] else None,
               "last_epoch": last, "psnr": m.get("psnr_train", float("nan")),
               "psnr_heldout": m.get("psnr_heldout", float("nan")),
               "msssim": float("nan"), "msssim_scales": 0,
               "loss_1e-3_epoch": loss_below_epoch(r["history"], threshold),
               "final_loss": (r["history"].get("full_loss") or [float("nan")])[-1],
               "regions": m.get("regions", {}).get("count"), "pixels": int(np.prod(r["shape"][:2])),
               "regions_dense": m.get("regions", {}).get("dense_count"),
               "dense_points": int(np.prod([DENSE_FACTOR * (s - 1) + 1 for s in r["shape"][:2]])),
               "kr_init_psnr": first.get("kr_psnr_train", float("nan")),
               "kr_init_psnr_heldout": first.get("kr_psnr_heldout", float("nan")),
               "kr_end_psnr": m.get("kr_psnr_train", float("nan")),
               "kr_end_psnr_heldout": m.get("kr_psnr_heldout", float("nan")),
               "seconds": r["seconds"]}
        row["setting"] = setting_text(cfg["encoding"])
        if "prediction" in m:
            row["msssim"], row["msssim_scales"] = ms_ssim_clamped(m["prediction"], r["truth"])
        rows.append(row)
    return rows


def _end(results, name, group="total"):
    r = results[name]
    snaps = r["snapshots"]
    epoch = max(e for e in snaps if "spectra" in snaps[e])
    return snaps[epoch]["spectra"][group], snaps[epoch]["floors"][group]


def _start(results, name, group="total"):
    snaps = results[name]["snapshots"]
    epoch = min(e for e in snaps if "spectra" in snaps[e])
    return snaps[epoch]["spectra"][group], snaps[epoch]["floors"][group]


def _orders_text(c: Mapping[str, Any]) -> str:
    if c["kind"] == "noise":
        return "both at the rounding floor"
    sign = {"exact": "", "lower bound": ">= ", "upper bound": "<= "}[c["kind"]]
    return f"{sign}{c['value']:.1f}"


def _orders_claim(id_: str, a: str, b: str, results, rows_by, context: str) -> dict[str, Any]:
    ev_a, fl_a = _end(results, a)
    ev_b, fl_b = _end(results, b)
    target = PAPER_VALUES[id_]["value"]
    at_min = compare_at(ev_a, fl_a, ev_b, fl_b, 0)
    med = compare_at(ev_a, fl_a, ev_b, fl_b, 50)
    p10 = compare_at(ev_a, fl_a, ev_b, fl_b, 10)
    note = (f"{rows_by[a]['label']} over {rows_by[b]['label']}, end of training: at the minimum "
            f"{_orders_text(at_min)}, median {_orders_text(med)}, 10th percentile {_orders_text(p10)} orders. ")
    hold, approx = TOLERANCES["orders"]
    if at_min["kind"] == "exact":
        verdict = verdict_from_difference(at_min["value"], target, hold, approx)
    elif at_min["kind"] == "lower bound" and at_min["value"] >= target - hold:
        verdict = "holds"
        note += f"{rows_by[b]['label']}'s smallest eigenvalue is below its float64 rounding floor: the ratio is at least this. "
    else:
        verdict = "not tested"
        note += ("The smallest eigenvalue of " + (rows_by[b]["label"] if at_min["b_below_floor"] else rows_by[a]["label"])
                 + " is below its float64 rounding floor, so the ratio of minima is not measurable here (only the "
                 "bound shown); the median and 10th percentile are measurements. ")
    return claim(id_, at_min["value"], verdict, note + context, bound=at_min["kind"] if at_min["kind"] != "noise" else None)


def scaling_claims(results: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                   context: str) -> list[dict[str, Any]]:
    """The claim records of the scaling study (ids in :data:`inrlib.research.claims.PAPER_VALUES`).

    ``context`` (profile, image size, epochs, lr) is appended to every note. The rules, stated here
    once and on the page: PSNR within 1 dB holds, within 3 dB approximately, else differs; MS-SSIM
    within 0.05 / 0.15; orders of magnitude within 0.5 / 1.5; the qualitative claims as documented
    inline. The "MPE" of the abstract's comparisons is the MPE with the higher PSNR, the "FFE" the FFE
    with the higher PSNR.
    """
    by = {r["encoding"]: r for r in rows}
    out: list[dict[str, Any]] = []
    for name in ENCODINGS:
        r = by[name]
        div = r["diverged_epoch"]
        for metric, id_, tol in (("psnr", f"000.table3.psnr.{name}", TOLERANCES["dB"]),
                                 ("msssim", f"000.table1.msssim.{name}", TOLERANCES["msssim"])):
            if div is not None:
                out.append(claim(id_, None, "not tested", f"training diverged in epoch {div}. {context}"))
            else:
                out.append(claim(id_, r[metric], verdict_from_difference(r[metric], PAPER_VALUES[id_]["value"], *tol),
                                 f"{r['label']}, {r['setting']}. {context}"))
    trained = [n for n in ENCODINGS if by[n]["diverged_epoch"] is None]
    mpes = [n for n in trained if KINDS[n] == "mpe"]
    ffes = [n for n in trained if KINDS[n] == "ffe"]
    if not ("baseline" in trained and mpes and ffes):
        for id_ in ("000.abstract.lambda_min.mpe_over_baseline", "000.abstract.lambda_min.mpe_over_ffe",
                    "000.abstract.psnr_gain.over_baseline", "000.abstract.psnr_gain.over_ffe",
                    "000.abstract.msssim_gain.over_baseline", "000.abstract.msssim_gain.over_ffe",
                    "000.fig2.no_grid_near_baseline", "000.fig4.ffe_saturates", "000.fig4.fine_mpe_highest",
                    "000.fig4.coarse_crosses_high_ffe", "000.fig6.mpe_loss_1e-3_sooner", "000.appB.spectrum_changes",
                    "000.appC.regions_similar", "000.eq5.kernel_predicts_order"):
            out.append(claim(id_, None, "not tested", f"an encoding diverged, the comparison needs all six. {context}"))
        return out
    best_mpe = max(mpes, key=lambda n: by[n]["psnr"])
    best_ffe = max(ffes, key=lambda n: by[n]["psnr"])
    out.append(_orders_claim("000.abstract.lambda_min.mpe_over_baseline", best_mpe, "baseline", results, by, context))
    out.append(_orders_claim("000.abstract.lambda_min.mpe_over_ffe", best_mpe, best_ffe, results, by, context))

    t3 = {k: PAPER_VALUES[f"000.table3.psnr.{k}"]["value"] for k in ENCODINGS}
    t1 = {k: PAPER_VALUES[f"000.table1.msssim.{k}"]["value"] for k in ENCODINGS}
    t2 = {k: PAPER_VALUES[f"000.table2.psnr.{k}"]["value"] for k in ("mpe", "ffe", "baseline")}
    for other, tag in (("baseline", "over_baseline"), (best_ffe, "over_ffe")):
        gain = by[best_mpe]["psnr"] - by[other]["psnr"]
        paper_other = "baseline" if other == "baseline" else "ffe_high"
        id_ = f"000.abstract.psnr_gain.{tag}"
        out.append(claim(id_, gain, verdict_from_difference(gain, PAPER_VALUES[id_]["value"], *TOLERANCES["dB"]),
                         f"{by[best_mpe]['label']} minus {by[other]['label']}. The paper's own Table 3 gives "
                         f"{t3['mpe_fine'] - t3[paper_other]:.1f} dB (Fine MPE minus {TABLE3[paper_other].label}); the abstract's "
                         f"figure matches Table 2 (ImageNet: {t2['mpe'] - t2['baseline' if other == 'baseline' else 'ffe']:.1f} dB). "
                         + context))
        gain_s = by[best_mpe]["msssim"] - by[other]["msssim"]
        id_ = f"000.abstract.msssim_gain.{tag}"
        out.append(claim(id_, gain_s, verdict_from_difference(gain_s, PAPER_VALUES[id_]["value"], *TOLERANCES["msssim"]),
                         f"{by[best_mpe]['label']} minus {by[other]['label']}; the abstract's figure matches the paper's "
                         f"Table 1 scaling columns ({t1['mpe_fine'] - t1[paper_other]:.2f}, Fine MPE minus {TABLE3[paper_other].label}). "
                         + context))

    # Fig. 2: the MPE without its grid term against the baseline, at the median (end of training)
    ev_b, fl_b = _end(results, "baseline")
    notes, verdicts, values = [], [], []
    for name in mpes:
        ev_t, fl_t = _end(results, name)
        ev_m, fl_m = _end(results, name, "mlp")
        no_grid = compare_at(ev_m, fl_m, ev_b, fl_b, 50)
        lift = compare_at(ev_t, fl_t, ev_m, fl_m, 50)
        values.append(no_grid["value"])
        near = no_grid["kind"] != "noise" and abs(no_grid["value"]) <= 1.0
        lifted = lift["kind"] in ("exact", "lower bound") and lift["value"] >= 1.0
        verdicts.append("holds" if near and lifted else "approximately" if (near or lifted) else "fails")
        notes.append(f"{by[name]['label']}: no grid vs baseline {_orders_text(no_grid)} orders at the median, "
                     f"the grid term adds {_orders_text(lift)}")
    verdict = "holds" if all(v == "holds" for v in verdicts) else "fails" if all(v == "fails" for v in verdicts) \
        else "approximately"
    out.append(claim("000.fig2.no_grid_near_baseline", max(values, key=abs), verdict,
                     "; ".join(notes) + ". Holds when 'MPE (No Grid)' is within 1 order of the baseline at the median "
                     "and the grid term lifts it by at least 1 order. " + context, unit="orders of magnitude"))

    # Fig. 4: FFE saturation, measured at the median of the end-of-training spectra
    med = {n: percentile_eigenvalue(_end(results, n)[0], 50) for n in ffes}
    if {"ffe_low", "ffe_mid", "ffe_high"} <= set(ffes) and all(v > 0 for v in med.values()):
        g1 = math.log10(med["ffe_mid"] / med["ffe_low"])
        g2 = math.log10(med["ffe_high"] / med["ffe_mid"])
        ratio = g2 / g1 if g1 != 0 else float("nan")
        verdict = "holds" if g1 > 0 and abs(g2) < 0.5 * g1 else "fails"
        out.append(claim("000.fig4.ffe_saturates", ratio, verdict,
                         f"median eigenvalue gain low -> mid {g1:.2f} orders, mid -> high {g2:.2f} orders; PSNR "
                         f"{by['ffe_low']['psnr']:.1f} / {by['ffe_mid']['psnr']:.1f} / {by['ffe_high']['psnr']:.1f} dB "
                         "(paper: " + " / ".join(f"{t3[k]:g}" for k in ('ffe_low', 'ffe_mid', 'ffe_high')) + " dB). "
                         "Holds when the mid -> high gain is under half the low -> mid gain. " + context,
                         unit="gain ratio"))
    else:
        out.append(claim("000.fig4.ffe_saturates", None, "not tested", f"an FFE spectrum is missing or at the floor. {context}"))

    # Fig. 4: the fine MPE highest; the coarse MPE and the high FFE cross
    spectra = {n: _end(results, n) for n in trained}
    resolved = np.all([ev > fl for ev, fl in spectra.values()], axis=0)
    if "mpe_fine" in trained and resolved.any():
        top = np.all([spectra["mpe_fine"][0] >= ev for n, (ev, _) in spectra.items() if n != "mpe_fine"], axis=0)
        frac = float(top[resolved].mean())
        verdict = "holds" if frac >= 0.9 else "approximately" if frac >= 0.5 else "fails"
        out.append(claim("000.fig4.fine_mpe_highest", frac, verdict,
                         f"the fine MPE's eigenvalue is the largest of all six at {frac:.0%} of the indices resolved in "
                         f"every spectrum ({resolved.mean():.0%} of all); holds at >= 90 %, approximately at >= 50 %. "
                         + context, unit="fraction of indices"))
    else:
        out.append(claim("000.fig4.fine_mpe_highest", None, "not tested", f"no resolved indices. {context}"))
    if {"mpe_coarse", "ffe_high"} <= set(trained):
        (ec, fc), (eh, fh) = spectra["mpe_coarse"], spectra["ffe_high"]
        ok = (ec > fc) & (eh > fh)
        diff = np.log10(ec[ok]) - np.log10(eh[ok]) if ok.any() else np.array([])
        if diff.size >= 8:
            q = max(1, diff.size // 4)
            top, bottom = float(np.median(diff[:q])), float(np.median(diff[-q:]))
            above = float((diff > 0).mean())
            crosses = np.sign(top) != np.sign(bottom) and top != 0 and bottom != 0
            if crosses and top > 0:
                verdict = "holds" if 0.25 <= above <= 0.75 else "approximately"
            elif crosses:
                verdict = "approximately"
            else:
                verdict = "fails"
            out.append(claim("000.fig4.coarse_crosses_high_ffe", above, verdict,
                             f"the coarse MPE is {'above' if top > 0 else 'below'} the high FFE over the top quarter of the "
                             f"resolved indices (median {top:+.2f} orders) and {'above' if bottom > 0 else 'below'} over the "
                             f"bottom quarter ({bottom:+.2f}); it is above at {above:.0%} of them. Holds for a crossing with "
                             "the coarse MPE above at the top and the crossing in the middle half (25-75 %). " + context,
                             unit="fraction of indices"))
        else:
            out.append(claim("000.fig4.coarse_crosses_high_ffe", None, "not tested",
                             f"fewer than 8 indices are resolved in both spectra. {context}"))

    # Fig. 6: epochs to a loss below 1e-3
    e = {n: by[n]["loss_1e-3_epoch"] for n in ("mpe_coarse", "ffe_mid", "ffe_high")}
    epochs_run = by["mpe_coarse"]["last_epoch"]
    txt = ", ".join(f"{by[n]['label']}: {'epoch ' + str(v) if v is not None else 'not reached'}" for n, v in e.items())
    if e["mpe_coarse"] is None and e["ffe_mid"] is None and e["ffe_high"] is None:
        out.append(claim("000.fig6.mpe_loss_1e-3_sooner", None, "not tested",
                         f"no encoding of the three reached a loss of 1e-3 in {epochs_run} epochs ({txt}). {context}"))
    elif e["mpe_coarse"] is None:
        out.append(claim("000.fig6.mpe_loss_1e-3_sooner", None, "fails", f"{txt} in {epochs_run} epochs. {context}"))
    else:
        ffe_first = min((v for k, v in e.items() if k != "mpe_coarse" and v is not None), default=None)
        sooner = (ffe_first if ffe_first is not None else epochs_run + 1) - e["mpe_coarse"]
        verdict = "holds" if sooner > 0 else "fails"
        out.append(claim("000.fig6.mpe_loss_1e-3_sooner", sooner, verdict,
                         f"{txt} (of {epochs_run} epochs; the paper: {PAPER_VALUES['000.fig6.mpe_loss_1e-3_sooner']['value']:g} "
                         f"of {TABLE3['mpe_coarse'].epochs}). "
                         f"{'An FFE that never reached it counts as epoch ' + str(epochs_run + 1) + '. ' if ffe_first is None else ''}"
                         "Holds when the coarse MPE gets there first; the size of the gap depends on the run length. "
                         + context))

    # Appendix B: the spectrum at the start against the end
    med_start = {n: math.log10(max(percentile_eigenvalue(_start(results, n)[0], 50), _start(results, n)[1]))
                 for n in trained}
    med_end = {n: math.log10(max(percentile_eigenvalue(_end(results, n)[0], 50), _end(results, n)[1])) for n in trained}
    spread_s = max(med_start.values()) - min(med_start.values())
    spread_e = max(med_end.values()) - min(med_end.values())
    raised = float(np.mean([med_end[n] - med_start[n] for n in trained]))
    verdict = "holds" if spread_e > spread_s and raised > 0 else "approximately" if (spread_e > spread_s or raised > 0) \
        else "fails"
    out.append(claim("000.appB.spectrum_changes", spread_e - spread_s, verdict,
                     f"spread of the encodings' median eigenvalues: {spread_s:.2f} orders at the start, {spread_e:.2f} at "
                     f"the end; medians move by {raised:+.2f} orders on average. Holds when the spread grows and the "
                     "spectra rise. " + context, unit="orders of magnitude"))

    # Appendix C: activation regions of the MPEs and the higher FFEs
    which = [n for n in trained if KINDS[n] == "mpe" or n in ("ffe_mid", "ffe_high")]
    key = "regions_dense" if all(by[n].get("regions_dense") for n in which) else "regions"
    counts = {n: by[n][key] for n in which}
    if counts and all(v for v in counts.values()):
        ratio = max(counts.values()) / min(counts.values())
        verdict = "holds" if ratio <= 2 else "approximately" if ratio <= 4 else "differs"
        points = by[which[0]]["dense_points" if key == "regions_dense" else "pixels"]
        saturated = max(counts.values()) >= 0.95 * points
        where = f"a grid {DENSE_FACTOR}x finer than the pixels" if key == "regions_dense" else "the pixels"
        note = (f"regions over {points} points ({where}): "
                + ", ".join(f"{by[n]['label']} {v}" for n, v in counts.items())
                + "; holds when the largest count is within 2x of the smallest, approximately within 4x. ")
        if saturated:
            verdict = "not tested"
            note += ("A count within 5% of the number of points means nearly one region per point: the count is then "
                     "bounded by the sampling, not set by the network, and the ratio is no measurement. ")
        out.append(claim("000.appC.regions_similar", ratio, verdict, note + context, unit="max / min count"))

    # Eq. 5: does the kernel predict the ordering?
    psnr_net = [by[n]["psnr"] for n in trained]
    tau_init = kendall_tau([by[n]["kr_init_psnr"] for n in trained], psnr_net)
    tau_end = kendall_tau([by[n]["kr_end_psnr"] for n in trained], psnr_net)
    if tau_init == tau_init:
        verdict = "holds" if tau_init >= 0.8 else "approximately" if tau_init >= 0.4 else "fails"
        out.append(claim("000.eq5.kernel_predicts_order", tau_init, verdict,
                         f"Kendall's tau between the encodings' PSNR predicted by kernel regression with the NTK at "
                         f"initialization and the trained networks' PSNR: {tau_init:.2f} (with the NTK at the end: "
                         f"{tau_end:.2f}). Holds at tau >= 0.8, approximately at >= 0.4. " + context,
                         unit="Kendall tau"))
    else:
        out.append(claim("000.eq5.kernel_predicts_order", None, "not tested", f"no kernel regression was run. {context}"))
    return out
