"""inrlib.train.fit: against hand-computed optimizer steps, seeded replays and independent metrics."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from skimage import data, transform
from torch import nn

from inrlib.metrics import iou
from inrlib.train import (
    CallbackError,
    History,
    TrainingDiverged,
    fit,
    resolve_epochs,
    start_middle_end,
)

# ----------------------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def photo():
    """The skimage camera photo at 32 x 32: coords (1024, 2) pixel centres in [0, 1]^2, targets (1024, 1)."""
    img = transform.resize(data.camera(), (32, 32), anti_aliasing=True)
    g = (torch.arange(32, dtype=torch.float32) + 0.5) / 32
    coords = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    targets = torch.tensor(img, dtype=torch.float32).reshape(-1, 1)
    return coords, targets


def mlp(seed: int = 0, width: int = 32, out: int = 1, sigmoid: bool = False, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out)]
    if sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers).to(dtype)


def params_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same_params(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def disk(n: int = 600, seed: int = 0):
    """Occupancy of a disk of radius 0.3 around (0.5, 0.5): coords (n, 2), labels (n, 1) in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g)
    y = ((x - 0.5).norm(dim=1, keepdim=True) < 0.3).float()
    return x, y


# ----------------------------------------------------------------------------- learning
def test_loss_decreases_on_photo_and_psnr_is_the_full_data_psnr(photo):
    coords, targets = photo
    model = mlp(width=64)
    h = fit(model, coords, targets, epochs=25, lr=3e-3, batch_size=128, optimizer="adam", progress=False)
    assert h.epochs == list(range(1, 26))
    assert len(h.loss) == len(h.full_loss) == len(h.psnr) == len(h.epoch_seconds) == len(h.eval_seconds) == 25
    assert h.full_loss[-1] < 0.5 * h.initial["loss"]
    assert h.psnr[-1] > h.initial["psnr"] + 3.0
    # PSNR and full loss equal an independent numpy computation on the final model
    with torch.no_grad():
        pred = model(coords).double().numpy()
    mse = np.mean((pred - targets.double().numpy()) ** 2)
    assert h.full_loss[-1] == pytest.approx(mse, rel=1e-5)
    assert h.psnr[-1] == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)
    assert h.psnr_source == "full"
    assert h.config["loss_reduction"] == "mean" and h.lr == 3e-3 and h.optimizer == "adam"
    assert h.stopped is None and h.total_seconds > 0


def test_full_batch_running_loss_is_the_loss_before_the_step(photo):
    """Full batch: epoch e's training loss is the full-data loss before its single step."""
    coords, targets = photo
    h = fit(mlp(), coords, targets, epochs=5, lr=0.5, progress=False)
    before = [h.initial["loss"]] + h.full_loss[:-1]
    np.testing.assert_allclose(h.loss, before, rtol=1e-5)
    assert all(b < a for a, b in zip(h.loss, h.loss[1:]))


def test_sgd_full_batch_step_is_mean_mse_gradient():
    """One full-batch SGD step on a linear model equals the hand-derived mean-MSE gradient step."""
    torch.manual_seed(3)
    x = torch.rand(40, 2, dtype=torch.float64)
    y = torch.rand(40, 3, dtype=torch.float64)
    model = nn.Linear(2, 3).double()
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    lr = 0.7
    fit(model, x, y, epochs=1, lr=lr, progress=False)
    r = x @ w0.T + b0 - y                                   # residuals (N, k)
    scale = 2.0 / r.numel()                                 # mean over samples AND outputs
    torch.testing.assert_close(model.weight.detach(), w0 - lr * scale * r.T @ x, rtol=0, atol=1e-13)
    torch.testing.assert_close(model.bias.detach(), b0 - lr * scale * r.sum(0), rtol=0, atol=1e-13)


