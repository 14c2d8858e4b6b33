"""A hand-written training step for coordinate MLPs: forward, backward and update in a few tensor
operations per layer, for ``M`` stacked networks at once.

Autograd builds a graph of ~170 small operations per step of paper 000's Table 2 network (two grid
levels, 2 x 512 ReLU) and ``torch.optim`` updates all 86k grid rows though a batch of 10 touches 80:
at the papers' small batches a step is bound by that overhead, not by its arithmetic. :func:`plan`
reads a model into steps it knows — a grid encoding (:class:`~inrlib.encodings.MultigridEncoding`,
:class:`~inrlib.encodings.HashGridEncoding`) or any encoding without trainable parameters, then
:class:`~inrlib.layers.Dense`, ``ReLU``, ``Tanh``, :class:`~inrlib.layers.Sine`,
:class:`~inrlib.layers.STAF`, ``Sigmoid``, ``Identity`` — and :class:`FusedStep` runs the forward
pass keeping what the backward needs, back-propagates by hand and updates the parameters in place:

- plain SGD: ``p -= lr * g``; a grid table only on the rows the batch touched (``index_add_``). The
  other rows have zero gradient and plain SGD leaves them alone, so this is the same optimization.
- Adam: ``torch.optim.Adam``'s update, same formula and order. Grid tables get their dense gradient:
  Adam moves rows whose gradient is zero through its moments, so a sparse update would be another
  optimizer (``torch.optim.SparseAdam`` is one); this path keeps Adam exact.

Parameters are ``(M, ...)`` tensors: for one model, views of its own parameters with a leading axis
of 1; for an ensemble, the stacked state that ``fit_ensemble`` trains. Each member is updated on its
own slice, with batched matrix products. A model this module cannot read (any other layer, a user's
own module, dropout, momentum or weight decay) is refused by :func:`plan` with the reason, and the
caller trains it with autograd. Results equal autograd + ``torch.optim`` to rounding (the tests
compare both in float64 over hundreds of steps).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .coords import check_coords
from .encodings import HashGridEncoding, MultigridEncoding
from .layers import STAF, Dense, Sine

__all__ = ["Unsupported", "plan", "FusedStep", "for_model", "for_stack"]

BCE_EPS = 1e-7          # the same clamp as inrlib.train (loss="bce")
_LOSSES = ("mse", "bce", "bce_logits")


class Unsupported(ValueError):
    """The model or the settings are outside what the fused step computes; the message says what."""


# ----------------------------------------------------------------------------------------------
# steps of the forward pass and their backward
# ----------------------------------------------------------------------------------------------

@dataclass
class _Grads:
    """Gradients of one step's parameters: dense tensors, or (rows, values) for grid tables."""
    dense: dict[str, Tensor] = field(default_factory=dict)
    rows: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)


class _Encoding:
    """An encoding without trainable parameters: applied as it is, nothing to back-propagate."""

    has_params = False

    def __init__(self, module: nn.Module):
        self.module = module

    def forward(self, h: Tensor, P: Mapping[str, Tensor]) -> tuple[Tensor, Any]:
        M, B = h.shape[:2]
        out = self.module(h.reshape(M * B, -1))
        return out.reshape(M, B, -1), None

    def backward(self, g: Tensor, ctx: Any, P: Mapping[str, Tensor], G: _Grads, need_input: bool) -> None:
        return None


class _Grid:
    """A grid encoding: per level, ``feature = sum_c w_c(x) table[row_c]`` over the cell's 2^d corners;
    the gradient of a table is ``w_c * g`` on those rows only."""

    has_params = True

    def __init__(self, module: MultigridEncoding | HashGridEncoding, names: Sequence[str]):
        self.module, self.names = module, list(names)
        self.k = module.features

    def param_names(self) -> list[str]:
        return self.names

    def forward(self, h: Tensor, P: Mapping[str, Tensor]) -> tuple[Tensor, Any]:
        enc = self.module
        M, B = h.shape[:2]
        x = check_coords(h.reshape(M * B, -1), enc.dim, clamp=enc.clamp, who=type(enc).__name__)
        member = torch.arange(M, device=x.device).repeat_interleave(B)[:, None]     # (M B, 1)
        parts, saved = [], []
        for level, name in enumerate(self.names):
            table = P[name]                                                        # (M, R, k)
            rows, w = enc.corners(x, level)                                        # (M B, 2^d)
            rows = rows + member * table.shape[1]                                  # rows of the (M R, k) view
            w = w.to(table.dtype)
            parts.append((table.reshape(-1, self.k)[rows] * w[..., None]).sum(dim=1))
            saved.append((rows, w))
        if enc.include_input:
            parts.append(x.to(parts[0].dtype) if parts else x)
        return torch.cat(parts, dim=1).reshape(M, B, -1), saved

    def backward(self, g: Tensor, ctx: Any, P: Mapping[str, Tensor], G: _Grads, need_input: bool) -> None:
        M, B = g.shape[:2]
        g = g.reshape(M * B, -1)
        for level, (name, (rows, w)) in enumerate(zip(self.names, ctx)):
            gl = g[:, level * self.k:(level + 1) * self.k]                          # (M B, k)
            G.rows[name] = (rows.reshape(-1), (w[..., None] * gl[:, None, :]).reshape(-1, self.k))
        return None


