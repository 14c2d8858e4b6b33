"""The empirical NTK engine against the torch.func references, its groups, spectra and regression."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from inrlib.encodings import (FourierEncoding, GaussianFourierEncoding, HashGridEncoding, IdentityEncoding,
                              MultigridEncoding)
from inrlib.models import CoordinateMLP
from inrlib.ntk import (NTKMemoryError, NTKOperator, empirical_ntk, extreme_eigenvalues, gradient_flow_time,
                        interlacing_bounds, interpolation_gram, kernel_regression, resample_spectrum, rounding_floor,
                        spectrum, weyl_check)

TOL = 1e-10


def rel(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


ENCODINGS = {
    "identity": lambda d: IdentityEncoding(d),
    "fourier": lambda d: FourierEncoding(d, 4),
    "gaussian": lambda d: GaussianFourierEncoding(d, 12, 2.0),
    "multigrid": lambda d: MultigridEncoding(d, [3, 9, 33] if d < 3 else [3, 7], 3 if d < 3 else 2),
    "hashgrid": lambda d: HashGridEncoding(d, levels=3, features=2, log2_table_size=6, min_resolution=4,
                                           max_resolution=24),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_structured_equals_jacobian_for_every_encoding(encoding, dim):
    torch.manual_seed(dim)
    model = CoordinateMLP(ENCODINGS[encoding](dim), [24, 24], 1, "relu")
    x = torch.rand(40, dim)
    K = empirical_ntk(model, x)
    R = empirical_ntk(model, x, method="jacobian")
    assert K.dtype == torch.float64 and K.shape == (40, 40)
    assert rel(K, R) < TOL


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_structured_kernel_in_chunks_equals_the_jacobian_reference(encoding):
    """Forward and backward passes in chunks of 7 points (the last one short; N = 30 and a second set
    of 17): captures, sensitivities and inputs are joined across chunks, for every group and for the
    cross kernel, with STAF's per-sample sites among them."""
    torch.manual_seed(5)
    model = CoordinateMLP(ENCODINGS[encoding](2), [12, 12], 2, "staf", tau=2)
    x, x2 = torch.rand(30, 2), torch.rand(17, 2)
    for outputs in ("trace", "full"):
        K = empirical_ntk(model, x, groups=True, outputs=outputs, method="structured", chunk_size=7)
        R = empirical_ntk(model, x, groups=True, outputs=outputs, method="jacobian")
        assert set(R) <= set(K), (outputs, encoding)   # the structured engine also names each grid level
        for g in R:      # no grid in some encodings: its kernel is exactly zero
            assert (rel(K[g], R[g]) < TOL) if float(R[g].norm()) > 0 else float(K[g].abs().max()) == 0, (outputs, g)
    C = empirical_ntk(model, x, x2, method="structured", chunk_size=7)
    assert C.shape == (30, 17) and rel(C, empirical_ntk(model, x, x2, method="jacobian")) < TOL


@pytest.mark.parametrize("activation,param", [("relu", "ntk"), ("relu", "standard"), ("tanh", "ntk"),
                                              ("sine", "ntk"), ("simple_sine", "ntk"), ("staf", "ntk")])
@pytest.mark.parametrize("outputs,channels", [("trace", 1), ("trace", 3), ("full", 3)])
def test_structured_equals_jacobian_for_every_network(activation, param, outputs, channels):
    torch.manual_seed(0)
    model = CoordinateMLP(MultigridEncoding(2, [5, 12], 2), [20, 20], channels, activation,
                          parameterization=param, trainable_w=True)
    x = torch.rand(30, 2)
    K = empirical_ntk(model, x, outputs=outputs)
    R = empirical_ntk(model, x, outputs=outputs, method="jacobian")
    n = 30 * (channels if outputs == "full" else 1)
    assert K.shape == (n, n)
    assert rel(K, R) < TOL


def test_full_kernel_traces_to_trace_kernel_and_ntk_vp_agrees():
    torch.manual_seed(1)
    model = CoordinateMLP(FourierEncoding(2, 3), [16], 2, "relu")
    x = torch.rand(12, 2)
    full = empirical_ntk(model, x, outputs="full")
    trace = empirical_ntk(model, x)
    blocks = full.reshape(12, 2, 12, 2)
    assert rel(blocks[:, 0, :, 0] + blocks[:, 1, :, 1], trace) < TOL
    for outputs in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=outputs, method="ntk_vp"),
                   empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL


def test_cross_kernel_between_two_point_sets():
    torch.manual_seed(2)
    model = CoordinateMLP(MultigridEncoding(2, [6, 20], 2), [16, 16], 2, "staf")
    x, y = torch.rand(25, 2), torch.rand(11, 2)
    K = empirical_ntk(model, x, y)
    assert K.shape == (25, 11)
    assert rel(K, empirical_ntk(model, x, y, method="jacobian")) < TOL
    both = empirical_ntk(model, torch.cat([x, y]))
    assert rel(K, both[:25, 25:]) < TOL


class Unknown(nn.Module):
    """A layer the engine has no rule for: a gated sinusoid with its own parameters (of different
    sizes, so their per-sample gradients must be concatenated along the parameter axis) and a buffer
    (which the per-sample call must leave to the module)."""

    def __init__(self, n):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(n))
        self.shift = nn.Parameter(torch.randn(1))
        self.register_buffer("phase", torch.randn(n))

    def forward(self, z):
        return torch.sin(self.scale * z + self.phase) * torch.sigmoid(z + self.shift)


class Shared(nn.Module):
    """The same linear layer applied twice: its gradient is a sum over the two calls."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.first = nn.Linear(2, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.inner(torch.tanh(self.inner(torch.tanh(self.first(x)))))))


class ScaledBy(nn.Module):
    """A layer called with a 0-d tensor beside the batch: its inputs are not per-sample, so the engine
    must take its Jacobian instead of per-sample gradients."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n))

    def forward(self, z, gain):
        return torch.tanh(self.weight * z) * gain


