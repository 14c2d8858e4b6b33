r"""The empirical neural tangent kernel: exact, fast, memory-lean; its spectra and its regression.

.. math::  K(x_i, x_j) = \sum_{\theta} \Big\langle \frac{\partial f(x_i)}{\partial \theta},
                                            \frac{\partial f(x_j)}{\partial \theta} \Big\rangle

summed over every trainable tensor (grid values included) and, by default, over output channels.

**Method.** Per-sample gradients are never materialized. One forward pass records, for each
module that owns trainable parameters, what its gradient needs (a *capture*: the layer input
``A``; the grid corners and interpolation weights ``S``), and one backward pass per output
channel gives the sensitivities ``D = df/d(module output)`` of every sample (samples do not
interact, so the gradient of ``sum_i f(x_i)`` with respect to sample ``i``'s activations is
``df(x_i)/d(activation)``). Each module then turns (capture, sensitivities) into its kernel term:

- dense ``z = s_w W a + s_b b``: ``s_w^2 (D_a D_b^T) * (A_a A_b^T) + s_b^2 D_a D_b^T``
  (:func:`dense_gram`, O(N^2 (n_in + n_out)), GEMMs);
- grid level ``g(x) = sum_c w_c(x) theta_c``: ``(E_a E_b^T) * (S_a S_b^T)`` with ``S`` the
  sparse interpolation matrix, ``2^d`` non-zeros a row (:func:`interpolation_gram`);
- any other module with its own parameters (STAF amplitudes/frequencies/phases, a trainable
  ``w0``, a user's layer): its per-sample parameter gradients ``G`` by ``torch.func`` on that
  module alone (``vmap`` of a ``vjp``), and ``G_a G_b^T``;
- a module called more than once per forward (shared weights) or that cannot be ``vmap``-ed:
  the ``torch.func`` Jacobian of the whole model with respect to that module's parameters.

``K(x, x)`` is built in row panels on and above the diagonal and mirrored, so it is exactly
symmetric (each group term too).

**The protocol.** A module joins the structured path by defining two methods (the engine
imports no model class; see :class:`~inrlib.layers.Dense` and the grid encodings)::

    def ntk_capture(self, inputs: tuple, output: Tensor) -> Any        # tensors, first dim = N
    def ntk_gram(self, saved_a, grad_a, saved_b, grad_b) -> dict[str, Tensor]

``grad_*`` are ``(N, C, *output.shape[1:])`` sensitivities for ``C`` output channels (summed
over in the term). The returned dict maps a suffix (``""`` or e.g. ``"level0"``) to an
``(N_a, N_b)`` term. A class attribute ``ntk_group = "grid"`` puts the terms in the grid group.
Rules for classes you cannot edit: :func:`register_rule`.

Reference methods (``method="jacobian"``, ``"ntk_vp"``) are the textbook ``torch.func`` ways.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, linearize, vjp, vmap

from . import resources
from .coords import coords_validated
from .resources import available_memory  # noqa: F401 (re-exported: inrlib.ntk.available_memory)

__all__ = [
    "empirical_ntk", "spectrum", "resample_spectrum", "weyl_check", "rounding_floor",
    "NTKOperator", "extreme_eigenvalues", "interlacing_bounds", "kernel_regression", "gradient_flow_time",
    "dense_gram", "interpolation_gram", "register_rule", "NTKMemoryError",
]

OUTPUTS = ("trace", "full")
METHODS = ("auto", "structured", "jacobian", "ntk_vp")


class NTKMemoryError(MemoryError):
    """The dense kernel (or the reference method's Jacobian) does not fit the memory budget."""


# ----------------------------------------------------------------------------------------------
# kernel terms of the structured layers
# ----------------------------------------------------------------------------------------------

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
    _RULES[cls] = (capture, gram)


register_rule(nn.Linear,
              lambda m, inputs, out: inputs[0].detach(),
              lambda m, sa, ga, sb, gb: {"": dense_gram(sa, ga, sb, gb, 1.0, 1.0 if m.bias is not None else None)})


# ----------------------------------------------------------------------------------------------
# input checks and memory
# ----------------------------------------------------------------------------------------------

def _trainable(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _check_inputs(model: nn.Module, x: Tensor, name: str = "x") -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"empirical_ntk needs a torch.nn.Module, got {type(model).__name__}")
    if not _trainable(model):
        raise ValueError("the model has no trainable parameters (all have requires_grad=False), so its NTK "
                         "is zero; unfreeze some parameters with p.requires_grad_(True)")
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, d), got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, d) (one row per point), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no points (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}; use {name}.double()")
    dim = getattr(model, "dim", None)
    if isinstance(dim, int) and x.shape[1] != dim:
        raise ValueError(f"the model takes {dim}-D coordinates but {name} has {x.shape[1]} columns")


def _budget(memory_budget: int | float | None, device: torch.device) -> int:
    if memory_budget is None:
        return int(0.5 * resources.available_memory(device))
    if memory_budget <= 0:
        raise ValueError(f"memory_budget is in bytes and must be positive, got {memory_budget}")
    return int(memory_budget)


def _prepare(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """The model in ``dtype`` (a copy when a cast is needed), in eval mode."""
    params = list(model.parameters())
    if dtype is not None and any(p.dtype != dtype for p in params if p.is_floating_point()):
        model = copy.deepcopy(model).to(dtype)
    return model


# ----------------------------------------------------------------------------------------------
# the structured engine
# ----------------------------------------------------------------------------------------------

@dataclass
class _Site:
    name: str
    module: nn.Module
    group: str
    kind: str            # "protocol", "rule", "per_sample", "jacobian"
    params: list[str]    # trainable parameter names relative to ``module``


def _group_of(module: nn.Module) -> str:
    return "grid" if getattr(module, "ntk_group", "mlp") == "grid" else "mlp"


_CONTAINERS = (nn.ParameterList, nn.ParameterDict)


def _own_params(module: nn.Module) -> list[str]:
    """Trainable parameters a module uses itself: direct ones and those of its Parameter containers."""
    names = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
    for child_name, child in module.named_children():
        if isinstance(child, _CONTAINERS):
            names += [f"{child_name}.{n}" for n, p in child.named_parameters() if p.requires_grad]
    return names


def _sites(model: nn.Module) -> list[_Site]:
    """Modules that own trainable parameters. A protocol module owns every parameter below it."""
    sites, covered = [], set()
    for name, module in model.named_modules():
        if isinstance(module, _CONTAINERS) or any(name.startswith(c) for c in covered):
            continue
        if hasattr(module, "ntk_capture") and hasattr(module, "ntk_gram"):
            params = [n for n, p in module.named_parameters() if p.requires_grad]
            covered.add(name + "." if name else "")
            kind = "protocol"
        else:
            params = _own_params(module)
            kind = "rule" if type(module) in _RULES else "per_sample"
        if params:
            sites.append(_Site(name or "model", module, _group_of(module), kind, params))
    return sites


def _tree_map(fn: Callable[[Tensor], Any], tree: Any) -> Any:
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tree_map(fn, t) for t in tree)
    if isinstance(tree, dict):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    return tree