class _Dense:
    """``z = w_scale h W^T + b_scale b``; ``dW = w_scale g^T h``, ``db = b_scale sum g``, ``dh = w_scale g W``."""

    has_params = True

    def __init__(self, module: Dense, weight: str, bias: str | None):
        self.ws, self.bs = float(module.w_scale), float(module.b_scale)
        self.weight, self.bias = weight, bias

    def param_names(self) -> list[str]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def forward(self, h: Tensor, P: Mapping[str, Tensor]) -> tuple[Tensor, Any]:
        W = P[self.weight]                                                          # (M, out, in)
        b = P[self.bias] if self.bias is not None else None
        if h.shape[0] == 1:
            z = (torch.addmm(b[0], h[0], W[0].T, beta=self.bs, alpha=self.ws) if b is not None
                 else torch.mm(h[0], W[0].T).mul_(self.ws))[None]
        elif b is not None:
            z = torch.baddbmm(b[:, None, :], h, W.transpose(1, 2), beta=self.bs, alpha=self.ws)
        else:
            z = torch.bmm(h, W.transpose(1, 2)).mul_(self.ws)
        return z, h

    def backward(self, g: Tensor, h: Tensor, P: Mapping[str, Tensor], G: _Grads, need_input: bool) -> Tensor | None:
        if g.shape[0] == 1:
            G.dense[self.weight] = torch.mm(g[0].T, h[0]).mul_(self.ws)[None]
        else:
            G.dense[self.weight] = torch.bmm(g.transpose(1, 2), h).mul_(self.ws)
        if self.bias is not None:
            G.dense[self.bias] = g.sum(dim=1).mul_(self.bs)
        if not need_input:
            return None
        W = P[self.weight]
        return (torch.mm(g[0], W[0]).mul_(self.ws)[None] if g.shape[0] == 1
                else torch.bmm(g, W).mul_(self.ws))


class _Pointwise:
    """A parameter-free elementwise activation: ReLU, Tanh, Sigmoid, Identity."""

    has_params = False

    def __init__(self, kind: str):
        self.kind = kind

    def forward(self, z: Tensor, P: Mapping[str, Tensor]) -> tuple[Tensor, Any]:
        if self.kind == "relu":
            out = torch.relu(z)
        elif self.kind == "tanh":
            out = torch.tanh(z)
        elif self.kind == "sigmoid":
            out = torch.sigmoid(z)
        else:
            out = z
        return out, out

    def backward(self, g: Tensor, out: Tensor, P: Mapping[str, Tensor], G: _Grads, need_input: bool) -> Tensor | None:
        if self.kind == "relu":
            return g * (out > 0)
        if self.kind == "tanh":
            return g * (1 - out * out)
        if self.kind == "sigmoid":
            return g * (1 - out) * out
        return g


class _Sine:
    """``sin(w0 z)``; ``dz = w0 cos(w0 z) g``, and ``dw0 = sum z cos(w0 z) g`` when ``w0`` is trained."""

    def __init__(self, w0: str, trainable: bool):
        self.w0, self.trainable = w0, trainable
        self.has_params = trainable

    def param_names(self) -> list[str]:
        return [self.w0] if self.trainable else []

    def forward(self, z: Tensor, P: Mapping[str, Tensor]) -> tuple[Tensor, Any]:
        w0 = P[self.w0].to(z.dtype).reshape(-1, 1, 1)                              # (M, 1, 1)
        u = w0 * z
        return torch.sin(u), (z, u, w0)

    def backward(self, g: Tensor, ctx: Any, P: Mapping[str, Tensor], G: _Grads, need_input: bool) -> Tensor | None:
        z, u, w0 = ctx
        gc = g * torch.cos(u)
        if self.trainable:
            G.dense[self.w0] = (gc * z).flatten(1).sum(1).reshape(P[self.w0].shape)
        return gc * w0 if need_input else None


