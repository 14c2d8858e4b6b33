"""inrlib.fused: the hand-written step equals autograd + torch.optim, in float64, over hundreds of steps.

The reference is the plain loop a new user writes: forward, the members' summed mean losses, backward,
torch.optim.SGD / Adam. Every encoding, activation, loss and optimizer is compared, one model and three
stacked members, with a ragged last batch; then the refusals.
"""
import copy

import pytest
import torch
from torch import nn

from inrlib import fused
from inrlib.encodings import (
    FourierEncoding,
    GaussianFourierEncoding,
    HashGridEncoding,
    IdentityEncoding,
    MultigridEncoding,
)
from inrlib.layers import Dense, Sine
from inrlib.models import CoordinateMLP

pytestmark = pytest.mark.usefixtures("one_thread")

ENCODINGS = {
    "identity": lambda: IdentityEncoding(2),
    "fourier": lambda: FourierEncoding(2, 3),
    "gaussian_fourier": lambda: GaussianFourierEncoding(2, 8, sigma=2.0, seed=1),
    "multigrid": lambda: MultigridEncoding(2, [5, 9], features=2, init_std=0.5),
    "hashgrid": lambda: HashGridEncoding(2, levels=2, features=2, log2_table_size=5, min_resolution=4,
                                         max_resolution=12),
}
ACTIVATIONS = {
    "relu": {"activation": "relu"},
    "tanh": {"activation": "tanh"},
    "sine": {"activation": "sine", "w0": 3.0},
    "simple_sine": {"activation": "simple_sine", "w": 2.0},
    "simple_sine_trainable_w": {"activation": "simple_sine", "w": 2.0, "trainable_w": True},
    "staf": {"activation": "staf", "tau": 3, "w0": 3.0},
    "staf_shared": {"activation": "staf", "tau": 3, "w0": 3.0, "staf_shared": True},
}


def model(encoding="multigrid", activation="relu", out=2, sigmoid=False, seed=0):
    torch.manual_seed(seed)
    return CoordinateMLP(ENCODINGS[encoding](), [16, 12], out, **ACTIVATIONS[activation],
                         output_activation="sigmoid" if sigmoid else None).double()


