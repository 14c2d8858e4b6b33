r"""What one forward and backward pass records for the NTK, module by module.

A *site* is a module that owns trainable parameters. Its *kind* says how its kernel term is made:

- ``"protocol"``: the module defines ``ntk_capture`` / ``ntk_gram`` (:mod:`inrlib.ntk.terms`) and owns
  every parameter below it;
- ``"rule"``: a rule is registered for its class (:func:`inrlib.ntk.terms.register_rule`);
- ``"per_sample"``: any other module with its own parameters (STAF amplitudes, a trainable ``w0``, a
  user's layer): its per-sample parameter gradients ``G`` by ``torch.func`` on that module alone
  (``vmap`` of a ``vjp``), and ``G_a G_b^T``;
- ``"jacobian"``: a module called more than once per forward (shared weights), one whose inputs or
  output are not batched tensors, or one ``torch.func`` cannot ``vmap``: the Jacobian of the whole
  model with respect to that module's parameters (exact, ``O(N C P)`` memory).

:func:`forward_backward` runs the model over the points in chunks with a forward hook on every site:
one forward records each site's capture (and, for per-sample sites, its inputs), and one backward per
output channel gives the sensitivities ``D = df/d(site output)`` of every sample (samples do not
interact, so the gradient of ``sum_i f(x_i)`` with respect to sample ``i``'s activations is
``df(x_i)/d(activation)``).

:class:`NTKFallbackWarning` is issued once per module type when ``torch.func`` fails on a module and
its site is moved to a slower path: the failure may be a genuine bug in the module, and it should not
show up only as slowness.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from . import terms

__all__ = ["SiteKind", "Site", "Pass", "NTKFallbackWarning", "sites", "forward_backward", "per_sample_grads",
           "channel_view", "tree_map", "warn_fallback"]

SiteKind = Literal["protocol", "rule", "per_sample", "jacobian"]
SITE_KINDS: tuple[str, ...] = get_args(SiteKind)


class NTKFallbackWarning(UserWarning):
    """``torch.func`` failed on a module, so its kernel term took a slower (still exact) path."""


#: ``(module type, where)`` pairs already warned about: each is reported once per process.
_WARNED: set[tuple[type, str]] = set()


def warn_fallback(module: nn.Module, site: str, where: str, error: BaseException, cost: str,
                  stacklevel: int = 2) -> None:
    """Issue :class:`NTKFallbackWarning` for ``type(module)`` at ``where`` unless it was already issued.

    The message names the module type and site, the exception (its type and message: a bug in the
    module shows here) and what the slower path costs. ``stacklevel`` counts from the caller of this function
    (as in :func:`warnings.warn`): pass the depth of the user's call, so that the warning points at it.
    """
    key = (type(module), where)
    if key in _WARNED:
        return
    _WARNED.add(key)
    kind = type(module)
    warnings.warn(
        f"{where}: torch.func failed on module type {kind.__module__}.{kind.__qualname__} (site {site!r}): "
        f"{type(error).__name__}: {str(error).rstrip('. ')}. {cost} "
        "Further fallbacks of this module type here are not reported. "
        "If the error is a bug in the module, fix it; otherwise make its forward traceable by torch.func "
        "(no Python control flow on tensor values, no .item() or .numpy()).",
        NTKFallbackWarning, stacklevel=stacklevel + 1)


@dataclass
class Site:
    """A module that owns trainable parameters, and how its kernel term is made."""
    name: str            # its name in the model ("model" for the model itself)
    module: nn.Module
    group: str           # "mlp" or "grid"
    kind: SiteKind
    params: list[str]    # trainable parameter names relative to ``module``

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise ValueError(f"site kind must be one of {', '.join(map(repr, SITE_KINDS))}, got {self.kind!r}")

    def to_jacobian(self) -> None:
        """Take this site's term from the Jacobian of the whole model (exact, O(N C P) memory)."""
        self.kind = "jacobian"


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


def sites(model: nn.Module) -> list[Site]:
    """Modules that own trainable parameters. A protocol module owns every parameter below it."""
    out: list[Site] = []
    covered: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, _CONTAINERS) or any(name.startswith(c) for c in covered):
            continue
        kind: SiteKind
        if hasattr(module, "ntk_capture") and hasattr(module, "ntk_gram"):
            params = [n for n, p in module.named_parameters() if p.requires_grad]
            covered.add(name + "." if name else "")
            kind = "protocol"
        else:
            params = _own_params(module)
            kind = "rule" if terms.rule_for(type(module)) is not None else "per_sample"
        if params:
            out.append(Site(name or "model", module, _group_of(module), kind, params))
    return out


