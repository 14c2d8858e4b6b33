"""Encodings against naive implementations (explicit loops over grid corners), gradchecks, errors."""
import itertools
import math

import numpy as np
import pytest
import torch

from inrlib.encodings import (
    FourierEncoding,
    GaussianFourierEncoding,
    HashGridEncoding,
    IdentityEncoding,
    MultigridEncoding,
    grid_resolutions,
)


def naive_grid_features(x, resolution, table, slot):
    """Interpolate one level with explicit loops: for each point, each of the 2^d corners."""
    n, d = x.shape
    out = np.zeros((n, table.shape[1]))
    for p in range(n):
        t = [x[p, a] * (resolution - 1) for a in range(d)]
        cell = [min(max(int(math.floor(v)), 0), resolution - 2) for v in t]
        frac = [t[a] - cell[a] for a in range(d)]
        for corner in itertools.product((0, 1), repeat=d):
            w = 1.0
            for a in range(d):
                w *= frac[a] if corner[a] else 1 - frac[a]
            node = [cell[a] + corner[a] for a in range(d)]
            out[p] += w * table[slot(node)]
    return out


@pytest.mark.parametrize("dim,resolutions,k", [(1, [3, 17], 2), (2, [4, 9, 31], 3), (3, [3, 6], 2)])
def test_multigrid_matches_naive_corner_loops(dim, resolutions, k):
    torch.manual_seed(0)
    enc = MultigridEncoding(dim, resolutions, k, init_std=1.0).double()
    x = torch.rand(40, dim, dtype=torch.float64)
    x[0] = 0.0
    x[1] = 1.0                                       # domain corners are inside
    out = enc(x).detach().numpy()
    assert out.shape == (40, len(resolutions) * k + dim)
    for level, r in enumerate(resolutions):
        table = enc.tables[level].detach().numpy()
        ref = naive_grid_features(x.numpy(), r, table, lambda node: sum(node[a] * r ** a for a in range(dim)))
        np.testing.assert_allclose(out[:, level * k:(level + 1) * k], ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out[:, -dim:], x.numpy())


def test_multigrid_interpolates_node_values_exactly():
    enc = MultigridEncoding(2, [5], 1, include_input=False, init_std=1.0).double()
    grid = enc.grid(0)[..., 0]                       # (R_y, R_x)
    nodes = torch.tensor([[i / 4, j / 4] for j in range(5) for i in range(5)], dtype=torch.float64)
    vals = enc(nodes)[:, 0].reshape(5, 5)
    torch.testing.assert_close(vals, grid.detach(), rtol=0, atol=1e-14)


def assert_levels_match_naive(enc, x, hashed_slot, dense_slot):
    """Each level of a hash grid against the naive corner loop with the given node -> row maps."""
    out = enc(x).detach().numpy()
    k = enc.features
    for level, r in enumerate(enc.resolutions):
        table = enc.tables[level].detach().numpy()
        slot = hashed_slot if enc.hashed[level] else (lambda node, r=r: dense_slot(node, r))
        ref = naive_grid_features(x.numpy(), r, table, slot)
        np.testing.assert_allclose(out[:, k * level:k * (level + 1)], ref, rtol=1e-12, atol=1e-12)
    return out


def test_hashgrid_matches_naive_hash_and_dense_levels():
    torch.manual_seed(1)
    enc = HashGridEncoding(2, levels=3, features=2, log2_table_size=6, min_resolution=4, max_resolution=40,
                           init_scale=1.0).double()
    assert enc.hashed == [False, True, True]          # 4^2 = 16 <= 64 rows; finer levels collide
    T = enc.table_size
    assert_levels_match_naive(enc, torch.rand(30, 2, dtype=torch.float64),
                              lambda node: ((node[0] * 1) ^ (node[1] * 2654435761)) % T,
                              lambda node, r: node[0] + node[1] * r)


def test_fourier_matches_formula():
    enc = FourierEncoding(2, 3).double()
    x = torch.rand(7, 2, dtype=torch.float64)
    out = enc(x)
    assert out.shape == (7, 2 * 2 * 3 + 2)
    cols = []
    for k in range(3):
        cols += [torch.sin(2 ** k * math.pi * x[:, a]) for a in range(2)]
        cols += [torch.cos(2 ** k * math.pi * x[:, a]) for a in range(2)]
    ref = torch.stack(cols + [x[:, 0], x[:, 1]], dim=1)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    assert FourierEncoding(2, 3, include_input=False).out_features == 12


