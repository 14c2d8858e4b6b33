r"""Meshes and occupancy data for 3D implicit-surface regression.

**Normalization** (paper 000, Appendix E: "the input mesh was scaled to normalize its longest axis
between 0 and 1"): with ``lo`` the bounding-box minimum and ``L`` the longest bounding-box side of
the mesh as read, every vertex becomes ``(v - lo) / L``. The box minimum then sits at the origin,
the longest axis spans exactly ``[0, 1]`` and the others ``[0, extent / L]``; the aspect ratio is
kept. ``mesh.metadata["normalization"]`` records ``origin`` (= ``lo``), ``extent`` (= ``L``),
``scale`` (= ``1 / L``) and the 4 x 4 homogeneous ``matrix`` taking original coordinates to
normalized ones (``np.linalg.inv`` of it goes back).

**Inside / outside** (:func:`inside_mesh`): the winding number of the mesh around each point,
computed exactly as the signed count of the mesh's triangles crossed by the ray from the point
in the ``+z`` direction. The two predicates involved (which side of a projected edge the point
lies on; whether the triangle is above the point) are evaluated exactly, with a floating-point
filter and a rational fallback for the rare near-ties, and exact ties (a ray through an edge or a
vertex, a point on a face) are broken by a symbolic perturbation of the point (simulation of
simplicity), the same for every triangle. For a closed (watertight) mesh the count is therefore
the true winding number of the exact float coordinates, whatever the point's distance to the
surface: labels are exact, not approximate, and robust to self-intersections (non-zero rule).
A uniform grid over the ``xy`` plane limits each point's candidates to the triangles over its
cell, so the cost is about linear in the number of points. :func:`winding_number` is the
generalized winding number (Jacobson et al. 2013), a slower independent check.
"""
from __future__ import annotations

import hashlib
import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path, cache_dir
from ..render import sample_surface
from .registry import UNAVAILABLE_MESHES, list_meshes, mesh_path

__all__ = ["load_mesh", "normalize_mesh", "mesh_hash", "check_closed", "inside_mesh", "winding_number",
           "occupancy_samples"]

#: Bumped whenever the sampling or labelling changes, so old cache entries are not reused.
_OCCUPANCY_VERSION = 1
_MESH_SUFFIXES = {".obj", ".ply", ".stl", ".off", ".glb", ".gltf", ".dae", ".3mf", ".xaml", ".dxf"}


# ----------------------------------------------------------------------------------------------
# Loading and normalization
# ----------------------------------------------------------------------------------------------

