r"""Paper 000's kernel algebra written out by hand, to hold the NTK engine to it.

The functions here rebuild, from a model's weights and an encoding's interpolation weights, the
terms that paper 000 (sections 3-4) derives, without going through :mod:`inrlib.ntk`:

- :func:`one_hidden_layer_ntk`: Eq. 8-9, the NTK of ``f(x) = W2 phi(W1 h / sqrt(d) + beta b1) /
  sqrt(n) + beta b2`` in closed form, ``h = gamma(x)`` the embedding (``gamma = id`` for the
  un-encoded network, Eq. 9; the FFE, Eq. 14; the MLP part of the MPE, first terms of Eq. 12);
- :func:`bilinear_cell`: Eq. 2 (the bilinear interpolation of one cell) and Eq. 11 (its gradient
  with respect to the four corner values, an outer product of the interpolation weights), from
  the cell geometry alone;
- :func:`interpolation_matrix`, :func:`embedding_sensitivities`, :func:`grid_term`: the grid term of
  Eq. 12-13, ``sum_l sum_a (S_l S_l^T) * (e_la e_la^T)``;
- :func:`weyl_chains`: both readings of Theorem 1 (Weyl's inequality with the MPE's own MLP
  kernel, and the paper's comparison with a separate un-encoded network);
- :func:`weyl_study`: trains MPE models and their un-encoded baselines and applies
  :func:`weyl_chains` at chosen training stages; returns tidy rows.

Conventions: kernels are traced over output channels (as :func:`inrlib.ntk.empirical_ntk` by
default), computed in float64, spectra sorted descending.
"""
from __future__ import annotations

import copy
import time
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .layers import Dense
from .ntk import empirical_ntk, rounding_floor, spectrum

__all__ = [
    "relative_error",
    "embed",
    "one_hidden_layer_ntk",
    "bilinear_cell",
    "bilinear_check",
    "interpolation_matrix",
    "embedding_sensitivities",
    "grid_term",
    "percentile_eigenvalue",
    "weyl_chains",
    "weyl_study",
    "model_from_config",
    "baseline_from_model",
    "chain_b_verdict",
    "markdown_table",
    "plot_weyl_panel",
    "plot_ratio",
    "clip_below_floor",
]


