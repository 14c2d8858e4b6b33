r"""Implicit surfaces: extract an occupancy network's level set, compare it with the truth, render it.

- :func:`evaluate_grid`: an occupancy function on a regular ``R^3`` grid over a box, in chunks
  (bounded memory; the size is checked before anything is allocated);
- :func:`extract_surface`: the ``level`` (default 0.5) iso-surface by marching cubes
  (``skimage.measure.marching_cubes``) as a ``trimesh.Trimesh`` in the box's frame;
- :func:`surface_points`, :func:`chamfer_l1`: Chamfer-L1 between two surfaces as occupancy work
  (Mescheder et al. 2019, Occupancy Networks) reports it;
- :func:`render`: depth and Lambertian-shaded normals of a mesh seen from a camera, by casting one
  ray per pixel against its triangles (``trimesh``'s ray caster); :func:`camera_rays` builds them.

Frames and units: everything is in the normalized mesh frame of :func:`inrlib.data.load_mesh`
(longest axis ``[0, 1]``), so distances are fractions of the object's longest side.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["evaluate_grid", "extract_surface", "sample_surface", "surface_points", "chamfer_l1", "camera_rays", "render",
           "EmptySurfaceError"]


class EmptySurfaceError(ValueError):
    """The occupancy never crosses the level on the grid: there is no surface to extract."""


def _check_resolution(resolution: int, chunk: int) -> int:
    from . import resources
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2 (grid nodes per axis), got {resolution!r}")
    r = int(resolution)
    # the float32 grid of values, marching cubes' working copies (about 4 more float32 / bool planes of
    # it), and one chunk of float32 coordinates
    need = r ** 3 * 4 * 5 + chunk * 3 * 4
    free = resources.available_memory(torch.device("cpu"))
    if need > free:
        fits = int((free / 20) ** (1 / 3))
        raise MemoryError(f"a {r}^3 grid needs about {need / 2**30:.1f} GiB of host memory to evaluate and "
                          f"extract, but {free / 2**30:.1f} GiB is available; use resolution <= {fits}")
    return r


def evaluate_grid(fn: Callable[[Tensor], Tensor], resolution: int, *, box: Sequence[Sequence[float]] = ((0, 0, 0), (1, 1, 1)),
                  chunk: int = 65536, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> np.ndarray:
    """``fn`` (points ``(B, 3)`` -> values ``(B,)`` or ``(B, 1)``) on the ``R^3`` grid
    ``linspace(box[0][a], box[1][a], R)`` per axis ``a``; returns a float32 ``(R, R, R)`` array indexed
    ``[i_x, i_y, i_z]``. Evaluated under ``no_grad`` in chunks of ``chunk`` points."""
    r = _check_resolution(resolution, int(chunk))
    lo, hi = np.asarray(box[0], np.float64), np.asarray(box[1], np.float64)
    axes = [torch.linspace(float(lo[a]), float(hi[a]), r, dtype=dtype, device=device) for a in range(3)]
    out = np.empty(r ** 3, dtype=np.float32)
    ij = torch.arange(r ** 3, device=device)
    with torch.no_grad():
        for i in range(0, r ** 3, int(chunk)):
            k = ij[i:i + int(chunk)]
            pts = torch.stack([axes[0][k // (r * r)], axes[1][(k // r) % r], axes[2][k % r]], dim=1)
            v = fn(pts)
            out[i:i + len(k)] = v.reshape(len(k)).detach().float().cpu().numpy()
    return out.reshape(r, r, r)


def extract_surface(values_or_fn, resolution: int | None = None, *, level: float = 0.5,
                    box: Sequence[Sequence[float]] = ((0, 0, 0), (1, 1, 1)), chunk: int = 65536,
                    device: torch.device | str = "cpu"):
    """The ``level`` iso-surface of an occupancy field as a ``trimesh.Trimesh`` in the box's frame.

    ``values_or_fn``: an ``(R, R, R)`` array from :func:`evaluate_grid`, or a function of points
    (then ``resolution`` is required). Faces are oriented with normals pointing out of the
    ``> level`` region. The surface's accuracy is about one grid step, ``(hi - lo) / (R - 1)``.

    Raises :class:`EmptySurfaceError` ("the network predicts no surface") when every value is on
    one side of ``level``, and ``MemoryError`` for a grid that cannot fit.
    """
    import trimesh
    from skimage.measure import marching_cubes

    if callable(values_or_fn):
        if resolution is None:
            raise ValueError("give the grid resolution when passing a function")
        values = evaluate_grid(values_or_fn, resolution, box=box, chunk=chunk, device=device)
    else:
        values = np.asarray(values_or_fn, dtype=np.float32)
        if values.ndim != 3 or len(set(values.shape)) != 1:
            raise ValueError(f"values must be an (R, R, R) grid, got shape {values.shape}")
    vmin, vmax = float(values.min()), float(values.max())
    if not (vmin < level < vmax):
        side = "inside" if vmin >= level else "outside"
        raise EmptySurfaceError(f"the network predicts no surface: every value on the {values.shape[0]}^3 grid is "
                                f"{side} (values in [{vmin:.3g}, {vmax:.3g}], level {level}); it has not learned the "
                                "shape (train longer, check the learning rate) or the grid is too coarse")
    lo, hi = np.asarray(box[0], np.float64), np.asarray(box[1], np.float64)
    r = values.shape[0]
    spacing = tuple((hi - lo) / (r - 1))
    verts, faces, _, _ = marching_cubes(values, level=level, spacing=spacing)
    # skimage orients faces towards increasing values (the inside): flip for outward normals
    mesh = trimesh.Trimesh(vertices=verts + lo, faces=faces[:, ::-1], process=True)
    return mesh


def sample_surface(mesh, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on a triangle mesh's surface (area-weighted face, uniform barycentric), drawn
    from ``rng``: ``(n, 3)`` float64. :func:`surface_points` is the seeded, checked entry point."""
    area = np.asarray(mesh.area_faces, dtype=np.float64)
    face = rng.choice(len(area), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    tri = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)[face]]
    return (1 - s)[:, None] * tri[:, 0] + (s * (1 - r2))[:, None] * tri[:, 1] + (s * r2)[:, None] * tri[:, 2]