def mesh_hash(mesh) -> str:
    """SHA-256 (hex) of a mesh's vertices (float64) and faces (int64): its identity for caches."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    return h.hexdigest()


def normalize_mesh(mesh):
    """A copy of ``mesh`` with its bounding-box minimum at 0 and its longest side exactly ``[0, 1]``.

    ``v -> (v - lo) / L`` (see the module docstring); ``metadata["normalization"]`` maps the
    *original* coordinates (composed with an earlier normalization, if the mesh had one).
    """
    import trimesh
    v = np.asarray(mesh.vertices, dtype=np.float64)
    if len(v) == 0 or len(mesh.faces) == 0:
        raise ValueError("the mesh is empty (no vertices or no faces); nothing to normalize")
    if not np.isfinite(v).all():
        raise ValueError("the mesh has NaN or infinite vertex coordinates")
    lo = v.min(axis=0)
    length = float((v.max(axis=0) - lo).max())
    if not length > 0:
        raise ValueError("the mesh has zero extent (all vertices coincide)")
    out = trimesh.Trimesh((v - lo) / length, np.asarray(mesh.faces, dtype=np.int64), process=False)
    out.metadata.update(dict(mesh.metadata))
    prev = mesh.metadata.get("normalization")
    origin, extent = lo, length
    if prev is not None:                       # compose: original -> previous frame -> this frame
        origin = np.asarray(prev["origin"], dtype=np.float64) + lo * float(prev["extent"])
        extent = float(prev["extent"]) * length
    matrix = np.eye(4)
    matrix[:3, :3] /= extent
    matrix[:3, 3] = -origin / extent
    out.metadata["normalization"] = {"origin": origin.tolist(), "extent": extent, "scale": 1.0 / extent,
                                     "matrix": matrix.tolist()}
    return out


def _edge_problems(mesh) -> tuple[int, int]:
    """(edges used by one face only, edges used by more than two faces)."""
    _, counts = np.unique(np.asarray(mesh.edges_sorted), axis=0, return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum())


def _closed_problem(mesh) -> str | None:
    """What keeps ``mesh`` from being a closed, consistently wound surface (None if nothing)."""
    if len(mesh.faces) == 0:
        return "has no triangles"
    if not mesh.is_watertight:
        open_edges, nonmanifold = _edge_problems(mesh)
        return (f"is not watertight ({open_edges} boundary edges, {nonmanifold} edges shared by more than "
                "two faces), so inside/outside is undefined")
    if not mesh.is_winding_consistent:
        return "is watertight but its faces are not consistently oriented"
    return None


def check_closed(mesh, who: str = "the mesh") -> None:
    """Raise ``ValueError`` unless ``mesh`` is a non-empty, watertight, consistently wound triangle mesh.

    The message names ``repair=True`` of :func:`load_mesh`, which lets trimesh try to fix it.
    """
    problem = _closed_problem(mesh)
    if problem is not None:
        raise ValueError(f"{who} {problem}; pass repair=True to inrlib.data.load_mesh to let trimesh merge "
                         "vertices, fill holes and fix normals, or repair it in a mesh tool first")


def _repair(mesh) -> None:
    import trimesh
    mesh.merge_vertices()
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    trimesh.repair.fill_holes(mesh)
    trimesh.repair.fix_normals(mesh)


def load_mesh(path_or_name, *, repair: bool = False):
    """Read a mesh, check it is closed, and normalize it (longest axis to ``[0, 1]``, minimum at 0).

    Args:
        path_or_name: ``"bunny"`` or ``"dragon"`` (Stanford scans from the ``genesis-world==1.4.5``
            wheel, fetched once, see :mod:`inrlib.data.registry`), a path to anything trimesh
            reads (``.ply``, ``.obj``, ``.stl``, ``.off``, ``.glb``, ...; scenes are merged), or a
            ``trimesh.Trimesh`` (copied). Armadillo and Happy Buddha are in no registry: pass
            their file's path.
        repair: for a mesh that is not watertight or not consistently wound, let trimesh merge
            duplicate vertices, drop degenerate/duplicate faces, fill holes and fix normals.

    Returns:
        a ``trimesh.Trimesh`` in the normalized frame, with ``metadata["normalization"]`` (see
        the module docstring) and ``metadata["source"]``.

    Raises:
        FileNotFoundError: no file at the path. ValueError: unknown or unavailable name, a file
        trimesh cannot read, an empty mesh, or a mesh that is not watertight (the message names
        ``repair=True``; with ``repair=True``, one that is still not watertight afterwards).
    """
    import trimesh
    if isinstance(path_or_name, trimesh.Trimesh):
        mesh, source = path_or_name.copy(), str(path_or_name.metadata.get("source", "<trimesh.Trimesh>"))
    else:
        text = os.fspath(path_or_name)
        path = Path(os.path.expanduser(text))
        if not path.exists():
            looks_like_path = os.sep in text or "/" in text or path.suffix.lower() in _MESH_SUFFIXES
            if looks_like_path:
                raise FileNotFoundError(f"no mesh file at {path}")
            if text.strip().lower() not in UNAVAILABLE_MESHES and text.strip().lower() not in list_meshes():
                raise ValueError(f"unknown mesh name {text!r}: no such file, and the names inrlib fetches are "
                                 f"{', '.join(list_meshes())}; pass a path to a mesh file trimesh can read")
            path = mesh_path(text)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; pass a mesh file")
        try:
            mesh = trimesh.load_mesh(path, process=True)
        except Exception as err:                        # trimesh raises many types on bad input
            raise ValueError(f"cannot read a mesh from {path} ({type(err).__name__}: {err}); trimesh reads "
                             ".obj, .ply, .stl, .off, .glb, ... files") from None
        if not isinstance(mesh, trimesh.Trimesh):
            raise ValueError(f"{path} holds no triangle mesh (trimesh read a {type(mesh).__name__})")
        source = str(path)
    who = f"mesh {source}"
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise ValueError(f"{who} is empty (no triangles); is it a valid, complete mesh file?")
    if repair and _closed_problem(mesh) is not None:
        _repair(mesh)
        problem = _closed_problem(mesh)
        if problem is not None:
            raise ValueError(f"{who} {problem}, even after repair=True (trimesh merged vertices, filled holes "
                             "and fixed normals); fix it in a mesh tool (e.g. MeshLab, ManifoldPlus) and pass "
                             "the fixed file")
    check_closed(mesh, who)
    out = normalize_mesh(mesh)
    out.metadata["source"] = source
    return out


# ----------------------------------------------------------------------------------------------
# Exact predicates
# ----------------------------------------------------------------------------------------------

# Error-bound factors of the float filters, above Shewchuk's (3 + 16u)u and (7 + 56u)u, u = 2^-53.
_BOUND2 = 1e-15
_BOUND3 = 2e-15
_TINY = 1e-280          # below this, products may have underflowed: always decide exactly


def _sign(v: Fraction) -> int:
    return (v > 0) - (v < 0)


def _orient2d(ax, ay, bx, by, px, py) -> np.ndarray:
    """Exact sign of ``(bx - ax)(py - ay) - (by - ay)(px - ax)`` (int8 array of -1, 0, 1)."""
    left = (bx - ax) * (py - ay)
    right = (by - ay) * (px - ax)
    det = left - right
    out = np.sign(det).astype(np.int8)
    unsure = ~(np.abs(det) > _BOUND2 * (np.abs(left) + np.abs(right))) | (np.abs(det) < _TINY)
    for i in np.flatnonzero(unsure):
        F = Fraction
        out[i] = _sign((F(bx[i]) - F(ax[i])) * (F(py[i]) - F(ay[i])) - (F(by[i]) - F(ay[i])) * (F(px[i]) - F(ax[i])))
    return out


def _orient3d(a: np.ndarray, b: np.ndarray, c: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact sign of ``det[b - a; c - a; p - a]`` for ``(m, 3)`` arrays (int8)."""
    r1, r2, r3 = b - a, c - a, p - a
    m1 = r2[:, 0] * r3[:, 1] - r3[:, 0] * r2[:, 1]
    m2 = r3[:, 0] * r1[:, 1] - r1[:, 0] * r3[:, 1]
    m3 = r1[:, 0] * r2[:, 1] - r2[:, 0] * r1[:, 1]
    det = r1[:, 2] * m1 + r2[:, 2] * m2 + r3[:, 2] * m3
    perm = ((np.abs(r2[:, 0] * r3[:, 1]) + np.abs(r3[:, 0] * r2[:, 1])) * np.abs(r1[:, 2])
            + (np.abs(r3[:, 0] * r1[:, 1]) + np.abs(r1[:, 0] * r3[:, 1])) * np.abs(r2[:, 2])
            + (np.abs(r1[:, 0] * r2[:, 1]) + np.abs(r2[:, 0] * r1[:, 1])) * np.abs(r3[:, 2]))
    out = np.sign(det).astype(np.int8)
    unsure = ~(np.abs(det) > _BOUND3 * perm) | (np.abs(det) < _TINY)
    for i in np.flatnonzero(unsure):
        A, B, C, P = ([Fraction(float(t)) for t in row[i]] for row in (a, b, c, p))
        u = [B[k] - A[k] for k in range(3)]
        v = [C[k] - A[k] for k in range(3)]
        w = [P[k] - A[k] for k in range(3)]
        out[i] = _sign(u[0] * (v[1] * w[2] - v[2] * w[1]) - u[1] * (v[0] * w[2] - v[2] * w[0])
                       + u[2] * (v[0] * w[1] - v[1] * w[0]))
    return out


