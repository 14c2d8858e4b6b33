"""The matrix-free NTK (inrlib.ntk.operator): products against the dense kernel, Lanczos and ARPACK extremes,
interlacing bounds."""

import numpy as np
import pytest
import torch
from torch import nn

from inrlib.encodings import FourierEncoding, HashGridEncoding, IdentityEncoding, MultigridEncoding
from inrlib.models import CoordinateMLP
from inrlib.ntk import NTKOperator, empirical_ntk, extreme_eigenvalues, interlacing_bounds, spectrum

from .helpers import Shared, Unknown, rel


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
    import inrlib.ntk.operator as operator
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [16, 16], 2, "staf", tau=2)
    x = torch.rand(50, 2)
    op = NTKOperator(model, x, method="structured", chunk_size=20)
    assert op.method == "structured"
    K = empirical_ntk(model, x)

    def no_jvp(*args, **kwargs):
        raise AssertionError("a structured product recomputed a forward with jvp")
    monkeypatch.setattr(operator, "jvp", no_jvp)
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
    with pytest.raises(ValueError, match=r"^chunk_size must be a positive integer, got 0$"):
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