def data(n=23, out=2, loss="mse", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(n, out, generator=g, dtype=torch.float64)
    if loss != "mse":
        y = (y > 0.5).double()
    return x, y


def reference_losses(name, out, y):
    if name == "mse":
        per = (out - y).square()
    elif name == "bce":
        per = nn.functional.binary_cross_entropy(out.clamp(1e-7, 1 - 1e-7), y, reduction="none")
    else:
        per = nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none")
    return per.flatten(1).mean(1)


def train_reference(models, x, y, *, optimizer, lr, loss, steps, batch):
    """Autograd + torch.optim on M separate models: the sum of their mean batch losses each step."""
    params = [p for m in models for p in m.parameters() if p.requires_grad]
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(params, lr=lr)
    losses = []
    n = x.shape[1]
    for t in range(steps):
        i = (t * batch) % n
        xb, yb = x[:, i:i + batch], y[:, i:i + batch]        # the last batch of each pass is ragged
        opt.zero_grad(set_to_none=True)
        per = torch.stack([reference_losses(loss, m(xb[k])[None], yb[k][None])[0] for k, m in enumerate(models)])
        per.sum().backward()
        opt.step()
        losses.append(per.detach())
    return torch.stack(losses)


def train_fused(step, x, y, *, steps, batch):
    n = x.shape[1]
    out = []
    for t in range(steps):
        i = (t * batch) % n
        out.append(step.step(x[:, i:i + batch], y[:, i:i + batch]))
    return torch.stack(out)


def assert_same_parameters(a, b, rtol=1e-10):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        scale = max(float(q.detach().abs().max()), 1e-300)
        err = float((p - q).abs().max()) / scale
        assert err <= rtol, f"{name}: relative difference {err:.3g}"


CASES = [(e, "relu", "mse", "sgd") for e in ENCODINGS] + \
        [("multigrid", a, "mse", "sgd") for a in ACTIVATIONS if a != "relu"] + \
        [(e, "relu", "mse", "adam") for e in ("identity", "multigrid", "hashgrid")] + \
        [("multigrid", a, "mse", "adam") for a in ("sine", "simple_sine_trainable_w", "staf", "staf_shared")] + \
        [("multigrid", "relu", "bce", "sgd"), ("multigrid", "relu", "bce", "adam"),
         ("fourier", "relu", "bce_logits", "sgd"), ("multigrid", "sine", "bce_logits", "adam")]


@pytest.mark.parametrize("encoding, activation, loss, optimizer", CASES)
def test_one_model_follows_autograd_for_a_hundred_and_twenty_steps(encoding, activation, loss, optimizer):
    ref = model(encoding, activation, sigmoid=loss == "bce")
    mine = copy.deepcopy(ref)
    x, y = data(loss=loss)
    lr = {"sgd": 0.05, "adam": 1e-3}[optimizer]
    want = train_reference([ref], x[None], y[None], optimizer=optimizer, lr=lr, loss=loss, steps=120, batch=5)
    step = fused.for_model(mine, optimizer=optimizer, lr=lr, loss=loss)
    got = train_fused(step, x[None], y[None], steps=120, batch=5)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    assert_same_parameters(mine, ref)
    assert float((want[-1] - want[0]).abs().max()) > 1e-6          # it trained: the comparison is not vacuous


@pytest.mark.parametrize("encoding, activation, loss, optimizer", [
    ("multigrid", "relu", "mse", "sgd"), ("hashgrid", "relu", "mse", "adam"), ("fourier", "staf", "mse", "sgd"),
    ("multigrid", "simple_sine_trainable_w", "bce_logits", "adam"), ("identity", "sine", "bce", "sgd")])
def test_three_stacked_members_each_follow_their_own_trajectory(encoding, activation, loss, optimizer):
    refs = [model(encoding, activation, sigmoid=loss == "bce", seed=s) for s in range(3)]
    copies = [copy.deepcopy(m) for m in refs]
    xs, ys = zip(*(data(loss=loss, seed=s) for s in range(3)))
    x, y = torch.stack(xs), torch.stack(ys)
    lr = {"sgd": 0.05, "adam": 1e-3}[optimizer]
    want = train_reference(refs, x, y, optimizer=optimizer, lr=lr, loss=loss, steps=100, batch=7)
    state, buffers = torch.func.stack_module_state(copies)
    step = fused.for_stack(copies[0], state, buffers, optimizer=optimizer, lr=lr, loss=loss)
    got = train_fused(step, x, y, steps=100, batch=7)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    for m, ref in enumerate(refs):
        for name, p in ref.named_parameters():
            torch.testing.assert_close(state[name][m], p, rtol=1e-10, atol=1e-13, msg=name)


def test_sgd_touches_only_the_grid_rows_of_the_batch():
    m = model("multigrid")
    before = [t.detach().clone() for t in m.encoding.tables]
    step = fused.for_model(m, optimizer="sgd", lr=0.1, loss="mse")
    x = torch.tensor([[0.1, 0.1]], dtype=torch.float64)
    step.step(x[None], torch.zeros(1, 1, 2, dtype=torch.float64))
    for level, (t, b) in enumerate(zip(m.encoding.tables, before)):
        rows, _ = m.encoding.corners(x, level)
        changed = set(torch.nonzero((t != b).any(dim=1)).flatten().tolist())
        assert changed == set(rows.flatten().tolist())                # the 4 corners of the cell, no other row
    assert step.description == "fused sgd, grid tables on the touched rows"
    assert fused.for_model(model("multigrid"), optimizer="adam", lr=1e-3, loss="mse").description == "fused adam"


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def forward(self, x):
        return self.layer(x)


@pytest.mark.parametrize("build, reason", [
    (lambda: Custom(), "Custom is not a CoordinateMLP or an nn.Sequential"),
    (lambda: nn.Sequential(IdentityEncoding(2), nn.Linear(2, 1)), "the layer Linear has no fused forward"),
    (lambda: nn.Sequential(Dense(2, 3), nn.Dropout(0.1), Dense(3, 1)), "the layer Dropout"),
    (lambda: nn.Sequential(IdentityEncoding(2), nn.ReLU()), "no Dense layer"),
])
def test_models_it_cannot_read_are_refused_with_the_reason(build, reason):
    with pytest.raises(fused.Unsupported, match=reason):
        fused.plan(build())


def test_settings_it_does_not_compute_are_refused():
    m = model("identity")
    with pytest.raises(fused.Unsupported, match="optimizer_kwargs {'momentum': 0.9}"):
        fused.for_model(m, optimizer="sgd", lr=0.1, loss="mse", optimizer_kwargs={"momentum": 0.9})
    with pytest.raises(fused.Unsupported, match="optimizer 'rmsprop'"):
        fused.for_model(m, optimizer="rmsprop", lr=0.1, loss="mse")
    m.mlp[0].weight.requires_grad_(False)
    with pytest.raises(fused.Unsupported, match="frozen"):
        fused.for_model(m, optimizer="sgd", lr=0.1, loss="mse")


def test_a_plain_sequential_with_an_encoding_first_is_read():
    torch.manual_seed(0)
    seq = nn.Sequential(MultigridEncoding(2, [4], features=1, init_std=0.3), Dense(3, 8), nn.ReLU(), Dense(8, 1),
                        nn.Sigmoid()).double()
    ref = copy.deepcopy(seq)
    x, y = data(out=1, loss="bce")
    want = train_reference([ref], x[None], y[None], optimizer="sgd", lr=0.5, loss="bce", steps=40, batch=6)
    got = train_fused(fused.for_model(seq, optimizer="sgd", lr=0.5, loss="bce"), x[None], y[None], steps=40, batch=6)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    assert_same_parameters(seq, ref)


def test_a_fixed_sine_frequency_is_read_from_its_buffer():
    torch.manual_seed(0)
    seq = nn.Sequential(Dense(2, 6), Sine(5.0), Dense(6, 1)).double()
    step = fused.for_model(seq, optimizer="sgd", lr=0.1, loss="mse")
    out, _ = step.forward(torch.full((1, 3, 2), 0.25, dtype=torch.float64))
    torch.testing.assert_close(out[0], seq(torch.full((3, 2), 0.25, dtype=torch.float64)), rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------------------------------------- through fit
from inrlib.train import fit, fit_ensemble  # noqa: E402


def _twins(encoding="multigrid", activation="relu", sigmoid=False, seed=0):
    a = model(encoding, activation, sigmoid=sigmoid, seed=seed)
    return a, copy.deepcopy(a)


@pytest.mark.parametrize("encoding, activation, loss, optimizer", [
    ("multigrid", "relu", "mse", "sgd"), ("hashgrid", "staf", "mse", "adam"), ("fourier", "sine", "bce", "sgd")])
def test_fit_auto_takes_the_fused_step_and_records_what_autograd_records(encoding, activation, loss, optimizer):
    a, b = _twins(encoding, activation, sigmoid=loss == "bce")
    x, y = data(loss=loss)
    snaps = {"norm": lambda m, epoch, h: float(sum(p.detach().square().sum() for p in m.parameters()))}
    kw = dict(epochs=6, lr=0.05 if optimizer == "sgd" else 1e-3, optimizer=optimizer, loss=loss, batch_size=5,
              callbacks=snaps, snapshot_epochs="all", progress=False, seed=3)
    ha = fit(a, x, y, **kw)
    hb = fit(b, x, y, engine="autograd", **kw)
    assert ha.config["engine"].startswith("fused") and hb.config["engine"] == f"autograd {optimizer}"
    torch.testing.assert_close(torch.tensor(ha.loss), torch.tensor(hb.loss), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(torch.tensor(ha.full_loss), torch.tensor(hb.full_loss), rtol=1e-10, atol=1e-14)
    assert ha.snapshots["norm"].keys() == hb.snapshots["norm"].keys()
    for e in ha.snapshots["norm"]:
        assert ha.snapshots["norm"][e] == pytest.approx(hb.snapshots["norm"][e], rel=1e-10)
    assert_same_parameters(a, b)


def test_fit_with_resampling_is_the_same_on_both_engines():
    a, b = _twins()

    def resample(epoch, gen):
        xx = torch.rand(17, 2, generator=gen, dtype=torch.float64)
        return xx, torch.stack([xx.sum(1), xx.prod(1)], 1)

    x, y = data()
    ha = fit(a, x, y, epochs=4, lr=0.05, batch_size=6, resample=resample, progress=False)
    hb = fit(b, x, y, epochs=4, lr=0.05, batch_size=6, resample=resample, progress=False, engine="autograd")
    torch.testing.assert_close(torch.tensor(ha.loss), torch.tensor(hb.loss), rtol=1e-10, atol=1e-14)
    assert_same_parameters(a, b)


def test_fit_ensemble_is_the_same_on_both_engines():
    pairs = [_twins(seed=s) for s in range(3)]
    xs, ys = zip(*(data(seed=s) for s in range(3)))
    kw = dict(epochs=3, lr=0.05, batch_size=7, progress=False)
    ha = fit_ensemble([p[0] for p in pairs], list(xs), list(ys), **kw)
    hb = fit_ensemble([p[1] for p in pairs], list(xs), list(ys), engine="autograd", **kw)
    for m in range(3):
        assert ha[m].config["engine"].startswith("fused")
        torch.testing.assert_close(torch.tensor(ha[m].loss), torch.tensor(hb[m].loss), rtol=1e-10, atol=1e-14)
        assert_same_parameters(pairs[m][0], pairs[m][1])


def test_a_users_own_module_trains_through_autograd_and_says_why():
    torch.manual_seed(0)
    m = Custom().double()
    x, y = data(out=1)
    h = fit(m, x, y, epochs=2, lr=0.1, batch_size=5, progress=False)
    assert h.config["engine"] == "autograd sgd" and "Custom is not a CoordinateMLP" in h.config["engine_fallback"]
    assert h.loss[-1] < h.loss[0]
    with pytest.raises(ValueError, match="engine='fused' cannot train this model: Custom is not .*pass engine='auto'"):
        fit(Custom().double(), x, y, epochs=1, lr=0.1, progress=False, engine="fused")
    with pytest.raises(ValueError, match="engine must be one of 'auto', 'fused', 'autograd', got 'fast'"):
        fit(Custom().double(), x, y, epochs=1, lr=0.1, progress=False, engine="fast")


def test_momentum_falls_back_to_autograd():
    a = model("identity")
    x, y = data()
    h = fit(a, x, y, epochs=1, lr=0.05, batch_size=5, progress=False, optimizer_kwargs={"momentum": 0.9})
    assert h.config["engine"] == "autograd sgd" and "momentum" in h.config["engine_fallback"]
