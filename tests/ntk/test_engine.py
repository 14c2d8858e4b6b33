"""The structured NTK engine (inrlib.ntk.engine) against the torch.func references: every encoding, network
and module kind, groups, chunks and panels, its refusals, and what it restores and warns about."""

import pytest
import torch
from torch import nn

from inrlib.encodings import FourierEncoding, IdentityEncoding, MultigridEncoding
from inrlib.models import CoordinateMLP
from inrlib.ntk import NTKMemoryError, NTKOperator, empirical_ntk, interlacing_bounds

from .helpers import ENCODINGS, TOL, DataBranch, Shared, Unknown, rel


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_structured_equals_jacobian_for_every_encoding(encoding, dim):
    torch.manual_seed(dim)
    model = CoordinateMLP(ENCODINGS[encoding](dim), [24, 24], 1, "relu")
    x = torch.rand(40, dim)
    K = empirical_ntk(model, x)
    R = empirical_ntk(model, x, method="jacobian")
    assert K.dtype == torch.float64 and K.shape == (40, 40)
    assert rel(K, R) < TOL



@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_structured_kernel_in_chunks_equals_the_jacobian_reference(encoding):
    """Forward and backward passes in chunks of 7 points (the last one short; N = 30 and a second set
    of 17): captures, sensitivities and inputs are joined across chunks, for every group and for the
    cross kernel, with STAF's per-sample sites among them."""
    torch.manual_seed(5)
    model = CoordinateMLP(ENCODINGS[encoding](2), [12, 12], 2, "staf", tau=2)
    x, x2 = torch.rand(30, 2), torch.rand(17, 2)
    for outputs in ("trace", "full"):
        K = empirical_ntk(model, x, groups=True, outputs=outputs, method="structured", chunk_size=7)
        R = empirical_ntk(model, x, groups=True, outputs=outputs, method="jacobian")
        assert set(R) <= set(K), (outputs, encoding)   # the structured engine also names each grid level
        for g in R:      # no grid in some encodings: its kernel is exactly zero
            assert (rel(K[g], R[g]) < TOL) if float(R[g].norm()) > 0 else float(K[g].abs().max()) == 0, (outputs, g)
    C = empirical_ntk(model, x, x2, method="structured", chunk_size=7)
    assert C.shape == (30, 17) and rel(C, empirical_ntk(model, x, x2, method="jacobian")) < TOL



@pytest.mark.parametrize("activation,param", [("relu", "ntk"), ("relu", "standard"), ("tanh", "ntk"),
                                              ("sine", "ntk"), ("simple_sine", "ntk"), ("staf", "ntk")])
@pytest.mark.parametrize("outputs,channels", [("trace", 1), ("trace", 3), ("full", 3)])
def test_structured_equals_jacobian_for_every_network(activation, param, outputs, channels):
    torch.manual_seed(0)
    model = CoordinateMLP(MultigridEncoding(2, [5, 12], 2), [20, 20], channels, activation,
                          parameterization=param, trainable_w=True)
    x = torch.rand(30, 2)
    K = empirical_ntk(model, x, outputs=outputs)
    R = empirical_ntk(model, x, outputs=outputs, method="jacobian")
    n = 30 * (channels if outputs == "full" else 1)
    assert K.shape == (n, n)
    assert rel(K, R) < TOL



def test_cross_kernel_between_two_point_sets():
    torch.manual_seed(2)
    model = CoordinateMLP(MultigridEncoding(2, [6, 20], 2), [16, 16], 2, "staf")
    x, y = torch.rand(25, 2), torch.rand(11, 2)
    K = empirical_ntk(model, x, y)
    assert K.shape == (25, 11)
    assert rel(K, empirical_ntk(model, x, y, method="jacobian")) < TOL
    both = empirical_ntk(model, torch.cat([x, y]))
    assert rel(K, both[:25, 25:]) < TOL



