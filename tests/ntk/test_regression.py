"""Kernel regression (inrlib.ntk.regression): Eq. 5 against closed forms and against training."""

import numpy as np
import pytest
import torch

from inrlib.encodings import IdentityEncoding
from inrlib.models import CoordinateMLP
from inrlib.ntk import empirical_ntk, gradient_flow_time, kernel_regression


def test_kernel_regression_limits_and_closed_form():
    torch.manual_seed(10)
    A = torch.randn(20, 30, dtype=torch.float64)
    K = A @ A.T / 30
    y = torch.randn(20, 2, dtype=torch.float64)
    np.testing.assert_allclose(kernel_regression(K, y, 0.0).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(kernel_regression(K, y, 1e9).numpy(), y.numpy(), atol=1e-8)
    from scipy.linalg import expm
    t = 0.7
    Kn = K.numpy()
    ref = np.linalg.solve(Kn, (np.eye(20) - expm(-Kn * t)) @ y.numpy())
    Kt = torch.randn(5, 20, dtype=torch.float64) @ K
    np.testing.assert_allclose(kernel_regression(K, y, t, K_test=Kt).numpy(), Kt.numpy() @ ref, rtol=1e-8)
    many = kernel_regression(K, y, [0.1, t])
    assert many.shape == (2, 20, 2)
    # singular kernel: the limit (1 - e^{-lambda t}) / lambda -> t is used, no blow-up
    Ks = torch.ones(4, 4, dtype=torch.float64)
    out = kernel_regression(Ks, torch.arange(4.0), 0.5)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="rows"):
        kernel_regression(K, y[:5], 1.0)


def test_linearized_prediction_tracks_small_lr_training():
    """Full-batch GD with a small lr on a wide net follows Eq. 5's kernel regression closely.

    (Measured: 0.4 % at width 2048, 3.9 % at width 512. With a multigrid encoding the
    prediction is off by 15-30 %: the grid values start near 0.01 and move far from their
    initialization, outside the lazy regime.)
    """
    torch.manual_seed(11)
    model = CoordinateMLP(IdentityEncoding(1), [2048], 1, "relu").double()
    x = torch.linspace(0, 1, 24, dtype=torch.float64)[:, None]
    y = torch.sin(6 * x)
    f0 = model(x).detach()
    K = empirical_ntk(model, x)
    lr, steps = 0.05, 200
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    t = gradient_flow_time(lr, steps, n=24)
    pred = kernel_regression(K, y, t, f0_train=f0)
    trained = model(x).detach()
    moved = float((trained - f0).norm())
    assert float((pred - trained).norm()) < 0.02 * moved


def test_kernel_regression_takes_host_inputs_for_a_kernel_on_another_device():
    """K on a device that is not the host (here PyTorch's 'meta' device stands in for a GPU), the
    targets and initial outputs as NumPy arrays: everything is moved to K's device, nothing mixes."""
    K = torch.randn(6, 6, dtype=torch.float64, device="meta")
    Kt = torch.randn(3, 6, dtype=torch.float64, device="meta")
    out = kernel_regression(K, np.zeros(6), 0.5, K_test=Kt, f0_train=np.zeros(6), f0_test=np.zeros(3))
    assert out.device.type == "meta" and out.shape == (3, 1) and out.dtype == torch.float64
    out = kernel_regression(K, np.zeros((6, 2)), [0.1, 1.0], f0_train=np.ones((6, 2)))
    assert out.device.type == "meta" and out.shape == (2, 6, 2)


def test_gradient_flow_time_and_kernel_regression_contracts():
    assert gradient_flow_time(0.1, 50, 20, channels=3) == pytest.approx(2 * 0.1 * 50 / 60, rel=1e-15)
    assert gradient_flow_time(0.1, 50, 20, reduction="sum") == pytest.approx(5.0, rel=1e-15)
    with pytest.raises(ValueError, match=r"^reduction must be 'mean' or 'sum', got 'max'$"):
        gradient_flow_time(0.1, 5, 2, reduction="max")
    rng = np.random.default_rng(0)
    M = rng.standard_normal((6, 6))
    K64 = M @ M.T + 0.1 * np.eye(6)
    K32 = torch.as_tensor(K64, dtype=torch.float32)               # float32 in: computed in float64
    Kd = K32.double().numpy()
    y = rng.standard_normal((6, 2)).astype(np.float32)
    f0 = rng.standard_normal((6, 2)).astype(np.float32)
    Kt = rng.standard_normal((3, 6)).astype(np.float32)
    f0t = rng.standard_normal((3, 2)).astype(np.float32)
    t = 0.7
    lam, Q = np.linalg.eigh(Kd)
    op = Q @ np.diag((1 - np.exp(-lam * t)) / lam) @ Q.T
    want = f0t.astype(np.float64) + Kt.astype(np.float64) @ op @ (y.astype(np.float64) - f0)
    got = kernel_regression(K32, torch.as_tensor(y), t, K_test=torch.as_tensor(Kt), f0_train=f0, f0_test=f0t)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-11, atol=1e-11)
    for bad, msg in ((np.ones((3, 4)), r"^K_train must be square \(N, N\), got \(3, 4\)$"),
                     (np.ones(3), r"^K_train must be square \(N, N\), got \(3,\)$")):
        with pytest.raises(ValueError, match=msg):
            kernel_regression(bad, np.ones(3), 1.0)
    with pytest.raises(ValueError, match=r"^y_train has 5 rows but K_train is 6 x 6$"):
        kernel_regression(K64, np.ones(5), 1.0)
    with pytest.raises(ValueError, match=r"^K_test must be \(M, 6\), got \(3, 5\)$"):
        kernel_regression(K64, np.ones(6), 1.0, K_test=np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"^time must be >= 0, got -1.0$"):
        kernel_regression(K64, np.ones(6), [1.0, -1.0])

