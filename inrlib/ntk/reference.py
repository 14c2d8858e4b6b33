r"""The textbook ``torch.func`` ways to the empirical NTK: the references the structured engine is checked against.

- :func:`jacobian_ntk` (``method="jacobian"``): materializes the Jacobian ``J`` of the outputs with respect to
  the parameters, ``(N, C, P)``, by ``vmap`` over the points of ``jacrev``, and contracts ``J_1 J_2^T``;
  ``O(N C P)`` memory. The structured engine also uses it for the sites it cannot take apart.
- :func:`ntk_vp` (``method="ntk_vp"``): never forms ``J``; builds ``K`` column block by column block as
  ``K e_j = J_1 (J_2^T e_j)``, a ``vjp`` then a ``jvp`` per column.

Both refuse, before any work, a computation whose stated need exceeds the memory budget
(:class:`~inrlib.ntk.checks.NTKMemoryError`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from .checks import NTKMemoryError, trainable

__all__ = ["functional", "jacobian", "jacobian_ntk", "ntk_vp"]


def functional(model: nn.Module):
    """``f(p, x)`` = the model with the parameters named in ``p`` replaced by its values; outputs ``(N, C)``."""

    def f(p: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(model, p, (x,), strict=False)
        return out.reshape(out.shape[0], -1)
    return f


def jacobian(model: nn.Module, x: Tensor, params: dict[str, Tensor], chunk: int) -> Tensor:
    """``J`` of shape ``(N, C, P)``: the Jacobian of the outputs w.r.t. ``params``, in row chunks.

    The textbook ``torch.func`` way: ``vmap`` over the points of ``jacrev`` of the model on one
    point (``O(N P)``). A model ``vmap`` cannot trace (data-dependent Python on its input, say)
    gets ``jacrev`` of the whole chunk instead: exact too, but one backward per output row.
    """
    f = functional(model)
    detached = {n: p.detach() for n, p in params.items()}

    def one(p: dict[str, Tensor], xi: Tensor) -> Tensor:      # (C,) for one point (d,)
        return f(p, xi[None])[0]

    per_sample: Callable | None = vmap(jacrev(one), in_dims=(None, 0))
    parts = []
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        jac = None
        if per_sample is not None:
            try:
                jac = per_sample(detached, xc)                 # dict of (n, C, *shape)
            except Exception:  # noqa: BLE001 - not vmap-able: whole-chunk reverse mode below
                per_sample = None
        if jac is None:
            jac = jacrev(lambda p: f(p, xc))(detached)
        parts.append(torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in jac.values()], dim=2))
        del jac
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def jacobian_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None, params: dict[str, Tensor], outputs: str,
                 budget: int) -> Tensor:
    """The kernel of the parameters ``params`` (a subset of the model's, by name) from their Jacobian.

    Returns ``J_1 J_2^T`` traced over the ``C`` outputs, ``(N1, N2)``, or the ``(N1 C, N2 C)`` block kernel
    (``outputs="full"``); ``x2=None`` means ``x2 = x1`` (one Jacobian). Refuses, before any work, a need
    (both Jacobians and the kernel) above ``budget`` bytes; within it the Jacobian is taken in row
    chunks of a quarter of the budget.
    """
    n_params = sum(p.numel() for p in params.values())
    item = x1.element_size()
    with torch.no_grad():
        c = model(x1[:1]).reshape(1, -1).shape[1]
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    kernel = x1.shape[0] * n2 * (c * c if outputs == "full" else 1) * item
    need = (x1.shape[0] + (0 if x2 is None else n2)) * c * n_params * item + kernel
    if need > budget:
        raise NTKMemoryError(f"the Jacobian ({x1.shape[0]} points x {c} outputs x {n_params} parameters) and the "
                             f"{x1.shape[0]} x {n2} kernel need {need / 2**30:.1f} GiB, over the budget of "
                             f"{budget / 2**30:.1f} GiB; use method='structured' or fewer points")
    chunk = max(1, min(x1.shape[0], int(budget // 4 // max(1, c * n_params * item * 4))))
    j1 = jacobian(model, x1, params, chunk)
    j2 = j1 if x2 is None else jacobian(model, x2, params, chunk)
    if outputs == "trace":
        return torch.einsum("icp,jcp->ij", j1, j2)
    return torch.einsum("icp,jdp->icjd", j1, j2).reshape(j1.shape[0] * c, j2.shape[0] * c)


def ntk_vp(model: nn.Module, x1: Tensor, x2: Tensor | None, outputs: str, chunk: int, budget: int) -> Tensor:
    """``K`` column block by column block: ``K e_j = J_1 (J_2^T e_j)`` with ``vjp`` then ``jvp``."""
    params = {n: p.detach() for n, p in trainable(model)}
    f = functional(model)
    x2_ = x1 if x2 is None else x2
    with torch.no_grad():
        c = model(x1[:1]).reshape(1, -1).shape[1]
    n1, n2 = x1.shape[0], x2_.shape[0]
    need = (n1 * n2 * (1 if outputs == "trace" else c * c) + 2 * chunk * (n1 + n2) * c) * x1.element_size()
    if need > budget:
        raise NTKMemoryError(f"the {n1} x {n2} kernel ({c} outputs, {outputs}) and its column blocks need "
                             f"{need / 2**30:.1f} GiB, over the budget of {budget / 2**30:.1f} GiB; use fewer "
                             "points or a smaller chunk_size")
    out2, pullback = vjp(lambda p: f(p, x2_), params)[:2]
    n2, c = out2.shape

    def column(cot: Tensor) -> Tensor:                     # cot: (n2, c) one-hot
        tangent = pullback(cot)[0]
        return jvp(lambda p: f(p, x1), (params,), (tangent,))[1]   # (n1, c)

    n1 = x1.shape[0]
    trace = outputs == "trace"
    k = torch.zeros((n1, n2) if trace else (n1, c, n2, c), dtype=x1.dtype, device=x1.device)
    for ch in range(c):
        for start in range(0, n2, chunk):
            idx = torch.arange(start, min(n2, start + chunk), device=x1.device)
            cots = torch.zeros(idx.numel(), n2, c, dtype=x1.dtype, device=x1.device)
            cots[torch.arange(idx.numel()), idx, ch] = 1
            cols = vmap(column)(cots)                      # (b, n1, c)
            if trace:
                k[:, idx] += cols[:, :, ch].T
            else:
                k[:, :, idx, ch] = cols.permute(1, 2, 0)
    return k if trace else k.reshape(n1 * c, n2 * c)
