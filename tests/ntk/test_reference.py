"""The torch.func references (inrlib.ntk.reference): against each other and the engine, in chunks, and their memory checks."""

import pytest
import torch
from torch import nn

from inrlib.encodings import FourierEncoding, IdentityEncoding
from inrlib.models import CoordinateMLP
from inrlib.ntk import NTKMemoryError, empirical_ntk

from .helpers import TOL, rel


def test_full_kernel_traces_to_trace_kernel_and_ntk_vp_agrees():
    torch.manual_seed(1)
    model = CoordinateMLP(FourierEncoding(2, 3), [16], 2, "relu")
    x = torch.rand(12, 2)
    full = empirical_ntk(model, x, outputs="full")
    trace = empirical_ntk(model, x)
    blocks = full.reshape(12, 2, 12, 2)
    assert rel(blocks[:, 0, :, 0] + blocks[:, 1, :, 1], trace) < TOL
    for outputs in ("trace", "full"):
        assert rel(empirical_ntk(model, x, outputs=outputs, method="ntk_vp"),
                   empirical_ntk(model, x, outputs=outputs, method="jacobian")) < TOL


def test_jacobian_reference_in_chunks_and_its_memory_check():
    """A budget that just fits forces the reference into many row chunks; one byte less is refused."""
    torch.manual_seed(1)
    model = CoordinateMLP(IdentityEncoding(2), [6], 2, "tanh")
    x, x2 = torch.rand(40, 2), torch.rand(24, 2)
    n_params = sum(p.numel() for p in model.parameters())
    want = empirical_ntk(model, x, x2, outputs="full")
    need = (40 + 24) * 2 * n_params * 8 + (40 * 2) * (24 * 2) * 8      # both Jacobians and the kernel
    got = empirical_ntk(model, x, x2, outputs="full", method="jacobian", memory_budget=need)
    assert rel(got, want) < TOL
    msg = (rf"^the Jacobian \(40 points x 2 outputs x {n_params} parameters\) and the 40 x 24 kernel need "
           rf"{need / 2**30:.1f} GiB, over the budget of {(need - 1) / 2**30:.1f} GiB; use method='structured' "
           "or fewer points$")
    with pytest.raises(NTKMemoryError, match=msg):
        empirical_ntk(model, x, x2, outputs="full", method="jacobian", memory_budget=need - 1)
    # the symmetric kernel needs N rows of the Jacobian only
    assert rel(empirical_ntk(model, x, method="jacobian", memory_budget=40 * 2 * n_params * 8 + 40 * 40 * 8),
               empirical_ntk(model, x)) < TOL


def test_ntk_vp_cross_kernel_in_small_column_chunks():
    torch.manual_seed(2)
    model = CoordinateMLP(FourierEncoding(2, 2), [8], 2, "tanh")
    x, x2 = torch.rand(7, 2), torch.rand(11, 2)
    for o in ("trace", "full"):
        want = empirical_ntk(model, x, x2, outputs=o)
        assert rel(empirical_ntk(model, x, x2, outputs=o, method="ntk_vp", chunk_size=3), want) < TOL


