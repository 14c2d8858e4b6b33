"""inrlib.train.fit_ensemble: every member follows the trajectory it follows alone under fit."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from inrlib.models import ModelConfig
from inrlib.research.experiments import RunConfig, build_model
from inrlib.train import CallbackError, fit, fit_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

ENCODINGS = {
    "baseline": {"type": "identity"},
    "ffe": {"type": "fourier", "levels": 3},
    "mpe": {"type": "multigrid", "resolutions": [5, 9], "features": 2},
    "hash": {"type": "hashgrid", "levels": 2, "min_resolution": 4, "max_resolution": 16, "log2_table_size": 5,
             "init_scale": 0.1},
}


def members(encoding: str, m: int, dtype=torch.float64, out: int = 1, **model) -> list[torch.nn.Module]:
    cfg = RunConfig(name=encoding, model=ModelConfig(ENCODINGS[encoding], (16, 16), **model))
    return [build_model(cfg, 2, out, seed=10 + i).to(dtype) for i in range(m)]


def member_data(m: int, n: int = 37, dtype=torch.float64, out: int = 1):
    g = torch.Generator().manual_seed(3)
    coords = [torch.rand(n, 2, generator=g, dtype=dtype) for _ in range(m)]
    targets = [torch.rand(n, out, generator=g, dtype=dtype) for _ in range(m)]
    return coords, targets


def assert_same_run(ens_model, ens_hist, alone_model, alone_hist, tol=1e-10):
    for (name, a), b in zip(ens_model.named_parameters(), alone_model.parameters()):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m: f"{name}: {m}")
    torch.testing.assert_close(torch.tensor(ens_hist.loss), torch.tensor(alone_hist.loss), rtol=tol, atol=0)
    torch.testing.assert_close(torch.tensor(ens_hist.full_loss), torch.tensor(alone_hist.full_loss), rtol=tol, atol=0)
    assert ens_hist.psnr == pytest.approx(alone_hist.psnr, rel=tol)
    assert ens_hist.epochs == alone_hist.epochs


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.5), ("adam", 1e-2)])
def test_members_follow_their_fit_trajectories(encoding, optimizer, lr):
    """Per-member data and seeds, batches of 10 with an uneven last one, float64, SGD and Adam."""
    models = members(encoding, 3)
    alone = copy.deepcopy(models)
    coords, targets = member_data(3)
    hists = fit_ensemble(models, coords, targets, epochs=4, lr=lr, batch_size=10, optimizer=optimizer,
                         seeds=[5, 6, 7], progress=False)
    assert len(hists) == 3
    for m in range(3):
        h = fit(alone[m], coords[m], targets[m], epochs=4, lr=lr, batch_size=10, optimizer=optimizer,
                seed=5 + m, progress=False)
        assert_same_run(models[m], hists[m], alone[m], h)
        assert hists[m].config["ensemble"] == {"members": 3, "member": m} and hists[m].member == m
        assert hists[m].config["seed"] == 5 + m and hists[m].diverged_epoch is None
    # members really differ (different weights and data): the test is not comparing one run with itself
    assert hists[0].loss != hists[1].loss


def test_shared_coords_per_member_targets_and_momentum():
    models = members("mpe", 4)
    alone = copy.deepcopy(models)
    coords, targets = member_data(4)
    shared = coords[0]
    kw = dict(epochs=3, lr=0.3, batch_size=8, optimizer_kwargs={"momentum": 0.9}, progress=False)
    hists = fit_ensemble(models, shared, targets, **kw)
    for m in range(4):
        assert_same_run(models[m], hists[m], alone[m], fit(alone[m], shared, targets[m], seed=m, **kw))


def test_a_diverging_member_stops_and_the_others_finish():
    models = members("ffe", 3)
    alone = copy.deepcopy(models)
    coords, targets = member_data(3)
    targets[1] = targets[1] * 1e150              # finite loss before training, huge steps: overflow after
    hists = fit_ensemble(models, coords, targets, epochs=3, lr=0.1, batch_size=10, progress=False)
    assert math.isfinite(hists[1].initial["loss"])
    epoch = int(hists[1].stopped.removeprefix("diverged in epoch "))
    assert 1 <= epoch <= 2 and hists[1].epochs == list(range(1, epoch))
    for m in (0, 2):
        assert hists[m].stopped is None and hists[m].epochs == [1, 2, 3]
        h = fit(alone[m], coords[m], targets[m], epochs=3, lr=0.1, batch_size=10, seed=m, progress=False)
        assert_same_run(models[m], hists[m], alone[m], h)


def test_callbacks_and_eval_fn_see_each_members_own_parameters():
    models = members("mpe", 2)
    alone = copy.deepcopy(models)
    coords, targets = member_data(2)

    def snap(model, epoch, history):
        return [p.detach().clone() for p in model.parameters()]

    def metric(model, epoch):
        return float(model(coords[0][:5]).sum())

    kw = dict(epochs=4, lr=0.5, batch_size=10, callbacks={"params": snap}, snapshot_epochs="start,2,end",
              eval_fn=metric, progress=False)
    hists = fit_ensemble(models, coords, targets, **kw)
    for m in range(2):
        h = fit(alone[m], coords[m], targets[m], seed=m, **kw)
        assert sorted(hists[m].snapshots["params"]) == [0, 2, 4]
        for epoch in (0, 2, 4):
            for a, b in zip(hists[m].snapshots["params"][epoch], h.snapshots["params"][epoch]):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        assert hists[m].metrics["eval"] == pytest.approx(h.metrics["eval"], rel=1e-10)
        assert hists[m].initial["metrics"]["eval"] == pytest.approx(h.initial["metrics"]["eval"], rel=1e-10)


def test_bce_iou_and_resample_per_member():
    models = members("baseline", 2, output_activation="sigmoid")
    alone = copy.deepcopy(models)
    g0 = torch.Generator().manual_seed(0)
    coords = [torch.rand(40, 2, generator=g0, dtype=torch.float64) for _ in range(2)]
    labels = [((c - 0.5).norm(dim=1) < r).double() for c, r in zip(coords, (0.3, 0.4))]

    def draw(radius, generator):
        c = torch.rand(40, 2, generator=generator, dtype=torch.float64)
        return c, ((c - 0.5).norm(dim=1) < radius).double()

    kw = dict(epochs=3, lr=1.0, batch_size=16, loss="bce", progress=False)
    hists = fit_ensemble(models, coords, labels, resample=lambda m, e, g: draw((0.3, 0.4)[m], g), **kw)
    for m in range(2):
        h = fit(alone[m], coords[m], labels[m], seed=m, resample=lambda e, g: draw((0.3, 0.4)[m], g), **kw)
        assert_same_run(models[m], hists[m], alone[m], h)
        assert hists[m].iou == pytest.approx(h.iou, abs=0) and len(h.iou) == 3


def test_float32_members_agree_to_rounding():
    models = members("mpe", 2, dtype=torch.float32)
    alone = copy.deepcopy(models)
    coords, targets = member_data(2, dtype=torch.float32)
    hists = fit_ensemble(models, coords, targets, epochs=2, lr=0.5, batch_size=10, progress=False)
    for m in range(2):
        h = fit(alone[m], coords[m], targets[m], epochs=2, lr=0.5, batch_size=10, seed=m, progress=False)
        assert_same_run(models[m], hists[m], alone[m], h, tol=1e-4)


def test_a_failing_callback_names_the_member():
    models = members("baseline", 2)
    coords, targets = member_data(2)

    def boom(model, epoch, history):
        if history.config["ensemble"]["member"] == 1 and epoch == 1:
            raise RuntimeError("no")

    with pytest.raises(CallbackError, match=r"epoch 1 \(ensemble member 1\)") as info:
        fit_ensemble(models, coords, targets, epochs=2, lr=0.1, callbacks=boom, snapshot_epochs="all", progress=False)
    assert info.value.member == 1 and info.value.history.epochs == [1]


@pytest.mark.parametrize("change, match", [
    (dict(seeds=[1]), "1 seeds for 2 models"),
    (dict(coords="three"), "3 arrays for 2 models"),
    (dict(models="other"), "differs from models\\[0\\]"),
    (dict(models="class"), "share one architecture"),
    (dict(models="empty"), "non-empty list"),
    (dict(sizes=True), "same shape"),
])
def test_bad_ensembles_are_refused_clearly(change, match):
    models = members("baseline", 2)
    coords, targets = member_data(2)
    kwargs = dict(epochs=1, lr=0.1, progress=False)
    if "seeds" in change:
        kwargs["seeds"] = change["seeds"]
    if change.get("coords") == "three":
        coords = coords + coords[:1]
    if change.get("models") == "other":
        models[1] = members("baseline", 1)[0].float()
    if change.get("models") == "class":
        models[1] = torch.nn.Linear(2, 1).double()
    if change.get("models") == "empty":
        models = []
    if change.get("sizes"):
        coords[1], targets[1] = coords[1][:20], targets[1][:20]
    with pytest.raises((ValueError, TypeError), match=match):
        fit_ensemble(models, coords, targets, **kwargs)


def test_one_member_is_fit_and_reports_divergence_instead_of_raising():
    models = members("mpe", 1, dtype=torch.float32)
    alone = copy.deepcopy(models)
    coords, targets = member_data(1, dtype=torch.float32)
    (h,) = fit_ensemble(models, coords, targets, epochs=2, lr=0.5, batch_size=10, seeds=[4], progress=False)
    ref = fit(alone[0], coords[0], targets[0], epochs=2, lr=0.5, batch_size=10, seed=4, progress=False)
    assert h.loss == ref.loss and all(torch.equal(a, b) for a, b in zip(models[0].parameters(), alone[0].parameters()))
    (bad,) = fit_ensemble(members("ffe", 1), coords[0].double(), targets[0].double() * 1e150, epochs=3, lr=0.1,
                          batch_size=10, progress=False)
    assert bad.stopped.startswith("diverged in epoch") and "lower the learning rate" in bad.message
    assert bad.stopped == f"diverged in epoch {bad.diverged_epoch}" and bad.diverged_epoch == len(bad.epochs) + 1
    assert bad.member == 0 and h.member == 0 and ref.member is None          # fit's history is no member's


def test_ensemble_refusals_name_the_member():
    models = members("baseline", 2)
    coords, targets = member_data(2)
    kw = dict(epochs=2, lr=0.1, progress=False)
    for bad, message in ((torch.nn.Linear(2, 1), "models must be a non-empty list of nn.Module members (for one "
                                                 "model use fit)"),
                         (42, "models must be a non-empty list"), ([], "models must be a non-empty list"),
                         ([models[0], "m"], "models[1] must be a torch.nn.Module, got str")):
        with pytest.raises(TypeError) as info:
            fit_ensemble(bad, coords, targets, **kw)
        assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(ValueError, match=r"^seeds holds 3 seeds for 2 models; give one per member$"):
        fit_ensemble(models, coords, targets, seeds=[0, 1, 2], **kw)
    with pytest.raises(TypeError, match=r"^seeds\[1\] must be an integer, got 1\.0$"):
        fit_ensemble(models, coords, targets, seeds=[0, 1.0], **kw)
    with pytest.raises(ValueError, match=r"^targets is a list of 1 arrays for 2 models; give one per member, or one "
                                         r"array shared by all$"):
        fit_ensemble(models, coords, targets[:1], **kw)
    with pytest.raises(ValueError, match=r"^coords\[1\] must be 2-D \(N, d\), got shape \(37,\)"):
        fit_ensemble(models, [coords[0], coords[1][:, 0]], targets, **kw)
    with pytest.raises(ValueError, match=r"^device 'gpu' is not a torch device"):
        fit_ensemble(models, coords, targets, device="gpu", **kw)
    frozen = [m.requires_grad_(False) for m in members("baseline", 2)]
    with pytest.raises(ValueError, match=r"^none of the models' parameters requires grad; there is nothing to train$"):
        fit_ensemble(frozen, coords, targets, **kw)

    class Empty(torch.nn.Module):
        def forward(self, x):
            return x[:, :1]

    with pytest.raises(ValueError, match=r"^the model \(Empty\) has no parameters; there is nothing to train$"):
        fit_ensemble([Empty(), Empty()], coords, targets, **kw)
    other = members("baseline", 2)
    other[1].float()
    with pytest.raises(ValueError) as info:
        fit_ensemble(other, coords, targets, **kw)
    assert str(info.value).startswith("models[1] differs from models[0] in ") and "torch.float32" in str(info.value)

    def uneven(m, epoch, gen):
        n = 30 if m == 0 else 31
        draw = torch.rand(n, 3, dtype=torch.float64, generator=gen)
        return draw[:, :2], draw[:, 2:]

    with pytest.raises(ValueError, match=r"^resample returned different numbers of samples for the members in epoch 2 "
                                         r"\(\[30, 31\]\); ensemble members need the same number$"):
        fit_ensemble(members("baseline", 2), coords, targets, resample=uneven, **kw)
    with pytest.raises(ValueError, match=r"^coords\[1\] from resample \(epoch 2\) must be 2-D"):
        fit_ensemble(members("baseline", 2), coords, targets,
                     resample=lambda m, e, g: (coords[m] if m == 0 else coords[m][:, 0], targets[m]), **kw)


def test_a_stopped_member_gets_no_more_callbacks_or_evaluations():
    models = members("ffe", 2)
    coords, targets = member_data(2)
    targets[1] = targets[1] * 1e150
    calls = []

    def eval_fn(model, epoch):
        calls.append(("eval", epoch, models.index(model)))
        return 0.0

    def snap(model, epoch, history):
        calls.append(("snap", epoch, models.index(model)))

    hists = fit_ensemble(models, coords, targets, epochs=3, lr=0.1, batch_size=10, eval_fn=eval_fn, callbacks=snap,
                         snapshot_epochs="all", progress=False)
    assert hists[1].stopped == "diverged in epoch 1" and hists[0].stopped is None
    assert [c for c in calls if c[2] == 1] == [("eval", 0, 1), ("snap", 0, 1)]
    assert [c for c in calls if c[2] == 0] == [(k, e, 0) for e in range(4) for k in ("eval", "snap")]


def test_stacked_members_with_non_finite_parameters_stop_after_the_loop():
    models = members("baseline", 2, dtype=torch.float32)
    coords, targets = member_data(2, dtype=torch.float32)
    targets[1] = targets[1] * 1e15            # a finite float32 loss (~1e30); its step (~1e40) overflows
    hists = fit_ensemble(models, coords, targets, epochs=1, lr=1e25, full_eval=False, progress=False)
    assert hists[0].stopped is None and hists[0].diverged_epoch is None
    assert hists[1].stopped == "diverged in epoch 1" and "the parameters (" in hists[1].message
    assert hists[1].diverged_epoch == 1 and [h.member for h in hists] == [0, 1]
    bad = [name for name, p in models[1].named_parameters() if not torch.isfinite(p).all()]
    assert len(bad) > 3                                    # the first three are named, then "..."
    assert f"the parameters ({', '.join(bad[:3])}...)" in hists[1].message


# ----------------------------------------------------------------------------- gaps found by mutation testing
@pytest.mark.parametrize("full_eval", [True, False])
def test_member_histories_say_what_fit_says(full_eval):
    """Each member's History has fit's config (plus who it is in the ensemble), PSNR source and fields,
    with resampling, an eval_fn and snapshots all on."""
    models = members("mpe", 2)
    alone = copy.deepcopy(models)
    coords, targets = member_data(2)

    def draw(m, epoch, gen):
        c = torch.rand(37, 2, generator=gen, dtype=torch.float64)
        return c, targets[m]

    kw = dict(epochs=3, lr=0.5, batch_size=10, eval_fn=lambda model, e: 0.0, full_eval=full_eval,
              callbacks=lambda model, e, h: e, snapshot_epochs="start,end", progress=False)
    hists = fit_ensemble(models, coords, targets, resample=draw, seeds=[3, 4], **kw)
    for m in range(2):
        h = fit(alone[m], coords[m], targets[m], resample=lambda e, g: draw(m, e, g), seed=3 + m, **kw)
        config = dict(hists[m].config)
        assert config.pop("ensemble") == {"members": 2, "member": m}
        assert config == h.config
        assert config["n_samples"] == 37 and config["resample"] is True and config["dtype"] == "float64"
        assert hists[m].psnr_source == h.psnr_source == ("full" if full_eval else "running")
        assert hists[m].metrics == h.metrics and hists[m].snapshots == h.snapshots == {"callback": {0: 0, 3: 3}}
        if full_eval:
            assert_same_run(models[m], hists[m], alone[m], h)


def test_ensemble_settings_are_checked_like_fits():
    models = members("baseline", 2)
    coords, targets = member_data(2)
    for kw, message in ((dict(eval_fn=3), "eval_fn"), (dict(resample="no"), "resample")):
        with pytest.raises(TypeError, match=message) as ens:
            fit_ensemble(models, coords, targets, epochs=1, lr=0.1, progress=False, **kw)
        with pytest.raises(TypeError) as alone:
            fit(models[0], coords[0], targets[0], epochs=1, lr=0.1, progress=False, **kw)
        assert str(ens.value) == str(alone.value)


def test_members_of_different_sizes_are_refused_with_the_shapes():
    models = members("baseline", 2)
    coords, targets = member_data(2)
    with pytest.raises(ValueError) as info:
        fit_ensemble(models, [coords[0], coords[1][:30]], [targets[0], targets[1][:30]], epochs=1, lr=0.1,
                     progress=False)
    assert str(info.value) == ("ensemble members need data of the same shape: got coords [(30, 2), (37, 2)] and "
                               "targets [(30, 1), (37, 1)]; subsample to a common N")
    for bad_targets in ([targets[0], targets[1].repeat(1, 2)],):
        with pytest.raises(ValueError, match="ensemble members need data of the same shape|wrong number of outputs"):
            fit_ensemble(models, coords, bad_targets, epochs=1, lr=0.1, progress=False)


def test_bce_checks_each_members_targets_and_the_models_outputs():
    coords, targets = member_data(2)
    labels = [(t > 0.5).double() for t in targets]
    kw = dict(epochs=1, lr=0.1, progress=False)
    out_of_range = [labels[0], labels[1] * 2.0]
    for loss in ("bce", "bce_logits"):
        with pytest.raises(ValueError, match=rf"^loss='{loss}' needs targets in \[0, 1\] .* got values in \[0, 2\]"):
            fit_ensemble(members("baseline", 2, output_activation="sigmoid"), coords, out_of_range, loss=loss, **kw)
    # 'bce' takes probabilities: a model without a sigmoid at its end is refused before any step
    models = members("baseline", 2)
    before = [copy.deepcopy(m.state_dict()) for m in models]
    with pytest.raises(ValueError, match=r"^loss='bce' expects probabilities but the model output values in"):
        fit_ensemble(models, coords, labels, loss="bce", **kw)
    for m, state in zip(models, before):
        for name, value in m.state_dict().items():
            assert torch.equal(value, state[name]), name
    # bool labels are taken as 0/1 in the model's dtype, as fit takes them
    models = members("baseline", 2, output_activation="sigmoid")
    alone = copy.deepcopy(models)
    hists = fit_ensemble(models, coords, [l.bool() for l in labels], loss="bce", **kw)
    for m in range(2):
        h = fit(alone[m], coords[m], labels[m], loss="bce", seed=m, **kw)
        assert_same_run(models[m], hists[m], alone[m], h)


@pytest.mark.parametrize("m", [3, 2])
def test_a_failing_eval_fn_names_the_member_and_keeps_its_history(m):
    models = members("baseline", m)
    coords, targets = member_data(m)
    last = m - 1

    def metric(model, epoch):
        if model is models[last] and epoch == 1:
            raise ValueError("broken")
        return 0.0

    with pytest.raises(CallbackError) as info:
        fit_ensemble(models, coords, targets, epochs=2, lr=0.1, eval_fn=metric, progress=False)
    err = info.value
    assert str(err) == f"eval_fn raised at epoch 1 (ensemble member {last}): ValueError: broken"
    assert (err.name, err.epoch, err.member) == ("eval_fn", 1, last)
    assert err.history.config["ensemble"]["member"] == last and err.history.epochs == []


def test_architecture_refusals_word_for_word():
    models = members("baseline", 2)
    coords, targets = member_data(2)
    kw = dict(epochs=1, lr=0.1, progress=False)
    with pytest.raises(ValueError) as info:
        fit_ensemble([models[0], torch.nn.Linear(2, 1).double()], coords, targets, **kw)
    assert str(info.value) == (f"models[1] is a Linear, models[0] a {type(models[0]).__name__}: ensemble members "
                               "must share one architecture")
    other = members("baseline", 2)
    other[1].register_buffer("extra", torch.zeros(2))
    with pytest.raises(ValueError) as info:
        fit_ensemble(other, coords, targets, **kw)
    assert str(info.value) == ("models[1] differs from models[0] in ('buffer', 'extra', (2,), torch.float32, "
                               "device(type='cpu')) (vs None): ensemble members must have the same parameters and "
                               "buffers (names, shapes, dtypes, devices)")
    other = members("baseline", 2)
    other[1].extra = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError) as info:
        fit_ensemble(other, coords, targets, **kw)
    assert str(info.value).startswith("models[1] differs from models[0] in ('param', 'extra', (2,), torch.float64, "
                                      "device(type='cpu'), True) (vs ")


def test_the_ensemble_progress_bar_names_the_ensemble(capsys):
    models = members("baseline", 2)
    coords, targets = member_data(2)
    fit_ensemble(models, coords, targets, epochs=2, lr=0.25, progress=True)
    err = capsys.readouterr().err
    assert "fit_ensemble x2 sgd lr=0.25" in err and "2/2" in err and "live=2/2" in err
    fit_ensemble(models, coords, targets, epochs=1, lr=0.25, progress=True, desc="photos")
    err = capsys.readouterr().err
    assert "photos" in err and "fit_ensemble" not in err
    h = fit(models[0], coords[0], targets[0], epochs=1, lr=0.25, progress=True)
    err = capsys.readouterr().err
    assert "fit sgd lr=0.25" in err and "1/1" in err and "epoch" in err
    assert f"loss={h.loss[-1]:.3g}" in err and f"psnr={h.psnr[-1]:.2f}" in err


def test_a_stopped_first_member_leaves_the_others_complete():
    """Members after a stopped one are still evaluated, called back and trained (a loop that broke off at
    the first stopped member would leave them half recorded)."""
    models = members("ffe", 3)
    alone = copy.deepcopy(models)
    coords, targets = member_data(3)
    targets[0] = targets[0] * 1e150
    calls = []
    hists = fit_ensemble(models, coords, targets, epochs=3, lr=0.1, batch_size=10, snapshot_epochs="all",
                         callbacks=lambda model, e, h: calls.append((h.config["ensemble"]["member"], e)),
                         eval_fn=lambda model, e: 1.0, progress=False)
    assert hists[0].stopped == "diverged in epoch 1"
    for m in (1, 2):
        h = fit(alone[m], coords[m], targets[m], epochs=3, lr=0.1, batch_size=10, seed=m, progress=False)
        assert hists[m].stopped is None and hists[m].epochs == [1, 2, 3] and hists[m].metrics["eval"] == [1.0] * 3
        assert hists[m].loss == pytest.approx(h.loss, rel=1e-10)
        assert [e for k, e in calls if k == m] == [0, 1, 2, 3]


def test_initial_keeps_the_eval_metrics_apart():
    coords, targets = member_data(2)
    hists = fit_ensemble(members("baseline", 2), coords, targets, epochs=1, lr=0.1, eval_fn=lambda m, e: {"score": 7.0},
                         progress=False)
    for h in hists:
        assert set(h.initial) == {"loss", "psnr", "metrics"} and h.initial["metrics"] == {"score": 7.0}


def test_a_member_non_finite_before_training_leaves_the_next_ones_complete():
    """Member 0's targets square to infinity in the first evaluation: it stops before training, and member 1
    (after it) still gets its initial evaluation and the run fit gives it."""
    models = members("baseline", 2)
    alone = copy.deepcopy(models)
    coords, targets = member_data(2)
    targets[0] = targets[0] + 1e200
    hists = fit_ensemble(models, coords, targets, epochs=2, lr=0.1, batch_size=10, data_range=1.0, progress=False)
    assert hists[0].stopped == "diverged in epoch 0" and hists[0].epochs == []
    h = fit(alone[1], coords[1], targets[1], epochs=2, lr=0.1, batch_size=10, seed=1, data_range=1.0, progress=False)
    assert hists[1].initial["loss"] == pytest.approx(h.initial["loss"], rel=1e-12)
    assert_same_run(models[1], hists[1], alone[1], h)


def test_running_psnr_uses_each_members_data_range():
    coords, targets = member_data(2)
    hists = fit_ensemble(members("baseline", 2), coords, [targets[0], 2 * targets[1]], epochs=2, lr=0.1,
                         data_range=2.0, full_eval=False, progress=False)
    for h in hists:
        assert h.psnr_source == "running"
        assert h.psnr == pytest.approx([10 * math.log10(2.0 ** 2 / loss) for loss in h.loss], rel=1e-12)
