"""What every NTK entry point checks before any work: the model, the points, the options, the memory.

- :func:`check_model`: an ``nn.Module`` with trainable parameters, every parameter finite;
- :func:`check_points`: an ``(N, d)`` floating-point tensor with ``N >= 1`` (``d`` the model's ``dim``
  when it has one);
- :func:`check_choice`, :func:`check_chunk_size`: an option among its allowed values, a positive
  integer number of points;
- :func:`memory_budget_bytes`: the bytes a kernel may use (:class:`NTKMemoryError` when it cannot);
- :func:`in_dtype`, :func:`eval_mode`: the model in the computation dtype, and in eval mode for a
  while with every module's own train/eval flag restored afterwards.

Each refusal names the argument, the value and the fix.
"""
from __future__ import annotations

import contextlib
import copy
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .. import resources

__all__ = ["NTKMemoryError", "trainable", "check_model", "check_points", "check_choice", "check_chunk_size",
           "memory_budget_bytes", "in_dtype", "eval_mode"]


class NTKMemoryError(MemoryError):
    """The dense kernel (or the reference method's Jacobian) does not fit the memory budget."""


def trainable(model: nn.Module) -> list[tuple[str, Tensor]]:
    """``(name, parameter)`` of every parameter with ``requires_grad``, in ``named_parameters`` order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def check_model(model: nn.Module, who: str = "empirical_ntk") -> None:
    """An ``nn.Module`` with trainable parameters, all of its parameters finite.

    The finiteness check reads one value from the device (one synchronization); it is skipped on
    PyTorch's ``meta`` device, whose tensors hold no values.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{who} needs a torch.nn.Module, got {type(model).__name__}")
    if not trainable(model):
        raise ValueError("the model has no trainable parameters (all have requires_grad=False), so its NTK "
                         "is zero; unfreeze some parameters with p.requires_grad_(True)")
    named = [(n, p) for n, p in model.named_parameters() if p.is_floating_point() and p.device.type != "meta"]
    if not named:
        return
    with torch.no_grad():
        finite = [torch.isfinite(p).all().to(named[0][1].device) for _, p in named]
        if bool(torch.stack(finite).all()):                 # the one read of the common case
            return
        for name, p in named:                               # a refusal: count where, at leisure
            bad = int((~torch.isfinite(p)).sum())
            if bad:
                raise ValueError(f"parameter {name!r} has {bad} NaN/inf values; the kernel would be NaN "
                                 "(a diverged training run?); reinitialize or restore the parameters first")


def check_points(model: nn.Module, x: Any, name: str = "x") -> None:
    """``x`` is an ``(N, d)`` floating-point tensor with ``N >= 1`` (``d = model.dim`` when the model has it)."""
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


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """``value`` is one of ``choices`` (the arguments of a ``Literal``), else a ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in choices:
        quoted = [repr(c) for c in choices]
        listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        raise ValueError(f"{name} must be {listed}, got {value!r}")


def check_chunk_size(chunk_size: Any) -> int | None:
    """``None`` (the default) or an integer ``>= 1``, returned as an ``int``."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def memory_budget_bytes(memory_budget: int | float | None, device: torch.device) -> int:
    """``memory_budget`` as an int, or half the free memory of ``device`` when it is ``None``."""
    if memory_budget is None:
        return int(0.5 * resources.available_memory(device))
    if memory_budget <= 0:
        raise ValueError(f"memory_budget is in bytes and must be positive, got {memory_budget}")
    return int(memory_budget)


def in_dtype(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """The model with its floating-point parameters in ``dtype``: the model itself when they already are
    (or ``dtype`` is ``None``), else a cast deep copy (the caller's model is never changed)."""
    params = list(model.parameters())
    if dtype is not None and any(p.dtype != dtype for p in params if p.is_floating_point()):
        model = copy.deepcopy(model).to(dtype)
    return model


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; afterwards every submodule's ``training`` flag is what it was
    (a model mixing train and eval submodules keeps its mix)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training