class _STAF:
    """``sum_t a_t sin(omega_t z + phi_t)``, per neuron or shared by the layer."""

    has_params = True

    def __init__(self, module: STAF, names: Mapping[str, str]):
        self.shared, self.names = module.shared, dict(names)

    def param_names(self) -> list[str]:
        return list(self.names.values())

    def _view(self, t: Tensor) -> Tensor:
        return t[:, None, None, :] if self.shared else t[:, None, :, :]              # (M, 1, [1|n], tau)

    def forward(self, z: Tensor, P: Mapping[str, Tensor]) -> tuple[Tensor, Any]:
        a, om, ph = (self._view(P[self.names[k]]) for k in ("amplitudes", "frequencies", "phases"))
        arg = z[..., None] * om + ph                                                # (M, B, n, tau)
        s = torch.sin(arg)
        return (s * a).sum(dim=-1), (z, arg, s)

    def backward(self, g: Tensor, ctx: Any, P: Mapping[str, Tensor], G: _Grads, need_input: bool) -> Tensor | None:
        z, arg, s = ctx
        a, om = self._view(P[self.names["amplitudes"]]), self._view(P[self.names["frequencies"]])
        ga = g[..., None]                                                           # (M, B, n, 1)
        gac = ga * a * torch.cos(arg)                                               # d out / d arg, times g
        axes = (1, 2) if self.shared else (1,)
        G.dense[self.names["amplitudes"]] = (ga * s).sum(dim=axes)
        G.dense[self.names["phases"]] = gac.sum(dim=axes)
        G.dense[self.names["frequencies"]] = (gac * z[..., None]).sum(dim=axes)
        return (gac * om).sum(dim=-1) if need_input else None


# ----------------------------------------------------------------------------------------------
# reading a model
# ----------------------------------------------------------------------------------------------

_POINTWISE = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}


def _flatten(module: nn.Module) -> list[nn.Module]:
    if type(module) is nn.Sequential:
        return [m for child in module for m in _flatten(child)]
    return [module]


def plan(model: nn.Module) -> list[Any]:
    """The steps of ``model``'s forward pass, or :class:`Unsupported` saying why there are none.

    Readable models: an :class:`~inrlib.models.CoordinateMLP` (``mlp(encoding(x))``) or a plain
    ``nn.Sequential`` whose first module may be an encoding; every module after the encoding one of
    the layers named in the module docstring. Parameter names are the model's own.
    """
    from .models import CoordinateMLP  # the model layer: imported late, fused sits beside train

    names = {id(p): n for n, p in model.named_parameters()}
    names.update({id(b): n for n, b in model.named_buffers()})

    def name(t: Tensor) -> str:
        return names[id(t)]

    if type(model) is CoordinateMLP:
        encoding: nn.Module | None = model.encoding
        body = _flatten(model.mlp)
    elif type(model) is nn.Sequential:
        modules = _flatten(model)
        encoding = modules[0] if modules and hasattr(modules[0], "out_features") and hasattr(modules[0], "dim") \
            and not isinstance(modules[0], Dense) else None
        body = modules[1:] if encoding is not None else modules
    else:
        raise Unsupported(f"{type(model).__name__} is not a CoordinateMLP or an nn.Sequential of known layers")
    steps: list[Any] = []
    if encoding is not None:
        if type(encoding) in (MultigridEncoding, HashGridEncoding):
            if not all(t.requires_grad for t in encoding.tables):
                raise Unsupported("a grid encoding with frozen tables")
            steps.append(_Grid(encoding, [name(t) for t in encoding.tables]))
        elif any(p.requires_grad for p in encoding.parameters()):
            raise Unsupported(f"the encoding {type(encoding).__name__} has trainable parameters the fused step "
                              "does not know")
        else:
            steps.append(_Encoding(encoding))
    for m in body:
        if type(m) is Dense:
            if not m.weight.requires_grad or (m.bias is not None and not m.bias.requires_grad):
                raise Unsupported("a Dense layer with frozen parameters")
            steps.append(_Dense(m, name(m.weight), name(m.bias) if m.bias is not None else None))
        elif type(m) in _POINTWISE:
            steps.append(_Pointwise(_POINTWISE[type(m)]))
        elif type(m) is Sine:
            if isinstance(m.w0, nn.Parameter) and not m.w0.requires_grad:
                raise Unsupported("a Sine layer with a frozen trainable w0")
            steps.append(_Sine(name(m.w0), isinstance(m.w0, nn.Parameter)))
        elif type(m) is STAF:
            if not all(p.requires_grad for p in (m.amplitudes, m.frequencies, m.phases)):
                raise Unsupported("a STAF layer with frozen parameters")
            steps.append(_STAF(m, {k: name(getattr(m, k)) for k in ("amplitudes", "frequencies", "phases")}))
        else:
            raise Unsupported(f"the layer {type(m).__name__} has no fused forward and backward")
    if not any(isinstance(s, _Dense) for s in steps):
        raise Unsupported("the model has no Dense layer")
    return steps