def relative_error(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Frobenius ``||a - b|| / ||b||`` in float64 (``||a||`` when ``b`` is zero)."""
    a = torch.as_tensor(a).detach().to(torch.float64).cpu()
    b = torch.as_tensor(b).detach().to(torch.float64).cpu()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    nb = float(torch.linalg.vector_norm(b))
    d = float(torch.linalg.vector_norm(a - b))
    return d / nb if nb > 0 else d


def _float64_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to(torch.float64).eval()


def _as_points(model: nn.Module, x: Tensor) -> Tensor:
    p = next(model.parameters())
    return x.detach().to(device=p.device, dtype=torch.float64)


def embed(model: nn.Module, x: Tensor) -> Tensor:
    """The embedding ``gamma(x)`` of a ``CoordinateMLP``, computed in float64 (as the NTK engine does)."""
    m = _float64_copy(model)
    with torch.no_grad():
        return m.encoding(_as_points(m, x))


# ----------------------------------------------------------------------------------------------
# Eq. 8-9 (and Eq. 14, and the first terms of Eq. 12): a one-hidden-layer network by hand
# ----------------------------------------------------------------------------------------------

def _activation_derivative(act: nn.Module, z: Tensor) -> Tensor:
    if isinstance(act, nn.ReLU):
        return (z > 0).to(z.dtype)          # autograd's convention: relu'(0) = 0
    if isinstance(act, nn.Tanh):
        return 1 - torch.tanh(z) ** 2
    raise ValueError(f"one_hidden_layer_ntk knows ReLU and Tanh hidden activations, got {type(act).__name__}")


def _one_hidden_layer(model: nn.Module) -> tuple[Dense, nn.Module, Dense]:
    layers = list(getattr(model, "mlp", []))
    if (len(layers) != 3 or not isinstance(layers[0], Dense) or not isinstance(layers[2], Dense)
            or not isinstance(layers[1], (nn.ReLU, nn.Tanh))):
        raise ValueError("needs a CoordinateMLP with one hidden layer and a relu/tanh activation "
                         "(CoordinateMLP(encoding, hidden=[n], activation='relu')), got mlp = "
                         f"{[type(m).__name__ for m in layers]}")
    return layers[0], layers[1], layers[2]


def one_hidden_layer_ntk(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    r"""The NTK of a one-hidden-layer ``CoordinateMLP``'s dense layers, term by term (Eq. 9).

    With ``h = gamma(x)`` (the encoding's output, ``d_e`` wide), ``z = s_1 W_1 h + b_1' b_1``,
    ``f_c = s_2 W_{2,c} phi(z) + b_2' b_{2,c}`` (``s_1 = 1/sqrt(d_e)``, ``s_2 = 1/sqrt(n)``,
    ``b' = beta`` in the NTK parameterization) and ``v_k = sum_c W_{2,ck}^2``, the kernel traced
    over the ``C`` outputs is the sum of

    - ``"W2"``: ``C s_2^2 <phi(z_i), phi(z_j)>``  (Eq. 9, first term);
    - ``"W1"``: ``s_1^2 s_2^2 <h_i, h_j> sum_k v_k phi'(z_ik) phi'(z_jk)``  (second term);
    - ``"b1"``: ``b_1'^2 s_2^2 sum_k v_k phi'(z_ik) phi'(z_jk)``  (third term);
    - ``"b2"``: ``C b_2'^2`` (the output bias, which Eq. 8 leaves out).

    Only the dense layers' parameters enter: for an MPE this is the engine's ``"mlp"`` group (the
    MLP on the embedding), not the grid term. Returns the four terms and ``"total"`` (``(N, N)``,
    float64). Raises ``ValueError`` for any other architecture.
    """
    m = _float64_copy(model)
    first, act, last = _one_hidden_layer(m)
    x = _as_points(m, x)
    with torch.no_grad():
        h = m.encoding(x)
        z = h @ first.weight.T * first.w_scale
        if first.bias is not None:
            z = z + first.b_scale * first.bias
        phi, dphi = act(z), _activation_derivative(act, z)
        w2 = last.weight                                   # (C, n)
        C = w2.shape[0]
        v = (w2 ** 2).sum(dim=0)                           # (n,)
        P = (dphi * v) @ dphi.T                            # sum_k v_k phi'_ik phi'_jk
        s1, s2 = first.w_scale, last.w_scale
        terms = {
            "W2": C * s2 ** 2 * (phi @ phi.T),
            "W1": (s1 ** 2 * s2 ** 2) * (h @ h.T) * P,
            "b1": (first.b_scale ** 2 * s2 ** 2) * P if first.bias is not None else torch.zeros_like(P),
            "b2": torch.full_like(P, C * last.b_scale ** 2) if last.bias is not None else torch.zeros_like(P),
        }
    terms["total"] = terms["W2"] + terms["W1"] + terms["b1"] + terms["b2"]
    return terms


# ----------------------------------------------------------------------------------------------
# Eq. 2 and Eq. 11: one bilinear cell, from its geometry
# ----------------------------------------------------------------------------------------------

def bilinear_cell(encoding: nn.Module, point: Sequence[float], level: int = 0, feature: int = 0) -> dict[str, Any]:
    r"""Eq. 2 and Eq. 11 for one 2D point, from the cell geometry alone, beside the encoding's own values.

    The cell ``[x1, x2] x [y1, y2]`` around ``(x, y)`` is found from the level's resolution ``R``
    (nodes at ``i / (R - 1)``); ``G`` holds the four corner values ``[[g(x1,y1), g(x1,y2)],
    [g(x2,y1), g(x2,y2)]]`` read from the dense grid. Returns

    - ``value_eq2``: ``[x2-x, x-x1] G [y2-y, y-y1]^T / (Dx Dy)``; ``value``: the encoding's output;
    - ``grad_eq11``: ``[x2-x, x-x1]^T [y2-y, y-y1] / (Dx Dy)`` (2 x 2, rows x corner, columns
      y corner); ``grad_autograd``: the same four entries of ``d value / d table`` by autograd;
    - ``grad_nonzeros`` and ``grad_sum``: how many table entries the gradient touches (4) and
      their sum (1: the weights are a partition of unity).
    """
    from .encodings import MultigridEncoding
    if not isinstance(encoding, MultigridEncoding) or encoding.dim != 2:
        raise ValueError("bilinear_cell needs a 2D MultigridEncoding (dense grid), got "
                         f"{type(encoding).__name__} with dim={getattr(encoding, 'dim', None)}")
    enc = copy.deepcopy(encoding).to(torch.float64)
    x, y = (float(v) for v in point)
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise ValueError(f"point must lie in [0, 1]^2, got {point}")
    R = enc.resolutions[level]
    h = 1.0 / (R - 1)
    i, j = min(int(x / h), R - 2), min(int(y / h), R - 2)
    x1, x2, y1, y2 = i * h, (i + 1) * h, j * h, (j + 1) * h
    grid = enc.grid(level)[..., feature].detach()            # (R, R) as [y index, x index]
    G = np.array([[grid[j, i], grid[j + 1, i]], [grid[j, i + 1], grid[j + 1, i + 1]]], dtype=np.float64)
    wx, wy = np.array([x2 - x, x - x1]), np.array([y2 - y, y - y1])
    value_eq2 = float(wx @ G @ wy / (h * h))
    grad_eq11 = np.outer(wx, wy) / (h * h)

    table = enc.tables[level]
    table.grad = None
    out = enc.interpolate(torch.tensor([[x, y]], dtype=torch.float64), level)[0, feature]
    (g,) = torch.autograd.grad(out, table)
    g = g[:, feature].view(R, R)
    grad_autograd = np.array([[g[j, i], g[j + 1, i]], [g[j, i + 1], g[j + 1, i + 1]]], dtype=np.float64)
    return {"value": float(out.detach()), "value_eq2": value_eq2, "grad_autograd": grad_autograd, "grad_eq11": grad_eq11,
            "grad_nonzeros": int(torch.count_nonzero(g)), "grad_sum": float(g.sum()), "cell": (i, j)}


def bilinear_check(encoding: nn.Module, points: Tensor | np.ndarray, level: int = 0) -> dict[str, float]:
    """:func:`bilinear_cell` at many points: the largest errors of Eq. 2 and Eq. 11.

    Returns ``eq2_max_abs_error`` (value), ``eq11_max_abs_error`` (gradient entries),
    ``eq11_max_rel_error`` (Frobenius, per point), ``max_nonzeros``/``min_nonzeros`` and
    ``max_partition_error`` (``|sum of gradient - 1|``), ``n_points``.
    """
    pts = np.asarray(torch.as_tensor(points).detach().cpu(), dtype=np.float64)
    e2, e11, r11, nz, part = [], [], [], [], []
    for p in pts:
        c = bilinear_cell(encoding, p, level)
        e2.append(abs(c["value"] - c["value_eq2"]))
        d = np.abs(c["grad_autograd"] - c["grad_eq11"])
        e11.append(float(d.max()))
        r11.append(float(np.linalg.norm(d) / np.linalg.norm(c["grad_eq11"])))
        nz.append(c["grad_nonzeros"])
        part.append(abs(c["grad_sum"] - 1))
    return {"n_points": len(pts), "eq2_max_abs_error": max(e2), "eq11_max_abs_error": max(e11),
            "eq11_max_rel_error": max(r11), "max_nonzeros": max(nz), "min_nonzeros": min(nz),
            "max_partition_error": max(part)}


# ----------------------------------------------------------------------------------------------
# Eq. 12-13: the grid term from interpolation weights and feature sensitivities
# ----------------------------------------------------------------------------------------------

def _grid_encoding(model: nn.Module) -> nn.Module:
    enc = getattr(model, "encoding", model)
    if not (hasattr(enc, "corners") and hasattr(enc, "tables")):
        raise ValueError(f"needs a model with a grid encoding (Multigrid/HashGrid), got {type(enc).__name__}")
    return enc


def interpolation_matrix(encoding: nn.Module, x: Tensor, level: int) -> Tensor:
    """The sparse interpolation matrix ``S`` of one level, ``(N, table rows)``, float64 COO.

    Row ``i`` holds the ``2^d`` interpolation weights of point ``x_i`` at its cell's table rows
    (repeated rows, as hash collisions give, add up), from ``encoding.corners``.
    """
    enc = _grid_encoding(encoding)
    x = x.detach().to(torch.float64)
    rows, w = enc.corners(x.to(enc.tables[level].device), level)
    n, c = rows.shape
    idx = torch.stack([torch.arange(n, device=rows.device).repeat_interleave(c), rows.reshape(-1)])
    S = torch.sparse_coo_tensor(idx, w.reshape(-1).detach().to(torch.float64), (n, enc.tables[level].shape[0]),
                                check_invariants=True)
    return S.coalesce()


def embedding_sensitivities(model: nn.Module, x: Tensor, method: str = "autograd") -> Tensor:
    """``E[i, c, m] = d f_c(x_i) / d gamma_m(x_i)``: how each output reacts to each embedding entry.

    ``method="autograd"`` differentiates the MLP at ``h = gamma(x)`` (any depth);
    ``method="formula"`` uses the one-hidden-layer closed form of Eq. 12's last term,
    ``s_2 s_1 (W_{2,c} * phi'(z_i)) W_1`` (``ValueError`` for deeper networks). ``(N, C, d_e)``.
    """
    m = _float64_copy(model)
    x = _as_points(m, x)
    if method == "formula":
        first, act, last = _one_hidden_layer(m)
        with torch.no_grad():
            h = m.encoding(x)
            z = h @ first.weight.T * first.w_scale
            if first.bias is not None:
                z = z + first.b_scale * first.bias
            dphi = _activation_derivative(act, z)                       # (N, n)
            # (N, C, n) x (n, d_e)
            return (last.w_scale * first.w_scale) * torch.einsum("ik,ck,km->icm", dphi, last.weight, first.weight)
    if method != "autograd":
        raise ValueError(f"method must be 'autograd' or 'formula', got {method!r}")
    with torch.no_grad():
        h = m.encoding(x)
    h = h.clone().requires_grad_(True)
    out = m.mlp(h).reshape(h.shape[0], -1)
    grads = [torch.autograd.grad(out[:, c].sum(), h, retain_graph=c < out.shape[1] - 1)[0]
             for c in range(out.shape[1])]
    return torch.stack(grads, dim=1).detach()


def grid_term(model: nn.Module, x: Tensor, method: str = "autograd") -> dict[str, Tensor]:
    r"""The grid term of Eq. 12-13 by hand: ``K^+ = sum_l (S_l S_l^T) * (sum_{c,a} e_lac e_lac^T)``.

    ``S_l`` from :func:`interpolation_matrix`, the sensitivities ``e`` of level ``l``'s ``k``
    features from :func:`embedding_sensitivities` (``method``). Returns ``"level0"``, ...
    and ``"total"`` (``(N, N)``, float64), comparable with the engine's ``"encoding.level0"``
    ... and ``"grid"`` entries.
    """
    m = _float64_copy(model)
    enc = _grid_encoding(m)
    x = _as_points(m, x)
    E = embedding_sensitivities(m, x, method)                          # (N, C, d_e)
    out: dict[str, Tensor] = {}
    total = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64, device=x.device)
    for level in range(enc.levels):
        S = interpolation_matrix(enc, x, level)
        with warnings.catch_warnings():          # torch calls its sparse products "beta"
            warnings.simplefilter("ignore", UserWarning)
            SS = torch.sparse.mm(S, S.transpose(0, 1)).to_dense()
        e = E[:, :, enc.level_slice(level)].reshape(x.shape[0], -1)
        out[f"level{level}"] = SS * (e @ e.T)
        total = total + out[f"level{level}"]
    out["total"] = total
    return out


# ----------------------------------------------------------------------------------------------
# Theorem 1: both chains
# ----------------------------------------------------------------------------------------------

def percentile_eigenvalue(eigenvalues: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of a spectrum (``q = 50``: median; ``q = 10``: 90% of eigenvalues above it)."""
    return float(np.percentile(np.asarray(eigenvalues, dtype=np.float64), q))


def _log10_ratio(a: float, b: float) -> float:
    return float(np.log10(a / b)) if a > 0 and b > 0 else float("nan")


def weyl_chains(K_total: Tensor, K_mlp: Tensor, K_grid: Tensor, K_base: Tensor, *,
                percentiles: Sequence[float] = (50, 10)) -> dict[str, Any]:
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
    spectra and the floors (for plots).
    """
    ev_t, ev_m, ev_g, ev_b = (spectrum(K) for K in (K_total, K_mlp, K_grid, K_base))
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
        "log10_ratio_max": _log10_ratio(ev_t[0], ev_b[0]),
        "log10_ratio_min": _log10_ratio(ev_t[-1], ev_b[-1]),
        "log10_ratio_min_floored": _log10_ratio(max(ev_t[-1], floor_t), max(ev_b[-1], floor_b)),
        "log10_ratio_min_mlp_vs_base_floored": _log10_ratio(max(ev_m[-1], floor_m), max(ev_b[-1], floor_b)),
    })
    for q in percentiles:
        pt, pb, pm = (percentile_eigenvalue(e, q) for e in (ev_t, ev_b, ev_m))
        out[f"log10_ratio_p{q:g}"] = _log10_ratio(pt, pb)
        out[f"log10_ratio_mlp_vs_base_p{q:g}"] = _log10_ratio(pm, pb)
        out[f"p{q:g}_total"], out[f"p{q:g}_base"], out[f"p{q:g}_mlp"] = pt, pb, pm
        out[f"p{q:g}_base_below_floor"] = bool(pb <= floor_b)
    out["spectra"] = {"total": ev_t, "mlp": ev_m, "grid": ev_g, "base": ev_b, "ratio": ratio,
                      "floor_total": floor_t, "floor_base": floor_b, "floor_mlp": floor_m, "floor_grid": floor_g}
    return out


# ----------------------------------------------------------------------------------------------
# the study: models, training stages, kernels
# ----------------------------------------------------------------------------------------------

def model_from_config(config: Mapping[str, Any], dim: int, out_features: int) -> nn.Module:
    """A ``CoordinateMLP`` from a study config ``{"encoding": {...}, "hidden": [...], "seed": s, ...}``.

    ``encoding`` is a :func:`inrlib.models.build_encoding` dict (``dim`` filled in when absent);
    other keys except ``name``, ``seed`` and ``train`` go to ``CoordinateMLP``. The global torch
    RNG is seeded with ``seed`` first, so the same config gives the same weights.
    """
    from .models import CoordinateMLP, build_encoding
    cfg = dict(config)
    enc_cfg = dict(cfg.pop("encoding"))
    enc_cfg.setdefault("dim", dim)
    seed = int(cfg.pop("seed", 0))
    for key in ("name", "train"):
        cfg.pop(key, None)
    cfg.setdefault("activation", "relu")
    torch.manual_seed(seed)
    return CoordinateMLP(build_encoding(enc_cfg), out_features=out_features, **cfg)


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
        from .train import fit as trainer

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

    def mpe_kernels(m):
        K = empirical_ntk(m, x_ntk.to(device), groups=True)
        return {k: K[k].detach().cpu() for k in ("total", "mlp", "grid")}

    def base_kernel(m):
        return {"total": empirical_ntk(m, x_ntk.to(device)).detach().cpu()}

    for name, config in (progress(it) if progress else it):
        settings = dict(train or {})
        settings.update(config.get("train", {}))
        seed = int(config.get("seed", 0))
        model = model_from_config(config, dim, channels).to(device)
        base = baseline_from_model(model, seed).to(device)
        key = repr((sorted(base.config.items()), seed, sorted(settings.items())))
        k_mpe, h_mpe = _kernels_at_epochs(model, X, Y, wanted, settings, seed, fit, mpe_kernels)
        if key not in baselines:
            baselines[key] = _kernels_at_epochs(base, X, Y, wanted, settings, seed, fit, base_kernel)
        k_base, h_base = baselines[key]
        histories[name] = {"mpe": h_mpe, "base": h_base}
        enc = model.encoding
        desc = {"resolutions": list(getattr(enc, "resolutions", [])), "levels": getattr(enc, "levels", 0),
                "k": getattr(enc, "features", 0), "hidden": list(model.config["hidden"]), "seed": seed,
                "params_grid": model.count_parameters()["encoding"], "params_mlp": model.count_parameters()["mlp"]}
        for stage, epoch in stage_epochs.items():
            K = k_mpe[epoch]
            res = weyl_chains(K["total"], K["mlp"], K["grid"], k_base[epoch]["total"])
            spectra[(name, stage)] = res.pop("spectra")
            rows.append({"config": name, "stage": stage, "epoch": epoch, **desc,
                         "psnr_mpe": _psnr_at(h_mpe, epoch), "psnr_base": _psnr_at(h_base, epoch), **res})
    return {"rows": rows, "spectra": spectra, "histories": histories, "stage_epochs": stage_epochs,
            "n_points": int(x_ntk.shape[0]), "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------
# reading the study: verdicts, tables, plots
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


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str | Callable[[Mapping], str]],
                   formats: Mapping[str, str] | None = None) -> str:
    """A Markdown table: ``columns`` maps a header to a row key or to ``fn(row) -> str``; numbers
    are formatted with ``formats[header]`` (default ``.3g``)."""
    formats = dict(formats or {})
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    lines = []
    for row in rows:
        cells = []
        for header, spec in columns.items():
            value = spec(row) if callable(spec) else row[spec]
            if isinstance(value, bool):
                cells.append("yes" if value else "**no**")
            elif isinstance(value, (int, np.integer)):
                cells.append(str(int(value)))
            elif isinstance(value, (float, np.floating)):
                cells.append(format(float(value), formats.get(header, ".3g")))
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def clip_below_floor(ax, floors: Sequence[float], decades: float = 4.0) -> None:
    """Limit a log axis to ``decades`` decades below the lowest positive rounding floor: what lies
    further down is rounding noise and would only squash the rest of the plot."""
    positive = [f for f in floors if f > 0]
    if positive:
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, min(positive) / 10 ** decades), hi)


def _floor_line(ax, value: float, color: str, label: str | None) -> None:
    if value > 0:
        ax.axhline(value, color=color, ls=":", lw=1, label=label)


def plot_weyl_panel(ax, spec: Mapping[str, Any], *, title: str = "", legend: bool = False) -> None:
    """One stage of one config: ``lambda_i(K_MPE)``, the two lower bounds (chain (a): own MLP
    term ``+ lambda_n(K^+)``; chain (b): un-encoded network ``+ lambda_n(K^+)``), ``lambda_i`` of
    the un-encoded network, and the rounding floors, on a log scale. Non-positive values are not drawn."""
    lam_n = float(spec["grid"][-1])
    n = spec["total"].size
    i = np.arange(1, n + 1)

    def pos(v):
        return np.where(v > 0, v, np.nan)

    ax.loglog(i, pos(spec["base"]), color="C3", lw=1, label="$\\lambda_i(K_{MLP})$, no encoding")
    ax.loglog(i, pos(spec["base"] + lam_n), color="C3", lw=1.6, ls="--",
              label="(b) $\\lambda_i(K_{MLP}) + \\lambda_n(K^+)$")
    ax.loglog(i, pos(spec["mlp"] + lam_n), color="C0", lw=1.6, ls="--",
              label="(a) $\\lambda_i(K_{mlp\\ on\\ \\gamma}) + \\lambda_n(K^+)$")
    ax.loglog(i, pos(spec["total"]), color="k", lw=1.2, label="$\\lambda_i(K_{MPE})$")
    _floor_line(ax, spec["floor_total"], "k", "rounding floor, $K_{MPE}$")
    _floor_line(ax, spec["floor_base"], "C3", "rounding floor, no encoding")
    clip_below_floor(ax, [spec["floor_total"], spec["floor_base"]])
    ax.set_xlabel("index $i$ (descending)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower left")


def plot_ratio(ax, spectra: Mapping[tuple, Mapping[str, Any]], names: Sequence[str], stage: str, *,
               title: str = "") -> None:
    """``lambda_i(K_MPE) / lambda_i(K_no encoding)`` against ``i`` (log-log) for several configs at one
    stage; only indices where both eigenvalues are above their rounding floors. Below 1: the
    paper's chain (b) is violated there."""
    for c, name in enumerate(names):
        spec = spectra[(name, stage)]
        r = spec["ratio"]
        ax.loglog(np.arange(1, r.size + 1), r, lw=1.1, color=f"C{c % 10}", label=name)
    ax.axhline(1.0, color="k", lw=1, ls="--")
    lo, hi = ax.get_ylim()
    lo, hi = min(lo, 0.5), max(hi, 2.0)
    ax.axhspan(lo, 1.0, color="C3", alpha=0.07, zorder=0, label="ratio < 1: chain (b) violated")
    ax.set_ylim(lo, hi)
    ax.set_xlabel("index $i$ (descending)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
