"""Training loop for coordinate networks: :func:`fit` and its :class:`History`.

``fit(model, coords, targets, epochs=..., lr=...)`` runs plain SGD or Adam on a fixed set of
samples (``coords`` ``(N, d)``, ``targets`` ``(N,)`` or ``(N, k)``), optionally re-drawn every
epoch (``resample=``), and records per-epoch loss, PSNR (or IoU for occupancy), wall time and
whatever callbacks return at chosen epochs (the NTK snapshots at the start, middle and end of
training hook in there).

Losses (the reduction matters for the learning rate):

* ``"mse"``: ``mean((f(x) - y)**2)`` over the batch's samples *and* output channels
  (``torch.nn.functional.mse_loss`` with ``reduction="mean"``). Paper 000 trains NTK-
  parameterized networks with lr up to 100; with this mean reduction lr 100 made 5 of 6
  encodings diverge in the first epoch here, lr 10-30 trained them all (see DESIGN.md). A
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

import math
import numbers
import os
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .metrics import psnr_from_mse

__all__ = [
    "fit",
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

    def __init__(self, message: str, *, history: "History", epoch: int, lr: float, optimizer: str,
                 loss_value: float):
        super().__init__(message)
        self.history = history
        self.epoch = epoch
        self.lr = lr
        self.optimizer = optimizer
        self.loss_value = loss_value


class CallbackError(RuntimeError):
    """A snapshot callback or ``eval_fn`` raised; ``history`` holds everything recorded so far,
    ``name`` and ``epoch`` say which call failed (the original exception is ``__cause__``)."""

    def __init__(self, message: str, *, history: "History", name: str, epoch: int):
        super().__init__(message)
        self.history = history
        self.name = name
        self.epoch = epoch


# ----------------------------------------------------------------------------- history
def _jsonable(obj: Any) -> Any:
    """Plain Python (dict/list/float/int/str/bool/None) for JSON; tensors and arrays become lists."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, Tensor):
        return obj.detach().cpu().tolist()
    if hasattr(obj, "tolist") and callable(obj.tolist):          # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _jsonable(obj.to_dict())
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
    stopped: ``None`` after a complete run, else why it stopped early.
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
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "History":
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
    if coords.dtype == torch.bool or targets.dtype == torch.bool:
        coords, targets = coords.to(dtype), targets.to(dtype)
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


