"""The experiments layer: configurations as data, one run with NTK snapshots, the resumable sweep."""
import concurrent.futures as cf

import numpy as np
import pytest
import torch

from inrlib.book.studies.scaling import probe_task
from inrlib.data import load_image
from inrlib.encodings import IdentityEncoding
from inrlib.ntk import empirical_ntk, rounding_floor, spectrum
from inrlib.research.experiments import RunConfig, build_model, run, run_ensemble
from inrlib.research.papers import TABLE2, TABLE3
from inrlib.research.sweep import SweepError, SweepWarning, process_pool, sweep, task_key
from inrlib.train import fit


def test_table3_is_the_papers_table():
    """Paper 000, Table 3: every row lr 100, 300 epochs, batch 32; L = 4 / 8 / 16; grids 100 / 200, k = 2."""
    assert list(TABLE3) == ["baseline", "ffe_low", "ffe_mid", "ffe_high", "mpe_coarse", "mpe_fine"]
    for c in TABLE3.values():
        assert (c.lr, c.epochs, c.batch_size, c.hidden, c.optimizer, c.loss) == (100.0, 300, 32, (512, 512), "sgd", "mse")
        assert c.model.options.parameterization == "ntk" and c.model.options.beta == 0.1 and c.activation == "relu"
        assert c.output_activation is None and c.model.out_features is None and "Table 3" in c.source
    assert [TABLE3[n].encoding["levels"] for n in ("ffe_low", "ffe_mid", "ffe_high")] == [4, 8, 16]
    assert TABLE3["mpe_coarse"].encoding == {"type": "multigrid", "resolutions": [100], "features": 2}
    assert TABLE3["mpe_fine"].encoding == {"type": "multigrid", "resolutions": [200], "features": 2}
    assert TABLE3["baseline"].encoding == {"type": "identity"}


def test_table2_is_the_papers_table():
    """Paper 000, Table 2 (Appendix D): Optuna-tuned lr and batch per encoding, 100 epochs, 2 x 512 ReLU."""
    assert list(TABLE2) == ["mpe", "ffe", "baseline"]
    assert [(c.lr, c.batch_size) for c in TABLE2.values()] == [(0.3932, 10), (0.3865, 92), (0.2394, 10)]
    assert TABLE2["mpe"].encoding == {"type": "multigrid", "resolutions": [96, 277], "features": 3}
    assert TABLE2["ffe"].encoding == {"type": "fourier", "levels": 6}
    assert TABLE2["baseline"].encoding == {"type": "identity"}
    for c in TABLE2.values():
        assert (c.epochs, c.hidden, c.optimizer, c.loss, c.model.options.parameterization) == (100, (512, 512), "sgd",
                                                                                               "mse", "ntk")
        assert "Table 2" in c.source


def test_run_config_replace_and_round_trip():
    c = TABLE3["mpe_fine"].replace(lr=3.0, encoding={"resolutions": [40]})
    assert c.encoding == {"type": "multigrid", "resolutions": [40], "features": 2} and c.lr == 3.0
    assert TABLE3["mpe_fine"].encoding["resolutions"] == [200], "replace changed the original"
    assert RunConfig.from_dict(c.to_dict()) == c
    with pytest.raises(TypeError, match="no field"):
        c.replace(learning_rate=1)
    with pytest.raises(ValueError, match="unknown RunConfig fields"):
        RunConfig.from_dict({**c.to_dict(), "momentum": 0.9})


