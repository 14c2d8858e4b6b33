r"""The NTK as a matrix-free linear operator, and its extreme eigenvalues without forming it.

- :class:`NTKOperator`: ``K v = sum_c J_c (J_c^T v)`` for the output-traced kernel, one ``vjp`` and one
  ``jvp`` per product, per module (the structured products) or through the whole model;
- :func:`extreme_eigenvalues`: the largest and smallest eigenvalues by Lanczos with full
  reorthogonalization (or ARPACK), with the residual norms that bound their errors;
- :func:`interlacing_bounds`: rigorous bounds on both ends of the spectrum from the dense kernel of
  one principal submatrix (Cauchy interlacing), the certificate for the bottom of a kernel too large
  to form.
"""
from __future__ import annotations

import warnings
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp, linearize, vjp

from ..coords import coords_validated
from .capture import forward_backward, sites, warn_fallback
from .checks import check_choice, check_chunk_size, check_model, check_points, eval_mode, in_dtype, trainable
from .engine import empirical_ntk
from .reference import functional
from .spectra import rounding_floor, spectrum

__all__ = ["OperatorMethod", "Which", "EigenMethod", "NTKOperator", "extreme_eigenvalues", "interlacing_bounds"]

OperatorMethod = Literal["auto", "structured", "autodiff"]
Which = Literal["largest", "smallest", "both"]
EigenMethod = Literal["lanczos", "arpack"]


