"""inrlib.data.meshes: normalization, exact inside/outside labels against an independent rational
computation and analytic solids, the generalized winding number, occupancy samples and their cache.

The bunny and dragon test fetches the genesis-world wheel (about 84 MB once, then cached under the
inrlib cache); it is skipped when INRLIB_OFFLINE=1.
"""
import hashlib
import itertools
import json
import os
import re
from fractions import Fraction

import numpy as np
import pytest
import torch
import trimesh

import inrlib.data as data
from inrlib import render as render_mod
from inrlib.data import meshes as meshes_mod

needs_index = pytest.mark.skipif(os.environ.get("INRLIB_OFFLINE", "") not in ("", "0"),
                                 reason="INRLIB_OFFLINE is set: no package downloads")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private inrlib cache, so tests neither read nor damage the user's."""
    monkeypatch.setenv("INRLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------------------
# An independent statement of the labelling rule, in exact rational arithmetic
# ------------------------------------------------------------------------------------------------

_EPS = Fraction(1, 2 ** 512)     # far below any float64 feature: the lowest order in eps decides


def rational_winding(vertices, faces, points):
    """Winding numbers by the rule the module documents, computed another way.

    The point is moved to ``p + (eps, eps^2, eps^3)`` with a concrete tiny rational ``eps`` (no
    symbolic tie-breaking), and each triangle counts ``sign(projected area)`` when the moved point
    has positive barycentric coordinates in its ``xy`` projection and the triangle's plane is above
    it there: barycentric coordinates and a plane height instead of edge tests and orient3d. A float
    bounding-box test 1e-9 wide only skips pairs that cannot count.
    """
    V = np.asarray(vertices, dtype=np.float64)
    F = np.asarray(faces)
    lo, hi = V[F].min(axis=1), V[F].max(axis=1)
    R = [[Fraction(float(c)) for c in v] for v in V]
    out = []
    for p in np.asarray(points, dtype=np.float64):
        qx, qy, qz = (Fraction(float(c)) + _EPS ** (k + 1) for k, c in enumerate(p))
        near = np.flatnonzero((lo[:, 0] <= p[0] + 1e-9) & (p[0] - 1e-9 <= hi[:, 0]) & (lo[:, 1] <= p[1] + 1e-9)
                              & (p[1] - 1e-9 <= hi[:, 1]) & (hi[:, 2] >= p[2] - 1e-9))
        w = 0
        for f in F[near]:
            (ax, ay, az), (bx, by, bz), (cx, cy, cz) = (R[i] for i in f)
            area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
            if area == 0:
                continue
            la = ((bx - qx) * (cy - qy) - (by - qy) * (cx - qx)) / area
            lb = ((cx - qx) * (ay - qy) - (cy - qy) * (ax - qx)) / area
            lc = 1 - la - lb
            if la > 0 and lb > 0 and lc > 0 and la * az + lb * bz + lc * cz > qz:
                w += 1 if area > 0 else -1
        out.append(w)
    return np.array(out)


def _octahedron():
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
    f = [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    return trimesh.Trimesh(v, f, process=False)


def _test_meshes():
    """Closed meshes away from the origin, with ties (dyadic coordinates, tilted faces), a
    non-convex one (several crossings per ray), overlapping and inverted copies (winding 2 and -1),
    and one whose long thin triangles make the ray index coarsen its grid."""
    octa = _octahedron()
    octa.apply_scale([2.0, 1.5, 0.75])
    octa.apply_translation([-3.5, 7.25, 0.5])
    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=12, minor_sections=8)
    torus.apply_translation([2.0, -1.0, 3.0])
    a = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    b = trimesh.creation.box(extents=(1.0, 0.5, 2.0))
    b.apply_translation([0.5, 0.25, 0.25])
    c = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
    c.apply_translation([-2.0, 0.0, 0.0])
    c.invert()                                              # inward faces: winding -1 inside
    boxes = trimesh.util.concatenate([a, b, c])
    cone = trimesh.creation.cone(radius=1.0, height=1.0, sections=128)
    cone.apply_translation([0.25, 0.5, -4.0])
    # a prism along x with a pitched roof: faces whose normal has no x part (ties decided by its y part)
    roof = trimesh.Trimesh([[0, 0, 0], [0, 2, 0], [0, 1, 1], [2, 0, 0], [2, 2, 0], [2, 1, 1]],
                           [[0, 2, 1], [3, 4, 5], [0, 3, 5], [0, 5, 2], [1, 2, 5], [1, 5, 4], [0, 1, 4], [0, 4, 3]],
                           process=False)
    roof.apply_translation([1.5, -0.75, 0.25])
    assert roof.is_watertight and roof.is_winding_consistent and roof.volume > 0
    keel = trimesh.Trimesh(roof.vertices * [1.0, 1.0, -1.0], roof.faces[:, ::-1], process=False)   # tilted faces
    assert keel.is_winding_consistent and keel.volume > 0                  # that look down: projected area < 0
    return {"octahedron": octa, "torus": torus, "boxes": boxes, "cone": cone, "roof": roof, "keel": keel}


def _probe_points(mesh, n_random, seed):
    """Vertices, edge midpoints, points on faces and straight above/below vertices (ties of every
    kind), a dyadic grid, and random points in a box 20% larger than the mesh's."""
    rng = np.random.default_rng(seed)
    V, F = mesh.vertices, mesh.faces
    edges = mesh.edges_unique
    bary = np.array([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [0.125, 0.375, 0.5]])
    on_faces = np.einsum("kj,fjd->fkd", bary, V[F]).reshape(-1, 3)
    above = V + np.array([0.0, 0.0, 0.125]) * rng.choice([-1, 1], size=(len(V), 1))
    lo, hi = mesh.bounds
    pad = 0.1 * (hi - lo)
    grid = np.stack(np.meshgrid(*[np.linspace(l - p, h + p, 5) for l, h, p in zip(lo, hi, pad)], indexing="ij"), -1)
    pts = np.concatenate([V, V[edges].mean(axis=1), on_faces, above, grid.reshape(-1, 3),
                          lo - pad + (hi - lo + 2 * pad) * rng.random((n_random, 3))])
    keep = rng.permutation(len(pts))[:min(len(pts), 420)]
    return pts[keep]


@pytest.mark.parametrize("name", ["octahedron", "torus", "boxes", "cone", "roof", "keel"])
def test_winding_numbers_equal_the_rational_reference(name):
    mesh = _test_meshes()[name]
    pts = _probe_points(mesh, 150, seed=len(name))
    index = meshes_mod._RayIndex(mesh.vertices, mesh.faces)
    got = index.winding(pts)
    expected = rational_winding(mesh.vertices, mesh.faces, pts)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    assert len(set(expected.tolist())) >= 2                                  # inside and outside both probed
    np.testing.assert_array_equal(index.winding(pts, chunk=7), expected)     # across chunks: added, not overwritten
    np.testing.assert_array_equal(data.inside_mesh(mesh, pts), expected != 0)
    if name == "boxes":
        assert {-1, 0, 1, 2} <= set(expected.tolist())
    if name == "cone":                                                       # the grid was coarsened, answers unchanged
        assert index.g < int(np.sqrt(len(index.F)))


def _bbox_cells(index, lo, hi):
    """Grid cells (row-major ids) a box [lo, hi] in xy overlaps, from the documented uniform grid."""
    g = index.g

    def cell(v, v0, v1):
        return min(g - 1, int(np.floor((v - v0) * g / (v1 - v0))))
    xs = range(cell(lo[0], index.x0, index.x1), cell(hi[0], index.x0, index.x1) + 1)
    ys = range(cell(lo[1], index.y0, index.y1), cell(hi[1], index.y0, index.y1) + 1)
    return {y * g + x for y in ys for x in xs}


@pytest.mark.parametrize("name, coarsened", [("torus", False), ("cone", True)])
def test_the_ray_index_lists_each_triangle_in_exactly_the_cells_its_box_overlaps(name, coarsened):
    """The grid is the finest halving of sqrt(triangles) with at most 16 t + 4 g^2 (cell, triangle)
    entries; each triangle is listed once in each cell its xy bounding box overlaps, and nowhere else."""
    mesh = _test_meshes()[name]
    index = meshes_mod._RayIndex(mesh.vertices, mesh.faces)
    t, g = len(index.F), index.g
    tri = mesh.vertices[index.F]
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    assert (index.x0, index.y0, index.x1, index.y1) == (lo[:, 0].min(), lo[:, 1].min(), hi[:, 0].max(), hi[:, 1].max())
    expected = {(c, i) for i in range(t) for c in _bbox_cells(index, lo[i], hi[i])}
    listed = [(c, int(i)) for c in range(g * g)
              for i in index.cell_tris[index.cell_start[c]:index.cell_start[c] + index.cell_count[c]]]
    assert len(listed) == len(set(listed)) and set(listed) == expected
    assert len(listed) <= 16 * t + 4 * g * g
    assert g == (int(np.sqrt(t)) // 2 if coarsened else int(np.sqrt(t)))
    if coarsened:                                   # the finer grid would have held too many entries
        finer = meshes_mod._RayIndex.__new__(meshes_mod._RayIndex)
        finer.__dict__.update(index.__dict__, g=2 * g)
        assert sum(len(_bbox_cells(finer, lo[i], hi[i])) for i in range(t)) > 16 * t + 4 * (2 * g) ** 2


def test_single_open_triangle_and_points_outside_its_box():
    """A lone triangle (not closed) is indexed too: the ray from below crosses it once."""
    tri = trimesh.Trimesh([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [0.0, 2.0, 1.0]], [[0, 1, 2]], process=False)
    pts = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 2.0], [1.5, 1.5, 0.0], [3.0, 0.5, 0.0], [0.5, 3.0, 0.0],
                    [-1.0, 0.5, 0.0], [0.5, -1.0, 0.0]])
    w = meshes_mod._RayIndex(tri.vertices, tri.faces).winding(pts)
    np.testing.assert_array_equal(w, [1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(w, rational_winding(tri.vertices, tri.faces, pts))
    flipped = meshes_mod._RayIndex(tri.vertices, tri.faces[:, ::-1]).winding(pts)
    np.testing.assert_array_equal(flipped, -w)


# ------------------------------------------------------------------------------------------------
# The exact predicates
# ------------------------------------------------------------------------------------------------

def _exact_sign(x):
    return (x > 0) - (x < 0)


def _near_degenerate(rng, n, dim, scale):
    """Random ``a, b, c`` and a point on their line (2D) or plane (3D) rounded to float64, so the
    exact determinant is tiny and the plain float one often has the wrong sign; per-axis scales
    from 1e-3 to 1e3 and a few exactly degenerate rows."""
    axes = scale * 10.0 ** rng.uniform(-3, 3, size=(n, 1, dim))
    a, b, c = (rng.uniform(-1, 1, (n, dim)) * axes[:, 0] for _ in range(3))
    s, t = rng.random((2, n, 1))
    p = a + s * (b - a) + (t * (c - a) if dim == 3 else 0.0)
    exact_rows = rng.random(n) < 0.1
    p[exact_rows] = a[exact_rows]
    return a, b, c, p


@pytest.mark.parametrize("scale", [1.0, 1e-150])      # 1e-150: products underflow, decided exactly
def test_orient2d_is_the_exact_sign(scale):
    rng = np.random.default_rng(7)
    a, b, _, p = _near_degenerate(rng, 3000, 2, scale)
    got = meshes_mod._orient2d(a[:, 0], a[:, 1], b[:, 0], b[:, 1], p[:, 0], p[:, 1])
    F = Fraction
    expected = [_exact_sign((F(b[i, 0]) - F(a[i, 0])) * (F(p[i, 1]) - F(a[i, 1]))
                            - (F(b[i, 1]) - F(a[i, 1])) * (F(p[i, 0]) - F(a[i, 0]))) for i in range(len(a))]
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, expected)
    naive = np.sign((b[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[:, 0] - a[:, 0]))
    assert (naive != expected).sum() > 100                    # the inputs do defeat plain float arithmetic
    assert {-1, 0, 1} <= set(expected)


@pytest.mark.parametrize("scale", [1.0, 1e-100])      # 1e-100: triple products underflow
def test_orient3d_is_the_exact_sign(scale):
    rng = np.random.default_rng(8)
    a, b, c, p = _near_degenerate(rng, 3000, 3, scale)
    got = meshes_mod._orient3d(a, b, c, p)
    expected = []
    for i in range(len(a)):
        A, B, C, P = ([Fraction(float(t)) for t in row[i]] for row in (a, b, c, p))
        M = [[B[k] - A[k] for k in range(3)], [C[k] - A[k] for k in range(3)], [P[k] - A[k] for k in range(3)]]
        det = sum(sgn * M[0][i0] * M[1][i1] * M[2][i2]          # Leibniz formula: another expansion
                  for (i0, i1, i2), sgn in (((0, 1, 2), 1), ((1, 2, 0), 1), ((2, 0, 1), 1),
                                            ((0, 2, 1), -1), ((2, 1, 0), -1), ((1, 0, 2), -1)))
        expected.append(_exact_sign(det))
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, expected)
    naive = np.sign(np.linalg.det(np.stack([b - a, c - a, p - a], axis=1)))
    assert (naive != expected).sum() > 100
    assert {-1, 0, 1} <= set(expected)
def test_normalization_exact_and_recorded():
    box = trimesh.creation.box(extents=(2.0, 3.0, 5.0))
    box.apply_translation([10.0, -4.0, 0.3])
    m = data.load_mesh(box)
    assert m.bounds[0].tolist() == [0.0, 0.0, 0.0] and m.bounds[1].tolist() == pytest.approx([0.4, 0.6, 1.0])
    assert m.bounds[1, 2] == 1.0                                          # longest axis exactly [0, 1]
    meta = m.metadata["normalization"]
    moved = trimesh.transform_points(box.vertices, np.array(meta["matrix"]))
    np.testing.assert_allclose(moved, m.vertices, atol=1e-15)
    assert meta["extent"] == 5.0 and meta["origin"] == pytest.approx([9.0, -5.5, -2.2])
    again = data.load_mesh(m)                                             # composes: still the original frame
    np.testing.assert_allclose(trimesh.transform_points(box.vertices, np.array(again.metadata["normalization"]["matrix"])),
                               again.vertices, atol=1e-15)


def test_box_labels_exact_including_ties():
    """On the surface and along edges the label is that of p + (eps, eps^2, eps^3): half-open box."""
    m = data.load_mesh(trimesh.creation.box(extents=(1, 1, 1)))
    g = np.array([0, 0.25, 0.5, 0.75, 1.0])
    pts = np.array(list(itertools.product(g, g, g)) + list(np.random.default_rng(0).random((2000, 3))))
    expected = np.all((pts >= 0) & (pts < 1), axis=1)
    np.testing.assert_array_equal(data.inside_mesh(m, pts), expected)
    small = data.load_mesh(trimesh.creation.box(extents=(1, 0.5, 0.25)))   # [0,1] x [0,.5] x [0,.25]
    p, lab = data.occupancy_samples(small, 3000, seed=2, near_surface=0.5, sigma=0.02, cache=False)
    q = p.double().numpy()
    inside = (q[:, 1] < 0.5) & (q[:, 2] < 0.25) & (q[:, 0] < 1)
    np.testing.assert_array_equal(lab.numpy() == 1, inside)


def test_sphere_labels_match_analytic_tests():
    m = data.load_mesh(trimesh.creation.icosphere(subdivisions=3))          # centre 0.5, radius 0.5
    p, lab = data.occupancy_samples(m, 20000, seed=0, near_surface=0.4, sigma=0.01, cache=False)
    assert p.dtype == torch.float32 and lab.dtype == torch.float32 and p.shape == (20000, 3)
    assert 0 <= p.min() and p.max() <= 1 and set(lab.unique().tolist()) == {0.0, 1.0}
    q = p.double().numpy()
    # the polyhedron exactly: inside <=> behind every face plane (convex), up to rounding of the planes
    planes = q @ m.face_normals.T - np.einsum("fk,fk->f", m.face_normals, m.triangles[:, 0])
    d = planes.max(axis=1)
    sure = np.abs(d) > 1e-12
    np.testing.assert_array_equal(lab.numpy()[sure] == 1, d[sure] < 0)
    # the sphere, away from the shell between the polyhedron and the sphere
    r = np.linalg.norm(q - 0.5, axis=1)
    away = np.abs(r - 0.5) > 0.005
    np.testing.assert_array_equal(lab.numpy()[away] == 1, r[away] < 0.5)
    assert away.sum() > 15000
    # generalized winding number agrees (independent method)
    w = data.winding_number(m, q[:300])
    np.testing.assert_array_equal(w > 0.5, lab.numpy()[:300] == 1)
    # points as a float32 tensor that requires grad (what a model's device tensor looks like): same answer
    wt = data.winding_number(m, torch.tensor(q[:300], dtype=torch.float32, requires_grad=True))
    np.testing.assert_allclose(wt, data.winding_number(m, q[:300].astype(np.float32)), atol=1e-12)


def test_near_surface_fraction_and_sigma():
    m = data.load_mesh(trimesh.creation.icosphere(subdivisions=3))
    p, _ = data.occupancy_samples(m, 4000, seed=1, near_surface=1.0, sigma=0.01, cache=False)
    r = np.linalg.norm(p.double().numpy() - 0.5, axis=1)
    assert np.abs(r - 0.5).max() < 0.08 and 0.008 < np.std(r - 0.5) < 0.012
    p, _ = data.occupancy_samples(m, 4000, seed=1, near_surface=0.0, cache=False)
    assert np.abs(np.linalg.norm(p.double().numpy() - 0.5, axis=1) - 0.5).max() > 0.3


def test_seed_reproducibility_and_cache(tmp_cache, monkeypatch):
    m = data.load_mesh(trimesh.creation.icosphere(subdivisions=2))
    p1, l1 = data.occupancy_samples(m, 500, seed=3, near_surface=0.5)
    files = list((tmp_cache / "occupancy").glob("*.npz"))
    assert len(files) == 1
    p2, l2 = data.occupancy_samples(m, 500, seed=3, near_surface=0.5, cache=False)
    assert torch.equal(p1, p2) and torch.equal(l1, l2)
    p3, _ = data.occupancy_samples(m, 500, seed=4, near_surface=0.5, cache=False)
    assert not torch.equal(p1, p3)

    def boom(*args, **kwargs):
        raise AssertionError("labels recomputed although cached")
    monkeypatch.setattr(meshes_mod, "inside_mesh", boom)
    p4, l4 = data.occupancy_samples(m, 500, seed=3, near_surface=0.5)       # cache hit
    assert torch.equal(p1, p4) and torch.equal(l1, l4)
    with pytest.raises(AssertionError, match="recomputed"):                  # other arguments: a miss
        data.occupancy_samples(m, 500, seed=3, near_surface=0.5, sigma=0.02)
    monkeypatch.undo()
    monkeypatch.setenv("INRLIB_CACHE", str(tmp_cache))
    files[0].write_bytes(b"garbage")                                         # corrupt entry: recomputed
    p5, l5 = data.occupancy_samples(m, 500, seed=3, near_surface=0.5)
    assert torch.equal(p1, p5) and torch.equal(l1, l5)
    with np.load(files[0]) as z:
        assert np.array_equal(z["points"], p1.numpy())


def test_mesh_errors(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    holed = trimesh.Trimesh(sphere.vertices, sphere.faces[1:], process=False)
    with pytest.raises(ValueError, match="not watertight.*repair=True"):
        data.load_mesh(holed)
    fixed = data.load_mesh(holed, repair=True)
    assert fixed.is_watertight and len(fixed.faces) == len(sphere.faces)
    shredded = trimesh.Trimesh(sphere.vertices, sphere.faces[::2], process=False)
    with pytest.raises(ValueError, match="even after repair=True"):
        data.load_mesh(shredded, repair=True)
    with pytest.raises(ValueError, match="not watertight"):
        data.occupancy_samples(holed, 10)
    with pytest.raises(ValueError, match="normalized frame"):
        data.occupancy_samples(sphere, 10)
    with pytest.raises(ValueError, match="empty"):
        data.load_mesh(trimesh.Trimesh())
    (tmp_path / "empty.obj").write_text("")
    with pytest.raises(ValueError, match="empty"):
        data.load_mesh(tmp_path / "empty.obj")
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat binary garbage")
    with pytest.raises(ValueError, match="cannot read a mesh"):
        data.load_mesh(tmp_path / "bad.ply")
    with pytest.raises(FileNotFoundError, match="no mesh file"):
        data.load_mesh(tmp_path / "missing.stl")
    with pytest.raises(ValueError, match="unknown mesh name 'teapot'.*bunny, dragon"):
        data.load_mesh("teapot")
    for name in ("armadillo", "Happy Buddha", "buddha"):
        with pytest.raises(ValueError, match="not in any package registry.*path"):
            data.load_mesh(name)
    path = tmp_path / "sphere.stl"
    sphere.export(path)
    assert data.load_mesh(path).metadata["source"] == str(path)


@needs_index
def test_bunny_and_dragon():
    """Downloads the genesis-world wheel once (about 84 MB); later runs read the cache."""
    bunny = data.load_mesh("bunny")
    assert bunny.is_watertight and bunny.is_winding_consistent
    assert bunny.bounds[0].tolist() == [0.0, 0.0, 0.0] and bunny.bounds[1].max() == 1.0
    points, labels = data.occupancy_samples(bunny, 20000, seed=0, cache=False)
    assert abs(labels.mean().item() - bunny.volume) < 0.015 and 0.1 < bunny.volume < 0.4
    q = points[:100].double().numpy()
    np.testing.assert_array_equal(bunny.contains(q), labels[:100].numpy() == 1)
    np.testing.assert_array_equal(data.winding_number(bunny, q) > 0.5, labels[:100].numpy() == 1)
    dragon = data.load_mesh("dragon")
    assert dragon.is_watertight and dragon.bounds[1].max() == 1.0


def test_mesh_refusals_word_for_word(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=1)
    fix = ("; pass repair=True to inrlib.data.load_mesh to let trimesh merge vertices, fill holes and fix normals, "
           "or repair it in a mesh tool first")
    for mesh, message in ((trimesh.Trimesh(), "the mesh is empty (no vertices or no faces); nothing to normalize"),
                          (trimesh.Trimesh(np.zeros((3, 3)), [[0, 1, 2]], process=False),
                           "the mesh has zero extent (all vertices coincide)")):
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            meshes_mod.normalize_mesh(mesh)
    bad = sphere.copy()
    bad.vertices[0, 1] = np.inf
    with pytest.raises(ValueError, match=r"^the mesh has NaN or infinite vertex coordinates$"):
        meshes_mod.normalize_mesh(bad)
    with pytest.raises(ValueError, match="^" + re.escape("the mesh has no triangles" + fix) + "$"):
        meshes_mod.check_closed(trimesh.Trimesh())
    holed = trimesh.Trimesh(sphere.vertices, sphere.faces[1:], process=False)
    with pytest.raises(ValueError, match="^" + re.escape(
            "mesh <trimesh.Trimesh> is not watertight (3 boundary edges, 0 edges shared by more than two faces), so "
            "inside/outside is undefined" + fix) + "$"):
        data.load_mesh(holed)
    flipped = sphere.copy()
    flipped.faces[0] = flipped.faces[0][::-1]
    assert flipped.is_watertight
    with pytest.raises(ValueError, match="^" + re.escape(
            "mesh <trimesh.Trimesh> is watertight but its faces are not consistently oriented" + fix) + "$"):
        data.load_mesh(flipped)
    assert data.load_mesh(flipped, repair=True).is_winding_consistent
    with pytest.raises(IsADirectoryError, match=f"^{re.escape(str(tmp_path))} is a folder; pass a mesh file$"):
        data.load_mesh(tmp_path)
    m = data.load_mesh(sphere)
    for pts, message in ((np.zeros((5, 2)), "points must have shape (n, 3), got (5, 2)"),
                         (np.zeros(3), "points must have shape (n, 3), got (3,)"),
                         (np.array([[0.5, np.nan, 0.5]]), "points contain NaN or infinite values")):
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            data.inside_mesh(m, pts)
    t = data.inside_mesh(m, torch.tensor([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]], requires_grad=True))
    assert isinstance(t, torch.Tensor) and t.tolist() == [True, False]
    for kw, exc, message in (
            (dict(mesh="sphere"), TypeError, "mesh must be a trimesh.Trimesh (see inrlib.data.load_mesh), got str"),
            (dict(n=0), ValueError, "n must be at least 1, got 0"),
            (dict(near_surface=1.5), ValueError, "near_surface is a fraction in [0, 1], got 1.5"),
            (dict(near_surface=-0.1), ValueError, "near_surface is a fraction in [0, 1], got -0.1"),
            (dict(sigma=-1.0), ValueError, "sigma must be >= 0, got -1.0"),
            (dict(sigma=float("nan")), ValueError, "sigma must be >= 0, got nan"),
            (dict(box="cube"), ValueError, "box must be 'unit' or 'mesh', got 'cube'")):
        args = dict(mesh=m, n=10, cache=False)
        args.update(kw)
        with pytest.raises(exc, match="^" + re.escape(message) + "$"):
            data.occupancy_samples(args.pop("mesh"), args.pop("n"), **args)
    shifted = m.copy()
    shifted.apply_translation([0.0, 0.0, 1e-6])
    with pytest.raises(ValueError, match=r"^the mesh is not in the normalized frame \(bounds \[\[0\.0, 0\.0, 1e-06\], "
                                         r".*\]\); pass it through inrlib\.data\.load_mesh\(mesh\) first, which scales "
                                         r"its longest axis to \[0, 1\]$"):
        data.occupancy_samples(shifted, 10, cache=False)
    data.occupancy_samples(m, 1, sigma=0.0, near_surface=1.0, cache=False)       # the edges of the ranges are allowed
    small = data.load_mesh(trimesh.creation.box(extents=(1, 0.5, 0.25)))
    for box, hi in (("mesh", [1.0, 0.5, 0.25]), ("unit", [1.0, 1.0, 1.0])):
        p, lab = data.occupancy_samples(small, 4000, seed=0, box=box, cache=False)
        q = p.double().numpy()
        assert (q >= 0).all() and np.allclose(q.max(axis=0), hi, atol=0.01) and (q.max(axis=0) <= hi).all(), box
        assert abs(lab.mean().item() - 0.125 / np.prod(hi)) < 0.03, box



# ------------------------------------------------------------------------------------------------
# Normalization, loading and the refusals
# ------------------------------------------------------------------------------------------------

def test_normalization_composes_with_an_earlier_one_vertex_for_vertex():
    sphere = trimesh.creation.icosphere(subdivisions=1)
    X = sphere.vertices * [3.0, 1.0, 2.0] + [5.0, -2.0, 1.0]           # original coordinates
    origin, extent = np.array([4.0, -1.0, 0.5]), 2.5                    # an earlier frame, not normalized
    Y = (X - origin) / extent
    Y = np.concatenate([Y, Y[:1]])                                      # a duplicate vertex: kept, not merged
    mesh = trimesh.Trimesh(Y, sphere.faces, process=False)
    mesh.metadata["normalization"] = {"origin": origin.tolist(), "extent": extent}
    mesh.metadata["note"] = "kept"
    out = meshes_mod.normalize_mesh(mesh)
    lo, length = Y.min(axis=0), (Y.max(axis=0) - Y.min(axis=0)).max()
    np.testing.assert_array_equal(out.vertices, (Y - lo) / length)      # the same vertices, in order
    np.testing.assert_array_equal(out.faces, sphere.faces)
    meta = out.metadata["normalization"]
    L = (X.max(axis=0) - X.min(axis=0)).max()
    np.testing.assert_allclose(meta["origin"], X.min(axis=0), rtol=1e-14)
    assert meta["extent"] == pytest.approx(L, rel=1e-14) and meta["scale"] == pytest.approx(1 / L, rel=1e-14)
    matrix = np.array(meta["matrix"])
    np.testing.assert_allclose(trimesh.transform_points(X, matrix), out.vertices[:-1], atol=1e-14)
    np.testing.assert_allclose(trimesh.transform_points(out.vertices[:-1], np.linalg.inv(matrix)), X, atol=1e-13)
    assert out.metadata["note"] == "kept"


def test_load_mesh_sources_names_and_what_it_cannot_read(tmp_path, monkeypatch):
    sphere = trimesh.creation.icosphere(subdivisions=1)
    named = sphere.copy()
    named.metadata["source"] = "scan.ply"
    assert data.load_mesh(named).metadata["source"] == "scan.ply"
    assert data.load_mesh(sphere).metadata["source"] == "<trimesh.Trimesh>"
    with pytest.raises(FileNotFoundError, match=r"^no mesh file at teapot\.OBJ$"):   # a suffix says it is a path
        data.load_mesh("teapot.OBJ")
    path = tmp_path / "soup.stl"
    sphere.export(path)                                     # STL is a triangle soup: loading merges the vertices
    assert data.load_mesh(path).is_watertight
    monkeypatch.setattr(trimesh, "load_mesh", lambda *a, **k: (_ for _ in ()).throw(KeyError("vertex")))
    with pytest.raises(ValueError, match="^" + re.escape(f"cannot read a mesh from {path} (KeyError: 'vertex'); "
                                                         "trimesh reads .obj, .ply, .stl, .off, .glb, ... files") + "$"):
        data.load_mesh(path)
    monkeypatch.setattr(trimesh, "load_mesh", lambda *a, **k: trimesh.PointCloud(np.zeros((4, 3))))
    with pytest.raises(ValueError, match="^" + re.escape(f"{path} holds no triangle mesh (trimesh read a PointCloud)")
                       + "$"):
        data.load_mesh(path)
    monkeypatch.undo()
    shredded = trimesh.Trimesh(sphere.vertices, sphere.faces[::2], process=False)
    with pytest.raises(ValueError, match=r"even after repair=True \(trimesh merged vertices, filled holes and fixed "
                                         r"normals\); fix it in a mesh tool \(e\.g\. MeshLab, ManifoldPlus\) and pass "
                                         r"the fixed file$"):
        data.load_mesh(shredded, repair=True)


def test_empty_one_triangle_and_fin_meshes_are_refused_with_their_counts():
    no_faces = trimesh.Trimesh(np.eye(3), np.zeros((0, 3), dtype=np.int64), process=False)
    with pytest.raises(ValueError, match=r"^mesh <trimesh\.Trimesh> is empty \(no triangles\); is it a valid, "
                                         r"complete mesh file\?$"):
        data.load_mesh(no_faces)
    with pytest.raises(ValueError, match=r"^the mesh is empty \(no vertices or no faces\); nothing to normalize$"):
        meshes_mod.normalize_mesh(no_faces)
    one_vertex = trimesh.Trimesh(np.zeros((1, 3)), [[0, 0, 0]], process=False)
    with pytest.raises(ValueError, match=r"^the mesh has zero extent \(all vertices coincide\)$"):
        meshes_mod.normalize_mesh(one_vertex)
    with pytest.raises(ValueError, match=r"^mesh <trimesh\.Trimesh> is not watertight"):   # one vertex is not "empty"
        data.load_mesh(one_vertex)
    triangle = trimesh.Trimesh(np.eye(3), [[0, 1, 2]], process=False)
    with pytest.raises(ValueError, match=r"is not watertight \(3 boundary edges, 0 edges shared by more than two "
                                         r"faces\)"):
        data.load_mesh(triangle)
    tetra = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]],
                            [[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2], [0, 1, 4]], process=False)   # a fin on edge 0-1
    assert meshes_mod._edge_problems(tetra) == (2, 1)
    with pytest.raises(ValueError, match=r"is not watertight \(2 boundary edges, 1 edges shared by more than two "
                                         r"faces\)"):
        data.load_mesh(tetra)