class ScaledBy(nn.Module):
    """A layer called with a 0-d tensor beside the batch: its inputs are not per-sample, so the engine
    must take its Jacobian instead of per-sample gradients."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n))

    def forward(self, z, gain):
        return torch.tanh(self.weight * z) * gain



class WithGain(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.scaled, self.out = nn.Linear(2, 8), ScaledBy(8), nn.Linear(8, 2)
        self.register_buffer("gain", torch.tensor(1.5))

    def forward(self, x):
        return self.out(self.scaled(self.first(x), self.gain))



class PairOut(nn.Module):
    """A layer that returns a tuple: the engine cannot capture it and must take its Jacobian."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n))

    def forward(self, z):
        return torch.sin(self.weight * z), torch.cos(z)



class WithPair(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.pair, self.out = nn.Linear(2, 8), PairOut(8), nn.Linear(8, 1)

    def forward(self, x):
        a, b = self.pair(self.first(x))
        return self.out(a * b)



@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(2, 16), Unknown(16), nn.Linear(16, 2)),
    lambda: Shared(),
    lambda: WithGain(),
    lambda: WithPair(),
    lambda: nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1, bias=False)),
])
def test_modules_the_engine_does_not_know_fall_back_exactly(make):
    torch.manual_seed(3)
    model = make()
    x = torch.rand(20, 2)
    x2 = torch.rand(13, 2)
    for outputs in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=outputs),
                   empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL
        # the cross kernel: a site taken by its Jacobian must be taken between the two point sets
        assert rel(empirical_ntk(model, x, x2, outputs=outputs),
                   empirical_ntk(model, x, x2, outputs=outputs, method="jacobian")) < TOL



def test_groups_sum_to_total_and_are_psd():
    torch.manual_seed(4)
    model = CoordinateMLP(MultigridEncoding(2, [4, 10, 30], 2), [16, 16], 2, "relu")
    x = torch.rand(50, 2)
    G = empirical_ntk(model, x, groups=True)
    R = empirical_ntk(model, x, groups=True, method="jacobian")
    assert {"total", "mlp", "grid", "encoding", "encoding.level0", "encoding.level2", "mlp.0"} <= set(G)
    assert rel(G["mlp"] + G["grid"], G["total"]) < 1e-13
    levels = sum(G[f"encoding.level{i}"] for i in range(3))
    assert rel(levels, G["grid"]) < 1e-13 and rel(G["encoding"], G["grid"]) < 1e-13
    layers = sum(G[k] for k in G if k.startswith("mlp."))
    assert rel(layers, G["mlp"]) < 1e-13
    for key in ("total", "mlp", "grid", "mlp.0"):
        assert rel(G[key], R[key]) < TOL
    for key, value in G.items():
        assert torch.allclose(value, value.T, rtol=0, atol=1e-12 * float(value.abs().max()))
        ev = torch.linalg.eigvalsh(value)
        assert float(ev.min()) >= -1e-12 * float(ev.max()), key
    # each level's term against the Jacobian of that level's table alone
    params = dict(model.named_parameters())
    from torch.func import functional_call, jacrev
    xd = x.double()
    m64 = model.double()
    for level in range(3):
        name = f"encoding.tables.{level}"
        J = jacrev(lambda p: functional_call(m64, p, (xd,)))({name: params[name].detach().double()})[name]
        J = J.reshape(50, 2, -1)
        ref = torch.einsum("icp,jcp->ij", J, J)
        assert rel(G[f"encoding.level{level}"], ref) < TOL



def test_groups_without_a_grid_have_zero_grid_term():
    model = CoordinateMLP(FourierEncoding(2, 4), [16], 1)
    G = empirical_ntk(model, torch.rand(20, 2), groups=True)
    assert float(G["grid"].abs().max()) == 0.0 and rel(G["mlp"], G["total"]) == 0.0



def test_float32_kernel_is_close_in_frobenius_norm():
    torch.manual_seed(6)
    model = CoordinateMLP(MultigridEncoding(2, [16], 2), [64, 64], 1)
    x = torch.rand(64, 2)
    k32 = empirical_ntk(model, x, dtype=torch.float32)
    assert k32.dtype == torch.float32
    assert rel(k32.double(), empirical_ntk(model, x)) < 1e-4



