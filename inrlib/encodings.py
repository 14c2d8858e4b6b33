"""Coordinate encodings: ``(N, d)`` points in ``[0, 1]^d`` to ``(N, d_e)`` features.

One class per encoding, all with the same interface:

- ``dim``: the input dimension d (1, 2 or 3 for grids; any for the others);
- ``out_features``: the output width d_e;
- ``forward(x)``: ``x`` of shape ``(N, dim)``, floating point, inside ``[0, 1]^dim``.

Encodings with learnable grids (:class:`MultigridEncoding`, :class:`HashGridEncoding`) also
state the structure of their parameter gradients for the empirical NTK engine
(:mod:`inrlib.ntk`): ``ntk_capture`` records the interpolation corners and weights in the
forward pass and ``ntk_gram`` returns each level's kernel term
``(E_a E_b^T) * (S S^T)`` from the back-propagated feature sensitivities ``E`` and the sparse
interpolation matrix ``S`` (paper 000, Eq. 11-13).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .coords import check_coords, coords_validated
from .ntk import terms as ntk_terms

__all__ = [
    "check_coords",
    "coords_validated",
    "IdentityEncoding",
    "FourierEncoding",
    "GaussianFourierEncoding",
    "MultigridEncoding",
    "HashGridEncoding",
    "grid_resolutions",
]


class IdentityEncoding(nn.Module):
    """No encoding: ``gamma(x) = x``. The paper's baseline. Output ``(N, dim)``."""

    def __init__(self, dim: int, *, clamp: bool = False):
        super().__init__()
        _check_dim(dim, grid=False)
        self.dim, self.clamp, self.out_features = dim, clamp, dim

    def forward(self, x: Tensor) -> Tensor:
        return check_coords(x, self.dim, clamp=self.clamp, who=type(self).__name__)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class FourierEncoding(nn.Module):
    """Axis-aligned logarithmic Fourier features (paper 000, Eq. 1).

    ``gamma(x) = [sin(2^0 pi x), cos(2^0 pi x), ..., sin(2^{L-1} pi x), cos(2^{L-1} pi x), x]``,
    each ``sin``/``cos`` block applied per axis (``d`` values), ``x`` appended when
    ``include_input``. Output width ``2 d L (+ d)``. No trainable parameters.
    """

    def __init__(self, dim: int, levels: int, include_input: bool = True, *, clamp: bool = False):
        super().__init__()
        _check_dim(dim, grid=False)
        if int(levels) != levels or levels < 1:
            raise ValueError(f"FourierEncoding needs levels >= 1 (frequencies 2^0..2^(L-1)), got {levels}")
        self.dim, self.levels, self.include_input, self.clamp = dim, int(levels), include_input, clamp
        self.out_features = 2 * dim * self.levels + (dim if include_input else 0)

    def forward(self, x: Tensor) -> Tensor:
        x = check_coords(x, self.dim, clamp=self.clamp, who=type(self).__name__)
        # frequencies made in x's dtype: a float32 buffer cast to float64 would carry 1e-7 errors
        freqs = math.pi * 2.0 ** torch.arange(self.levels, dtype=x.dtype, device=x.device)
        angles = x[:, None, :] * freqs[None, :, None]                                  # (N, L, d)
        feats = torch.stack([angles.sin(), angles.cos()], dim=2).reshape(x.shape[0], -1)  # (N, L*2*d)
        return torch.cat([feats, x], dim=1) if self.include_input else feats

    def extra_repr(self) -> str:
        return f"dim={self.dim}, levels={self.levels}, include_input={self.include_input}"


