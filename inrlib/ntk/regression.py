r"""Linearized training: the predictions of kernel regression with the NTK (paper 000, Eq. 5).

A network trained by full-batch gradient descent on the MSE with a small learning rate stays close to
its linearization around the initial parameters, whose outputs follow
``df/dt = -K (f - y)``: :func:`kernel_regression` gives ``f(t)`` in closed form from the kernel, and
:func:`gradient_flow_time` the time ``t`` that a number of steps at a learning rate stands for.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, cast, get_args

import numpy as np
import torch
from torch import Tensor

from .checks import check_choice

__all__ = ["Reduction", "gradient_flow_time", "kernel_regression"]

Reduction = Literal["mean", "sum"]


def gradient_flow_time(lr: float, steps: int, n: int, channels: int = 1, reduction: Reduction = "mean") -> float:
    """Gradient-flow time ``t`` of ``steps`` full-batch GD steps on MSE, for :func:`kernel_regression`.

    With ``loss = sum (f - y)^2 / (n C)`` (``reduction="mean"``) the linearized dynamics are
    ``df/dt = -K (f - y)`` with ``t = 2 lr steps / (n C)``; with ``reduction="sum"`` of
    ``(f - y)^2 / 2``, ``t = lr steps``.
    """
    check_choice("reduction", reduction, get_args(Reduction))
    if reduction == "mean":
        return 2.0 * lr * steps / (n * channels)
    return float(lr * steps)


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
    times = [float(cast(float, t))] if np.isscalar(t) else [float(s) for s in cast(Iterable[float], t)]
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
