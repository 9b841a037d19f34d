"""Datafits: the smooth part of the GLM objective.

The objective of every solver in :mod:`debuggable.glm` is, for a linear predictor
``z_i = W^T x_i + b`` (``W`` is ``(D, K)``; ``b`` is ``(K,)`` and never penalised)::

    F(W, b) = (1/n) sum_i w_i * loss(z_i, y_i) + penalty(W)

with ``w_i = 1`` without sample weights (so weights are relative to one, exactly as
in ``glm-saga``; they are *not* renormalised to sum to ``n``). The datafits:

* :class:`Multinomial`: ``loss = logsumexp(z) - z_y`` (cross-entropy, K >= 2 outputs);
* :class:`Binomial`: ``loss = log(1 + exp(z)) - y z`` (one output, ``y`` in {0, 1});
* :class:`Gaussian`: ``loss = 0.5 * ||z - y||^2``, the squared error summed over the
  K outputs (``glm-saga`` optimises the same quantity; its *reported* loss divides
  by K as well, see ``docs/glm.md``).

Each datafit works on the ``(n, K)`` matrix ``Z`` of linear predictors and exposes:
the loss, the mean ``M`` with ``dF/dZ = (M - T) * w / n`` for the constant target
matrix ``T``, the residual ``R = (M - T) * w`` (so the gradient is ``X^T R / n``;
forming ``R`` before the product, rather than subtracting ``X^T (T w)`` after it,
keeps float32 products accurate where the model fits well and ``R`` is small),
a ``K x K`` curvature summary ``B`` (the weighted mean of the
per-sample Hessians; the solvers model the Hessian by ``Gram (x) B``), the exact
curvature along a direction, the Fenchel conjugate used by the duality gap and the
intercept of the all-zero model (used for ``lambda_max``).

Under a process group a datafit holds this rank's rows (``n_rows`` of them, the
targets and weights of the design's local rows); ``n`` is the number of rows of all
ranks, and every sum over rows (losses, ``B``, conjugates, class counts, accuracy) is
all-reduced through ``comm`` (:mod:`debuggable.glm.distributed`), so every rank sees
the full-data value.

The multinomial's passes over ``(n, K)`` run over row blocks of about
:attr:`Datafit.BLOCK_ENTRIES` numbers, so that each block's chain of element-wise
operations stays in the core's cache instead of streaming the whole array through
memory once per operation; with the row-chunk workers on (:attr:`Datafit.rows`, set
by the path beside a competing process) the blocks are shared among them. The blocks
are the same with and without workers, and sums over rows add the blocks' partial
sums in row order, so a value does not depend on the worker count.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from debuggable._threads import RowChunks
from debuggable.glm.distributed import Communicator

_B_ROWS = 1 << 17  # rows used to estimate the curvature summary B on very large problems


def _subsample(n: int, device: torch.device, n_total: int | None = None) -> torch.Tensor | None:
    """Rows for ``B``: all of them up to ``_B_ROWS`` in all, else a seeded sample of
    this rank's ``n`` rows in proportion to its share of the ``n_total``."""
    take = _B_ROWS if n_total is None else -(-_B_ROWS * n // max(n_total, 1))
    if n <= take:
        return None
    g = torch.Generator(device="cpu").manual_seed(0)
    return torch.randperm(n, generator=g)[:take].to(device)


class Datafit(ABC):
    """Base class; see the module docstring for the contract."""

    name: str = ""
    exact_curvature: bool = False  # True when Gram (x) B is the exact Hessian
    # True when adding the same number to every output of a sample leaves its loss
    # unchanged (softmax): the gradient's rows then sum to zero, and the solvers
    # remove the flat direction this leaves (see ElasticNet.row_shift).
    shift_invariant: bool = False

    #: The passes over ``(n, K)`` run in row blocks of about this many numbers (1 MiB in
    #: float64: cache-sized), ...
    BLOCK_ENTRIES = 1 << 17
    #: ... from this many numbers on; smaller arrays take one pass per operation. At
    #: 10,000 x 1,000 one model step's passes take 499 ms in blocks against 628 ms in
    #: whole-array passes on two threads, and beside a competing process 553 ms on the
    #: row-chunk workers against 1,021 ms on one thread
    #: (``benchmarks/glm_datafit_blocks.py``, ``docs/glm.md``).
    BLOCKED_MIN_ENTRIES = 1 << 18

    def __init__(self, targets: torch.Tensor, n_outputs: int, sample_weight: torch.Tensor | None = None,
                 comm: Communicator | None = None):
        self.t = targets
        self.K = int(n_outputs)
        self.w = sample_weight  # float64 (n_rows,) or None
        self.comm = comm or Communicator()
        self.n_rows = int(targets.shape[0])  # this rank's rows
        self.n = self.comm.sum_int(self.n_rows, "counting the rows")  # all ranks' rows: the loss divides by it
        self.wsum = self.comm.sum_float(float(self.n_rows if sample_weight is None else sample_weight.sum()),
                                        "summing the sample weights")
        #: Row-chunk workers (:class:`debuggable._threads.RowChunks`) that the row blocks are
        #: shared among while they are active; ``None`` or inactive: the calling thread.
        self.rows: RowChunks | None = None

    # -- row blocks ------------------------------------------------------------------------
    def row_blocks(self, fn, width: int | None = None) -> list:
        """``fn(start, end)`` over consecutive row blocks covering this rank's rows, the
        results in row order.

        One block (all rows) off the CPU (a GPU streams whole arrays well and pays per
        kernel launch) and below :attr:`BLOCKED_MIN_ENTRIES` numbers; else blocks of
        ``BLOCK_ENTRIES // width`` rows (``width``: numbers per row, default ``K``), run
        in the calling thread or, while :attr:`rows` is active, in runs of consecutive
        blocks on its workers. The blocks depend on the shape only."""
        n = self.n_rows
        width = max(1, self.K if width is None else int(width))
        if n * width < self.BLOCKED_MIN_ENTRIES or self.t.device.type != "cpu":
            return [fn(0, n)]
        step = max(1, self.BLOCK_ENTRIES // width)
        starts = list(range(0, n, step))
        rows = self.rows
        if rows is None or not rows.active:
            return [fn(s, min(n, s + step)) for s in starts]

        def run(first: int, last: int) -> list:
            return [fn(starts[i], min(n, starts[i] + step)) for i in range(first, last)]

        return [r for part in rows.map(run, rows.bounds(len(starts), min_rows=1)) for r in part]

    def sum_rows(self, V: torch.Tensor) -> torch.Tensor:
        """``V.sum(0)`` in float64 (this rank's rows), over the row blocks."""
        return self._summed_blocks(lambda s, e: V[s:e].sum(0, dtype=torch.float64), V.shape[1])

    def _summed_blocks(self, fn, width: int | None = None) -> torch.Tensor:
        """The sum of ``fn(start, end)`` over :meth:`row_blocks`, added in row order."""
        parts = self.row_blocks(fn, width)
        return parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)

    def loss_along(self, Z: torch.Tensor, Zd: torch.Tensor, s: float) -> tuple[float, torch.Tensor]:
        """``(loss(Zs), Zs)`` at the line-search trial ``Zs = Z + s Zd`` (a new tensor)."""
        Zs = torch.add(Z, Zd, alpha=s)
        return self.loss(Zs), Zs

    # -- helpers -------------------------------------------------------------------
    def _wmean(self, v: torch.Tensor) -> torch.Tensor:
        """(1/n) sum_i w_i v_i in float64, over all ranks' rows."""
        v = v.to(torch.float64)
        tot = (v * self.w).sum() if self.w is not None else v.sum()
        if self.comm.active:
            tot = self.comm.sum_(tot.reshape(1), "the loss")[0]
        return tot / self.n

    def _reduced_mean(self, v: torch.Tensor) -> float:
        """The unweighted mean of ``v`` over all ranks' entries (validation, accuracy)."""
        if not self.comm.active:
            return float(v.to(torch.float64).mean())
        both = torch.stack([v.to(torch.float64).sum(), torch.tensor(float(v.numel()), dtype=torch.float64, device=v.device)])
        self.comm.sum_(both, "a mean over the rows")
        return float(both[0] / both[1])

    # -- contract --------------------------------------------------------------------
    @abstractmethod
    def null_intercept(self) -> torch.Tensor:
        """Implemented by each datafit."""

    @abstractmethod
    def loss(self, Z: torch.Tensor) -> float:
        """Implemented by each datafit."""

    @abstractmethod
    def loss_and_mean(self, Z: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``(loss, M)``: ``M`` must not be modified by the caller."""

    @abstractmethod
    def target_rows(self, s: int, e: int) -> torch.Tensor:
        """Rows ``s:e`` of ``T * w`` (float64)."""

    def weighted(self, M: torch.Tensor) -> torch.Tensor:
        """``M * w`` (``M`` itself without sample weights)."""
        return M if self.w is None else M * self.w.to(M.dtype).unsqueeze(1)

    def _weighted_rows(self, V: torch.Tensor, s: int, e: int) -> torch.Tensor:
        """``V`` (rows ``s:e``' values) times their sample weights, in place."""
        return V if self.w is None else V.mul_(self.w[s:e].to(V.dtype).unsqueeze(1))

    def residual(self, M: torch.Tensor) -> torch.Tensor:
        """``R = (M - T) * w`` (``(n, K)``, ``M``'s dtype; ``M`` is not modified), so
        that ``dF/dZ = R / n``."""
        return (self.weighted(M) - self.target_rows(0, self.n_rows).to(M.dtype))

    def loss_and_residual(self, Z: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``(loss, dF/dZ)`` in float64."""
        loss, M = self.loss_and_mean(Z)
        return loss, self.residual(M).to(torch.float64) / self.n

    @abstractmethod
    def curvature(self, Z: torch.Tensor) -> torch.Tensor:
        """Implemented by each datafit."""

    @abstractmethod
    def dir_curvature(self, Z: torch.Tensor, Zd: torch.Tensor) -> float:
        """Implemented by each datafit."""

    @abstractmethod
    def conjugate(self, Z: torch.Tensor, s: float) -> float:
        """``f*(s R(Z))``: the Fenchel conjugate of the datafit at the scaled residual."""

    @abstractmethod
    def hessian_apply(self, Z: torch.Tensor, Zd: torch.Tensor) -> torch.Tensor:
        """``Q`` (``(n, K)``) with ``X^T Q / n`` the datafit's Hessian applied to a
        coefficient direction whose predictions are ``Zd``: per sample, ``w_i S_i Zd_i``
        with ``S_i`` the loss's Hessian in prediction space."""

    @abstractmethod
    def diagonal_curvature(self, Z: torch.Tensor) -> torch.Tensor:
        """``(n, K)`` float64: the diagonal of each sample's weighted prediction-space
        Hessian, ``w_i (S_i)_kk`` (what class ``k``'s block of the Hessian weighs sample
        ``i`` by)."""

    def curvature_bound(self, B: torch.Tensor) -> float:
        """The largest eigenvalue of the symmetric ``B`` (with a rounding margin).

        Exact rather than Gershgorin's bound, which overestimates it by a factor of
        about 2 for softmax curvature and so halves the model solver's step."""
        if B.numel() == 1:
            return float(B.abs().max())
        if B.dim() == 1:  # a diagonal model (many classes)
            return float(B.max().clamp_min(0)) * (1 + 1e-6) + 1e-300
        return float(torch.linalg.eigvalsh(B.to(torch.float64))[-1].clamp_min(0)) * (1 + 1e-6) + 1e-300

    @abstractmethod
    def predict(self, Z: torch.Tensor) -> torch.Tensor:
        """Implemented by each datafit."""

    @abstractmethod
    def accuracy(self, Z: torch.Tensor, targets: torch.Tensor) -> float:
        """Implemented by each datafit."""

    @abstractmethod
    def mean_loss(self, Z: torch.Tensor, targets: torch.Tensor) -> float:
        """Unweighted mean loss of predictions ``Z`` against ``targets`` (validation)."""


class Multinomial(Datafit):
    """Multinomial cross-entropy over K classes; targets are int64 labels 0..K-1."""

    name = "multinomial"
    shift_invariant = True

    def null_intercept(self) -> torch.Tensor:
        counts = torch.zeros(self.K, dtype=torch.float64, device=self.t.device)
        w = torch.ones(self.n_rows, dtype=torch.float64, device=self.t.device) if self.w is None else self.w
        counts.index_add_(0, self.t, w)
        self.comm.sum_(counts, "the class counts")
        logp = torch.log(counts / counts.sum())
        return logp - logp.mean()

    def _nll(self, Z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(Z, dim=1) - Z.gather(1, t.unsqueeze(1)).squeeze(1)

    def _cached(self, Z: torch.Tensor, slot: int):
        cache = getattr(self, "_cache", None)
        if cache is not None and cache[0] is Z and cache[1] == Z._version:
            return cache[2 + slot]
        return None

    def _loss_from(self, Z: torch.Tensor, lse: torch.Tensor) -> float:
        return float(self._wmean(lse.squeeze(1) - Z.gather(1, self.t.unsqueeze(1)).squeeze(1)))

    def loss(self, Z: torch.Tensor) -> float:
        lse = self._cached(Z, 0)
        if lse is None:
            lse = Z.new_empty(self.n_rows, 1)
            self.row_blocks(lambda s, e: torch.logsumexp(Z[s:e], 1, keepdim=True, out=lse[s:e]))
            self._cache = (Z, Z._version, lse, None)
        return self._loss_from(Z, lse)

    def loss_along(self, Z: torch.Tensor, Zd: torch.Tensor, s: float) -> tuple[float, torch.Tensor]:
        Zs = torch.empty_like(Z)
        lse = Z.new_empty(self.n_rows, 1)

        def block(a: int, b: int) -> None:
            torch.add(Z[a:b], Zd[a:b], alpha=s, out=Zs[a:b])
            torch.logsumexp(Zs[a:b], 1, keepdim=True, out=lse[a:b])

        self.row_blocks(block)
        self._cache = (Zs, Zs._version, lse, None)
        return self._loss_from(Zs, lse), Zs

    def loss_and_mean(self, Z: torch.Tensor) -> tuple[float, torch.Tensor]:
        loss = self.loss(Z)  # computes or reuses logsumexp (e.g. from the accepted line-search trial)
        lse = self._cached(Z, 0)
        P = torch.empty_like(Z)
        self.row_blocks(lambda s, e: torch.sub(Z[s:e], lse[s:e], out=P[s:e]).exp_())
        self._cache = (Z, Z._version, lse, P)
        return loss, P

    def target_rows(self, s: int, e: int) -> torch.Tensor:
        T = torch.zeros(e - s, self.K, dtype=torch.float64, device=self.t.device)
        w = torch.ones(e - s, 1, dtype=torch.float64, device=self.t.device) if self.w is None else self.w[s:e].unsqueeze(1)
        T.scatter_(1, self.t[s:e].unsqueeze(1), w)
        return T

    def residual(self, M: torch.Tensor) -> torch.Tensor:
        R = torch.empty_like(M)
        self.row_blocks(lambda s, e: self._weighted_rows(R[s:e].copy_(M[s:e]), s, e))
        w = -torch.ones(self.n_rows, 1, dtype=R.dtype, device=R.device) if self.w is None else -self.w.to(R.dtype).unsqueeze(1)
        return R.scatter_add_(1, self.t.unsqueeze(1), w)

    def _probs(self, Z: torch.Tensor) -> torch.Tensor:
        P = self._cached(Z, 1)
        if P is None:
            P = torch.empty_like(Z)
            self.row_blocks(lambda s, e: P[s:e].copy_(torch.softmax(Z[s:e], 1)))
        return P

    def _curvature_diagonal_rows(self, P: torch.Tensor, s: int, e: int, dtype: torch.dtype,
                                 out: torch.Tensor | None = None) -> torch.Tensor:
        """``w_i p_ik (1 - p_ik)`` for rows ``s:e`` (into ``out`` when given)."""
        q = P[s:e].to(dtype)
        out = torch.mul(q, q, out=out)
        torch.sub(q, out, out=out)
        return self._weighted_rows(out, s, e)

    #: From this many classes on, :meth:`curvature` gives the diagonal of ``B`` only.
    DIAGONAL_MIN_CLASSES = 200

    def curvature(self, Z: torch.Tensor) -> torch.Tensor:
        """``B``, the weighted mean softmax Hessian ``diag(p) - p p^T`` at ``Z``: ``(K, K)``,
        or with ``K >= DIAGONAL_MIN_CLASSES`` its diagonal ``mean p (1 - p)``, ``(K,)``
        (over all ranks' rows under a process group).

        With many classes the full ``B`` costs ``n K^2`` to form, its largest eigenvalue
        ``K^3`` and every model iteration ``m K^2``, which at K = 1,000 dominated the
        path; each sample's probability mass then sits on a few classes, so the
        coupling ``p p^T`` is small beside the diagonal and the model's scalar ``c``
        absorbs the rest."""
        if self.K >= self.DIAGONAL_MIN_CLASSES:
            q = self._probs(Z)
            v = self._summed_blocks(
                lambda s, e: self._curvature_diagonal_rows(q, s, e, q.dtype).sum(0, dtype=torch.float64))
            self.comm.sum_(v, "the curvature diagonal")
            return v / max(self.wsum, 1e-300)  # wsum: all ranks' weights (n without weights)
        idx = _subsample(self.n_rows, Z.device, self.n if self.comm.active else None)
        P = self._probs(Z)
        P = (P if idx is None else P.index_select(0, idx)).to(torch.float64)
        if self.w is not None:
            w = self.w if idx is None else self.w.index_select(0, idx)
            Pw = P * w.unsqueeze(1)
            tot = float(w.sum())
        else:
            Pw = P
            tot = float(P.shape[0])
        B = torch.diag(Pw.sum(0)) - Pw.T @ P
        if self.comm.active:
            tot_t = torch.tensor([tot], dtype=torch.float64, device=B.device)
            self.comm.sum_all_([B, tot_t], "the curvature mean B")
            tot = float(tot_t[0])
        return B / max(tot, 1e-300)

    def dir_curvature(self, Z: torch.Tensor, Zd: torch.Tensor) -> float:
        P = self._probs(Z)
        v = Z.new_empty(self.n_rows)

        def block(s: int, e: int) -> None:
            PZ = P[s:e] * Zd[s:e]
            pz = PZ.sum(1)
            torch.sub(PZ.mul_(Zd[s:e]).sum(1), pz * pz, out=v[s:e])

        self.row_blocks(block)
        return float(self._wmean(v))

    def hessian_apply(self, Z: torch.Tensor, Zd: torch.Tensor) -> torch.Tensor:
        P = self._probs(Z)
        Q = torch.empty_like(Zd)

        def block(s: int, e: int) -> None:
            p = P[s:e].to(Zd.dtype)
            PZ = torch.mul(p, Zd[s:e], out=Q[s:e])
            PZ.sub_(p * PZ.sum(1, keepdim=True))
            self._weighted_rows(PZ, s, e)

        self.row_blocks(block)
        return Q

    def diagonal_curvature(self, Z: torch.Tensor) -> torch.Tensor:
        P = self._probs(Z)
        out = torch.empty(self.n_rows, self.K, dtype=torch.float64, device=Z.device)
        self.row_blocks(lambda s, e: self._curvature_diagonal_rows(P, s, e, torch.float64, out[s:e]))
        return out

    def conjugate(self, Z: torch.Tensor, s: float) -> float:
        # l*(theta) = sum_k q_k log q_k with q = theta + e_y; theta_i = s (p_i - e_y)
        P = self._probs(Z)
        ent = torch.empty(self.n_rows, dtype=torch.float64, device=Z.device)

        def block(a: int, b: int) -> None:
            Q = P[a:b].to(torch.float64) * s
            Q.scatter_add_(1, self.t[a:b].unsqueeze(1), torch.full((b - a, 1), 1.0 - s, dtype=Q.dtype, device=Q.device))
            Q.clamp_min_(0)  # q >= 0 up to rounding; q log q -> 0 at 0
            torch.special.xlogy(Q, Q, out=Q)
            torch.sum(Q, 1, out=ent[a:b])

        self.row_blocks(block)
        return float(self._wmean(ent))

    def predict(self, Z: torch.Tensor) -> torch.Tensor:
        return Z.argmax(1)

    def accuracy(self, Z: torch.Tensor, targets: torch.Tensor) -> float:
        return self._reduced_mean(Z.argmax(1) == targets)

    def mean_loss(self, Z: torch.Tensor, targets: torch.Tensor) -> float:
        return self._reduced_mean(self._nll(Z.to(torch.float64), targets))


class Binomial(Datafit):
    """Logistic loss with one output; targets are float64 0/1."""

    name = "binomial"

    def null_intercept(self) -> torch.Tensor:
        w = torch.ones(self.n_rows, dtype=torch.float64, device=self.t.device) if self.w is None else self.w
        both = self.comm.sum_(torch.stack([(w * self.t).sum(), w.sum()]), "the class counts")
        p = float(both[0] / both[1])
        return torch.tensor([math.log(p / (1 - p))], dtype=torch.float64, device=self.t.device)

    @staticmethod
    def _nll(Z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = Z[:, 0]
        return torch.nn.functional.softplus(z) - t.to(z.dtype) * z

    def loss(self, Z: torch.Tensor) -> float:
        return float(self._wmean(self._nll(Z, self.t)))

    def loss_and_mean(self, Z: torch.Tensor) -> tuple[float, torch.Tensor]:
        return self.loss(Z), torch.sigmoid(Z)

    def target_rows(self, s: int, e: int) -> torch.Tensor:
        t = self.t[s:e].unsqueeze(1)
        return t if self.w is None else t * self.w[s:e].unsqueeze(1)

    def curvature(self, Z: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(Z[:, 0].to(torch.float64))
        v = p * (1 - p)
        if self.comm.active:
            tot = (v * self.w).sum() if self.w is not None else v.sum()
            return (self.comm.sum_(tot.reshape(1), "the curvature mean B") / self.wsum).reshape(1, 1)
        if self.w is not None:
            return ((v * self.w).sum() / self.wsum).reshape(1, 1)
        return v.mean().reshape(1, 1)

    def dir_curvature(self, Z: torch.Tensor, Zd: torch.Tensor) -> float:
        p = torch.sigmoid(Z[:, 0])
        return float(self._wmean(p * (1 - p) * Zd[:, 0] ** 2))

    def hessian_apply(self, Z: torch.Tensor, Zd: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(Z).to(Zd.dtype)
        return self.weighted(p * (1 - p) * Zd)

    def diagonal_curvature(self, Z: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(Z).to(torch.float64)
        return self.weighted(p * (1 - p))

    def conjugate(self, Z: torch.Tensor, s: float) -> float:
        p = torch.sigmoid(Z[:, 0]).to(torch.float64)
        q = s * p + (1 - s) * self.t.to(torch.float64)
        ent = torch.special.xlogy(q, q) + torch.special.xlogy(1 - q, 1 - q)
        return float(self._wmean(ent))

    def predict(self, Z: torch.Tensor) -> torch.Tensor:
        return (Z[:, 0] > 0).to(torch.int64)

    def accuracy(self, Z: torch.Tensor, targets: torch.Tensor) -> float:
        return self._reduced_mean((Z[:, 0] > 0).to(torch.int64) == targets.to(torch.int64))

    def mean_loss(self, Z: torch.Tensor, targets: torch.Tensor) -> float:
        return self._reduced_mean(self._nll(Z.to(torch.float64), targets.to(torch.float64)))


class Gaussian(Datafit):
    """Half squared error summed over K outputs; targets are float64 ``(n, K)``."""

    name = "gaussian"
    exact_curvature = True

    def null_intercept(self) -> torch.Tensor:
        if self.comm.active:
            tot = self.t.sum(0) if self.w is None else (self.t * self.w.unsqueeze(1)).sum(0)
            return self.comm.sum_(tot.contiguous(), "the target means") / self.wsum
        if self.w is None:
            return self.t.mean(0)
        return (self.t * self.w.unsqueeze(1)).sum(0) / self.w.sum()

    def loss(self, Z: torch.Tensor) -> float:
        return float(self._wmean(0.5 * ((Z - self.t.to(Z.dtype)) ** 2).sum(1)))

    def loss_and_mean(self, Z: torch.Tensor) -> tuple[float, torch.Tensor]:
        return self.loss(Z), Z

    def target_rows(self, s: int, e: int) -> torch.Tensor:
        T = self.t[s:e]
        return T if self.w is None else T * self.w[s:e].unsqueeze(1)

    def curvature(self, Z: torch.Tensor) -> torch.Tensor:
        return torch.eye(self.K, dtype=torch.float64, device=Z.device)

    def dir_curvature(self, Z: torch.Tensor, Zd: torch.Tensor) -> float:
        return float(self._wmean((Zd * Zd).sum(1)))

    def hessian_apply(self, Z: torch.Tensor, Zd: torch.Tensor) -> torch.Tensor:
        return self.weighted(Zd)  # 0.5 ||z - t||^2 per sample: S_i = I

    def diagonal_curvature(self, Z: torch.Tensor) -> torch.Tensor:
        return self.weighted(torch.ones(self.n_rows, self.K, dtype=torch.float64, device=Z.device))

    def conjugate(self, Z: torch.Tensor, s: float) -> float:
        # l*(theta) = 0.5 ||theta||^2 + theta . y with theta = s (z - y)
        th = (Z.to(torch.float64) - self.t) * s
        return float(self._wmean(0.5 * (th * th).sum(1) + (th * self.t).sum(1)))

    def predict(self, Z: torch.Tensor) -> torch.Tensor:
        return Z

    def accuracy(self, Z: torch.Tensor, targets: torch.Tensor) -> float:
        return float("nan")

    def mean_loss(self, Z: torch.Tensor, targets: torch.Tensor) -> float:
        return self._reduced_mean(0.5 * ((Z.to(torch.float64) - targets) ** 2).sum(1))


DATAFITS = {"multinomial": Multinomial, "binomial": Binomial, "gaussian": Gaussian}


def make_datafit(family: str, y, sample_weight, device: torch.device, comm: Communicator | None = None,
                 n_outputs: int | None = None) -> Datafit:
    """Build the datafit for validated targets ``y`` (NumPy) on ``device``.

    Under a process group ``y`` and ``sample_weight`` are this rank's rows and
    ``n_outputs`` the number of classes over all ranks (a rank's rows may miss some)."""
    import numpy as np

    w = None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float64, device=device)
    if family == "multinomial":
        t = torch.as_tensor(np.asarray(y), dtype=torch.int64, device=device)
        return Multinomial(t, int(t.max()) + 1 if n_outputs is None else int(n_outputs), w, comm)
    if family == "binomial":
        t = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device)
        return Binomial(t, 1, w, comm)
    t = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device).reshape(len(y), -1)
    return Gaussian(t, t.shape[1], w, comm)