class WithGain(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.scaled, self.out = nn.Linear(2, 8), ScaledBy(8), nn.Linear(8, 2)
        self.register_buffer("gain", torch.tensor(1.5))

    def forward(self, x):
        return self.out(self.scaled(self.first(x), self.gain))


class PairOut(nn.Module):
    """A layer that returns a tuple: the engine cannot capture it and must take its Jacobian."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n))

    def forward(self, z):
        return torch.sin(self.weight * z), torch.cos(z)


class WithPair(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.pair, self.out = nn.Linear(2, 8), PairOut(8), nn.Linear(8, 1)

    def forward(self, x):
        a, b = self.pair(self.first(x))
        return self.out(a * b)


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(2, 16), Unknown(16), nn.Linear(16, 2)),
    lambda: Shared(),
    lambda: WithGain(),
    lambda: WithPair(),
    lambda: nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1, bias=False)),
])
def test_modules_the_engine_does_not_know_fall_back_exactly(make):
    torch.manual_seed(3)
    model = make()
    x = torch.rand(20, 2)
    x2 = torch.rand(13, 2)
    for outputs in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=outputs),
                   empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL
        # the cross kernel: a site taken by its Jacobian must be taken between the two point sets
        assert rel(empirical_ntk(model, x, x2, outputs=outputs),
                   empirical_ntk(model, x, x2, outputs=outputs, method="jacobian")) < TOL


def test_groups_sum_to_total_and_are_psd():
    torch.manual_seed(4)
    model = CoordinateMLP(MultigridEncoding(2, [4, 10, 30], 2), [16, 16], 2, "relu")
    x = torch.rand(50, 2)
    G = empirical_ntk(model, x, groups=True)
    R = empirical_ntk(model, x, groups=True, method="jacobian")
    assert {"total", "mlp", "grid", "encoding", "encoding.level0", "encoding.level2", "mlp.0"} <= set(G)
    assert rel(G["mlp"] + G["grid"], G["total"]) < 1e-13
    levels = sum(G[f"encoding.level{i}"] for i in range(3))
    assert rel(levels, G["grid"]) < 1e-13 and rel(G["encoding"], G["grid"]) < 1e-13
    layers = sum(G[k] for k in G if k.startswith("mlp."))
    assert rel(layers, G["mlp"]) < 1e-13
    for key in ("total", "mlp", "grid", "mlp.0"):
        assert rel(G[key], R[key]) < TOL
    for key, value in G.items():
        assert torch.allclose(value, value.T, rtol=0, atol=1e-12 * float(value.abs().max()))
        ev = torch.linalg.eigvalsh(value)
        assert float(ev.min()) >= -1e-12 * float(ev.max()), key
    # each level's term against the Jacobian of that level's table alone
    params = dict(model.named_parameters())
    from torch.func import functional_call, jacrev
    xd = x.double()
    m64 = model.double()
    for level in range(3):
        name = f"encoding.tables.{level}"
        J = jacrev(lambda p: functional_call(m64, p, (xd,)))({name: params[name].detach().double()})[name]
        J = J.reshape(50, 2, -1)
        ref = torch.einsum("icp,jcp->ij", J, J)
        assert rel(G[f"encoding.level{level}"], ref) < TOL


def test_groups_without_a_grid_have_zero_grid_term():
    model = CoordinateMLP(FourierEncoding(2, 4), [16], 1)
    G = empirical_ntk(model, torch.rand(20, 2), groups=True)
    assert float(G["grid"].abs().max()) == 0.0 and rel(G["mlp"], G["total"]) == 0.0


def test_interpolation_gram_dense_and_sparse_paths_agree():
    torch.manual_seed(5)
    enc = MultigridEncoding(2, [200], 1, include_input=False).double()
    x = torch.rand(300, 2, dtype=torch.float64)
    rows, w = enc.corners(x, 0)
    e = torch.randn(300, 3, dtype=torch.float64)
    sparse = interpolation_gram(rows, w, e, rows, w, e, n_rows=200 ** 2)
    S = torch.zeros(300, 200 ** 2, dtype=torch.float64).scatter_add_(1, rows, w)
    dense = (S @ S.T) * (e @ e.T)
    assert rel(sparse, dense) < 1e-13


def test_float32_kernel_is_close_in_frobenius_norm():
    torch.manual_seed(6)
    model = CoordinateMLP(MultigridEncoding(2, [16], 2), [64, 64], 1)
    x = torch.rand(64, 2)
    k32 = empirical_ntk(model, x, dtype=torch.float32)
    assert k32.dtype == torch.float32
    assert rel(k32.double(), empirical_ntk(model, x)) < 1e-4


def test_bad_input_gives_clear_errors():
    model = CoordinateMLP(IdentityEncoding(2), [8], 1)
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        empirical_ntk(model, torch.rand(10))
    with pytest.raises(TypeError, match="floating point"):
        empirical_ntk(model, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D coordinates"):
        empirical_ntk(model, torch.rand(4, 3))
    with pytest.raises(ValueError, match="outputs"):
        empirical_ntk(model, torch.rand(4, 2), outputs="diag")
    with pytest.raises(ValueError, match="method"):
        empirical_ntk(model, torch.rand(4, 2), method="magic")
    frozen = CoordinateMLP(IdentityEncoding(2), [8], 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(frozen, torch.rand(4, 2))
    with pytest.raises(NTKMemoryError, match="NTKOperator"):
        empirical_ntk(model, torch.rand(3000, 2), memory_budget=10_000_000)
    with pytest.raises(TypeError, match="nn.Module"):
        empirical_ntk(lambda x: x, torch.rand(4, 2))


def test_spectrum_checks_and_order():
    torch.manual_seed(7)
    A = torch.randn(30, 10, dtype=torch.float64)
    K = A @ A.T
    ev = spectrum(K)
    assert isinstance(ev, np.ndarray) and ev.dtype == np.float64
    assert np.all(np.diff(ev) <= 0)
    np.testing.assert_allclose(ev, np.sort(np.linalg.eigvalsh(K.numpy()))[::-1], atol=1e-12)
    assert abs(ev[10:]).max() < rounding_floor(K, ev)
    with pytest.raises(ValueError, match="not symmetric"):
        spectrum(K + torch.triu(torch.ones(30, 30, dtype=torch.float64)))
    with pytest.raises(ValueError, match="indefinite"):
        spectrum(K - 5 * torch.eye(30, dtype=torch.float64))
    with pytest.raises(ValueError, match="square"):
        spectrum(A)
    with pytest.raises(ValueError, match="NaN"):
        spectrum(K * float("nan"))


def test_resample_spectrum():
    ev = np.logspace(0, -6, 101)
    out = resample_spectrum(ev, 8000)
    assert out.shape == (8000,) and out[0] == pytest.approx(1) and out[-1] == pytest.approx(1e-6)
    np.testing.assert_allclose(out, 10 ** (-6 * np.linspace(0, 1, 8000)), rtol=1e-10)  # stays log-linear
    assert np.all(np.diff(out) <= 0)
    np.testing.assert_allclose(resample_spectrum(ev, 101), ev)


def test_weyl_check_on_known_matrices():
    torch.manual_seed(8)
    A = torch.randn(40, 40, dtype=torch.float64)
    B = torch.randn(40, 60, dtype=torch.float64)
    KA, KB = A @ A.T, B @ B.T
    res = weyl_check(KA, KB)
    assert res["holds"] and res["min_slack"] >= -1e-10
    np.testing.assert_allclose(res["bound"], res["lambda_A"] + res["lambda_min_B"])
    # a "sum" that is not one: the bound can fail, and the check must say so
    res = weyl_check(KA, KB, KA * 0.5)
    assert not res["holds"] and res["min_slack"] < 0


def test_matrix_free_products_and_lanczos_extremes():
    torch.manual_seed(9)
    model = CoordinateMLP(MultigridEncoding(2, [8, 24], 2), [32, 32], 2, "relu")
    x = torch.rand(160, 2)
    K = empirical_ntk(model, x)
    op = NTKOperator(model, x)
    v = torch.randn(160, 3, dtype=torch.float64)
    assert rel(op.matvec(v), K @ v) < 1e-12
    assert rel(op.matvec(v[:, 0]), K @ v[:, 0]) < 1e-12
    ev = spectrum(K)
    res = extreme_eigenvalues(op, k=3, tol=1e-10)
    np.testing.assert_allclose(res["largest"], ev[:3], rtol=1e-8)
    np.testing.assert_allclose(res["smallest"], ev[-3:], rtol=1e-4, atol=1e-8 * ev[0])
    assert res["products"] > 0 and np.all(res["residual_largest"] < 1e-6 * ev[0])


@pytest.mark.parametrize("make", [
    lambda: CoordinateMLP(MultigridEncoding(2, [5, 17], 2), [24, 24], 3, "relu"),                   # grid + dense, 3 outputs
    lambda: CoordinateMLP(HashGridEncoding(2, levels=2, features=2, log2_table_size=6, min_resolution=4,
                                           max_resolution=20), [16], 1, "relu"),
    lambda: CoordinateMLP(FourierEncoding(2, 3), [16, 16], 2, "staf"),                             # per-sample sites
    lambda: nn.Sequential(nn.Linear(2, 16), Unknown(16), nn.Linear(16, 1)),                        # a module it does not know
])
def test_structured_matrix_free_products_equal_dense_kernel(make):
    """The site-local products (method="structured") on models with every kind of site."""
    torch.manual_seed(11)
    model = make()
    x = torch.rand(300, 2)
    K = empirical_ntk(model, x)
    op = NTKOperator(model, x, method="structured", chunk_size=128)     # several chunks
    assert op.method == "structured"
    v = torch.randn(300, 2, dtype=torch.float64)
    assert rel(op.matvec(v), K @ v) < 1e-12
    auto = NTKOperator(model, x, method="autodiff")
    assert rel(auto.matvec(v[:, 0]), K @ v[:, 0]) < 1e-12


def test_interlacing_bounds_bracket_the_dense_spectrum():
    """Cauchy interlacing: a subset's kernel bounds K's k smallest from above, its k largest from below."""
    torch.manual_seed(14)
    model = CoordinateMLP(MultigridEncoding(2, [4, 12], 2), [32, 32], 2, "relu")
    x = torch.rand(400, 2)
    ev = spectrum(empirical_ntk(model, x))                                   # descending
    k = 5
    for kwargs in ({"size": 60}, {"size": 200}, {"indices": torch.randperm(400)[:150]}):
        b = interlacing_bounds(model, x, k, **kwargs)
        assert b["smallest_upper"].shape == (k,) and b["largest_lower"].shape == (k,)
        assert np.all(np.diff(b["smallest_upper"]) <= 0) and np.all(np.diff(b["largest_lower"]) <= 0)
        assert np.all(b["smallest_upper"] >= ev[-k:]), kwargs                # lambda_i^asc(K) <= lambda_i^asc(K_S)
        assert np.all(b["largest_lower"] <= ev[:k]), kwargs
        assert b["allowance"] < 1e-10 * ev[0]
    # the whole set is its own principal submatrix: the bounds are the eigenvalues
    whole = interlacing_bounds(model, x, k, indices=np.arange(400))
    np.testing.assert_allclose(whole["largest_lower"], ev[:k], rtol=1e-10)
    np.testing.assert_allclose(whole["smallest_upper"], np.maximum(ev[-k:], 0), rtol=1e-6, atol=2 * whole["allowance"])
    # the default subset is a compact patch: every chosen point is nearer the seed than every other
    b = interlacing_bounds(model, x, 1, size=50)
    chosen = np.zeros(400, bool)
    chosen[b["indices"]] = True
    xd = x.double()
    seed = torch.argmin(((xd - xd.mean(0)) ** 2).sum(1))
    d = ((xd - xd[seed]) ** 2).sum(1).numpy()
    assert chosen.sum() == 50 and d[chosen].max() <= d[~chosen].min()


def test_interlacing_bounds_reject_bad_subsets():
    torch.manual_seed(15)
    model = CoordinateMLP(IdentityEncoding(2), [8], 1, "relu")
    x = torch.rand(30, 2)
    with pytest.raises(ValueError, match="size must be"):
        interlacing_bounds(model, x, size=31)
    with pytest.raises(ValueError, match="k must be"):
        interlacing_bounds(model, x, k=11, size=10)
    with pytest.raises(ValueError, match="distinct"):
        interlacing_bounds(model, x, indices=[1, 2, 2])
    with pytest.raises(ValueError, match="row indices"):
        interlacing_bounds(model, x, indices=[0, 30])
    with pytest.raises(ValueError, match="integer"):
        interlacing_bounds(model, x, indices=np.array([0.5, 1.0]))


def test_structured_products_need_modules_called_once():
    torch.manual_seed(12)
    x = torch.rand(50, 2)
    with pytest.raises(ValueError, match="method='autodiff'"):
        NTKOperator(Shared(), x, method="structured")
    op = NTKOperator(Shared(), x, method="auto")
    assert op.method == "autodiff"
    v = torch.randn(50, dtype=torch.float64)
    model = Shared()
    assert rel(NTKOperator(model, x).matvec(v), empirical_ntk(model, x) @ v) < 1e-12
    with pytest.raises(ValueError, match="method must be"):
        NTKOperator(model, x, method="fast")


@pytest.fixture(scope="module")
def fourier_extremes():
    """An FFE network's NTK on 60 points, its dense spectrum, its operator and both methods' 4 extreme
    eigenvalues at each end (ARPACK needs ~1100 products for the small end here: computed once)."""
    torch.manual_seed(13)
    model = CoordinateMLP(FourierEncoding(1, 3), [32, 32], 1, "relu")
    x = torch.linspace(0, 1, 60)[:, None]
    ev = spectrum(empirical_ntk(model, x))
    op = NTKOperator(model, x)
    before = op.products
    ar = extreme_eigenvalues(op, k=4, method="arpack", tol=1e-12)
    return {"x": x, "ev": ev, "op": op, "arpack": ar, "arpack_products": op.products - before}


def test_lanczos_and_arpack_agree_on_both_ends(fourier_extremes):
    x, ev, op, ar = (fourier_extremes[k] for k in ("x", "ev", "op", "arpack"))
    lz = extreme_eigenvalues(op, k=4, tol=1e-12, maxiter=60)
    assert lz["converged"]
    for res in (lz, ar):
        np.testing.assert_allclose(res["largest"], ev[:4], rtol=1e-9)
        np.testing.assert_allclose(res["smallest"], ev[-4:], rtol=1e-6, atol=1e-9 * ev[0])
    with pytest.raises(ValueError, match="method must be 'lanczos' or 'arpack'"):
        extreme_eigenvalues(op, k=2, method="lobpcg")
    # an ill-conditioned kernel and no room to converge: a clear error (none converged) or converged=False
    grid = NTKOperator(CoordinateMLP(MultigridEncoding(1, [9, 33], 2), [32, 32], 1, "relu"), x)
    with pytest.raises(RuntimeError, match="raise maxiter or tol, or use method='lanczos'"):
        extreme_eigenvalues(grid, k=4, method="arpack", tol=1e-14, maxiter=3)
    short = extreme_eigenvalues(grid, k=4, tol=1e-14, maxiter=12)
    assert not short["converged"] and short["products"] >= 12


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


def test_weyl_check_against_diagonal_closed_form():
    a = np.array([5.0, 3.0, 1.0, 0.5])
    b = np.array([2.0, 0.0, 0.25, 1.0])
    res = weyl_check(torch.diag(torch.tensor(a)), torch.diag(torch.tensor(b)))
    total = np.sort(a + b)[::-1]                       # [7, 3, 1.5, 1.25]
    np.testing.assert_allclose(res["lambda_sum"], total)
    np.testing.assert_allclose(res["bound"], np.sort(a)[::-1] + 0.0)   # lambda_min(B) = 0
    np.testing.assert_allclose(res["slack"], total - np.sort(a)[::-1])
    assert res["min_slack"] == pytest.approx(0.0) and res["argmin_slack"] == 1 and res["holds"]


def test_cuda_budget_counts_the_allocators_cached_blocks(monkeypatch):
    """mem_get_info calls memory the caching allocator keeps for reuse 'used': it is free to us."""
    from inrlib import ntk as N
    gib = 2 ** 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 40 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 8 * gib)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    asked = []

    def fraction_of(share):   # torch's own refuses a device without an index ("cuda"): ask with one
        return lambda device: asked.append(device) or (share if isinstance(device, int) else 1 / 0)

    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", fraction_of(1.0), raising=False)
    assert N.available_memory(torch.device("cuda")) == 42 * gib
    assert N._budget(None, torch.device("cuda")) == 21 * gib
    # a process given a share of the card (set_per_process_memory_fraction) counts only its share
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", fraction_of(0.625), raising=False)
    assert N.available_memory(torch.device("cuda")) == (50 - 40 + 32) * gib      # 0.625 * 80 = 50 GiB
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", fraction_of(0.25), raising=False)
    assert N.available_memory(torch.device("cuda:1")) == 32 * gib                 # the share is spent: cache only
    assert asked == [0, 0, 0, 1]
    # each query names the device asked about (another card's numbers would be wrong), and a cache
    # with nothing unallocated adds nothing
    queried = []

    def per_device(value):
        return lambda device=None: queried.append(device) or value

    dev = torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", per_device((6 * gib, 80 * gib)))
    monkeypatch.setattr(torch.cuda, "memory_reserved", per_device(9 * gib))
    monkeypatch.setattr(torch.cuda, "memory_allocated", per_device(9 * gib))
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", fraction_of(1.0), raising=False)
    assert N.available_memory(dev) == 6 * gib
    assert queried == [dev, dev, dev]


def test_kernel_regression_takes_host_inputs_for_a_kernel_on_another_device():
    """K on a device that is not the host (here PyTorch's 'meta' device stands in for a GPU), the
    targets and initial outputs as NumPy arrays: everything is moved to K's device, nothing mixes."""
    K = torch.randn(6, 6, dtype=torch.float64, device="meta")
    Kt = torch.randn(3, 6, dtype=torch.float64, device="meta")
    out = kernel_regression(K, np.zeros(6), 0.5, K_test=Kt, f0_train=np.zeros(6), f0_test=np.zeros(3))
    assert out.device.type == "meta" and out.shape == (3, 1) and out.dtype == torch.float64
    out = kernel_regression(K, np.zeros((6, 2)), [0.1, 1.0], f0_train=np.ones((6, 2)))
    assert out.device.type == "meta" and out.shape == (2, 6, 2)


def test_bias_free_dense_layers_contribute_no_bias_term():
    """Dense(bias=False) in both parameterizations: the structured kernel has no b_scale^2 D D^T term."""
    from inrlib.layers import Dense
    torch.manual_seed(4)
    model = nn.Sequential(Dense(2, 16, bias=False), nn.Tanh(), Dense(16, 8, beta=0.5), nn.Tanh(),
                          Dense(8, 2, parameterization="standard", bias=False))
    x = torch.rand(25, 2)
    x2 = torch.rand(13, 2)
    for outputs in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=outputs),
                   empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL
        # the cross kernel: a site taken by its Jacobian must be taken between the two point sets
        assert rel(empirical_ntk(model, x, x2, outputs=outputs),
                   empirical_ntk(model, x, x2, outputs=outputs, method="jacobian")) < TOL


# ----------------------------------------------------------------------------------------------
# found by mutation testing: the paths the kernel comparisons above never reach
# ----------------------------------------------------------------------------------------------
def test_unknown_modules_use_per_sample_gradients_not_the_jacobian_fallback(monkeypatch):
    """A vmap-able module without a rule is handled by per-sample gradients; the Jacobian fallback
    (exact too, but O(N P) memory) must not be what makes the kernel right."""
    import inrlib.ntk as ntk
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 16), Unknown(16), nn.Linear(16, 2))
    x = torch.rand(20, 2)
    want = {o: empirical_ntk(model, x, outputs=o, method="jacobian") for o in ("trace", "full")}
    want_groups = empirical_ntk(model, x, groups=True, method="jacobian")

    def no_jacobian(*args, **kwargs):
        raise AssertionError("the structured engine fell back to the Jacobian for a vmap-able module")
    monkeypatch.setattr(ntk, "_jacobian_ntk", no_jacobian)
    for o in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=o), want[o]) < TOL
    got = empirical_ntk(model, x, groups=True)
    assert set(got) == set(want_groups) and all(rel(got[k], want_groups[k]) < TOL for k in got if want_groups[k].norm() > 0)