def test_gaussian_fourier_matches_formula_and_is_seeded():
    enc = GaussianFourierEncoding(2, 16, sigma=4.0, seed=3).double()
    x = torch.rand(5, 2, dtype=torch.float64)
    ang = 2 * math.pi * x @ enc.B.T
    torch.testing.assert_close(enc(x), torch.cat([ang.cos(), ang.sin()], 1))
    assert torch.equal(enc.B, GaussianFourierEncoding(2, 16, 4.0, seed=3).B.double())
    assert not torch.equal(enc.B, GaussianFourierEncoding(2, 16, 4.0, seed=4).B.double())
    assert abs(float(GaussianFourierEncoding(2, 4000, 4.0).B.std()) - 4.0) < 0.2
    assert len(list(enc.parameters())) == 0


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_grid_interpolation_gradcheck(dim):
    torch.manual_seed(0)
    enc = MultigridEncoding(dim, [4, 7], 2, init_std=1.0).double()
    x = (torch.rand(6, dim, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    # with respect to the coordinates (away from cell borders the map is smooth)
    assert torch.autograd.gradcheck(lambda x: enc(x), (x,), eps=1e-7, atol=1e-6)
    # with respect to the grid values
    tables = [t for t in enc.tables]
    assert torch.autograd.gradcheck(lambda *ts: torch.cat([enc.interpolate(x.detach(), l) for l in range(2)], 1),
                                    tuple(tables), eps=1e-6, atol=1e-7)


def test_eq11_bilinear_cell_gradient_is_outer_product_of_weights():
    """Paper 000, Eq. 11: d g(x, y) / d (corner values) = [dx2, dx1]^T [dy2, dy1] / (Dx Dy)."""
    R = 6
    enc = MultigridEncoding(2, [R], 1, include_input=False).double()
    x, y = 0.437, 0.712
    enc.zero_grad()
    enc(torch.tensor([[x, y]], dtype=torch.float64)).sum().backward()
    grad = enc.tables[0].grad.view(R, R)
    h = 1 / (R - 1)
    i, j = int(x / h), int(y / h)
    x1, x2, y1, y2 = i * h, (i + 1) * h, j * h, (j + 1) * h
    outer = np.outer([x2 - x, x - x1], [y2 - y, y - y1]) / (h * h)     # rows: x corner, cols: y corner
    g = grad.view(R, R).numpy()                                         # [row = y index, col = x index]
    got = np.array([[g[j, i], g[j + 1, i]], [g[j, i + 1], g[j + 1, i + 1]]])
    np.testing.assert_allclose(got, outer, rtol=1e-12)
    assert abs(g.sum() - 1) < 1e-12 and np.count_nonzero(g) == 4


def test_grid_init_scale():
    enc = MultigridEncoding(2, [200], 2)
    assert abs(float(enc.tables[0].detach().std()) - 0.01) < 0.0005
    enc = MultigridEncoding(2, [200], 2, init_std=0.1)
    assert abs(float(enc.tables[0].detach().std()) - 0.1) < 0.005


def test_resolution_spacing():
    assert grid_resolutions(16, 128, 4, "log") == [16, 32, 64, 128]
    assert grid_resolutions(10, 40, 4, "linear") == [10, 20, 30, 40]
    enc = MultigridEncoding(2, None, 2, min_resolution=8, max_resolution=64, levels=4)
    assert enc.resolutions == [8, 16, 32, 64]
    with pytest.raises(ValueError, match="spacing"):
        grid_resolutions(8, 64, 3, "cubic")


@pytest.mark.parametrize("make", [lambda: IdentityEncoding(2), lambda: FourierEncoding(2, 4),
                                  lambda: GaussianFourierEncoding(2, 8, 1.0), lambda: MultigridEncoding(2, [8], 2),
                                  lambda: HashGridEncoding(2, levels=2)])
def test_bad_coordinates_raise_clear_errors(make):
    enc = make()
    with pytest.raises(ValueError, match=r"in \[0, 1\].*clamp=True"):
        enc(torch.tensor([[0.5, 1.2]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        enc(torch.tensor([[0.5, float("nan")]]))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        enc(torch.rand(4, 3))
    with pytest.raises(TypeError, match="floating-point"):
        enc(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        enc([[0.1, 0.2]])


def test_clamp_option_allows_out_of_domain():
    enc = MultigridEncoding(2, [8], 2, clamp=True)
    out = enc(torch.tensor([[-0.5, 1.5]]))
    ref = MultigridEncoding(2, [8], 2)
    ref.load_state_dict(enc.state_dict())
    torch.testing.assert_close(out, ref(torch.tensor([[0.0, 1.0]])))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="1, 2 or 3"):
        MultigridEncoding(4, [8], 2)
    with pytest.raises(ValueError, match=">= 2"):
        MultigridEncoding(2, [1], 2)
    with pytest.raises(ValueError, match="features"):
        MultigridEncoding(2, [8], 0)
    with pytest.raises(ValueError, match="levels"):
        FourierEncoding(2, 0)
    with pytest.raises(ValueError, match="resolutions"):
        MultigridEncoding(2)


def test_hashgrid_3d_uses_all_three_primes():
    """instant-ngp's spatial hash in 3D, (i0 * 1) ^ (i1 * 2654435761) ^ (i2 * 805459861) mod T, by hand."""
    torch.manual_seed(2)
    enc = HashGridEncoding(3, levels=2, features=2, log2_table_size=7, min_resolution=3, max_resolution=12,
                           init_scale=1.0).double()
    assert enc.hashed == [False, True]                # 3^3 = 27 <= 128 rows; 12^3 collides
    T = enc.table_size
    x = torch.rand(25, 3, dtype=torch.float64)
    out = assert_levels_match_naive(enc, x, lambda node: ((node[0] * 1) ^ (node[1] * 2654435761) ^ (node[2] * 805459861)) % T,
                                    lambda node, r: node[0] + node[1] * r + node[2] * r * r)
    # a wrong third prime would give other rows: the check is not vacuous
    wrong = naive_grid_features(x.numpy(), enc.resolutions[1], enc.tables[1].detach().numpy(),
                                lambda node: ((node[0]) ^ (node[1] * 2654435761) ^ (node[2] * 805459862)) % T)
    assert not np.allclose(out[:, 2:4], wrong)


def test_encoding_reprs_state_their_settings():
    assert IdentityEncoding(3).extra_repr() == "dim=3"
    assert FourierEncoding(2, 4, include_input=False).extra_repr() == "dim=2, levels=4, include_input=False"
    assert GaussianFourierEncoding(2, 8, 2.5).extra_repr() == "dim=2, features=8, sigma=2.5"
    assert MultigridEncoding(2, [4, 8], 3, init_std=0.1).extra_repr() == \
        "dim=2, resolutions=[4, 8], features=3, include_input=True, init_std=0.1"
    assert HashGridEncoding(2, resolutions=[4, 200], log2_table_size=10).extra_repr() == \
        "dim=2, resolutions=[4, 200], features=2, table_size=1024, hashed=[False, True]"


ALL_ENCODINGS = {
    "IdentityEncoding": lambda **kw: IdentityEncoding(2, **kw),
    "FourierEncoding": lambda **kw: FourierEncoding(2, 3, **kw),
    "GaussianFourierEncoding": lambda **kw: GaussianFourierEncoding(2, 4, 1.5, **kw),
    "MultigridEncoding": lambda **kw: MultigridEncoding(2, [5, 9], 2, **kw),
    "HashGridEncoding": lambda **kw: HashGridEncoding(2, levels=2, min_resolution=4, max_resolution=8, **kw),
}


@pytest.mark.parametrize("name", list(ALL_ENCODINGS))
def test_every_encoding_names_itself_and_honours_clamp(name):
    """Each class passes its own name and its clamp flag to the coordinate check (and to the NTK capture)."""
    torch.manual_seed(0)
    strict, clamped = ALL_ENCODINGS[name](), ALL_ENCODINGS[name](clamp=True)
    clamped.load_state_dict(strict.state_dict())
    with pytest.raises(ValueError, match=rf"^{name} expects coordinates in \[0, 1\]\^2, got values in \[-0\.5, 1\.5\]; "):
        strict(torch.tensor([[-0.5, 1.5]]))
    with pytest.raises(ValueError, match=rf"^{name} expects coordinates of shape \(N, 2\), got \(4, 3\)"):
        strict(torch.rand(4, 3))
    inside = torch.tensor([[0.0, 1.0], [0.25, 0.75]])
    torch.testing.assert_close(clamped(torch.tensor([[-0.5, 1.5], [0.25, 0.75]])), strict(inside))
    if hasattr(strict, "ntk_capture"):
        with pytest.raises(ValueError, match=rf"^{name} expects coordinates in"):
            strict.ntk_capture((torch.tensor([[0.2, 1.5]]),), None)
        got = clamped.ntk_capture((torch.tensor([[-0.5, 1.5]]),), None)
        want = strict.ntk_capture((torch.tensor([[0.0, 1.0]]),), None)
        for (rows_g, w_g), (rows_w, w_w) in zip(got, want):
            assert torch.equal(rows_g, rows_w) and torch.equal(w_g, w_w)


def test_non_grid_encodings_take_any_dimension_and_check_their_arguments():
    x = torch.rand(3, 5, dtype=torch.float64)
    assert IdentityEncoding(5)(x).shape == (3, 5)
    assert GaussianFourierEncoding(5, 2, 1.0)(x.float()).shape == (3, 4)
    assert GaussianFourierEncoding(2, 1, 1.0).out_features == 2                 # one feature is allowed
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match=rf"^dim must be a positive integer, got {bad}$"):
            IdentityEncoding(bad)
    with pytest.raises(ValueError, match=r"^dim must be 1, 2 or 3 for grid encodings, got 4$"):
        HashGridEncoding(4)
    with pytest.raises(ValueError, match=r"^GaussianFourierEncoding needs features >= 1, got 0$"):
        GaussianFourierEncoding(2, 0, 1.0)
    for sigma in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"^GaussianFourierEncoding needs sigma > 0 \(the frequency scale\), got "):
            GaussianFourierEncoding(2, 3, sigma)
    with pytest.raises(ValueError, match=r"^FourierEncoding needs levels >= 1 \(frequencies 2\^0\.\.2\^\(L-1\)\), got 1\.5$"):
        FourierEncoding(2, 1.5)


def test_gaussian_fourier_default_seed_input_and_float64():
    """float64 inputs use the float32-drawn B in float64 (no silent float32 matmul); x is appended on request."""
    enc = GaussianFourierEncoding(3, 6, 2.0, include_input=True)
    assert torch.equal(enc.B, GaussianFourierEncoding(3, 6, 2.0, seed=0).B)        # seed 0 by default
    assert enc.out_features == 2 * 6 + 3
    x = torch.rand(8, 3, dtype=torch.float64)
    out = enc(x)
    assert out.dtype == torch.float64 and out.shape == (8, enc.out_features)
    ang = 2 * math.pi * x @ enc.B.double().T
    torch.testing.assert_close(out, torch.cat([ang.cos(), ang.sin(), x], 1), rtol=1e-14, atol=1e-14)


def test_grid_resolutions_defaults_and_argument_checks():
    assert grid_resolutions(16, 128, 4) == [16, 32, 64, 128]            # log spacing by default
    assert grid_resolutions(16, 128, 1) == [128] and grid_resolutions(5, 5, 3) == [5, 5, 5]
    assert grid_resolutions(2, 3, 2, "linear") == [2, 3]
    with pytest.raises(ValueError, match=r"^levels must be >= 1, got 0$"):
        grid_resolutions(4, 8, 0)
    with pytest.raises(ValueError, match=r"^need 2 <= min_resolution <= max_resolution, got 1, 8$"):
        grid_resolutions(1, 8, 2)
    with pytest.raises(ValueError, match=r"^need 2 <= min_resolution <= max_resolution, got 9, 8$"):
        grid_resolutions(9, 8, 2)
    with pytest.raises(ValueError, match=r"^spacing must be 'linear' or 'log', got 'cubic'$"):
        grid_resolutions(4, 8, 2, "cubic")


@pytest.mark.parametrize("make", [lambda: MultigridEncoding(2, [3, 6], 2, include_input=False, init_std=0.5),
                                  lambda: HashGridEncoding(3, levels=2, features=3, log2_table_size=5,
                                                           min_resolution=3, max_resolution=6, init_scale=0.5)])
def test_grid_ntk_terms_equal_the_jacobian_kernel(make):
    """The grids' gradient structure (ntk_capture / ntk_gram, per level) against torch.func, two channels."""
    from inrlib.models import CoordinateMLP
    from inrlib.ntk import empirical_ntk
    torch.manual_seed(0)
    enc = make()
    model = CoordinateMLP(enc, [12], 2, "tanh")
    x = torch.rand(17, enc.dim)
    for outputs in ("trace", "full"):
        K = empirical_ntk(model, x, outputs=outputs)
        R = empirical_ntk(model, x, outputs=outputs, method="jacobian")
        assert float((K - R).norm() / R.norm()) < 1e-10
    parts = empirical_ntk(model, x, groups=True)
    assert float(parts["grid"].norm()) > 1e-3 * float(parts["mlp"].norm())     # the grid term is not vacuous


def test_check_coords_defaults_messages_and_tolerance():
    from inrlib.coords import DOMAIN_TOLERANCE, check_coords
    with pytest.raises(ValueError, match=r"^encoding expects coordinates in \[0, 1\]\^2, got values in \[0\.2, 1\.5\]; "
                                         r"rescale the inputs, or pass clamp=True to clamp them to the domain$"):
        check_coords(torch.tensor([[0.2, 1.5]]), 2)                     # not clamped by default
    with pytest.raises(TypeError, match=r"^encoding expects a torch\.Tensor of shape \(N, 2\), got list; "
                                        r"convert with torch\.as_tensor\(x, dtype=torch\.float32\)$"):
        check_coords([[0.1, 0.2]], 2)
    with pytest.raises(TypeError, match=r"^encoding expects floating-point coordinates, got torch\.int64; "
                                        r"convert with x\.float\(\) \(or x\.double\(\)\)$"):
        check_coords(torch.zeros(3, 2, dtype=torch.long), 2)
    bad = torch.tensor([[float("nan"), float("nan")], [0.5, float("inf")], [0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    with pytest.raises(ValueError, match=r"^encoding got 2 coordinate rows with NaN or infinite values; "
                                         r"remove or fix them before encoding$"):
        check_coords(bad, 2)
    # the tolerance band is inside the domain, both ends included, and is passed through unclamped
    edge = torch.tensor([[-DOMAIN_TOLERANCE, 1.0 + DOMAIN_TOLERANCE]], dtype=torch.float64)
    assert torch.equal(check_coords(edge, 2), edge)
    assert torch.equal(check_coords(edge, 2, clamp=True), torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="expects coordinates in"):
        check_coords(torch.tensor([[-2 * DOMAIN_TOLERANCE, 0.5]], dtype=torch.float64), 2)


def test_check_coords_inside_vmap_skips_values_and_still_clamps():
    """Under torch.func.vmap values cannot be read: no check, but clamp=True still clamps (the NTK reference path)."""
    from inrlib.coords import _is_batched, check_coords
    x = torch.tensor([[-0.5, 1.5], [0.25, 0.5]])
    torch.testing.assert_close(torch.func.vmap(lambda r: check_coords(r[None], 2, clamp=True))(x)[:, 0],
                               torch.tensor([[0.0, 1.0], [0.25, 0.5]]))
    torch.testing.assert_close(torch.func.vmap(lambda r: check_coords(r[None], 2))(x)[:, 0], x)   # unchecked
    seen = []

    def probe(r):
        seen.append(_is_batched(r))
        return (r ** 2).sum()
    torch.func.vmap(probe)(x)
    torch.func.grad(probe)(x[0])
    torch.func.vmap(torch.func.grad(probe))(x)         # a batched tensor under a grad wrapper
    assert seen == [True, False, True] and not _is_batched(x)


def test_grid_defaults_buffers_and_table_bounds():
    torch.manual_seed(0)
    h = HashGridEncoding(2)
    assert h.resolutions == [16, 24, 35, 53, 78, 116, 172, 256]        # 16 .. 256 over 8 levels, log spaced
    assert (h.table_size, h.features, h.include_input, h.out_features) == (2 ** 14, 2, True, 8 * 2 + 2)
    values = torch.cat([t.detach().ravel() for t in h.tables])
    assert float(values.abs().max()) <= 1e-4 and float(values.max()) > 0.99e-4 and float(values.min()) < -0.99e-4
    assert abs(float(values.mean())) < 2e-6                              # U(-1e-4, 1e-4)
    assert set(h.state_dict()) == {f"tables.{i}" for i in range(8)}    # index buffers are not saved
    m = MultigridEncoding(2, 5)
    assert (m.resolutions, m.features) == ([5], 2) and set(m.state_dict()) == {"tables.0"}
    assert MultigridEncoding(2, None, min_resolution=4, max_resolution=10, levels=3, spacing="linear").resolutions == [4, 7, 10]
    assert float(MultigridEncoding(2, [3], init_std=0.0).tables[0].detach().abs().max()) == 0.0
    assert MultigridEncoding(1, [2]).resolutions == [2]                   # two nodes: one cell
    exact = HashGridEncoding(2, resolutions=[32, 33], log2_table_size=10)  # 32^2 = 1024 rows fit exactly
    assert exact.hashed == [False, True] and exact.tables[0].shape == (1024, 2)
    for ok in (4, 26):
        assert HashGridEncoding(2, resolutions=[4], log2_table_size=ok).table_size == 2 ** ok
    for bad in (3, 27):
        with pytest.raises(ValueError, match=rf"^log2_table_size must be in \[4, 26\], got {bad}$"):
            HashGridEncoding(2, resolutions=[4], log2_table_size=bad)
    with pytest.raises(ValueError, match=r"^HashGridEncoding needs at least one resolution$"):
        HashGridEncoding(2, resolutions=[])
    with pytest.raises(ValueError, match=r"^HashGridEncoding resolutions count nodes per axis and must be >= 2, got \[4, 1\]$"):
        HashGridEncoding(2, resolutions=[4, 1])
    with pytest.raises(ValueError, match=r"^HashGridEncoding needs features >= 1 \(scalars per node\), got 0$"):
        HashGridEncoding(2, resolutions=[4], features=0)
    with pytest.raises(ValueError, match=r"^MultigridEncoding needs either resolutions=\[\.\.\.\] or all of "
                                         r"min_resolution, max_resolution and levels$"):
        MultigridEncoding(2, None, min_resolution=4, levels=2)
    with pytest.raises(ValueError, match=r"^init_std must be >= 0, got -0\.1$"):
        MultigridEncoding(2, [4], init_std=-0.1)


def test_grid_points_in_the_tolerance_band_use_the_boundary_cell():
    """x = -5e-7 is accepted as inside; it must interpolate in the first cell (not wrap to the last row)."""
    torch.manual_seed(0)
    enc = MultigridEncoding(2, [5], 1, include_input=False, init_std=1.0).double()
    near = enc(torch.tensor([[-5e-7, 0.3]], dtype=torch.float64))
    at = enc(torch.tensor([[0.0, 0.3]], dtype=torch.float64))
    torch.testing.assert_close(near, at, rtol=0, atol=1e-5)
    rows_near, _ = enc.corners(torch.tensor([[-5e-7, 0.3]], dtype=torch.float64), 0)
    rows_at, _ = enc.corners(torch.tensor([[0.0, 0.3]], dtype=torch.float64), 0)
    assert torch.equal(rows_near, rows_at)


def test_fourier_widths_and_dimensions():
    x = torch.rand(6, 2)
    for include, width in ((True, 2 * 2 * 3 + 2), (False, 2 * 2 * 3)):
        enc = FourierEncoding(2, 3, include_input=include)
        assert enc.out_features == width and enc(x).shape == (6, width)
    assert FourierEncoding(2, 1).out_features == 2 * 2 + 2                 # one frequency is allowed
    assert FourierEncoding(4, 2)(torch.rand(3, 4)).shape == (3, 2 * 4 * 2 + 4)   # any dimension