# ----------------------------------------------------------------------------------------------
# the step
# ----------------------------------------------------------------------------------------------

def _loss_and_grad(loss: str, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Each member's mean loss over its batch ``(M,)`` and its gradient with respect to ``out``."""
    M = out.shape[0]
    count = out[0].numel()
    if loss == "mse":
        diff = out - y
        return diff.square().reshape(M, -1).mean(1), diff * (2.0 / count)
    if loss == "bce":
        p = out.clamp(BCE_EPS, 1.0 - BCE_EPS)
        per = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
        inside = (out >= BCE_EPS) & (out <= 1.0 - BCE_EPS)       # clamp's gradient: 1 inside, 0 outside
        grad = (p - y) / (p * (1 - p)).clamp_min(1e-12) * inside
        return per.reshape(M, -1).mean(1), grad / count
    per = out.clamp_min(0) - out * y + torch.log1p(torch.exp(-out.abs()))
    return per.reshape(M, -1).mean(1), (torch.sigmoid(out) - y) / count


class FusedStep:
    """One optimization step of ``M`` stacked networks: ``step(x, y) -> (M,)`` mean batch losses.

    Args:
        steps: :func:`plan` of the members' common architecture.
        params: ``{name: (M, ...) tensor}``, the parameters the steps read and update in place, and the
            buffers they read (a :class:`~inrlib.layers.Sine`'s fixed ``w0``).
        trainable: the names of ``params`` that are trained.
        optimizer: ``"sgd"`` (plain) or ``"adam"`` (torch's defaults), learning rate ``lr``.
        loss: ``"mse"``, ``"bce"`` (probabilities, clamped as :mod:`inrlib.train` does) or ``"bce_logits"``.
    ``x`` is ``(M, B, d)``, ``y`` the members' targets in the networks' output shape ``(M, B, C)``.
    """

    def __init__(self, steps: Sequence[Any], params: Mapping[str, Tensor], trainable: Sequence[str], *,
                 optimizer: str, lr: float, loss: str,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if optimizer not in ("sgd", "adam"):
            raise Unsupported(f"optimizer {optimizer!r}: the fused step does plain SGD and Adam")
        if loss not in _LOSSES:
            raise Unsupported(f"loss {loss!r}: the fused step knows {', '.join(_LOSSES)}")
        self.steps, self.P = list(steps), dict(params)
        self.trainable = list(trainable)
        self.optimizer, self.lr, self.loss = optimizer, float(lr), loss
        self.betas, self.eps = betas, eps
        self.grid_tables = {n for s in self.steps if isinstance(s, _Grid) for n in s.names}
        self.sparse = optimizer == "sgd"       # touched rows only: exact for plain SGD
        self.t = 0
        if optimizer == "adam":
            self.exp_avg = [torch.zeros_like(self.P[n]) for n in self.trainable]
            self.exp_avg_sq = [torch.zeros_like(self.P[n]) for n in self.trainable]
        covered = {n for s in self.steps for n in getattr(s, "param_names", lambda: [])()}
        missing = [n for n in self.trainable if n not in covered]
        if missing:
            raise Unsupported(f"the trainable parameter(s) {missing} are not used by the planned forward pass")
        # a step needs its input's gradient only when a step before it has parameters
        first = next(i for i, s in enumerate(self.steps) if s.has_params)
        self._need_input = [i > first for i in range(len(self.steps))]

    @property
    def description(self) -> str:
        """What this step computes, for the run's history."""
        grid = ", grid tables on the touched rows" if self.grid_tables and self.sparse else ""
        return f"fused {self.optimizer}{grid}"

    def forward(self, x: Tensor) -> tuple[Tensor, list[Any]]:
        h, ctxs = x, []
        for s in self.steps:
            h, ctx = s.forward(h, self.P)
            ctxs.append(ctx)
        return h, ctxs

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            out, ctxs = self.forward(x)
            if out.shape != y.shape:
                raise ValueError(f"the networks' outputs {tuple(out.shape)} and the targets {tuple(y.shape)} differ "
                                 "in shape; reshape the targets to (M, B, out_features)")
            per_member, g = _loss_and_grad(self.loss, out, y)
            G = _Grads()
            for i in range(len(self.steps) - 1, -1, -1):
                s = self.steps[i]
                need = i > 0 and self._need_input[i]
                if not s.has_params and not need:
                    break
                g = s.backward(g, ctxs[i], self.P, G, need)
                if g is None:
                    break
            self._update(G)
        return per_member

    def _update(self, G: _Grads) -> None:
        if self.optimizer == "sgd":
            dense = [n for n in self.trainable if n in G.dense]
            if dense:
                torch._foreach_add_([self.P[n] for n in dense], [G.dense[n] for n in dense], alpha=-self.lr)
            for n, (rows, values) in G.rows.items():
                table = self.P[n]
                table.view(-1, table.shape[-1]).index_add_(0, rows, values, alpha=-self.lr)
            return
        grads = []
        for n in self.trainable:
            if n in G.rows:
                rows, values = G.rows[n]
                table = self.P[n]
                dense = torch.zeros_like(table)
                dense.view(-1, table.shape[-1]).index_add_(0, rows, values)
                grads.append(dense)
            else:
                grads.append(G.dense[n] if n in G.dense else torch.zeros_like(self.P[n]))
        # torch.optim.Adam (foreach, no weight decay, no amsgrad), operation for operation
        b1, b2 = self.betas
        self.t += 1
        torch._foreach_lerp_(self.exp_avg, grads, 1 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - b2)
        step_size = -(self.lr / (1 - b1 ** self.t))
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, (1 - b2 ** self.t) ** 0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_([self.P[n] for n in self.trainable], self.exp_avg, denom, step_size)


def for_model(model: nn.Module, *, optimizer: str, lr: float, loss: str,
              optimizer_kwargs: Mapping[str, Any] | None = None) -> FusedStep:
    """The fused step of one model, updating its own parameters (``(1, ...)`` views)."""
    _check_kwargs(optimizer, optimizer_kwargs)
    steps = plan(model)
    params = {n: p.detach()[None] for n, p in model.named_parameters()}
    params.update({n: b[None] for n, b in model.named_buffers()})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    return FusedStep(steps, params, trainable, optimizer=optimizer, lr=lr, loss=loss,
                     **_adam_settings(optimizer_kwargs))


def for_stack(model: nn.Module, state: Mapping[str, Tensor], buffers: Mapping[str, Tensor], *, optimizer: str,
              lr: float, loss: str, optimizer_kwargs: Mapping[str, Any] | None = None) -> FusedStep:
    """The fused step of stacked members of ``model``'s architecture: ``state`` and ``buffers`` are
    ``torch.func.stack_module_state``'s ``(M, ...)`` tensors, updated in place."""
    _check_kwargs(optimizer, optimizer_kwargs)
    steps = plan(model)
    params = {n: t.detach() for n, t in state.items()}
    params.update(dict(buffers))
    trainable = [n for n, t in state.items() if t.requires_grad]
    return FusedStep(steps, params, trainable, optimizer=optimizer, lr=lr, loss=loss,
                     **_adam_settings(optimizer_kwargs))


def _check_kwargs(optimizer: str, kwargs: Mapping[str, Any] | None) -> None:
    extra = {k: v for k, v in dict(kwargs or {}).items() if not (optimizer == "adam" and k in ("betas", "eps"))}
    if extra:
        raise Unsupported(f"optimizer_kwargs {extra}: the fused step does plain SGD and Adam without them")


def _adam_settings(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    kwargs = dict(kwargs or {})
    return {k: kwargs[k] for k in ("betas", "eps") if k in kwargs}