# ------------------------------------------------------------------------------------------------
# The generalized winding number and surface sampling
# ------------------------------------------------------------------------------------------------

def test_generalized_winding_number_is_one_inside_zero_outside_in_any_blocking():
    m = data.load_mesh(trimesh.creation.icosphere(subdivisions=2))       # centre 0.5, radius 0.5
    rng = np.random.default_rng(3)
    pts = np.concatenate([[[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]], rng.random((60, 3))])
    r = np.linalg.norm(pts - 0.5, axis=1)
    pts = pts[np.abs(r - 0.5) > 0.05]                                   # away from the polyhedron's shell
    inside = np.linalg.norm(pts - 0.5, axis=1) < 0.5
    w = data.winding_number(m, pts)
    assert w.dtype == np.float64 and inside[0] and not inside[1]
    np.testing.assert_allclose(w, inside.astype(float), atol=1e-9)
    np.testing.assert_allclose(data.winding_number(m, pts, max_block=7), w, atol=1e-12)
    np.testing.assert_allclose(data.winding_number(m, pts, max_block=10 ** 6), w, atol=1e-12)
    inverted = m.copy()
    inverted.invert()
    np.testing.assert_allclose(data.winding_number(inverted, pts), -inside.astype(float), atol=1e-9)


def test_surface_samples_are_area_weighted_and_uniform_on_each_face():
    """Each face gets a share of the points equal to its share of the area (binomial, 5 sigma), and
    inside a face the barycentric coordinates are Beta(1, 2): P(lambda_i < 1/2) = 3/4 for each vertex."""
    tetra = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 0.5]],
                            [[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]], process=False)
    n = 40000
    pts = render_mod.sample_surface(tetra, n, np.random.default_rng(0))
    assert pts.shape == (n, 3)
    area = tetra.area_faces
    for f, face in enumerate(tetra.faces):
        a, b, c = tetra.vertices[face]
        T = np.stack([b - a, c - a], axis=1)                             # (3, 2)
        coef, *_ = np.linalg.lstsq(T, (pts - a).T, rcond=None)
        lam = np.stack([1 - coef.sum(0), coef[0], coef[1]], axis=1)
        on = np.abs(T @ coef - (pts - a).T).max(axis=0) < 1e-12
        on &= (lam > -1e-12).all(axis=1)
        share = area[f] / area.sum()
        assert abs(on.sum() - n * share) < 5 * np.sqrt(n * share * (1 - share)), f
        frac = (lam[on] < 0.5).mean(axis=0)
        np.testing.assert_allclose(frac, 0.75, atol=5 * np.sqrt(0.75 * 0.25 / on.sum()))