def test_run_config_carries_a_model_config_any_activation_and_loads_old_dicts():
    """The model is a ModelConfig: sine and STAF runs are expressible, the dict is flat JSON (the model's
    entries beside the training settings), and a dict of the earlier format (a top-level
    parameterization, no options) loads to the same configuration."""
    import json

    from inrlib.models import CoordinateMLP, ModelConfig
    staf = RunConfig(name="staf", model=ModelConfig({"type": "identity"}, (8, 8), "staf", {"tau": 3, "w0": 10.0}),
                     optimizer="adam", lr=1e-3)
    d = json.loads(json.dumps(staf.to_dict()))
    assert d["activation"] == "staf" and d["options"] == {"tau": 3, "w0": 10.0, "shared": False, "init": "normal"}
    assert [k for k in d][:8] == ["name", "label", "encoding", "hidden", "activation", "options", "output_activation",
                                  "out_features"] and d["lr"] == 1e-3
    assert RunConfig.from_dict(d) == staf
    built = build_model(staf, 2, 1, seed=3)
    torch.manual_seed(3)
    want = CoordinateMLP(IdentityEncoding(2), [8, 8], 1, "staf", options={"tau": 3, "w0": 10.0})
    assert all(torch.equal(p, q) for p, q in zip(built.state_dict().values(), want.state_dict().values()))
    assert built.mlp[1].tau == 3 and float(built.mlp[1].frequencies.detach().max()) <= 10.0
    sine = staf.replace(activation="sine", hidden=(4,))          # a new activation starts from its defaults
    assert sine.model.options.w0 == 30.0 and sine.hidden == (4,) and staf.hidden == (8, 8)
    with pytest.raises(ValueError, match=r"activation 'sine' has no option\(s\) \['tau'\]"):
        sine.replace(options={"tau": 2})
    old = {"name": "mpe_fine", "encoding": {"type": "multigrid", "resolutions": [200], "features": 2},
           "label": "Fine (MPE)",
           "hidden": [512, 512], "activation": "relu", "parameterization": "ntk", "output_activation": None,
           "optimizer": "sgd", "lr": 100.0, "epochs": 300, "batch_size": 32, "loss": "mse",
           "source": TABLE3["mpe_fine"].source, "note": ""}
    assert RunConfig.from_dict(old) == TABLE3["mpe_fine"]
    std = RunConfig.from_dict({**old, "parameterization": "standard"})
    small_std = std.replace(hidden=(4,), encoding={"resolutions": [5]})
    assert std.model.options.parameterization == "standard"
    assert build_model(small_std, 2, 1).mlp[0].parameterization == "standard"


