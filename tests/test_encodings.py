"""Encodings against naive implementations (explicit loops over grid corners), gradchecks, errors."""
import itertools
import math

import numpy as np
import pytest
import torch

from inrlib.encodings import (FourierEncoding, GaussianFourierEncoding, HashGridEncoding, IdentityEncoding,
                              MultigridEncoding, grid_resolutions)


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
