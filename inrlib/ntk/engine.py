r"""The empirical neural tangent kernel, exact, fast and memory-lean: the structured engine and its entry point.

.. math::  K(x_i, x_j) = \sum_{\theta} \Big\langle \frac{\partial f(x_i)}{\partial \theta},
                                            \frac{\partial f(x_j)}{\partial \theta} \Big\rangle

summed over every trainable tensor (grid values included) and, by default, over output channels.

**Method.** Per-sample gradients are never materialized. One forward pass records, for each module
that owns trainable parameters (a *site*, :mod:`inrlib.ntk.capture`), what its gradient needs, and one
backward pass per output channel gives the sensitivities ``D = df/d(module output)`` of every sample.
Each site then turns (capture, sensitivities) into its kernel term: the protocol's Gram functions for
dense layers and grid levels (:mod:`inrlib.ntk.terms`), ``G_a G_b^T`` of ``torch.func`` per-sample
gradients for other modules, and the Jacobian of the whole model (:mod:`inrlib.ntk.reference`) for
a module called more than once per forward or one ``torch.func`` cannot ``vmap``.

``K(x, x)`` is built in row panels on and above the diagonal and mirrored, so it is exactly symmetric
(each group term too). Before any work the kernel's memory need is checked against the budget
(:class:`~inrlib.ntk.checks.NTKMemoryError`).

The reference methods (``method="jacobian"``, ``"ntk_vp"``) are the textbook ``torch.func`` ways.
"""
from __future__ import annotations

from typing import Any, Literal, cast, get_args

import torch
from torch import Tensor, nn

from . import terms
from .capture import Pass, Site, channel_view, forward_backward, per_sample_grads, sites, tree_map, warn_fallback
from .checks import (
    NTKMemoryError,
    check_choice,
    check_chunk_size,
    check_model,
    check_points,
    eval_mode,
    in_dtype,
    memory_budget_bytes,
    trainable,
)
from .reference import jacobian_ntk, ntk_vp

__all__ = ["Outputs", "Method", "empirical_ntk", "terms_shape", "PANEL_ROWS"]

Outputs = Literal["trace", "full"]
Method = Literal["auto", "structured", "jacobian", "ntk_vp"]
#: The allowed values, for callers that list them.
OUTPUTS: tuple[str, ...] = get_args(Outputs)
METHODS: tuple[str, ...] = get_args(Method)


def _site_terms(site: Site, pa: Pass, pb: Pass, ia: slice, ib: slice, ca: int | None, cb: int | None,
                cache: dict) -> dict[str, Tensor]:
    """Kernel terms of one site between rows ``ia`` of pass ``pa`` and rows ``ib`` of ``pb``.

    ``ca`` / ``cb``: the output channel of each side (``None``: all, traced over).
    """
    ga = channel_view(pa.grads[site.name], ca)[ia]
    gb = channel_view(pb.grads[site.name], cb)[ib]
    if site.kind in ("protocol", "rule"):
        sa = tree_map(lambda t: t[ia], pa.saved[site.name])
        sb = tree_map(lambda t: t[ib], pb.saved[site.name])
        if site.kind == "protocol":
            return dict(cast(Any, site.module).ntk_gram(sa, ga, sb, gb))
        rule = terms.rule_for(type(site.module))
        assert rule is not None                          # a "rule" site's class has one
        return dict(rule[1](site.module, sa, ga, sb, gb))
    # per-sample: G_a G_b^T, each pass's G computed once per channel and kept while the site is worked on
    def g(p: Pass, c: int | None) -> Tensor:
        key = (id(p), site.name, c)
        if key not in cache:
            cache[key] = per_sample_grads(site.module, site.params, p.inputs[site.name],
                                          channel_view(p.grads[site.name], c))
        return cache[key]
    return {"": g(pa, ca)[ia] @ g(pb, cb)[ib].T}


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