class NTKOperator:
    """The (output-traced) NTK as a linear operator: ``K v = sum_c J_c (J_c^T v)``, never forming ``K``.

    ``method="structured"`` (``"auto"`` picks it whenever it applies) uses the engine's
    structure: one forward and backward pass at construction records, for every module that owns
    parameters, its inputs ``X`` and output sensitivities ``D``; a product is then, per module,
    ``u = vjp(D * v)`` (the parameter-space gradient ``sum_i v_i df(x_i)/dtheta``, for a dense
    layer ``D^T diag(v) A``) and ``(K v)_i = <D_i, jvp(u)_i>`` on that module alone, in chunks of
    ``chunk_size`` points (default 4096 on the CPU, so the temporaries stay in cache; 65536 on an
    accelerator): ``O(N P)`` GEMM work, no pass through the rest of the network. It stores ``X`` and
    ``D`` (about ``N`` times the network's total width of numbers). ``method="autodiff"`` runs a
    ``vjp`` and a ``jvp`` through the whole model per product (default chunks of 16384); ``"auto"``
    chooses it below ``STRUCTURED_MIN_N`` points and when a module is called more than once (shared
    weights). ``matvec`` takes and returns ``(N,)`` (or ``(N, b)`` for ``b`` vectors) tensors or arrays.

    The model runs in eval mode during the construction and every product; the caller's train/eval
    flags are left as they were. It is cast to ``dtype`` on a copy when its parameters are in another.
    """

    #: Points per chunk of the structured products on the CPU (the temporaries stay in cache) and on
    #: an accelerator (fewer launches; every chunk's captures are kept either way).
    STRUCTURED_CHUNK = 4096
    STRUCTURED_CHUNK_ACCELERATOR = 65536
    #: ``method="auto"`` takes the structured products from this many points on (below it the
    #: per-module calls cost more than the arithmetic they save).
    STRUCTURED_MIN_N = 2048

    def __init__(self, model: nn.Module, x: Tensor, *, dtype: torch.dtype | None = torch.float64,
                 chunk_size: int | None = None, method: OperatorMethod = "auto"):
        check_model(model, "NTKOperator")
        check_points(model, x)
        check_choice("method", method, get_args(OperatorMethod))
        chunk_size = check_chunk_size(chunk_size)
        self.model = in_dtype(model, dtype)
        with eval_mode(self.model):          # products run in eval mode too; the caller's mode is kept
            self._setup(x, chunk_size, method)

    def _setup(self, x: Tensor, chunk_size: int | None, method: OperatorMethod) -> None:
        self.params = {n: p.detach() for n, p in trainable(self.model)}
        p0 = next(iter(self.params.values()))
        self.device, self.dtype = p0.device, p0.dtype
        self.x = x.detach().to(self.device, self.dtype)
        self.n = self.x.shape[0]
        self._f = functional(self.model)
        with torch.no_grad():
            self.channels = self._f(self.params, self.x[:1]).shape[1]
        self.shape = (self.n, self.n)
        self.products = 0
        self._ops: list | None = None
        if method == "structured" or (method == "auto" and self.n >= self.STRUCTURED_MIN_N):
            default = self.STRUCTURED_CHUNK if self.device.type == "cpu" else self.STRUCTURED_CHUNK_ACCELERATOR
            self.chunk = int(chunk_size or default)
            self._ops = self._structured_setup()
            if self._ops is None and method == "structured":
                raise ValueError("method='structured' needs every parameterized module to be called once per "
                                 "forward with batched tensor inputs; use method='autodiff'")
        self.method = "structured" if self._ops is not None else "autodiff"
        if self._ops is None:
            self.chunk = int(chunk_size or 16384)
            with torch.no_grad():       # one forward over all points: the model checks its inputs here, once,
                for s in range(0, self.n, self.chunk):      # since the products run without reading them
                    self._f(self.params, self.x[s:s + self.chunk])

    def _structured_setup(self) -> list | None:
        """Per site: its parameters and, per chunk, (rows, module function, cached pullback, D)."""
        found = sites(self.model)
        p = forward_backward(self.model, self.x, found, max(self.chunk, 16384), keep_inputs=True)
        ops = []
        for site in found:
            if site.kind == "jacobian" or site.name not in p.inputs or site.name not in p.grads:
                return None
            own = {n: q.detach() for n, q in site.module.named_parameters() if n in site.params}
            chunks = []
            traced = True           # torch.func.linearize: the jvp without recomputing the forward
            try:
                for start in range(0, self.n, self.chunk):
                    rows = slice(start, min(self.n, start + self.chunk))
                    args = tuple(a[rows] for a in p.inputs[site.name])
                    f = (lambda m, a: lambda q: functional_call(m, q, a, strict=False))(site.module, args)
                    pull = vjp(f, own)[1]
                    lin = None
                    if traced:
                        try:
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore")
                                lin = linearize(f, own)[1]
                        except Exception:  # noqa: BLE001 - data-dependent Python (e.g. input checks)
                            traced = False
                    chunks.append((rows, f, pull, lin, p.grads[site.name][rows]))
            except Exception as err:  # noqa: BLE001 - a module torch.func cannot call on its own: whole-model path
                warn_fallback(site.module, site.name, "NTKOperator", err,
                              "The operator uses the whole-model products instead (method='autodiff'): every "
                              "product runs a vjp and a jvp through the whole network, not through each module "
                              "alone.", stacklevel=4)   # _structured_setup <- _setup <- __init__ <- the caller
                return None
            ops.append((own, chunks))
        return ops

    def _matvec_structured(self, v: Tensor) -> Tensor:
        assert self._ops is not None
        out = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for own, chunks in self._ops:
            for c in range(self.channels):
                u = None                                  # sum_i v_i d f_c(x_i) / d(this module's parameters)
                for rows, _f, pull, _lin, d in chunks:
                    dc = d[:, c]
                    g = pull(dc * v[rows].reshape(-1, *([1] * (dc.dim() - 1))))[0]
                    if u is None:
                        u = g
                    else:
                        for name in u:
                            u[name].add_(g[name])
                for rows, f, _pull, lin, d in chunks:      # (J_c u)_i = <D_i,c, module'(x_i) u>
                    dc = d[:, c]
                    t = lin(u) if lin is not None else jvp(f, (own,), (u,))[1]
                    out[rows] += (dc * t).reshape(dc.shape[0], -1).sum(dim=1)
        return out

    def _matvec1(self, v: Tensor) -> Tensor:
        if self._ops is not None:
            out = self._matvec_structured(v)
            self.products += 1
            return out
        out = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for c in range(self.channels):
            u = {k: torch.zeros_like(p) for k, p in self.params.items()}
            for s in range(0, self.n, self.chunk):
                xc = self.x[s:s + self.chunk]
                pull = vjp(lambda p: self._f(p, xc)[:, c], self.params)[1]
                g = pull(v[s:s + self.chunk])[0]
                for k in u:
                    u[k] += g[k]
            for s in range(0, self.n, self.chunk):
                xc = self.x[s:s + self.chunk]
                out[s:s + self.chunk] += jvp(lambda p: self._f(p, xc)[:, c], (self.params,), (u,))[1]
        self.products += 1
        return out

    def matvec(self, v):
        is_np = isinstance(v, np.ndarray)
        t = torch.as_tensor(v).to(self.device, self.dtype)
        # The construction's forward pass checked the coordinates: products read no values (no syncs).
        with coords_validated(), eval_mode(self.model):
            if t.dim() == 1:
                r = self._matvec1(t)
            else:
                r = torch.stack([self._matvec1(t[:, i]) for i in range(t.shape[1])], dim=1)
        return r.cpu().numpy() if is_np else r

    def diagonal_estimate(self) -> None:  # pragma: no cover - documented absence
        raise NotImplementedError

    def as_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` view (float64)."""
        from scipy.sparse.linalg import LinearOperator
        return LinearOperator(self.shape, matvec=lambda v: self.matvec(np.asarray(v, np.float64).ravel()),
                              matmat=lambda V: self.matvec(np.asarray(V, np.float64)), dtype=np.float64)


def extreme_eigenvalues(op: NTKOperator, k: int = 6, *, which: Which = "both", tol: float = 1e-6,
                        maxiter: int | None = None, seed: int = 0, method: EigenMethod = "lanczos",
                        ) -> dict[str, np.ndarray]:
    """The ``k`` largest and/or smallest eigenvalues of a matrix-free NTK.

    ``method="lanczos"`` (default): one Lanczos run with full reorthogonalization gives both
    ends of the spectrum from the same Krylov space; it stops when the wanted Ritz pairs'
    residual estimates fall below ``tol * lambda_max`` or after ``maxiter`` products (default
    ``min(N, 1000)``; it keeps that many vectors of length ``N``). ``method="arpack"``: ARPACK's
    implicitly restarted Lanczos, for the largest on ``K`` and the smallest on
    ``lambda_max I - K`` (``tol`` relative to each eigenvalue, ``maxiter`` restarts).

    The largest converge in a few dozen products. The smallest of an ill-conditioned kernel
    converge slowly (their gaps are tiny next to ``lambda_max``): they are returned with their
    residual norms ``||K v - lambda v||`` (computed with extra products), which bound how far
    each is from a true eigenvalue, so their accuracy can be judged; each smallest Ritz value is
    also an upper bound on the eigenvalue of the same rank from the bottom. For the bottom of a
    large, nearly singular kernel, :func:`interlacing_bounds` is the cheaper certificate. Returns ``{"largest",
    "smallest", "residual_largest", "residual_smallest", "products", "converged"}``
    (eigenvalues in descending order).
    """
    check_choice("which", which, get_args(Which))
    check_choice("method", method, get_args(EigenMethod))
    if not 1 <= k < op.n - 1:
        raise ValueError(f"k must be in [1, N-2] = [1, {op.n - 2}], got {k}")
    if method == "arpack":
        return _extreme_arpack(op, k, which, tol, maxiter, seed)
    n = op.n
    start = op.products
    m_max = int(min(n, maxiter if maxiter is not None else 1000))
    m_max = max(m_max, min(n, 2 * k + 2))
    # The Krylov basis lives on the operator's device (a GPU keeps products and reorthogonalization
    # there); only the small tridiagonal matrix and its eigenvectors go to the host.
    dev = op.device
    Q = torch.empty((n, m_max + 1), dtype=torch.float64, device=dev)
    alpha, beta = np.zeros(m_max), np.zeros(m_max)
    q = torch.from_numpy(np.random.default_rng(seed).standard_normal(n)).to(dev)
    Q[:, 0] = q / torch.linalg.vector_norm(q)
    check_every = max(10, 2 * k)
    converged, m = False, 0
    theta = S = None
    for j in range(m_max):
        w = op.matvec(Q[:, j]).to(torch.float64)
        alpha[j] = float(Q[:, j] @ w)
        for _ in range(2):                                 # full reorthogonalization, twice is enough
            w = w - Q[:, :j + 1] @ (Q[:, :j + 1].T @ w)
        beta[j] = float(torch.linalg.vector_norm(w))
        m = j + 1
        invariant = beta[j] <= 1e-14 * max(abs(alpha[:m]).max(), 1e-300)
        if not invariant:
            Q[:, j + 1] = w / beta[j]
        if invariant or m == m_max or (m >= 2 * k + 2 and m % check_every == 0):
            T = np.diag(alpha[:m]) + np.diag(beta[:m - 1], 1) + np.diag(beta[:m - 1], -1)
            theta, S = np.linalg.eigh(T)                   # ascending
            est = np.abs(beta[j] * S[-1, :])               # ||K y - theta y|| of each Ritz pair
            scale = max(abs(theta[0]), abs(theta[-1]))
            wanted = []
            if which in ("largest", "both"):
                wanted += list(range(m - min(k, m), m))
            if which in ("smallest", "both"):
                wanted += list(range(min(k, m)))
            converged = bool(invariant or np.all(est[wanted] <= tol * scale))
            if converged or m == m_max:
                break
    out: dict[str, Any] = {}
    kk = min(k, m)

    assert theta is not None and S is not None               # the loop ran at least once
    def finish(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vecs = Q[:, :m] @ torch.from_numpy(np.ascontiguousarray(S[:, idx])).to(dev)
        vecs = vecs / torch.linalg.vector_norm(vecs, dim=0)
        lam = theta[idx]
        resid = op.matvec(vecs).to(torch.float64) - vecs * torch.from_numpy(lam).to(dev)
        return lam, torch.linalg.vector_norm(resid, dim=0).cpu().numpy()

    if which in ("largest", "both"):
        idx = np.arange(m - 1, m - 1 - kk, -1)
        out["largest"], out["residual_largest"] = finish(idx)
    if which in ("smallest", "both"):
        idx = np.arange(kk - 1, -1, -1)
        out["smallest"], out["residual_smallest"] = finish(idx)
    out["products"] = op.products - start
    out["lanczos_steps"] = m
    out["converged"] = converged
    return out


def interlacing_bounds(model: nn.Module, x: Tensor, k: int = 6, *, size: int = 1024,
                       indices: Tensor | np.ndarray | None = None) -> dict[str, Any]:
    """Rigorous bounds on the extreme eigenvalues of ``K(x, x)`` from one principal submatrix.

    Cauchy's interlacing theorem: the kernel ``K_S`` of a subset ``S`` of ``m`` of the points is
    a principal submatrix of ``K``, so ``lambda_i^asc(K) <= lambda_i^asc(K_S)`` and
    ``lambda_i^desc(K) >= lambda_i^desc(K_S)`` for ``i = 1..m``. The ``k`` smallest eigenvalues
    of ``K_S`` are upper bounds on the ``k`` smallest of ``K``, its ``k`` largest are lower bounds
    on the ``k`` largest, for the price of one dense ``m x m`` float64 kernel. This is how the
    bottom of an ill-conditioned kernel too large to form is pinned down: Lanczos reaches its
    largest eigenvalues in a few dozen products but its smallest only after hundreds or more, while
    points packed close together have nearly dependent kernel rows, so a small dense patch
    already certifies how close to singular ``K`` is.

    Args:
        model, x: as for :func:`empirical_ntk` (output-traced kernel, like :class:`NTKOperator`).
        k: how many eigenvalues to bound at each end, ``1 <= k <= m``.
        size: ``m``, used when ``indices`` is not given: the ``size`` points nearest to the
            point nearest the centroid of ``x`` (a compact patch: the tightest bottom bounds).
        indices: the subset ``S`` (distinct row indices of ``x``), instead of ``size``.
    Returns:
        ``{"smallest_upper": (k,), "largest_lower": (k,), "indices": (m,), "allowance": float,
        "size": m}``, eigenvalue bounds in descending order as in :func:`extreme_eigenvalues`.
        ``allowance`` is the rounding floor of ``K_S`` (:func:`rounding_floor`,
        ``m * eps64 * lambda_max(K_S)``), an allowance for the rounding of ``K_S`` and of
        ``eigvalsh``, included in the bounds: ``smallest_upper = max(mu, 0) + allowance`` and
        ``largest_lower = mu - allowance`` for the computed eigenvalues ``mu`` of ``K_S``.
    """
    check_model(model, "interlacing_bounds")
    check_points(model, x)
    n = x.shape[0]
    if indices is None:
        if not 1 <= int(size) <= n:
            raise ValueError(f"size must be in [1, N] = [1, {n}] points, got {size}")
        with torch.no_grad():
            xd = x.detach().to(torch.float64)
            seed = torch.argmin(((xd - xd.mean(0)) ** 2).sum(1))
            d2 = ((xd - xd[seed]) ** 2).sum(1)
            idx = torch.argsort(d2, stable=True)[: int(size)].sort().values.cpu()
    else:
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
        if idx.ndim != 1 or idx.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
            raise ValueError("indices must be a 1-D array of integer row indices of x")
        idx = idx.long().cpu()
        if len(idx) == 0 or int(idx.min()) < 0 or int(idx.max()) >= n:
            raise ValueError(f"indices must be non-empty row indices in [0, {n - 1}]")
        if len(torch.unique(idx)) != len(idx):
            raise ValueError("indices must be distinct: a repeated point is not a principal submatrix")
    m = len(idx)
    if not 1 <= int(k) <= m:
        raise ValueError(f"k must be in [1, m] = [1, {m}] for a subset of {m} points, got {k}")
    k = int(k)
    K_S = empirical_ntk(model, x[idx.to(x.device)], dtype=torch.float64)
    assert isinstance(K_S, Tensor)                             # groups=False: one matrix
    mu = spectrum(K_S, check=False)                            # descending
    allowance = rounding_floor(K_S, mu)
    return {"smallest_upper": np.maximum(mu[-k:], 0.0) + allowance, "largest_lower": mu[:k] - allowance,
            "indices": idx.numpy(), "allowance": allowance, "size": m}


def _extreme_arpack(op: NTKOperator, k: int, which: Which, tol: float, maxiter: int | None,
                    seed: int) -> dict[str, Any]:
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
    rng = np.random.default_rng(seed)
    A = op.as_scipy()
    out: dict[str, Any] = {}
    start = op.products
    converged = True

    def largest_of(M) -> tuple[np.ndarray, np.ndarray]:
        nonlocal converged
        try:
            return eigsh(M, k=k, which="LA", tol=tol, maxiter=maxiter, v0=rng.standard_normal(op.n))
        except ArpackNoConvergence as err:    # keep the pairs that did converge; the residuals tell the rest
            converged = False
            if len(err.eigenvalues) == 0:
                raise RuntimeError(f"ARPACK converged to none of the {k} eigenvalues within maxiter={maxiter} "
                                   "restarts; raise maxiter or tol, or use method='lanczos'") from None
            return err.eigenvalues, err.eigenvectors

    vals, vecs = largest_of(A)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    if which in ("largest", "both"):
        out["largest"] = vals
        out["residual_largest"] = np.linalg.norm(A.matmat(vecs) - vecs * vals, axis=0)
    if which in ("smallest", "both"):
        shift = float(vals[0]) * 1.0001
        B = LinearOperator(A.shape, matvec=lambda v: shift * v - A.matvec(v), dtype=np.float64)
        sv, svecs = largest_of(B)
        lam = shift - sv
        order = np.argsort(lam)[::-1]
        lam, svecs = lam[order], svecs[:, order]
        out["smallest"] = lam
        out["residual_smallest"] = np.linalg.norm(A.matmat(svecs) - svecs * lam, axis=0)
    out["products"] = op.products - start
    out["converged"] = converged
    return out