class OwnParams(nn.Module):
    """A model that holds its parameters itself (its site is the model) beside a child named 'grid'."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(2, 3))
        self.grid = nn.Linear(3, 2)

    def forward(self, x):
        return self.grid(torch.tanh(x @ self.a))


def test_reference_groups_name_the_model_site_and_reserved_module_names():
    torch.manual_seed(0)
    model = OwnParams()
    x, x2 = torch.rand(9, 2), torch.rand(5, 2)
    for other in (None, x2):
        ref = empirical_ntk(model, x, other, groups=True, method="jacobian")
        got = empirical_ntk(model, x, other, groups=True)
        assert "grid (module)" in ref and "model" in ref and set(ref) == set(got)
        for key in ref:
            if float(ref[key].norm()) == 0.0:
                assert float(got[key].norm()) == 0.0, key
            else:
                assert rel(got[key], ref[key]) < TOL, key
        assert float(ref["grid"].abs().max()) == 0.0           # no grid encoding: the group is zeros
        assert rel(ref["total"], empirical_ntk(model, x, other, method="jacobian")) < TOL


def test_jacobian_reference_in_chunks_and_its_memory_check():
    """A budget that just fits forces the reference into many row chunks; one byte less is refused."""
    torch.manual_seed(1)
    model = CoordinateMLP(IdentityEncoding(2), [6], 2, "tanh")
    x, x2 = torch.rand(40, 2), torch.rand(24, 2)
    n_params = sum(p.numel() for p in model.parameters())
    want = empirical_ntk(model, x, x2, outputs="full")
    need = (40 + 24) * 2 * n_params * 8 + (40 * 2) * (24 * 2) * 8      # both Jacobians and the kernel
    got = empirical_ntk(model, x, x2, outputs="full", method="jacobian", memory_budget=need)
    assert rel(got, want) < TOL
    msg = (rf"^the Jacobian \(40 points x 2 outputs x {n_params} parameters\) and the 40 x 24 kernel need "
           rf"{need / 2**30:.1f} GiB, over the budget of {(need - 1) / 2**30:.1f} GiB; use method='structured' "
           "or fewer points$")
    with pytest.raises(NTKMemoryError, match=msg):
        empirical_ntk(model, x, x2, outputs="full", method="jacobian", memory_budget=need - 1)
    # the symmetric kernel needs N rows of the Jacobian only
    assert rel(empirical_ntk(model, x, method="jacobian", memory_budget=40 * 2 * n_params * 8 + 40 * 40 * 8),
               empirical_ntk(model, x)) < TOL


def test_ntk_vp_cross_kernel_in_small_column_chunks():
    torch.manual_seed(2)
    model = CoordinateMLP(FourierEncoding(2, 2), [8], 2, "tanh")
    x, x2 = torch.rand(7, 2), torch.rand(11, 2)
    for o in ("trace", "full"):
        want = empirical_ntk(model, x, x2, outputs=o)
        assert rel(empirical_ntk(model, x, x2, outputs=o, method="ntk_vp", chunk_size=3), want) < TOL


def test_resample_spectrum_values_floor_and_checks():
    assert resample_spectrum(np.array([3.0, 1.0])).shape == (8000,)          # the paper's length by default
    np.testing.assert_allclose(resample_spectrum([3, 2, 1], 5, log=False), [3, 2.5, 2, 1.5, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(resample_spectrum([100.0, 1.0], 3), [100.0, 10.0, 1.0], rtol=1e-13)   # log10-linear
    # zeros and negatives are clipped to the smallest positive value, or to the floor given
    np.testing.assert_allclose(resample_spectrum([100.0, 10.0, 0.0, -1.0], 4), [100.0, 10.0, 10.0, 10.0], rtol=1e-13)
    np.testing.assert_allclose(resample_spectrum([100.0, 10.0, 0.0], 3, floor=1e-3), [100.0, 10.0, 1e-3], rtol=1e-13)
    assert resample_spectrum([5.0, 4.0], 2).tolist() == pytest.approx([5.0, 4.0], rel=1e-14)
    for bad in (np.ones((2, 2)), np.ones(1)):
        with pytest.raises(ValueError, match="^need a 1-D spectrum with at least 2 values, got shape "
                                             + re.escape(str(bad.shape)) + "$"):
            resample_spectrum(bad)
    with pytest.raises(ValueError, match=r"^length must be >= 2, got 1$"):
        resample_spectrum([2.0, 1.0], 1)
    with pytest.raises(ValueError, match=r"^no positive eigenvalues to interpolate in log scale; pass log=False$"):
        resample_spectrum([0.0, -1.0])


def test_weyl_check_keys_float64_sum_and_relative_slack():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 30)).astype(np.float32)
    A = A @ A.T
    B = (0.5 * np.eye(30) + 0.01 * np.ones((30, 30))).astype(np.float32)
    r = weyl_check(torch.as_tensor(A), B)                      # a tensor and an array, float32 both
    assert set(r) == {"lambda_A", "lambda_B", "lambda_sum", "lambda_min_B", "bound", "slack", "min_slack",
                      "argmin_slack", "min_relative_slack", "floor", "holds"}
    exact = np.linalg.eigvalsh(A.astype(np.float64) + B.astype(np.float64))[::-1]
    np.testing.assert_allclose(r["lambda_sum"], exact, rtol=1e-12, atol=1e-12 * exact[0])   # summed in float64
    ev_a = np.linalg.eigvalsh(A.astype(np.float64))[::-1]
    slack = exact - (ev_a + np.linalg.eigvalsh(B.astype(np.float64))[0])
    floor = 30 * np.finfo(np.float64).eps * exact[0]
    assert r["floor"] == pytest.approx(floor, rel=1e-10)
    assert r["min_relative_slack"] == pytest.approx(float((slack / np.maximum(np.abs(exact), floor)).min()), rel=1e-6)
    z = weyl_check(np.zeros((3, 3)), np.zeros((3, 3)))
    assert z["floor"] == 0.0 and z["min_slack"] == 0.0 and z["holds"]      # slack 0 >= -0: holds
    assert z["min_relative_slack"] == 0.0                                      # not 0 / 0
    with pytest.raises(ValueError, match=r"^the kernels have different sizes: 3, 3, 4$"):
        weyl_check(np.eye(3), np.eye(3), np.eye(4))


def test_interlacing_bounds_defaults_patch_and_checks():
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [8], 1, "tanh")
    side = 36
    g = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2)
    x = (g.double() + 0.5) / side                                  # a regular grid: many equal distances
    r = interlacing_bounds(model, x)
    assert r["size"] == 1024 and r["smallest_upper"].shape == (6,) and r["largest_lower"].shape == (6,)
    # the patch: the `size` points nearest to the point nearest the centroid, ties broken by index
    xn = x.numpy()
    seed = int(np.argmin(((xn - xn.mean(0)) ** 2).sum(1)))
    want = np.sort(np.argsort(((xn - xn[seed]) ** 2).sum(1), kind="stable")[:300])
    small = interlacing_bounds(model, x, k=3, size=300)
    assert np.array_equal(small["indices"], want)
    mu = np.linalg.eigvalsh(empirical_ntk(model, x[torch.as_tensor(want)]).numpy())[::-1]
    np.testing.assert_allclose(small["largest_lower"], mu[:3] - small["allowance"], rtol=1e-10)
    np.testing.assert_allclose(small["smallest_upper"], np.maximum(mu[-3:], 0) + small["allowance"],
                               rtol=1e-6, atol=1e-9 * mu[0])
    one = interlacing_bounds(model, x, k=1, indices=[5])
    assert one["size"] == 1 and one["indices"].tolist() == [5]
    assert interlacing_bounds(model, x[:4], k=4, size=4)["size"] == 4       # the whole set, every eigenvalue
    assert interlacing_bounds(model, x[:4], k=1, size=1)["size"] == 1
    with pytest.raises(ValueError, match=r"^size must be in \[1, N\] = \[1, 4\] points, got 5$"):
        interlacing_bounds(model, x[:4], size=5)
    with pytest.raises(ValueError, match=r"^indices must be a 1-D array of integer row indices of x$"):
        interlacing_bounds(model, x, indices=[0.5, 1.0])
    with pytest.raises(ValueError, match=rf"^indices must be non-empty row indices in \[0, {side * side - 1}\]$"):
        interlacing_bounds(model, x, indices=[0, side * side])
    for bad in (np.array([], dtype=np.int64), torch.tensor([-1, 2])):         # empty, or negative
        with pytest.raises(ValueError, match=rf"^indices must be non-empty row indices in \[0, {side * side - 1}\]$"):
            interlacing_bounds(model, x, indices=bad)
    with pytest.raises(ValueError, match=r"^indices must be distinct: a repeated point is not a principal submatrix$"):
        interlacing_bounds(model, x, indices=[3, 3])
    with pytest.raises(ValueError, match=r"^k must be in \[1, m\] = \[1, 2\] for a subset of 2 points, got 3$"):
        interlacing_bounds(model, x, k=3, indices=[1, 2])


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


def test_extreme_eigenvalue_outputs_are_complete_reproducible_and_checked(fourier_extremes):
    """Both methods: keys per `which`, residuals (k,) small against an independent dense spectrum,
    product counts from this call only, bitwise repeatable with the default seed."""
    ev, op = fourier_extremes["ev"], fourier_extremes["op"]
    op.matvec(np.ones(60))                                        # products before the call do not count
    for method, kw in (("lanczos", {"maxiter": 60}), ("arpack", {})):
        before = op.products
        if method == "arpack":       # the fixture's call, made on this operator: its own product count
            res, spent = fourier_extremes["arpack"], fourier_extremes["arpack_products"]
        else:
            res = extreme_eigenvalues(op, k=4, tol=1e-12, method=method, **kw)
            spent = op.products - before
        assert res["products"] == spent > 0 and res["converged"] is True
        for end, want in (("largest", ev[:4]), ("smallest", ev[-4:])):
            assert res[end].shape == (4,) and res["residual_" + end].shape == (4,)
            assert np.all(res["residual_" + end] < 1e-6 * ev[0]), (method, end, res["residual_" + end])
            np.testing.assert_allclose(res[end], want, rtol=1e-6, atol=1e-9 * ev[0])
        if method == "lanczos":
            again = extreme_eigenvalues(op, k=4, tol=1e-12, method=method, **kw)
            assert all(np.array_equal(res[key], again[key]) for key in ("largest", "smallest"))   # seed 0 by default
        else:                        # ARPACK's repeatability on its fast end
            one = [extreme_eigenvalues(op, k=2, which="largest", method=method)["largest"] for _ in range(2)]
            assert np.array_equal(*one)
        for which, keys in (("largest", {"largest", "residual_largest"}), ("smallest", {"smallest", "residual_smallest"})):
            one = extreme_eigenvalues(op, k=2, which=which, method=method, **kw)
            assert keys <= set(one) and not ({"largest", "smallest"} - {which}) & set(one), (method, which)
    default = extreme_eigenvalues(op)
    assert default["largest"].shape == (6,) and default["converged"]
    assert np.all(default["residual_largest"] <= 1e-5 * ev[0])                # tol 1e-6 by default
    assert extreme_eigenvalues(op, k=1)["largest"].shape == (1,)
    assert extreme_eigenvalues(op, k=58, which="largest")["largest"].shape == (58,)   # k up to N - 2
    with pytest.raises(ValueError, match=r"^k must be in \[1, N-2\] = \[1, 58\], got 59$"):
        extreme_eigenvalues(op, k=59)
    with pytest.raises(ValueError, match=r"^which must be 'largest', 'smallest' or 'both', got 'middle'$"):
        extreme_eigenvalues(op, which="middle")


def test_structured_operator_products_use_the_linearized_modules(monkeypatch):
    """After setup a structured product needs no jvp through a module's forward: torch.func.linearize
    recorded it (for modules whose forward it can trace: the dense layers and STAF here; a grid
    encoding checks its coordinates in Python and takes the jvp)."""
    import inrlib.ntk as ntk
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [16, 16], 2, "staf", tau=2)
    x = torch.rand(50, 2)
    op = NTKOperator(model, x, method="structured", chunk_size=20)
    assert op.method == "structured"
    K = empirical_ntk(model, x)

    def no_jvp(*args, **kwargs):
        raise AssertionError("a structured product recomputed a forward with jvp")
    monkeypatch.setattr(ntk, "jvp", no_jvp)
    v = torch.randn(50, dtype=torch.float64)
    assert rel(op.matvec(v), K @ v) < 1e-12


def test_lanczos_checks_convergence_on_its_schedule_and_stops_on_an_invariant_subspace():
    """Ritz pairs are checked every max(10, 2k) steps from step 2k + 2 on (and at maxiter); a run
    stops at the first check where every wanted pair's residual estimate is below tol * lambda_max,
    so one check earlier it had not converged. A kernel of rank r gives an invariant subspace after
    r steps: the run stops there with the exact nonzero spectrum."""
    torch.manual_seed(13)
    model = CoordinateMLP(FourierEncoding(1, 4), [48, 48], 1, "relu")
    x = torch.linspace(0, 1, 120)[:, None]
    ev = spectrum(empirical_ntk(model, x))
    op = NTKOperator(model, x)
    for k, which in ((3, "largest"), (3, "both"), (6, "smallest"), (2, "both")):
        every = max(10, 2 * k)
        res = extreme_eigenvalues(op, k=k, which=which, tol=1e-9)
        m = res["lanczos_steps"]
        assert res["converged"] and m >= 2 * k + 2 and m % every == 0, (k, which, m)
        if m - every >= 2 * k + 2:
            assert not extreme_eigenvalues(op, k=k, which=which, tol=1e-9, maxiter=m - every)["converged"]
        wanted = {"largest": ev[:k], "smallest": ev[-k:]}
        for end in ({"both": ("largest", "smallest")}.get(which, (which,))):
            assert np.all(res["residual_" + end] <= 1e-7 * ev[0]), (k, which, end)
            np.testing.assert_allclose(res[end], wanted[end], rtol=1e-6, atol=1e-9 * ev[0])
    short = extreme_eigenvalues(op, k=4, maxiter=3)                  # at least 2k + 2 steps whatever maxiter says
    assert short["lanczos_steps"] == 10
    # rank 3: a linear model on 3 Fourier features with no bias has a kernel of rank <= 3
    lin = nn.Sequential(FourierEncoding(1, 1, include_input=True), nn.Linear(3, 1, bias=False))
    lop = NTKOperator(lin, x)
    lev = spectrum(empirical_ntk(lin, x))
    r = extreme_eigenvalues(lop, k=2, tol=1e-12)
    assert r["converged"] and r["lanczos_steps"] <= 4
    np.testing.assert_allclose(r["largest"], lev[:2], rtol=1e-10)


def test_operator_types_counts_chunks_and_method_choice():
    torch.manual_seed(5)
    model = CoordinateMLP(FourierEncoding(2, 2), [12], 2, "tanh")
    x = torch.rand(30, 2)
    K = empirical_ntk(model, x).numpy()
    for method, chunk in (("autodiff", 7), ("structured", 7), ("autodiff", None)):
        op = NTKOperator(model, x, method=method, chunk_size=chunk)
        assert op.method == method and op.products == 0
        v32 = np.random.default_rng(0).standard_normal(30).astype(np.float32)
        out = op.matvec(v32)                                   # an array in, a float64 array out
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
        np.testing.assert_allclose(out, K @ v32.astype(np.float64), rtol=1e-12, atol=1e-12 * np.abs(K).max())
        t = op.matvec(torch.as_tensor(np.stack([v32, 2 * v32], 1)))   # a tensor in, a tensor out; 2 products
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float64 and t.shape == (30, 2)
        assert op.products == 3
        A = op.as_scipy()
        np.testing.assert_allclose(A.matmat(np.eye(30)[:, :3]), K[:, :3], rtol=1e-12, atol=1e-12 * np.abs(K).max())
        assert op.products == 6
    assert NTKOperator(model, x, chunk_size=1).matvec(np.ones(30)).shape == (30,)
    with pytest.raises(ValueError, match=r"^chunk_size must be a positive number of points, got 0$"):
        NTKOperator(model, x, chunk_size=0)
    # "auto": the structured products from STRUCTURED_MIN_N points on
    n_min = NTKOperator.STRUCTURED_MIN_N
    assert NTKOperator(model, torch.rand(n_min, 2)).method == "structured"
    assert NTKOperator(model, torch.rand(n_min - 1, 2)).method == "autodiff"
    assert NTKOperator(Shared(), torch.rand(n_min, 2)).method == "autodiff"     # shared weights: no structure
    with pytest.raises(ValueError, match=r"^method='structured' needs every parameterized module to be called once per "
                                         r"forward with batched tensor inputs; use method='autodiff'$"):
        NTKOperator(Shared(), torch.rand(20, 2), method="structured")


def test_unconverged_ritz_values_are_within_their_residuals_of_the_spectrum():
    """For unit Ritz vectors each Ritz value lies within its residual norm of an eigenvalue (symmetric
    K): the reported residuals must be the true ones, column by column."""
    torch.manual_seed(13)
    x = torch.linspace(0, 1, 60)[:, None]
    model = CoordinateMLP(MultigridEncoding(1, [9, 33], 2), [32, 32], 1, "relu")
    ev = spectrum(empirical_ntk(model, x))
    short = extreme_eigenvalues(NTKOperator(model, x), k=4, tol=1e-14, maxiter=12)
    assert not short["converged"]
    for end in ("largest", "smallest"):
        gap = np.abs(short[end][:, None] - ev[None, :]).min(axis=1)
        assert np.all(gap <= short["residual_" + end] * (1 + 1e-8) + 1e-12 * ev[0]), (end, gap, short["residual_" + end])
        assert np.any(short["residual_" + end] > 1e-3 * gap.max())               # not vacuous: some were far off


class Scaled(nn.Module):
    """y = a * x elementwise: a user's layer with a rule registered from outside (K term: (D_a D_b^T) * (X_a X_b^T))."""

    def __init__(self, n):
        super().__init__()
        self.a = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return self.a * x