# ------------------------------------------------------------------------------------------------
# Occupancy samples: defaults, box, cache key and cache validity
# ------------------------------------------------------------------------------------------------

def test_occupancy_defaults_and_the_mesh_box():
    m = data.load_mesh(trimesh.creation.icosphere(subdivisions=2))
    p0, l0 = data.occupancy_samples(m, 300, cache=False)
    p1, l1 = data.occupancy_samples(m, 300, seed=0, near_surface=0.0, cache=False)
    assert torch.equal(p0, p1) and torch.equal(l0, l1)
    p2, _ = data.occupancy_samples(m, 300, near_surface=0.5, cache=False)
    p3, _ = data.occupancy_samples(m, 300, near_surface=0.5, sigma=0.01, cache=False)
    assert torch.equal(p2, p3)
    inner = m.copy()                                                    # inside the unit cube, not touching it
    inner.apply_scale(0.5)
    inner.apply_translation([0.25, 0.3, 0.2])
    lo, hi = inner.bounds
    p, lab = data.occupancy_samples(inner, 3000, seed=1, box="mesh", cache=False)
    q = p.double().numpy()
    assert (q >= lo.astype(np.float32) - 1e-7).all() and (q <= hi.astype(np.float32) + 1e-7).all()
    np.testing.assert_allclose(q.min(axis=0), lo, atol=0.01)
    np.testing.assert_allclose(q.max(axis=0), hi, atol=0.01)