def _loss_fn(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    if name == "mse":
        return F.mse_loss
    if name == "bce":
        return lambda out, y: F.binary_cross_entropy(out.clamp(BCE_EPS, 1.0 - BCE_EPS), y)
    return F.binary_cross_entropy_with_logits


def _loss_sum(name: str, out: Tensor, y: Tensor) -> Tensor:
    """Summed (not mean) loss of a chunk, for the full-data evaluation pass."""
    if name == "mse":
        return F.mse_loss(out, y, reduction="sum")
    if name == "bce":
        return F.binary_cross_entropy(out.clamp(BCE_EPS, 1.0 - BCE_EPS), y, reduction="sum")
    return F.binary_cross_entropy_with_logits(out, y, reduction="sum")


def _resolve_progress(progress: bool | None) -> bool:
    """``progress`` if given, else whether a person is watching (the book's rule, one place for it)."""
    if progress is not None:
        return bool(progress)
    try:
        from .book import progress_enabled
    except ImportError:                      # the rule itself, should the book helpers be absent
        flag = os.environ.get("INRLIB_PROGRESS", "").strip().lower()
        if flag in ("0", "false", "no", "off") or (not flag and os.environ.get("CI")):
            return False
        if flag in ("1", "true", "yes", "on"):
            return True
        return "ipykernel" in sys.modules or bool(getattr(sys.stderr, "isatty", lambda: False)())
    return progress_enabled()


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
        Show a ``tqdm.auto`` bar over epochs. ``None``: only for a person watching (a terminal or
        a Jupyter kernel; never with ``INRLIB_PROGRESS=0``, which the book pipeline sets, or
        ``CI``): :func:`inrlib.book.progress_enabled`.
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
    t_start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    epochs = _check_positive_int(epochs, "epochs")
    lr = _check_lr(lr)
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS} "
                         "(extra settings such as momentum go in optimizer_kwargs)")
    optimizer = optimizer.lower()
    if not isinstance(loss, str) or loss.lower() not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose 'mse' (regression), 'bce' (model outputs probabilities, "
                         "e.g. ends in a sigmoid) or 'bce_logits' (model outputs logits)")
    loss = loss.lower()
    if batch_size is not None:
        batch_size = _check_positive_int(batch_size, "batch_size")
    eval_batch_size = _check_positive_int(eval_batch_size, "eval_batch_size")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if resample is not None and not callable(resample):
        raise TypeError(f"resample must be a function (epoch, generator) -> (coords, targets), got {type(resample).__name__}")
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

    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device {device!r} is not a torch device ({err}); use 'cpu', 'cuda' or 'cuda:N'") from None
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as err:
            raise RuntimeError(f"cannot move the model to device {str(device)!r}: {err}. Is that device available "
                               "to this torch build? Pass device=None to train where the model is.") from None
    dev, dtype = _model_device_dtype(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("none of the model's parameters requires grad; there is nothing to train")
    X, Y = _prepare_data(coords, targets, loss=loss, device=dev, dtype=dtype)
    n = X.shape[0]
    Y = _match_output_shape(model, X, Y, loss)

    binary = loss != "mse" and bool(((Y == 0) | (Y == 1)).all())
    if loss == "mse":
        if isinstance(data_range, str):
            if data_range != "auto":
                raise ValueError(f"data_range must be a number, None or 'auto', got {data_range!r}")
            in_unit = float(Y.min()) >= 0.0 and float(Y.max()) <= 1.0
            peak = 1.0 if in_unit else None
        elif data_range is None:
            peak = None
        else:
            if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real) or not data_range > 0:
                raise ValueError(f"data_range must be a positive number, None or 'auto', got {data_range!r}")
            peak = float(data_range)
    else:
        peak = None

    bs = n if batch_size is None else min(batch_size, n)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    opt = _make_optimizer(optimizer, params, lr, optimizer_kwargs)
    loss_fn = _loss_fn(loss)

    history = History(config={
        "lr": lr, "optimizer": optimizer, "optimizer_kwargs": dict(optimizer_kwargs or {}), "loss": loss,
        "loss_reduction": "mean", "epochs": epochs, "batch_size": batch_size, "n_samples": n, "seed": int(seed),
        "shuffle": bool(shuffle), "device": str(dev), "dtype": str(dtype).replace("torch.", ""),
        "data_range": peak, "full_eval": bool(full_eval), "resample": resample is not None,
        "snapshot_epochs": sorted(snap_epochs),
    })
    if peak is not None:
        history.psnr_source = "full" if full_eval else "running"

    was_training = model.training

    def evaluate(epoch: int) -> dict[str, Any]:
        """Full-data loss / PSNR / IoU and eval_fn values at this point; checks divergence."""
        out: dict[str, Any] = {}
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            if full_eval:
                total = torch.zeros((), dtype=torch.float64, device=dev)
                inter = torch.zeros((), dtype=torch.float64, device=dev)
                union = torch.zeros((), dtype=torch.float64, device=dev)
                for i in range(0, n, eval_batch_size):
                    o = model(X[i:i + eval_batch_size])
                    y = Y[i:i + eval_batch_size]
                    total += _loss_sum(loss, o, y).double()
                    if binary:
                        inside = o >= (0.5 if loss == "bce" else 0.0)
                        truth = y == 1
                        inter += (inside & truth).sum()
                        union += (inside | truth).sum()
                full = float(total) / Y.numel()
                if not math.isfinite(full):
                    raise _diverged(history, epoch, full, lr, optimizer, loss, batch_size, n,
                                    what="the loss over all samples")
                out["loss"] = full
                if peak is not None:
                    out["psnr"] = float(psnr_from_mse(full, data_range=peak))
                if binary:
                    out["iou"] = 1.0 if float(union) == 0 else float(inter) / float(union)
            if eval_fn is not None:
                try:
                    value = eval_fn(model, epoch)
                except Exception as err:  # noqa: BLE001 - re-raised with the history attached
                    raise CallbackError(f"eval_fn raised at epoch {epoch}: {type(err).__name__}: {err}",
                                        history=history, name="eval_fn", epoch=epoch) from err
                if isinstance(value, Mapping):
                    out.update({f"eval:{k}": v for k, v in value.items()})
                else:
                    out["eval:eval"] = value
        model.train(was_training)
        out["_seconds"] = time.perf_counter() - t0
        return out

    def run_callbacks(epoch: int) -> None:
        if epoch not in snap_epochs:
            return
        model.eval()
        for name, fn in callbacks.items():
            t0 = time.perf_counter()
            try:
                value = fn(model, epoch, history)
            except Exception as err:  # noqa: BLE001 - re-raised with the history attached
                model.train(was_training)
                raise CallbackError(f"callback {name!r} raised at epoch {epoch}: {type(err).__name__}: {err}",
                                    history=history, name=name, epoch=epoch) from err
            history.snapshots.setdefault(name, {})[epoch] = value
            history.snapshot_seconds.setdefault(name, {})[epoch] = time.perf_counter() - t0
        model.train(was_training)

    show = _resolve_progress(progress)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=desc or f"fit {optimizer} lr={lr:g}", unit="epoch", leave=True)

    try:
        init = evaluate(0)
        init.pop("_seconds")
        history.initial = {k: v for k, v in init.items() if not k.startswith("eval:")}
        if eval_fn is not None:
            history.initial["metrics"] = {k[5:]: v for k, v in init.items() if k.startswith("eval:")}
        run_callbacks(0)

        model.train()
        for epoch in range(1, epochs + 1):
            if resample is not None and epoch > 1:
                new = resample(epoch, gen)
                if not (isinstance(new, (tuple, list)) and len(new) == 2):
                    raise TypeError(f"resample must return (coords, targets), got {type(new).__name__}")
                X, Y = _prepare_data(new[0], new[1], loss=loss, device=dev, dtype=dtype,
                                     where=f" from resample (epoch {epoch})")
                n = X.shape[0]
                Y = _match_output_shape(model, X, Y, loss)
                bs = n if batch_size is None else min(batch_size, n)
                if loss != "mse":
                    binary = bool(((Y == 0) | (Y == 1)).all())

            t0 = time.perf_counter()
            if shuffle and bs < n:
                perm = torch.randperm(n, generator=gen).to(dev)
                xs, ys = X[perm], Y[perm]
            else:
                xs, ys = X, Y
            batch_losses = []
            for i in range(0, n, bs):
                opt.zero_grad(set_to_none=True)
                out = model(xs[i:i + bs])
                yb = ys[i:i + bs]
                step_loss = loss_fn(out, yb)
                step_loss.backward()
                opt.step()
                batch_losses.append(step_loss.detach())
            sizes = torch.full((len(batch_losses),), float(bs), dtype=torch.float64, device=dev)
            sizes[-1] = n - bs * (len(batch_losses) - 1)
            running = float(torch.dot(torch.stack(batch_losses).double(), sizes)) / n
            train_seconds = time.perf_counter() - t0
            if not math.isfinite(running):
                raise _diverged(history, epoch, running, lr, optimizer, loss, batch_size, n,
                                what="the training loss")

            ev = evaluate(epoch)
            history.epoch_seconds.append(train_seconds)
            history.eval_seconds.append(ev.pop("_seconds"))
            history.epochs.append(epoch)
            history.loss.append(running)
            if "loss" in ev:
                history.full_loss.append(ev["loss"])
            if peak is not None:
                history.psnr.append(ev["psnr"] if full_eval else float(psnr_from_mse(running, data_range=peak)))
            if "iou" in ev:
                history.iou.append(ev["iou"])
            for key, value in ev.items():
                if key.startswith("eval:"):
                    history.metrics.setdefault(key[5:], []).append(value)
            run_callbacks(epoch)
            model.train()

            if bar is not None:
                post = {"loss": f"{running:.3g}"}
                if history.psnr:
                    post["psnr"] = f"{history.psnr[-1]:.2f}"
                if history.iou:
                    post["iou"] = f"{history.iou[-1]:.3f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)

        if not full_eval:
            bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise _diverged(history, epochs, float("nan"), lr, optimizer, loss, batch_size, n,
                                what=f"the parameters ({', '.join(bad[:3])}{'...' if len(bad) > 3 else ''})")
    except KeyboardInterrupt as err:
        history.stopped = f"interrupted after {len(history.epochs)} completed epoch(s)"
        err.history = history  # type: ignore[attr-defined]
        raise
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
        history.total_seconds = time.perf_counter() - t_start
    return history


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
    history.stopped = f"diverged in epoch {epoch}"
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
    return TrainingDiverged(msg, history=history, epoch=epoch, lr=lr, optimizer=optimizer, loss_value=value)
