"""What the NTK tests share: the relative error, the tolerance against the references, the encodings,
and small modules the engine has no rule for."""
import torch
from torch import nn

from inrlib.encodings import (
    FourierEncoding,
    GaussianFourierEncoding,
    HashGridEncoding,
    IdentityEncoding,
    MultigridEncoding,
)

#: Structured kernels against the torch.func references, relative Frobenius error (float64).
TOL = 1e-10

ENCODINGS = {
    "identity": lambda d: IdentityEncoding(d),
    "fourier": lambda d: FourierEncoding(d, 4),
    "gaussian": lambda d: GaussianFourierEncoding(d, 12, 2.0),
    "multigrid": lambda d: MultigridEncoding(d, [3, 9, 33] if d < 3 else [3, 7], 3 if d < 3 else 2),
    "hashgrid": lambda d: HashGridEncoding(d, levels=3, features=2, log2_table_size=6, min_resolution=4,
                                           max_resolution=24),
}


def rel(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


class Unknown(nn.Module):
    """A layer the engine has no rule for: a gated sinusoid with its own parameters (of different
    sizes, so their per-sample gradients must be concatenated along the parameter axis) and a buffer
    (which the per-sample call must leave to the module)."""

    def __init__(self, n):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(n))
        self.shift = nn.Parameter(torch.randn(1))
        self.register_buffer("phase", torch.randn(n))

    def forward(self, z):
        return torch.sin(self.scale * z + self.phase) * torch.sigmoid(z + self.shift)


class Shared(nn.Module):
    """The same linear layer applied twice: its gradient is a sum over the two calls."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.first = nn.Linear(2, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.inner(torch.tanh(self.inner(torch.tanh(self.first(x)))))))


class DataBranch(nn.Module):
    """A model with its own parameters and Python control flow on the data: torch.func cannot vmap it, so
    the whole model (the site named "model") is taken by its Jacobian."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 6))
        self.v = nn.Parameter(torch.randn(6, 2))

    def forward(self, x):
        h = torch.tanh(x @ self.w)
        if bool((h.sum(dim=1) > 0).any()):       # data-dependent: vmap refuses
            h = h * 1.5
        return h @ self.v

