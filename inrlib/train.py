"""Training loop for coordinate networks: :func:`fit`, :func:`fit_ensemble` and :class:`History`.

``fit(model, coords, targets, epochs=..., lr=...)`` runs plain SGD or Adam on a fixed set of
samples (``coords`` ``(N, d)``, ``targets`` ``(N,)`` or ``(N, k)``), optionally re-drawn every
epoch (``resample=``), and records per-epoch loss, PSNR (or IoU for occupancy), wall time and
whatever callbacks return at chosen epochs (the NTK snapshots at the start, middle and end of
training hook in there). ``fit_ensemble(models, ...)`` trains ``M`` independent members of one
architecture in one vectorized step each (their own data, seeds, histories and divergence), with
the same loop: :func:`fit` is its one-member case.

Losses (the reduction matters for the learning rate):

* ``"mse"``: ``mean((f(x) - y)**2)`` over the batch's samples *and* output channels
  (``torch.nn.functional.mse_loss`` with ``reduction="mean"``). Paper 000 trains NTK-
  parameterized networks with lr up to 100; with this mean reduction lr 100 made 5 of 6
  encodings diverge in the first epoch here, lr 10-30 trained them all (a prototype of the scaling study on a 64 px photo). A
  summed loss would multiply the gradient by ``batch_size * k``.
* ``"bce"``: binary cross-entropy of *probabilities* (a model ending in a sigmoid, as paper
  000's occupancy network does), mean over samples and outputs. The probabilities are clamped
  to ``[1e-7, 1 - 1e-7]`` before the logarithm, so a saturated sigmoid gives a large but finite
  loss (and no gradient through the clamped entries).
* ``"bce_logits"``: the same loss for a model that outputs *logits*
  (``binary_cross_entropy_with_logits``, numerically stable; preferred when you can drop the
  final sigmoid).

Randomness: ``fit`` never touches torch's global random state. Shuffling (and ``resample``)
draw from a private ``torch.Generator`` seeded with ``seed``. Parameter initialization is the
caller's: ``torch.manual_seed(s)`` before building the model. With both fixed, a CPU run
repeats bitwise (same loss history, same final parameters).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import fused, resources
from .coords import coords_validated
from .io import json_default
from .metrics import psnr_from_mse

__all__ = [
    "fit",
    "fit_ensemble",
    "History",
    "TrainingDiverged",
    "CallbackError",
    "start_middle_end",
    "resolve_epochs",
    "LOSSES",
    "OPTIMIZERS",
]

LOSSES = ("mse", "bce", "bce_logits")
OPTIMIZERS = ("sgd", "adam")
#: ``fit(engine=...)``: ``"auto"`` takes the fused step (:mod:`inrlib.fused`) wherever it applies, else autograd.
ENGINES = ("auto", "fused", "autograd")
BCE_EPS = 1e-7          # probabilities are clamped to [BCE_EPS, 1 - BCE_EPS] for loss="bce"

_LOSS_TEXT = {
    "mse": "'mse' (mean over samples and outputs)",
    "bce": "'bce' (binary cross-entropy of probabilities, mean)",
    "bce_logits": "'bce_logits' (binary cross-entropy of logits, mean)",
}


# ----------------------------------------------------------------------------- errors
class TrainingDiverged(RuntimeError):
    """The training loss (or the model's output) became NaN or infinite.

    Attributes: ``history`` (the :class:`History` of the epochs completed before, with
    ``stopped`` set), ``epoch`` (the epoch, 1-based, in which it happened), ``lr``,
    ``optimizer``, ``loss_value`` (the non-finite value seen).
    """

    def __init__(self, message: str, *, history: History, epoch: int, lr: float, optimizer: str,
                 loss_value: float):
        super().__init__(message)
        self.history = history
        self.epoch = epoch
        self.lr = lr
        self.optimizer = optimizer
        self.loss_value = loss_value


class CallbackError(RuntimeError):
    """A snapshot callback or ``eval_fn`` raised; ``history`` holds everything recorded so far,
    ``name`` and ``epoch`` say which call failed, ``member`` which ensemble member (``None`` for
    :func:`fit`); the original exception is ``__cause__``."""

    def __init__(self, message: str, *, history: History, name: str, epoch: int, member: int | None = None):
        super().__init__(message)
        self.history = history
        self.name = name
        self.epoch = epoch
        self.member = member


# ----------------------------------------------------------------------------- history
def _plain_copy(obj: Any) -> Any:
    """A deep copy of a history's field in plain Python (dict with str keys/list/float/int/str/bool/None).

    Unlike :func:`inrlib.io.json_default` (which converts the leaves here: NumPy, torch, paths,
    dtypes, devices) it never fails: a snapshot callback may return any object, and
    :meth:`History.to_dict` must still work, so an unknown object becomes its ``to_dict()``, else its
    ``tolist()``, else its ``repr``."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain_copy(v) for v in obj]
    try:
        return json_default(obj)
    except TypeError:
        pass
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _plain_copy(obj.to_dict())
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    return repr(obj)


@dataclass
class History:
    """What :func:`fit` recorded. Per-epoch lists have one entry per completed epoch, in
    ``epochs`` order (1, 2, ...); the state before training is in ``initial``.

    Attributes
    ----------
    epochs: the epoch numbers, 1-based.
    loss: mean training loss over the epoch's mini-batches, each batch weighted by its size (the
        model changes during the epoch; this is the usual running training loss).
    full_loss: the loss over all ``N`` samples after the epoch, one no-grad pass (empty when
        ``full_eval=False``).
    psnr: PSNR in dB of the training set for ``loss="mse"`` with a data range (targets in
        ``[0, data_range]``), ``10 log10(data_range**2 / MSE)``. From ``full_loss`` when
        ``full_eval=True`` (``psnr_source == "full"``), else from ``loss`` (``"running"``). Empty
        for other losses.
    iou: for ``"bce"``/``"bce_logits"`` with 0/1 targets and ``full_eval=True``: the IoU of the
        predicted occupancy (probability >= 0.5) with the targets after each epoch.
    metrics: ``{name: [value per epoch]}`` from ``eval_fn``.
    epoch_seconds: wall time of each epoch's optimization steps (without evaluation or callbacks).
    eval_seconds: wall time of each epoch's evaluation pass and ``eval_fn``.
    snapshots: ``{callback name: {epoch: returned value}}``; epoch 0 is before training.
    snapshot_seconds: ``{callback name: {epoch: seconds the call took}}``.
    initial: before training: the full-data ``loss``/``psnr``/``iou`` (with ``full_eval``) and
        ``metrics`` (``{name: value}`` from ``eval_fn``).
    stopped: ``None`` after a complete run, else why it stopped early, for people
        (``"diverged in epoch e"``, ``"interrupted after ..."``).
    message: the divergence error's full text when it diverged (what :class:`TrainingDiverged`
        says), else ``None``.
    diverged_epoch: the epoch (1-based; 0 = before training) in which the loss or the outputs
        became non-finite, ``None`` if they never did: read this, not ``stopped``'s text.
    member: the ensemble member's index for :func:`fit_ensemble`'s histories, ``None`` for :func:`fit`.
    config: the run's settings (lr, optimizer, loss, batch_size, seed, n_samples, ...).
    total_seconds: wall time of the whole call.
    """

    config: dict[str, Any] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    full_loss: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    psnr_source: str | None = None
    iou: list[float] = field(default_factory=list)
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    snapshots: dict[str, dict[int, Any]] = field(default_factory=dict)
    snapshot_seconds: dict[str, dict[int, float]] = field(default_factory=dict)
    initial: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None
    message: str | None = None
    diverged_epoch: int | None = None
    member: int | None = None
    total_seconds: float = 0.0

    # convenient read-only views of the configuration
    @property
    def lr(self) -> float:
        return self.config.get("lr")

    @property
    def optimizer(self) -> str:
        return self.config.get("optimizer")

    @property
    def loss_name(self) -> str:
        return self.config.get("loss")

    def __repr__(self) -> str:      # the lists can be long: a summary, not the whole record
        parts = [f"{len(self.epochs)} epochs", f"{self.config.get('optimizer')} lr={self.config.get('lr')}",
                 f"loss={self.config.get('loss')}"]
        if self.loss:
            parts.append(f"last loss {self.loss[-1]:.4g}")
        if self.psnr:
            parts.append(f"last PSNR {self.psnr[-1]:.2f} dB (best {max(self.psnr):.2f})")
        if self.iou:
            parts.append(f"last IoU {self.iou[-1]:.4f}")
        if self.snapshots:
            parts.append(f"snapshots {sorted(self.snapshots)}")
        if self.stopped:
            parts.append(f"stopped: {self.stopped}")
        parts.append(f"{self.total_seconds:.1f} s")
        return "History(" + ", ".join(parts) + ")"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python copy for ``json.dump``: tensors/arrays become nested lists, snapshot
        epochs become string keys, unknown objects their ``repr``. PSNR may be ``inf`` (a perfect
        fit), which Python's ``json`` writes as ``Infinity``."""
        return {f.name: _plain_copy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild from :meth:`to_dict` output (snapshot values stay plain lists)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown History fields {sorted(unknown)}; expected a subset of {sorted(known)}")
        kwargs = dict(data)
        for key in ("snapshots", "snapshot_seconds"):
            if key in kwargs:
                kwargs[key] = {name: {int(e): v for e, v in per.items()} for name, per in kwargs[key].items()}
        return cls(**kwargs)


# ----------------------------------------------------------------------------- epochs
def start_middle_end(epochs: int) -> list[int]:
    """``[0, epochs // 2, epochs]`` without repeats: before training, the middle, the end.

    Paper 000 takes its NTK spectra at these points (epochs 0, 150, 300 of 300).
    """
    epochs = _check_positive_int(epochs, "epochs")
    return sorted({0, epochs // 2, epochs})


def resolve_epochs(spec: str | int | Iterable[int | str] | None, epochs: int) -> list[int]:
    """Turn a snapshot specification into a sorted list of distinct epochs in ``[0, epochs]``.

    ``spec`` is a comma-separated string or an iterable of items, each an integer epoch or one
    of ``"start"`` (0, before training), ``"middle"`` (``epochs // 2``), ``"end"`` (``epochs``),
    ``"all"`` (every epoch 0..epochs); ``None`` means ``"start,middle,end"``. Example:
    ``resolve_epochs("start,middle,end", 300) == [0, 150, 300]``.
    """
    epochs = _check_positive_int(epochs, "epochs")
    if spec is None:
        return start_middle_end(epochs)
    if isinstance(spec, str):
        items: list[Any] = [s.strip() for s in spec.split(",") if s.strip()]
    elif isinstance(spec, numbers.Integral):
        items = [spec]
    else:
        try:
            items = list(spec)
        except TypeError:
            raise TypeError(f"snapshot_epochs must be a string like 'start,middle,end', an int or a list of ints, "
                            f"got {type(spec).__name__}") from None
    named = {"start": [0], "middle": [epochs // 2], "end": [epochs], "all": list(range(epochs + 1))}
    out: set[int] = set()
    for item in items:
        if isinstance(item, str):
            key = item.strip().lower()
            if key in named:
                out.update(named[key])
                continue
            try:
                item = int(key)
            except ValueError:
                raise ValueError(f"snapshot epoch {item!r} is neither an integer nor one of "
                                 f"'start', 'middle', 'end', 'all'") from None
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"snapshot epochs must be integers or 'start'/'middle'/'end'/'all', got {item!r}")
        if not 0 <= int(item) <= epochs:
            raise ValueError(f"snapshot epoch {int(item)} is outside [0, {epochs}] (0 = before training, "
                             f"{epochs} = after the last epoch)")
        out.add(int(item))
    return sorted(out)


# ----------------------------------------------------------------------------- checks
def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a positive number, got {lr!r}")
    lr = float(lr)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    return lr


def _as_data(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a torch.Tensor or an array of numbers, got {type(x).__name__} ({err})") from None
    return x


def _prepare_data(coords: Any, targets: Any, *, loss: str, device: torch.device, dtype: torch.dtype,
                  where: str = "") -> tuple[Tensor, Tensor]:
    """Validate and move ``coords (N, d)`` / ``targets (N,) | (N, k)`` to ``device`` and ``dtype``."""
    coords, targets = _as_data(coords, f"coords{where}"), _as_data(targets, f"targets{where}")
    if coords.dim() == 1:
        raise ValueError(f"coords{where} must be 2-D (N, d), got shape {tuple(coords.shape)}; "
                         "for 1-D inputs use coords.reshape(-1, 1)")
    if coords.dim() != 2:
        raise ValueError(f"coords{where} must be 2-D (N, d), got shape {tuple(coords.shape)}; "
                         "flatten a grid with coords.reshape(-1, d)")
    if targets.dim() not in (1, 2):
        raise ValueError(f"targets{where} must be (N,) or (N, k), got shape {tuple(targets.shape)}; "
                         "flatten an image with targets.reshape(-1, channels)")
    n = coords.shape[0]
    if targets.shape[0] != n:
        raise ValueError(f"coords{where} and targets{where} hold different numbers of samples: "
                         f"{n} coordinates (shape {tuple(coords.shape)}) vs {targets.shape[0]} targets "
                         f"(shape {tuple(targets.shape)}); they must pair up row by row")
    if n == 0:
        raise ValueError(f"coords{where} and targets{where} are empty; fit needs at least one sample")
    if coords.is_complex() or targets.is_complex():
        raise TypeError("coords and targets must be real-valued")
    coords = coords.detach().to(device=device, dtype=dtype)
    targets = targets.detach().to(device=device, dtype=dtype)
    if not bool(torch.isfinite(coords).all()):
        raise ValueError(f"coords{where} hold {int((~torch.isfinite(coords)).sum())} non-finite value(s) (NaN/inf)")
    if not bool(torch.isfinite(targets).all()):
        raise ValueError(f"targets{where} hold {int((~torch.isfinite(targets)).sum())} non-finite value(s) (NaN/inf); "
                         "clean the data (e.g. torch.nan_to_num) before training")
    if loss in ("bce", "bce_logits"):
        lo, hi = float(targets.min()), float(targets.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"loss={loss!r} needs targets in [0, 1] (occupancy labels or probabilities), got values "
                             f"in [{lo:.4g}, {hi:.4g}]; use loss='mse' for other targets")
    return coords, targets


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    params = list(model.parameters())
    if not params:
        raise ValueError(f"the model ({type(model).__name__}) has no parameters; there is nothing to train")
    floating = [p for p in params if p.is_floating_point()]
    dtype = floating[0].dtype if floating else torch.get_default_dtype()
    return params[0].device, dtype


def _make_optimizer(name: str, params: list[nn.Parameter], lr: float, kwargs: Mapping[str, Any] | None):
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[name]
    try:
        return cls(params, lr=lr, **dict(kwargs or {}))
    except TypeError as err:
        raise TypeError(f"optimizer_kwargs {dict(kwargs or {})} are not accepted by torch.optim.{cls.__name__}: {err}") from None
    except ValueError as err:
        raise ValueError(f"optimizer_kwargs {dict(kwargs or {})} rejected by torch.optim.{cls.__name__}: {err}") from None



# ----------------------------------------------------------------------------- losses
def _per_element_loss(name: str, out: Tensor, y: Tensor) -> Tensor:
    if name == "mse":
        return (out - y).square()
    if name == "bce":
        return F.binary_cross_entropy(out.clamp(BCE_EPS, 1.0 - BCE_EPS), y, reduction="none")
    return F.binary_cross_entropy_with_logits(out, y, reduction="none")


def _member_losses(name: str, out: Tensor, y: Tensor) -> Tensor:
    """Each member's mean loss over its batch: ``out``, ``y`` ``(M, B, ...)`` -> ``(M,)``."""
    return _per_element_loss(name, out, y).flatten(1).mean(1)


def _member_loss_sums(name: str, out: Tensor, y: Tensor) -> Tensor:
    """Each member's summed loss over a chunk, in float64, for the full-data evaluation: ``(M,)``."""
    return _per_element_loss(name, out, y).flatten(1).double().sum(1)


def _resolve_progress(progress: bool | None) -> bool:
    """``progress`` if given, else whether a person is watching (:func:`inrlib.resources.progress_enabled`)."""
    return bool(progress) if progress is not None else resources.progress_enabled()


def _progress_style(progress: bool | None) -> str | None:
    """How the loop shows progress: ``None`` (not at all), ``"bar"`` (a tqdm bar over epochs) or ``"log"``
    (``INRLIB_PROGRESS=log``: a plain line every 30 s over the optimizer steps, with the time left,
    so that a run of a few long epochs reports before its first epoch ends)."""
    if not _resolve_progress(progress):
        return None
    return "log" if resources.progress_mode() == "log" else "bar"


# ----------------------------------------------------------------------------- what the loop trains
class _Single:
    """:func:`fit`'s model, seen by the shared loop as an ensemble of one member.

    ``forward`` takes ``(1, B, d)`` and returns ``(1, B, ...)``; the model runs unchanged on ``(B, d)``.
    """

    size = 1

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x[0]).unsqueeze(0)

    def member(self, i: int) -> nn.Module:
        return self.model

    def train(self, mode: bool) -> None:
        self.model.train(mode)

    def bad_parameters(self, i: int) -> list[str]:
        return [name for name, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]

    def finish(self) -> None:
        pass


class _Stacked:
    """M models of one architecture trained as one: their parameters and buffers stacked along a
    new leading axis (``torch.func.stack_module_state``) and the forward pass vectorized over it
    (``torch.func.vmap`` of ``functional_call`` on the first model). The members never interact:
    every operation acts on one member's slice, so member ``m`` follows the trajectory it would
    follow alone. ``member(m)`` copies its slice into ``models[m]`` and returns that plain module.
    """

    def __init__(self, models: Sequence[nn.Module]):
        from torch.func import functional_call, stack_module_state, vmap

        self.models = list(models)
        self.size = len(self.models)
        self.state, self.buffers = stack_module_state(self.models)
        self.params = [t for t in self.state.values() if t.requires_grad]
        base = self.models[0]

        def one(state, buffers, x):
            return functional_call(base, (state, buffers), (x,))

        self._forward = vmap(one, in_dims=(0, 0, 0))

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(self.state, self.buffers, x)

    def member(self, i: int) -> nn.Module:
        model = self.models[i]
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.state[name][i])
            for name, b in model.named_buffers():
                b.copy_(self.buffers[name][i])
        return model

    def train(self, mode: bool) -> None:
        for model in self.models:
            model.train(mode)

    def bad_parameters(self, i: int) -> list[str]:
        return [name for name, t in self.state.items() if not bool(torch.isfinite(t[i]).all())]

    def finish(self) -> None:
        for i in range(self.size):
            self.member(i)


# ----------------------------------------------------------------------------- one optimization step
class _AutogradStep:
    """The plain step, the reference: forward, the members' summed mean losses, backward, ``torch.optim``."""

    def __init__(self, members: _Single | _Stacked, s: _Settings):
        self.members, self.loss = members, s.loss
        self.opt = _make_optimizer(s.optimizer, members.params, s.lr, s.optimizer_kwargs)
        self.description = f"autograd {s.optimizer}"

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        self.opt.zero_grad(set_to_none=True)
        per_member = _member_losses(self.loss, self.members.forward(x), y)
        per_member.sum().backward()
        self.opt.step()
        return per_member.detach()


def _make_stepper(members: _Single | _Stacked, s: _Settings) -> tuple[Any, str | None]:
    """The step ``s.engine`` asks for, and why ``"auto"`` fell back to autograd (``None`` if it did not)."""
    if s.engine == "autograd":
        return _AutogradStep(members, s), None
    kw = dict(optimizer=s.optimizer, lr=s.lr, loss=s.loss, optimizer_kwargs=s.optimizer_kwargs)
    try:
        if isinstance(members, _Single):
            return fused.for_model(members.model, **kw), None
        return fused.for_stack(members.models[0], members.state, members.buffers, **kw), None
    except fused.Unsupported as err:
        if s.engine == "fused":
            raise ValueError(f"engine='fused' cannot train this model: {err}; pass engine='auto' or 'autograd'") from None
        return _AutogradStep(members, s), str(err)


# ----------------------------------------------------------------------------- settings
@dataclass
class _Settings:
    epochs: int
    lr: float
    optimizer: str
    loss: str
    batch_size: int | None
    eval_batch_size: int
    callbacks: dict[str, Callable]
    snap_epochs: set[int]
    shuffle: bool
    full_eval: bool
    optimizer_kwargs: Mapping[str, Any] | None
    progress: bool | None
    desc: str | None
    engine: str = "auto"


def _check_settings(*, epochs, lr, optimizer, loss, batch_size, eval_batch_size, callbacks, snapshot_epochs,
                    resample, eval_fn, shuffle, full_eval, optimizer_kwargs, progress, desc,
                    engine="auto") -> _Settings:
    """Validate the arguments :func:`fit` and :func:`fit_ensemble` share."""
    epochs = _check_positive_int(epochs, "epochs")
    lr = _check_lr(lr)
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS} "
                         "(extra settings such as momentum go in optimizer_kwargs)")
    if not isinstance(loss, str) or loss.lower() not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose 'mse' (regression), 'bce' (model outputs probabilities, "
                         "e.g. ends in a sigmoid) or 'bce_logits' (model outputs logits)")
    if batch_size is not None:
        batch_size = _check_positive_int(batch_size, "batch_size")
    eval_batch_size = _check_positive_int(eval_batch_size, "eval_batch_size")
    if resample is not None and not callable(resample):
        raise TypeError(f"resample must be a function returning (coords, targets), got {type(resample).__name__}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be a function (model, epoch) -> number or dict, got {type(eval_fn).__name__}")
    if callbacks is None:
        callbacks = {}
    elif callable(callbacks) and not isinstance(callbacks, Mapping):
        callbacks = {"callback": callbacks}
    elif isinstance(callbacks, Mapping):
        for name, fn in callbacks.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError(f"callbacks must map names (str) to functions fn(model, epoch, history); got {name!r}: {fn!r}")
        callbacks = dict(callbacks)
    else:
        raise TypeError(f"callbacks must be a dict {{name: fn}} or one function, got {type(callbacks).__name__}")
    snap_epochs = set(resolve_epochs(snapshot_epochs, epochs)) if callbacks else set()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r} ('auto': the fused "
                         "step wherever it applies, else autograd)")
    return _Settings(epochs=epochs, lr=lr, optimizer=optimizer.lower(), loss=loss.lower(), batch_size=batch_size,
                     eval_batch_size=eval_batch_size, callbacks=callbacks, snap_epochs=snap_epochs,
                     shuffle=bool(shuffle), full_eval=bool(full_eval), optimizer_kwargs=optimizer_kwargs,
                     progress=progress, desc=desc, engine=engine)


def _check_seed(seed: Any, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {seed!r}")
    return int(seed)


def _move(model: nn.Module, device: Any) -> None:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a torch device ({err}); use 'cpu', 'cuda' or 'cuda:N'") from None
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as err:
        raise RuntimeError(f"cannot move the model to device {str(device)!r}: {err}. Is that device available "
                           "to this torch build? Pass device=None to train where the model is.") from None


def _peak(data_range: Any, Y: Tensor, loss: str) -> float | None:
    """The PSNR peak for these targets (``None``: no PSNR)."""
    if loss != "mse":
        return None
    if isinstance(data_range, str):
        if data_range != "auto":
            raise ValueError(f"data_range must be a number, None or 'auto', got {data_range!r}")
        return 1.0 if float(Y.min()) >= 0.0 and float(Y.max()) <= 1.0 else None
    if data_range is None:
        return None
    if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real) or not data_range > 0:
        raise ValueError(f"data_range must be a positive number, None or 'auto', got {data_range!r}")
    return float(data_range)


def _is_binary(Y: Tensor, loss: str) -> bool:
    return loss != "mse" and bool(((Y == 0) | (Y == 1)).all())


# ----------------------------------------------------------------------------- the loop
def _train(members: _Single | _Stacked, X: Tensor, Y: Tensor, *, s: _Settings, seeds: list[int],
           peaks: list[float | None], histories: list[History], eval_fn, resample, prepare,
           raise_on_divergence: bool) -> list[History]:
    """The optimization loop :func:`fit` and :func:`fit_ensemble` share.

    ``X`` ``(M, N, d)`` and ``Y`` ``(M, N, ...)`` are member ``m``'s samples at ``[m]``, already
    on the members' device and dtype. Each step minimizes the sum of the active members' mean batch
    losses: its gradient with respect to member ``m``'s parameters is exactly that of ``m``'s own
    loss, and SGD and Adam update elementwise, so each member follows its own trajectory. A member
    whose loss becomes non-finite is stopped (its history says so) or, with
    ``raise_on_divergence``, the whole call raises :class:`TrainingDiverged`.
    ``resample(m, epoch, generator)`` returns member ``m``'s new ``(coords, targets)``;
    ``prepare(m, coords, targets, epoch)`` validates them into ``(N, d)``, ``(N, ...)`` tensors.
    """
    t_start = time.perf_counter()
    M, n = X.shape[0], X.shape[1]
    loss, lr, optimizer, batch_size = s.loss, s.lr, s.optimizer, s.batch_size
    dev = X.device
    bs = n if batch_size is None else min(batch_size, n)
    gens = []
    for seed in seeds:
        g = torch.Generator(device="cpu")
        g.manual_seed(seed)
        gens.append(g)
    if lr > torch.finfo(X.dtype).max:          # torch.optim would fail deep inside with an overflow
        raise ValueError(f"lr={lr:g} is larger than the largest {str(X.dtype).replace('torch.', '')} number "
                         f"({torch.finfo(X.dtype).max:.4g}); train in float64 or use a smaller lr")
    stepper, fallback = _make_stepper(members, s)
    for h in histories:
        h.config["engine"] = stepper.description
        if fallback:
            h.config["engine_fallback"] = fallback
    binary = [_is_binary(Y[m], loss) for m in range(M)]
    active = [True] * M
    eval_chunk = max(1, s.eval_batch_size // M)
    was_training = members.member(0).training if M == 1 else members.models[0].training

    def stop(m: int, epoch: int, value: float, what: str) -> None:
        err = _diverged(histories[m], epoch, value, lr, optimizer, loss, batch_size, n, what=what)
        if raise_on_divergence:
            raise err
        active[m] = False

    def evaluate(epoch: int) -> tuple[list[dict[str, Any]], float]:
        """Each active member's full-data loss / PSNR / IoU and eval_fn values; stops diverged members."""
        outs: list[dict[str, Any]] = [{} for _ in range(M)]
        t0 = time.perf_counter()
        members.train(False)
        with torch.no_grad():
            if s.full_eval:
                total = torch.zeros(M, dtype=torch.float64, device=dev)
                inter = torch.zeros(M, dtype=torch.float64, device=dev)
                union = torch.zeros(M, dtype=torch.float64, device=dev)
                for i in range(0, n, eval_chunk):
                    with coords_validated() if epoch > 0 and X is X_checked else contextlib.nullcontext():
                        o = members.forward(X[:, i:i + eval_chunk])
                    y = Y[:, i:i + eval_chunk]
                    total += _member_loss_sums(loss, o, y)
                    if any(binary):
                        inside = o >= (0.5 if loss == "bce" else 0.0)
                        truth = y == 1
                        inter += (inside & truth).flatten(1).sum(1)
                        union += (inside | truth).flatten(1).sum(1)
                full = (total / Y[0].numel()).tolist()
                inter_l, union_l = inter.tolist(), union.tolist()
                for m in range(M):
                    if not active[m]:
                        continue
                    if not math.isfinite(full[m]):
                        stop(m, epoch, full[m], "the loss over all samples")
                        continue
                    outs[m]["loss"] = full[m]
                    if peaks[m] is not None:
                        outs[m]["psnr"] = float(psnr_from_mse(full[m], data_range=peaks[m]))
                    if binary[m]:
                        outs[m]["iou"] = 1.0 if union_l[m] == 0 else inter_l[m] / union_l[m]
            if eval_fn is not None:
                for m in range(M):
                    if not active[m]:
                        continue
                    try:
                        value = eval_fn(members.member(m), epoch)
                    except Exception as err:  # noqa: BLE001 - re-raised with the history attached
                        raise CallbackError(f"eval_fn raised at epoch {epoch}{_member_text(m, M)}: "
                                            f"{type(err).__name__}: {err}", history=histories[m], name="eval_fn",
                                            epoch=epoch, member=m if M > 1 else None) from err
                    if isinstance(value, Mapping):
                        outs[m].update({f"eval:{k}": v for k, v in value.items()})
                    else:
                        outs[m]["eval:eval"] = value
        members.train(was_training)
        return outs, time.perf_counter() - t0

    def run_callbacks(epoch: int) -> None:
        if epoch not in s.snap_epochs:
            return
        members.train(False)
        for m in range(M):
            if not active[m]:
                continue
            model = members.member(m)
            for name, fn in s.callbacks.items():
                t0 = time.perf_counter()
                try:
                    value = fn(model, epoch, histories[m])
                except Exception as err:  # noqa: BLE001 - re-raised with the history attached
                    members.train(was_training)
                    raise CallbackError(f"callback {name!r} raised at epoch {epoch}{_member_text(m, M)}: "
                                        f"{type(err).__name__}: {err}", history=histories[m], name=name,
                                        epoch=epoch, member=m if M > 1 else None) from err
                histories[m].snapshots.setdefault(name, {})[epoch] = value
                histories[m].snapshot_seconds.setdefault(name, {})[epoch] = time.perf_counter() - t0
        members.train(was_training)

    bar: Any = None
    style = _progress_style(s.progress)
    label = s.desc or (f"fit {optimizer} lr={lr:g}" if M == 1 else f"fit_ensemble x{M} {optimizer} lr={lr:g}")
    if style == "bar":
        from tqdm.auto import tqdm

        bar = tqdm(total=s.epochs, desc=label, unit="epoch", leave=True)
    elif style == "log":   # counted in steps (resampled data may change their number: then approximate)
        from tqdm.std import tqdm as plain

        bar = plain(desc=label, unit="steps", **resources.log_progress_options(s.epochs * -(-n // bs)))

    X_checked = X
    try:
        init, _ = evaluate(0)
        for m in range(M):
            if active[m]:
                histories[m].initial = {k: v for k, v in init[m].items() if not k.startswith("eval:")}
                if eval_fn is not None:
                    histories[m].initial["metrics"] = {k[5:]: v for k, v in init[m].items() if k.startswith("eval:")}
        run_callbacks(0)

        members.train(True)
        for epoch in range(1, s.epochs + 1):
            if not any(active):
                break
            if resample is not None and epoch > 1:
                new = [prepare(m, *_checked_pair(resample(m, epoch, gens[m])), epoch) for m in range(M)]
                sizes_new = {c.shape[0] for c, _ in new}
                if len(sizes_new) > 1:
                    raise ValueError(f"resample returned different numbers of samples for the members in epoch "
                                     f"{epoch} ({sorted(sizes_new)}); ensemble members need the same number")
                X = torch.stack([c for c, _ in new])
                Y = torch.stack([t for _, t in new])
                n = X.shape[1]
                bs = n if batch_size is None else min(batch_size, n)
                binary = [_is_binary(Y[m], loss) for m in range(M)]

            t0 = time.perf_counter()
            if s.shuffle and bs < n:
                perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)
                rows = torch.arange(M, device=dev)[:, None]
                xs, ys = X[rows, perms], Y[rows, perms]
            else:
                xs, ys = X, Y
            batch_losses = []
            # The full-data forward of evaluate(0) checked the first data's coordinates, so its steps
            # need not read them again (a device sync per step); resampled data are checked per step.
            with coords_validated() if s.full_eval and X is X_checked else contextlib.nullcontext():
                for i in range(0, n, bs):
                    # Members share no parameter entries, so a stopped member's non-finite loss
                    # reaches only its own slice of the stacked parameters (tested).
                    batch_losses.append(stepper.step(xs[:, i:i + bs], ys[:, i:i + bs]))
                    if style == "log":
                        bar.update(1)   # a clock check per step; a line only every interval
            sizes = torch.full((len(batch_losses),), float(bs), dtype=torch.float64, device=dev)
            sizes[-1] = n - bs * (len(batch_losses) - 1)
            running = (sizes @ torch.stack(batch_losses).double() / n).tolist()
            train_seconds = time.perf_counter() - t0
            for m in range(M):
                if active[m] and not math.isfinite(running[m]):
                    stop(m, epoch, running[m], "the training loss")

            ev, eval_seconds = evaluate(epoch)
            for m in range(M):
                if not active[m]:
                    continue
                h = histories[m]
                h.epoch_seconds.append(train_seconds)
                h.eval_seconds.append(eval_seconds)
                h.epochs.append(epoch)
                h.loss.append(running[m])
                if "loss" in ev[m]:
                    h.full_loss.append(ev[m]["loss"])
                if peaks[m] is not None:
                    h.psnr.append(ev[m]["psnr"] if s.full_eval else float(psnr_from_mse(running[m], data_range=peaks[m])))
                if "iou" in ev[m]:
                    h.iou.append(ev[m]["iou"])
                for key, value in ev[m].items():
                    if key.startswith("eval:"):
                        h.metrics.setdefault(key[5:], []).append(value)
            run_callbacks(epoch)
            members.train(True)

            if style == "bar":
                live = [m for m in range(M) if active[m]]
                post = {"loss": f"{running[0]:.3g}"} if M == 1 else {"live": f"{len(live)}/{M}"}
                if M == 1 and histories[0].psnr:
                    post["psnr"] = f"{histories[0].psnr[-1]:.2f}"
                if M == 1 and histories[0].iou:
                    post["iou"] = f"{histories[0].iou[-1]:.3f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)

        if not s.full_eval:
            for m in range(M):
                bad = members.bad_parameters(m) if active[m] else []
                if bad:
                    stop(m, s.epochs, float("nan"),
                         f"the parameters ({', '.join(bad[:3])}{'...' if len(bad) > 3 else ''})")
    except KeyboardInterrupt as err:
        for h in histories:
            if h.stopped is None:
                h.stopped = f"interrupted after {len(h.epochs)} completed epoch(s)"
        err.history = histories[0]  # type: ignore[attr-defined]
        err.histories = histories  # type: ignore[attr-defined]
        raise
    finally:
        members.finish()
        members.train(was_training)
        if bar is not None:
            bar.close()
        for h in histories:
            h.total_seconds = time.perf_counter() - t_start
    return histories


def _member_text(m: int, size: int) -> str:
    return f" (ensemble member {m})" if size > 1 else ""


def _checked_pair(new: Any) -> tuple[Any, Any]:
    if not (isinstance(new, (tuple, list)) and len(new) == 2):
        raise TypeError(f"resample must return (coords, targets), got {type(new).__name__}")
    return new[0], new[1]


def _base_config(s: _Settings, *, seed: int, n: int, dev: torch.device, dtype: torch.dtype, peak: float | None,
                 resample: bool) -> dict[str, Any]:
    return {
        "lr": s.lr, "optimizer": s.optimizer, "optimizer_kwargs": dict(s.optimizer_kwargs or {}), "loss": s.loss,
        "loss_reduction": "mean", "epochs": s.epochs, "batch_size": s.batch_size, "n_samples": n, "seed": seed,
        "shuffle": s.shuffle, "device": str(dev), "dtype": str(dtype).replace("torch.", ""),
        "data_range": peak, "full_eval": s.full_eval, "resample": resample,
        "snapshot_epochs": sorted(s.snap_epochs),
    }


# ----------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    coords: Tensor,
    targets: Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    loss: str = "mse",
    seed: int = 0,
    shuffle: bool = True,
    callbacks: Mapping[str, Callable[[nn.Module, int, History], Any]] | Callable | None = None,
    snapshot_epochs: str | int | Iterable[int | str] | None = None,
    eval_fn: Callable[[nn.Module, int], Any] | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    data_range: float | str | None = "auto",
    full_eval: bool = True,
    eval_batch_size: int = 65536,
    resample: Callable[[int, torch.Generator], tuple[Tensor, Tensor]] | None = None,
    desc: str | None = None,
    engine: str = "auto",
) -> History:
    """Train ``model`` to map ``coords`` to ``targets``; return a :class:`History`.

    Parameters
    ----------
    model:
        Any ``nn.Module`` taking ``(B, d)`` and returning ``(B, k)`` (or ``(B,)``). Trained in place.
    coords:
        ``(N, d)`` inputs (e.g. pixel centres in ``[0, 1]^2``). Tensor or array.
    targets:
        ``(N,)`` or ``(N, k)``, paired with ``coords`` row by row. If the model returns
        ``(B, 1)`` for ``(N,)`` targets (or ``(B,)`` for ``(N, 1)``) the targets are reshaped to
        match; any other mismatch is an error. Must be finite; in ``[0, 1]`` for the BCE losses.
        Both are converted to the model's device and the dtype of its first floating parameter.
    epochs:
        Number of passes over the data (>= 1).
    lr:
        Learning rate (> 0). See the module notes on the mean-reduced loss.
    batch_size:
        Samples per optimization step; ``None`` (default) or ``>= N`` is full-batch gradient
        descent (one step per epoch). The last batch of an epoch may be smaller (no sample is
        dropped); every step uses the mean over its own batch.
    optimizer:
        ``"sgd"`` (plain ``torch.optim.SGD``, no momentum unless ``optimizer_kwargs`` says) or
        ``"adam"``.
    loss:
        ``"mse"``, ``"bce"`` (model outputs probabilities) or ``"bce_logits"`` (model outputs
        logits); see the module notes.
    seed:
        Seeds the private generator used for shuffling and handed to ``resample``. It does not
        initialize the model: seed torch before building it.
    shuffle:
        Draw a new order of the samples every epoch (a ``randperm`` from the private generator).
        When one batch holds all samples no permutation is drawn: the full-batch gradient does not
        depend on the order, and the run matches ``batch_size=None`` exactly.
    callbacks:
        ``{name: fn}`` (or one function, named ``"callback"``), ``fn(model, epoch, history)``,
        called at each epoch of ``snapshot_epochs``: epoch 0 before the first step, epoch ``e``
        after epoch ``e``'s steps and evaluation, with the model in ``eval()`` mode and holding
        exactly that epoch's parameters. Its return value lands in
        ``history.snapshots[name][epoch]``. Do not change the parameters in a callback.
    snapshot_epochs:
        When callbacks run: see :func:`resolve_epochs` (``"start,middle,end"``, ``[0, 150, 300]``,
        ``"all"``...). Default: start, middle and end (:func:`start_middle_end`).
    eval_fn:
        ``eval_fn(model, epoch)`` returning a number or ``{name: number}``, called before
        training (epoch 0, stored in ``history.initial``) and after every epoch
        (``history.metrics[name]``; a bare number is named ``"eval"``). Runs under
        ``torch.no_grad()`` in ``eval()`` mode; counted in ``eval_seconds``.
    device:
        Where to train. ``None``: the device of the model's parameters. Given: the model is moved
        there (in place) and the data with it.
    progress:
        Show a ``tqdm.auto`` bar over epochs; with ``INRLIB_PROGRESS=log`` (the book pipeline's)
        a plain line every 30 s over the optimizer steps instead, with the time left (``fit sgd
        lr=10: 1200/250000 steps (0%), 00:30 elapsed, ~1:43:10 left``). ``None``: only for a person
        watching (a terminal or a Jupyter kernel; never with ``INRLIB_PROGRESS=0`` or under ``CI``)
        or a log (:func:`inrlib.resources.progress_mode`). ``False``: never.
    optimizer_kwargs:
        Extra arguments for the torch optimizer (``momentum``, ``weight_decay``, ``betas``, ...).
    data_range:
        Peak value for ``history.psnr`` (``loss="mse"`` only): a number, ``None`` (no PSNR) or
        ``"auto"`` (default: 1.0 when all targets lie in ``[0, 1]``, else no PSNR).
    full_eval:
        After each epoch (and before the first), evaluate the loss on all ``N`` samples without
        gradients in chunks of ``eval_batch_size``: ``history.full_loss``, the PSNR from it, and the
        IoU for BCE. One forward pass over the data, a few percent of a mini-batch epoch.
        ``False``: PSNR from the running mini-batch loss instead, no IoU.
    eval_batch_size:
        Chunk size of the evaluation pass (bounds its memory).
    resample:
        ``resample(epoch, generator) -> (coords, targets)`` draws fresh samples for every epoch
        from 2 on (epoch 1 and the initial evaluation use the arrays passed in), e.g. occupancy
        points drawn anew each epoch as in paper 000. Validated like the inputs. The generator is a
        CPU ``torch.Generator`` (seeded from ``seed``): draw on the host with it and return host
        tensors or arrays, which ``fit`` moves to the model's device; a callback that wants to
        draw on a GPU should keep its own ``torch.Generator(device="cuda")`` seeded from this one.
    desc:
        Label of the progress bar.
    engine:
        ``"auto"`` (default): the fused step of :mod:`inrlib.fused` (a hand-written forward, backward and
        update: the same optimization, fewer operations; plain SGD updates only the grid rows a batch
        touched) wherever it applies, else autograd; ``"fused"`` insists (a model it cannot read is an
        error saying why); ``"autograd"``: forward, ``backward()``, ``torch.optim``. ``history.config["engine"]``
        says which ran, and ``["engine_fallback"]`` why ``"auto"`` took autograd.

    Returns
    -------
    History

    Raises
    ------
    TrainingDiverged
        The epoch's loss, the full-data loss or the final parameters are NaN/inf. The message
        names the epoch, lr, optimizer and loss; ``err.history`` holds the epochs completed
        before. The model's parameters are then non-finite: rebuild it.
    CallbackError
        A callback or ``eval_fn`` raised; ``err.history`` holds what was recorded.
    ValueError, TypeError
        Bad arguments, with what was wrong and what to pass instead.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    s = _check_settings(epochs=epochs, lr=lr, optimizer=optimizer, loss=loss, batch_size=batch_size,
                        eval_batch_size=eval_batch_size, callbacks=callbacks, snapshot_epochs=snapshot_epochs,
                        resample=resample, eval_fn=eval_fn, shuffle=shuffle, full_eval=full_eval,
                        optimizer_kwargs=optimizer_kwargs, progress=progress, desc=desc, engine=engine)
    seed = _check_seed(seed)
    if device is not None:
        _move(model, device)
    dev, dtype = _model_device_dtype(model)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("none of the model's parameters requires grad; there is nothing to train")

    checked: dict[tuple, tuple] = {}

    def prepare(m: int, c: Any, t: Any, epoch: int | None = None) -> tuple[Tensor, Tensor]:
        where = "" if epoch is None else f" from resample (epoch {epoch})"
        X, Y = _prepare_data(c, t, loss=s.loss, device=dev, dtype=dtype, where=where)
        return X, _matched(model, X, Y, s.loss, checked)

    X, Y = prepare(0, coords, targets)
    peak = _peak(data_range, Y, s.loss)
    history = History(config=_base_config(s, seed=seed, n=X.shape[0], dev=dev, dtype=dtype, peak=peak,
                                          resample=resample is not None))
    if peak is not None:
        history.psnr_source = "full" if s.full_eval else "running"
    member_resample = None if resample is None else (lambda m, epoch, gen: resample(epoch, gen))
    _train(_Single(model), X[None], Y[None], s=s, seeds=[seed], peaks=[peak], histories=[history],
           eval_fn=eval_fn, resample=member_resample, prepare=prepare, raise_on_divergence=True)
    return history


def fit_ensemble(
    models: Sequence[nn.Module],
    coords: Tensor | Sequence[Tensor],
    targets: Tensor | Sequence[Tensor],
    *,
    epochs: int,
    lr: float,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    loss: str = "mse",
    seeds: Sequence[int] | None = None,
    shuffle: bool = True,
    callbacks: Mapping[str, Callable[[nn.Module, int, History], Any]] | Callable | None = None,
    snapshot_epochs: str | int | Iterable[int | str] | None = None,
    eval_fn: Callable[[nn.Module, int], Any] | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    data_range: float | str | None = "auto",
    full_eval: bool = True,
    eval_batch_size: int = 65536,
    resample: Callable[[int, int, torch.Generator], tuple[Tensor, Tensor]] | None = None,
    desc: str | None = None,
    engine: str = "auto",
) -> list[History]:
    """Train ``M`` independent models of one architecture together; one :class:`History` each.

    Member ``m`` is ``models[m]`` trained on its own data with its own shuffling seed, exactly as
    ``fit(models[m], coords[m], targets[m], seed=seeds[m], ...)`` would train it (to rounding:
    the batched matrix products may round differently from the unbatched ones), but all members
    take their steps together, one vectorized forward and backward pass for all
    (``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``). Small models with
    small batches (paper 000's Table 2: batch 10) leave a GPU, or a CPU core, mostly idle one at a
    time; ``benchmarks/train_bench.py`` measures the gain. The loop is :func:`fit`'s own.

    Parameters (where they differ from :func:`fit`)
    -------------------------------------------------
    models:
        ``M >= 1`` modules of the same class with the same parameter and buffer names, shapes,
        dtypes and devices (e.g. one builder called with ``M`` seeds). Trained in place: when the
        call returns (or raises) each holds its member's final parameters.
    coords, targets:
        One tensor shared by every member (``(N, d)``, ``(N,)`` / ``(N, k)``), or a list of ``M``
        tensors, one per member; all members need the same ``N``. Example: one pixel grid and
        ``M`` images.
    seeds:
        One shuffling seed per member (default ``0, 1, ..., M - 1``).
    lr, batch_size, optimizer, loss, optimizer_kwargs, epochs:
        Shared by all members.
    callbacks, eval_fn:
        Called per member with that member as a plain module (``models[m]`` holding the
        current parameters) and its own history.
    eval_batch_size:
        Samples per evaluation chunk over all members: each chunk holds
        ``eval_batch_size // M`` samples of each member.
    resample:
        ``resample(member, epoch, generator) -> (coords, targets)`` for that member (all members
        must return the same number of samples), with the member's own generator.

    Returns
    -------
    list[History], in member order. ``epoch_seconds`` / ``eval_seconds`` are the wall times of
    the joint steps (the same for every member); ``config["ensemble"]`` holds ``M`` and the index,
    ``member`` the index. A member whose loss became non-finite stops there: its history has
    ``diverged_epoch = e`` (``stopped = "diverged in epoch e"``) and its module non-finite
    parameters; the others finish. Nothing is raised for it.

    Raises
    ------
    CallbackError (with ``member``), ValueError, TypeError as :func:`fit` does; KeyboardInterrupt
    with ``err.histories``.
    """
    if isinstance(models, nn.Module) or not isinstance(models, Sequence) or not models:
        raise TypeError("models must be a non-empty list of nn.Module members (for one model use fit)")
    models = list(models)
    for i, mdl in enumerate(models):
        if not isinstance(mdl, nn.Module):
            raise TypeError(f"models[{i}] must be a torch.nn.Module, got {type(mdl).__name__}")
    M = len(models)
    s = _check_settings(epochs=epochs, lr=lr, optimizer=optimizer, loss=loss, batch_size=batch_size,
                        eval_batch_size=eval_batch_size, callbacks=callbacks, snapshot_epochs=snapshot_epochs,
                        resample=resample, eval_fn=eval_fn, shuffle=shuffle, full_eval=full_eval,
                        optimizer_kwargs=optimizer_kwargs, progress=progress, desc=desc, engine=engine)
    seeds = list(range(M)) if seeds is None else list(seeds)
    if len(seeds) != M:
        raise ValueError(f"seeds holds {len(seeds)} seeds for {M} models; give one per member")
    seeds = [_check_seed(v, f"seeds[{i}]") for i, v in enumerate(seeds)]
    if device is not None:
        for mdl in models:
            _move(mdl, device)
    _check_same_architecture(models)
    dev, dtype = _model_device_dtype(models[0])
    if not any(p.requires_grad for p in models[0].parameters()):
        raise ValueError("none of the models' parameters requires grad; there is nothing to train")

    def per_member(value: Any, name: str) -> list[Any]:
        if isinstance(value, (list, tuple)):
            if len(value) != M:
                raise ValueError(f"{name} is a list of {len(value)} arrays for {M} models; give one per member, "
                                 "or one array shared by all")
            return list(value)
        return [value] * M

    checked: dict[tuple, tuple] = {}

    def prepare(m: int, c: Any, t: Any, epoch: int | None = None) -> tuple[Tensor, Tensor]:
        where = f"[{m}]" if epoch is None else f"[{m}] from resample (epoch {epoch})"
        X, Y = _prepare_data(c, t, loss=s.loss, device=dev, dtype=dtype, where=where)
        return X, _matched(models[0], X, Y, s.loss, checked)

    data = [prepare(m, c, t) for m, (c, t) in enumerate(zip(per_member(coords, "coords"),
                                                               per_member(targets, "targets")))]
    if len({c.shape for c, _ in data}) > 1 or len({t.shape for _, t in data}) > 1:
        raise ValueError("ensemble members need data of the same shape: got coords "
                         f"{sorted({tuple(c.shape) for c, _ in data})} and targets "
                         f"{sorted({tuple(t.shape) for _, t in data})}; subsample to a common N")
    X = torch.stack([c for c, _ in data])
    Y = torch.stack([t for _, t in data])
    peaks = [_peak(data_range, Y[m], s.loss) for m in range(M)]
    histories = []
    for m in range(M):
        h = History(config=_base_config(s, seed=seeds[m], n=X.shape[1], dev=dev, dtype=dtype, peak=peaks[m],
                                        resample=resample is not None), member=m)
        h.config["ensemble"] = {"members": M, "member": m}
        if peaks[m] is not None:
            h.psnr_source = "full" if s.full_eval else "running"
        histories.append(h)
    # one member needs no vectorization: the plain module runs faster and follows the same loop
    members = _Single(models[0]) if M == 1 else _Stacked(models)
    return _train(members, X, Y, s=s, seeds=seeds, peaks=peaks, histories=histories, eval_fn=eval_fn,
                  resample=resample, prepare=prepare, raise_on_divergence=False)


def _check_same_architecture(models: list[nn.Module]) -> None:
    """All members must stack: same class, parameter and buffer names, shapes, dtypes, devices, grad flags."""
    def signature(mdl: nn.Module) -> list[tuple]:
        return ([("param", k, tuple(v.shape), v.dtype, v.device, v.requires_grad) for k, v in mdl.named_parameters()]
                + [("buffer", k, tuple(v.shape), v.dtype, v.device) for k, v in mdl.named_buffers()])

    first = signature(models[0])
    if not first:
        raise ValueError(f"the model ({type(models[0]).__name__}) has no parameters; there is nothing to train")
    for i, mdl in enumerate(models[1:], start=1):
        if type(mdl) is not type(models[0]):
            raise ValueError(f"models[{i}] is a {type(mdl).__name__}, models[0] a {type(models[0]).__name__}: "
                             "ensemble members must share one architecture")
        sig = signature(mdl)
        if sig != first:
            diff = next((a, b) for a, b in zip(first + [None] * len(sig), sig + [None] * len(first)) if a != b)
            raise ValueError(f"models[{i}] differs from models[0] in {diff[1]} (vs {diff[0]}): ensemble members "
                             "must have the same parameters and buffers (names, shapes, dtypes, devices)")


def _matched(model: nn.Module, X: Tensor, Y: Tensor, loss: str, checked: dict[tuple, tuple]) -> Tensor:
    """:func:`_match_output_shape`, run once per kind of data (feature count, target shape after the
    first axis): resampled epochs of the same kind reuse the answer instead of running the model
    again (the model, and so whether it outputs probabilities for ``"bce"``, is the same)."""
    kind = (X.shape[1], tuple(Y.shape[1:]))
    if kind in checked:
        return Y.reshape((Y.shape[0],) + checked[kind])
    Y = _match_output_shape(model, X, Y, loss)
    checked[kind] = tuple(Y.shape[1:])
    return Y


def _match_output_shape(model: nn.Module, X: Tensor, Y: Tensor, loss: str) -> Tensor:
    """Run the model on a few samples; reshape ``(N,)`` <-> ``(N, 1)`` targets to its output or fail clearly."""
    k = min(X.shape[0], 256)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(X[:k])
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"the model failed on the first {k} coordinates (shape {tuple(X[:k].shape)}, "
                         f"dtype {X.dtype}): {type(err).__name__}: {err}. Does it take {X.shape[1]} input "
                         "features?") from err
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor):
        raise TypeError(f"the model must return a tensor, got {type(out).__name__}")
    want = tuple(Y[:k].shape)
    got = tuple(out.shape)
    if got != want:
        if Y.dim() == 1 and got == (k, 1):
            Y = Y.unsqueeze(1)
        elif Y.dim() == 2 and Y.shape[1] == 1 and got == (k,):
            Y = Y.squeeze(1)
        else:
            raise ValueError(f"the model's output for {k} samples has shape {got}, but the targets give {want}: "
                             f"the model has the wrong number of outputs for targets of shape {tuple(Y.shape)}")
    if loss == "bce" and out.numel() and (float(out.min()) < 0.0 or float(out.max()) > 1.0):
        raise ValueError(f"loss='bce' expects probabilities but the model output values in [{float(out.min()):.4g}, "
                         f"{float(out.max()):.4g}]; end the model with a sigmoid, or use loss='bce_logits' for logits")
    return Y


def _diverged(history: History, epoch: int, value: float, lr: float, optimizer: str, loss: str,
              batch_size: int | None, n: int, *, what: str) -> TrainingDiverged:
    history.stopped, history.diverged_epoch = f"diverged in epoch {epoch}", int(epoch)
    bs_text = "full batch" if batch_size is None or batch_size >= n else f"batch_size={batch_size}"
    where = "before training" if epoch == 0 else f"in epoch {epoch}"
    msg = (f"training diverged: {what} became {value} {where} (lr={lr:g}, optimizer={optimizer!r}, "
           f"loss={_LOSS_TEXT[loss]}, {bs_text}). ")
    if epoch == 0:
        msg += "The untrained model already gives non-finite outputs: check its initialization and the inputs."
    else:
        msg += (f"The steps are too large: lower the learning rate (try lr={lr / 10:g}). "
                f"err.history holds the {len(history.epochs)} completed epoch(s); the model's parameters are "
                "now non-finite, so rebuild it before retrying.")
    history.message = msg
    return TrainingDiverged(msg, history=history, epoch=epoch, lr=lr, optimizer=optimizer, loss_value=value)