def test_bad_input_gives_clear_errors():
    model = CoordinateMLP(IdentityEncoding(2), [8], 1)
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        empirical_ntk(model, torch.rand(10))
    with pytest.raises(TypeError, match="floating point"):
        empirical_ntk(model, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D coordinates"):
        empirical_ntk(model, torch.rand(4, 3))
    with pytest.raises(ValueError, match="outputs"):
        empirical_ntk(model, torch.rand(4, 2), outputs="diag")
    with pytest.raises(ValueError, match="method"):
        empirical_ntk(model, torch.rand(4, 2), method="magic")
    frozen = CoordinateMLP(IdentityEncoding(2), [8], 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(frozen, torch.rand(4, 2))
    with pytest.raises(NTKMemoryError, match="NTKOperator"):
        empirical_ntk(model, torch.rand(3000, 2), memory_budget=10_000_000)
    with pytest.raises(TypeError, match="nn.Module"):
        empirical_ntk(lambda x: x, torch.rand(4, 2))



def test_bias_free_dense_layers_contribute_no_bias_term():
    """Dense(bias=False) in both parameterizations: the structured kernel has no b_scale^2 D D^T term."""
    from inrlib.layers import Dense
    torch.manual_seed(4)
    model = nn.Sequential(Dense(2, 16, bias=False), nn.Tanh(), Dense(16, 8, beta=0.5), nn.Tanh(),
                          Dense(8, 2, parameterization="standard", bias=False))
    x = torch.rand(25, 2)
    x2 = torch.rand(13, 2)
    for outputs in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=outputs),
                   empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL
        # the cross kernel: a site taken by its Jacobian must be taken between the two point sets
        assert rel(empirical_ntk(model, x, x2, outputs=outputs),
                   empirical_ntk(model, x, x2, outputs=outputs, method="jacobian")) < TOL



def test_unknown_modules_use_per_sample_gradients_not_the_jacobian_fallback(monkeypatch):
    """A vmap-able module without a rule is handled by per-sample gradients; the Jacobian fallback
    (exact too, but O(N P) memory) must not be what makes the kernel right."""
    import inrlib.ntk.engine as engine
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 16), Unknown(16), nn.Linear(16, 2))
    x = torch.rand(20, 2)
    want = {o: empirical_ntk(model, x, outputs=o, method="jacobian") for o in ("trace", "full")}
    want_groups = empirical_ntk(model, x, groups=True, method="jacobian")

    def no_jacobian(*args, **kwargs):
        raise AssertionError("the structured engine fell back to the Jacobian for a vmap-able module")
    monkeypatch.setattr(engine, "jacobian_ntk", no_jacobian)
    for o in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=o), want[o]) < TOL
    got = empirical_ntk(model, x, groups=True)
    assert set(got) == set(want_groups) and all(rel(got[k], want_groups[k]) < TOL for k in got if want_groups[k].norm() > 0)