def test_build_model_is_seeded():
    a = build_model(TABLE3["ffe_low"].replace(hidden=(16,)), 2, 3, seed=4)
    b = build_model(TABLE3["ffe_low"].replace(hidden=(16,)), 2, 3, seed=4)
    c = build_model(TABLE3["ffe_low"].replace(hidden=(16,)), 2, 3, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    assert a.encoding.levels == 4 and a.out_features == 3


def small(name="mpe_coarse", **kw):
    cfg = dict(hidden=(24, 24), epochs=4, lr=5.0, batch_size=16)
    cfg.update(kw)
    if name.startswith("mpe"):
        cfg["encoding"] = {"resolutions": [6]}
    return TABLE3[name].replace(**cfg)


def test_run_snapshots_are_the_kernels_of_the_trained_model():
    """The end snapshot's spectrum is that of the model trained separately by fit for the same epochs
    (CPU runs repeat bitwise), not the initial model's; groups give the MPE's mlp term."""
    coords, targets, _ = load_image("camera", 8, grayscale=True)
    cfg = small()
    seen = []
    res = run(cfg, coords, targets, seed=3, ntk_epochs="start,end", ntk_groups=("total", "mlp"),
              measure=lambda m, e, K, final: seen.append((e, K is not None, final)) or e)
    assert sorted(res["snapshots"]) == [0, 4] and res["diverged"] is None
    assert seen == [(0, True, False), (4, True, True)]
    model = build_model(cfg, 2, 1, seed=3)
    K0 = empirical_ntk(model, coords, groups=True)
    fit(model, coords, targets, **cfg.train_settings, seed=3, progress=False)
    K4 = empirical_ntk(model, coords, groups=True)
    for epoch, K in ((0, K0), (4, K4)):
        for g in ("total", "mlp"):
            ev = spectrum(K[g])
            np.testing.assert_allclose(res["snapshots"][epoch]["spectra"][g], ev, rtol=1e-10, atol=1e-14)
            assert res["snapshots"][epoch]["floors"][g] == pytest.approx(rounding_floor(K[g], ev))
        assert res["snapshots"][epoch]["measure"] == epoch
    assert not np.allclose(res["snapshots"][0]["spectra"]["total"], res["snapshots"][4]["spectra"]["total"], rtol=1e-3)
    assert res["history"]["epochs"] == [1, 2, 3, 4]


def test_run_reports_divergence_instead_of_raising():
    coords, targets, _ = load_image("camera", 8, grayscale=True)
    res = run(small("baseline", lr=1e6), coords, targets, ntk_epochs="start,end")
    assert res["diverged"]["epoch"] == 1 and "lower the learning rate" in res["diverged"]["message"]
    assert list(res["snapshots"]) == [0], "only the snapshot before the divergence exists"


def test_run_rejects_unknown_group():
    coords, targets, _ = load_image("camera", 6, grayscale=True)
    with pytest.raises(Exception, match="NTK group 'gird'"):
        run(small(), coords, targets, ntk_epochs="start", ntk_groups=("gird",))


# ------------------------------------------------------------------ sweep

CALLS = []
FAIL = {"on": None}


def square(name, x):
    CALLS.append(name)
    if x == FAIL["on"]:
        raise RuntimeError(f"planned failure on {x}")
    return {"x": x, "y": x * x}


def test_sweep_resumes_after_an_interrupted_run(tmp_path):
    tasks = [dict(name=f"t{i}", x=i) for i in range(5)]
    CALLS.clear()
    FAIL["on"] = 2
    try:
        with pytest.raises(SweepError, match=r"'t2' failed.*planned failure on 2.*2 finished run\(s\)") as info:
            sweep(square, tasks, tmp_path)
    finally:
        FAIL["on"] = None
    assert CALLS == ["t0", "t1", "t2"]
    assert sorted(p.name.split("-")[0] for p in info.value.saved) == ["t0", "t1"]
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["t0", "t1"], "temporary files left behind"
    CALLS.clear()
    records = sweep(square, tasks, tmp_path)
    assert CALLS == ["t2", "t3", "t4"], "the rerun must compute only what did not finish"
    assert [r["cached"] for r in records] == [True, True, False, False, False]
    assert [r["result"]["y"] for r in records] == [0, 1, 4, 9, 16]
    CALLS.clear()
    assert [r["cached"] for r in sweep(square, tasks, tmp_path)] == [True] * 5 and CALLS == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sweep_keys_and_bad_tasks(tmp_path):
    t = dict(name="a", x=1)
    assert task_key(square, t) == task_key(square, dict(t)) != task_key(square, dict(name="a", x=2))
    assert task_key(square, t, code=None) != task_key(square, t, code="other library")
    with pytest.raises(TypeError, match="must be JSON data"):
        sweep(square, [dict(name="a", x=torch.ones(2))], tmp_path)
    with pytest.raises(ValueError, match="identical tasks"):
        sweep(square, [t, dict(t)], tmp_path)
    # a corrupt saved run is recomputed, not trusted
    (rec,) = sweep(square, [t], tmp_path)
    rec["path"].write_bytes(b"not a saved run")
    CALLS.clear()
    with pytest.warns(SweepWarning, match=rf"cannot use the saved run .*{rec['path'].name}.*recomputing it"):
        (again,) = sweep(square, [t], tmp_path)
    assert CALLS == ["a"] and again["result"] == {"x": 1, "y": 1}


def test_sweep_with_an_executor_stops_and_saves_what_finished(tmp_path):
    tasks = [dict(name=f"t{i}", x=i) for i in range(3)]
    FAIL["on"] = 1
    try:
        with cf.ThreadPoolExecutor(1) as ex, pytest.raises(SweepError, match="'t1' failed"):
            sweep(square, tasks, tmp_path, executor=ex)
    finally:
        FAIL["on"] = None
    assert "t0" in {p.name.split("-")[0] for p in tmp_path.iterdir()}


def probe_tasks():
    cfg = TABLE3["mpe_coarse"].replace(hidden=(16, 16), epochs=2, lr=3.0, encoding={"resolutions": [5]})
    return [dict(name=f"probe{s}", config=cfg.to_dict(), image="camera", side=8, grayscale=True, seed=s)
            for s in range(2)]


def test_sweep_in_a_process_pool_matches_in_process(tmp_path):
    local = sweep(probe_task, probe_tasks(), tmp_path / "local")
    with process_pool(2) as ex:
        pooled = sweep(probe_task, probe_tasks(), tmp_path / "pool", executor=ex)
    for a, b in zip(local, pooled):
        assert a["result"]["psnr"] == pytest.approx(b["result"]["psnr"], rel=1e-9)
        assert a["result"]["loss"] == pytest.approx(b["result"]["loss"], rel=1e-9)
    assert local[0]["result"]["psnr"] != local[1]["result"]["psnr"], "the seeds should give different runs"


def test_sweep_on_a_dask_cluster_matches_in_process(tmp_path):
    distributed = pytest.importorskip("distributed")
    local = sweep(probe_task, probe_tasks(), tmp_path / "local")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = sweep(probe_task, probe_tasks(), tmp_path / "dask", executor=client.get_executor())
    for a, b in zip(local, remote):
        assert not b["cached"]
        assert a["result"]["psnr"] == pytest.approx(b["result"]["psnr"], rel=1e-9)


def test_run_ensemble_members_equal_single_runs():
    """Each member of run_ensemble gives run's spectra, history and measure for its own signal and seed;
    a diverging member is reported and leaves the others alone."""
    cfg = small(epochs=3).replace(lr=0.5)
    data = []
    for name in ("camera", "astronaut", "coffee"):
        c, t, _ = load_image(name, 8, grayscale=True)
        data.append((c, t))
    data[2] = (data[2][0], data[2][1] * 1e18)            # float32 models: finite loss, then overflow
    measure = lambda model, epoch, kernels, final: float(model(torch.full((1, 2), 0.5)).detach())
    fk = {"full_eval": True}
    ens = run_ensemble(cfg, data, seeds=[3, 4, 5], ntk_epochs="start,end", ntk_groups=("total", "mlp"),
                       measure=measure, fit_kwargs=fk)
    assert ens[2]["diverged"] is not None and "diverged" in ens[2]["diverged"]["message"]
    for m in (0, 1):
        ref = run(cfg.replace(), data[m][0], data[m][1], seed=3 + m, ntk_epochs="start,end",
                  ntk_groups=("total", "mlp"), measure=measure, fit_kwargs=fk)
        assert ens[m]["diverged"] is None and ens[m]["ensemble"] == {"members": 3, "member": m}
        assert sorted(ens[m]["snapshots"]) == sorted(ref["snapshots"]) == [0, 3]
        for e in (0, 3):
            for g in ("total", "mlp"):
                ev = ref["snapshots"][e]["spectra"][g]      # float32 members: equal to rounding
                np.testing.assert_allclose(ens[m]["snapshots"][e]["spectra"][g], ev, rtol=1e-4, atol=1e-6 * ev[0])
            assert ens[m]["snapshots"][e]["measure"] == pytest.approx(ref["snapshots"][e]["measure"], rel=1e-4)
        np.testing.assert_allclose(ens[m]["history"]["loss"], ref["history"]["loss"], rtol=1e-5)
    assert ens[0]["snapshots"][3]["measure"] != ens[1]["snapshots"][3]["measure"]