class GaussianFourierEncoding(nn.Module):
    """Random Fourier features (Tancik et al. 2020): ``[cos(2 pi B x), sin(2 pi B x)]``.

    ``B`` of shape ``(features, dim)`` is drawn once from ``N(0, sigma^2)`` (seeded by
    ``seed``) and kept fixed (a buffer, not a parameter). Output width ``2 * features (+ dim)``.
    """

    B: Tensor          # (features, dim) frequencies, a buffer

    def __init__(self, dim: int, features: int, sigma: float, include_input: bool = False, *,
                 seed: int = 0, clamp: bool = False):
        super().__init__()
        _check_dim(dim, grid=False)
        if features < 1:
            raise ValueError(f"GaussianFourierEncoding needs features >= 1, got {features}")
        if not sigma > 0:
            raise ValueError(f"GaussianFourierEncoding needs sigma > 0 (the frequency scale), got {sigma}")
        self.dim, self.features, self.sigma = dim, int(features), float(sigma)
        self.include_input, self.clamp = include_input, clamp
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(self.features, dim, generator=gen) * self.sigma)
        self.out_features = 2 * self.features + (dim if include_input else 0)

    def forward(self, x: Tensor) -> Tensor:
        x = check_coords(x, self.dim, clamp=self.clamp, who=type(self).__name__)
        angles = 2 * math.pi * x @ self.B.to(x.dtype).T
        parts = [angles.cos(), angles.sin()] + ([x] if self.include_input else [])
        return torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, features={self.features}, sigma={self.sigma}"