def test_minibatch_order_follows_the_seeded_generator():
    """fit(seed=s) steps through torch.randperm(N, generator=manual_seed(s)) in batches, uneven last batch."""
    torch.manual_seed(4)
    x = torch.rand(50, 2, dtype=torch.float64)
    y = torch.rand(50, 1, dtype=torch.float64)
    model = nn.Linear(2, 1).double()
    manual = copy.deepcopy(model)
    fit(model, x, y, epochs=3, lr=0.3, batch_size=16, seed=11, progress=False)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for _ in range(3):
            perm = torch.randperm(50, generator=g)
            for i in range(0, 50, 16):
                idx = perm[i:i + 16]
                r = manual(x[idx]) - y[idx]
                manual.weight -= 0.3 * (2.0 / r.numel()) * r.T @ x[idx]
                manual.bias -= 0.3 * (2.0 / r.numel()) * r.sum(0)
    for a, b in zip(model.parameters(), manual.parameters()):
        torch.testing.assert_close(a.detach(), b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("optimizer, kwargs", [("adam", {}), ("sgd", {"momentum": 0.9})])
def test_optimizers_match_torch_optim(photo, optimizer, kwargs):
    coords, targets = photo
    model = mlp(width=16)
    ref = copy.deepcopy(model)
    fit(model, coords, targets, epochs=3, lr=1e-2, optimizer=optimizer, optimizer_kwargs=kwargs, progress=False)
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
    opt = cls(ref.parameters(), lr=1e-2, **kwargs)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(ref(coords), targets).backward()
        opt.step()
    assert same_params(params_of(model), params_of(ref))


# ----------------------------------------------------------------------------- seeds and batches
def test_same_seed_repeats_bitwise_and_other_seed_differs(photo):
    coords, targets = photo
    runs = []
    for seed in (5, 5, 6):
        model = mlp(seed=0)
        h = fit(model, coords, targets, epochs=3, lr=0.2, batch_size=64, seed=seed, progress=False)
        runs.append((h, params_of(model)))
    (h1, p1), (h2, p2), (h3, p3) = runs
    assert h1.loss == h2.loss and h1.full_loss == h2.full_loss and h1.psnr == h2.psnr
    assert same_params(p1, p2)
    assert h1.loss != h3.loss
    assert not same_params(p1, p3)


def test_fit_leaves_the_global_rng_alone(photo):
    coords, targets = photo
    model = mlp()
    state = torch.get_rng_state()
    fit(model, coords, targets, epochs=2, lr=0.1, batch_size=100, progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_full_batch_none_equals_batch_size_n(photo):
    coords, targets = photo
    n = coords.shape[0]
    out = []
    for bs, shuffle in ((None, True), (n, True), (n, False), (10 * n, True)):
        model = mlp()
        h = fit(model, coords, targets, epochs=3, lr=0.3, batch_size=bs, shuffle=shuffle, progress=False)
        out.append((h.loss, params_of(model)))
    for loss, params in out[1:]:
        assert loss == out[0][0]
        assert same_params(params, out[0][1])


def test_unshuffled_minibatches_differ_from_shuffled(photo):
    coords, targets = photo
    a, b = mlp(), mlp()
    ha = fit(a, coords, targets, epochs=2, lr=0.2, batch_size=100, shuffle=False, progress=False)
    hb = fit(b, coords, targets, epochs=2, lr=0.2, batch_size=100, shuffle=True, progress=False)
    assert ha.loss != hb.loss


# ----------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("full_eval", [True, False])
def test_divergence_raises_with_history(photo, full_eval):
    coords, targets = photo
    with pytest.raises(TrainingDiverged) as info:
        fit(mlp(), coords, targets, epochs=30, lr=1e12, batch_size=256, full_eval=full_eval, progress=False)
    err = info.value
    msg = str(err)
    assert "lr=1e+12" in msg and f"epoch {err.epoch}" in msg and "'sgd'" in msg and "lower the learning rate" in msg
    assert "mean" in msg
    assert err.lr == 1e12 and err.optimizer == "sgd" and not math.isfinite(err.loss_value)
    assert isinstance(err.history, History)
    assert err.history.epochs == list(range(1, err.epoch))
    assert len(err.history.loss) == len(err.history.epoch_seconds) == err.epoch - 1
    assert err.history.stopped == f"diverged in epoch {err.epoch}"
    assert err.history.diverged_epoch == err.epoch and err.history.member is None     # structured: no parsing
    back = History.from_dict(json.loads(json.dumps(err.history.to_dict())))
    assert (back.diverged_epoch, back.member, back.message) == (err.epoch, None, msg)


def test_non_finite_untrained_model_is_reported_before_training(photo):
    coords, targets = photo
    model = mlp()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="before training") as info:
        fit(model, coords, targets, epochs=2, lr=0.1, progress=False)
    assert info.value.epoch == 0 and info.value.history.epochs == [] and info.value.history.diverged_epoch == 0


def test_interrupt_keeps_history(photo):
    coords, targets = photo

    def stop(model, epoch, history):
        if epoch == 2:
            raise KeyboardInterrupt

    model = mlp()
    model.eval()
    with pytest.raises(KeyboardInterrupt) as info:
        fit(model, coords, targets, epochs=5, lr=0.1, callbacks={"stop": stop}, snapshot_epochs="all", progress=False)
    assert info.value.history.epochs == [1, 2]
    assert info.value.history.stopped == "interrupted after 2 completed epoch(s)"
    assert info.value.history.diverged_epoch is None
    assert not model.training                         # the caller's mode is restored


# ----------------------------------------------------------------------------- callbacks
def test_callbacks_at_requested_epochs_see_that_epochs_parameters(photo):
    coords, targets = photo
    calls = []

    def snap(model, epoch, history):
        calls.append(epoch)
        assert len(history.epochs) == epoch           # the epoch's record is in before the call
        assert not model.training
        return params_of(model)

    model = mlp()
    p0 = params_of(model)
    h = fit(model, coords, targets, epochs=6, lr=0.2, batch_size=128, seed=2,
            callbacks={"params": snap}, snapshot_epochs="start,middle,end", progress=False)
    assert calls == [0, 3, 6]
    s = h.snapshots["params"]
    assert sorted(s) == [0, 3, 6] and sorted(h.snapshot_seconds["params"]) == [0, 3, 6]
    assert same_params(s[0], p0)
    assert same_params(s[6], params_of(model))
    assert not same_params(s[0], s[3]) and not same_params(s[3], s[6])
    # epoch 3 of this run is the end of an independent 3-epoch run from the same start and seed
    other = mlp()
    fit(other, coords, targets, epochs=3, lr=0.2, batch_size=128, seed=2, progress=False)
    assert same_params(s[3], params_of(other))
    assert model.training                             # mode restored after the eval-mode callbacks


def test_snapshot_epoch_specs():
    assert start_middle_end(300) == [0, 150, 300]
    assert start_middle_end(1) == [0, 1]
    assert resolve_epochs(None, 10) == [0, 5, 10]
    assert resolve_epochs("start, end, 4", 10) == [0, 4, 10]
    assert resolve_epochs([2, "middle", 2], 10) == [2, 5]
    assert resolve_epochs(7, 10) == [7]
    assert resolve_epochs("all", 3) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="outside"):
        resolve_epochs([11], 10)
    with pytest.raises(ValueError, match="neither an integer"):
        resolve_epochs("start,later", 10)
    with pytest.raises(TypeError, match="integers"):
        resolve_epochs([1.5], 10)


def test_default_snapshots_single_callable_and_eval_fn(photo):
    coords, targets = photo
    seen = []

    def metric(model, epoch):
        assert not torch.is_grad_enabled() and not model.training
        seen.append(epoch)
        return {"mean_out": float(model(coords).mean()), "epoch_twice": 2 * epoch}

    h = fit(mlp(), coords, targets, epochs=4, lr=0.1, callbacks=lambda m, e, hist: e * 10,
            eval_fn=metric, progress=False)
    assert h.snapshots == {"callback": {0: 0, 2: 20, 4: 40}}
    assert seen == [0, 1, 2, 3, 4]
    assert h.metrics["epoch_twice"] == [2, 4, 6, 8] and h.initial["metrics"]["epoch_twice"] == 0
    assert len(h.metrics["mean_out"]) == 4


def test_failing_callback_keeps_history(photo):
    coords, targets = photo

    def boom(model, epoch, history):
        if epoch == 2:
            raise KeyError("no such thing")
        return epoch

    with pytest.raises(CallbackError, match="'boom' raised at epoch 2") as info:
        fit(mlp(), coords, targets, epochs=3, lr=0.1, callbacks={"boom": boom}, snapshot_epochs="all", progress=False)
    assert info.value.history.snapshots["boom"] == {0: 0, 1: 1}
    assert info.value.history.epochs == [1, 2]
    assert isinstance(info.value.__cause__, KeyError)


# ----------------------------------------------------------------------------- occupancy (BCE)
def test_bce_on_probabilities_and_logits_with_iou():
    x, y = disk()
    # bce: the first full-batch loss is the BCE of the untrained model, computed by hand
    model = mlp(width=32, sigmoid=True)
    with torch.no_grad():
        p0 = model(x).double().clamp(1e-7, 1 - 1e-7)
    expected = float(-(y * p0.log() + (1 - y) * (1 - p0).log()).mean())
    h = fit(model, x, y, epochs=60, lr=1e-2, optimizer="adam", batch_size=100, loss="bce", progress=False)
    assert h.initial["loss"] == pytest.approx(expected, rel=1e-5)
    assert h.full_loss[-1] < 0.5 * h.initial["loss"]
    assert h.psnr == [] and len(h.iou) == 60
    with torch.no_grad():
        assert h.iou[-1] == pytest.approx(float(iou(model(x), y)), abs=1e-12)
    assert h.iou[-1] > 0.8
    # bce_logits: same network without the sigmoid; IoU thresholds logits at 0
    logit_model = mlp(width=32)
    h2 = fit(logit_model, x, y, epochs=60, lr=1e-2, optimizer="adam", batch_size=100, loss="bce_logits", progress=False)
    with torch.no_grad():
        assert h2.iou[-1] == pytest.approx(float(iou(logit_model(x), y, logits=True)), abs=1e-12)
    assert h2.iou[-1] > 0.8