class OwnParams(nn.Module):
    """A model that holds its parameters itself (its site is the model) beside a child named 'grid'."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(2, 3))
        self.grid = nn.Linear(3, 2)

    def forward(self, x):
        return self.grid(torch.tanh(x @ self.a))



def test_reference_groups_name_the_model_site_and_reserved_module_names():
    torch.manual_seed(0)
    model = OwnParams()
    x, x2 = torch.rand(9, 2), torch.rand(5, 2)
    for other in (None, x2):
        ref = empirical_ntk(model, x, other, groups=True, method="jacobian")
        got = empirical_ntk(model, x, other, groups=True)
        assert "grid (module)" in ref and "model" in ref and set(ref) == set(got)
        for key in ref:
            if float(ref[key].norm()) == 0.0:
                assert float(got[key].norm()) == 0.0, key
            else:
                assert rel(got[key], ref[key]) < TOL, key
        assert float(ref["grid"].abs().max()) == 0.0           # no grid encoding: the group is zeros
        assert rel(ref["total"], empirical_ntk(model, x, other, method="jacobian")) < TOL



def test_a_model_without_mlp_parameters_has_a_zero_mlp_kernel_of_the_kernels_dtype():
    torch.manual_seed(3)
    enc = MultigridEncoding(2, [4, 7], 1)
    x = torch.rand(6, 2)
    head = nn.Linear(enc(x).shape[1], 1, bias=False).requires_grad_(False)     # frozen: the grid is all there is
    K = empirical_ntk(nn.Sequential(enc, head), x, groups=True)
    assert K["mlp"].dtype == torch.float64 and float(K["mlp"].abs().max()) == 0.0
    assert rel(K["grid"], K["total"]) < TOL and float(K["total"].norm()) > 0



def test_structured_memory_refusal_states_its_need():
    """The structured path's need: the kernel (N x N float64 entries) and the few (rows x N) temporaries of
    one panel, rows = min(N, 256, budget / 8 / (4 N 8 bytes)); here 100,000 points and a 1 GiB budget:
    41 rows, 80e9 + 4 x 41 x 1e5 x 8 bytes = 74.6 GiB (74.5 for the kernel alone)."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [4], 1, "tanh").double()
    n = 100_000
    x = torch.rand(n, 2, dtype=torch.float64)
    rows = min(n, 256, (2 ** 30 // 8) // (4 * n * 8))
    need = n * n * 8 + 4 * rows * n * 8
    assert rows == 41 and f"{need / 2**30:.1f}" == "74.6"
    with pytest.raises(NTKMemoryError, match=rf"^the kernel at N={n}x{n} needs about 74\.6 GiB, over the memory "
                                             r"budget of 1\.0 GiB; use fewer points"):
        empirical_ntk(model, x, memory_budget=2 ** 30)
    # in the model's float32 (dtype=None): 4-byte entries, 2 x 41 rows
    rows32 = min(n, 256, (2 ** 30 // 8) // (4 * n * 4))
    need32 = n * n * 4 + 4 * rows32 * n * 4
    assert rows32 == 83 and f"{need32 / 2**30:.1f}" == "37.4"
    with pytest.raises(NTKMemoryError, match=r"needs about 37\.4 GiB"):
        empirical_ntk(model.float(), x.float(), memory_budget=2 ** 30, dtype=None)



def test_input_refusals_word_for_word_name_the_argument():
    model = CoordinateMLP(IdentityEncoding(2), [8], 1)
    x = torch.rand(4, 2)
    cases = [
        (lambda: empirical_ntk(model, torch.rand(0, 2)), ValueError, "x has no points (shape (0, 2))"),
        (lambda: empirical_ntk(model, x, torch.rand(0, 2)), ValueError, "x2 has no points (shape (0, 2))"),
        (lambda: empirical_ntk(model, x, torch.rand(3, 2, 1)), ValueError,
         "x2 must have shape (N, d) (one row per point), got shape (3, 2, 1)"),
        (lambda: empirical_ntk(model, x, [[0.0, 1.0]]), TypeError, "x2 must be a torch.Tensor of shape (N, d), got list"),
        (lambda: empirical_ntk(model, x, torch.ones(3, 2, dtype=torch.int64)), TypeError,
         "x2 must be floating point, got torch.int64; use x2.double()"),
        (lambda: empirical_ntk(model, x, torch.rand(3, 5)), ValueError,
         "the model takes 2-D coordinates but x2 has 5 columns"),
        (lambda: NTKOperator(model, torch.rand(0, 2)), ValueError, "x has no points (shape (0, 2))"),
        (lambda: interlacing_bounds(model, torch.rand(4, 3), size=2), ValueError,
         "the model takes 2-D coordinates but x has 3 columns"),
        (lambda: empirical_ntk(CoordinateMLP(IdentityEncoding(2), [8], 1).requires_grad_(False), x), ValueError,
         "the model has no trainable parameters (all have requires_grad=False), so its NTK is zero; unfreeze some "
         "parameters with p.requires_grad_(True)"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as info:
            call()
        assert str(info.value) == message



@pytest.mark.parametrize("outputs, budget, rows", [("trace", 60 * 2 ** 10, 8), ("full", 180 * 2 ** 10, 6)])
def test_a_small_budget_splits_the_kernel_into_row_panels_and_mirrors_them(outputs, budget, rows):
    """A budget of a few KiB leaves room for few rows per panel (the panel's temporaries, 4 x rows x N x
    outputs^2 x 8 bytes, within budget / 8: 8 rows of 30 for the trace, 6 with 2 outputs in full): the
    symmetric kernel is built panel by panel above the diagonal and mirrored, the cross kernel panel by
    panel in full; both equal the Jacobian reference."""
    torch.manual_seed(2)
    model = CoordinateMLP(ENCODINGS["multigrid"](2), [12], 2, "staf", tau=2)
    x, x2 = torch.rand(30, 2), torch.rand(11, 2)
    c2 = 4 if outputs == "full" else 1
    assert (budget // 8) // (4 * 30 * c2 * 8) == rows                    # several panels of 30 rows
    K = empirical_ntk(model, x, outputs=outputs, method="structured", memory_budget=budget)
    assert rel(K, empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL
    assert torch.equal(K, K.T)                                           # mirrored: exactly symmetric
    G = empirical_ntk(model, x, outputs=outputs, method="structured", groups=True, memory_budget=4 * budget)
    assert all(torch.equal(t, t.T) for t in G.values())
    C = empirical_ntk(model, x, x2, outputs=outputs, method="structured", memory_budget=budget)
    assert rel(C, empirical_ntk(model, x, x2, outputs=outputs, method="jacobian")) < TOL



class Unused(nn.Module):
    """A layer whose output the model computes and then discards: its sensitivity is zero."""

    def __init__(self):
        super().__init__()
        self.first, self.aside, self.out = nn.Linear(2, 8), nn.Linear(8, 3), nn.Linear(8, 1)

    def forward(self, x):
        h = torch.tanh(self.first(x))
        self.aside(h)
        return self.out(h)



class GatedByData(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.branchy, self.out = nn.Linear(2, 2), DataBranch(), nn.Linear(2, 1)

    def forward(self, x):
        return self.out(self.branchy(torch.tanh(self.first(x))))



@pytest.mark.parametrize("make", [DataBranch, Unused, GatedByData])
def test_sites_vmap_cannot_take_and_unused_sites_are_exact_in_every_form(make, monkeypatch):
    """The Jacobian fallback for a whole model and for a site inside one (groups too: a site's Jacobian
    kernel joins its group's sum), and a site whose output is discarded (zero sensitivity)."""
    import inrlib.ntk.engine as engine
    taken, jacobian = [], engine.jacobian_ntk
    monkeypatch.setattr(engine, "jacobian_ntk", lambda *a, **k: taken.append(sorted(a[3])) or jacobian(*a, **k))
    torch.manual_seed(4)
    model = make()
    empirical_ntk(model, torch.rand(3, 2), method="structured")
    assert taken == {DataBranch: [["v", "w"]], GatedByData: [["branchy.v", "branchy.w"]], Unused: []}[make]
    x, x2 = torch.rand(14, 2), torch.rand(9, 2)
    for outputs in ("trace", "full"):
        K = empirical_ntk(model, x, outputs=outputs, method="structured", groups=True)
        R = empirical_ntk(model, x, outputs=outputs, method="jacobian", groups=True)
        for g in ("total", "mlp"):
            assert rel(K[g], R[g]) < TOL, (outputs, g)
        assert rel(empirical_ntk(model, x, x2, outputs=outputs, method="structured"),
                   empirical_ntk(model, x, x2, outputs=outputs, method="jacobian")) < TOL



def test_two_chunks_join_their_captures():
    torch.manual_seed(6)
    model = CoordinateMLP(ENCODINGS["multigrid"](2), [10], 2, "staf", tau=2)
    x = torch.rand(14, 2)
    for outputs in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=outputs, method="structured", chunk_size=7),
                   empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL



def test_more_refusals_word_for_word():
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))     # no .dim to check against
    x = torch.rand(5, 2)
    cases = [
        (lambda: empirical_ntk(model, x, torch.rand(3, 3)), ValueError, "x has 2 columns but x2 has 3"),
        (lambda: empirical_ntk(model, x, memory_budget=0), ValueError,
         "memory_budget is in bytes and must be positive, got 0"),
        (lambda: empirical_ntk(model, x, method="ntk_vp", groups=True), ValueError,
         "groups=True is available with method='structured' or 'jacobian', not 'ntk_vp'"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as info:
            call()
        assert str(info.value) == message



def test_structured_memory_refusal_per_group_and_full():
    """The need with groups (one matrix per key: 3 sums + one per site + up to 8 named terms) and with full
    outputs (outputs^2 entries per pair): the message names the per-group kernel and the size."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [4], 2, "tanh").double()
    n = 50_000
    x = torch.rand(n, 2, dtype=torch.float64)
    budget = 2 ** 30
    c2 = 4                                                     # 2 outputs, full
    rows = min(n, 256, (budget // 8) // (4 * n * c2 * 8))
    need = n * n * c2 * 8 + 4 * rows * n * c2 * 8
    with pytest.raises(NTKMemoryError, match=rf"^the kernel at N={n}x{n} needs about {need / 2**30:.1f} GiB, "):
        empirical_ntk(model, x, outputs="full", memory_budget=budget)
    assert f"{need / 2**30:.1f}" == "74.6"       # 74.5 for the kernel alone
    with pytest.raises(NTKMemoryError, match=rf"^the per-group kernel at N={n}x{n} needs about "):
        empirical_ntk(model, x, groups=True, memory_budget=budget)



class TwoGates(nn.Module):
    """Two sites vmap cannot take, one after the other: each is taken by its own Jacobian and both count."""

    def __init__(self):
        super().__init__()
        self.first, self.gate_a, self.gate_b, self.out = nn.Linear(2, 2), DataBranch(), DataBranch(), nn.Linear(2, 1)

    def forward(self, x):
        return self.out(self.gate_b(torch.tanh(self.gate_a(torch.tanh(self.first(x))))))



def test_every_jacobian_site_counts_in_the_total():
    torch.manual_seed(8)
    model, x = TwoGates(), torch.rand(10, 2)
    for groups in (False, True):
        K = empirical_ntk(model, x, method="structured", groups=groups)
        R = empirical_ntk(model, x, method="jacobian", groups=groups)
        assert rel(K["total"] if groups else K, R["total"] if groups else R) < TOL



def test_the_per_group_need_counts_one_matrix_per_key():
    """2,000 points fit a 100 MiB budget as one kernel (32 MB and its panels) but not as groups: 3 sums,
    2 sites and up to 8 named terms of 32 MB each."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [4], 2, "tanh").double()
    n, budget = 2000, 100 * 2 ** 20
    x = torch.rand(n, 2, dtype=torch.float64)
    rows = min(n, 256, (budget // 8) // (4 * n * 8))
    need = n * n * 8 * (3 + 2 + 8) + 4 * rows * n * 8
    with pytest.raises(NTKMemoryError) as info:
        empirical_ntk(model, x, groups=True, memory_budget=budget)
    assert str(info.value) == (
        f"the per-group kernel at N={n}x{n} needs about {need / 2**30:.1f} GiB, over the memory budget of 0.1 GiB; "
        "use fewer points, groups=False, a larger memory_budget, or the matrix-free path "
        "(inrlib.ntk.NTKOperator / extreme_eigenvalues)")
    assert empirical_ntk(model, x[:300], groups=True, memory_budget=budget)["total"].shape == (300, 300)