def _tree_cat(trees: list[Any]) -> Any:
    first = trees[0]
    if len(trees) == 1:                      # one chunk: nothing to concatenate (no copy)
        return first
    if isinstance(first, Tensor):
        return torch.cat(trees, dim=0)
    if isinstance(first, (list, tuple)):
        return type(first)(_tree_cat([t[i] for t in trees]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _tree_cat([t[k] for t in trees]) for k in first}
    return first


@dataclass
class _Pass:
    """What one set of points leaves behind: captures and sensitivities per site."""
    saved: dict[str, Any]
    grads: dict[str, Tensor]      # (N, C, *out)
    inputs: dict[str, tuple]      # for per-sample sites
    n_out: int


def _forward_backward(model: nn.Module, x: Tensor, sites: list[_Site], chunk: int,
                      keep_inputs: bool = False) -> _Pass:
    """One forward and one backward per output channel over ``x`` in chunks: captures and sensitivities.

    ``keep_inputs``: also record every site's inputs (for the site-local products of :class:`NTKOperator`).
    """
    saved: dict[str, list] = {s.name: [] for s in sites}
    grads: dict[str, list] = {s.name: [] for s in sites}
    inputs: dict[str, list] = {s.name: [] for s in sites}
    n_out = None
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        outs: dict[str, Tensor] = {}
        calls = {s.name: 0 for s in sites}
        handles = []

        def make_hook(site: _Site):
            def hook(module, args, output):
                calls[site.name] += 1
                if not isinstance(output, Tensor):
                    site.kind = "jacobian"
                    return
                outs[site.name] = output
                if site.kind == "protocol":
                    saved[site.name].append(module.ntk_capture(args, output))
                elif site.kind == "rule":
                    saved[site.name].append(_RULES[type(module)][0](module, args, output))
                if site.kind == "per_sample" or (keep_inputs and site.kind in ("protocol", "rule")):
                    if all(isinstance(a, Tensor) and a.dim() >= 1 and a.shape[0] == xc.shape[0] for a in args):
                        inputs[site.name].append(tuple(a.detach() for a in args))
                    else:
                        site.kind = "jacobian"
            return hook

        for s in sites:
            handles.append(s.module.register_forward_hook(make_hook(s)))
        try:
            with torch.enable_grad():
                out = model(xc)
        finally:
            for h in handles:
                h.remove()
        if not isinstance(out, Tensor):
            raise TypeError(f"the model must return one tensor, got {type(out).__name__}")
        out = out.reshape(out.shape[0], -1)
        n_out = out.shape[1]
        for s in sites:
            if calls[s.name] != 1 and s.kind != "jacobian":
                s.kind = "jacobian"    # shared module: its gradient is a sum over calls
        live = [s for s in sites if s.kind != "jacobian" and s.name in outs]
        targets = [outs[s.name] for s in live]
        per_channel = []
        for c in range(n_out):
            g = torch.autograd.grad(out[:, c].sum(), targets, retain_graph=c < n_out - 1, allow_unused=True)
            per_channel.append([torch.zeros_like(t) if gi is None else gi for gi, t in zip(g, targets)])
        for idx, s in enumerate(live):
            grads[s.name].append(torch.stack([pc[idx] for pc in per_channel], dim=1).detach())
        del out, outs, targets, per_channel
    return _Pass(
        saved={k: _tree_cat(v) for k, v in saved.items() if v},
        grads={k: v[0] if len(v) == 1 else torch.cat(v) for k, v in grads.items() if v},
        inputs={k: _tree_cat(v) for k, v in inputs.items() if v},
        n_out=n_out,
    )


def _per_sample_grads(module: nn.Module, names: list[str], args: tuple, grad: Tensor) -> Tensor:
    """Per-sample gradients of ``<D_i, module(a_i)>`` w.r.t. the module's own parameters: ``(N, C*P)``."""
    own = {n: p.detach() for n, p in module.named_parameters() if n in names}

    def one(sample_args, d):                       # d: (C, *out)
        def f(p):
            return functional_call(module, p, tuple(a.unsqueeze(0) for a in sample_args), strict=False)[0]
        _, pullback = vjp(f, own)
        g = vmap(pullback)(d)[0]                  # dict of (C, *shape)
        return torch.cat([v.reshape(d.shape[0], -1) for v in g.values()], dim=1)

    g = vmap(one)(args, grad)                     # (N, C, P)
    return g.reshape(g.shape[0], -1)


def _site_terms(site: _Site, pa: _Pass, pb: _Pass, ia: slice, ib: slice, ca: int | None, cb: int | None,
                cache: dict) -> dict[str, Tensor]:
    """Kernel terms of one site between rows ``ia`` of pass ``pa`` and rows ``ib`` of ``pb``.

    ``ca`` / ``cb``: the output channel of each side (``None``: all, traced over).
    """
    ga = _channel_views(pa.grads[site.name], ca)[ia]
    gb = _channel_views(pb.grads[site.name], cb)[ib]
    if site.kind in ("protocol", "rule"):
        sa = _tree_map(lambda t: t[ia], pa.saved[site.name])
        sb = _tree_map(lambda t: t[ib], pb.saved[site.name])
        if site.kind == "protocol":
            return dict(site.module.ntk_gram(sa, ga, sb, gb))
        return dict(_RULES[type(site.module)][1](site.module, sa, ga, sb, gb))
    # per-sample: G_a G_b^T, each pass's G computed once per channel and kept while the site is worked on
    def g(p: _Pass, c: int | None) -> Tensor:
        key = (id(p), site.name, c)
        if key not in cache:
            cache[key] = _per_sample_grads(site.module, site.params, p.inputs[site.name],
                                           _channel_views(p.grads[site.name], c))
        return cache[key]
    return {"": g(pa, ca)[ia] @ g(pb, cb)[ib].T}


def _channel_views(grads: Tensor, c: int | None) -> Tensor:
    return grads if c is None else grads[:, c:c + 1]


#: Rows of the kernel computed per block on the CPU. Each term is made for ``PANEL_ROWS`` rows at a
#: time (its temporaries stay in the cache and no N x N temporary is ever allocated); for ``K(x, x)``
#: only the blocks on and above the diagonal are computed and the rest is mirrored. On an accelerator
#: a panel is as tall as the memory budget allows: fewer, larger kernel launches.
PANEL_ROWS = 256


def _mirror(m: Tensor, bounds: list[tuple[int, int]]) -> None:
    """Fill the strict lower block triangle of square ``m`` from the upper one; symmetrize diagonal blocks."""
    for s, e in bounds:
        m[e:, s:e] = m[s:e, e:].T
        d = m[s:e, s:e]
        d.add_(d.T.clone()).mul_(0.5)


def _structured(model: nn.Module, x1: Tensor, x2: Tensor | None, outputs: str, groups: bool,
                budget: int, chunk: int | None) -> Tensor | dict[str, Tensor]:
    sites = _sites(model)
    n1 = x1.shape[0]
    fb_chunk = chunk or max(256, min(x1.shape[0], 16384))
    pa = _forward_backward(model, x1, sites, fb_chunk)
    pb = pa if x2 is None else _forward_backward(model, x2, sites, fb_chunk)
    n2 = n1 if x2 is None else x2.shape[0]
    c_out = pa.n_out
    dtype, device = x1.dtype, x1.device
    item = torch.empty((), dtype=dtype).element_size()
    # per-sample sites that could not be vmapped fall back to Jacobians
    for s in sites:
        if s.kind == "per_sample":
            try:
                _per_sample_grads(s.module, s.params, tuple(a[:1] for a in pa.inputs[s.name]),
                                  pa.grads[s.name][:1])
            except Exception:  # noqa: BLE001 - any functorch failure means: use the Jacobian
                s.kind = "jacobian"
    jac_sites = [s for s in sites if s.kind == "jacobian"]

    full = outputs == "full"
    blocks = [(None, None)] if not full else [(a, b) for a in range(c_out) for b in range(c_out)]
    c2 = c_out ** 2 if full else 1
    side = n1 * n2 * c2
    # rows per panel: the few (rows x n2) temporaries of a term stay within a fraction of the budget
    cap = PANEL_ROWS if device.type == "cpu" else n1
    rows = max(1, min(n1, cap, int((budget // 8) // max(1, 4 * n2 * c2 * item))))
    n_keys = 1 if not groups else 3 + len(sites) + 8
    need = side * item * n_keys + 4 * rows * n2 * c2 * item
    if need > budget:
        raise NTKMemoryError(
            f"the {'per-group ' if groups else ''}kernel at N={n1}x{n2} needs about {need / 2**30:.1f} GiB, over the "
            f"memory budget of {budget / 2**30:.1f} GiB; use fewer points, groups=False, a larger memory_budget, "
            "or the matrix-free path (inrlib.ntk.NTKOperator / extreme_eigenvalues)")

    shape = terms_shape(n1, n2, c_out, outputs)
    sym = x2 is None
    panels = [(s, min(n1, s + rows)) for s in range(0, n1, rows)]
    total = None if groups else torch.zeros(shape, dtype=dtype, device=device)
    terms: dict[str, Tensor] = {}               # groups only: one matrix per key
    by_group: dict[str, Tensor] = {}            # groups only: "mlp" / "grid" sums
    key_site: dict[str, str] = {}

    def add(target: Tensor, ia: slice, ib: slice, ab: tuple, value: Tensor) -> None:
        if full:
            target[ia, ab[0], ib, ab[1]] += value
        else:
            target[ia, ib] += value

    def accumulate(site: _Site, ia: slice, ib: slice, ab: tuple, cache: dict) -> None:
        for suffix, value in _site_terms(site, pa, pb, ia, ib, ab[0], ab[1], cache).items():
            if not groups:
                add(total, ia, ib, ab, value)
                continue
            key = site.name + ("." + suffix if suffix else "")
            key_site[key] = site.name
            if key not in terms:
                terms[key] = torch.zeros(shape, dtype=dtype, device=device)
            if site.group not in by_group:
                by_group[site.group] = torch.zeros(shape, dtype=dtype, device=device)
            add(terms[key], ia, ib, ab, value)
            add(by_group[site.group], ia, ib, ab, value)

    structured = [s for s in sites if s.kind in ("protocol", "rule")]
    per_sample = [s for s in sites if s.kind == "per_sample"]
    for start, stop in panels:                  # panel-major: the panel's rows stay in cache across sites
        ia, ib = slice(start, stop), slice(start if sym else 0, n2)
        for s in structured:
            for ab in blocks:
                accumulate(s, ia, ib, ab, {})
    for s in per_sample:                        # site-major: the site's per-sample gradients are reused
        cache: dict = {}
        for start, stop in panels:
            ia, ib = slice(start, stop), slice(start if sym else 0, n2)
            for ab in blocks:
                accumulate(s, ia, ib, ab, cache)
        del cache
    if sym:
        bounds = [(s * (c_out if full else 1), e * (c_out if full else 1)) for s, e in panels]
        flat = (n1 * c_out, n2 * c_out) if full else (n1, n2)
        for m in ([total] if total is not None else []) + [*terms.values(), *by_group.values()]:
            _mirror(m.view(flat), bounds)
    if jac_sites:
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        for s in jac_sites:
            prefix = "" if s.name == "model" else s.name + "."
            names = [prefix + n for n in s.params]
            k = _jacobian_ntk(model, x1, x2, {n: params[n] for n in names}, outputs, budget).reshape(shape)
            if not groups:
                total += k
                continue
            terms[s.name], key_site[s.name] = k, s.name
            if s.group in by_group:
                by_group[s.group] += k
            else:
                by_group[s.group] = k.clone()

    def finish(t: Tensor) -> Tensor:
        return t.reshape(n1 * c_out, n2 * c_out) if full else t

    if not groups:
        return finish(total)
    return _assemble(terms, by_group, key_site, shape, dtype, device, finish)


def terms_shape(n1: int, n2: int, c: int, outputs: str) -> tuple:
    return (n1, n2) if outputs == "trace" else (n1, c, n2, c)


_RESERVED = ("total", "mlp", "grid")


def _assemble(terms, by_group, key_site, shape, dtype, device, finish):
    """The ``groups=True`` dict: total, the two group sums, each key's term, and each multi-key site's sum."""
    for g in ("mlp", "grid"):
        if g not in by_group:
            by_group[g] = torch.zeros(shape, dtype=dtype, device=device)
    out = {"total": finish(by_group["mlp"] + by_group["grid"]), "mlp": finish(by_group["mlp"]),
           "grid": finish(by_group["grid"])}

    def name(key: str) -> str:     # a module literally called "mlp" must not overwrite the group
        return key + " (module)" if key in _RESERVED else key

    for key, value in terms.items():
        out[name(key)] = finish(value)
        site = key_site[key]
        if site != key:                                  # e.g. "encoding" = the sum of its levels
            out[name(site)] = out[name(site)] + finish(value) if name(site) in out else finish(value).clone()
    return out


# ----------------------------------------------------------------------------------------------
# torch.func reference methods
# ----------------------------------------------------------------------------------------------

def _functional(model: nn.Module):
    """``f(p, x)`` = the model with the parameters named in ``p`` replaced by its values; outputs ``(N, C)``."""

    def f(p: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(model, p, (x,), strict=False)
        return out.reshape(out.shape[0], -1)
    return f


def _jacobian(model: nn.Module, x: Tensor, params: dict[str, Tensor], chunk: int) -> Tensor:
    """``J`` of shape ``(N, C, P)``: the Jacobian of the outputs w.r.t. ``params``, in row chunks.

    The textbook ``torch.func`` way: ``vmap`` over the points of ``jacrev`` of the model on one
    point (``O(N P)``). A model ``vmap`` cannot trace (data-dependent Python on its input, say)
    gets ``jacrev`` of the whole chunk instead: exact too, but one backward per output row.
    """
    f = _functional(model)
    detached = {n: p.detach() for n, p in params.items()}

    def one(p: dict[str, Tensor], xi: Tensor) -> Tensor:      # (C,) for one point (d,)
        return f(p, xi[None])[0]

    per_sample = vmap(jacrev(one), in_dims=(None, 0))
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


def _jacobian_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None, params: dict[str, Tensor], outputs: str,
                  budget: int) -> Tensor:
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
    j1 = _jacobian(model, x1, params, chunk)
    j2 = j1 if x2 is None else _jacobian(model, x2, params, chunk)
    if outputs == "trace":
        return torch.einsum("icp,jcp->ij", j1, j2)
    return torch.einsum("icp,jdp->icjd", j1, j2).reshape(j1.shape[0] * c, j2.shape[0] * c)


def _ntk_vp(model: nn.Module, x1: Tensor, x2: Tensor | None, outputs: str, chunk: int, budget: int) -> Tensor:
    """``K`` column block by column block: ``K e_j = J_1 (J_2^T e_j)`` with ``vjp`` then ``jvp``."""
    params = {n: p.detach() for n, p in _trainable(model)}
    f = _functional(model)
    x2_ = x1 if x2 is None else x2
    with torch.no_grad():
        c = model(x1[:1]).reshape(1, -1).shape[1]
    n1, n2 = x1.shape[0], x2_.shape[0]
    need = (n1 * n2 * (1 if outputs == "trace" else c * c) + 2 * chunk * (n1 + n2) * c) * x1.element_size()
    if need > budget:
        raise NTKMemoryError(f"the {n1} x {n2} kernel ({c} outputs, {outputs}) and its column blocks need "
                             f"{need / 2**30:.1f} GiB, over the budget of {budget / 2**30:.1f} GiB; use fewer "
                             "points or a smaller chunk_size")
    out2, pullback = vjp(lambda p: f(p, x2_), params)
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


# ----------------------------------------------------------------------------------------------
# public entry point
# ----------------------------------------------------------------------------------------------

def empirical_ntk(model: nn.Module, x: Tensor, x2: Tensor | None = None, *, groups: bool = False,
                  outputs: str = "trace", method: str = "auto", dtype: torch.dtype | None = torch.float64,
                  memory_budget: int | None = None, chunk_size: int | None = None,
                  ) -> Tensor | dict[str, Tensor]:
    """The empirical NTK of ``model`` on the points ``x`` (and ``x2``).

    Args:
        model: any ``nn.Module`` mapping ``(N, d)`` to ``(N, C)`` (or ``(N,)``) whose samples do
            not interact (no batch statistics). Runs on the model's device.
        x: ``(N, d)`` points; moved to the model's device and ``dtype``.
        x2: optional second set ``(M, d)``: the cross-kernel ``K(x, x2)``, e.g. ``K_test``.
        groups: return a dict of terms instead of the total: ``"total"``, ``"mlp"`` (all non-grid
            parameters), ``"grid"`` (all grid parameters; zeros when there is no grid) and one
            entry per parameterized module (``"mlp.0"``, ``"encoding.level1"``, ...). They sum to
            the total (``"mlp" + "grid" = "total"``), and each is positive semi-definite.
        outputs: ``"trace"`` sums over output channels, ``(N, M)``; ``"full"`` returns the
            ``(N*C, M*C)`` block kernel, row ``i*C + c`` for sample ``i``, channel ``c``.
        method: ``"structured"`` (the fast engine; ``"auto"`` is the same), or the ``torch.func``
            references ``"jacobian"`` (materializes ``J``) and ``"ntk_vp"`` (vjp then jvp per
            column).
        dtype: computation dtype; the model is copied and cast when needed. Default float64:
            float32 kernels carry relative errors near 1e-7 and ReLU sign flips (DESIGN.md);
            pass ``None`` to use the model's own dtype.
        memory_budget: bytes the kernel and its temporaries may use (default: half the free
            memory of the device). A kernel that does not fit raises :class:`NTKMemoryError`.
        chunk_size: points per forward/backward pass (default: up to 16384).
    Returns:
        A tensor (on the model's device, in ``dtype``), or a dict of tensors with ``groups=True``.
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_inputs(model, x, "x")
    if x2 is not None:
        _check_inputs(model, x2, "x2")
        if x2.shape[1] != x.shape[1]:
            raise ValueError(f"x has {x.shape[1]} columns but x2 has {x2.shape[1]}")
    model = _prepare(model, dtype)
    param = next(p for _, p in _trainable(model))
    device, work_dtype = param.device, (dtype or param.dtype)
    x = x.detach().to(device=device, dtype=work_dtype)
    x2 = None if x2 is None else x2.detach().to(device=device, dtype=work_dtype)
    budget = _budget(memory_budget, device)
    was_training = model.training
    model.eval()
    try:
        if method in ("auto", "structured"):
            return _structured(model, x, x2, outputs, groups, budget, chunk_size)
        if method == "jacobian":
            if groups:
                return _reference_groups(model, x, x2, outputs, budget)
            return _jacobian_ntk(model, x, x2, dict(_trainable(model)), outputs, budget)
        if groups:
            raise ValueError("groups=True is available with method='structured' or 'jacobian', not 'ntk_vp'")
        return _ntk_vp(model, x, x2, outputs, chunk_size or 64, budget)
    finally:
        model.train(was_training)


def _reference_groups(model, x1, x2, outputs, budget) -> dict[str, Tensor]:
    """Per-module terms by Jacobians, keyed like the structured engine's module entries."""
    out: dict[str, Tensor] = {}
    total = None
    group_sum = {"mlp": None, "grid": None}
    params = dict(_trainable(model))
    for site in _sites(model):
        prefix = "" if site.name == "model" else site.name + "."
        k = _jacobian_ntk(model, x1, x2, {prefix + n: params[prefix + n] for n in site.params}, outputs, budget)
        out[site.name + (" (module)" if site.name in _RESERVED else "")] = k
        total = k.clone() if total is None else total + k
        g = site.group
        group_sum[g] = k.clone() if group_sum[g] is None else group_sum[g] + k
    out["total"] = total
    for g in ("mlp", "grid"):
        out[g] = group_sum[g] if group_sum[g] is not None else torch.zeros_like(total)
    return out


# ----------------------------------------------------------------------------------------------
# spectra
# ----------------------------------------------------------------------------------------------

def _eps(dtype: torch.dtype | np.dtype) -> float:
    return float(torch.finfo(dtype).eps) if isinstance(dtype, torch.dtype) else float(np.finfo(dtype).eps)


def rounding_floor(K: Tensor | np.ndarray, eigenvalues: np.ndarray | None = None) -> float:
    """The level below which eigenvalues of ``K`` are rounding noise: ``N * eps * lambda_max``.

    ``eps`` is the machine epsilon of ``K``'s dtype (2.2e-16 for float64): an eigenvalue
    solver's backward error is of order ``eps ||K||``, and sums of ``N`` terms add ``N eps``.
    Show it on every log-scale spectrum plot.
    """
    n = K.shape[0]
    eps = _eps(K.dtype)
    if eigenvalues is None:
        eigenvalues = spectrum(K, check=False)
    return float(n * eps * max(abs(eigenvalues[0]), abs(eigenvalues[-1])))


def spectrum(K: Tensor | np.ndarray, *, check: bool = True, symmetry_tol: float | None = None,
             negative_tol: float | None = None) -> np.ndarray:
    """Eigenvalues of a kernel matrix in float64, sorted descending, as a NumPy array.

    With ``check`` (default) a matrix that is not symmetric, or has eigenvalues below
    ``-negative_tol * lambda_max`` (default ``N * eps(K.dtype) * 10``, i.e. beyond round-off),
    raises a ``ValueError``; ``K`` is symmetrized before solving.
    """
    if isinstance(K, np.ndarray):
        K = torch.from_numpy(K)
    if not isinstance(K, Tensor):
        raise TypeError(f"spectrum expects a square tensor or array, got {type(K).__name__}")
    if K.dim() != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"spectrum expects a square (N, N) matrix, got shape {tuple(K.shape)}")
    if not K.is_floating_point():
        raise TypeError(f"spectrum expects a floating-point matrix, got {K.dtype}")
    if not bool(torch.isfinite(K).all()):
        raise ValueError("the kernel has NaN or infinite entries; check the model's outputs and parameters")
    eps = _eps(K.dtype)
    n = K.shape[0]
    Kd = K.detach().to(dtype=torch.float64)
    if check:
        tol = symmetry_tol if symmetry_tol is not None else 100 * eps * math.sqrt(n)
        norm = float(torch.linalg.matrix_norm(Kd))
        asym = float(torch.linalg.matrix_norm(Kd - Kd.T))
        if norm > 0 and asym > tol * norm:
            raise ValueError(f"the kernel is not symmetric: ||K - K^T|| / ||K|| = {asym / norm:.3g} > {tol:.3g}; "
                             "pass a kernel K(x, x) (not a cross-kernel), or symmetrize it with (K + K.T) / 2")
    Kd = 0.5 * (Kd + Kd.T)
    eig = torch.linalg.eigvalsh(Kd).flip(0).cpu().numpy()
    if check and n > 0:
        tol = negative_tol if negative_tol is not None else 10 * n * eps
        scale = max(abs(eig[0]), abs(eig[-1]))
        if scale > 0 and eig[-1] < -tol * scale:
            raise ValueError(f"the kernel is indefinite beyond round-off: lambda_min / lambda_max = "
                             f"{eig[-1] / scale:.3g} < -{tol:.3g}; an NTK is positive semi-definite, so the "
                             "matrix is not one (or was computed in too low a precision: use float64)")
    return eig


def resample_spectrum(eigenvalues: np.ndarray, length: int = 8000, *, log: bool = True,
                      floor: float | None = None) -> np.ndarray:
    """A descending spectrum resampled to ``length`` values (paper 000 scaled spectra to 8000).

    Index ``i`` of ``n`` maps to ``i / (n - 1)`` in ``[0, 1]``; values are interpolated there
    linearly in ``log10`` (``log=True``; eigenvalues below ``floor``, default the smallest
    positive one, are clipped to it first) or linearly.
    """
    ev = np.asarray(eigenvalues, dtype=np.float64)
    if ev.ndim != 1 or ev.size < 2:
        raise ValueError(f"need a 1-D spectrum with at least 2 values, got shape {ev.shape}")
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    src = np.linspace(0.0, 1.0, ev.size)
    dst = np.linspace(0.0, 1.0, length)
    if not log:
        return np.interp(dst, src, ev)
    positive = ev[ev > 0]
    if positive.size == 0:
        raise ValueError("no positive eigenvalues to interpolate in log scale; pass log=False")
    lo = floor if floor is not None else positive.min()
    return 10 ** np.interp(dst, src, np.log10(np.maximum(ev, lo)))


def weyl_check(K_A: Tensor | np.ndarray, K_B: Tensor | np.ndarray, K_sum: Tensor | np.ndarray | None = None,
               ) -> dict[str, Any]:
    """Check Weyl's lower bound ``lambda_i(A) + lambda_min(B) <= lambda_i(A + B)`` for every ``i``.

    ``K_sum`` defaults to ``K_A + K_B``; passing another matrix checks whether it really is
    a sum of the two (e.g. the MPE kernel against the un-encoded MLP's). Returns the three
    spectra, the bound, ``slack = lambda_i(sum) - bound`` per ``i``, its minimum and relative
    minimum, and ``holds`` (every slack above ``-floor``, the rounding floor of ``K_sum``).
    """
    ev_a = spectrum(K_A)
    ev_b = spectrum(K_B)
    if K_sum is None:
        K_A64 = torch.as_tensor(K_A, dtype=torch.float64)
        K_sum = K_A64 + torch.as_tensor(K_B, dtype=torch.float64, device=K_A64.device)
    ev_s = spectrum(K_sum)
    if not (ev_a.size == ev_b.size == ev_s.size):
        raise ValueError(f"the kernels have different sizes: {ev_a.size}, {ev_b.size}, {ev_s.size}")
    bound = ev_a + ev_b[-1]
    slack = ev_s - bound
    floor = rounding_floor(torch.as_tensor(K_sum), ev_s)
    denom = np.maximum(np.abs(ev_s), floor)                 # 0 only for a zero matrix: its slack is 0 too
    rel = np.divide(slack, denom, out=np.zeros_like(slack), where=denom > 0)
    return {"lambda_A": ev_a, "lambda_B": ev_b, "lambda_sum": ev_s, "lambda_min_B": float(ev_b[-1]),
            "bound": bound, "slack": slack, "min_slack": float(slack.min()),
            "argmin_slack": int(slack.argmin()), "min_relative_slack": float(rel.min()),
            "floor": floor, "holds": bool((slack >= -floor).all())}


# ----------------------------------------------------------------------------------------------
# matrix-free kernel-vector products and extreme eigenvalues
# ----------------------------------------------------------------------------------------------

class NTKOperator:
    """The (output-traced) NTK as a linear operator: ``K v = sum_c J_c (J_c^T v)``, never forming ``K``.

    ``method="structured"`` (``"auto"`` picks it whenever it applies) uses the engine's
    structure: one forward and backward pass at construction records, for every module that owns
    parameters, its inputs ``X`` and output sensitivities ``D``; a product is then, per module,
    ``u = vjp(D * v)`` (the parameter-space gradient ``sum_i v_i df(x_i)/dtheta``, for a dense
    layer ``D^T diag(v) A``) and ``(K v)_i = <D_i, jvp(u)_i>`` on that module alone, in chunks of
    ``chunk_size`` points (default 4096 on the CPU, so the temporaries stay in cache; 65536 on an accelerator): ``O(N P)`` GEMM work,
    no pass through the rest of the network. It stores ``X`` and ``D`` (about ``N`` times the
    network's total width of numbers). ``method="autodiff"`` runs a ``vjp`` and a ``jvp`` through
    the whole model per product (default chunks of 16384); ``"auto"`` chooses it below
    ``STRUCTURED_MIN_N`` points and when a module is called more than once (shared weights). ``matvec`` takes and returns ``(N,)`` (or
    ``(N, b)`` for ``b`` vectors) tensors or arrays.
    """

    #: Points per chunk of the structured products on the CPU (the temporaries stay in cache) and on
    #: an accelerator (fewer launches; every chunk's captures are kept either way).
    STRUCTURED_CHUNK = 4096
    STRUCTURED_CHUNK_ACCELERATOR = 65536
    #: ``method="auto"`` takes the structured products from this many points on (below it the
    #: per-module calls cost more than the arithmetic they save).
    STRUCTURED_MIN_N = 2048

    def __init__(self, model: nn.Module, x: Tensor, *, dtype: torch.dtype | None = torch.float64,
                 chunk_size: int | None = None, method: str = "auto"):
        _check_inputs(model, x)
        if method not in ("auto", "structured", "autodiff"):
            raise ValueError(f"method must be 'auto', 'structured' or 'autodiff', got {method!r}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive number of points, got {chunk_size}")
        self.model = _prepare(model, dtype).eval()
        self.params = {n: p.detach() for n, p in _trainable(self.model)}
        p0 = next(iter(self.params.values()))
        self.device, self.dtype = p0.device, p0.dtype
        self.x = x.detach().to(self.device, self.dtype)
        self.n = self.x.shape[0]
        self._f = _functional(self.model)
        with torch.no_grad():
            self.channels = self._f(self.params, self.x[:1]).shape[1]
        self.shape = (self.n, self.n)
        self.products = 0
        self._ops = None
        if method == "structured" or (method == "auto" and self.n >= self.STRUCTURED_MIN_N):
            default = self.STRUCTURED_CHUNK if self.device.type == "cpu" else self.STRUCTURED_CHUNK_ACCELERATOR
            self.chunk = int(chunk_size or default)
            self._ops = self._structured_setup()
            if self._ops is None and method == "structured":
                raise ValueError("method='structured' needs every parameterized module to be called once per "
                                 "forward with batched tensor inputs; use method='autodiff'")
        self.method = "structured" if self._ops is not None else "autodiff"
        if self._ops is None:
            self.chunk = int(chunk_size or 16384)
            with torch.no_grad():       # one forward over all points: the model checks its inputs here, once,
                for s in range(0, self.n, self.chunk):      # since the products run without reading them
                    self._f(self.params, self.x[s:s + self.chunk])

    def _structured_setup(self) -> list | None:
        """Per site: its parameters and, per chunk, (rows, module function, cached pullback, D)."""
        sites = _sites(self.model)
        p = _forward_backward(self.model, self.x, sites, max(self.chunk, 16384), keep_inputs=True)
        ops = []
        for site in sites:
            if site.kind == "jacobian" or site.name not in p.inputs or site.name not in p.grads:
                return None
            own = {n: q.detach() for n, q in site.module.named_parameters() if n in site.params}
            chunks = []
            traced = True           # torch.func.linearize: the jvp without recomputing the forward
            try:
                for start in range(0, self.n, self.chunk):
                    rows = slice(start, min(self.n, start + self.chunk))
                    args = tuple(a[rows] for a in p.inputs[site.name])
                    f = (lambda m, a: lambda q: functional_call(m, q, a, strict=False))(site.module, args)
                    _, pull = vjp(f, own)
                    lin = None
                    if traced:
                        try:
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore")
                                lin = linearize(f, own)[1]
                        except Exception:  # noqa: BLE001 - data-dependent Python (e.g. input checks)
                            traced = False
                    chunks.append((rows, f, pull, lin, p.grads[site.name][rows]))
            except Exception:  # noqa: BLE001 - a module torch.func cannot call on its own: whole-model path
                return None
            ops.append((own, chunks))
        return ops

    def _matvec_structured(self, v: Tensor) -> Tensor:
        out = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for own, chunks in self._ops:
            for c in range(self.channels):
                u = None                                  # sum_i v_i d f_c(x_i) / d(this module's parameters)
                for rows, f, pull, lin, d in chunks:
                    dc = d[:, c]
                    g = pull(dc * v[rows].reshape(-1, *([1] * (dc.dim() - 1))))[0]
                    if u is None:
                        u = g
                    else:
                        for name in u:
                            u[name].add_(g[name])
                for rows, f, pull, lin, d in chunks:      # (J_c u)_i = <D_i,c, module'(x_i) u>
                    dc = d[:, c]
                    t = lin(u) if lin is not None else jvp(f, (own,), (u,))[1]
                    out[rows] += (dc * t).reshape(dc.shape[0], -1).sum(dim=1)
        return out

    def _matvec1(self, v: Tensor) -> Tensor:
        if self._ops is not None:
            out = self._matvec_structured(v)
            self.products += 1
            return out
        out = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for c in range(self.channels):
            u = {k: torch.zeros_like(p) for k, p in self.params.items()}
            for s in range(0, self.n, self.chunk):
                xc = self.x[s:s + self.chunk]
                _, pull = vjp(lambda p: self._f(p, xc)[:, c], self.params)
                g = pull(v[s:s + self.chunk])[0]
                for k in u:
                    u[k] += g[k]
            for s in range(0, self.n, self.chunk):
                xc = self.x[s:s + self.chunk]
                out[s:s + self.chunk] += jvp(lambda p: self._f(p, xc)[:, c], (self.params,), (u,))[1]
        self.products += 1
        return out

    def matvec(self, v):
        is_np = isinstance(v, np.ndarray)
        t = torch.as_tensor(v).to(self.device, self.dtype)
        # The construction's forward pass checked the coordinates: products read no values (no syncs).
        with coords_validated():
            if t.dim() == 1:
                r = self._matvec1(t)
            else:
                r = torch.stack([self._matvec1(t[:, i]) for i in range(t.shape[1])], dim=1)
        return r.cpu().numpy() if is_np else r

    def diagonal_estimate(self) -> None:  # pragma: no cover - documented absence
        raise NotImplementedError

    def as_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` view (float64)."""
        from scipy.sparse.linalg import LinearOperator
        return LinearOperator(self.shape, matvec=lambda v: self.matvec(np.asarray(v, np.float64).ravel()),
                              matmat=lambda V: self.matvec(np.asarray(V, np.float64)), dtype=np.float64)


def extreme_eigenvalues(op: NTKOperator, k: int = 6, *, which: str = "both", tol: float = 1e-6,
                        maxiter: int | None = None, seed: int = 0, method: str = "lanczos",
                        ) -> dict[str, np.ndarray]:
    """The ``k`` largest and/or smallest eigenvalues of a matrix-free NTK.

    ``method="lanczos"`` (default): one Lanczos run with full reorthogonalization gives both
    ends of the spectrum from the same Krylov space; it stops when the wanted Ritz pairs'
    residual estimates fall below ``tol * lambda_max`` or after ``maxiter`` products (default
    ``min(N, 1000)``; it keeps that many vectors of length ``N``). ``method="arpack"``: ARPACK's
    implicitly restarted Lanczos, for the largest on ``K`` and the smallest on
    ``lambda_max I - K`` (``tol`` relative to each eigenvalue, ``maxiter`` restarts).

    The largest converge in a few dozen products. The smallest of an ill-conditioned kernel
    converge slowly (their gaps are tiny next to ``lambda_max``): they are returned with their
    residual norms ``||K v - lambda v||`` (computed with extra products), which bound how far
    each is from a true eigenvalue, so their accuracy can be judged; each smallest Ritz value is
    also an upper bound on the eigenvalue of the same rank from the bottom. For the bottom of a
    large, nearly singular kernel, :func:`interlacing_bounds` is the cheaper certificate. Returns ``{"largest",
    "smallest", "residual_largest", "residual_smallest", "products", "converged"}``
    (eigenvalues in descending order).
    """
    if which not in ("largest", "smallest", "both"):
        raise ValueError(f"which must be 'largest', 'smallest' or 'both', got {which!r}")
    if method not in ("lanczos", "arpack"):
        raise ValueError(f"method must be 'lanczos' or 'arpack', got {method!r}")
    if not 1 <= k < op.n - 1:
        raise ValueError(f"k must be in [1, N-2] = [1, {op.n - 2}], got {k}")
    if method == "arpack":
        return _extreme_arpack(op, k, which, tol, maxiter, seed)
    n = op.n
    start = op.products
    m_max = int(min(n, maxiter if maxiter is not None else 1000))
    m_max = max(m_max, min(n, 2 * k + 2))
    # The Krylov basis lives on the operator's device (a GPU keeps products and reorthogonalization
    # there); only the small tridiagonal matrix and its eigenvectors go to the host.
    dev = op.device
    Q = torch.empty((n, m_max + 1), dtype=torch.float64, device=dev)
    alpha, beta = np.zeros(m_max), np.zeros(m_max)
    q = torch.from_numpy(np.random.default_rng(seed).standard_normal(n)).to(dev)
    Q[:, 0] = q / torch.linalg.vector_norm(q)
    check_every = max(10, 2 * k)
    converged, m = False, 0
    theta = S = None
    for j in range(m_max):
        w = op.matvec(Q[:, j]).to(torch.float64)
        alpha[j] = float(Q[:, j] @ w)
        for _ in range(2):                                 # full reorthogonalization, twice is enough
            w = w - Q[:, :j + 1] @ (Q[:, :j + 1].T @ w)
        beta[j] = float(torch.linalg.vector_norm(w))
        m = j + 1
        invariant = beta[j] <= 1e-14 * max(abs(alpha[:m]).max(), 1e-300)
        if not invariant:
            Q[:, j + 1] = w / beta[j]
        if invariant or m == m_max or (m >= 2 * k + 2 and m % check_every == 0):
            T = np.diag(alpha[:m]) + np.diag(beta[:m - 1], 1) + np.diag(beta[:m - 1], -1)
            theta, S = np.linalg.eigh(T)                   # ascending
            est = np.abs(beta[j] * S[-1, :])               # ||K y - theta y|| of each Ritz pair
            scale = max(abs(theta[0]), abs(theta[-1]))
            wanted = []
            if which in ("largest", "both"):
                wanted += list(range(m - min(k, m), m))
            if which in ("smallest", "both"):
                wanted += list(range(min(k, m)))
            converged = bool(invariant or np.all(est[wanted] <= tol * scale))
            if converged or m == m_max:
                break
    out: dict[str, Any] = {}
    kk = min(k, m)

    def finish(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vecs = Q[:, :m] @ torch.from_numpy(np.ascontiguousarray(S[:, idx])).to(dev)
        vecs = vecs / torch.linalg.vector_norm(vecs, dim=0)
        lam = theta[idx]
        resid = op.matvec(vecs).to(torch.float64) - vecs * torch.from_numpy(lam).to(dev)
        return lam, torch.linalg.vector_norm(resid, dim=0).cpu().numpy()

    if which in ("largest", "both"):
        idx = np.arange(m - 1, m - 1 - kk, -1)
        out["largest"], out["residual_largest"] = finish(idx)
    if which in ("smallest", "both"):
        idx = np.arange(kk - 1, -1, -1)
        out["smallest"], out["residual_smallest"] = finish(idx)
    out["products"] = op.products - start
    out["lanczos_steps"] = m
    out["converged"] = converged
    return out


def interlacing_bounds(model: nn.Module, x: Tensor, k: int = 6, *, size: int = 1024,
                       indices: Tensor | np.ndarray | None = None) -> dict[str, Any]:
    """Rigorous bounds on the extreme eigenvalues of ``K(x, x)`` from one principal submatrix.

    Cauchy's interlacing theorem: the kernel ``K_S`` of a subset ``S`` of ``m`` of the points is
    a principal submatrix of ``K``, so ``lambda_i^asc(K) <= lambda_i^asc(K_S)`` and
    ``lambda_i^desc(K) >= lambda_i^desc(K_S)`` for ``i = 1..m``. The ``k`` smallest eigenvalues
    of ``K_S`` are upper bounds on the ``k`` smallest of ``K``, its ``k`` largest are lower bounds
    on the ``k`` largest, for the price of one dense ``m x m`` float64 kernel. This is how the
    bottom of an ill-conditioned kernel too large to form is pinned down: Lanczos reaches its
    largest eigenvalues in a few dozen products but its smallest only after hundreds or more, while
    points packed close together have nearly dependent kernel rows, so a small dense patch
    already certifies how close to singular ``K`` is.

    Args:
        model, x: as for :func:`empirical_ntk` (output-traced kernel, like :class:`NTKOperator`).
        k: how many eigenvalues to bound at each end, ``1 <= k <= m``.
        size: ``m``, used when ``indices`` is not given: the ``size`` points nearest to the
            point nearest the centroid of ``x`` (a compact patch: the tightest bottom bounds).
        indices: the subset ``S`` (distinct row indices of ``x``), instead of ``size``.
    Returns:
        ``{"smallest_upper": (k,), "largest_lower": (k,), "indices": (m,), "allowance": float,
        "size": m}``, eigenvalue bounds in descending order as in :func:`extreme_eigenvalues`.
        ``allowance`` is the rounding floor of ``K_S`` (:func:`rounding_floor`,
        ``m * eps64 * lambda_max(K_S)``), an allowance for the rounding of ``K_S`` and of
        ``eigvalsh``, included in the bounds: ``smallest_upper = max(mu, 0) + allowance`` and
        ``largest_lower = mu - allowance`` for the computed eigenvalues ``mu`` of ``K_S``.
    """
    _check_inputs(model, x)
    n = x.shape[0]
    if indices is None:
        if not 1 <= int(size) <= n:
            raise ValueError(f"size must be in [1, N] = [1, {n}] points, got {size}")
        with torch.no_grad():
            xd = x.detach().to(torch.float64)
            seed = torch.argmin(((xd - xd.mean(0)) ** 2).sum(1))
            d2 = ((xd - xd[seed]) ** 2).sum(1)
            idx = torch.argsort(d2, stable=True)[: int(size)].sort().values.cpu()
    else:
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
        if idx.ndim != 1 or idx.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
            raise ValueError("indices must be a 1-D array of integer row indices of x")
        idx = idx.long().cpu()
        if len(idx) == 0 or int(idx.min()) < 0 or int(idx.max()) >= n:
            raise ValueError(f"indices must be non-empty row indices in [0, {n - 1}]")
        if len(torch.unique(idx)) != len(idx):
            raise ValueError("indices must be distinct: a repeated point is not a principal submatrix")
    m = len(idx)
    if not 1 <= int(k) <= m:
        raise ValueError(f"k must be in [1, m] = [1, {m}] for a subset of {m} points, got {k}")
    k = int(k)
    K_S = empirical_ntk(model, x[idx.to(x.device)], dtype=torch.float64)
    mu = spectrum(K_S, check=False)                            # descending
    allowance = rounding_floor(K_S, mu)
    return {"smallest_upper": np.maximum(mu[-k:], 0.0) + allowance, "largest_lower": mu[:k] - allowance,
            "indices": idx.numpy(), "allowance": allowance, "size": m}


def _extreme_arpack(op: NTKOperator, k: int, which: str, tol: float, maxiter: int | None,
                    seed: int) -> dict[str, Any]:
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
    rng = np.random.default_rng(seed)
    A = op.as_scipy()
    out: dict[str, Any] = {}
    start = op.products
    converged = True

    def largest_of(M) -> tuple[np.ndarray, np.ndarray]:
        nonlocal converged
        try:
            return eigsh(M, k=k, which="LA", tol=tol, maxiter=maxiter, v0=rng.standard_normal(op.n))
        except ArpackNoConvergence as err:    # keep the pairs that did converge; the residuals tell the rest
            converged = False
            if len(err.eigenvalues) == 0:
                raise RuntimeError(f"ARPACK converged to none of the {k} eigenvalues within maxiter={maxiter} "
                                   "restarts; raise maxiter or tol, or use method='lanczos'") from None
            return err.eigenvalues, err.eigenvectors

    vals, vecs = largest_of(A)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    if which in ("largest", "both"):
        out["largest"] = vals
        out["residual_largest"] = np.linalg.norm(A.matmat(vecs) - vecs * vals, axis=0)
    if which in ("smallest", "both"):
        shift = float(vals[0]) * 1.0001
        B = LinearOperator(A.shape, matvec=lambda v: shift * v - A.matvec(v), dtype=np.float64)
        sv, svecs = largest_of(B)
        lam = shift - sv
        order = np.argsort(lam)[::-1]
        lam, svecs = lam[order], svecs[:, order]
        out["smallest"] = lam
        out["residual_smallest"] = np.linalg.norm(A.matmat(svecs) - svecs * lam, axis=0)
    out["products"] = op.products - start
    out["converged"] = converged
    return out


# ----------------------------------------------------------------------------------------------
# linearized training: kernel regression (paper 000, Eq. 5)
# ----------------------------------------------------------------------------------------------

def gradient_flow_time(lr: float, steps: int, n: int, channels: int = 1, reduction: str = "mean") -> float:
    """Gradient-flow time ``t`` of ``steps`` full-batch GD steps on MSE, for :func:`kernel_regression`.

    With ``loss = sum (f - y)^2 / (n C)`` (``reduction="mean"``) the linearized dynamics are
    ``df/dt = -K (f - y)`` with ``t = 2 lr steps / (n C)``; with ``reduction="sum"`` of
    ``(f - y)^2 / 2``, ``t = lr steps``.
    """
    if reduction == "mean":
        return 2.0 * lr * steps / (n * channels)
    if reduction == "sum":
        return float(lr * steps)
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def kernel_regression(K_train: Tensor, y_train: Tensor, t: float | Iterable[float], K_test: Tensor | None = None,
                      f0_train: Tensor | None = None, f0_test: Tensor | None = None) -> Tensor:
    """Linearized-network predictions ``f(t) = f0 + K_test K^-1 (I - exp(-K t)) (Y - f0_train)`` (Eq. 5).

    Computed stably through ``K = Q diag(lambda) Q^T``: ``K^-1 (I - e^{-K t}) = Q diag(phi) Q^T``
    with ``phi = (1 - e^{-lambda t}) / lambda`` (and ``phi = t`` as ``lambda -> 0``), so a
    singular ``K`` is no problem. ``K_test`` defaults to ``K_train`` (predictions on the
    training points). ``y_train``: ``(N,)`` or ``(N, C)``. Returns ``(M, C)`` for one ``t``, or
    ``(T, M, C)`` for several. All in float64.
    """
    K = torch.as_tensor(K_train, dtype=torch.float64)
    if K.dim() != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K_train must be square (N, N), got {tuple(K.shape)}")
    y = torch.as_tensor(y_train, dtype=torch.float64, device=K.device)
    y = y[:, None] if y.dim() == 1 else y
    if y.shape[0] != K.shape[0]:
        raise ValueError(f"y_train has {y.shape[0]} rows but K_train is {K.shape[0]} x {K.shape[0]}")
    Kt = K if K_test is None else torch.as_tensor(K_test, dtype=torch.float64, device=K.device)
    if Kt.shape[1] != K.shape[0]:
        raise ValueError(f"K_test must be (M, {K.shape[0]}), got {tuple(Kt.shape)}")
    def on_k(t):                                   # inputs from the host (NumPy, lists) or another device
        return torch.as_tensor(t, dtype=torch.float64, device=K.device)

    r = y - (0 if f0_train is None else on_k(f0_train).reshape(y.shape))
    lam, Q = torch.linalg.eigh(0.5 * (K + K.T))
    lam = lam.clamp_min(0)
    proj = Q.T @ r                                                     # (N, C)
    KtQ = Kt @ Q
    times = [float(t)] if np.isscalar(t) else [float(s) for s in t]
    preds = []
    for s in times:
        if s < 0:
            raise ValueError(f"time must be >= 0, got {s}")
        lt = lam * s
        phi = torch.where(lt > 1e-12, -torch.expm1(-lt) / lam.clamp_min(1e-300), torch.full_like(lam, s))
        pred = KtQ @ (phi[:, None] * proj)
        if f0_test is not None:
            pred = pred + on_k(f0_test).reshape(pred.shape)
        elif K_test is None and f0_train is not None:
            pred = pred + on_k(f0_train).reshape(pred.shape)
        preds.append(pred)
    return preds[0] if np.isscalar(t) else torch.stack(preds)