def test_cache_key_is_the_documented_one_and_vertices_are_part_of_it(tmp_cache):
    m = data.load_mesh(trimesh.creation.icosphere(subdivisions=1))
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(m.vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(m.faces, dtype=np.int64).tobytes())
    assert meshes_mod.mesh_hash(m) == h.hexdigest()
    data.occupancy_samples(m, 50, seed=5, near_surface=0.25, sigma=0.02, box="mesh")
    key = {"mesh": h.hexdigest(), "n": 50, "seed": 5, "near_surface": 0.25, "sigma": 0.02, "box": "mesh",
           "version": meshes_mod._OCCUPANCY_VERSION}
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32] + ".npz"
    assert [f.name for f in (tmp_cache / "occupancy").glob("*.npz")] == [name]
    smaller = m.copy()                                                  # the same faces, other vertices
    smaller.vertices = smaller.vertices * 0.5
    assert meshes_mod.mesh_hash(smaller) != meshes_mod.mesh_hash(m)
    pa, la = data.occupancy_samples(m, 400, seed=1)
    pb, lb = data.occupancy_samples(smaller, 400, seed=1)
    assert torch.equal(pa, pb) and la.sum() > lb.sum()                  # same points, fewer inside the smaller one


def test_cache_off_never_reads_and_malformed_entries_are_recomputed(tmp_cache, monkeypatch):
    m = data.load_mesh(trimesh.creation.icosphere(subdivisions=1))
    p, lab = data.occupancy_samples(m, 60, seed=2)
    (entry,) = (tmp_cache / "occupancy").glob("*.npz")
    calls = []
    real = meshes_mod.inside_mesh
    monkeypatch.setattr(meshes_mod, "inside_mesh", lambda *a: calls.append(1) or real(*a))
    p2, l2 = data.occupancy_samples(m, 60, seed=2, cache=False)
    assert len(calls) == 1 and torch.equal(p, p2) and torch.equal(lab, l2)
    P, L = p.numpy(), lab.numpy()
    for bad in (dict(points=P.astype(np.float64), labels=L), dict(points=P, labels=L.astype(np.float64)),
                dict(points=P[:-1], labels=L), dict(points=P, labels=L[:-1])):
        with open(entry, "wb") as f:
            np.savez(f, **bad)
        before = len(calls)
        p3, l3 = data.occupancy_samples(m, 60, seed=2)
        assert len(calls) == before + 1 and torch.equal(p, p3) and torch.equal(lab, l3)
        with np.load(entry) as z:                                       # overwritten with a valid entry
            assert z["points"].dtype == np.float32 and z["labels"].shape == (60,)
