"""The kernel terms (inrlib.ntk.terms): the Gram functions against dense closed forms, and registered rules."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from inrlib.encodings import MultigridEncoding
from inrlib.ntk import dense_gram, empirical_ntk, interpolation_gram, register_rule

from .helpers import TOL, rel


def test_interpolation_gram_dense_and_sparse_paths_agree():
    torch.manual_seed(5)
    enc = MultigridEncoding(2, [200], 1, include_input=False).double()
    x = torch.rand(300, 2, dtype=torch.float64)
    rows, w = enc.corners(x, 0)
    e = torch.randn(300, 3, dtype=torch.float64)
    sparse = interpolation_gram(rows, w, e, rows, w, e, n_rows=200 ** 2)
    S = torch.zeros(300, 200 ** 2, dtype=torch.float64).scatter_add_(1, rows, w)
    dense = (S @ S.T) * (e @ e.T)
    assert rel(sparse, dense) < 1e-13


class Scaled(nn.Module):
    """y = a * x elementwise: a user's layer with a rule registered from outside (K term: (D_a D_b^T) * (X_a X_b^T))."""

    def __init__(self, n):
        super().__init__()
        self.a = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return self.a * x


def test_register_rule_is_used_for_the_class_it_names():
    from inrlib.ntk.terms import _RULES
    calls = []

    def capture(module, inputs, output):
        calls.append("capture")
        return inputs[0].detach()

    def gram(module, sa, ga, sb, gb):               # grads (N, C, n): sum_c sum_j D_aj X_aj D_bj X_bj
        calls.append("gram")
        return {"": torch.einsum("icj,ij,kcj,kj->ik", ga, sa, gb, sb)}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), Scaled(6), nn.Tanh(), nn.Linear(6, 1))
    x = torch.rand(15, 2)
    try:
        register_rule(Scaled, capture, gram)
        assert _RULES[Scaled] == (capture, gram)
        assert rel(empirical_ntk(model, x), empirical_ntk(model, x, method="jacobian")) < TOL
        assert "capture" in calls and "gram" in calls
    finally:
        _RULES.pop(Scaled, None)



@pytest.mark.parametrize("w_scale, b_scale", [(1.0, 1.0), (0.5, 0.1), (2.0, None), (1.0, 0.0)])
def test_dense_gram_is_the_inner_product_of_per_sample_gradients(w_scale, b_scale):
    """z = w W a + b b: autograd's per-sample gradients of <D_i, z_i> w.r.t. (W, b), their Gram matrix."""
    torch.manual_seed(0)
    na, nb, n_in, n_out, c = 5, 4, 3, 6, 2
    W = torch.randn(n_out, n_in, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n_out, dtype=torch.float64, requires_grad=True)
    a_a, a_b = torch.randn(na, n_in, dtype=torch.float64), torch.randn(nb, n_in, dtype=torch.float64)
    d_a, d_b = torch.randn(na, c, n_out, dtype=torch.float64), torch.randn(nb, c, n_out, dtype=torch.float64)

    def grads(a, d):                                   # (N, C, P): one gradient per sample and channel
        rows = []
        for i in range(a.shape[0]):
            per_c = []
            for ch in range(c):
                z = w_scale * W @ a[i] + (b_scale or 0.0) * b
                params = [W, b] if b_scale is not None else [W]
                g = torch.autograd.grad((d[i, ch] * z).sum(), params, allow_unused=True)
                per_c.append(torch.cat([(torch.zeros_like(p) if gi is None else gi).reshape(-1)
                                        for gi, p in zip(g, params)]))
            rows.append(torch.stack(per_c))
        return torch.stack(rows)
    ga, gb = grads(a_a, d_a), grads(a_b, d_b)
    want = torch.einsum("icp,jcp->ij", ga, gb)
    got = dense_gram(a_a, d_a, a_b, d_b, w_scale, b_scale)
    assert got.shape == (na, nb)
    assert rel(got, want) < 1e-13


def test_register_rule_refuses_what_is_not_a_module_class():
    for bad in (nn.Linear(2, 2), int, "Linear"):
        with pytest.raises(TypeError, match="^register_rule needs an nn.Module subclass, got "):
            register_rule(bad, lambda m, i, o: i[0], lambda m, sa, ga, sb, gb: {})


def test_the_terms_import_no_model_code_and_the_layers_import_them_at_their_top():
    """inrlib.ntk.terms is the base of the protocol: importing it loads neither the layers, the encodings nor the
    models, while the layers and encodings hold it from their import on (no import inside a method)."""
    root = Path(__file__).resolve().parents[2]
    code = ("import sys, inrlib.ntk.terms; "
            "print(sorted(m for m in sys.modules if m in ('inrlib.layers', 'inrlib.encodings', 'inrlib.models')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]
    import inrlib.encodings as encodings
    import inrlib.layers as layers
    import inrlib.ntk.terms as terms
    assert layers.ntk_terms is terms and encodings.ntk_terms is terms
