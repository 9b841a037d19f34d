"""A Newton step on the current support, solved by conjugate gradients with exact
Hessian-vector products, and its preconditioners.

The proximal Newton solver's model ``c * Gram_A (x) B`` is exact for least squares but
not for the softmax on nearly separable data: there the Hessian
``(1/n) sum_i x_i x_i^T (x) S_i`` weighs each sample by its own curvature ``S_i``, which
is near zero for confidently fitted samples, and no single scalar ``c`` makes the model
match it (the model steps then need hundreds of iterations per lambda at K = 100). On
a fixed support with fixed signs the penalised problem is smooth, so its Newton
system can be solved with conjugate gradients: every iteration costs one exact
Hessian-vector product (two passes over the data). The preconditioner is the
(cheaply invertible) Kronecker model with few classes and the Hessian's per-class
blocks with many, where the model's preconditioning leaves a poorly conditioned
system (:class:`ClassBlockPreconditioner`). The solver
(:meth:`ProxNewtonSolver._newton_cg_step`) takes such a step only when its model steps
crawl; entries the step would push through zero stop at zero (a projected search),
and the model steps that follow let entries enter.

Shapes: directions are ``(m + 1, K)`` (the working set's rows, then the intercept).
"""

from __future__ import annotations

import torch


class KroneckerPreconditioner:
    """``V -> (c Gram_A (x) B + rho I)^{-1} V`` for ``V`` of shape ``(m + 1, K)``.

    With ``Gram_A = U diag(g) U^T`` and ``B = Q diag(s) Q^T`` the inverse is
    ``U [(U^T V Q) / (c g s^T + rho)] Q^T``: ``O(m^2 K + m K^2)`` per application.
    """

    def __init__(self, gram_eig: tuple[torch.Tensor, torch.Tensor], B: torch.Tensor, c: float, rho: float,
                 shift_invariant: bool = False):
        g, self.U = gram_eig
        B = B.to(torch.float64)
        if B.dim() == 1:  # a diagonal model (many classes)
            B = torch.diag(B)
        if shift_invariant and B.shape[0] > 1:
            # The softmax's B is singular along "every class alike". On a face with partial
            # rows that direction is curved, and an inverse of ~1/rho there would swamp the
            # system; give it the classes' mean curvature instead.
            K = B.shape[0]
            B = B + float(torch.diagonal(B).mean()) * torch.ones_like(B) / K
        s, self.Q = torch.linalg.eigh(B)
        g = g.clamp_min(0)
        s = s.clamp_min(0)
        scale = c * float(g.max()) * float(s.max())
        # rho keeps the softmax's flat directions (and rounding) from being amplified without bound
        self.denom = c * g[:, None] * s[None, :] + max(rho, 1e-10 * scale)

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        return self.U @ ((self.U.T @ V @ self.Q) / self.denom) @ self.Q.T


#: At most this many curvature entries are sorted at once (a float32 copy and int64 order).
_SORT_ELEMS = 1 << 25


