"""Spectra (inrlib.ntk.spectra): eigenvalues and their checks, the rounding floor, resampling, Weyl's bound, and
reading spectra against the floor."""
import math
import re

import numpy as np
import pytest
import torch

from inrlib.ntk import (
    compare_at,
    log10_ratio,
    mean_log_spectrum,
    percentile_eigenvalue,
    resample_spectrum,
    resolved_fraction,
    rounding_floor,
    spectrum,
    weyl_check,
)


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


def test_weyl_check_against_diagonal_closed_form():
    a = np.array([5.0, 3.0, 1.0, 0.5])
    b = np.array([2.0, 0.0, 0.25, 1.0])
    res = weyl_check(torch.diag(torch.tensor(a)), torch.diag(torch.tensor(b)))
    total = np.sort(a + b)[::-1]                       # [7, 3, 1.5, 1.25]
    np.testing.assert_allclose(res["lambda_sum"], total)
    np.testing.assert_allclose(res["bound"], np.sort(a)[::-1] + 0.0)   # lambda_min(B) = 0
    np.testing.assert_allclose(res["slack"], total - np.sort(a)[::-1])
    assert res["min_slack"] == pytest.approx(0.0) and res["argmin_slack"] == 1 and res["holds"]


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


def test_spectrum_comparisons_against_the_floor():
    a = np.array([10.0, 1.0, 1e-3])
    b = np.array([10.0, 1e-2, 1e-9])
    assert percentile_eigenvalue(a, 0) == 1e-3 and percentile_eigenvalue(a, 50) == 1.0
    with pytest.raises(ValueError, match="percentile"):
        percentile_eigenvalue(a, 120)
    exact = compare_at(a, 1e-12, b, 1e-12, 0)
    assert exact["kind"] == "exact" and exact["value"] == pytest.approx(6.0)
    low = compare_at(a, 1e-12, b, 1e-6, 0)                      # b's minimum is noise: at least 3 orders
    assert low["kind"] == "lower bound" and low["value"] == pytest.approx(3.0)
    up = compare_at(b, 1e-6, a, 1e-12, 0)
    assert up["kind"] == "upper bound" and up["value"] == pytest.approx(-3.0)
    assert compare_at(b, 1e-6, b, 1e-6, 0)["kind"] == "noise" and math.isnan(compare_at(b, 1e-6, b, 1e-6, 0)["value"])
    assert compare_at(a, 0, b, 0, 50)["value"] == pytest.approx(2.0)
    assert log10_ratio(1, 0) != log10_ratio(1, 0) and log10_ratio(100, 1) == pytest.approx(2)
    assert mean_log_spectrum(a, 1e-12) == pytest.approx(np.mean([1, 0, -3]))
    assert mean_log_spectrum(a, 1e-12, mask=np.array([True, True, False])) == pytest.approx(0.5)
    assert resolved_fraction(b, 1e-6) == pytest.approx(2 / 3)


def test_spectrum_helpers_at_their_boundaries():
    """Edges the comparisons must get right: an eigenvalue exactly at its floor is noise, q = 100 is a
    percentile, an empty selection is NaN, and a mask narrows the floor's selection, never widens it."""
    ev = np.array([4.0, 2.0, 1.0])
    assert percentile_eigenvalue(ev, 100) == 4.0 and percentile_eigenvalue(ev, 0) == 1.0
    with pytest.raises(ValueError):
        percentile_eigenvalue(ev, 100.5)
    with pytest.raises(ValueError):
        percentile_eigenvalue(ev, -0.5)
    assert math.isnan(log10_ratio(0.0, 1.0)) and math.isnan(log10_ratio(1.0, 0.0))
    at_floor = compare_at(np.array([1.0]), 1.0, np.array([10.0]), 1e-9, 0)      # A exactly at its floor
    assert at_floor == {"value": pytest.approx(-1.0), "kind": "upper bound", "a": 1.0, "b": 10.0,
                        "a_below_floor": True, "b_below_floor": False}
    b_floor = compare_at(np.array([10.0]), 1e-9, np.array([1.0]), 1.0, 0)
    assert b_floor["kind"] == "lower bound" and b_floor["b_below_floor"] and not b_floor["a_below_floor"]
    assert mean_log_spectrum(np.array([100.0, 1.0]), 1.0) == pytest.approx(2.0)          # 1.0 is at the floor
    assert mean_log_spectrum(np.array([100.0, 10.0, 0.1]), 1.0, mask=np.array([False, True, True])) == pytest.approx(1.0)
    assert math.isnan(mean_log_spectrum(np.array([0.5, 0.1]), 1.0))
    assert math.isnan(mean_log_spectrum(np.array([100.0]), 1.0, mask=np.array([False])))
    assert resolved_fraction(np.array([2.0, 1.0]), 1.0) == 0.5
    assert math.isnan(resolved_fraction(np.array([]), 1.0))


def test_mean_resampled_is_the_log_mean_of_clipped_resampled_spectra():
    """Two spectra of 3 values resampled to 5 (log10-linear): by hand, then the mean, percentiles and floor."""
    from inrlib.ntk import mean_resampled
    a = ([100.0, 10.0, 1.0], 0.0)                 # log10: 2, 1, 0 -> 2, 1.5, 1, 0.5, 0
    b = ([1000.0, 1.0, 0.0], 0.1)                 # the 0 is clipped to the smallest positive, 1: 3, 0, 0
    r = mean_resampled([a, b], length=5)
    la = np.array([2, 1.5, 1, 0.5, 0])
    lb = np.array([3, 1.5, 0, 0, 0])
    np.testing.assert_allclose(np.log10(r["mean"]), (la + lb) / 2, atol=1e-12)
    mn, mx = np.minimum(la, lb), np.maximum(la, lb)             # percentiles of two values interpolate
    np.testing.assert_allclose(np.log10(r["lo"]), mn + 0.1 * (mx - mn), atol=1e-12)
    np.testing.assert_allclose(np.log10(r["hi"]), mn + 0.9 * (mx - mn), atol=1e-12)
    assert r["n"] == 2 and r["floor"] == pytest.approx(10 ** ((math.log10(1.0) + math.log10(1.0)) / 2))
    r2 = mean_resampled([([100.0, 10.0, 1e-3], 0.5)], length=3)   # a floor above the smallest value clips to it
    np.testing.assert_allclose(np.log10(r2["mean"]), [2, 1, math.log10(0.5)], atol=1e-12)
    assert r2["floor"] == pytest.approx(0.5) and mean_resampled([]) is None
    assert mean_resampled([([3.0, 1.0], 0.0)])["mean"].shape == (8000,)


def test_ordered_fraction_counts_resolved_and_strictly_ordered_indices():
    from inrlib.ntk import ordered_fraction
    curves = {"mpe": {"mean": np.array([9.0, 8, 7, 6]), "floor": 1.0},
              "ffe": {"mean": np.array([5.0, 8, 2, 0.5]), "floor": 1.0},
              "base": {"mean": np.array([4.0, 3, 2, 0.1]), "floor": 1.0}}
    r = ordered_fraction(curves, ["mpe", "ffe", "base"])
    # resolved: index 0, 1, 2 (index 3 below the floor); ordered: 0 and 3 (8 = 8 and 2 = 2 are ties)
    assert r == {"resolved": 0.75, "ordered_resolved": pytest.approx(1 / 3), "ordered_all": 0.5}
    low = ordered_fraction({k: {**v, "floor": 100.0} for k, v in curves.items()}, ["mpe", "ffe", "base"])
    assert low["resolved"] == 0.0 and math.isnan(low["ordered_resolved"]) and low["ordered_all"] == 0.5

