"""Gram-preconditioned proximal Newton with a certified stop, for one lambda.

Outer step at ``(W, b)`` on the working set ``A`` of feature rows:

1. one pass: residual ``R`` at the current predictions ``Z`` and the gradient
   ``G = X_A^T R`` (plus ``1^T R`` for the intercept); for the multinomial, whose
   loss cannot see a constant added to a feature's coefficients across classes, the
   rounding in ``G``'s row sums is projected out and every step ends with each row
   moved to its penalty-minimising shift (see ``docs/glm.md``);
2. a quadratic model of the datafit, ``c * Gram_A (x) B``: ``Gram_A`` is the exact
   (weighted) Gram matrix of the working set (computed once per path), ``B`` the mean
   per-sample Hessian in class space at the current point and ``c`` a scalar that
   tracks the measured ratio of true to modelled curvature along the last step. For
   ``gaussian`` this is the exact Hessian (``c = 1``), so one outer step solves it;
3. the penalised model is minimised in parameter space (FISTA on ``Gram_A``, no pass
   over the data, see :mod:`.fista`);
4. one pass: ``X_A Delta`` gives the predictions along the step, so an Armijo line
   search on the *true* objective costs only ``O(nK)`` per trial.

So an outer iteration costs two matrix products with the data, like one FISTA
iteration, but captures the feature correlations that make first-order methods
crawl on deep features. Where the model is poor (nearly separable data with many
classes, where each sample's own curvature matters) and its steps crawl, a Newton
step on the current support is taken instead, solved by conjugate gradients with
exact Hessian-vector products, preconditioned by the model or, with 20 classes or
more, by the Hessian's per-class blocks (:mod:`.newton_cg`).
When the working set has converged (KKT residual and duality gap at half the tolerance), a *certificate* pass recomputes ``Z`` and the
full gradient in float64; features outside the working set that violate the KKT
conditions are added and the solve continues, so screening never changes the
answer. The lambda is converged only when the certificate says::

    max subgradient violation <= kkt_tol * lam * alpha   and
    duality gap <= tol * objective

The duality gap uses the dual point built from the residual, ``U = s R`` (``s = 1``
for ``alpha < 1``; rescaled to be dual-feasible for the lasso), for the problem with
the intercept held at its returned value; the intercept's own optimality is part of
the KKT residual.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch

from debuggable._threads import one_cpu_thread
from debuggable.glm._design import _power_lmax
from debuggable.glm._validation import available_memory
from debuggable.glm.datafits import Datafit
from debuggable.glm.penalties import ElasticNet
from debuggable.glm.solvers.fista import kron_operator, solve_quadratic_model
from debuggable.glm.solvers.newton_cg import ClassBlockPreconditioner, KroneckerPreconditioner, newton_cg_direction


@dataclass
class Certificate:
    """Optimality of one path point, computed in float64 over all features."""

    objective: float
    loss: float
    kkt: float  # max violation (absolute), coefficients and intercept
    gap: float  # duality gap (absolute)
    row_violation: torch.Tensor  # (D,) per-feature violation
    gradient: torch.Tensor  # (D, K) datafit gradient
    Z: torch.Tensor


@dataclass
class NewtonCGStep:
    """An accepted Newton-CG step: the new point and what it cost."""

    W: torch.Tensor  # (m, K) working-set coefficients
    b: torch.Tensor  # (K,) intercept
    Z: torch.Tensor  # (n, K) predictions
    products: int  # Hessian-vector products (two passes each)
    t: float  # step length taken
    preconditioner_s: float  # seconds to build the preconditioner
    cg_s: float  # seconds in conjugate gradients


@dataclass
class LambdaInfo:
    converged: bool
    n_iter: int
    n_inner: int
    n_certificates: int
    cert: Certificate


def duality_gap(datafit: Datafit, penalty: ElasticNet, lam: float, W: torch.Tensor, b: torch.Tensor,
                G: torch.Tensor, gb: torch.Tensor, Z: torch.Tensor, loss: float, pen: float) -> float:
    """``P(W, b) - D(s R)`` for the problem with the intercept fixed at ``b`` (see module doc)."""
    if penalty.alpha < 1:
        # Fenchel-Young equality for the datafit makes the gap a sum over coefficients.
        return max(0.0, float((W * G).sum()) + pen + penalty.conjugate(-G, lam))
    dn = penalty.dual_norm(G)
    s = 1.0 if dn <= lam else lam / dn
    gap = loss + pen + datafit.conjugate(Z, s) - s * float((b * gb).sum())
    return max(0.0, gap)


def gradient(design, datafit: Datafit, Z: torch.Tensor, *, exact: bool, full: bool = False) -> tuple[float, torch.Tensor, torch.Tensor]:
    """``(loss, G, gb)``: the datafit gradient ``X^T R / n`` on the design's working set
    (or all features with ``full``) and the intercept's ``1^T R / n``.

    For a shift-invariant datafit both have rows that sum to zero exactly; the float32
    product's rounding is projected out, because it would otherwise push the
    coefficients along the directions the datafit cannot see.
    """
    loss, M = datafit.loss_and_mean(Z)
    R = datafit.residual(M)
    G = design.rmv(R, exact=exact, full=full) / datafit.n
    gb = datafit.comm.sum_(datafit.sum_rows(R), "1^T R") / datafit.n
    if datafit.shift_invariant:
        G = G - G.mean(1, keepdim=True)
        gb = gb - gb.mean()
    return loss, G, gb


class ProxNewtonSolver:
    """Solves the path's lambdas one at a time on a design (in memory or streamed)."""

    #: Newton-CG steps (see :meth:`_newton_cg_step`) are taken in a lambda only after this
    #: many model steps, ...
    CG_AFTER = 10
    #: ... when the KKT residual is above ``CG_SLOW`` times its value ``CG_WINDOW`` steps
    #: ago (the model steps are crawling) ...
    CG_WINDOW = 5
    CG_SLOW = 0.5
    #: ... and above ``CG_FAR`` times the tolerance: closer in, the few model steps left
    #: cost less than a Newton-CG step (on 20k x 512 x 10 it then fires 2 times, not 5).
    CG_FAR = 3.0
    #: At most this many Hessian-vector products (two passes each) per Newton-CG step,
    #: stopping early at this relative preconditioned residual.
    CG_MAX_ITER = 30
    CG_RTOL = 0.05
    #: With at least this many outputs CG is preconditioned by the Hessian's per-class
    #: blocks (:class:`.ClassBlockPreconditioner`), which need a tenth of the Kronecker
    #: model's products at K = 100 (``docs/glm.md``); with few classes the two take about
    #: as long, and the Kronecker model costs nothing to build.
    CG_BLOCK_MIN_OUTPUTS = 20
    #: The fraction of each class's curvature its block sums over.
    CG_BLOCK_MASS = 0.95
    #: A block's Gram matrix also covers the zero entries whose gradient is above this
    #: fraction of ``lam * alpha``, so it still serves when they enter the face.
    CG_BLOCK_NEAR = 0.8
    #: The blocks are used only while they need at most this share of the device's free
    #: memory (``K (|F_k| + 1)^2`` numbers twice; 1.2 GB at the end of 100k x 2048 x 100).
    CG_BLOCK_MEMORY_SHARE = 0.25

    def __init__(self, design, datafit: Datafit, penalty: ElasticNet, gram: torch.Tensor, *,
                 work_dtype: torch.dtype = torch.float64, max_inner: int = 50, newton_cg: bool = True,
                 verbose: int = 0, on_iteration=None):
        self.design = design
        # called before every outer iteration (the path's ThreadBudget.update)
        self.on_iteration = on_iteration
        self.datafit = datafit
        self.penalty = penalty
        self.gram = gram  # (D+1, D+1) float64
        self.work_dtype = work_dtype
        self.max_inner = max_inner
        self.newton_cg = bool(newton_cg)
        self._gA_eig: tuple[torch.Tensor, torch.Tensor] | None = None
        self.c = 1.0
        self.verbose = int(verbose)
        self._gA_key: tuple | None = None
        self._gA: torch.Tensor | None = None
        self._gA_L = 0.0
        self._blocks: ClassBlockPreconditioner | None = None  # the Newton-CG preconditioner, kept within a lambda
        self._blocks_lam: float | None = None
        self._blocks_bytes = 0

    # -- helpers -------------------------------------------------------------------------
    def _gram_A(self, A: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The working set's Gram matrix (with the intercept) in the compute dtype, and its
        largest eigenvalue."""
        key = (A.numel(), int(A.sum()) if A.numel() else 0, int(A[0]) if A.numel() else -1, int(A[-1]) if A.numel() else -1)
        if key != self._gA_key:
            d = self.gram.shape[0] - 1
            idx = torch.cat([A, torch.tensor([d], device=A.device, dtype=A.dtype)])
            gA = self.gram.index_select(0, idx).index_select(1, idx)
            self._gA = gA.to(self.design.dtype)
            self._gA_L = _power_lmax(gA)
            self._gA_key = key
            self._gA_eig = None
        return self._gA, self._gA_L

    def _gram_eig(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigendecomposition of the current working set's Gram matrix (float64, cached)."""
        if self._gA_eig is None:
            self._gA_eig = torch.linalg.eigh(self._gA.to(torch.float64))
        return self._gA_eig

    def _newton_cg_step(self, lam: float, A: torch.Tensor, WA: torch.Tensor, b: torch.Tensor, Z: torch.Tensor, G: torch.Tensor,
                        gb: torch.Tensor, B: torch.Tensor, obj: float):
        """A Newton step on the support of ``WA`` (signs fixed), see :mod:`.newton_cg`.

        The face is the support of ``WA`` plus the intercept. Entries that the step
        would push through zero stop there: first a projected search from the full
        step (one pass per trial for the predictions), then a backtracking search
        from the longest sign-keeping step. Returns the :class:`NewtonCGStep` after
        an Armijo test on the true objective, or ``None`` when no descent step was
        found.
        """
        datafit, penalty, design = self.datafit, self.penalty, self.design
        m = WA.shape[0]
        a, ridge = lam * penalty.alpha, lam * (1 - penalty.alpha)
        face = torch.cat([WA != 0, torch.ones(1, WA.shape[1], dtype=torch.bool, device=WA.device)], 0)
        full = face.all(1, keepdim=True) if datafit.shift_invariant else None

        def centre(V: torch.Tensor) -> torch.Tensor:
            # along "every class alike" a full row moves no prediction: row_shift handles it exactly
            return V if full is None else V - full * V.mean(1, keepdim=True)

        grad = centre(torch.cat([G + a * torch.sign(WA) + ridge * WA, gb.unsqueeze(0)], 0) * face)

        def hvp(D: torch.Tensor):
            Zd = design.mv(D[:m], out_dtype=self.work_dtype)
            Zd += D[m].to(self.work_dtype)
            Q = datafit.hessian_apply(Z, Zd)
            HD = torch.cat([design.rmv(Q) / datafit.n,
                            datafit.comm.sum_(datafit.sum_rows(Q).unsqueeze(0), "1^T Q") / datafit.n], 0)
            HD[:m] += ridge * D[:m]
            return centre(HD * face), Zd

        t0 = time.perf_counter()
        use_blocks = WA.shape[1] >= self.CG_BLOCK_MIN_OUTPUTS
        if use_blocks:
            near = (WA == 0) & ((G + ridge * WA).abs() >= self.CG_BLOCK_NEAR * a)  # entries about to enter
            need = ClassBlockPreconditioner.memory_bytes(face[:m] | near, design.dtype)
            # beyond the share, too large for the device: the Kronecker model instead
            # every rank decides alike: on the least free memory of any rank
            free = float(available_memory(design.device))
            spare = getattr(design, "spare_bytes", None)  # what a memory_limit leaves the blocks
            if spare is not None:
                free = min(free, spare / self.CG_BLOCK_MEMORY_SHARE)
            free = datafit.comm.min_float(free, "comparing free memory")
            use_blocks = need <= self.CG_BLOCK_MEMORY_SHARE * (free + self._blocks_bytes)
        if use_blocks:
            if self._blocks is None or self._blocks_lam != lam:
                self._blocks, self._blocks_lam = ClassBlockPreconditioner(ridge, self.CG_BLOCK_MASS), lam
            self._blocks.update(design, A, face, datafit.diagonal_curvature(Z), datafit.n, near=near)
            self._blocks_bytes = need
            pre = self._blocks
        else:
            self._blocks, self._blocks_bytes = None, 0
            pre = KroneckerPreconditioner(self._gram_eig(), B, self.c, ridge, shift_invariant=datafit.shift_invariant)
        t1 = time.perf_counter()
        D, ZD, used = newton_cg_direction(hvp, grad, face, lambda V: centre(pre(V) * face), max_iter=self.CG_MAX_ITER,
                                          rtol=self.CG_RTOL)
        timing = (t1 - t0, time.perf_counter() - t1)
        if ZD is None:
            return None
        dec = float((grad * D).sum())
        if not dec < 0:
            return None
        # the longest step that keeps every sign: entries moving towards zero stop there
        DW = D[:m]
        towards = (WA * DW) < 0
        t_max = float((-WA[towards] / DW[towards]).min()) if bool(towards.any()) else float("inf")
        if t_max < 1.0:
            # projected search: entries that would change sign stop at zero (one pass per trial)
            t = 1.0
            for _ in range(6):
                Wt = WA + t * DW
                Wt[(Wt * WA) < 0] = 0.0
                if datafit.shift_invariant:
                    Wt -= penalty.row_shift(Wt, lam).unsqueeze(1)
                Zt = Z + design.mv(Wt - WA, out_dtype=self.work_dtype)
                Zt += t * D[m].to(self.work_dtype)
                Ft = datafit.loss(Zt) + penalty.value(Wt, lam)
                if Ft <= obj + 1e-4 * t * dec:
                    return NewtonCGStep(Wt, b + t * D[m], Zt, used, t, *timing)
                t *= 0.5
        t = min(1.0, t_max)
        for _ in range(30):
            Wt = WA + t * DW
            if t == t_max:
                Wt[towards & ((Wt * WA) <= 0)] = 0.0
            if datafit.shift_invariant:
                Wt -= penalty.row_shift(Wt, lam).unsqueeze(1)
            lt, Zt = datafit.loss_along(Z, ZD, t)
            Ft = lt + penalty.value(Wt, lam)
            if Ft <= obj + 1e-4 * t * dec:
                return NewtonCGStep(Wt, b + t * D[m], Zt, used, t, *timing)
            t *= 0.5
        return None

    def predictions(self, W: torch.Tensor, b: torch.Tensor, exact: bool) -> torch.Tensor:
        """``Z = X W + b`` over all features; the design's working set is left as it is."""
        Z = self.design.mv_all(W, exact=exact, out_dtype=self.work_dtype)
        Z += b.to(self.work_dtype)
        return Z

    def certify(self, lam: float, W: torch.Tensor, b: torch.Tensor) -> Certificate:
        """Float64 certificate: fresh ``Z``, full gradient, KKT residual and duality gap."""
        Z = self.predictions(W, b, exact=True)
        loss, G, gb = gradient(self.design, self.datafit, Z, exact=True, full=True)
        rows = self.penalty.violation(W, G, lam)
        kkt = max(float(rows.max()) if rows.numel() else 0.0, float(gb.abs().max()))
        pen = self.penalty.value(W, lam)
        gap = duality_gap(self.datafit, self.penalty, lam, W, b, G, gb, Z, loss, pen)
        return Certificate(objective=loss + pen, loss=loss, kkt=kkt, gap=gap, row_violation=rows, gradient=G, Z=Z)

    # -- one lambda ----------------------------------------------------------------------
    def solve(self, lam: float, W: torch.Tensor, b: torch.Tensor, A: torch.Tensor, *, tol: float, kkt_tol: float,
              max_iter: int = 500, deadline: float | None = None, Z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, LambdaInfo]:
        """Solve at ``lam`` from the warm start ``(W, b)`` (modified in place and returned)."""
        datafit, penalty, design = self.datafit, self.penalty, self.design
        alpha = penalty.alpha
        target = kkt_tol * lam * alpha
        exact_grad = design.dtype == torch.float64
        n_iter = n_inner = n_cert = 0
        if Z is None:
            Z = self.predictions(W, b, exact=True)
        A = torch.unique(A)
        if datafit.shift_invariant:
            W -= penalty.row_shift(W, lam).unsqueeze(1)  # e.g. an extrapolated warm start; same loss
        cert: Certificate | None = None
        converged = False
        tight = 0.8  # in-loop stop at this fraction of the tolerances; tightened after a failed certificate
        force_step = False  # set when the float64 certificate finds a zero model that is not optimal
        while True:
            design.set_columns(A)
            gA, LG = self._gram_A(A)
            m = A.numel()
            WA = W.index_select(0, A)
            stalled = False
            iter_before = n_iter
            k_hist: list[float] = []  # KKT residual before each step
            while n_iter < max_iter:
                if self.on_iteration is not None:
                    self.on_iteration()
                loss, G, gb = gradient(design, datafit, Z, exact=exact_grad)
                viol = penalty.violation(WA, G, lam)
                k = max(float(viol.max()) if m else 0.0, float(gb.abs().max()))
                pen = penalty.value(WA, lam)
                obj = loss + pen
                cheap_gap = alpha < 1 or k <= tight * target  # the lasso gap needs a pass over Z
                gap = duality_gap(datafit, penalty, lam, WA, b, G, gb, Z, loss, pen) if cheap_gap else math.inf
                force = force_step and not bool((WA != 0).any())
                if k <= tight * target and gap <= tight * tol * max(abs(obj), 1e-12) and not force:
                    break
                if deadline is not None and datafit.comm.any_true(time.perf_counter() > deadline, "the deadline"):
                    break
                B = datafit.curvature(Z)  # for the model, or the Newton-CG step's preconditioner
                k_hist.append(k)
                crawling = len(k_hist) > self.CG_WINDOW and k > self.CG_SLOW * k_hist[-1 - self.CG_WINDOW]
                if (self.newton_cg and not datafit.exact_curvature and not force and crawling
                        and k > self.CG_FAR * target
                        and n_iter - iter_before >= self.CG_AFTER):
                    step = self._newton_cg_step(lam, A, WA, b, Z, G, gb, B, obj)
                    if step is not None:
                        WA, b, Z = step.W, step.b, step.Z
                        n_iter += 1
                        n_inner += step.products
                        if self.verbose >= 2:
                            print(f"    it={n_iter} newton-cg m={m} k/t={k / target:.3g} "
                                  f"gap/P={gap / max(abs(obj), 1e-12):.3g} products={step.products} t={step.t:.3g} "
                                  f"preconditioner={step.preconditioner_s:.2f}s cg={step.cg_s:.2f}s")
                        continue
                g_all = torch.cat([G, gb.unsqueeze(0)], 0)
                inner_tol = 0.1 * k if not force else 0.01 * k
                c = 1.0 if datafit.exact_curvature else self.c
                L = c * LG * datafit.curvature_bound(B)
                # the parameter-space products are too small to gain from threads (the
                # row-chunk workers, on only beside a competing process, take the large ones)
                workers = getattr(design, "rows", None)
                with one_cpu_thread(gA.device) if gA.shape[0] <= 1500 else contextlib.nullcontext():
                    D, it = solve_quadratic_model(kron_operator(gA, B, c, workers), g_all, WA, lam, penalty, L, inner_tol,
                                                  self.max_inner if not (force or datafit.exact_curvature) else 10 * self.max_inner)
                n_inner += it
                DW, Db = D[:m], D[m]
                Zd = design.mv(DW, out_dtype=self.work_dtype)
                Zd += Db.to(self.work_dtype)
                if not datafit.exact_curvature:
                    DT = D.T.contiguous()
                    model = float((DT * kron_operator(gA, B, 1.0, workers)(DT)).sum())
                    true = datafit.dir_curvature(Z, Zd)
                    if model > 0 and true > 0 and math.isfinite(true):
                        self.c = min(20.0, max(0.2, true / model))
                # Armijo line search on the true objective
                pen_full = penalty.value(WA + DW, lam)
                dec = float((G * DW).sum() + (gb * Db).sum()) + pen_full - pen
                s = 1.0
                accepted = False
                Zs = None
                if dec < 0:
                    for _ in range(40):
                        ls, Zs = datafit.loss_along(Z, Zd, s)
                        Fs = ls + (pen_full if s == 1.0 else penalty.value(WA + s * DW, lam))
                        if Fs <= obj + 1e-4 * s * dec:
                            accepted = True
                            break
                        s *= 0.5
                n_iter += 1
                if self.verbose >= 2:
                    print(f"    it={n_iter} m={m} k/t={k / target:.3g} gap/P={gap / max(abs(obj), 1e-12):.3g} c={c:.3g}->{self.c:.3g} s={s:.3g} inner={it} dec={dec:.3g}")
                if not accepted:
                    stalled = True
                    break
                WA = WA + s * DW
                b = b + s * Db
                if datafit.shift_invariant:
                    # the penalty-minimising shift of each row; Z moves by a per-sample constant, same loss
                    WA -= penalty.row_shift(WA, lam).unsqueeze(1)
                Z = Zs  # the accepted trial; its log-sum-exp is cached by the datafit
                del Zd, Zs
            W[A] = WA
            cert = self.certify(lam, W, b)
            n_cert += 1
            Z = cert.Z
            all_zero = not bool((W != 0).any())
            # an all-zero model is accepted only if it satisfies the KKT conditions exactly
            # (up to float64 rounding): anything below lambda_max must move off zero.
            force_step = all_zero and cert.kkt > 1e-10 * lam * alpha
            converged = cert.kkt <= target and cert.gap <= tol * max(abs(cert.objective), 1e-12) and not force_step
            out_of_time = deadline is not None and datafit.comm.any_true(time.perf_counter() > deadline, "the deadline")
            if converged or n_iter >= max_iter or out_of_time:
                break
            # grow the working set with every feature that violates the KKT conditions
            mask = torch.zeros(W.shape[0], dtype=torch.bool, device=W.device)
            mask[A] = True
            new = torch.nonzero((cert.row_violation > 1e-12 * lam * alpha) & ~mask).flatten()
            if new.numel():
                A = torch.unique(torch.cat([A, new]))
                continue
            if exact_grad and (stalled or (n_iter == iter_before and tight < 0.8)):
                break  # no progress possible at float64 precision: report as not converged
            exact_grad = True  # float32 gradients are not accurate enough here: polish in float64
            tight = 0.5
        if self.verbose:
            # the gap relative to the objective: what ``tol`` bounds
            print(f"[glm] lam={lam:.4g} iter={n_iter} inner={n_inner} kkt/(lam*alpha)={cert.kkt / (lam * alpha):.2e} "
                  f"gap/obj={cert.gap / max(abs(cert.objective), 1e-12):.2e} nnz={int((W != 0).sum())} converged={converged}")
        return W, b, LambdaInfo(converged, n_iter, n_inner, n_cert, cert)