def test_bce_rejects_a_model_without_sigmoid():
    x, y = disk(100)
    with pytest.raises(ValueError, match="bce_logits"):
        fit(mlp(), x, y, epochs=1, lr=0.1, loss="bce", progress=False)


# ----------------------------------------------------------------------------- shapes, dtypes, devices
def test_flat_targets_numpy_inputs_and_float64_model(photo):
    coords, targets = photo
    a, b = mlp(), mlp()
    ha = fit(a, coords, targets, epochs=2, lr=0.1, progress=False)
    hb = fit(b, coords.numpy().astype(np.float64), targets.reshape(-1).numpy(), epochs=2, lr=0.1, progress=False)
    assert ha.loss == hb.loss and same_params(params_of(a), params_of(b))
    c = mlp(dtype=torch.float64)
    hc = fit(c, coords, targets, epochs=2, lr=0.1, progress=False)
    assert hc.config["dtype"] == "float64" and next(c.parameters()).dtype == torch.float64
    assert hc.config["device"] == "cpu"


def test_data_range_controls_psnr(photo):
    coords, targets = photo
    h = fit(mlp(), coords, targets * 255, epochs=1, lr=1e-4, progress=False)
    assert h.psnr == [] and h.config["data_range"] is None            # "auto" and targets beyond [0, 1]
    h255 = fit(mlp(), coords, targets * 255, epochs=1, lr=1e-4, data_range=255, progress=False)
    assert h255.psnr[0] == pytest.approx(10 * math.log10(255 ** 2 / h255.full_loss[0]))
    hrun = fit(mlp(), coords, targets, epochs=2, lr=0.1, full_eval=False, progress=False)
    assert hrun.full_loss == [] and hrun.psnr_source == "running"
    assert hrun.psnr[1] == pytest.approx(10 * math.log10(1 / hrun.loss[1]))


def test_resample_draws_new_data_each_epoch():
    calls = []

    def resample(epoch, generator):
        calls.append(epoch)
        assert isinstance(generator, torch.Generator)
        return disk(200 + epoch, seed=int(torch.randint(0, 10**6, (1,), generator=generator)))

    x, y = disk(200)
    h = fit(mlp(sigmoid=True), x, y, epochs=4, lr=0.1, batch_size=64, loss="bce", resample=resample, progress=False)
    assert calls == [2, 3, 4] and len(h.iou) == 4
    h2 = fit(mlp(sigmoid=True), x, y, epochs=4, lr=0.1, batch_size=64, loss="bce", resample=resample, progress=False)
    assert h.loss == h2.loss                                        # the generator is seeded

    def bad(epoch, generator):
        return torch.rand(10, 2), torch.rand(9, 1)

    with pytest.raises(ValueError, match="from resample"):
        fit(mlp(sigmoid=True), x, y, epochs=2, lr=0.1, loss="bce", resample=bad, progress=False)


def test_history_json_round_trip(photo):
    coords, targets = photo
    h = fit(mlp(), coords, targets, epochs=2, lr=0.1, callbacks={"w": lambda m, e, hist: m[0].bias.detach()[:3]},
            snapshot_epochs=[0, 2], progress=False)
    text = json.dumps(h.to_dict())
    back = History.from_dict(json.loads(text))
    assert back.loss == h.loss and back.psnr == h.psnr and back.config == h.config
    assert h.diverged_epoch is None and h.member is None and (back.diverged_epoch, back.member) == (None, None)
    old = {k: v for k, v in h.to_dict().items() if k not in ("diverged_epoch", "member")}   # an earlier version's
    assert History.from_dict(old).diverged_epoch is None and History.from_dict(old).loss == h.loss
    assert sorted(back.snapshots["w"]) == [0, 2]
    assert back.snapshots["w"][2] == pytest.approx(h.snapshots["w"][2].tolist())


def test_progress_bar_only_when_asked(photo, capsys, monkeypatch):
    coords, targets = photo
    fit(mlp(), coords, targets, epochs=2, lr=0.1, progress=True, desc="camera")
    err = capsys.readouterr().err
    assert "camera" in err and "2/2" in err
    fit(mlp(), coords, targets, epochs=2, lr=0.1, progress=False)
    monkeypatch.setenv("INRLIB_PROGRESS", "0")
    fit(mlp(), coords, targets, epochs=2, lr=0.1)
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, exc, match", [
    ({"coords": torch.rand(10, 2), "targets": torch.rand(9, 1)}, ValueError, "different numbers of samples"),
    ({"targets": torch.full((20, 1), float("nan"))}, ValueError, "non-finite"),
    ({"targets": torch.rand(20, 1) * 2, "loss": "bce_logits"}, ValueError, r"targets in \[0, 1\]"),
    ({"optimizer": "rmsprop"}, ValueError, "unknown optimizer"),
    ({"loss": "l1"}, ValueError, "unknown loss"),
    ({"epochs": 0}, ValueError, "epochs must be >= 1"),
    ({"epochs": 2.5}, TypeError, "epochs must be a positive integer"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"lr": -1.0}, ValueError, "lr must be a positive"),
    ({"coords": torch.rand(20)}, ValueError, "reshape"),
    ({"coords": torch.rand(20, 3)}, ValueError, "input features"),
    ({"targets": torch.rand(20, 3)}, ValueError, "wrong number of outputs"),
    ({"optimizer_kwargs": {"nesterov_typo": True}}, TypeError, "optimizer_kwargs"),
    ({"snapshot_epochs": [9], "callbacks": {"c": lambda m, e, h: 0}}, ValueError, "outside"),
    ({"callbacks": {"c": 3}}, TypeError, "callbacks"),
    ({"device": "gpu"}, ValueError, "not a torch device"),
    ({"seed": 1.5}, TypeError, "seed must be an integer"),
])
def test_bad_input_raises_clear_errors(kwargs, exc, match):
    args = {"coords": torch.rand(20, 2), "targets": torch.rand(20, 1), "epochs": 2, "lr": 0.1, "progress": False}
    args.update(kwargs)
    model = mlp(width=4)
    coords, targets = args.pop("coords"), args.pop("targets")
    with pytest.raises(exc, match=match):
        fit(model, coords, targets, **args)


def test_unshuffled_minibatches_follow_the_data_order(photo):
    """shuffle=False: batch k is rows [k B, (k + 1) B) in the given order, the last one smaller; the
    same SGD written out by hand gives the same parameters."""
    coords, targets = photo
    coords, targets = coords[:250], targets[:250]
    a, b = mlp(), mlp()
    fit(a, coords, targets, epochs=2, lr=0.2, batch_size=100, shuffle=False, progress=False)
    opt = torch.optim.SGD(b.parameters(), lr=0.2)
    for _ in range(2):
        for i in (0, 100, 200):
            opt.zero_grad()
            torch.nn.functional.mse_loss(b(coords[i:i + 100]), targets[i:i + 100].reshape(-1, 1)
                                         if targets.dim() == 1 else targets[i:i + 100]).backward()
            opt.step()
    assert same_params(params_of(a), params_of(b))


