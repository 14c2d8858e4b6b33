r"""The kernel terms of the structured layers and the protocol that names them.

A module joins the structured NTK engine (:mod:`inrlib.ntk.engine`) by defining two methods::

    def ntk_capture(self, inputs: tuple, output: Tensor) -> Any        # tensors, first dim = N
    def ntk_gram(self, saved_a, grad_a, saved_b, grad_b) -> dict[str, Tensor]

``ntk_capture`` records, in the forward pass, what the module's parameter gradients need (the
layer input ``A``; the grid corners and interpolation weights ``S``). ``grad_*`` are the
``(N, C, *output.shape[1:])`` sensitivities ``D = df/d(module output)`` for ``C`` output channels
(summed over in the term). ``ntk_gram`` returns a dict mapping a suffix (``""`` or e.g.
``"level0"``) to an ``(N_a, N_b)`` kernel term. A class attribute ``ntk_group = "grid"`` puts the
terms in the grid group. Classes that cannot be edited (torch built-ins) get a rule instead:
:func:`register_rule`.

The terms here are pure tensor algebra:

- :func:`dense_gram`: ``z = s_w W a + s_b b`` gives ``s_w^2 (D_a D_b^T) * (A_a A_b^T) + s_b^2 D_a D_b^T``
  (O(N^2 (n_in + n_out)), GEMMs);
- :func:`interpolation_gram`: a grid level ``g(x) = sum_c w_c(x) theta_c`` gives
  ``(E_a E_b^T) * (S_a S_b^T)`` with ``S`` the sparse interpolation matrix, ``2^d`` non-zeros a row.

This module imports nothing of the model code or of the rest of :mod:`inrlib.ntk`, so the layers and
encodings that implement the protocol import it at their top.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["dense_gram", "interpolation_gram", "register_rule", "rule_for", "DENSE_INTERPOLATION_ROWS"]


def dense_gram(a_a: Tensor, grad_a: Tensor, a_b: Tensor, grad_b: Tensor, w_scale: float,
               b_scale: float | None) -> Tensor:
    """Kernel term of ``z = w_scale W a + b_scale b``.

    Args:
        a_a, a_b: layer inputs ``(N_a, n_in)``, ``(N_b, n_in)``.
        grad_a, grad_b: output sensitivities ``(N, C, n_out)`` (or ``(N, n_out)``).
        b_scale: ``None`` when the layer has no bias.
    Returns ``w_scale^2 (D_a D_b^T) * (A_a A_b^T) + b_scale^2 D_a D_b^T``, ``(N_a, N_b)``.
    """
    da = grad_a.reshape(grad_a.shape[0], -1)
    db = grad_b.reshape(grad_b.shape[0], -1)
    a_a = a_a.reshape(a_a.shape[0], -1)
    a_b = a_b.reshape(a_b.shape[0], -1)
    if w_scale != 1.0:                       # scale the small factor, not the (N_a, N_b) product
        a_a = a_a * (w_scale ** 2)
    if b_scale is not None and b_scale != 0.0:
        # (w^2 A_a A_b^T + b^2) * (D_a D_b^T): the constant enters as the GEMM's beta term
        k = torch.addmm(a_a.new_full((), b_scale ** 2), a_a, a_b.T)
    else:
        k = a_a @ a_b.T
    return k.mul_(da @ db.T)


#: Below this many table rows a grid level's ``S_a S_b^T`` is formed densely by a GEMM.
DENSE_INTERPOLATION_ROWS = 512


def interpolation_gram(rows_a: Tensor, w_a: Tensor, e_a: Tensor, rows_b: Tensor, w_b: Tensor, e_b: Tensor,
                       n_rows: int) -> Tensor:
    """Kernel term of one grid level: ``(E_a E_b^T) * (S_a S_b^T)``, ``(N_a, N_b)``.

    ``S`` has one row per sample with the interpolation weights ``w`` (``(N, 2^d)``) at the
    table rows ``rows`` (``(N, 2^d)``, repeated rows add up, as hash collisions do). ``E`` are
    the sensitivities of the level's features, ``(N, m)`` (``m = k`` times channels). Small
    tables use a dense GEMM; large ones enumerate only the sample pairs that share a table row,
    so the cost grows with the number of such pairs rather than with ``N_a N_b n_rows``.
    """
    na, nb = rows_a.shape[0], rows_b.shape[0]
    dtype, device = e_a.dtype, e_a.device
    rows_a, rows_b = rows_a.reshape(na, -1), rows_b.reshape(nb, -1)
    w_a, w_b = w_a.reshape(na, -1).to(dtype), w_b.reshape(nb, -1).to(dtype)
    n_entries = rows_a.numel() + rows_b.numel()
    if n_rows > max(DENSE_INTERPOLATION_ROWS, 2 * n_entries):   # a big table: renumber only the rows in use
        used, inv = torch.unique(torch.cat([rows_a.reshape(-1), rows_b.reshape(-1)]), return_inverse=True)
        rows_a, rows_b = inv[:rows_a.numel()].view(na, -1), inv[rows_a.numel():].view(nb, -1)
        n_rows = used.numel()
    sparse = n_rows > DENSE_INTERPOLATION_ROWS
    if sparse:     # pairs sharing a row: for each (sample, corner) of a, the corners of b at the same row
        counts_b = torch.bincount(rows_b.reshape(-1), minlength=n_rows)
        n_pairs = int(counts_b[rows_a.reshape(-1)].sum())    # the one host read: it sizes what follows
        sparse = n_pairs * 16 <= na * nb * min(n_rows, 64)
    if not sparse:
        s_a = torch.zeros(na, n_rows, dtype=dtype, device=device).scatter_add_(1, rows_a, w_a)
        s_b = torch.zeros(nb, n_rows, dtype=dtype, device=device).scatter_add_(1, rows_b, w_b)
        k = s_a @ s_b.T
        return k.mul_(e_a @ e_b.T)
    flat_b = rows_b.reshape(-1)
    order = torch.argsort(flat_b, stable=True)
    starts = torch.cumsum(counts_b, 0) - counts_b                      # first sorted slot of each row
    flat_a = rows_a.reshape(-1)
    reps = counts_b[flat_a]                                            # partners of each a-entry
    # output_size: the length is known, so repeat_interleave need not read it back from the device
    a_entry = torch.repeat_interleave(torch.arange(flat_a.numel(), device=device), reps, output_size=n_pairs)
    first = torch.repeat_interleave(starts[flat_a], reps, output_size=n_pairs)
    offset = torch.arange(n_pairs, device=device) - torch.repeat_interleave(
        torch.cumsum(reps, 0) - reps, reps, output_size=n_pairs)
    b_entry = order[first + offset]
    corners_a, corners_b = rows_a.shape[1], rows_b.shape[1]
    i, j = a_entry // corners_a, b_entry // corners_b
    vals = w_a.reshape(-1)[a_entry] * w_b.reshape(-1)[b_entry]
    vals = vals * (e_a[i] * e_b[j]).sum(dim=1)
    k = torch.zeros(na, nb, dtype=dtype, device=device)
    return k.index_put_((i, j), vals, accumulate=True)


# Rules for module classes that cannot carry the protocol themselves (torch built-ins).
_RULES: dict[type, tuple[Callable, Callable]] = {}


def register_rule(cls: type, capture: Callable[[nn.Module, tuple, Tensor], Any],
                  gram: Callable[[nn.Module, Any, Tensor, Any, Tensor], Mapping[str, Tensor]]) -> None:
    """Give a module class a structured kernel rule without editing it.

    ``capture(module, inputs, output)`` and ``gram(module, saved_a, grad_a, saved_b, grad_b)``
    have the meaning of the ``ntk_capture`` / ``ntk_gram`` protocol methods.
    """
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise TypeError(f"register_rule needs an nn.Module subclass, got {cls!r}")
    _RULES[cls] = (capture, gram)


def rule_for(cls: type) -> tuple[Callable, Callable] | None:
    """The ``(capture, gram)`` rule registered for exactly ``cls`` (not its subclasses), or ``None``."""
    return _RULES.get(cls)


register_rule(nn.Linear,
              lambda m, inputs, out: inputs[0].detach(),
              lambda m, sa, ga, sb, gb: {"": dense_gram(sa, ga, sb, gb, 1.0, 1.0 if m.bias is not None else None)})