def grid_resolutions(min_resolution: int, max_resolution: int, levels: int,
                     spacing: str = "log") -> list[int]:
    """Resolutions (nodes per axis) of ``levels`` grids from ``min`` to ``max``, ``linear`` or ``log`` spaced.

    >>> grid_resolutions(16, 128, 4, "log")
    [16, 32, 64, 128]
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if min_resolution < 2 or max_resolution < min_resolution:
        raise ValueError(f"need 2 <= min_resolution <= max_resolution, got {min_resolution}, {max_resolution}")
    if levels == 1:
        return [int(max_resolution)]
    t = torch.linspace(0, 1, levels, dtype=torch.float64)
    if spacing == "linear":
        r = min_resolution + t * (max_resolution - min_resolution)
    elif spacing == "log":
        r = torch.exp(math.log(min_resolution) + t * (math.log(max_resolution) - math.log(min_resolution)))
    else:
        raise ValueError(f"spacing must be 'linear' or 'log', got {spacing!r}")
    return [int(v) for v in torch.round(r).tolist()]


class _GridEncoding(nn.Module):
    """Shared machinery of the learnable-grid encodings.

    Level ``l`` has ``R_l`` nodes per axis spanning ``[0, 1]`` (node ``i`` at ``i / (R_l - 1)``,
    cell width ``1 / (R_l - 1)``) and a table ``tables[l]`` of shape ``(T_l, k)``: ``k`` learnable
    scalars per node. A point's level-``l`` feature is the (bi/tri)linear interpolation of the
    ``2^d`` surrounding nodes' values; levels are concatenated, then ``x`` (paper 000, Eq. 3).
    Subclasses define :meth:`_slot` (node to table row).
    """

    tables: nn.ParameterList   # one (rows, k) table per level
    _corners: Tensor           # (2^d, d) corner offsets, a buffer

    ntk_group = "grid"

    def __init__(self, dim: int, resolutions: Sequence[int], features: int, include_input: bool,
                 clamp: bool):
        super().__init__()
        _check_dim(dim, grid=True)
        resolutions = [int(r) for r in resolutions]
        if not resolutions:
            raise ValueError(f"{type(self).__name__} needs at least one resolution")
        if any(r < 2 for r in resolutions):
            raise ValueError(f"{type(self).__name__} resolutions count nodes per axis and must be >= 2, "
                             f"got {resolutions}")
        if int(features) != features or features < 1:
            raise ValueError(f"{type(self).__name__} needs features >= 1 (scalars per node), got {features}")
        self.dim, self.resolutions, self.features = dim, resolutions, int(features)
        self.include_input, self.clamp = include_input, clamp
        self.out_features = len(resolutions) * self.features + (dim if include_input else 0)
        # corner offsets in {0,1}^d, shape (2^d, d)
        corners = torch.tensor([[(c >> a) & 1 for a in range(dim)] for c in range(2 ** dim)])
        self.register_buffer("_corners", corners, persistent=False)

    @property
    def levels(self) -> int:
        return len(self.resolutions)

    def _slot(self, level: int, node: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def corners(self, x: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """Table rows and interpolation weights of the ``2^d`` nodes around each point.

        Returns ``(rows, weights)``, both ``(N, 2^d)``; ``weights`` sum to 1 per point and are
        differentiable in ``x``. This is one row of the sparse interpolation matrix ``S``.
        """
        r = self.resolutions[level]
        t = x * (r - 1)
        cell = t.detach().floor().clamp(0, r - 2)
        frac = t - cell                                                   # (N, d) in [0, 1]
        cell = cell.long()
        offs = self._corners                                              # (2^d, d)
        node = cell[:, None, :] + offs[None]                              # (N, 2^d, d)
        w = torch.where(offs[None].bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(dim=2)
        return self._slot(level, node), w

    def interpolate(self, x: Tensor, level: int) -> Tensor:
        """Level ``level``'s interpolated features, ``(N, k)``."""
        rows, w = self.corners(x, level)
        table = self.tables[level]
        return (table[rows] * w[..., None].to(table.dtype)).sum(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        x = check_coords(x, self.dim, clamp=self.clamp, who=type(self).__name__)
        parts = [self.interpolate(x, level) for level in range(self.levels)]
        if self.include_input:
            parts.append(x)
        return torch.cat(parts, dim=1)

    def level_slice(self, level: int) -> slice:
        """Columns of the output that hold level ``level``'s ``k`` features."""
        return slice(level * self.features, (level + 1) * self.features)

    # -- empirical NTK protocol (see inrlib.ntk) -------------------------------------------
    def ntk_capture(self, inputs: tuple, output: Tensor):
        x = check_coords(inputs[0], self.dim, clamp=self.clamp, who=type(self).__name__).detach()
        return [self.corners(x, level) for level in range(self.levels)]

    def ntk_gram(self, saved_a, grad_a: Tensor, saved_b, grad_b: Tensor) -> dict[str, Tensor]:
        """Per-level kernel ``sum_c (E_a,c E_b,c^T) * (S_a S_b^T)``; ``grad_*`` are ``(N, C, out_features)``."""
        out = {}
        for level, ((rows_a, w_a), (rows_b, w_b)) in enumerate(zip(saved_a, saved_b)):
            sl = self.level_slice(level)
            ea = grad_a[:, :, sl].reshape(grad_a.shape[0], -1)
            eb = grad_b[:, :, sl].reshape(grad_b.shape[0], -1)
            out[f"level{level}"] = ntk_terms.interpolation_gram(rows_a, w_a.to(ea.dtype), ea, rows_b, w_b.to(eb.dtype),
                                                                eb, n_rows=self.tables[level].shape[0])
        return out


class MultigridEncoding(_GridEncoding):
    """Multigrid parametric encoding (MPE; paper 000, Eq. 2-3, Fig. 1): dense learnable grids.

    Args:
        dim: 1, 2 or 3.
        resolutions: nodes per axis of each level, e.g. ``[32, 96]``. Alternatively pass
            ``resolutions=None`` with ``min_resolution``, ``max_resolution``, ``levels`` and
            ``spacing`` (``"linear"`` or ``"log"``).
        features: ``k``, learnable scalars per node.
        include_input: append ``x`` to the features (the paper does).
        init_std: grid values start as ``N(0, init_std^2)``. Default ``0.01``: we read the
            paper's "N(0, 0.01)" (quoted from Hadadan et al. 2021) the way PyTorch code writes
            it, ``nn.init.normal_(grid, 0.0, 0.01)``, i.e. 0.01 is the standard deviation. With
            either reading the grid features start far smaller than the appended coordinates, so
            the network at initialization is close to the un-encoded one; pass
            ``init_std=0.1`` for the variance reading.
        clamp: clamp out-of-domain coordinates instead of raising.

    Table ``l`` has ``R_l^d`` rows; node ``(i_0, ..., i_{d-1})`` is row ``sum_a i_a R_l^a``
    (axis 0 varies fastest), so ``table.view(R, R, k)[i_1, i_0]`` is image-like in 2D.
    Output ``(N, L k + d)``: level 0's k features, ..., level L-1's, then x.
    """

    def __init__(self, dim: int, resolutions: Sequence[int] | None = None, features: int = 2,
                 include_input: bool = True, init_std: float = 0.01, *, min_resolution: int | None = None,
                 max_resolution: int | None = None, levels: int | None = None, spacing: str = "log",
                 clamp: bool = False):
        if resolutions is None:
            if min_resolution is None or max_resolution is None or levels is None:
                raise ValueError("MultigridEncoding needs either resolutions=[...] or all of "
                                 "min_resolution, max_resolution and levels")
            resolutions = grid_resolutions(min_resolution, max_resolution, levels, spacing)
        elif isinstance(resolutions, int):
            resolutions = [resolutions]
        super().__init__(dim, resolutions, features, include_input, clamp)
        if not init_std >= 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        self.init_std = float(init_std)
        self.tables = nn.ParameterList(
            nn.Parameter(torch.randn(r ** dim, self.features) * self.init_std) for r in self.resolutions)
        strides = [[r ** a for a in range(dim)] for r in self.resolutions]
        for level, s in enumerate(strides):
            self.register_buffer(f"_strides{level}", torch.tensor(s), persistent=False)

    def _slot(self, level: int, node: Tensor) -> Tensor:
        return (node * getattr(self, f"_strides{level}")).sum(dim=-1)

    def grid(self, level: int) -> Tensor:
        """Level ``level``'s values as a ``(R,)*d + (k,)`` view, last spatial axis = axis 0 (x)."""
        r = self.resolutions[level]
        return self.tables[level].view(*([r] * self.dim), self.features)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, resolutions={self.resolutions}, features={self.features}, "
                f"include_input={self.include_input}, init_std={self.init_std}")