class Branchy(nn.Module):
    """Data-dependent Python on its input: torch.func.vmap cannot trace it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x):
        return self.lin(x) * (2.0 if float(x.sum()) > 0 else 1.0)


def test_jacobian_reference_vmaps_per_point_and_falls_back_to_whole_chunks(monkeypatch):
    """The torch.func reference takes jacrev of one point under vmap; a model vmap cannot trace gets
    jacrev of the whole chunk (exact too)."""
    import inrlib.ntk.reference as reference
    seen = []
    real = reference.jacrev

    def spy(fn, *args, **kwargs):
        seen.append(getattr(fn, "__name__", ""))
        return real(fn, *args, **kwargs)
    monkeypatch.setattr(reference, "jacrev", spy)
    torch.manual_seed(0)
    mlp = CoordinateMLP(IdentityEncoding(2), [8], 2, "tanh")
    x = torch.rand(12, 2)
    K = empirical_ntk(mlp, x, outputs="full", method="jacobian")
    assert seen == ["one"], seen                              # one vmapped per-point Jacobian, no fallback
    assert rel(K, empirical_ntk(mlp, x, outputs="full")) < TOL
    seen.clear()
    model = Branchy()
    x = torch.rand(12, 2)
    J = torch.func.jacrev(lambda p: torch.func.functional_call(model, p, (x,)))(dict(model.named_parameters()))
    Jm = torch.cat([j.reshape(12, 3, -1) for j in J.values()], dim=2)
    want = torch.einsum("icp,jcp->ij", Jm.double(), Jm.double())
    got = empirical_ntk(model, x, method="jacobian", memory_budget=12 * 3 * 9 * 8 * 16)   # several row chunks
    assert "<lambda>" in seen and rel(got, want) < 1e-10


def test_memory_refusal_states_the_sizes_in_gib():
    """The check runs before anything is allocated: a 4-million-point Jacobian is refused with its size."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [4], 1, "tanh")
    n_params = sum(p.numel() for p in model.parameters())     # (2 + 1) 4 + 4 + 1 = 17
    x = torch.rand(4_000_000, 2)
    jac = 4_000_000 * 1 * n_params * 8                          # 0.5 GiB: it alone would fit
    need = jac + 4_000_000 ** 2 * 8                             # the 4e6 x 4e6 kernel does not
    with pytest.raises(NTKMemoryError, match=rf"and the 4000000 x 4000000 kernel need {need / 2**30:.1f} GiB, over "
                                             r"the budget of 1\.0 GiB; "):
        empirical_ntk(model, x, method="jacobian", memory_budget=2 ** 30)
    with pytest.raises(NTKMemoryError, match=rf"need {(jac + 10 * 4_000_000 * 8) / 2**30:.1f} GiB, over the budget "
                                             r"of 0\.1 GiB; "):
        empirical_ntk(model, x, torch.rand(10, 2), method="jacobian", memory_budget=2 ** 30 // 10)
    vp_need = (4_000_000 ** 2 + 2 * 64 * (2 * 4_000_000)) * 8   # the kernel and two 64-column blocks
    with pytest.raises(NTKMemoryError, match=r"^the 4000000 x 4000000 kernel \(1 outputs, trace\) and its column blocks "
                                             rf"need {vp_need / 2**30:.1f} GiB, over the budget of 1\.0 GiB; "):
        empirical_ntk(model, x, method="ntk_vp", memory_budget=2 ** 30)


@pytest.mark.parametrize("outputs", ["trace", "full"])
def test_ntk_vp_refuses_exactly_above_its_stated_need(outputs):
    """The kernel plus two column blocks of cotangents, (n1 n2 [c^2] + 2 chunk (n1 + n2) c) x 8 bytes."""
    torch.manual_seed(0)
    model = CoordinateMLP(IdentityEncoding(2), [6], 3, "relu").double()
    x1, x2 = torch.rand(5, 2, dtype=torch.float64), torch.rand(4, 2, dtype=torch.float64)
    need = (5 * 4 * (1 if outputs == "trace" else 9) + 2 * 2 * (5 + 4) * 3) * 8
    K = empirical_ntk(model, x1, x2, outputs=outputs, method="ntk_vp", chunk_size=2, memory_budget=need)
    assert rel(K, empirical_ntk(model, x1, x2, outputs=outputs, method="jacobian")) < TOL
    with pytest.raises(NTKMemoryError) as err:
        empirical_ntk(model, x1, x2, outputs=outputs, method="ntk_vp", chunk_size=2, memory_budget=need - 1)
    assert str(err.value).startswith(f"the 5 x 4 kernel (3 outputs, {outputs}) and its column blocks need ")
    assert str(err.value).endswith("GiB; use fewer points or a smaller chunk_size")

