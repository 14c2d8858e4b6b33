"""Coordinate checks shared by every encoding and the engines: shapes, dtypes, the ``[0, 1]^d`` domain.

:func:`check_coords` validates a batch of points; inside :func:`coords_validated` it checks shapes and
dtypes only (the training loop and the NTK engine check values once, then loop without device reads).
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

__all__ = ["DOMAIN_TOLERANCE", "check_coords", "coords_validated"]

#: Coordinates this far outside ``[0, 1]`` still count as inside (float rounding of ``linspace``).
DOMAIN_TOLERANCE = 1e-6


def _is_batched(x: Tensor) -> bool:
    """True for a tensor traced by ``torch.func.vmap`` (its values are not available to Python)."""
    ft = getattr(torch._C, "_functorch", None)
    if ft is None:  # pragma: no cover - older torch
        return False
    while ft.is_functorch_wrapped_tensor(x):       # vmap's batching may sit under grad transforms' wrappers
        if ft.is_batchedtensor(x):
            return True
        x = ft.get_unwrapped(x)
    return False


def _has_values(x: Tensor) -> bool:
    """False for tensors that carry shapes only: the ``meta`` device and ``FakeTensor`` (torch.export and
    torch.compile tracing); their values cannot be read, so checks that read them are skipped."""
    return not (x.is_meta or is_fake(x))


_VALIDATED = contextvars.ContextVar("inrlib_coords_validated", default=False)


@contextlib.contextmanager
def coords_validated() -> Iterator[None]:
    """Inside this block :func:`check_coords` checks shapes and dtypes but reads no values.

    For loops over data whose values were checked once already (:func:`inrlib.train.fit` runs its
    steps in it after a forward pass over all the data): reading values is a device-to-host copy
    that makes a GPU wait, once per encoding call. Clamping still happens.
    """
    token = _VALIDATED.set(True)
    try:
        yield
    finally:
        _VALIDATED.reset(token)


def check_coords(x: Tensor, dim: int, *, clamp: bool = False, who: str = "encoding") -> Tensor:
    """Validate a batch of coordinates and return it (clamped to ``[0, 1]`` if ``clamp``).

    Raises a :class:`ValueError` naming the problem when ``x`` is not ``(N, dim)``, not floating
    point, not finite, or (unless ``clamp``) outside ``[0, 1]^dim``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{who} expects a torch.Tensor of shape (N, {dim}), got {type(x).__name__}; "
                        "convert with torch.as_tensor(x, dtype=torch.float32)")
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"{who} expects coordinates of shape (N, {dim}), got {tuple(x.shape)}; "
                         f"reshape to (-1, {dim})")
    if not x.is_floating_point():
        raise TypeError(f"{who} expects floating-point coordinates, got {x.dtype}; "
                        "convert with x.float() (or x.double())")
    if _is_batched(x) or not _has_values(x) or _VALIDATED.get():   # values unreadable here, or checked already
        return x.clamp(0.0, 1.0) if clamp else x
    x_ = x.detach()
    # One reduction and one device-to-host read per call (three before): on a GPU each read is a sync
    # in every training step. The details are computed only when something is wrong.
    outside = torch.zeros((), dtype=torch.bool, device=x_.device) if clamp else \
        ((x_ < -DOMAIN_TOLERANCE) | (x_ > 1.0 + DOMAIN_TOLERANCE)).any()
    if not bool(outside | ~torch.isfinite(x_).all()):
        return x.clamp(0.0, 1.0) if clamp else x
    if not bool(torch.isfinite(x_).all()):
        bad = int((~torch.isfinite(x_)).any(dim=1).sum())
        raise ValueError(f"{who} got {bad} coordinate rows with NaN or infinite values; "
                         "remove or fix them before encoding")
    lo, hi = float(x_.min()), float(x_.max())
    raise ValueError(f"{who} expects coordinates in [0, 1]^{dim}, got values in [{lo:.4g}, {hi:.4g}]; "
                     "rescale the inputs, or pass clamp=True to clamp them to the domain")