def surface_points(mesh, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points uniform on the surface (area-weighted), seeded: ``(n, 3)`` float64."""
    if len(mesh.faces) == 0:
        raise EmptySurfaceError("the mesh has no faces to sample")
    return sample_surface(mesh, int(n), np.random.default_rng(seed))


def chamfer_l1(mesh_a, mesh_b, n: int = 100_000, seed: int = 0) -> dict[str, float]:
    """Chamfer-L1 distance between two surfaces, as Occupancy Networks defines it.

    ``n`` points are drawn uniformly (by area) on each surface; ``accuracy`` is the mean Euclidean
    distance from a point of ``a`` to the nearest point of ``b``'s sample, ``completeness`` the
    same from ``b`` to ``a``, and ``chamfer_l1 = (accuracy + completeness) / 2`` ("L1": distances,
    not squared). Units: the meshes' frame (here the longest axis is 1). Point-to-point distances
    between finite samples overestimate point-to-surface ones by about the sample spacing,
    ``~ sqrt(area / n)``: compare values computed with the same ``n``.
    """
    from scipy.spatial import cKDTree
    pa, pb = surface_points(mesh_a, n, seed), surface_points(mesh_b, n, seed + 1)
    acc = float(cKDTree(pb).query(pa)[0].mean())
    comp = float(cKDTree(pa).query(pb)[0].mean())
    return {"chamfer_l1": 0.5 * (acc + comp), "accuracy": acc, "completeness": comp, "n": int(n)}


def camera_rays(width: int, height: int, *, eye: Sequence[float], target: Sequence[float] = (0.5, 0.5, 0.5),
                up: Sequence[float] = (0, 1, 0), fov_deg: float = 35.0) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions ``(H * W, 3)`` of a pinhole camera at ``eye`` looking at ``target``
    (row 0 at the top of the picture), vertical field of view ``fov_deg``."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("the camera's up vector is parallel to its viewing direction; choose another up")
    right /= np.linalg.norm(right)
    true_up = np.cross(right, fwd)
    t = np.tan(np.radians(fov_deg) / 2)
    xs = (np.arange(width) + 0.5) / width * 2 - 1
    ys = 1 - (np.arange(height) + 0.5) / height * 2
    gx, gy = np.meshgrid(xs * t * width / height, ys * t)
    d = fwd[None] + gx.reshape(-1, 1) * right[None] + gy.reshape(-1, 1) * true_up[None]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.repeat(eye[None], d.shape[0], axis=0), d


def render(mesh, width: int = 160, height: int = 160, *, eye: Sequence[float] = (1.6, 1.3, 2.2),
           target: Sequence[float] | None = None, light: Sequence[float] | None = None,
           fov_deg: float = 35.0) -> dict[str, np.ndarray]:
    """Depth and shaded normals of ``mesh`` from a pinhole camera (first hit of one ray per pixel).

    ``target`` defaults to the mesh's bounding-box centre, ``light`` (a direction towards the light)
    to the camera's direction. Returns ``{"depth": (H, W)`` distance along the ray, NaN where the ray
    misses; ``"normal": (H, W, 3)`` unit face normals facing the camera (0 on a miss); ``"shaded":
    (H, W)`` Lambertian ``0.15 + 0.85 max(0, n . l)``, 1 (white) on a miss; ``"hit": (H, W)`` bool}.
    """
    import trimesh
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise EmptySurfaceError("render needs a trimesh.Trimesh with faces")
    target = mesh.bounds.mean(axis=0) if target is None else np.asarray(target, np.float64)
    origins, dirs = camera_rays(width, height, eye=eye, target=target, fov_deg=fov_deg)
    locs, ray_idx, tri_idx = mesh.ray.intersects_location(origins, dirs, multiple_hits=False)
    depth = np.full(width * height, np.nan)
    normal = np.zeros((width * height, 3))
    if len(ray_idx):
        depth[ray_idx] = np.linalg.norm(locs - origins[ray_idx], axis=1)
        nrm = np.asarray(mesh.face_normals)[tri_idx]
        facing = np.sign(-(nrm * dirs[ray_idx]).sum(axis=1, keepdims=True))
        normal[ray_idx] = nrm * np.where(facing == 0, 1, facing)
    l = -dirs.mean(axis=0) if light is None else np.asarray(light, np.float64)
    l = l / np.linalg.norm(l)
    hit = np.isfinite(depth)
    shaded = np.where(hit, 0.15 + 0.85 * np.clip(normal @ l, 0, None), 1.0)
    return {"depth": depth.reshape(height, width), "normal": normal.reshape(height, width, 3),
            "shaded": shaded.reshape(height, width), "hit": hit.reshape(height, width)}