# ----------------------------------------------------------------------------- every refusal, word for word
def _fit_small(model=None, coords=None, targets=None, **kw):
    args = {"epochs": 1, "lr": 0.1, "progress": False}
    args.update(kw)
    c = torch.rand(20, 2, generator=torch.Generator().manual_seed(0)) if coords is None else coords
    t = torch.rand(20, 1, generator=torch.Generator().manual_seed(1)) if targets is None else targets
    return fit(mlp(width=4) if model is None else model, c, t, **args)


class _Featureless(nn.Module):
    def forward(self, x):
        return x


class _Frozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1).requires_grad_(False)

    def forward(self, x):
        return self.lin(x)


class _TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return (self.lin(x),)


_nan2 = torch.rand(20, 2)
_nan2[3, 0], _nan2[7, 1] = float("nan"), float("inf")
_nan1 = torch.rand(20, 1)
_nan1[5, 0] = float("-inf")


@pytest.mark.parametrize("kw, exc, message", [
    (dict(coords=torch.rand(20)), ValueError,
     "coords must be 2-D (N, d), got shape (20,); for 1-D inputs use coords.reshape(-1, 1)"),
    (dict(coords=torch.rand(4, 5, 2)), ValueError,
     "coords must be 2-D (N, d), got shape (4, 5, 2); flatten a grid with coords.reshape(-1, d)"),
    (dict(targets=torch.rand(20, 1, 1)), ValueError,
     "targets must be (N,) or (N, k), got shape (20, 1, 1); flatten an image with targets.reshape(-1, channels)"),
    (dict(coords=torch.rand(10, 2), targets=torch.rand(9, 1)), ValueError,
     "coords and targets hold different numbers of samples: 10 coordinates (shape (10, 2)) vs 9 targets "
     "(shape (9, 1)); they must pair up row by row"),
    (dict(coords=torch.rand(0, 2), targets=torch.rand(0, 1)), ValueError,
     "coords and targets are empty; fit needs at least one sample"),
    (dict(coords=torch.rand(20, 2, dtype=torch.complex64)), TypeError, "coords and targets must be real-valued"),
    (dict(targets=torch.rand(20, 1, dtype=torch.complex64)), TypeError, "coords and targets must be real-valued"),
    (dict(coords=_nan2), ValueError, "coords hold 2 non-finite value(s) (NaN/inf)"),
    (dict(targets=_nan1), ValueError,
     "targets hold 1 non-finite value(s) (NaN/inf); clean the data (e.g. torch.nan_to_num) before training"),
    (dict(targets=torch.linspace(-0.5, 1.0, 20)[:, None], loss="bce_logits"), ValueError,
     "loss='bce_logits' needs targets in [0, 1] (occupancy labels or probabilities), got values in [-0.5, 1]; "
     "use loss='mse' for other targets"),
    (dict(targets=torch.linspace(0.0, 1.5, 20)[:, None], loss="BCE_logits"), ValueError,
     "loss='bce_logits' needs targets in [0, 1] (occupancy labels or probabilities), got values in [0, 1.5]; "
     "use loss='mse' for other targets"),
    (dict(epochs=True), TypeError, "epochs must be a positive integer, got True (bool)"),
    (dict(epochs="3"), TypeError, "epochs must be a positive integer, got '3' (str)"),
    (dict(epochs=-2), ValueError, "epochs must be >= 1, got -2"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    (dict(eval_batch_size=0), ValueError, "eval_batch_size must be >= 1, got 0"),
    (dict(eval_batch_size=None), TypeError, "eval_batch_size must be a positive integer, got None (NoneType)"),
    (dict(lr="0.1"), TypeError, "lr must be a positive number, got '0.1'"),
    (dict(lr=True), TypeError, "lr must be a positive number, got True"),
    (dict(lr=0), ValueError, "lr must be a positive finite number, got 0.0"),
    (dict(lr=float("inf")), ValueError, "lr must be a positive finite number, got inf"),
    (dict(lr=float("nan")), ValueError, "lr must be a positive finite number, got nan"),
    (dict(optimizer="rmsprop"), ValueError,
     "unknown optimizer 'rmsprop'; choose one of ('sgd', 'adam') (extra settings such as momentum go in "
     "optimizer_kwargs)"),
    (dict(optimizer=3), ValueError, "unknown optimizer 3; choose one of ('sgd', 'adam')"),
    (dict(loss="l1"), ValueError,
     "unknown loss 'l1'; choose 'mse' (regression), 'bce' (model outputs probabilities, e.g. ends in a sigmoid) "
     "or 'bce_logits' (model outputs logits)"),
    (dict(loss=None), ValueError, "unknown loss None; choose 'mse'"),
    (dict(resample=3), TypeError, "resample must be a function returning (coords, targets), got int"),
    (dict(eval_fn="psnr"), TypeError, "eval_fn must be a function (model, epoch) -> number or dict, got str"),
    (dict(callbacks={1: lambda m, e, h: 0}), TypeError, "callbacks must map names (str) to functions "
     "fn(model, epoch, history); got 1: "),
    (dict(callbacks=[lambda m, e, h: 0]), TypeError,
     "callbacks must be a dict {name: fn} or one function, got list"),
    (dict(callbacks=lambda m, e, h: 0, snapshot_epochs="start,soon"), ValueError,
     "snapshot epoch 'soon' is neither an integer nor one of 'start', 'middle', 'end', 'all'"),
    (dict(callbacks=lambda m, e, h: 0, snapshot_epochs=[1.5]), TypeError,
     "snapshot epochs must be integers or 'start'/'middle'/'end'/'all', got 1.5"),
    (dict(callbacks=lambda m, e, h: 0, snapshot_epochs=[True]), TypeError,
     "snapshot epochs must be integers or 'start'/'middle'/'end'/'all', got True"),
    (dict(callbacks=lambda m, e, h: 0, snapshot_epochs=2.0), TypeError,
     "snapshot_epochs must be a string like 'start,middle,end', an int or a list of ints, got float"),
    (dict(callbacks=lambda m, e, h: 0, snapshot_epochs=[-1]), ValueError,
     "snapshot epoch -1 is outside [0, 1] (0 = before training, 1 = after the last epoch)"),
    (dict(seed="0"), TypeError, "seed must be an integer, got '0'"),
    (dict(seed=False), TypeError, "seed must be an integer, got False"),
    (dict(model="mlp"), TypeError, "model must be a torch.nn.Module, got str"),
    (dict(model=_Featureless()), ValueError, "the model (_Featureless) has no parameters; there is nothing to train"),
    (dict(model=_Frozen()), ValueError, "none of the model's parameters requires grad; there is nothing to train"),
    (dict(model=_TupleOut()), TypeError, "the model must return a tensor, got tuple"),
    (dict(targets=torch.rand(20, 3)), ValueError,
     "the model's output for 20 samples has shape (20, 1), but the targets give (20, 3): the model has the wrong "
     "number of outputs for targets of shape (20, 3)"),
    (dict(data_range="max"), ValueError, "data_range must be a number, None or 'auto', got 'max'"),
    (dict(data_range=-1), ValueError, "data_range must be a positive number, None or 'auto', got -1"),
    (dict(data_range=0), ValueError, "data_range must be a positive number, None or 'auto', got 0"),
    (dict(data_range=True), ValueError, "data_range must be a positive number, None or 'auto', got True"),
    (dict(optimizer_kwargs={"lr_typo": 1}), TypeError, "optimizer_kwargs {'lr_typo': 1} are not accepted by "
     "torch.optim.SGD: "),
    (dict(optimizer="adam", optimizer_kwargs={"betas": (2.0, 0.9)}), ValueError,
     "optimizer_kwargs {'betas': (2.0, 0.9)} rejected by torch.optim.Adam: "),
])
def test_every_refusal_says_what_was_wrong(kw, exc, message):
    with pytest.raises(exc) as info:
        _fit_small(**kw)
    assert str(info.value).startswith(message), str(info.value)


def test_refusals_from_the_model_the_device_and_resample():
    with pytest.raises(ValueError) as info:
        _fit_small(coords=torch.rand(20, 3))
    msg = str(info.value)
    assert msg.startswith("the model failed on the first 20 coordinates (shape (20, 3), dtype torch.float32): "
                          "RuntimeError: ") and msg.endswith("Does it take 3 input features?"), msg
    coords = torch.rand(300, 3)
    with pytest.raises(ValueError, match=r"^the model failed on the first 256 coordinates \(shape \(256, 3\)"):
        _fit_small(coords=coords, targets=torch.rand(300, 1))
    with pytest.raises(ValueError) as info:
        _fit_small(device="gpu")
    assert str(info.value).startswith("device 'gpu' is not a torch device (") and \
        str(info.value).endswith("); use 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError) as info:
            _fit_small(device="cuda")
        assert str(info.value).startswith("cannot move the model to device 'cuda': ")
        assert str(info.value).endswith("Is that device available to this torch build? Pass device=None to train "
                                        "where the model is.")
    with pytest.raises(TypeError, match=r"^resample must return \(coords, targets\), got Tensor$"):
        _fit_small(epochs=2, resample=lambda epoch, gen: torch.rand(20, 2))
    with pytest.raises(TypeError, match=r"^resample must return \(coords, targets\), got tuple$"):
        _fit_small(epochs=2, resample=lambda epoch, gen: (1, 2, 3))
    with pytest.raises(ValueError, match=r"^coords from resample \(epoch 2\) must be 2-D \(N, d\), got shape \(20,\)"):
        _fit_small(epochs=2, resample=lambda epoch, gen: (torch.rand(20), torch.rand(20, 1)))
    with pytest.raises(TypeError, match=r"^coords must be a torch\.Tensor or an array of numbers, got str \("):
        _fit_small(coords="abc")
    with pytest.raises(TypeError, match=r"^targets must be a torch\.Tensor or an array of numbers, got list \("):
        _fit_small(targets=[[0.1], ["x"]])
    with pytest.raises(ValueError, match=r"^loss='bce' expects probabilities but the model output values in "
                                         r"\[-?\d.*\]; end the model with a sigmoid, or use loss='bce_logits' "
                                         r"for logits$"):
        torch.manual_seed(0)
        fit(nn.Linear(2, 1), torch.rand(20, 2) * 10, (torch.rand(20, 1) > 0.5).float(), epochs=1, lr=0.1,
            loss="bce", progress=False)


def test_bool_data_shapes_and_psnr_peaks():
    """Bool data train as 0/1 floats; (N,) and (N, 1) targets meet either output shape; data_range sets the peak."""
    g = torch.Generator().manual_seed(0)
    coords, targets = torch.rand(20, 2, generator=g), torch.rand(20, 1, generator=g) > 0.5
    a, b = mlp(width=4), mlp(width=4)
    ha = fit(a, coords, targets, epochs=2, lr=0.1, progress=False)
    hb = fit(b, coords, targets.float(), epochs=2, lr=0.1, progress=False)
    assert ha.loss == hb.loss and same_params(params_of(a), params_of(b))
    hc = fit(mlp(width=4), coords > 0.5, targets.float(), epochs=1, lr=0.1, progress=False)
    hd = fit(mlp(width=4), (coords > 0.5).float(), targets.float(), epochs=1, lr=0.1, progress=False)
    assert hc.loss == hd.loss

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(width=4)

        def forward(self, x):
            return self.net(x)[:, 0]

    y = targets.float()
    h1 = fit(mlp(width=4), coords, y[:, 0], epochs=2, lr=0.1, progress=False)   # (N,) targets, (N, 1) output
    h2 = fit(Flat(), coords, y, epochs=2, lr=0.1, progress=False)               # (N, 1) targets, (N,) output
    h3 = fit(mlp(width=4), coords, y, epochs=2, lr=0.1, progress=False)
    assert h1.loss == h2.loss == h3.loss
    for rng, peak in (((0.0, 1.0), 1.0), ((0.0, 2.0), None)):
        t = torch.linspace(*rng, 20)[:, None]
        h = fit(mlp(width=4), coords, t, epochs=1, lr=0.1, progress=False)
        assert h.config["data_range"] == peak and (len(h.psnr) == 1) == (peak is not None)
        if peak is not None:
            assert h.psnr_source == "full" and h.psnr[0] == pytest.approx(10 * math.log10(1.0 / h.full_loss[0]), rel=1e-12)
    h = fit(mlp(width=4), coords, torch.linspace(0, 4, 20)[:, None], epochs=1, lr=0.1, data_range=4, progress=False)
    assert h.config["data_range"] == 4.0 and h.psnr[0] == pytest.approx(10 * math.log10(16.0 / h.full_loss[0]), rel=1e-12)
    for loss in ("bce", "bce_logits"):
        model = mlp(width=4, sigmoid=loss == "bce")
        h = fit(model, coords, y, epochs=1, lr=0.1, loss=loss, data_range=1.0, progress=False)
        assert h.config["data_range"] is None and h.psnr == [] and h.psnr_source is None
        assert h.loss_name == loss and h.optimizer == "sgd" and h.lr == 0.1


def test_history_summary_json_fallbacks_and_unknown_fields():
    h = History(config={"optimizer": "adam", "lr": 0.01, "loss": "mse"}, epochs=[1, 2], loss=[0.5, 0.25],
                psnr=[20.0, 26.0], iou=[0.5, 0.75], snapshots={"ntk": {0: 1, 2: 2}}, stopped="diverged in epoch 3",
                total_seconds=1.25)
    assert repr(h) == ("History(2 epochs, adam lr=0.01, loss=mse, last loss 0.25, last PSNR 26.00 dB (best 26.00), "
                       "last IoU 0.7500, snapshots ['ntk'], stopped: diverged in epoch 3, 1.2 s)")
    assert repr(History()) == "History(0 epochs, None lr=None, loss=None, 0.0 s)"

    class Config:
        def to_dict(self):
            return {"width": np.int64(3)}

    class Opaque:
        def __repr__(self):
            return "<opaque>"

    h.snapshots = {"mixed": {0: np.arange(3), 1: np.float32(0.5), 2: {1, 2}, 3: frozenset(), 4: Config(),
                             5: Opaque(), 6: (np.int8(1), None, "s", True)}}
    got = h.to_dict()["snapshots"]["mixed"]
    assert got == {"0": [0, 1, 2], "1": 0.5, "2": [1, 2], "3": [], "4": {"width": 3}, "5": "<opaque>",
                   "6": [1, None, "s", True]}
    assert type(got["1"]) is float and type(h.to_dict()["epochs"][0]) is int
    json.dumps(h.to_dict())
    with pytest.raises(ValueError) as info:
        History.from_dict({"epochs": [1], "bogus": 1, "also": 2})
    assert str(info.value).startswith("unknown History fields ['also', 'bogus']; expected a subset of ['config', ")


def test_progress_argument_overrides_the_rule_and_none_follows_it(monkeypatch):
    """``progress=True/False`` is taken as given; ``None`` asks :func:`inrlib.resources.progress_enabled`."""
    from inrlib.train import _resolve_progress
    assert _resolve_progress(True) is True and _resolve_progress(False) is False and _resolve_progress(0) is False
    monkeypatch.setenv("INRLIB_PROGRESS", "1")
    assert _resolve_progress(None) is True
    monkeypatch.setenv("INRLIB_PROGRESS", "off")
    assert _resolve_progress(None) is False


def test_parameters_that_blow_up_in_the_last_step_are_reported(photo):
    """The last step's loss is taken before it: a step that makes the parameters inf is caught after the loop
    (full_eval=False) or by the full-data loss (full_eval=True), each naming what became non-finite."""
    coords, targets = photo
    targets = targets * 1e6                       # a finite float32 loss (~1e12) whose step overflows at lr=1e38
    with pytest.raises(TrainingDiverged) as info:
        fit(mlp(), coords, targets, epochs=1, lr=1e38, full_eval=False, progress=False)
    msg = str(info.value)
    assert msg.startswith("training diverged: the parameters (0.weight, 0.bias, 2.weight...) became nan in epoch 1 "
                          "(lr=1e+38, optimizer='sgd', loss='mse' (mean over samples and outputs), full batch)."), msg
    assert info.value.history.epochs == [1] and math.isfinite(info.value.history.loss[0])
    with pytest.raises(TrainingDiverged, match=r"^training diverged: the loss over all samples became nan in epoch 1 "):
        fit(mlp(), coords, targets, epochs=1, lr=1e38, full_eval=True, progress=False)
    with pytest.raises(ValueError, match=r"^lr=1e\+300 is larger than the largest float32 number \(3\.403e\+38\); "
                                         r"train in float64 or use a smaller lr$"):
        fit(mlp(), coords, targets, epochs=1, lr=1e300, progress=False)
    fit(mlp(dtype=torch.float64), coords.double(), targets.double() / 1e6, epochs=1, lr=1e-300, progress=False)


def test_iou_of_an_empty_prediction_of_an_empty_shape_is_one_and_shows_in_the_bar(capsys):
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(-10.0)
    h = fit(lin, torch.rand(30, 2), torch.zeros(30, 1), epochs=2, lr=1e-3, loss="bce_logits", progress=True,
            desc="empty")
    assert h.iou == [1.0, 1.0] and h.initial["iou"] == 1.0
    err = capsys.readouterr().err
    assert "empty" in err and "iou=1.000" in err
    h = fit(mlp(width=4), torch.rand(30, 2), torch.rand(30, 1), epochs=1, lr=0.1, data_range=None, progress=False)
    assert h.psnr == [] and h.psnr_source is None and h.config["data_range"] is None


# ----------------------------------------------------------------------------- gaps found by mutation testing
def test_evaluation_in_chunks_gives_the_loss_and_iou_of_one_pass():
    """The full-data loss, PSNR and IoU are sums over evaluation chunks: a 7-sample chunk must agree
    with one pass over all samples (and with an independent computation)."""
    class Ball(nn.Module):                       # a soft disk of learnable radius: IoU strictly between 0 and 1
        def __init__(self):
            super().__init__()
            self.r = nn.Parameter(torch.tensor(0.25, dtype=torch.float64))

        def forward(self, x):
            return torch.sigmoid(20 * (self.r - (x - 0.5).norm(dim=1, keepdim=True)))

    x, y = disk(61)
    for loss in ("mse", "bce"):
        runs = []
        for chunk in (7, 65536):
            model = Ball()
            h = fit(model, x.double(), y.double(), epochs=2, lr=1e-3, batch_size=16, loss=loss, eval_batch_size=chunk,
                    progress=False)
            runs.append(h)
            with torch.no_grad():
                out = model(x.double())
            want = float(((out - y.double()) ** 2).mean()) if loss == "mse" else float(
                torch.nn.functional.binary_cross_entropy(out.clamp(1e-7, 1 - 1e-7), y.double()))
            assert h.full_loss[-1] == pytest.approx(want, rel=1e-12)
            if loss == "bce":
                assert h.iou[-1] == pytest.approx(float(iou(out, y.double())), abs=1e-15)
                assert 0.2 < h.iou[-1] < 0.95
        assert runs[0].full_loss == pytest.approx(runs[1].full_loss, rel=1e-12)
        assert runs[0].iou == runs[1].iou and runs[0].psnr == pytest.approx(runs[1].psnr, rel=1e-12)


def test_an_output_of_exactly_one_half_counts_as_inside():
    """IoU thresholds probabilities at >= 0.5 (logits at >= 0): a model that outputs exactly 0.5 covers everything."""
    x, y = disk(50)
    for loss, out_layer in (("bce", [nn.Sigmoid()]), ("bce_logits", [])):
        zero = nn.Linear(2, 1)
        nn.init.zeros_(zero.weight), nn.init.zeros_(zero.bias)
        model = nn.Sequential(zero, *out_layer)
        h = fit(model, x, torch.ones_like(y), epochs=1, lr=1e-12, loss=loss, progress=False)
        assert h.initial["iou"] == 1.0


def test_bce_clamps_probabilities_of_zero_and_one():
    """loss='bce' clamps to [BCE_EPS, 1 - BCE_EPS]: a certain, wrong prediction costs -log(BCE_EPS), not
    torch's -100 cap or infinity."""
    from inrlib.train import BCE_EPS

    class Constant(nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value, self.p = value, nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, x):
            return torch.full((x.shape[0], 1), self.value, dtype=x.dtype) + 0 * self.p

    x = torch.rand(8, 2, dtype=torch.float64)
    for value, label in ((0.0, 1.0), (1.0, 0.0)):
        h = fit(Constant(value), x, torch.full((8, 1), label, dtype=torch.float64), epochs=1, lr=0.1, loss="bce",
                progress=False)
        assert h.initial["loss"] == pytest.approx(-math.log(BCE_EPS), rel=1e-6)


def test_mse_on_zero_one_targets_reports_psnr_not_iou():
    x, y = disk(40)
    h = fit(mlp(), x, y, epochs=1, lr=0.1, progress=False)
    assert h.iou == [] and "iou" not in h.initial and len(h.psnr) == 1


def test_a_failing_eval_fn_is_named_and_keeps_the_history(photo):
    coords, targets = photo

    def metric(model, epoch):
        if epoch == 2:
            raise ZeroDivisionError("bad metric")
        return 1.0

    with pytest.raises(CallbackError) as info:
        fit(mlp(), coords, targets, epochs=3, lr=0.1, eval_fn=metric, progress=False)
    err = info.value
    assert str(err) == "eval_fn raised at epoch 2: ZeroDivisionError: bad metric"
    assert (err.name, err.epoch, err.member) == ("eval_fn", 2, None)
    assert err.history.epochs == [1] and err.history.metrics["eval"] == [1.0]
    assert isinstance(err.__cause__, ZeroDivisionError)


def test_a_failing_callback_says_what_raised_where(photo):
    coords, targets = photo

    def boom(model, epoch, history):
        if epoch == 1:
            raise KeyError("gone")

    with pytest.raises(CallbackError) as info:
        fit(mlp(), coords, targets, epochs=2, lr=0.1, callbacks={"boom": boom}, snapshot_epochs="all", progress=False)
    err = info.value
    assert str(err) == "callback 'boom' raised at epoch 1: KeyError: 'gone'"
    assert (err.name, err.epoch, err.member) == ("boom", 1, None)


def test_snapshot_timings_are_recorded_per_call(photo):
    coords, targets = photo

    def slow(model, epoch, history):
        import time
        time.sleep(0.02)

    h = fit(mlp(), coords, targets, epochs=2, lr=0.1, callbacks={"slow": slow}, snapshot_epochs="all", progress=False)
    assert sorted(h.snapshot_seconds["slow"]) == [0, 1, 2]
    assert all(0.02 <= s < 5.0 for s in h.snapshot_seconds["slow"].values())
    assert all(0.0 <= s < 60.0 for s in h.eval_seconds) and len(h.eval_seconds) == 2
    assert all(isinstance(s, float) and 0.0 < s < 60.0 for s in h.epoch_seconds) and len(h.epoch_seconds) == 2
    assert sum(h.epoch_seconds) + sum(h.eval_seconds) + 3 * 0.02 <= h.total_seconds < 120.0


def test_history_summary_uses_the_last_entries_and_json_restores_integer_epochs():
    h = History(config={"optimizer": "sgd", "lr": 1, "loss": "mse"}, epochs=[1, 2, 3], loss=[3.0, 2.0, 1.0],
                psnr=[10.0, 30.0, 20.0], iou=[0.1, 0.2, 0.3], snapshots={"a": {0: "x", 3: "y"}},
                snapshot_seconds={"a": {0: 0.5, 3: 0.25}})
    text = repr(h)
    assert "last loss 1," in text and "last PSNR 20.00 dB (best 30.00)" in text and "last IoU 0.3000" in text
    back = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back.snapshots == {"a": {0: "x", 3: "y"}} and back.snapshot_seconds == {"a": {0: 0.5, 3: 0.25}}


def test_epoch_helpers_name_their_argument_and_round_the_middle_down():
    assert resolve_epochs("middle", 5) == [2] and type(resolve_epochs("middle", 5)[0]) is int
    assert start_middle_end(5) == [0, 2, 5]
    for fn in (start_middle_end, lambda e: resolve_epochs("start", e)):
        with pytest.raises(ValueError, match="^epochs must be >= 1, got 0$"):
            fn(0)


def test_progress_flags_decide_even_where_a_person_is_watching(monkeypatch):
    """The explicit INRLIB_PROGRESS words win over the terminal/kernel rule; CI alone turns it off."""
    import sys

    from inrlib.train import _resolve_progress
    monkeypatch.setitem(sys.modules, "inrlib.book", None)
    monkeypatch.setitem(sys.modules, "ipykernel", object())        # a kernel is watching: the fallback says True
    monkeypatch.delenv("CI", raising=False)
    for flag in ("0", "false", "no", "off"):
        monkeypatch.setenv("INRLIB_PROGRESS", flag)
        assert _resolve_progress(None) is False, flag
    monkeypatch.delenv("INRLIB_PROGRESS")
    assert _resolve_progress(None) is True                         # unset, no CI: the kernel decides
    monkeypatch.setenv("CI", "true")
    assert _resolve_progress(None) is False                        # unset, in CI: off
    monkeypatch.delitem(sys.modules, "ipykernel")
    monkeypatch.delenv("CI")

    class NoTty:
        def write(self, s):
            pass

    monkeypatch.setattr(sys, "stderr", NoTty())                    # no isatty: not a terminal
    assert _resolve_progress(None) is False


def test_divergence_messages_word_for_word(photo):
    """What a diverged run says, for a mini-batch run, a full batch of exactly N and an untrained model."""
    coords, targets = photo
    # a full batch's running loss is the loss before its one step (finite): the evaluation after it sees the blow-up
    for batch_size, text, what in ((256, "batch_size=256", "the training loss"),
                                   (1024, "full batch", "the loss over all samples")):
        with pytest.raises(TrainingDiverged) as info:
            fit(mlp(), coords, targets, epochs=30, lr=1e12, batch_size=batch_size, progress=False)
        err = info.value
        done = err.epoch - 1
        assert str(err) == (
            f"training diverged: {what} became {err.loss_value} in epoch {err.epoch} (lr=1e+12, "
            f"optimizer='sgd', loss='mse' (mean over samples and outputs), {text}). The steps are too large: "
            f"lower the learning rate (try lr=1e+11). err.history holds the {done} completed epoch(s); the "
            "model's parameters are now non-finite, so rebuild it before retrying.")
        assert err.history.message == str(err)
    model = mlp()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged) as info:
        fit(model, coords, targets, epochs=2, lr=0.1, progress=False)
    assert str(info.value) == (
        "training diverged: the loss over all samples became nan before training (lr=0.1, optimizer='sgd', "
        "loss='mse' (mean over samples and outputs), full batch). The untrained model already gives non-finite "
        "outputs: check its initialization and the inputs.")


@pytest.mark.parametrize("full_eval", [True, False])
def test_coordinates_outside_the_domain_are_refused_before_any_step(full_eval):
    """fit checks the data once, in its first full-data pass (without one, at every step, so the batch that holds
    the bad rows raises), and then trains
    with the check's value reads off (inrlib.encodings.coords_validated): the check itself must still happen."""
    from inrlib.models import CoordinateMLP
    torch.manual_seed(0)
    model = CoordinateMLP({"type": "multigrid", "dim": 2, "resolutions": [4], "features": 2}, [8])
    before = params_of(model)
    x = torch.rand(300, 2)
    x[280:] *= 1.5                   # past the 256 samples fit's output-shape probe runs the model on
    with pytest.raises(ValueError, match=r"expects coordinates in \[0, 1\]\^2, got values in \[0\.\d+, 1\.\d+\]"):
        fit(model, x, torch.rand(300, 1), epochs=2, lr=0.1, batch_size=8, full_eval=full_eval, progress=False)
    if full_eval:                    # the first full-data pass comes before any step
        assert same_params(before, params_of(model))


def test_history_config_lists_every_setting():
    x, y = disk(30)
    h = fit(mlp(dtype=torch.float64), x, y, epochs=2, lr=0.5, batch_size=7, optimizer="sgd", shuffle=False,
            optimizer_kwargs={"momentum": 0.5}, data_range=2.0, full_eval=False, snapshot_epochs="start,end",
            callbacks=lambda model, e, hist: None, progress=False)
    assert h.config == {"lr": 0.5, "optimizer": "sgd", "optimizer_kwargs": {"momentum": 0.5}, "loss": "mse",
                        "loss_reduction": "mean", "epochs": 2, "batch_size": 7, "n_samples": 30, "seed": 0,
                        "shuffle": False, "device": "cpu", "dtype": "float64", "data_range": 2.0,
                        "full_eval": False, "resample": False, "snapshot_epochs": [0, 2], "engine": "autograd sgd",
                        "engine_fallback": "optimizer_kwargs {'momentum': 0.5}: the fused step does plain SGD and Adam "
                                           "without them"}


def test_the_default_seed_is_zero(photo):
    coords, targets = photo
    a = fit(mlp(), coords, targets, epochs=2, lr=0.1, batch_size=100, progress=False)
    b = fit(mlp(), coords, targets, epochs=2, lr=0.1, batch_size=100, seed=0, progress=False)
    c = fit(mlp(), coords, targets, epochs=2, lr=0.1, batch_size=100, seed=1, progress=False)
    assert a.loss == b.loss and a.loss != c.loss


def test_the_running_loss_weights_each_batch_by_its_size():
    """With steps too small to move a float64 parameter (lr = 1e-300) every batch sees the initial model, so the
    epoch's size-weighted running loss is the initial full-data loss; batches of 7 leave a last one of 2."""
    x, y = disk(30)
    x, y = x.double(), y.double() + torch.linspace(0, 1, 30, dtype=torch.float64)[:, None]
    h = fit(mlp(dtype=torch.float64), x, y, epochs=2, lr=1e-300, batch_size=7, progress=False)
    assert h.loss[0] == pytest.approx(h.initial["loss"], rel=1e-14)

    # epoch 2 brings 50 new samples, still one full batch (batch_size=None)
    g = torch.Generator().manual_seed(0)
    drawn = torch.rand(50, 2, generator=g, dtype=torch.float64), torch.rand(50, 1, generator=g, dtype=torch.float64)
    model = mlp(dtype=torch.float64)
    with torch.no_grad():
        want = float(((model(drawn[0]) - drawn[1]) ** 2).mean())
    h = fit(model, x, y, epochs=2, lr=1e-300, progress=False, resample=lambda e, gen: drawn)
    assert h.config["n_samples"] == 30 and h.loss[1] == pytest.approx(want, rel=1e-14)
    assert h.full_loss[1] == pytest.approx(want, rel=1e-14)


def test_steps_run_in_train_mode_and_evaluations_in_eval_mode():
    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.modes = nn.Linear(2, 1), []

        def forward(self, x):
            self.modes.append(self.training)
            return self.lin(x)

    x, y = disk(20)
    for start in (True, False):
        model = Recorder().train(start)
        fit(model, x, y, epochs=2, lr=0.1, batch_size=10, progress=False, callbacks=lambda m, e, h: m.training,
            snapshot_epochs="all")
        # the output-shape probe (eval), evaluation 0, then per epoch: two steps (train) and one evaluation (eval)
        assert model.modes == [False, False, True, True, False, True, True, False]
        assert model.training is start


def test_model_and_target_shapes_that_cannot_pair_up_are_refused():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            return self.lin(x)[:, 0]                  # (N,)

    x = torch.rand(20, 2)
    with pytest.raises(ValueError, match=r"output for 20 samples has shape \(20,\), but the targets give \(20, 3\)"):
        fit(Flat(), x, torch.rand(20, 3), epochs=1, lr=0.1, progress=False)
    twice = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())
    with torch.no_grad():
        twice[0].weight.fill_(0.0), twice[0].bias.fill_(2.0)     # sigmoid(2) = 0.88; doubled, 1.76: no probability

    class Times(nn.Module):
        def __init__(self, inner, k):
            super().__init__()
            self.inner, self.k = inner, k

        def forward(self, x):
            return self.k * self.inner(x)

    with pytest.raises(ValueError, match=r"loss='bce' expects probabilities but the model output values in \[1\.76"):
        fit(Times(twice, 2.0), x, torch.ones(20, 1), epochs=1, lr=0.1, loss="bce", progress=False)
    with pytest.raises(ValueError, match=r"^loss='bce' needs targets in \[0, 1\]"):
        fit(twice, x, torch.full((20, 1), 2.0), epochs=1, lr=0.1, loss="bce", progress=False)