class _RayIndex:
    """Triangles bucketed on a uniform ``xy`` grid, with what the exact +z ray test needs."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        V = np.ascontiguousarray(vertices, dtype=np.float64)
        Fc = np.asarray(faces, dtype=np.int64)
        a, b, c = V[Fc[:, 0]], V[Fc[:, 1]], V[Fc[:, 2]]
        s = _orient2d(a[:, 0], a[:, 1], b[:, 0], b[:, 1], c[:, 0], c[:, 1])
        keep = s != 0                                  # vertical triangles: no ray from p + delta hits them
        self.V, self.F, self.sA = V, Fc[keep], s[keep]
        # (T, 3) directed edges u -> v. The edge test is exact and antisymmetric (its tie-break too),
        # so a shared edge is decided consistently from both of its triangles.
        self.eu, self.ev = self.F, self.F[:, [1, 2, 0]]
        tri = V[self.F]                                             # (T, 3, 3)
        self.tmin, self.tmax = tri.min(axis=1), tri.max(axis=1)
        t = len(self.F)
        if t == 0:
            return
        self.x0, self.y0 = self.tmin[:, 0].min(), self.tmin[:, 1].min()
        self.x1, self.y1 = self.tmax[:, 0].max(), self.tmax[:, 1].max()
        g = int(np.clip(np.sqrt(t), 1, 1024))
        while True:                                     # coarsen if big triangles would fill the grid
            self.g = g
            cx0, cy0 = self._cell(self.tmin[:, 0], self.tmin[:, 1])
            cx1, cy1 = self._cell(self.tmax[:, 0], self.tmax[:, 1])
            nx, ny = cx1 - cx0 + 1, cy1 - cy0 + 1
            if int((nx * ny).sum()) <= 16 * t + 4 * g * g or g == 1:
                break
            g = max(1, g // 2)
        counts = nx * ny
        tri_of = np.repeat(np.arange(t), counts)
        k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        cells = (cy0[tri_of] + k // nx[tri_of]) * g + (cx0[tri_of] + k % nx[tri_of])
        order = np.argsort(cells)
        self.cell_tris = tri_of[order]
        self.cell_count = np.bincount(cells, minlength=g * g)
        self.cell_start = np.cumsum(self.cell_count) - self.cell_count

    def _cell(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Monotone in x and y (float subtraction/multiplication and floor are), so a point inside a
        # triangle's closed projection always lands in one of the triangle's cells: the answers are
        # exact for any monotone map, the grid only decides the speed. x1 > x0 and y1 > y0, since the
        # kept triangles have a non-zero projected area.
        sx, sy = self.g / (self.x1 - self.x0), self.g / (self.y1 - self.y0)
        cx = np.clip(np.floor((x - self.x0) * sx), 0, self.g - 1).astype(np.int64)
        cy = np.clip(np.floor((y - self.y0) * sy), 0, self.g - 1).astype(np.int64)
        return cx, cy

    def _edge_sign(self, tri: np.ndarray, k: int, p: np.ndarray) -> np.ndarray:
        """Sign of point ``p`` + delta against directed edge ``k`` of triangles ``tri`` (exact, SoS)."""
        u, v = self.V[self.eu[tri, k]], self.V[self.ev[tri, k]]
        s = _orient2d(u[:, 0], u[:, 1], v[:, 0], v[:, 1], p[:, 0], p[:, 1])
        tie = s == 0
        if tie.any():
            # p + (eps, eps^2): e grows by -(v_y - u_y) eps + (v_x - u_x) eps^2.
            dy = np.sign(v[tie, 1] - u[tie, 1]).astype(np.int8)
            dx = np.sign(v[tie, 0] - u[tie, 0]).astype(np.int8)
            s[tie] = np.where(dy != 0, -dy, dx)
        return s

    def _above(self, tri: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Whether triangle ``tri`` lies above ``p`` + delta along z (p inside its projection)."""
        a, b, c = (self.V[self.F[tri, i]] for i in range(3))
        d = _orient3d(a, b, c, p)
        tie = d == 0
        if tie.any():
            # p + (eps, eps^2, eps^3): D grows by N . delta, N = (b - a) x (c - a).
            at, bt, ct = a[tie], b[tie], c[tie]
            nx = _orient2d(at[:, 1], at[:, 2], bt[:, 1], bt[:, 2], ct[:, 1], ct[:, 2])
            ny = _orient2d(at[:, 2], at[:, 0], bt[:, 2], bt[:, 0], ct[:, 2], ct[:, 0])
            d[tie] = np.where(nx != 0, nx, np.where(ny != 0, ny, self.sA[tri[tie]]))
        return d == -self.sA[tri]             # plane height minus p_z = -D / A > 0

    def winding(self, points: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
        """Exact winding numbers (int64) of ``(n, 3)`` float64 points."""
        P = np.ascontiguousarray(points, dtype=np.float64)
        w = np.zeros(len(P), dtype=np.int64)
        if len(self.F) == 0:
            return w
        inbox = np.flatnonzero((P[:, 0] >= self.x0) & (P[:, 0] <= self.x1)
                               & (P[:, 1] >= self.y0) & (P[:, 1] <= self.y1))
        for lo in range(0, len(inbox), chunk):
            idx = inbox[lo:lo + chunk]
            p = P[idx]
            cx, cy = self._cell(p[:, 0], p[:, 1])
            cell = cy * self.g + cx
            cnt = self.cell_count[cell]
            pid = np.repeat(np.arange(len(idx)), cnt)
            offs = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            tri = self.cell_tris[np.repeat(self.cell_start[cell], cnt) + offs]
            q = p[pid]
            ok = ((q[:, 0] >= self.tmin[tri, 0]) & (q[:, 0] <= self.tmax[tri, 0])
                  & (q[:, 1] >= self.tmin[tri, 1]) & (q[:, 1] <= self.tmax[tri, 1])
                  & (q[:, 2] <= self.tmax[tri, 2]))        # entirely below p: never crossed
            pid, tri, q = pid[ok], tri[ok], q[ok]
            for k in range(3):
                ok = self._edge_sign(tri, k, q) == self.sA[tri]
                pid, tri, q = pid[ok], tri[ok], q[ok]
            sure = q[:, 2] < self.tmin[tri, 2]             # entirely above p: crossed
            hit = sure.copy()
            hit[~sure] = self._above(tri[~sure], q[~sure])
            w[idx] += np.bincount(pid[hit], weights=self.sA[tri[hit]], minlength=len(idx)).astype(np.int64)
        return w


def inside_mesh(mesh, points):
    """Exact inside test: ``True`` where the winding number of ``mesh`` around the point is non-zero.

    ``points``: ``(n, 3)`` array or tensor (converted to float64 exactly). For a watertight mesh
    the answer is exact for every point (see the module docstring); points exactly on the surface
    are decided by a consistent symbolic perturbation. Returns a bool array, or a bool tensor on
    the input's device for a tensor input.
    """
    is_tensor = isinstance(points, torch.Tensor)
    p = points.detach().cpu().numpy() if is_tensor else np.asarray(points)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must have shape (n, 3), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("points contain NaN or infinite values")
    out = _RayIndex(mesh.vertices, mesh.faces).winding(p.astype(np.float64)) != 0
    return torch.from_numpy(out).to(points.device) if is_tensor else out


def winding_number(mesh, points, *, max_block: int = 1 << 12) -> np.ndarray:
    r"""Generalized winding number ``w(p) = \sum_f \Omega_f(p) / 4\pi`` (float64, ``(n,)``).

    ``\Omega_f`` is the signed solid angle of triangle ``f`` seen from ``p`` (Van Oosterom and
    Strackee's formula). ``w`` is 1 inside and 0 outside a closed, outward-oriented mesh, and
    degrades gracefully for open ones (Jacobson et al. 2013). Brute force, O(n * faces) in blocks of
    ``max_block`` point-face pairs: an independent check of :func:`inside_mesh`, slow on big meshes.
    """
    tri = torch.as_tensor(np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)])   # (F, 3, 3)
    if isinstance(points, torch.Tensor):         # any device, with or without grad: computed on the host
        P = points.detach().to("cpu", torch.float64).reshape(-1, 3)
    else:
        P = torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, 3)
    nf = tri.shape[0]
    step_f = min(nf, max_block)
    step_p = max(1, max_block // max(step_f, 1))
    total = torch.zeros(len(P), dtype=torch.float64)
    for i in range(0, len(P), step_p):
        p = P[i:i + step_p, None, :]
        for j in range(0, nf, step_f):
            t = tri[None, j:j + step_f]
            a, b, c = t[..., 0, :] - p, t[..., 1, :] - p, t[..., 2, :] - p
            la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
            det = (a * torch.linalg.cross(b, c)).sum(-1)
            den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
            total[i:i + step_p] += torch.atan2(det, den).sum(dim=1)
    return (total / (2 * np.pi)).numpy()


# ----------------------------------------------------------------------------------------------
# Occupancy samples
# ----------------------------------------------------------------------------------------------

def occupancy_samples(mesh, n: int, *, seed: int = 0, near_surface: float = 0.0, sigma: float = 0.01,
                      cache: bool = True, box: str = "unit") -> tuple[torch.Tensor, torch.Tensor]:
    """Points and exact occupancy labels for training an implicit surface.

    Args:
        mesh: a normalized, closed mesh (from :func:`load_mesh`, which also accepts a
            ``trimesh.Trimesh``).
        n: number of points.
        seed: NumPy ``default_rng`` seed; the same arguments give the same points and labels.
        near_surface: fraction of the points (rounded to a count) drawn on the surface (area
            weighted) and moved by Gaussian noise of standard deviation ``sigma`` per coordinate,
            then clipped to the box. The rest are uniform in the box.
        sigma: that noise's standard deviation, in normalized units (longest axis = 1).
        cache: reuse / store the result under ``cache_dir("occupancy")``, keyed by the mesh's
            :func:`mesh_hash` and all the arguments (written atomically).
        box: ``"unit"`` samples ``[0, 1]^3``; ``"mesh"`` the normalized mesh's bounding box (the
            paper's "scaled mesh's bounding box").

    Returns:
        ``points``: ``(n, 3)`` float32 tensor in the normalized frame, uniform and near-surface
        points shuffled together; ``labels``: ``(n,)`` float32, 1 inside and 0 outside, exact for
        the returned float32 points (:func:`inside_mesh`).
    """
    import trimesh
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"mesh must be a trimesh.Trimesh (see inrlib.data.load_mesh), got {type(mesh).__name__}")
    check_closed(mesh)
    bounds = np.asarray(mesh.bounds, dtype=np.float64)
    if bounds[0].min() < -1e-9 or bounds[1].max() > 1 + 1e-9:
        raise ValueError(f"the mesh is not in the normalized frame (bounds {bounds.tolist()}); pass it through "
                         "inrlib.data.load_mesh(mesh) first, which scales its longest axis to [0, 1]")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 <= near_surface <= 1.0:
        raise ValueError(f"near_surface is a fraction in [0, 1], got {near_surface}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if box not in ("unit", "mesh"):
        raise ValueError(f"box must be 'unit' or 'mesh', got {box!r}")
    key = {"mesh": mesh_hash(mesh), "n": n, "seed": int(seed), "near_surface": float(near_surface),
           "sigma": float(sigma), "box": box, "version": _OCCUPANCY_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    path = cache_dir("occupancy") / f"{digest}.npz"
    if cache and path.is_file():
        try:
            with np.load(path) as z:
                pts, lab = z["points"], z["labels"]
            if pts.shape == (n, 3) and lab.shape == (n,) and pts.dtype == np.float32 and lab.dtype == np.float32:
                return torch.from_numpy(pts), torch.from_numpy(lab)
        except Exception:        # unreadable entry: compute again and overwrite it
            pass
    lo, hi = (np.zeros(3), np.ones(3)) if box == "unit" else (bounds[0], bounds[1])
    rng = np.random.default_rng(int(seed))
    n_near = int(round(near_surface * n))
    uniform = lo + (hi - lo) * rng.random((n - n_near, 3))
    near = sample_surface(mesh, n_near, rng) + rng.normal(0.0, sigma, (n_near, 3)) if n_near else np.empty((0, 3))
    pts = np.concatenate([uniform, np.clip(near, lo, hi)])[rng.permutation(n)].astype(np.float32)
    lab = inside_mesh(mesh, pts.astype(np.float64)).astype(np.float32)
    if cache:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, points=pts, labels=lab)
    return torch.from_numpy(pts), torch.from_numpy(lab)
