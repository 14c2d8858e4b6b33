"""The occupancy study: Table 4, mesh lists, one task end to end on a sphere, the claim rules."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from inrlib.experiments import TABLE4, table4
from inrlib.studies import occupancy as O

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def test_table4_is_the_papers_table():
    """Paper 000, Table 4: per mesh lr / batch / grid; 4000 epochs; 8 x 256 ReLU, sigmoid, BCE, SGD."""
    expect = {"armadillo": (0.99469, 10903, [44], 1), "buddha": (0.78445, 9267, [38, 102], 2),
              "dragon": (0.80905, 9989, [33, 136], 2)}
    for mesh, (lr, bs, res, k) in expect.items():
        base, ffe, mpe = table4(mesh)
        assert (base.lr, base.batch_size, base.encoding) == (0.92224, 13187, {"type": "identity"})
        assert (ffe.lr, ffe.batch_size, ffe.encoding) == (0.78930, 9799, {"type": "fourier", "levels": 7})
        assert (mpe.lr, mpe.batch_size, mpe.encoding) == (lr, bs, {"type": "multigrid", "resolutions": res, "features": k})
    for c in TABLE4.values():
        assert (c.epochs, c.hidden, c.loss, c.optimizer, c.output_activation) == (4000, (256,) * 8, "bce", "sgd", "sigmoid")
        assert "Table 4" in c.source
    with pytest.raises(ValueError, match="armadillo, buddha, dragon"):
        table4("bunny")


def test_mesh_list_parses_names_and_paths_and_picks_rows():
    ms = O.mesh_list("bunny, /data/Armadillo.ply,dragon, ~/scans/happy_buddha_vrip.ply, /x/dragon.obj")
    assert [m["name"] for m in ms] == ["bunny", "armadillo", "dragon", "happy_buddha_vrip", "dragon_2"]
    assert [m["row"] for m in ms] == ["dragon", "armadillo", "dragon", "buddha", "dragon"]
    assert ms[0]["row_note"] and not ms[1]["row_note"]
    with pytest.raises(ValueError, match="meshes is empty"):
        O.mesh_list(" , ")


def test_table4_configs_apply_the_changes():
    cs = O.table4_configs("buddha", epochs=10, batch_size=64, hidden=(16, 16), lr_scale=10)
    assert [c.name for c in cs] == ["baseline", "ffe", "mpe"]
    assert [c.lr for c in cs] == pytest.approx([9.2224, 7.893, 7.8445])
    assert all(c.epochs == 10 and c.batch_size == 64 and c.hidden == (16, 16) for c in cs)
    assert "lr x 10" in cs[2].note and cs[2].encoding["resolutions"] == [38, 102]


@pytest.fixture(scope="module")
def sphere_path(tmp_path_factory):
    s = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    path = tmp_path_factory.mktemp("mesh") / "sphere.ply"
    s.export(path)
    return str(path)


def test_occupancy_task_on_a_sphere(sphere_path):
    cfg = O.table4_configs("dragon", epochs=30, batch_size=256, hidden=(32, 32), lr_scale=10)[2]
    cfg = cfg.replace(encoding={"resolutions": [6]})
    r = O.occupancy_task("sphere-mpe", cfg.to_dict(), sphere_path, 0, 4000, 256, 32, [15, 30], 2000, 10, 20, 2000, 32)
    assert sorted(e for e, s in r["snapshots"].items() if "spectra" in s) == [15, 30]
    assert r["iou_curve"]["epochs"] == [0, 10, 20, 30] and len(r["iou_curve"]["near"]) == 4   # epoch 0: untrained
    # the normalized sphere fills 4/3 pi 0.5^3 of its unit bounding box
    assert r["inside_fraction"] == pytest.approx(4 / 3 * np.pi * 0.5 ** 3, abs=0.03)
    f = r["final"]
    assert f["iou"]["uniform"] == r["iou_curve"]["uniform"][-1]
    if "no_surface" in f:
        assert "predicts no surface" in f["no_surface"] and f["chamfer"] is None
    else:
        assert f["render"].shape == (32, 32) and 0 < f["chamfer"]["chamfer_l1"] < 1
    assert r["truth_render"].shape == (32, 32) and r["truth_render"].min() < 1       # the sphere is in view
    ctl = O.occupancy_task("c", cfg.to_dict(), sphere_path, 0, 4000, 256, 32, [], 2000, 10, 20, 2000, 32, surface=False)
    assert ctl["truth_render"] is None and set(ctl["final"]) == {"iou"} and not any(
        "spectra" in s for s in ctl["snapshots"].values())


def row(mesh, enc, u, n, div=None):
    return {"mesh": mesh, "encoding": enc, "iou_uniform": u, "iou_near": n, "diverged_epoch": div}


def curve(values, floor=1e-12):
    return {"mean": np.asarray(values, float), "floor": floor, "n": 2}


def test_claim_rules():
    rows = [row("a", "mpe", 0.9, 0.8), row("a", "ffe", 0.8, 0.6), row("a", "baseline", 0.5, 0.7),
            row("b", "mpe", 0.9, 0.8), row("b", "ffe", 0.8, 0.6), row("b", "baseline", 0.5, 0.3)]
    x = np.arange(10.0)
    curves = {"mpe": curve(10 ** (-x)), "ffe": curve(10 ** (-x - 0.5)), "baseline": curve(10 ** (-2 * x - 1))}
    cl = {c["id"]: c for c in O.occupancy_claims(rows, curves, "ctx")}
    assert cl["000.appE.iou_order.a"]["verdict"] == "approximately"          # uniform ordered, near not
    assert cl["000.appE.iou_order.b"]["verdict"] == "holds"
    assert cl["000.appE.iou_order.b"]["source"].startswith("paper 000, Appendix E")
    assert cl["000.fig5b.order"]["verdict"] == "holds" and cl["000.fig5b.order"]["ours"] == 1.0
    m = cl["000.fig5b.min_eig_ffe_close_to_mpe"]
    assert m["ours"] == pytest.approx(0.5) and m["verdict"] == "holds"
    curves["ffe"] = curve(10 ** (-x - 2.5))
    assert {c["id"]: c for c in O.occupancy_claims(rows, curves, "ctx")}["000.fig5b.min_eig_ffe_close_to_mpe"]["verdict"] == "differs"
    curves["mpe"] = None
    none = {c["id"]: c for c in O.occupancy_claims(rows, curves, "ctx")}
    assert none["000.fig5b.order"]["verdict"] == "not tested"


def test_output_kernel_is_the_logit_kernel_times_the_sigmoid_slopes():
    """Chain rule: K_out(x, x') = s(x) s(x') K_logit(x, x'), s = sigmoid'(z) at the logit z."""
    import torch

    from inrlib.experiments import build_model
    from inrlib.ntk import empirical_ntk
    cfg = O.table4_configs("dragon", hidden=(16, 16))[2].replace(encoding={"resolutions": [5]})
    model = build_model(cfg, 3, 1, seed=3).double()
    x = torch.rand(40, 3, dtype=torch.float64)
    z = O.logits(model)(x).reshape(-1)
    slope = torch.sigmoid(z) * (1 - torch.sigmoid(z))
    k_out = empirical_ntk(model, x)
    k_logit = empirical_ntk(O.logits(model), x)
    torch.testing.assert_close(k_out, slope[:, None] * slope[None, :] * k_logit, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="sigmoid"):
        O.logits(build_model(cfg.replace(output_activation=None), 3, 1))