def test_a_data_range_below_one_is_a_valid_peak():
    x, y = disk(20)
    h = fit(mlp(dtype=torch.float64), x, y * 0.5, epochs=1, lr=0.1, data_range=0.5, progress=False)
    assert h.config["data_range"] == 0.5
    assert h.psnr[0] == pytest.approx(10 * math.log10(0.25 / h.full_loss[0]), rel=1e-12)


def test_an_interrupt_hands_back_every_history(photo):
    coords, targets = photo

    def stop(model, epoch, history):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        fit(mlp(), coords, targets, epochs=3, lr=0.1, callbacks={"stop": stop}, progress=False)
    assert info.value.histories == [info.value.history]


def test_resampled_epochs_keep_the_mini_batches():
    """Each resampled epoch is cut into the same mini-batches as the first (40 samples, batch 16: 16, 16, 8
    in training mode); evaluation forwards run on all 40 in eval mode."""
    from inrlib.encodings import IdentityEncoding
    from inrlib.models import CoordinateMLP
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [8], 1, "tanh").double()
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append((module.training, args[0].shape[0])))

    def draw(epoch, generator):
        c = torch.rand(40, 2, generator=generator, dtype=torch.float64)
        return c, c.sum(1, keepdim=True)

    c0 = torch.rand(40, 2, dtype=torch.float64)
    fit(model, c0, c0.sum(1, keepdim=True), epochs=3, lr=0.1, batch_size=16, resample=draw, progress=False,
        engine="autograd")          # the module's forward hook sees the batches (the fused step has no module calls)
    assert [size for training, size in seen if training] == [16, 16, 8] * 3
    assert {size for training, size in seen if not training} == {40}
