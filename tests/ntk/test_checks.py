"""The checks every NTK entry point runs first (inrlib.ntk.checks): the memory budget, the options, the
parameters, and the train/eval mode the caller gets back."""
import re

import numpy as np
import pytest
import torch
from torch import nn

from inrlib.encodings import IdentityEncoding, MultigridEncoding
from inrlib.models import CoordinateMLP
from inrlib.ntk import NTKOperator, empirical_ntk, extreme_eigenvalues, interlacing_bounds
from inrlib.ntk.checks import memory_budget_bytes

from .helpers import TOL, rel


def test_cuda_budget_counts_the_allocators_cached_blocks(monkeypatch):
    """mem_get_info calls memory the caching allocator keeps for reuse 'used': it is free to us."""
    from inrlib import ntk as N
    gib = 2 ** 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 40 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 8 * gib)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    asked = []

    def fraction_of(share):   # torch's own refuses a device without an index ("cuda"): ask with one
        return lambda device: asked.append(device) or (share if isinstance(device, int) else 1 / 0)

    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", fraction_of(1.0), raising=False)
    assert N.available_memory(torch.device("cuda")) == 42 * gib
    assert memory_budget_bytes(None, torch.device("cuda")) == 21 * gib
    # a process given a share of the card (set_per_process_memory_fraction) counts only its share
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", fraction_of(0.625), raising=False)
    assert N.available_memory(torch.device("cuda")) == (50 - 40 + 32) * gib      # 0.625 * 80 = 50 GiB
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", fraction_of(0.25), raising=False)
    assert N.available_memory(torch.device("cuda:1")) == 32 * gib                 # the share is spent: cache only
    assert asked == [0, 0, 0, 1]
    # each query names the device asked about (another card's numbers would be wrong), and a cache
    # with nothing unallocated adds nothing
    queried = []

    def per_device(value):
        return lambda device=None: queried.append(device) or value

    dev = torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", per_device((6 * gib, 80 * gib)))
    monkeypatch.setattr(torch.cuda, "memory_reserved", per_device(9 * gib))
    monkeypatch.setattr(torch.cuda, "memory_allocated", per_device(9 * gib))
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", fraction_of(1.0), raising=False)
    assert N.available_memory(dev) == 6 * gib
    assert queried == [dev, dev, dev]


def test_host_budget_is_memavailable_or_eight_gib_without_it(monkeypatch):
    from inrlib import ntk as N
    with open("/proc/meminfo") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
    got = N.available_memory(torch.device("cpu"))
    assert abs(got - kib * 1024) < 512 * 2 ** 20 and got % 1024 == 0      # read again a moment later

    def no_file(*a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr("builtins.open", no_file)
    assert N.available_memory(torch.device("cpu")) == 8 * 2 ** 30



@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True])
def test_chunk_size_must_be_a_positive_integer(bad):
    """0, negatives, fractions, strings and bools are refused by name (0 used to mean the default silently,
    2.5 and "4" failed deep inside range())."""
    model = CoordinateMLP(IdentityEncoding(2), [8], 1)
    x = torch.rand(6, 2)
    message = "^" + re.escape(f"chunk_size must be a positive integer, got {bad!r}") + "$"
    for method in ("structured", "jacobian", "ntk_vp"):
        with pytest.raises(ValueError, match=message):
            empirical_ntk(model, x, method=method, chunk_size=bad)
    with pytest.raises(ValueError, match=message):
        NTKOperator(model, x, chunk_size=bad)


def test_integer_chunk_sizes_of_any_integer_type_give_the_same_kernel():
    torch.manual_seed(0)
    model = CoordinateMLP(MultigridEncoding(2, [4, 9], 2), [8], 2, "staf", tau=2)
    x = torch.rand(11, 2)
    want = empirical_ntk(model, x, method="jacobian")
    for chunk in (1, 4, np.int64(4), 11, 50):
        assert rel(empirical_ntk(model, x, chunk_size=chunk), want) < TOL, chunk
    assert rel(empirical_ntk(model, x, method="ntk_vp", chunk_size=np.int32(3)), want) < TOL


