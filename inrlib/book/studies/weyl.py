r"""Theorem 1 of paper 000 checked across models and training stages (the Weyl-bound chapter's study).

- :func:`weyl_chains`: both readings of Theorem 1 on one set of kernels (Weyl's inequality with the
  MPE's own MLP kernel, and the paper's comparison with a separate un-encoded network);
- :func:`weyl_study`: trains MPE models and their un-encoded baselines and applies
  :func:`weyl_chains` at chosen training stages; returns tidy rows;
- :func:`chain_b_verdict`, :func:`weyl_claims`: reading the study (its figures:
  :func:`inrlib.book.plotting.plot_weyl_panel`, :func:`inrlib.book.plotting.plot_weyl_ratio`).

Kernels are traced over output channels, float64, spectra sorted descending.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...ntk import empirical_ntk, rounding_floor, spectrum
from ...ntk.spectra import log10_ratio, percentile_eigenvalue
from ...research.theory import relative_error

__all__ = [
    "weyl_claims",
    "weyl_chains",
    "weyl_study",
    "model_from_config",
    "baseline_from_model",
    "chain_b_verdict",
    "APPROX_MAX_FRACTION",
    "APPROX_MIN_RATIO",
]


def weyl_chains(K_total: Tensor, K_mlp: Tensor, K_grid: Tensor, K_base: Tensor, *,
                percentiles: Sequence[float] = (50, 10), base_spectrum: np.ndarray | None = None) -> dict[str, Any]:
    r"""Both readings of Theorem 1 on one set of kernels.

    Args:
        K_total: the MPE model's NTK (engine ``"total"``).
        K_mlp: the MPE model's MLP-on-embedding term (engine ``"mlp"``), the first term of Eq. 13.
        K_grid: the grid term ``K^+`` (engine ``"grid"``).
        K_base: the NTK of a *separate* network without encoding on the raw coordinates.

    Theorem 1's chain is ``lambda_i(A) <= lambda_i(A) + lambda_n(K^+) <= lambda_i(K_MPE)``.
    Inequality 1 holds iff ``lambda_n(K^+) >= 0`` (its slack, the same for both readings).
    Inequality 2 is read two ways:

    - (a) ``A = K_mlp``: Weyl's inequality, a theorem because ``K_total = K_mlp + K^+`` exactly and
      ``K^+`` is PSD: every slack must be ``>= -tol``;
    - (b) ``A = K_base``, as the paper's statement ("the NTK for the network with no encoding"):
      not implied by Weyl, since ``K_total - K_base`` need not be PSD. Also the composite
      ``lambda_i(K_base) <= lambda_i(K_total)`` with its ratios.

    ``tol`` is the sum of the rounding floors (:func:`inrlib.ntk.rounding_floor`) of the matrices whose
    eigenvalues enter the inequality: a violation smaller than that is indistinguishable from rounding.
    Ratios ``lambda_i(K_total) / lambda_i(K_base)`` are taken only where both are above their floors
    ("resolved"). Returns flat numbers (for tables and JSON) and, under ``"spectra"``, the four
    spectra and the floors (for plots). ``base_spectrum``: ``spectrum(K_base)`` when the caller has it
    already (a baseline shared by several configs is decomposed once). The eigenvalues are computed
    on the kernels' device.
    """
    ev_t, ev_m, ev_g = (spectrum(K) for K in (K_total, K_mlp, K_grid))
    ev_b = spectrum(K_base) if base_spectrum is None else np.asarray(base_spectrum, dtype=np.float64)
    if ev_b.shape != ev_t.shape:
        raise ValueError(f"base_spectrum has shape {ev_b.shape}, the kernels are {ev_t.size} x {ev_t.size}")
    n = ev_t.size
    floor_t = rounding_floor(K_total, ev_t)
    floor_m = rounding_floor(K_mlp, ev_m)
    floor_b = rounding_floor(K_base, ev_b)
    floor_g = rounding_floor(K_grid, ev_g) if abs(ev_g[0]) > 0 else 0.0
    sum_err = relative_error(torch.as_tensor(K_mlp) + torch.as_tensor(K_grid), K_total)
    lam_n = float(ev_g[-1])

    def ineq2(ev_a: np.ndarray, tol: float, prefix: str) -> dict[str, Any]:
        slack = ev_t - ev_a - lam_n
        rel = slack / np.maximum(np.abs(ev_t), floor_t)
        bad = slack < -tol
        return {f"{prefix}_min_slack": float(slack.min()), f"{prefix}_argmin": int(slack.argmin()),
                f"{prefix}_tol": tol, f"{prefix}_min_slack_over_tol": float(slack.min() / tol) if tol > 0 else float("nan"),
                f"{prefix}_min_relative_slack": float(rel.min()),
                f"{prefix}_violations": int(bad.sum()), f"{prefix}_fraction_fail": float(bad.mean()),
                f"{prefix}_holds": bool(not bad.any())}

    out: dict[str, Any] = {
        "n": n, "sum_relative_error": sum_err,
        "floor_total": floor_t, "floor_mlp": floor_m, "floor_base": floor_b, "floor_grid": floor_g,
        # inequality 1: lambda_n(K+) >= 0
        "lambda_n_grid": lam_n, "ineq1_holds": bool(lam_n >= -floor_g),
        "lambda_n_grid_over_floor": lam_n / floor_g if floor_g > 0 else float("nan"),
    }
    out.update(ineq2(ev_m, floor_t + floor_m + floor_g, "a"))          # Weyl, a theorem
    out.update(ineq2(ev_b, floor_t + floor_b + floor_g, "b"))          # the paper's reading
    # composite (b): lambda_i(K_base) <= lambda_i(K_total)
    tol_c = floor_t + floor_b
    diff = ev_t - ev_b
    fail = diff < -tol_c
    resolved = (ev_b > floor_b) & (ev_t > floor_t)
    ratio = np.full(n, np.nan)
    ratio[resolved] = ev_t[resolved] / ev_b[resolved]
    if resolved.any():
        worst = int(np.nanargmin(ratio))
        worst_ratio, worst_pos = float(ratio[worst]), worst / max(1, n - 1)
    else:
        worst, worst_ratio, worst_pos = -1, float("nan"), float("nan")
    out.update({
        "c_fraction_fail": float(fail.mean()),
        "c_fraction_fail_resolved": float((fail & resolved).sum() / max(1, resolved.sum())),
        "c_fraction_resolved": float(resolved.mean()),
        "c_first_fail": int(np.argmax(fail)) if fail.any() else -1,
        "c_min_slack": float(diff.min()),
        "c_worst_ratio": worst_ratio, "c_worst_index": worst, "c_worst_position": worst_pos,
        "c_holds": bool(not fail.any()),
        # where the spectra sit
        "lambda_max_total": float(ev_t[0]), "lambda_max_base": float(ev_b[0]), "lambda_max_mlp": float(ev_m[0]),
        "lambda_max_grid": float(ev_g[0]),
        "lambda_min_total": float(ev_t[-1]), "lambda_min_base": float(ev_b[-1]), "lambda_min_mlp": float(ev_m[-1]),
        "lambda_min_total_over_floor": float(ev_t[-1] / floor_t),
        "lambda_min_base_over_floor": float(ev_b[-1] / floor_b),
        "lambda_min_mlp_over_floor": float(ev_m[-1] / floor_m),
        "base_fraction_below_floor": float((ev_b <= floor_b).mean()),
        "total_fraction_below_floor": float((ev_t <= floor_t).mean()),
        "mlp_fraction_below_floor": float((ev_m <= floor_m).mean()),
        "log10_ratio_max": log10_ratio(ev_t[0], ev_b[0]),
        "log10_ratio_min": log10_ratio(ev_t[-1], ev_b[-1]),
        "log10_ratio_min_floored": log10_ratio(max(ev_t[-1], floor_t), max(ev_b[-1], floor_b)),
        "log10_ratio_min_mlp_vs_base_floored": log10_ratio(max(ev_m[-1], floor_m), max(ev_b[-1], floor_b)),
    })
    for q in percentiles:
        pt, pb, pm = (percentile_eigenvalue(e, q) for e in (ev_t, ev_b, ev_m))
        out[f"log10_ratio_p{q:g}"] = log10_ratio(pt, pb)
        out[f"log10_ratio_mlp_vs_base_p{q:g}"] = log10_ratio(pm, pb)
        out[f"p{q:g}_total"], out[f"p{q:g}_base"], out[f"p{q:g}_mlp"] = pt, pb, pm
        out[f"p{q:g}_base_below_floor"] = bool(pb <= floor_b)
    out["spectra"] = {"total": ev_t, "mlp": ev_m, "grid": ev_g, "base": ev_b, "ratio": ratio,
                      "floor_total": floor_t, "floor_base": floor_b, "floor_mlp": floor_m, "floor_grid": floor_g}
    return out



# ----------------------------------------------------------------------------------------------
# the study: models, training stages, kernels
# ----------------------------------------------------------------------------------------------

def model_from_config(config: Mapping[str, Any], dim: int, out_features: int) -> nn.Module:
    """The network of a study config ``{"name": ..., "model": ModelConfig or its dict, "seed": s,
    "train": {...}}``: ``CoordinateMLP.from_config(config["model"], dim=dim, out_features=out_features,
    seed=config.get("seed", 0))``, so the same config gives the same weights."""
    from ...models import CoordinateMLP
    extra = sorted(set(config) - {"name", "model", "seed", "train"})
    if "model" not in config or extra:
        raise ValueError(f"a Weyl study config holds 'name', 'model' (a ModelConfig or its to_dict()), 'seed' and "
                         f"'train', got keys {sorted(config)}: put the network's settings (encoding, hidden, ...) "
                         "in 'model', e.g. ModelConfig({'type': 'multigrid', 'resolutions': [16, 32]}, (64, 64))")
    return CoordinateMLP.from_config(config["model"], dim=dim, out_features=out_features,
                                     seed=int(config.get("seed", 0)))


def baseline_from_model(model: nn.Module, seed: int) -> nn.Module:
    """``model.without_encoding()`` built after seeding the torch RNG with ``seed``: same seed, same widths."""
    torch.manual_seed(int(seed))
    return model.without_encoding()


def _stage_epochs(stages: Mapping[str, int] | Sequence[str], epochs: int) -> dict[str, int]:
    if isinstance(stages, Mapping):
        out = {str(k): int(v) for k, v in stages.items()}
    else:
        named = {"init": 0, "middle": epochs // 2, "end": epochs}
        unknown = [s for s in stages if s not in named]
        if unknown:
            raise ValueError(f"stages {unknown} unknown; use 'init', 'middle', 'end' or a dict name -> epoch")
        out = {s: named[s] for s in stages}
    bad = {k: v for k, v in out.items() if not 0 <= v <= epochs}
    if bad:
        raise ValueError(f"stage epochs {bad} must lie in [0, epochs={epochs}]")
    return out


def _kernels_at_epochs(model: nn.Module, coords: Tensor, targets: Tensor, epochs_wanted: list[int],
                       train: Mapping[str, Any], seed: int, fit: Callable | None,
                       kernel_fn: Callable[[nn.Module], dict[str, Tensor]]) -> tuple[dict[int, dict], Any]:
    """Train ``model`` and evaluate ``kernel_fn`` at the wanted epochs (epoch 0 = before training)."""
    wanted = sorted(set(int(e) for e in epochs_wanted))
    kernels: dict[int, dict] = {}
    if not wanted or wanted[-1] == 0:
        if wanted:
            kernels[0] = kernel_fn(model)
        return kernels, None
    trainer = fit
    if trainer is None:
        from ...train import fit as trainer

    def snap(m, epoch, history):
        kernels[epoch] = kernel_fn(m)

    settings = {"progress": False, **dict(train)}
    history = trainer(model, coords, targets, epochs=wanted[-1], seed=seed, snapshot_epochs=wanted,
                      callbacks={"ntk": snap}, **settings)
    missing = [e for e in wanted if e not in kernels]
    if missing:
        raise RuntimeError(f"the trainer did not call the snapshot callback at epochs {missing}")
    return kernels, history


def _psnr_at(history: Any, epoch: int) -> float:
    """PSNR a :class:`inrlib.train.History` recorded at ``epoch`` (0: before training), NaN if none."""
    if history is None:
        return float("nan")
    if epoch == 0:
        return float(getattr(history, "initial", {}).get("psnr", float("nan")))
    psnr, epochs = list(getattr(history, "psnr", [])), list(getattr(history, "epochs", []))
    return float(psnr[epochs.index(epoch)]) if epoch in epochs and len(psnr) == len(epochs) else float("nan")


def weyl_study(configs: Sequence[Mapping[str, Any]], image: tuple, stages: Mapping[str, int] | Sequence[str] =
               ("init", "middle", "end"), *, epochs: int = 10, train: Mapping[str, Any] | None = None,
               ntk_points: int | None = None, device: torch.device | str = "cpu", fit: Callable | None = None,
               progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, Any]:
    """Theorem 1 checked across models and training stages.

    For each config (see :func:`model_from_config`; a ``name`` and a ``seed`` each) an MPE model
    and its un-encoded baseline (``model.without_encoding()`` after reseeding with the same seed)
    are trained on ``image`` with the same settings (a baseline shared by several configs, same widths,
    seed and settings, is trained once); at each stage the NTKs are computed on the
    first ``ntk_points`` pixels (all by default): the MPE's ``"total"``, ``"mlp"`` and ``"grid"``
    terms and the baseline's total, and :func:`weyl_chains` is applied.

    Args:
        image: ``(coords, targets, ...)``, e.g. :func:`inrlib.data.load_image`'s return value.
        stages: names ``"init"`` (epoch 0), ``"middle"`` (``epochs // 2``), ``"end"`` (``epochs``),
            or a dict ``name -> epoch``.
        train: keyword arguments of :func:`inrlib.train.fit` (``batch_size``, ``lr``,
            ``optimizer``, ...); a config's own ``"train"`` dict overrides them.
        fit: the trainer (default :func:`inrlib.train.fit`): ``fit(model, coords, targets,
            epochs=, seed=, snapshot_epochs=, callbacks=[fn(model, epoch, history)], ...)``.
    Returns ``{"rows": [...], "spectra": {(name, stage): {...}}, "histories": {...},
    "stage_epochs": {...}, "seconds": ...}``; each row is flat: ``config``, ``stage``,
    ``epoch``, the config's description and the numbers of :func:`weyl_chains`.
    """
    t0 = time.perf_counter()
    coords, targets = image[0], image[1]
    coords = torch.as_tensor(coords)
    targets = torch.as_tensor(targets)
    if targets.dim() == 1:
        targets = targets[:, None]
    dim, channels = coords.shape[1], targets.shape[1]
    stage_epochs = _stage_epochs(stages, epochs)
    x_ntk = coords if ntk_points is None else coords[:ntk_points]
    device = torch.device(device)
    names = [str(c.get("name", f"config{i}")) for i, c in enumerate(configs)]
    if len(set(names)) != len(names):
        raise ValueError(f"config names must be unique, got {names}")
    rows, spectra, histories = [], {}, {}
    baselines: dict[str, tuple] = {}        # same widths, seed and training: the same baseline run
    it = list(zip(names, configs))
    wanted = sorted(set(stage_epochs.values()))
    X, Y = coords.to(device), targets.to(device)

    # The kernels stay on the device: their spectra are computed there too (no N x N copy to the host).
    def mpe_kernels(m):
        K = empirical_ntk(m, x_ntk.to(device), groups=True)
        return {k: K[k].detach() for k in ("total", "mlp", "grid")}

    def base_kernel(m):
        return {"total": empirical_ntk(m, x_ntk.to(device)).detach()}

    base_spectra: dict[tuple[str, int], np.ndarray] = {}

    for name, config in (progress(it) if progress else it):
        settings = dict(train or {})
        settings.update(config.get("train", {}))
        seed = int(config.get("seed", 0))
        model = model_from_config(config, dim, channels).to(device)
        base = baseline_from_model(model, seed).to(device)
        key = repr((base.config.to_dict(), seed, sorted(settings.items())))
        k_mpe, h_mpe = _kernels_at_epochs(model, X, Y, wanted, settings, seed, fit, mpe_kernels)
        if key not in baselines:
            baselines[key] = _kernels_at_epochs(base, X, Y, wanted, settings, seed, fit, base_kernel)
        k_base, h_base = baselines[key]
        histories[name] = {"mpe": h_mpe, "base": h_base}
        enc = model.encoding
        desc = {"resolutions": list(getattr(enc, "resolutions", [])), "levels": getattr(enc, "levels", 0),
                "k": getattr(enc, "features", 0), "hidden": list(model.hidden), "seed": seed,
                "params_grid": model.count_parameters()["encoding"], "params_mlp": model.count_parameters()["mlp"]}
        for stage, epoch in stage_epochs.items():
            K = k_mpe[epoch]
            if (key, epoch) not in base_spectra:
                base_spectra[key, epoch] = spectrum(k_base[epoch]["total"])
            res = weyl_chains(K["total"], K["mlp"], K["grid"], k_base[epoch]["total"],
                              base_spectrum=base_spectra[key, epoch])
            spectra[(name, stage)] = res.pop("spectra")
            rows.append({"config": name, "stage": stage, "epoch": epoch, **desc,
                         "psnr_mpe": _psnr_at(h_mpe, epoch), "psnr_base": _psnr_at(h_base, epoch), **res})
    return {"rows": rows, "spectra": spectra, "histories": histories, "stage_epochs": stage_epochs,
            "n_points": int(x_ntk.shape[0]), "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------
# reading the study: verdicts and claims
# ----------------------------------------------------------------------------------------------

#: Chain (b) is called "approximately" true when its violations (beyond rounding) touch at most
#: this fraction of the indices ...
APPROX_MAX_FRACTION = 0.01
#: ... and no resolved eigenvalue of the MPE falls below this fraction of the baseline's.
APPROX_MIN_RATIO = 0.5


def chain_b_verdict(row: Mapping[str, Any], max_fraction: float = APPROX_MAX_FRACTION,
                    min_ratio: float = APPROX_MIN_RATIO) -> str:
    """``"holds"`` (no violation of ``lambda_i(K_base) <= lambda_i(K_MPE)`` beyond rounding),
    ``"approximately"`` (violations at no more than ``max_fraction`` of the indices and the worst
    resolved ratio at least ``min_ratio``) or ``"fails"``."""
    if row["c_holds"]:
        return "holds"
    ratio = row["c_worst_ratio"]
    if row["c_fraction_fail"] <= max_fraction and (ratio != ratio or ratio >= min_ratio):
        return "approximately"
    return "fails"



def weyl_claims(summary: Mapping[str, Any]) -> list[dict]:
    """Theorem 1's two readings as claim records, from the Weyl chapter's ``summary`` (its
    ``n_cases``, ``chain_a_holds_all``, ``chain_a_min_slack_over_tol`` and the chain (b) counts).

    Chain (a) (Weyl's inequality with the MPE network's own MLP term) holds when it holds in every
    case; chain (b) (the theorem as stated, with the network without encoding) holds when every case
    holds, approximately when none fails outright (:func:`chain_b_verdict`), and fails when any does:
    a theorem "for all i" is refuted by one counterexample. ``ours``: the fraction of cases that hold."""
    from ...research.claims import claim
    n = int(summary["n_cases"])
    if n < 1:
        raise ValueError("the Weyl summary has no cases (n_cases = 0): nothing to judge")
    a_ok = bool(summary["chain_a_holds_all"])
    a = claim("000.theorem1.chain_a", 1.0 if a_ok else None, "holds" if a_ok else "fails",
              f"{'every one' if a_ok else 'not every one'} of {n} cases (configs x stages) holds; smallest slack "
              f"{summary['chain_a_min_slack_over_tol']:.3g} x the rounding tolerance", unit="fraction of cases")
    h, ap, f = (int(summary[k]) for k in ("chain_b_holds", "chain_b_approximately", "chain_b_fails"))
    if h + ap + f != n:
        raise ValueError(f"chain (b) counts {h} + {ap} + {f} do not add up to the {n} cases")
    verdict = "holds" if h == n else "fails" if f else "approximately"
    b = claim("000.theorem1.chain_b", h / n, verdict,
              f"of {n} cases {h} hold, {ap} approximately (violations at <= {APPROX_MAX_FRACTION:.0%} of the indices, "
              f"worst ratio >= {APPROX_MIN_RATIO:g}), {f} fail; worst ratio {summary['chain_b_worst_ratio']:.3g} "
              f"({summary['chain_b_worst_case']})", unit="fraction of cases")
    return [a, b]