def tree_map(fn: Callable[[Tensor], Any], tree: Any) -> Any:
    """``fn`` applied to every tensor of nested lists, tuples and dicts (other leaves kept)."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, t) for t in tree)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
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
class Pass:
    """What one set of points leaves behind: captures and sensitivities per site."""
    saved: dict[str, Any]
    grads: dict[str, Tensor]      # (N, C, *out)
    inputs: dict[str, tuple]      # for per-sample sites
    n_out: int


def forward_backward(model: nn.Module, x: Tensor, sites: list[Site], chunk: int,
                     keep_inputs: bool = False) -> Pass:
    """One forward and one backward per output channel over ``x`` in chunks: captures and sensitivities.

    Sites found to be shared (called more than once) or to take or return anything but batched tensors
    are switched to ``"jacobian"``. ``keep_inputs``: also record every site's inputs (for the site-local
    products of :class:`~inrlib.ntk.operator.NTKOperator`).
    """
    saved: dict[str, list] = {s.name: [] for s in sites}
    grads: dict[str, list] = {s.name: [] for s in sites}
    inputs: dict[str, list] = {s.name: [] for s in sites}
    n_out = 0
    outs: dict[str, Tensor]
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        outs = {}
        calls = {s.name: 0 for s in sites}
        handles = []

        def make_hook(site: Site):
            def hook(module, args, output):
                calls[site.name] += 1
                if not isinstance(output, Tensor):
                    site.to_jacobian()
                    return
                outs[site.name] = output
                if site.kind == "protocol":
                    saved[site.name].append(module.ntk_capture(args, output))
                elif site.kind == "rule":
                    rule = terms.rule_for(type(module))
                    assert rule is not None                  # a "rule" site's class has one
                    saved[site.name].append(rule[0](module, args, output))
                if site.kind == "per_sample" or (keep_inputs and site.kind in ("protocol", "rule")):
                    if all(isinstance(a, Tensor) and a.dim() >= 1 and a.shape[0] == xc.shape[0] for a in args):
                        inputs[site.name].append(tuple(a.detach() for a in args))
                    else:
                        site.to_jacobian()
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
                s.to_jacobian()        # shared module: its gradient is a sum over calls
        live = [s for s in sites if s.kind != "jacobian" and s.name in outs]
        targets = [outs[s.name] for s in live]
        per_channel = []
        for c in range(n_out):
            g = torch.autograd.grad(out[:, c].sum(), targets, retain_graph=c < n_out - 1, allow_unused=True)
            per_channel.append([torch.zeros_like(t) if gi is None else gi for gi, t in zip(g, targets)])
        for idx, s in enumerate(live):
            grads[s.name].append(torch.stack([pc[idx] for pc in per_channel], dim=1).detach())
        outs.clear()                   # the chunk's graph goes with its outputs
        del out, targets, per_channel
    return Pass(
        saved={k: _tree_cat(v) for k, v in saved.items() if v},
        grads={k: v[0] if len(v) == 1 else torch.cat(v) for k, v in grads.items() if v},
        inputs={k: _tree_cat(v) for k, v in inputs.items() if v},
        n_out=n_out,
    )


def per_sample_grads(module: nn.Module, names: list[str], args: tuple, grad: Tensor) -> Tensor:
    """Per-sample gradients of ``<D_i, module(a_i)>`` w.r.t. the module's own parameters: ``(N, C*P)``.

    ``args``: the module's inputs, each ``(N, ...)``; ``grad``: the sensitivities ``(N, C, *out)``.
    """
    own = {n: p.detach() for n, p in module.named_parameters() if n in names}

    def one(sample_args, d):                       # d: (C, *out)
        def f(p):
            return functional_call(module, p, tuple(a.unsqueeze(0) for a in sample_args), strict=False)[0]
        pullback = vjp(f, own)[1]
        g = vmap(pullback)(d)[0]                  # dict of (C, *shape)
        return torch.cat([v.reshape(d.shape[0], -1) for v in g.values()], dim=1)

    g = vmap(one)(args, grad)                     # (N, C, P)
    return g.reshape(g.shape[0], -1)


def channel_view(grads: Tensor, c: int | None) -> Tensor:
    """Sensitivities ``(N, C, ...)`` of channel ``c`` only (``(N, 1, ...)``), or all when ``c`` is ``None``."""
    return grads if c is None else grads[:, c:c + 1]
