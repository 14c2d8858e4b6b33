"""Device hygiene: the public entry points keep their work on the device of their inputs.

Three layers, so that a CPU-only machine checks what it can and a GPU checks the rest:

1. **Another device.** ``INRLIB_TEST_DEVICE`` names it; the default ``meta`` stands in for a GPU on
   any machine. Meta tensors carry shapes and no values, so a CPU tensor made without ``device=``
   and mixed into the computation raises there, and so does any read of a value (``.item()``,
   ``float(t)``, ``np.asarray``). The entry points that are pure tensor work (every encoding and
   activation, the NTK engine and its references, operator products, kernel regression, the kernel
   terms) run there end to end. On a real device (``INRLIB_TEST_DEVICE=cuda``) every entry point
   runs for real, its results must equal the CPU's in float64, and the hot paths run under
   ``torch.cuda.set_sync_debug_mode("error")``. Without a real device the tests that read values
   (spectra, training, metrics, loaders, deterministic mode) run on the CPU, so that they keep working.
2. **Host reads, counted on the CPU.** :class:`HostReads` counts the operations that make a GPU
   wait for its results: ``aten._local_scalar_dense`` (behind every ``.item()``, ``float(t)``,
   ``bool(t)``, ``int(t)``) and the operations whose output size depends on the data (``nonzero``,
   ``unique``, ``bincount``, ``repeat_interleave`` without ``output_size``, ...). The hot paths are
   held to budgets that do not grow with the number of points or of optimization steps. (Whole
   copies to the host, ``.cpu()``, ``.tolist()``, ``.numpy()``, are no operations on a CPU tensor:
   only the real-device run sees those.)
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from inrlib import metrics, ntk
from inrlib.encodings import check_coords, coords_validated
from inrlib.models import CoordinateMLP
from inrlib.train import fit, fit_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICE = torch.device(os.environ.get("INRLIB_TEST_DEVICE", "meta"))
REAL = DEVICE.type != "meta"
if DEVICE.type == "cuda":                                    # pragma: no cover - a GPU run
    if not torch.cuda.is_available():
        raise RuntimeError("INRLIB_TEST_DEVICE=cuda but torch sees no CUDA device")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # cuBLAS's condition for repeatable GEMMs
#: Where the tests that read values run: the real device, else the CPU (they run, and stay working, everywhere).
VALUES = DEVICE if REAL else torch.device("cpu")

ENCODINGS = {
    "identity": {"type": "identity", "dim": 2},
    "fourier": {"type": "fourier", "dim": 2, "levels": 4},
    "multigrid": {"type": "multigrid", "dim": 2, "min_resolution": 4, "max_resolution": 16, "levels": 2,
                  "features": 2},
    "hashgrid": {"type": "hashgrid", "dim": 3, "levels": 2, "log2_table_size": 8},
}
ACTIVATIONS = ["relu", "tanh", "sine", "simple_sine", "staf"]


def make(encoding: str = "multigrid", activation: str = "relu", seed: int = 0) -> CoordinateMLP:
    torch.manual_seed(seed)
    return CoordinateMLP(ENCODINGS[encoding], [16, 16], activation=activation, trainable_w=True).double()


def points(n: int, dim: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def on_device(t: torch.Tensor, ref: torch.Tensor | None = None, tol: float = 1e-10, device=DEVICE) -> None:
    """``t`` lives on ``device`` and, on a real device, equals the CPU result ``ref``."""
    assert t.device.type == device.type, f"result on {t.device}, expected {device}"
    if device.type != "meta" and ref is not None:
        torch.testing.assert_close(t.cpu(), ref, rtol=tol, atol=tol * max(1.0, float(ref.abs().max())))


class HostReads(TorchDispatchMode):
    """Counts the operations that make a GPU wait (see the module docstring); ``ops`` lists them."""

    _aten = torch.ops.aten
    SIZED_BY_DATA = {_aten._local_scalar_dense.default, _aten.nonzero.default, _aten._unique2.default,
                     _aten.unique_dim.default, _aten.unique_consecutive.default, _aten.bincount.default,
                     _aten.masked_select.default}

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    MASKABLE = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SIZED_BY_DATA or (func is self._aten.repeat_interleave.Tensor
                                          and kwargs.get("output_size") is None):
            self.ops.append(func.__name__)
        elif func in self.MASKABLE and any(i is not None and i.dtype == torch.bool for i in args[1]):
            self.ops.append(func.__name__ + " (boolean mask)")
        return func(*args, **kwargs)


def reads(fn, *args, **kwargs) -> list[str]:
    with HostReads() as h:
        fn(*args, **kwargs)
    return h.ops


# ------------------------------------------------------------------------------------------------
# 1. another device
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_models_compute_on_the_device_of_their_inputs(encoding, activation):
    model = make(encoding, activation)
    x = points(32, model.encoding.dim)
    ref = model(x).detach()
    y = model.to(DEVICE)(x.to(DEVICE))
    assert y.shape == (32, 1)
    on_device(y.detach(), ref)


@pytest.mark.parametrize("method", ["structured", "jacobian", "ntk_vp"])
@pytest.mark.parametrize("encoding", ["fourier", "multigrid", "hashgrid"])
def test_every_ntk_method_stays_on_the_device(encoding, method):
    model = make(encoding)
    x, x2 = points(24, model.encoding.dim), points(10, model.encoding.dim, seed=2)
    ref, ref_cross = ntk.empirical_ntk(model, x, method=method), ntk.empirical_ntk(model, x, x2, method=method)
    dev_model, xd = model.to(DEVICE), x.to(DEVICE)
    on_device(ntk.empirical_ntk(dev_model, xd, method=method), ref)
    on_device(ntk.empirical_ntk(dev_model, xd, x2.to(DEVICE), method=method), ref_cross)


@pytest.mark.parametrize("activation", ["sine", "staf"])
def test_per_sample_sites_and_block_kernels_stay_on_the_device(activation):
    """Per-neuron parameters (STAF, a trainable w) take the per-sample path; ``outputs="full"`` the block kernel."""
    torch.manual_seed(0)
    model = CoordinateMLP(ENCODINGS["multigrid"], [8, 8], out_features=2, activation=activation).double()
    x = points(12, 2)
    ref = ntk.empirical_ntk(model, x, groups=True, outputs="full")
    got = ntk.empirical_ntk(model.to(DEVICE), x.to(DEVICE), groups=True, outputs="full")
    assert set(got) == set(ref)
    for key in ref:
        on_device(got[key], ref[key])


@pytest.mark.parametrize("method", ["structured", "autodiff"])
def test_operator_products_stay_on_the_device(method):
    model = make("multigrid")
    x, v = points(40, 2), points(40, 2, seed=3)
    ref = ntk.NTKOperator(model, x, method=method).matvec(v)
    op = ntk.NTKOperator(model.to(DEVICE), x.to(DEVICE), method=method)
    assert op.device.type == DEVICE.type
    on_device(op.matvec(v.to(DEVICE)), ref)
    if REAL:                                     # NumPy in, NumPy out: the one copy back to the host
        np.testing.assert_allclose(op.matvec(v.numpy()), ref.numpy(), rtol=1e-10, atol=1e-10)


def test_kernel_regression_moves_host_inputs_to_the_kernel():
    model = make("multigrid")
    x, y = points(30, 2), points(30, 1, seed=4)
    K = ntk.empirical_ntk(model, x)
    f0 = model(x).detach()
    ref = ntk.kernel_regression(K, y, [0.5, 2.0], f0_train=f0)
    # f0 comes from the host as NumPy: it must be moved, not mixed in
    got = ntk.kernel_regression(K.to(DEVICE), y.to(DEVICE), [0.5, 2.0], f0_train=f0.numpy())
    on_device(got, ref, tol=1e-8)


def test_kernel_terms_stay_on_the_device():
    g = torch.Generator().manual_seed(5)
    a, d = torch.randn(20, 6, generator=g, dtype=torch.float64), torch.randn(20, 1, 4, generator=g, dtype=torch.float64)
    ref = ntk.dense_gram(a, d, a, d, 0.5, 0.1)
    on_device(ntk.dense_gram(a.to(DEVICE), d.to(DEVICE), a.to(DEVICE), d.to(DEVICE), 0.5, 0.1), ref)
    rows = torch.randint(0, 50, (20, 4), generator=g)
    w, e = torch.rand(20, 4, generator=g, dtype=torch.float64), torch.randn(20, 3, generator=g, dtype=torch.float64)
    ref = ntk.interpolation_gram(rows, w, e, rows, w, e, 50)          # a small table: the dense path
    moved = [t.to(DEVICE) for t in (rows, w, e)]
    on_device(ntk.interpolation_gram(*moved, *moved, 50), ref)
    if REAL:                                     # a big table: the sparse path sizes its work from the data
        big = 100 * ntk.DENSE_INTERPOLATION_ROWS
        rows = torch.randint(0, big, (20, 4), generator=g)
        ref = ntk.interpolation_gram(rows, w, e, rows, w, e, big)
        on_device(ntk.interpolation_gram(rows.to(DEVICE), *moved[1:], rows.to(DEVICE), *moved[1:], big), ref)


def test_coordinate_checks_keep_their_shape_rules_without_values():
    x = torch.empty(5, 2, device="meta")
    assert check_coords(x, 2) is x                     # no value to read: the value checks are skipped
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        check_coords(x, 3)
    with pytest.raises(TypeError, match="floating-point"):
        check_coords(torch.empty(5, 2, device="meta", dtype=torch.int64), 2)


def test_value_reading_entry_points_match_the_cpu_on_a_real_device():
    """Spectra, Lanczos, interlacing bounds, Weyl, training, the metrics and the data loaders (on the CPU
    when no real device is named: there they check that these tests themselves work)."""
    import trimesh

    from inrlib.data import load_image, occupancy_samples
    from inrlib.data.meshes import winding_number

    model = make("multigrid")
    x = points(64, 2)
    K = ntk.empirical_ntk(model, x)
    Kd = K.to(VALUES)
    np.testing.assert_allclose(ntk.spectrum(Kd), ntk.spectrum(K), rtol=1e-9, atol=1e-12 * float(K.norm()))
    K_grid = ntk.empirical_ntk(model, x, groups=True)["grid"]
    w_cpu = ntk.weyl_check(K, K_grid)
    w = ntk.weyl_check(Kd, ntk.empirical_ntk(model.to(VALUES), x.to(VALUES), groups=True)["grid"])
    np.testing.assert_allclose(w["lambda_sum"], w_cpu["lambda_sum"], rtol=1e-9, atol=1e-12 * float(K.norm()))
    assert w["holds"] == w_cpu["holds"]
    op = ntk.NTKOperator(model.to(VALUES), x.to(VALUES))
    top = ntk.extreme_eigenvalues(op, k=2, which="largest")["largest"]
    np.testing.assert_allclose(top, ntk.spectrum(K)[:2], rtol=1e-6)
    b = ntk.interlacing_bounds(model.to(VALUES), x.to(VALUES), k=2, size=32)
    b_cpu = ntk.interlacing_bounds(model.cpu(), x, k=2, size=32)
    assert np.array_equal(b["indices"], b_cpu["indices"])
    np.testing.assert_allclose(b["largest_lower"], b_cpu["largest_lower"], rtol=1e-9)

    y = points(64, 3, seed=6)
    cpu_model, dev_model = make("multigrid", seed=7), make("multigrid", seed=7).to(VALUES)
    h_cpu = fit(cpu_model, x, y[:, :1], epochs=3, lr=0.5, batch_size=16, progress=False)
    h_dev = fit(dev_model, x.to(VALUES), y[:, :1].to(VALUES), epochs=3, lr=0.5, batch_size=16, progress=False)
    np.testing.assert_allclose(h_dev.loss, h_cpu.loss, rtol=1e-9)
    hs = fit_ensemble([make("multigrid", seed=s).to(VALUES) for s in (1, 2)], [x.to(VALUES)] * 2,
                      [y[:, :1].to(VALUES)] * 2, epochs=2, lr=0.5, progress=False)
    assert len(hs) == 2

    img = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    ref = img.clamp(0, 1) * 0.9
    for fn in (metrics.psnr, metrics.ms_ssim):
        on_device(fn(img.to(VALUES), ref.to(VALUES)), fn(img, ref), tol=1e-9, device=VALUES)
    labels = (ref > 0.45).double()
    on_device(metrics.iou(img.to(VALUES), labels.to(VALUES)), metrics.iou(img, labels), device=VALUES)
    coords, values, _ = load_image("astronaut", 16, device=VALUES)
    assert coords.device.type == values.device.type == VALUES.type
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.3)
    sphere.apply_translation([0.5, 0.5, 0.5])
    pts, labels = occupancy_samples(sphere, 200, cache=False)
    wn = winding_number(sphere, pts.to(VALUES))
    np.testing.assert_array_equal(wn > 0.5, labels.numpy().reshape(-1) > 0.5)


def test_deterministic_mode_repeats_kernels_and_training_bit_for_bit():
    """Under ``torch.use_deterministic_algorithms(True)`` every operation the engine and the training
    loop use has a deterministic implementation (torch 2.13's list: ``scatter_add_``, ``index_put_``
    with accumulation, ``gather``'s backward); without it the grid's backward and Gram accumulate with
    atomics and the last bits can change from run to run."""
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            model = make("multigrid").to(VALUES)
            x, y = points(200, 2).to(VALUES), points(200, 1, seed=12).to(VALUES)
            K = ntk.empirical_ntk(model, x, groups=True)["total"]
            fit(model, x, y, epochs=2, lr=0.5, batch_size=32, progress=False)
            runs.append((K.cpu(), torch.cat([p.detach().reshape(-1) for p in model.parameters()]).cpu()))
        assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    finally:
        torch.use_deterministic_algorithms(False)


def test_hot_paths_do_not_synchronize_on_a_real_device():
    if VALUES.type != "cuda":
        pytest.skip("torch's sync debug mode is CUDA's")
    model = make("multigrid").to(VALUES)
    x = points(256, 2).to(VALUES)
    op = ntk.NTKOperator(model, x)
    v = torch.rand(256, dtype=torch.float64, device=VALUES)
    torch.cuda.set_sync_debug_mode("error")
    try:
        op.matvec(v)
        with coords_validated():
            model(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ------------------------------------------------------------------------------------------------
# 2. host reads, counted on the CPU
# ------------------------------------------------------------------------------------------------

def test_the_counter_sees_the_reads_it_is_meant_to_see():
    t = torch.arange(10.0)
    assert reads(lambda: float(t.sum())) == ["_local_scalar_dense.default"]
    assert reads(lambda: t[t > 3]) == ["index.Tensor (boolean mask)"]
    assert reads(lambda: torch.nonzero(t)) == ["nonzero.default"]
    assert reads(lambda: torch.repeat_interleave(t, torch.full((10,), 2))) == ["repeat_interleave.Tensor"]
    assert reads(lambda: torch.repeat_interleave(t, torch.full((10,), 2), output_size=20)) == []
    assert reads(lambda: t * 2 + t.exp()) == []


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_a_forward_reads_the_coordinates_once_and_not_at_all_once_validated(encoding):
    model = make(encoding)
    x = points(50, model.encoding.dim)
    assert reads(model, x) == ["_local_scalar_dense.default"]
    with coords_validated():
        assert reads(model, x) == []
    assert reads(model, x) == ["_local_scalar_dense.default"]      # the flag ends with its block


def test_validated_coordinates_still_clamp_and_fit_checks_resampled_data():
    from inrlib.encodings import MultigridEncoding
    enc = MultigridEncoding(2, [4], clamp=True)
    with coords_validated():
        assert float(check_coords(torch.tensor([[1.5, -0.5]]), 2, clamp=True).abs().max()) == 1.0
        torch.testing.assert_close(enc(torch.tensor([[1.5, -0.5]])), enc(torch.tensor([[1.0, 0.0]])))
    model = make("multigrid")
    x, y = points(32, 2), points(32, 1, seed=9)
    bad = (x * 3.0, y)                           # outside [0, 1]^2: only a per-step check can see it
    with pytest.raises(ValueError, match=r"expects coordinates in \[0, 1\]\^2"):
        fit(model, x, y, epochs=2, lr=0.1, batch_size=8, progress=False, resample=lambda epoch, g: bad)


@pytest.mark.parametrize("method", ["structured", "autodiff"])
def test_the_operator_checks_the_coordinates_once_before_its_silent_products(method):
    x = points(40, 2)
    x[35] = 1.5
    with pytest.raises(ValueError, match=r"expects coordinates in \[0, 1\]\^2"):
        ntk.NTKOperator(make("multigrid"), x, method=method)


@pytest.mark.parametrize("method", ["structured", "autodiff"])
def test_operator_products_read_nothing(method):
    model = make("multigrid")
    x = points(300, 2)
    op = ntk.NTKOperator(model, x, method=method)
    assert reads(op.matvec, torch.rand(300, dtype=torch.float64)) == []
    assert reads(op.matvec, torch.rand(300, 3, dtype=torch.float64)) == []


def test_the_kernel_reads_a_fixed_number_of_values_whatever_n():
    """One panel per accelerator call: nothing is read per row, per panel or per point (small tables)."""
    model = make("multigrid")
    counts = {n: reads(ntk.empirical_ntk, model, points(n, 2), groups=True) for n in (40, 700)}
    assert counts[40] == counts[700]
    assert len(counts[700]) <= 3          # incl. the one read of the finite-parameter check at entry
    assert reads(ntk.spectrum, ntk.empirical_ntk(model, points(40, 2))) == \
        reads(ntk.spectrum, ntk.empirical_ntk(model, points(300, 2)))


def test_the_grid_gram_reads_once_on_its_sparse_path_and_never_on_its_dense_path():
    g = torch.Generator().manual_seed(10)
    n, corners = 200, 4
    w, e = torch.rand(n, corners, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64)
    small = torch.randint(0, ntk.DENSE_INTERPOLATION_ROWS, (n, corners), generator=g)
    assert reads(ntk.interpolation_gram, small, w, e, small, w, e, ntk.DENSE_INTERPOLATION_ROWS) == []
    big_rows = 50 * ntk.DENSE_INTERPOLATION_ROWS
    big = torch.randint(0, big_rows, (n, corners), generator=g)
    ops = reads(ntk.interpolation_gram, big, w, e, big, w, e, big_rows)
    assert sorted(ops) == ["_local_scalar_dense.default", "_unique2.default", "bincount.default"]


def test_training_reads_per_epoch_not_per_step():
    x, y = points(240, 2), points(240, 1, seed=11)
    per_epochs = {}
    for batch in (120, 12):                      # 2 and 20 steps per epoch
        for epochs in (1, 3):
            per_epochs[batch, epochs] = len(reads(fit, make("multigrid"), x, y, epochs=epochs, lr=0.1,
                                                  batch_size=batch, progress=False))
    assert per_epochs[120, 1] == per_epochs[12, 1]
    assert per_epochs[120, 3] == per_epochs[12, 3]
    # per epoch, the first included: the PSNR of the epoch's loss, a host float (three reads of CPU scalars,
    # no device wait); the coordinates were checked by the evaluation before training and are not read again
    with HostReads() as h:
        hist = fit(make("multigrid"), x, y, epochs=3, lr=0.1, batch_size=12, progress=False, snapshot_epochs="all",
                   callbacks=lambda model, epoch, history: len(h.ops))
    marks = [hist.snapshots["callback"][e] for e in range(4)]
    assert [b - a for a, b in zip(marks, marks[1:])] == [3, 3, 3]