def test_register_rule_is_used_for_the_class_it_names():
    from inrlib.ntk import _RULES, register_rule
    calls = []

    def capture(module, inputs, output):
        calls.append("capture")
        return inputs[0].detach()

    def gram(module, sa, ga, sb, gb):               # grads (N, C, n): sum_c sum_j D_aj X_aj D_bj X_bj
        calls.append("gram")
        return {"": torch.einsum("icj,ij,kcj,kj->ik", ga, sa, gb, sb)}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), Scaled(6), nn.Tanh(), nn.Linear(6, 1))
    x = torch.rand(15, 2)
    try:
        register_rule(Scaled, capture, gram)
        assert _RULES[Scaled] == (capture, gram)
        assert rel(empirical_ntk(model, x), empirical_ntk(model, x, method="jacobian")) < TOL
        assert "capture" in calls and "gram" in calls
    finally:
        _RULES.pop(Scaled, None)


class Branchy(nn.Module):
    """Data-dependent Python on its input: torch.func.vmap cannot trace it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x):
        return self.lin(x) * (2.0 if float(x.sum()) > 0 else 1.0)


def test_jacobian_reference_vmaps_per_point_and_falls_back_to_whole_chunks(monkeypatch):
    """The torch.func reference takes jacrev of one point under vmap; a model vmap cannot trace gets
    jacrev of the whole chunk (exact too)."""
    import inrlib.ntk as ntk
    seen = []
    real = ntk.jacrev

    def spy(fn, *args, **kwargs):
        seen.append(getattr(fn, "__name__", ""))
        return real(fn, *args, **kwargs)
    monkeypatch.setattr(ntk, "jacrev", spy)
    torch.manual_seed(0)
    mlp = CoordinateMLP(IdentityEncoding(2), [8], 2, "tanh")
    x = torch.rand(12, 2)
    K = empirical_ntk(mlp, x, outputs="full", method="jacobian")
    assert seen == ["one"], seen                              # one vmapped per-point Jacobian, no fallback
    assert rel(K, empirical_ntk(mlp, x, outputs="full")) < TOL
    seen.clear()
    model = Branchy()
    x = torch.rand(12, 2)
    J = torch.func.jacrev(lambda p: torch.func.functional_call(model, p, (x,)))(dict(model.named_parameters()))
    Jm = torch.cat([j.reshape(12, 3, -1) for j in J.values()], dim=2)
    want = torch.einsum("icp,jcp->ij", Jm.double(), Jm.double())
    got = empirical_ntk(model, x, method="jacobian", memory_budget=12 * 3 * 9 * 8 * 16)   # several row chunks
    assert "<lambda>" in seen and rel(got, want) < 1e-10


def test_patches_of_anisotropic_points_and_strict_lower_bounds():
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [8], 1, "tanh")
    x = torch.rand(400, 2, dtype=torch.float64) * torch.tensor([1.0, 3.0], dtype=torch.float64)
    r = interlacing_bounds(model, x / 3, k=3, size=50)
    xn = (x / 3).numpy()
    seed = int(np.argmin(((xn - xn.mean(0)) ** 2).sum(1)))   # the centroid of each column, not one mean
    want = np.sort(np.argsort(((xn - xn[seed]) ** 2).sum(1), kind="stable")[:50])
    assert np.array_equal(r["indices"], want)
    mu = np.linalg.eigvalsh(empirical_ntk(model, (x / 3)[torch.as_tensor(want)]).numpy())[::-1]
    assert r["allowance"] > 0 and np.all(r["largest_lower"] < mu[:3] - 0.5 * r["allowance"])   # below, by the allowance


def test_memory_refusal_states_the_sizes_in_gib():
    """The check runs before anything is allocated: a 4-million-point Jacobian is refused with its size."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [4], 1, "tanh")
    n_params = sum(p.numel() for p in model.parameters())     # (2 + 1) 4 + 4 + 1 = 17
    x = torch.rand(4_000_000, 2)
    jac = 4_000_000 * 1 * n_params * 8                          # 0.5 GiB: it alone would fit
    need = jac + 4_000_000 ** 2 * 8                             # the 4e6 x 4e6 kernel does not
    with pytest.raises(NTKMemoryError, match=rf"and the 4000000 x 4000000 kernel need {need / 2**30:.1f} GiB, over "
                                             r"the budget of 1\.0 GiB; "):
        empirical_ntk(model, x, method="jacobian", memory_budget=2 ** 30)
    with pytest.raises(NTKMemoryError, match=rf"need {(jac + 10 * 4_000_000 * 8) / 2**30:.1f} GiB, over the budget "
                                             r"of 0\.1 GiB; "):
        empirical_ntk(model, x, torch.rand(10, 2), method="jacobian", memory_budget=2 ** 30 // 10)
    vp_need = (4_000_000 ** 2 + 2 * 64 * (2 * 4_000_000)) * 8   # the kernel and two 64-column blocks
    with pytest.raises(NTKMemoryError, match=r"^the 4000000 x 4000000 kernel \(1 outputs, trace\) and its column blocks "
                                             rf"need {vp_need / 2**30:.1f} GiB, over the budget of 1\.0 GiB; "):
        empirical_ntk(model, x, method="ntk_vp", memory_budget=2 ** 30)


def _asymmetric(d: torch.Tensor, ratio: float) -> torch.Tensor:
    """``diag(d) + a S`` with ``S`` antisymmetric, ``||S||_F = 1`` and ``||K - K^T|| / ||K|| = ratio``."""
    n = d.numel()
    S = torch.zeros(n, n, dtype=torch.float64)
    S[0, 1], S[1, 0] = 0.5 ** 0.5, -(0.5 ** 0.5)
    # ||diag(d) + a S||^2 = ||d||^2 + a^2 (a symmetric and an antisymmetric matrix are orthogonal); ||K - K^T|| = 2a
    a = ratio * float(d.norm()) / (4 - ratio ** 2) ** 0.5
    return torch.diag(d.to(torch.float64)) + a * S


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_spectrum_symmetry_check_is_at_its_documented_tolerance(dtype):
    n = 9
    d = torch.linspace(1.0, 2.0, n, dtype=torch.float64)
    eps = torch.finfo(dtype).eps
    tol = 100 * eps * n ** 0.5                           # documented default, in the input's precision
    for factor in (0.9, 0.999):                          # just inside: accepted, symmetrized before solving
        K = _asymmetric(d, factor * tol).to(dtype)
        ev = spectrum(K)
        Ks = 0.5 * (K.double() + K.double().T)
        np.testing.assert_allclose(ev, np.sort(np.linalg.eigvalsh(Ks.numpy()))[::-1], rtol=0, atol=1e-12)
    for factor in (1.01, 10.0):                          # just outside: refused, with the measured ratio
        K = _asymmetric(d, factor * tol).to(dtype)
        ratio = float(torch.linalg.matrix_norm(K.double() - K.double().T) / torch.linalg.matrix_norm(K.double()))
        with pytest.raises(ValueError, match=re.escape(f"= {ratio:.3g} > {tol:.3g}")):
            spectrum(K)
        assert spectrum(K, check=False).shape == (n,)
        assert spectrum(K, symmetry_tol=2 * factor * tol).shape == (n,)
    with pytest.raises(ValueError, match="not symmetric"):
        spectrum(_asymmetric(d, 0.5 * tol).to(dtype), symmetry_tol=0.25 * tol)
    # a zero matrix has no relative asymmetry; an empty one has no spectrum
    assert np.array_equal(spectrum(torch.zeros(3, 3, dtype=dtype)), np.zeros(3))
    assert spectrum(torch.zeros(0, 0, dtype=dtype)).shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_spectrum_sign_check_is_at_its_documented_tolerance(dtype):
    n = 6
    eps = torch.finfo(dtype).eps
    tol = 10 * n * eps                                   # documented default: N eps(K.dtype) 10, relative to |lambda|max
    for lam_max in (1.0, 3.0):
        for factor, ok in ((0.5, True), (0.99, True), (1.02, False), (100.0, False)):
            lam_min = -factor * tol * lam_max
            K = torch.diag(torch.tensor([lam_max, 0.5, 0.25, 0.1, 0.0, lam_min], dtype=torch.float64)).to(dtype)
            lam_min = float(K[-1, -1])                   # what the dtype holds
            if ok:
                ev = spectrum(K)
                assert ev[0] == pytest.approx(lam_max) and ev[-1] == lam_min
            else:
                with pytest.raises(ValueError, match=re.escape(f"= {lam_min / lam_max:.3g} < -{tol:.3g}")):
                    spectrum(K)
                assert spectrum(K, check=False)[-1] == lam_min
                assert spectrum(K, negative_tol=2 * factor * tol)[-1] == lam_min
    # the scale is the largest |eigenvalue| even when that one is negative
    K = torch.diag(torch.tensor([1e-3, 0.0, -1.0], dtype=torch.float64)).to(dtype)
    with pytest.raises(ValueError, match=re.escape(f"= {-1.0:.3g} <")):
        spectrum(K)
    assert spectrum(K, negative_tol=1.0)[-1] == -1.0
    with pytest.raises(ValueError, match="indefinite"):
        spectrum(-torch.eye(2, dtype=dtype), negative_tol=0.999)
    assert np.array_equal(spectrum(-torch.eye(2, dtype=dtype), negative_tol=1.0), [-1.0, -1.0])


def test_spectrum_refuses_non_matrices_with_named_types():
    with pytest.raises(TypeError, match="square tensor or array, got list"):
        spectrum([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(TypeError, match="floating-point matrix, got torch.int64"):
        spectrum(torch.eye(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=re.escape("got shape (2, 3)")):
        spectrum(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=re.escape("got shape (4,)")):
        spectrum(np.zeros(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        spectrum(torch.tensor([[1.0, float("inf")], [float("inf"), 1.0]]))
    ev = spectrum(np.diag([2.0, 3.0, 1.0]).astype(np.float32))
    assert ev.dtype == np.float64 and ev.tolist() == [3.0, 2.0, 1.0]


def test_host_budget_is_memavailable_or_eight_gib_without_it(monkeypatch):
    from inrlib import ntk as N
    with open("/proc/meminfo") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
    got = N.available_memory(torch.device("cpu"))
    assert abs(got - kib * 1024) < 512 * 2 ** 20 and got % 1024 == 0      # read again a moment later

    def no_file(*a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr("builtins.open", no_file)
    assert N.available_memory(torch.device("cpu")) == 8 * 2 ** 30


def test_a_module_owning_a_parameter_list_is_one_site_with_all_its_parameters():
    """A layer with its own weight and a ParameterList of biases: one per-sample site that owns them
    all (the container is not a site of its own), its kernel equal to the Jacobian reference."""
    from inrlib.ntk import _sites

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(2, 5))
            self.extra = nn.ParameterList([nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(5))])

        def forward(self, x):
            return torch.tanh(x @ self.w + self.extra[0]) * self.extra[1]

    torch.manual_seed(1)
    model = nn.Sequential(Odd(), nn.Linear(5, 1))
    sites = {s.name: (s.kind, s.params) for s in _sites(model)}
    assert sites == {"0": ("per_sample", ["w", "extra.0", "extra.1"]), "1": ("rule", ["weight", "bias"])}
    x = torch.rand(9, 2)
    assert rel(empirical_ntk(model, x, method="structured", chunk_size=4), empirical_ntk(model, x, method="jacobian")) < TOL


def test_weyl_check_sums_in_float64_and_a_zero_matrix_has_zero_relative_slack():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((12, 12))
    B = rng.standard_normal((12, 12))
    A32, B32 = torch.tensor(A @ A.T, dtype=torch.float32), torch.tensor(B @ B.T / 7, dtype=torch.float32)
    got, want = weyl_check(A32, B32), weyl_check(A32.double(), B32.double())
    for key in ("lambda_sum", "slack", "bound"):
        np.testing.assert_array_equal(got[key], want[key])        # the sum is formed in float64, not float32
    assert got["floor"] == want["floor"]
    zero = weyl_check(np.zeros((5, 5)), np.zeros((5, 5)))
    assert zero["min_relative_slack"] == 0.0 and zero["holds"] and zero["floor"] == 0.0


def test_rounding_floor_computes_the_spectrum_itself_and_reads_numpy_dtypes():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((9, 9))
    K = A @ A.T
    ev = np.linalg.eigvalsh(K)
    for dtype, eps in ((torch.float64, 2.0 ** -52), (torch.float32, 2.0 ** -23)):
        Kt = torch.tensor(K, dtype=dtype)
        lam = np.linalg.eigvalsh(Kt.double().numpy())
        assert rounding_floor(Kt) == pytest.approx(9 * eps * max(abs(lam[0]), abs(lam[-1])), rel=1e-12)
    assert rounding_floor(K.astype(np.float32)) == pytest.approx(9 * 2.0 ** -23 * abs(ev[-1]), rel=1e-6)
    assert rounding_floor(K) == pytest.approx(9 * 2.0 ** -52 * abs(ev[-1]), rel=1e-12)
    assert rounding_floor(K, np.array([5.0, -7.0])) == 9 * 2.0 ** -52 * 7.0            # given eigenvalues: used


def test_spectrum_refusals_word_for_word():
    K = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="^" + re.escape(
            "the kernel has NaN or infinite entries; check the model's outputs and parameters") + "$"):
        spectrum(K * float("nan"))
    asym = K.clone()
    asym[0, 1] = 0.5
    with pytest.raises(ValueError, match=re.escape(
            "; pass a kernel K(x, x) (not a cross-kernel), or symmetrize it with (K + K.T) / 2") + "$"):
        spectrum(asym)
    with pytest.raises(ValueError, match=re.escape(
            "; an NTK is positive semi-definite, so the matrix is not one (or was computed in too low a "
            "precision: use float64)") + "$"):
        spectrum(torch.diag(torch.tensor([1.0, -0.5], dtype=torch.float64)))
    # a 1 x 1 negative "kernel" is refused too, and a tolerance exactly at the asymmetry passes
    with pytest.raises(ValueError, match="indefinite"):
        spectrum(torch.tensor([[-1.0]], dtype=torch.float64))
    np.testing.assert_array_equal(spectrum(torch.tensor([[2.0]], dtype=torch.float64)), [2.0])


@pytest.mark.parametrize("outputs", ["trace", "full"])
def test_ntk_vp_refuses_exactly_above_its_stated_need(outputs):
    """The kernel plus two column blocks of cotangents, (n1 n2 [c^2] + 2 chunk (n1 + n2) c) x 8 bytes."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [6], 3, "relu").double()
    x1, x2 = torch.rand(5, 2, dtype=torch.float64), torch.rand(4, 2, dtype=torch.float64)
    need = (5 * 4 * (1 if outputs == "trace" else 9) + 2 * 2 * (5 + 4) * 3) * 8
    K = empirical_ntk(model, x1, x2, outputs=outputs, method="ntk_vp", chunk_size=2, memory_budget=need)
    assert rel(K, empirical_ntk(model, x1, x2, outputs=outputs, method="jacobian")) < TOL
    with pytest.raises(NTKMemoryError) as err:
        empirical_ntk(model, x1, x2, outputs=outputs, method="ntk_vp", chunk_size=2, memory_budget=need - 1)
    assert str(err.value).startswith(f"the 5 x 4 kernel (3 outputs, {outputs}) and its column blocks need ")
    assert str(err.value).endswith("GiB; use fewer points or a smaller chunk_size")


def test_operator_default_chunks_and_its_scipy_view_takes_blocks_of_vectors():
    torch.manual_seed(2)
    model = CoordinateMLP(FourierEncoding(2, 2), [8], 1, "relu")
    x = torch.rand(11, 2)
    assert NTKOperator(model, x, method="structured").chunk == NTKOperator.STRUCTURED_CHUNK == 4096   # on the CPU
    assert NTKOperator(model, x, method="autodiff").chunk == 16384
    op = NTKOperator(model, x)
    K = empirical_ntk(model, x).numpy()
    V = np.random.default_rng(0).standard_normal((11, 3)).astype(np.float32)
    lin = op.as_scipy()
    got = lin.matmat(V)
    assert got.dtype == np.float64 and got.shape == (11, 3)
    np.testing.assert_allclose(got, K @ V.astype(np.float64), rtol=1e-9, atol=1e-9 * np.abs(K).max())
    np.testing.assert_allclose(lin.matvec(V[:, 0]), K @ V[:, 0].astype(np.float64), rtol=1e-9,
                               atol=1e-9 * np.abs(K).max())


def test_a_model_without_mlp_parameters_has_a_zero_mlp_kernel_of_the_kernels_dtype():
    torch.manual_seed(3)
    enc = MultigridEncoding(2, [4, 7], 1)
    x = torch.rand(6, 2)
    head = nn.Linear(enc(x).shape[1], 1, bias=False).requires_grad_(False)     # frozen: the grid is all there is
    K = empirical_ntk(nn.Sequential(enc, head), x, groups=True)
    assert K["mlp"].dtype == torch.float64 and float(K["mlp"].abs().max()) == 0.0
    assert rel(K["grid"], K["total"]) < TOL and float(K["total"].norm()) > 0


def test_structured_memory_refusal_states_its_need():
    """The structured path's need: the kernel (N x N float64 entries) and the few (rows x N) temporaries of
    one panel, rows = min(N, 256, budget / 8 / (4 N 8 bytes)); here 100,000 points and a 1 GiB budget:
    41 rows, 80e9 + 4 x 41 x 1e5 x 8 bytes = 74.6 GiB (74.5 for the kernel alone)."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [4], 1, "tanh").double()
    n = 100_000
    x = torch.rand(n, 2, dtype=torch.float64)
    rows = min(n, 256, (2 ** 30 // 8) // (4 * n * 8))
    need = n * n * 8 + 4 * rows * n * 8
    assert rows == 41 and f"{need / 2**30:.1f}" == "74.6"
    with pytest.raises(NTKMemoryError, match=rf"^the kernel at N={n}x{n} needs about 74\.6 GiB, over the memory "
                                             r"budget of 1\.0 GiB; use fewer points"):
        empirical_ntk(model, x, memory_budget=2 ** 30)
    # in the model's float32 (dtype=None): 4-byte entries, 2 x 41 rows
    rows32 = min(n, 256, (2 ** 30 // 8) // (4 * n * 4))
    need32 = n * n * 4 + 4 * rows32 * n * 4
    assert rows32 == 83 and f"{need32 / 2**30:.1f}" == "37.4"
    with pytest.raises(NTKMemoryError, match=r"needs about 37\.4 GiB"):
        empirical_ntk(model.float(), x.float(), memory_budget=2 ** 30, dtype=None)


def test_input_refusals_word_for_word_name_the_argument():
    model = CoordinateMLP(IdentityEncoding(2), [8], 1)
    x = torch.rand(4, 2)
    cases = [
        (lambda: empirical_ntk(model, torch.rand(0, 2)), ValueError, "x has no points (shape (0, 2))"),
        (lambda: empirical_ntk(model, x, torch.rand(0, 2)), ValueError, "x2 has no points (shape (0, 2))"),
        (lambda: empirical_ntk(model, x, torch.rand(3, 2, 1)), ValueError,
         "x2 must have shape (N, d) (one row per point), got shape (3, 2, 1)"),
        (lambda: empirical_ntk(model, x, [[0.0, 1.0]]), TypeError, "x2 must be a torch.Tensor of shape (N, d), got list"),
        (lambda: empirical_ntk(model, x, torch.ones(3, 2, dtype=torch.int64)), TypeError,
         "x2 must be floating point, got torch.int64; use x2.double()"),
        (lambda: empirical_ntk(model, x, torch.rand(3, 5)), ValueError,
         "the model takes 2-D coordinates but x2 has 5 columns"),
        (lambda: NTKOperator(model, torch.rand(0, 2)), ValueError, "x has no points (shape (0, 2))"),
        (lambda: interlacing_bounds(model, torch.rand(4, 3), size=2), ValueError,
         "the model takes 2-D coordinates but x has 3 columns"),
        (lambda: empirical_ntk(CoordinateMLP(IdentityEncoding(2), [8], 1).requires_grad_(False), x), ValueError,
         "the model has no trainable parameters (all have requires_grad=False), so its NTK is zero; unfreeze some "
         "parameters with p.requires_grad_(True)"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as info:
            call()
        assert str(info.value) == message


@pytest.mark.parametrize("outputs, budget, rows", [("trace", 60 * 2 ** 10, 8), ("full", 180 * 2 ** 10, 6)])
def test_a_small_budget_splits_the_kernel_into_row_panels_and_mirrors_them(outputs, budget, rows):
    """A budget of a few KiB leaves room for few rows per panel (the panel's temporaries, 4 x rows x N x
    outputs^2 x 8 bytes, within budget / 8: 8 rows of 30 for the trace, 6 with 2 outputs in full): the
    symmetric kernel is built panel by panel above the diagonal and mirrored, the cross kernel panel by
    panel in full; both equal the Jacobian reference."""
    torch.manual_seed(2)
    model = CoordinateMLP(ENCODINGS["multigrid"](2), [12], 2, "staf", tau=2)
    x, x2 = torch.rand(30, 2), torch.rand(11, 2)
    c2 = 4 if outputs == "full" else 1
    assert (budget // 8) // (4 * 30 * c2 * 8) == rows                    # several panels of 30 rows
    K = empirical_ntk(model, x, outputs=outputs, method="structured", memory_budget=budget)
    assert rel(K, empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL
    assert torch.equal(K, K.T)                                           # mirrored: exactly symmetric
    G = empirical_ntk(model, x, outputs=outputs, method="structured", groups=True, memory_budget=4 * budget)
    assert all(torch.equal(t, t.T) for t in G.values())
    C = empirical_ntk(model, x, x2, outputs=outputs, method="structured", memory_budget=budget)
    assert rel(C, empirical_ntk(model, x, x2, outputs=outputs, method="jacobian")) < TOL


class DataBranch(nn.Module):
    """A model with its own parameters and Python control flow on the data: torch.func cannot vmap it, so
    the whole model (the site named "model") is taken by its Jacobian."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 6))
        self.v = nn.Parameter(torch.randn(6, 2))

    def forward(self, x):
        h = torch.tanh(x @ self.w)
        if bool((h.sum(dim=1) > 0).any()):       # data-dependent: vmap refuses
            h = h * 1.5
        return h @ self.v


class Unused(nn.Module):
    """A layer whose output the model computes and then discards: its sensitivity is zero."""

    def __init__(self):
        super().__init__()
        self.first, self.aside, self.out = nn.Linear(2, 8), nn.Linear(8, 3), nn.Linear(8, 1)

    def forward(self, x):
        h = torch.tanh(self.first(x))
        self.aside(h)
        return self.out(h)


class GatedByData(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.branchy, self.out = nn.Linear(2, 2), DataBranch(), nn.Linear(2, 1)

    def forward(self, x):
        return self.out(self.branchy(torch.tanh(self.first(x))))


@pytest.mark.parametrize("make", [DataBranch, Unused, GatedByData])
def test_sites_vmap_cannot_take_and_unused_sites_are_exact_in_every_form(make, monkeypatch):
    """The Jacobian fallback for a whole model and for a site inside one (groups too: a site's Jacobian
    kernel joins its group's sum), and a site whose output is discarded (zero sensitivity)."""
    import inrlib.ntk as ntk_module
    taken, jacobian = [], ntk_module._jacobian_ntk
    monkeypatch.setattr(ntk_module, "_jacobian_ntk", lambda *a, **k: taken.append(sorted(a[3])) or jacobian(*a, **k))
    torch.manual_seed(4)
    model = make()
    empirical_ntk(model, torch.rand(3, 2), method="structured")
    assert taken == {DataBranch: [["v", "w"]], GatedByData: [["branchy.v", "branchy.w"]], Unused: []}[make]
    x, x2 = torch.rand(14, 2), torch.rand(9, 2)
    for outputs in ("trace", "full"):
        K = empirical_ntk(model, x, outputs=outputs, method="structured", groups=True)
        R = empirical_ntk(model, x, outputs=outputs, method="jacobian", groups=True)
        for g in ("total", "mlp"):
            assert rel(K[g], R[g]) < TOL, (outputs, g)
        assert rel(empirical_ntk(model, x, x2, outputs=outputs, method="structured"),
                   empirical_ntk(model, x, x2, outputs=outputs, method="jacobian")) < TOL


def test_two_chunks_join_their_captures():
    torch.manual_seed(6)
    model = CoordinateMLP(ENCODINGS["multigrid"](2), [10], 2, "staf", tau=2)
    x = torch.rand(14, 2)
    for outputs in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=outputs, method="structured", chunk_size=7),
                   empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL


def test_more_refusals_word_for_word():
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))     # no .dim to check against
    x = torch.rand(5, 2)
    cases = [
        (lambda: empirical_ntk(model, x, torch.rand(3, 3)), ValueError, "x has 2 columns but x2 has 3"),
        (lambda: empirical_ntk(model, x, memory_budget=0), ValueError,
         "memory_budget is in bytes and must be positive, got 0"),
        (lambda: empirical_ntk(model, x, method="ntk_vp", groups=True), ValueError,
         "groups=True is available with method='structured' or 'jacobian', not 'ntk_vp'"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as info:
            call()
        assert str(info.value) == message


def test_structured_memory_refusal_per_group_and_full():
    """The need with groups (one matrix per key: 3 sums + one per site + up to 8 named terms) and with full
    outputs (outputs^2 entries per pair): the message names the per-group kernel and the size."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [4], 2, "tanh").double()
    n = 50_000
    x = torch.rand(n, 2, dtype=torch.float64)
    budget = 2 ** 30
    c2 = 4                                                     # 2 outputs, full
    rows = min(n, 256, (budget // 8) // (4 * n * c2 * 8))
    need = n * n * c2 * 8 + 4 * rows * n * c2 * 8
    with pytest.raises(NTKMemoryError, match=rf"^the kernel at N={n}x{n} needs about {need / 2**30:.1f} GiB, "):
        empirical_ntk(model, x, outputs="full", memory_budget=budget)
    assert f"{need / 2**30:.1f}" == "74.6"       # 74.5 for the kernel alone
    with pytest.raises(NTKMemoryError, match=rf"^the per-group kernel at N={n}x{n} needs about "):
        empirical_ntk(model, x, groups=True, memory_budget=budget)


class TwoGates(nn.Module):
    """Two sites vmap cannot take, one after the other: each is taken by its own Jacobian and both count."""

    def __init__(self):
        super().__init__()
        self.first, self.gate_a, self.gate_b, self.out = nn.Linear(2, 2), DataBranch(), DataBranch(), nn.Linear(2, 1)

    def forward(self, x):
        return self.out(self.gate_b(torch.tanh(self.gate_a(torch.tanh(self.first(x))))))


def test_every_jacobian_site_counts_in_the_total():
    torch.manual_seed(8)
    model, x = TwoGates(), torch.rand(10, 2)
    for groups in (False, True):
        K = empirical_ntk(model, x, method="structured", groups=groups)
        R = empirical_ntk(model, x, method="jacobian", groups=groups)
        assert rel(K["total"] if groups else K, R["total"] if groups else R) < TOL


def test_the_per_group_need_counts_one_matrix_per_key():
    """2,000 points fit a 100 MiB budget as one kernel (32 MB and its panels) but not as groups: 3 sums,
    2 sites and up to 8 named terms of 32 MB each."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [4], 2, "tanh").double()
    n, budget = 2000, 100 * 2 ** 20
    x = torch.rand(n, 2, dtype=torch.float64)
    rows = min(n, 256, (budget // 8) // (4 * n * 8))
    need = n * n * 8 * (3 + 2 + 8) + 4 * rows * n * 8
    with pytest.raises(NTKMemoryError) as info:
        empirical_ntk(model, x, groups=True, memory_budget=budget)
    assert str(info.value) == (
        f"the per-group kernel at N={n}x{n} needs about {need / 2**30:.1f} GiB, over the memory budget of 0.1 GiB; "
        "use fewer points, groups=False, a larger memory_budget, or the matrix-free path "
        "(inrlib.ntk.NTKOperator / extreme_eigenvalues)")
    assert empirical_ntk(model, x[:300], groups=True, memory_budget=budget)["total"].shape == (300, 300)