class Counted(nn.Module):
    """Wraps a model and counts its forward calls: "before any work" means none."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("value, count", [(float("nan"), 3), (float("inf"), 1), (-float("inf"), 2)])
def test_a_model_with_non_finite_parameters_is_refused_before_any_work_naming_the_tensor(value, count):
    torch.manual_seed(0)
    model = Counted(CoordinateMLP(MultigridEncoding(2, [4], 2), [8], 1)).double()      # no cast copy: calls count
    with torch.no_grad():
        model.inner.mlp[0].weight.view(-1)[:count] = value
    message = rf"^parameter 'inner\.mlp\.0\.weight' has {count} NaN/inf values; the kernel would be NaN"
    x = torch.rand(6, 2, dtype=torch.float64)
    calls = [lambda: empirical_ntk(model, x), lambda: empirical_ntk(model, x, method="jacobian"),
             lambda: empirical_ntk(model, x, dtype=torch.float32),           # refused before the cast copy
             lambda: NTKOperator(model, x), lambda: interlacing_bounds(model, x, k=1, size=3)]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()
    assert model.calls == 0
    # a frozen parameter takes part in the forward too: refused as well, by its own name
    model.inner.mlp[0].weight.data.fill_(0.5)
    model.inner.mlp[2].bias.requires_grad_(False).data.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"^parameter 'inner\.mlp\.2\.bias' has 1 NaN/inf values"):
        empirical_ntk(model, x)
    model.inner.mlp[2].bias.data.fill_(0.0)
    assert empirical_ntk(model, x).shape == (6, 6) and model.calls > 0


def test_options_are_validated_with_every_allowed_value_named():
    model = CoordinateMLP(IdentityEncoding(2), [8], 1)
    x = torch.rand(6, 2)
    cases = [
        (lambda: empirical_ntk(model, x, method="magic"),
         "method must be 'auto', 'structured', 'jacobian' or 'ntk_vp', got 'magic'"),
        (lambda: empirical_ntk(model, x, method=None), "method must be 'auto', 'structured', 'jacobian' or 'ntk_vp', got None"),
        (lambda: empirical_ntk(model, x, outputs="diag"), "outputs must be 'trace' or 'full', got 'diag'"),
        (lambda: NTKOperator(model, x, method="jacobian"),
         "method must be 'auto', 'structured' or 'autodiff', got 'jacobian'"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message
    op = NTKOperator(model, x)
    with pytest.raises(ValueError, match=r"^which must be 'largest', 'smallest' or 'both', got 'top'$"):
        extreme_eigenvalues(op, k=1, which="top")


def _with_dropout() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 8), nn.Tanh(),
                         nn.Dropout(0.5), nn.Linear(8, 1)).double()


def test_the_callers_train_and_eval_flags_come_back_module_by_module():
    """The kernel is the eval-mode model's (dropout off) and every submodule's flag is restored: a model in
    train mode stays in train mode after NTKOperator (it was left in eval mode), and a model mixing train and
    eval submodules keeps its mix (empirical_ntk set them all to the top module's flag)."""
    x = torch.rand(12, 2, dtype=torch.float64)
    model = _with_dropout()
    K_eval = empirical_ntk(model.eval(), x, method="jacobian")
    model.train()
    model[5].eval()                                        # a mix: one dropout already off
    flags = [m.training for m in model.modules()]
    for method in ("structured", "jacobian", "ntk_vp"):
        assert rel(empirical_ntk(model, x, method=method), K_eval) < TOL, method
        assert [m.training for m in model.modules()] == flags, method
    v = torch.randn(12, dtype=torch.float64)
    for method in ("structured", "autodiff"):
        op = NTKOperator(model, x, method=method)
        assert [m.training for m in model.modules()] == flags, method
        assert rel(op.matvec(v), K_eval @ v) < 1e-12, method          # products in eval mode too
        assert [m.training for m in model.modules()] == flags, method
    b = interlacing_bounds(model, x, k=1, size=4)
    assert b["size"] == 4 and [m.training for m in model.modules()] == flags


def test_flags_come_back_when_the_computation_fails():
    model = _with_dropout().train()
    with pytest.raises(Exception, match="memory budget"):
        empirical_ntk(model, torch.rand(3000, 2, dtype=torch.float64), memory_budget=10_000_000)
    assert all(m.training for m in model.modules())