class HashGridEncoding(_GridEncoding):
    """Multiresolution hash-grid encoding (instant-ngp, Mueller et al. 2022), same interface.

    Resolutions grow geometrically from ``min_resolution`` to ``max_resolution`` over
    ``levels`` (or pass ``resolutions``). A level whose ``R^d`` nodes fit in ``2^log2_table_size``
    rows is stored densely (one row per node); a finer level maps node ``i`` to row
    ``(XOR_a i_a * pi_a) mod T`` with instant-ngp's primes ``pi = (1, 2654435761, 805459861)``,
    so distinct nodes may share a row (collisions; the gradients add up). Values start as
    ``U(-init_scale, init_scale)`` (instant-ngp uses 1e-4).
    """

    _primes: Tensor            # (d,) the spatial hash's primes, a buffer

    PRIMES = (1, 2654435761, 805459861)

    def __init__(self, dim: int, levels: int = 8, features: int = 2, log2_table_size: int = 14,
                 min_resolution: int = 16, max_resolution: int = 256, include_input: bool = True,
                 init_scale: float = 1e-4, *, resolutions: Sequence[int] | None = None,
                 clamp: bool = False):
        if resolutions is None:
            resolutions = grid_resolutions(min_resolution, max_resolution, levels, "log")
        super().__init__(dim, resolutions, features, include_input, clamp)
        if not 4 <= log2_table_size <= 26:
            raise ValueError(f"log2_table_size must be in [4, 26], got {log2_table_size}")
        self.table_size, self.init_scale = 2 ** int(log2_table_size), float(init_scale)
        self.hashed = [r ** dim > self.table_size for r in self.resolutions]
        self.tables = nn.ParameterList(
            nn.Parameter((torch.rand(min(r ** dim, self.table_size), self.features) * 2 - 1) * self.init_scale)
            for r in self.resolutions)
        for level, r in enumerate(self.resolutions):
            self.register_buffer(f"_strides{level}", torch.tensor([r ** a for a in range(dim)]),
                                 persistent=False)
        self.register_buffer("_primes", torch.tensor(self.PRIMES[:dim], dtype=torch.long), persistent=False)

    def _slot(self, level: int, node: Tensor) -> Tensor:
        if not self.hashed[level]:
            return (node * getattr(self, f"_strides{level}")).sum(dim=-1)
        h = node * self._primes
        out = h[..., 0]
        for a in range(1, self.dim):
            out = torch.bitwise_xor(out, h[..., a])
        return out % self.table_size

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, resolutions={self.resolutions}, features={self.features}, "
                f"table_size={self.table_size}, hashed={self.hashed}")


def _check_dim(dim: int, grid: bool) -> None:
    if int(dim) != dim or dim < 1 or (grid and dim > 3):
        raise ValueError(f"dim must be {'1, 2 or 3 for grid encodings' if grid else 'a positive integer'}, "
                         f"got {dim}")
