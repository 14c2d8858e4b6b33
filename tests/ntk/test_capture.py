"""The sites and passes (inrlib.ntk.capture): which module is taken how, and the warning when torch.func
fails on a module and its term takes a slower path."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import inrlib.ntk.capture as capture
from inrlib.ntk import NTKFallbackWarning, NTKOperator, empirical_ntk
from inrlib.ntk.capture import Site

from .helpers import TOL, DataBranch, rel


def test_a_module_owning_a_parameter_list_is_one_site_with_all_its_parameters():
    """A layer with its own weight and a ParameterList of biases: one per-sample site that owns them
    all (the container is not a site of its own), its kernel equal to the Jacobian reference."""
    from inrlib.ntk.capture import sites as find_sites

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(2, 5))
            self.extra = nn.ParameterList([nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(5))])

        def forward(self, x):
            return torch.tanh(x @ self.w + self.extra[0]) * self.extra[1]

    torch.manual_seed(1)
    model = nn.Sequential(Odd(), nn.Linear(5, 1))
    sites = {s.name: (s.kind, s.params) for s in find_sites(model)}
    assert sites == {"0": ("per_sample", ["w", "extra.0", "extra.1"]), "1": ("rule", ["weight", "bias"])}
    x = torch.rand(9, 2)
    assert rel(empirical_ntk(model, x, method="structured", chunk_size=4), empirical_ntk(model, x, method="jacobian")) < TOL



def test_site_kinds_are_checked():
    with pytest.raises(ValueError, match=r"^site kind must be one of 'protocol', 'rule', 'per_sample', 'jacobian', "
                                         r"got 'dense'$"):
        Site("0", nn.Linear(2, 2), "mlp", "dense", ["weight"])
    site = Site("0", nn.Linear(2, 2), "mlp", "rule", ["weight", "bias"])
    site.to_jacobian()
    assert site.kind == "jacobian"


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each test starts with no module type reported yet."""
    monkeypatch.setattr(capture, "_WARNED", set())


def _fallbacks(call) -> list[str]:
    """The NTKFallbackWarning messages ``call`` issues; each must point at this test file (the user's line)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        call()
    ours = [w for w in seen if issubclass(w.category, NTKFallbackWarning)]
    assert all(w.filename == __file__ for w in ours), [w.filename for w in ours]
    return [str(w.message) for w in ours]


class GatedTwice(nn.Module):
    """Two DataBranch sites (one module type) after a dense layer."""

    def __init__(self):
        super().__init__()
        self.first, self.a, self.b, self.out = nn.Linear(2, 2), DataBranch(), DataBranch(), nn.Linear(2, 1)

    def forward(self, x):
        return self.out(self.b(torch.tanh(self.a(torch.tanh(self.first(x))))))


def test_a_module_torch_func_cannot_vmap_is_reported_once_per_type_with_why_and_cost(fresh_warnings):
    """DataBranch branches on tensor values, which vmap refuses: its term comes from the Jacobian (exact), and
    one warning names the module type, its site, the exception's type and message, and the cost. Its second
    site, and later calls, add no warning; another module type gets its own."""
    torch.manual_seed(0)
    model, x = GatedTwice(), torch.rand(10, 2)
    got = []
    messages = _fallbacks(lambda: got.append(empirical_ntk(model, x)))
    assert rel(got[0], empirical_ntk(model, x, method="jacobian")) < TOL
    assert len(messages) == 1, messages
    m = messages[0]
    assert m.startswith("empirical_ntk: torch.func failed on module type tests.ntk.helpers.DataBranch (site 'a'): ")
    assert "RuntimeError: " in m and "data-dependent control flow" in m                  # torch's own words: the why
    assert ".. " not in m
    assert "the Jacobian of the whole model with respect to its 24 parameters" in m      # 2 x 6 + 6 x 2
    assert "(N, C, P) Jacobian (1.9 KiB here, growing with N)" in m                      # 10 x 1 x 24 x 8 bytes
    assert _fallbacks(lambda: empirical_ntk(model, x, groups=True)) == []
    assert _fallbacks(lambda: empirical_ntk(DataBranch(), x)) == []                      # same type, another model


class BatchOfOneBug(nn.Module):
    """A user's layer with a genuine bug: it fails on a batch of one point (which per-sample vmap and the
    Jacobian reference both give it)."""

    def __init__(self, n):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(n))

    def forward(self, z):
        if z.shape[0] == 1:
            raise ValueError("bug: a batch of one point")
        return torch.tanh(self.scale * z)


def test_a_bug_in_a_users_module_is_named_not_only_slow(fresh_warnings):
    model = nn.Sequential(nn.Linear(2, 8), BatchOfOneBug(8), nn.Linear(8, 1))
    with pytest.warns(NTKFallbackWarning, match=r"module type tests\.ntk\.test_capture\.BatchOfOneBug \(site '1'\): "
                                                r"ValueError: bug: a batch of one point\. "):
        with pytest.raises(ValueError, match="^bug: a batch of one point$"):
            empirical_ntk(model, torch.rand(9, 2))


class NumpyScaled(nn.Module):
    """Reads its weight through NumPy: fine in a plain forward, impossible under torch.func's transforms."""

    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n))

    def forward(self, z):
        return torch.tanh(self.w * z) / float(np.abs(self.w.detach().cpu().numpy()).max())


def test_the_operator_reports_a_module_it_cannot_take_alone_and_uses_whole_model_products(fresh_warnings):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 8), NumpyScaled(8), nn.Linear(8, 1))
    x = torch.rand(NTKOperator.STRUCTURED_MIN_N, 2)
    ops = []
    messages = _fallbacks(lambda: ops.append(NTKOperator(model, x)))
    assert ops[0].method == "autodiff" and len(messages) == 1
    assert messages[0].startswith("NTKOperator: torch.func failed on module type "
                                  "tests.ntk.test_capture.NumpyScaled (site '1'): RuntimeError: ")
    assert "every product runs a vjp and a jvp through the whole network" in messages[0]
    assert _fallbacks(lambda: NTKOperator(model, x[:2100])) == []                     # once per type
    with pytest.warns(NTKFallbackWarning):                                             # the engine's own report
        with pytest.raises(RuntimeError):                                              # whose Jacobian fails too
            empirical_ntk(model, x[:5])