def _structured(model: nn.Module, x1: Tensor, x2: Tensor | None, outputs: Outputs, groups: bool,
                budget: int, chunk: int | None) -> Tensor | dict[str, Tensor]:
    """The structured kernel (or its groups) of checked inputs already on the model's device and dtype."""
    found = sites(model)
    n1 = x1.shape[0]
    fb_chunk = chunk or max(256, min(x1.shape[0], 16384))
    pa = forward_backward(model, x1, found, fb_chunk)
    pb = pa if x2 is None else forward_backward(model, x2, found, fb_chunk)
    n2 = n1 if x2 is None else x2.shape[0]
    c_out = pa.n_out
    dtype, device = x1.dtype, x1.device
    item = torch.empty((), dtype=dtype).element_size()
    # per-sample sites that torch.func cannot vmap fall back to Jacobians, with a warning naming why
    for s in found:
        if s.kind == "per_sample":
            try:
                per_sample_grads(s.module, s.params, tuple(a[:1] for a in pa.inputs[s.name]),
                                 pa.grads[s.name][:1])
            except Exception as err:  # noqa: BLE001 - any torch.func failure: the Jacobian path, reported
                s.to_jacobian()
                n_params = sum(p.numel() for n, p in s.module.named_parameters() if n in s.params)
                size = (n1 + (0 if x2 is None else x2.shape[0])) * c_out * n_params * item
                warn_fallback(s.module, s.name, "empirical_ntk", err,
                              f"Its kernel term is taken from the Jacobian of the whole model with respect to its "
                              f"{n_params} parameters instead: exact, but it holds an (N, C, P) Jacobian "
                              f"({_size(size)} here, growing with N) and, when the model cannot be vmapped "
                              "either, costs one backward pass per output row.",
                              stacklevel=3)                       # _structured <- empirical_ntk <- the caller
    jac_sites = [s for s in found if s.kind == "jacobian"]

    full = outputs == "full"
    blocks = [(None, None)] if not full else [(a, b) for a in range(c_out) for b in range(c_out)]
    c2 = c_out ** 2 if full else 1
    side = n1 * n2 * c2
    # rows per panel: the few (rows x n2) temporaries of a term stay within a fraction of the budget
    cap = PANEL_ROWS if device.type == "cpu" else n1
    rows = max(1, min(n1, cap, int((budget // 8) // max(1, 4 * n2 * c2 * item))))
    n_keys = 1 if not groups else 3 + len(found) + 8
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

    def accumulate(site: Site, ia: slice, ib: slice, ab: tuple, cache: dict) -> None:
        for suffix, value in _site_terms(site, pa, pb, ia, ib, ab[0], ab[1], cache).items():
            if total is not None:                       # groups=False
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

    structured = [s for s in found if s.kind in ("protocol", "rule")]
    per_sample = [s for s in found if s.kind == "per_sample"]
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
            k = jacobian_ntk(model, x1, x2, {n: params[n] for n in names}, outputs, budget).reshape(shape)
            if total is not None:
                total += k
                continue
            terms[s.name], key_site[s.name] = k, s.name
            if s.group in by_group:
                by_group[s.group] += k
            else:
                by_group[s.group] = k.clone()

    def finish(t: Tensor) -> Tensor:
        return t.reshape(n1 * c_out, n2 * c_out) if full else t

    if total is not None:
        return finish(total)
    return _assemble(terms, by_group, key_site, shape, dtype, device, finish)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:.1f} KiB"


def terms_shape(n1: int, n2: int, c: int, outputs: Outputs) -> tuple:
    """The shape a term is accumulated in: ``(n1, n2)`` traced, ``(n1, c, n2, c)`` full."""
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


def empirical_ntk(model: nn.Module, x: Tensor, x2: Tensor | None = None, *, groups: bool = False,
                  outputs: Outputs = "trace", method: Method = "auto", dtype: torch.dtype | None = torch.float64,
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
        dtype: computation dtype; the model is copied and cast when needed (the caller's model is
            never changed). Default float64: a float32 kernel carries relative rounding errors near
            1e-7 of its largest entries, so its small eigenvalues are noise, and a ReLU whose
            pre-activation is near 0 can take the other side in float32 and change a gradient's
            mask; pass ``None`` to use the model's own dtype.
        memory_budget: bytes the kernel and its temporaries may use (default: half the free
            memory of the device). A kernel that does not fit raises :class:`NTKMemoryError`.
        chunk_size: points per forward/backward pass (default: up to 16384; an integer >= 1).
    Returns:
        A tensor (on the model's device, in ``dtype``), or a dict of tensors with ``groups=True``.

    Refused before any work: a model that is not an ``nn.Module``, has no trainable parameters or has
    a NaN/inf parameter (named); points that are not ``(N, d)`` floating-point tensors; an unknown
    ``outputs`` or ``method``; a ``chunk_size`` that is not a positive integer. The model runs in eval
    mode and its train/eval flags are restored afterwards. A module ``torch.func`` cannot take apart
    is computed from its Jacobian with one :class:`~inrlib.ntk.capture.NTKFallbackWarning` per module
    type saying why.
    """
    check_choice("outputs", outputs, get_args(Outputs))
    check_choice("method", method, get_args(Method))
    chunk_size = check_chunk_size(chunk_size)
    check_model(model)
    check_points(model, x, "x")
    if x2 is not None:
        check_points(model, x2, "x2")
        if x2.shape[1] != x.shape[1]:
            raise ValueError(f"x has {x.shape[1]} columns but x2 has {x2.shape[1]}")
    if groups and method == "ntk_vp":
        raise ValueError("groups=True is available with method='structured' or 'jacobian', not 'ntk_vp'")
    model = in_dtype(model, dtype)
    param = next(p for _, p in trainable(model))
    device, work_dtype = param.device, (dtype or param.dtype)
    x = x.detach().to(device=device, dtype=work_dtype)
    x2 = None if x2 is None else x2.detach().to(device=device, dtype=work_dtype)
    budget = memory_budget_bytes(memory_budget, device)
    with eval_mode(model):
        if method in ("auto", "structured"):
            return _structured(model, x, x2, outputs, groups, budget, chunk_size)
        if method == "jacobian":
            if groups:
                return _reference_groups(model, x, x2, outputs, budget)
            return jacobian_ntk(model, x, x2, dict(trainable(model)), outputs, budget)
        return ntk_vp(model, x, x2, outputs, chunk_size or 64, budget)


def _reference_groups(model: nn.Module, x1: Tensor, x2: Tensor | None, outputs: Outputs,
                      budget: int) -> dict[str, Tensor]:
    """Per-module terms by Jacobians, keyed like the structured engine's module entries."""
    out: dict[str, Tensor] = {}
    total: Tensor | None = None
    group_sum: dict[str, Tensor | None] = {"mlp": None, "grid": None}
    params = dict(trainable(model))
    for site in sites(model):
        prefix = "" if site.name == "model" else site.name + "."
        k = jacobian_ntk(model, x1, x2, {prefix + n: params[prefix + n] for n in site.params}, outputs, budget)
        out[site.name + (" (module)" if site.name in _RESERVED else "")] = k
        total = k.clone() if total is None else total + k
        g = site.group
        prev = group_sum[g]
        group_sum[g] = k.clone() if prev is None else prev + k
    assert total is not None                             # a checked model has at least one site
    out["total"] = total
    for g in ("mlp", "grid"):
        sum_g = group_sum[g]
        out[g] = sum_g if sum_g is not None else torch.zeros_like(total)
    return out


