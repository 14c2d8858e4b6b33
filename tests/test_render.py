"""inrlib.render: level sets, Chamfer-L1 and ray-cast pictures against closed forms for spheres."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from inrlib.metrics import iou
from inrlib.render import EmptySurfaceError, chamfer_l1, evaluate_grid, extract_surface, render

C, R = np.array([0.5, 0.5, 0.5]), 0.3


def ball(center=C, radius=R):
    c = torch.as_tensor(center, dtype=torch.float32)
    return lambda p: ((p - c).norm(dim=1) < radius).float()


def true_sphere(radius=R, center=C):
    s = trimesh.creation.icosphere(subdivisions=6, radius=radius)
    s.apply_translation(center)
    return s


def test_grid_values_are_the_function_on_the_grid_nodes():
    f = lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2]          # noqa: E731
    v = evaluate_grid(f, 5, box=((0, 0, 0), (1, 2, 4)), chunk=7)
    i, j, k = np.meshgrid(np.arange(5), np.arange(5), np.arange(5), indexing="ij")
    np.testing.assert_allclose(v, i / 4 + 10 * 2 * j / 4 + 100 * 4 * k / 4, rtol=1e-6)


@pytest.mark.parametrize("resolution", [48, 96])
def test_a_spheres_level_set_is_the_sphere_to_grid_accuracy(resolution):
    mesh = extract_surface(ball(), resolution)
    h = 1 / (resolution - 1)
    assert mesh.is_watertight and mesh.volume > 0                    # closed, normals outward
    assert abs(mesh.volume - 4 / 3 * math.pi * R ** 3) < 4 * math.pi * R ** 2 * h
    radii = np.linalg.norm(mesh.vertices - C, axis=1)
    assert np.abs(radii - R).max() <= h                               # every vertex within one grid step
    ch = chamfer_l1(mesh, true_sphere(), n=20_000)
    spacing = math.sqrt(4 * math.pi * R ** 2 / 20_000)
    assert ch["chamfer_l1"] < 0.5 * h + spacing


def test_chamfer_of_concentric_spheres_is_their_gap():
    ch = chamfer_l1(true_sphere(0.3), true_sphere(0.33), n=40_000)
    assert ch["chamfer_l1"] == pytest.approx(0.03, abs=0.004)
    assert ch["accuracy"] == pytest.approx(ch["completeness"], abs=0.004)


def test_iou_of_a_shifted_sphere_is_the_lens_formula():
    """Two balls of radius r at distance d intersect in a lens of volume pi (4r + d)(2r - d)^2 / 12."""
    d = 0.15
    pts = torch.from_numpy(np.random.default_rng(0).random((400_000, 3))).float()
    truth = ball()(pts)
    pred = ball(C + np.array([d, 0, 0]))(pts)
    v = 4 / 3 * math.pi * R ** 3
    lens = math.pi * (4 * R + d) * (2 * R - d) ** 2 / 12
    expect = lens / (2 * v - lens)
    union = (2 * v - lens) * 400_000
    assert float(iou(pred, truth)) == pytest.approx(expect, abs=4 * math.sqrt(expect * (1 - expect) / union))
    assert float(iou(truth, truth)) == 1.0


def test_no_surface_and_oversized_grids_are_refused_clearly():
    with pytest.raises(EmptySurfaceError, match="predicts no surface.*outside"):
        extract_surface(lambda p: torch.zeros(len(p)), 16)
    with pytest.raises(EmptySurfaceError, match="inside"):
        extract_surface(np.ones((8, 8, 8)))
    with pytest.raises(MemoryError, match=r"100000\^3 grid .* GiB"):
        extract_surface(ball(), 100_000)
    with pytest.raises(ValueError, match="resolution"):
        extract_surface(ball(), 1)


def test_render_of_a_sphere_matches_its_closed_form():
    eye = np.array([0.5, 0.5, 2.5])
    pic = render(true_sphere(), 121, 121, eye=eye, target=C, fov_deg=30)
    dist = np.linalg.norm(eye - C)
    assert pic["depth"][60, 60] == pytest.approx(dist - R, abs=2e-3)          # centre ray hits the front
    assert pic["shaded"][60, 60] == pytest.approx(1.0, abs=2e-3)              # normal towards the light
    half = math.asin(R / dist)                                                  # angular radius of the disk
    t = math.tan(math.radians(15))
    frac = math.pi * math.tan(half) ** 2 / (2 * t) ** 2
    assert pic["hit"].mean() == pytest.approx(frac, rel=0.03)
    assert np.isnan(pic["depth"][0, 0]) and pic["shaded"][0, 0] == 1.0
    n = pic["normal"][pic["hit"]]
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-6)
