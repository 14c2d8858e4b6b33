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
  Eq. 12-13, ``sum_l sum_a (S_l S_l^T) * (e_la e_la^T)``.

Theorem 1's two readings and the study that checks them live in :mod:`inrlib.book.studies.weyl`.

Conventions: kernels are traced over output channels (as :func:`inrlib.ntk.empirical_ntk` by
default), computed in float64, spectra sorted descending.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..layers import Dense

__all__ = [
    "relative_error",
    "embed",
    "one_hidden_layer_ntk",
    "bilinear_cell",
    "bilinear_check",
    "interpolation_matrix",
    "embedding_sensitivities",
    "grid_term",
]

def relative_error(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Frobenius ``||a - b|| / ||b||`` in float64 (``||a||`` when ``b`` is zero)."""
    a = torch.as_tensor(a).detach().to(torch.float64)
    b = torch.as_tensor(b).detach().to(device=a.device, dtype=torch.float64)   # on a's device: no host copy
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
    from ..encodings import MultigridEncoding
    if not isinstance(encoding, MultigridEncoding) or encoding.dim != 2:
        raise ValueError("bilinear_cell needs a 2D MultigridEncoding (dense grid), got "
                         f"{type(encoding).__name__} with dim={getattr(encoding, 'dim', None)}")
    enc = copy.deepcopy(encoding).to("cpu", torch.float64)     # one cell, on the host whatever the device
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