class ClassBlockPreconditioner:
    """``V -> M^{-1} V`` with ``M`` the Hessian's per-class diagonal blocks on the face.

    The Hessian ``(1/n) sum_i x_i x_i^T (x) S_i`` weighs each sample by its own
    curvature, which the Kronecker model averages away; its class-``k`` block,
    ``(1/n) sum_i (S_i)_kk x_i x_i^T`` on the class's face entries (and its intercept),
    keeps the weighting and drops only the coupling between classes. For a sample
    split between two classes that coupling changes the curvature by a factor of at
    most 2, so the preconditioned system stays well conditioned where the Kronecker
    model's is not: on a 4,000 x 48 x 100 softmax near separation CG needs 6 products
    against 69 for a 5% residual (``docs/glm.md``).

    Class ``k``'s block is summed over the fewest samples holding ``mass`` of
    ``sum_i (S_i)_kk``: near separation a class's curvature sits on the few samples it
    is confused with. Even so a block costs ``|S_k| |F_k|^2`` (at the small end of a
    100,000 x 2048 x 100 path, about 60 passes' worth for all classes), so
    :meth:`update` keeps each class's weighted Gram matrix, built over the class's face
    plus the entries about to enter it, and later Newton-CG steps of the same lambda
    take their block from it (a sub-matrix and a new Cholesky factor) as long as the
    class's face stays inside; the weights are then those of the point it was built
    at, which only affects the preconditioning.

    Args:
        ridge: added to the coefficients' (not the intercepts') diagonal of every block;
            it is the same for every step of a lambda, and so for the kept matrices.
        mass: the fraction of each class's curvature its block keeps.
    """

    def __init__(self, ridge: float, mass: float = 0.95):
        self.ridge = float(ridge)
        self.mass = float(mass)
        self.index: list[torch.Tensor] = []  # per class: the face rows (local, intercept last)
        self.factors: list[torch.Tensor] = []  # per class: Cholesky factor of the block on the face
        self._face_cols: list[torch.Tensor | None] = []  # per class: global feature indices of the factor
        self._gram_cols: list[torch.Tensor | None] = []  # per class: global feature indices of the Gram matrix
        self._grams: list[torch.Tensor | None] = []  # per class: weighted Gram / n, intercept last, no ridge
        self.samples = 0  # samples summed over by the blocks built in the last update

    @staticmethod
    def memory_bytes(entries: torch.Tensor, dtype: torch.dtype) -> int:
        """Bytes the blocks take for a face plus near entries ``entries`` (``(m, K)`` bool):
        per class a Gram matrix in ``dtype`` and a float64 factor, intercept included."""
        sizes = entries.sum(0).to(torch.float64) + 1
        itemsize = torch.empty(0, dtype=dtype).element_size()
        return int(float((sizes * sizes).sum()) * (itemsize + 8))

    def update(self, design, cols: torch.Tensor, face: torch.Tensor, curvature: torch.Tensor, n: int,
               near: torch.Tensor | None = None) -> int:
        """Make the blocks match the face, building the Gram matrices of the classes whose
        face left their kept one.

        Args:
            design: the design with its working set ``cols`` selected.
            cols: ``(m,)`` sorted global feature indices of the working set.
            face: ``(m + 1, K)`` bool, the face (last row: the intercepts, all true).
            curvature: ``(n, K)`` float64, ``w_i (S_i)_kk`` (:meth:`Datafit.diagonal_curvature`).
            n: the number of samples the loss averages over.
            near: ``(m, K)`` bool, entries off the face that a Gram matrix built now
                should also cover (likely to enter the face later).

        Returns:
            The number of classes whose Gram matrix was built.
        """
        m, K = face.shape[0] - 1, face.shape[1]
        if len(self.factors) != K:
            self.index, self.factors = [None] * K, [None] * K
            self._face_cols, self._gram_cols, self._grams = [None] * K, [None] * K, [None] * K
        todo, refactor = [], []
        for k in range(K):
            local = torch.nonzero(face[:m, k]).flatten()
            cols_k = cols[local]
            self.index[k] = torch.cat([local, torch.tensor([m], device=local.device, dtype=local.dtype)])
            old = self._face_cols[k]
            if old is not None and old.shape == cols_k.shape and bool((old == cols_k).all()):
                continue
            self._face_cols[k] = cols_k
            kept = self._gram_cols[k]
            if kept is not None and bool(torch.isin(cols_k, kept).all()):
                refactor.append(k)
            else:
                todo.append(k)
                wide = face[:m, k] if near is None else face[:m, k] | near[:, k]
                self._gram_cols[k] = cols[torch.nonzero(wide).flatten()]
        if todo:
            requests = []
            self.samples = 0
            n_rows = curvature.shape[0]
            step = max(1, _SORT_ELEMS // max(1, n_rows))  # classes sorted at once, to bound the memory
            for c0 in range(0, len(todo), step):
                chunk = todo[c0 : c0 + step]
                vals, order = torch.sort(curvature[:, chunk].to(torch.float32), dim=0, descending=True)
                cum = vals.cumsum(0, dtype=torch.float64)
                counts = torch.searchsorted(cum.T.contiguous(), (self.mass * cum[-1]).unsqueeze(1)).squeeze(1) + 1
                for j, (k, count) in enumerate(zip(chunk, counts.clamp(max=n_rows).tolist())):
                    rows = torch.sort(order[:count, j]).values
                    requests.append((rows, curvature[rows, k], self._gram_cols[k]))
                    self.samples += count
                del vals, order, cum
            for k, G in zip(todo, design.weighted_grams(requests)):
                # kept in the compute dtype the products ran in: K blocks of |F_k|^2 add up
                self._grams[k] = (G / n).to(design.dtype)
            refactor += todo
        for k in refactor:
            kept = self._gram_cols[k]
            pos = torch.searchsorted(kept, self._face_cols[k])
            pos = torch.cat([pos, torch.tensor([kept.numel()], device=pos.device, dtype=pos.dtype)])
            self.factors[k] = _block_factor(self._grams[k][pos][:, pos].to(torch.float64), self.ridge)
        return len(todo)

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(V)
        for k, (idx, L) in enumerate(zip(self.index, self.factors)):
            out[idx, k] = torch.cholesky_solve(V[idx, k].unsqueeze(1).to(L.dtype), L).squeeze(1).to(V.dtype)
        return out


def _block_factor(G: torch.Tensor, ridge: float) -> torch.Tensor:
    """Cholesky factor of ``G`` (float64, last row/column the intercept) plus the ridge
    on the coefficients' diagonal."""
    c = G.shape[0] - 1
    G[range(c), range(c)] += ridge
    # a floor keeps a class whose samples all sit at p = 0 or 1 (curvature 0) invertible
    floor = 1e-10 * float(torch.diagonal(G).max().clamp_min(1e-300)) + 1e-300
    G[range(c + 1), range(c + 1)] += floor
    L, info = torch.linalg.cholesky_ex(G)
    while int(info) > 0:
        floor *= 100
        G[range(c + 1), range(c + 1)] += floor
        L, info = torch.linalg.cholesky_ex(G)
    return L


def newton_cg_direction(hvp, grad: torch.Tensor, face: torch.Tensor, precond, *, max_iter: int, rtol: float):
    """Approximately solve ``H_F D = -grad_F`` on the face ``F`` (a boolean mask).

    Args:
        hvp: ``D -> (H D, X D)``, the Hessian-vector product of the smooth objective on
            the face and the predictions ``X D`` it computed on the way.
        grad: ``(m + 1, K)`` gradient of the smooth objective (zero off the face).
        face: ``(m + 1, K)`` bool.
        precond: ``V -> M^{-1} V`` for a symmetric positive definite ``M``.
        max_iter: at most this many Hessian-vector products.
        rtol: stop when the preconditioned residual norm falls below ``rtol`` times its
            initial value.

    Returns:
        ``(D, ZD, iterations)``: the direction, its predictions ``X D`` (accumulated
        from the products, no extra pass) and the number of products used.
    """
    f = face.to(grad.dtype)
    r = -grad * f
    z = precond(r) * f
    rz = float((r * z).sum())
    if rz <= 0:
        return torch.zeros_like(grad), None, 0
    stop = rtol * rtol * rz
    p = z
    D = torch.zeros_like(grad)
    ZD = None
    it = 0
    for it in range(1, max_iter + 1):
        Hp, Zp = hvp(p)
        pHp = float((p * Hp).sum())
        if pHp <= 0:
            it -= 1
            break
        a = rz / pHp
        D = D + a * p
        ZD = a * Zp if ZD is None else ZD.add_(Zp, alpha=a)
        r = r - a * Hp
        z = precond(r) * f
        rz_new = float((r * z).sum())
        if rz_new <= stop:
            break
        p = z + (rz_new / rz) * p
        rz = rz_new
    return D, ZD, it
