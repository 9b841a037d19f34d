"""The regularisation path driver: :func:`elastic_net_path`.

For a decreasing grid ``lam_1 > ... > lam_L`` it solves::

    min_{W, b}  (1/n) sum_i w_i loss(x_i, y_i; W, b) + lam * alpha * |W|_1 + 0.5 * lam * (1 - alpha) * |W|_F^2

(or the group penalty) on standardised features, warm-starting each lambda from the
previous solution, with sequential strong-rule screening whose mistakes are caught
by a KKT check over all features (so screening never changes the answer), and
returns a :class:`~debuggable.glm.result.GLMPath` in the original feature scale.

``lambda_max`` is exact: it is the dual norm of the datafit gradient at the
all-zero model with its optimal intercept, divided by ``alpha`` (glm-saga's
``maximum_reg`` formula, generalised to sample weights and to each datafit).
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from debuggable._threads import ThreadBudget
from debuggable.errors import DebuggableError
from debuggable.glm import _validation as V
from debuggable.glm._design import (
    InMemoryDesign,
    StreamingDesign,
    _Moments,
    block_rows_for,
    moments_in_memory,
    standardize_in_memory,
)
from debuggable.glm.columns import constant_features as find_constant_features
from debuggable.glm.columns import expand_columns, take_columns
from debuggable.glm.datafits import Datafit, make_datafit
from debuggable.glm.penalties import make_penalty
from debuggable.glm.result import GLMPath
from debuggable.glm.solvers.prox_newton import ProxNewtonSolver, gradient

SOLVERS = ("auto", "in_memory", "streaming")
CONSTANT_FEATURES = ("drop", "raise")
_EXTRAPOLATE = True
_EXTRAPOLATE_BYTES = 1 << 30  # keep the previous predictions for the warm start up to this size
# The working set holds the active features and the strong rule's other survivors,
# highest score first, up to _WS_GROWTH times the number of active features in all (at
# least _WS_MIN); the certificate adds any feature the cap left out that violates the
# KKT conditions.
_WS_GROWTH = 1.6
_WS_MIN = 64


def _extrapolate(datafit, penalty, lam, cur, prev):
    """Warm start: extrapolate the last path segment linearly in log(lambda).

    Predictions are linear in the coefficients, so the extrapolated ``Z`` is free.
    Falls back to the last solution when extrapolating does not lower the objective.
    """
    W1, b1, Z1, l1 = cur
    W2, b2, Z2, l2 = prev
    if l2 <= l1 or W2.shape != W1.shape:
        return W1, b1, Z1
    r = math.log(l1 / lam) / math.log(l2 / l1)
    if not 0 < r <= 2:
        return W1, b1, Z1
    We = W1 + r * (W1 - W2)
    be = b1 + r * (b1 - b2)
    Ze = Z1 + r * (Z1 - Z2)
    f1 = datafit.loss(Z1) + penalty.value(W1, lam)
    fe = datafit.loss(Ze) + penalty.value(We, lam)
    return (We, be, Ze) if fe < f1 else (W1, b1, Z1)


class ArrayReader:
    """A block reader over an in-memory array (the protocol the streaming solver reads)."""

    def __init__(self, X: Any, block_rows: int | None = None):
        self.X = X
        self.shape = tuple(int(s) for s in X.shape)
        self.n_rows = self.shape[0]
        self.block_rows = block_rows

    def iter_blocks(self, array: str = "features", block_rows: int | None = None, *, as_torch: bool = False, device=None, **_: Any):
        step = int(self.block_rows or block_rows or block_rows_for(self.shape[1]))
        for s in range(0, self.shape[0], step):
            blk = self.X[s : s + step]
            if as_torch:
                blk = torch.as_tensor(np.ascontiguousarray(blk) if isinstance(blk, np.ndarray) else blk, device=device)
            yield s, blk


def _stream_moments(reader: Any, device: torch.device, block_rows: int) -> tuple[torch.Tensor, torch.Tensor, int, tuple | None]:
    n, d = (int(s) for s in reader.shape)
    acc = _Moments(d, device)
    expect = 0
    for start, blk in reader.iter_blocks("features", block_rows=block_rows, as_torch=True, device=device):
        blk = torch.as_tensor(blk, device=device)
        if blk.ndim != 2 or blk.shape[1] != d:
            raise DebuggableError(f"X: the reader yielded a block of shape {tuple(blk.shape)}; expected (rows, {d}).")
        if int(start) != expect:
            raise DebuggableError(f"X: the reader yielded a block at row {int(start)}; expected consecutive blocks starting at row {expect}.")
        acc.update(blk, row0=int(start))
        expect += blk.shape[0]
    if expect != n:
        raise DebuggableError(f"X: the reader yielded {expect} rows; expected {n} as its shape says.")
    mean, std, bad = acc.result()
    return mean, std, bad, acc.first_bad


def _read_all(reader: Any, device: torch.device) -> torch.Tensor:
    n, d = (int(s) for s in reader.shape)
    parts = [torch.as_tensor(b, device=device) for _, b in reader.iter_blocks("features", block_rows=block_rows_for(d), as_torch=True, device=device)]
    return torch.cat(parts, 0) if parts else torch.zeros(0, d, device=device)


def _val_matrix(X_val: Any, d: int, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if V.is_reader(X_val):
        if int(X_val.shape[1]) != d:
            raise DebuggableError(f"X_val: expected {d} features like X, got {int(X_val.shape[1])}.")
        X_val = _read_all(X_val, device)
    Xv = V.as_matrix("X_val", X_val)
    if Xv.shape[1] != d:
        raise DebuggableError(f"X_val: expected {d} features like X, got {Xv.shape[1]}.")
    V.check_finite_matrix("X_val", Xv)
    return standardize_in_memory(Xv, mean, std, dtype, device)


#: Below this many feature entries (n x D) the path runs on the threads it was given.
_BUDGET_MIN_ENTRIES = 2_000_000


def _budget_pays(X: Any) -> bool:
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2:
        return False
    return int(shape[0]) * int(shape[1]) >= _BUDGET_MIN_ENTRIES


def _work_dtype(n: int, k: int, device: torch.device) -> torch.dtype:
    """float64 for the (n, K) work arrays unless they would take half the device memory."""
    if device.type == "cpu":
        return torch.float64
    free = V.available_memory(device)
    return torch.float64 if 6 * n * k * 8 < 0.5 * free else torch.float32


def _usable_as_is(X: Any, standardize: bool, dtype: torch.dtype, device: torch.device) -> bool:
    """An already standardised tensor in the compute dtype on the device needs no copy."""
    return (not standardize and isinstance(X, torch.Tensor) and X.dtype == dtype and X.device == device
            and X.is_contiguous())


def _setup(X, y, *, family, alpha, n_lambdas, lambda_min_ratio, lambdas, tol, standardize, group, sample_weight,
           X_val, y_val, device, max_time, verbose, kkt_tol, dtype, solver, max_iter, block_rows,
           constant_features="drop") -> SimpleNamespace:
    """Validate everything, build the design and the null model; compute lambda_max."""
    # ---- scalar arguments --------------------------------------------------------------
    family = V.check_choice("family", family, V.FAMILIES)
    alpha = V.check_alpha(alpha)
    n_lambdas = V.check_positive_int("n_lambdas", n_lambdas)
    lambda_min_ratio = V.check_positive_float("lambda_min_ratio", lambda_min_ratio, upper=1.0)
    grid = None if lambdas is None else V.check_lambdas(lambdas)
    tol = V.check_positive_float("tol", tol)
    kkt_tol = V.check_positive_float("kkt_tol", kkt_tol)
    max_time = V.check_positive_float("max_time", max_time, allow_none=True)
    max_iter = V.check_positive_int("max_iter", max_iter)
    solver = V.check_choice("solver", solver, SOLVERS)
    constant_features = V.check_choice("constant_features", constant_features, CONSTANT_FEATURES)
    cdtype = V.check_dtype(dtype)
    for name, val in (("standardize", standardize), ("group", group)):
        if not isinstance(val, (bool, np.bool_)):
            raise DebuggableError(f"{name}: expected True or False, got {val!r}.")
    if not (isinstance(verbose, (bool, np.bool_)) or (isinstance(verbose, int) and verbose in (0, 1, 2))):
        raise DebuggableError(f"verbose: expected True, False, 0, 1 or 2, got {verbose!r}.")
    if block_rows is not None:
        block_rows = V.check_positive_int("block_rows", block_rows)

    # ---- data ----------------------------------------------------------------------------
    reader = X if V.is_reader(X) else None
    if reader is not None:
        try:
            n, d = (int(s) for s in reader.shape)
        except (TypeError, ValueError):
            raise DebuggableError(f"X: expected a reader whose shape is (n_rows, n_features), got {reader.shape!r}.") from None
    else:
        X = V.as_matrix("X", X)
        n, d = X.shape
    if n < 2 or d < 1:
        raise DebuggableError(f"X: expected at least 2 rows and 1 feature, got shape ({n}, {d}).")
    dev = V.resolve_device(device, X)
    yv = V.check_labels("y", y, n, family)
    k = yv.shape[1] if family == "gaussian" else (1 if family == "binomial" else int(yv.max()) + 1)
    sw = V.check_sample_weight(sample_weight, n)
    if (X_val is None) != (y_val is None):
        raise DebuggableError("X_val, y_val: expected both or neither, got only " + ("X_val." if y_val is None else "y_val."))
    if X_val is not None:
        if not V.is_reader(X_val):
            X_val = V.as_matrix("X_val", X_val)
        if len(X_val.shape) != 2 or int(X_val.shape[1]) != d:
            raise DebuggableError(f"X_val: expected {d} features like X, got shape {tuple(int(v) for v in X_val.shape)}.")
        n_val = int(X_val.shape[0])
        yv_val = V.check_labels("y_val", y_val, n_val, family, n_outputs=k if family != "binomial" else None, require_all=False)
    itemsize = 8 if cdtype == torch.float64 else 4

    work_itemsize = 8 if _work_dtype(n, k, dev) == torch.float64 else 4
    copy_x = not _usable_as_is(X, bool(standardize), cdtype, dev)
    if solver == "auto":
        fits = V.in_memory_bytes(n, d, k, itemsize, work_itemsize, copy_x) <= V.available_memory(dev)
        solver_used = "in_memory" if (reader is None or fits) else "streaming"
    else:
        solver_used = solver
    if solver_used == "in_memory":
        V.check_fits_in_memory(n, d, k, itemsize, dev, work_itemsize, copy_x)

    # ---- moments, finiteness, constant features ---------------------------------------------
    brows = block_rows or block_rows_for(d, dev)
    if reader is not None:
        mean, std, bad, first = _stream_moments(reader, dev, brows)
    else:
        if isinstance(X, torch.Tensor) and not X.is_floating_point():
            X = X.to(torch.float64)
        mean, std, bad = moments_in_memory(X, dev)
        first = None
    if bad:
        if reader is None:
            V.check_finite_matrix("X", X)
        where = f" (first at row {first[0]}, column {first[1]})" if first else ""
        raise DebuggableError(f"X: expected finite numbers, got {bad} NaN or infinite values{where}.")
    const = find_constant_features(mean, std)
    keep, full_d = None, d
    full_mean = mean.cpu().numpy() if standardize else np.zeros(d)
    if const.size:
        if constant_features == "raise":
            V.check_constant_features("X", const)
        if const.size == d:
            raise DebuggableError(f"X: expected at least one feature that varies, got {d} constant features.")
        # Fit on the other columns; the result is expanded back with zero weights (glm/columns.py).
        keep = np.setdiff1d(np.arange(d), const)
        index = torch.as_tensor(keep, device=mean.device)
        mean, std = mean.index_select(0, index), std.index_select(0, index)
        if reader is not None:
            reader = take_columns(reader, keep)
        else:
            X = take_columns(X, keep)
        if X_val is not None:
            X_val = take_columns(X_val, keep)
        d = int(keep.size)
    if not standardize:
        mean = torch.zeros(d, dtype=torch.float64, device=dev)
        std = torch.ones(d, dtype=torch.float64, device=dev)

    # ---- design ----------------------------------------------------------------------------
    w_t = None if sw is None else torch.as_tensor(sw, dtype=torch.float64, device=dev)
    if solver_used == "in_memory":
        if reader is None and _usable_as_is(X, bool(standardize), cdtype, dev):
            design = InMemoryDesign(X, w_t)  # read-only use; never modified
        else:
            Xsrc = _read_all(reader, dev) if reader is not None else X
            design = InMemoryDesign(standardize_in_memory(Xsrc, mean, std, cdtype, dev), w_t)
            del Xsrc
    else:
        src = reader if reader is not None else ArrayReader(X, brows)
        design = StreamingDesign(src, mean, std, w_t, cdtype, dev, brows)
    Xv_t = None
    if X_val is not None:
        Xv_t = _val_matrix(X_val, d, mean, std, cdtype, dev)
        tv = torch.as_tensor(yv_val, device=dev)
        if family == "gaussian":
            tv = tv.to(torch.float64)
    datafit: Datafit = make_datafit(family, yv, sw, dev)
    penalty = make_penalty(alpha, bool(group))
    work_dtype = _work_dtype(n, k, dev)

    # ---- lambda_max and the grid -------------------------------------------------------------
    b = datafit.null_intercept().to(torch.float64)
    W = torch.zeros(d, k, dtype=torch.float64, device=dev)
    Z = b.to(work_dtype).unsqueeze(0).expand(n, k).clone()
    _, G0, _ = gradient(design, datafit, Z, exact=True, full=True)
    lam_max = penalty.lambda_max(G0)
    env = dict(locals())
    return SimpleNamespace(**{name: val for name, val in env.items() if not name.startswith("_")})


@torch.no_grad()
def elastic_net_path(
    X: Any,
    y: Any,
    *,
    family: str = "multinomial",
    alpha: float = 0.99,
    n_lambdas: int = 100,
    lambda_min_ratio: float = 1e-3,
    lambdas: Any = None,
    tol: float = 1e-6,
    standardize: bool = True,
    group: bool = False,
    sample_weight: Any = None,
    X_val: Any = None,
    y_val: Any = None,
    device: Any = None,
    max_time: float | None = None,
    verbose: bool = False,
    kkt_tol: float = 5e-3,
    dtype: Any = None,
    solver: str = "auto",
    max_iter: int = 500,
    block_rows: int | None = None,
    constant_features: str = "drop",
    threads: int | str = "auto",
) -> GLMPath:
    """Fit an elastic-net GLM regularisation path.

    Args:
        X: features, ``(n, D)``: a NumPy array, a torch tensor (its device is used
            unless ``device`` is given) or a feature-store reader (any object with
            ``shape`` and ``iter_blocks``; streamed when it does not fit in memory).
        y: targets: integer labels 0..K-1 (``multinomial``; every class must
            occur), 0/1 (``binomial``), or ``(n,)`` / ``(n, K)`` floats (``gaussian``).
        family: ``"multinomial"``, ``"binomial"`` or ``"gaussian"``.
        alpha: the L1 share of the penalty, in (0, 1]; 1 is the lasso.
        n_lambdas, lambda_min_ratio: the default grid, ``n_lambdas`` values
            log-spaced from ``lambda_max`` down to ``lambda_min_ratio * lambda_max``.
        lambdas: an explicit strictly decreasing grid (overrides the two above).
        tol: relative duality gap at which a lambda is converged.
        standardize: standardise features internally (mean 0, unbiased std 1, as
            glm-saga's ``NormalizedRepresentation``); results are in the original scale.
        group: penalise each feature's row across all classes as a group.
        sample_weight: non-negative per-example weights (relative to 1, not renormalised).
        X_val, y_val: a validation set for per-lambda validation loss and accuracy.
        device: where to compute (default: X's device, else CPU).
        max_time: seconds; the path stops after the lambda during which it runs out.
        verbose: print one line per lambda (``2``: one per iteration too).
        kkt_tol: a lambda is converged only if, in addition, the largest subgradient
            violation is at most ``kkt_tol * lam * alpha``.
        dtype: ``"float32"`` (default; products in float32, certificates in float64)
            or ``"float64"``.
        solver: ``"auto"`` (in memory when it fits on the device, else streaming),
            ``"in_memory"`` or ``"streaming"``.
        max_iter: outer iterations per lambda.
        block_rows: rows per block for the streaming solver.
        constant_features: what to do with constant columns (dead units): ``"drop"``
            (default) fits on the other columns and gives them zero weight (listed in
            ``info["constant_features_skipped"]``; see :mod:`debuggable.glm.columns`),
            ``"raise"`` refuses them.
        threads: CPU threads for torch. ``"auto"`` (default) follows the cores other
            processes leave free, up to ``torch.get_num_threads()``, and looks again
            every half second (problems under 2M feature entries keep the current count) (:class:`debuggable._threads.ThreadBudget`): on a busy
            machine a thread that shares its core with another process makes the
            others spin at every barrier. A positive integer fixes the count. Ignored
            off the CPU; the thread count is restored on return.

    Returns:
        a :class:`GLMPath` over all ``D`` features.

    Raises:
        DebuggableError: on bad input (nothing is computed or written then).
    """
    if not (threads == "auto" or (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1)):
        raise DebuggableError(f"threads: expected 'auto' or a positive integer, got {threads!r}.")
    t_start = time.perf_counter()
    on = device if device is not None else getattr(X, "device", "cpu")
    if threads == "auto" and _budget_pays(X):
        budget = ThreadBudget(on)
    else:  # a fixed count, or a problem too small for the first look (50 ms) to pay
        budget = ThreadBudget(on, fixed=torch.get_num_threads() if threads == "auto" else threads)
    with budget:
        return _elastic_net_path(X, y, t_start, budget, family=family, alpha=alpha, n_lambdas=n_lambdas,
                                 lambda_min_ratio=lambda_min_ratio, lambdas=lambdas, tol=tol, standardize=standardize,
                                 group=group, sample_weight=sample_weight, X_val=X_val, y_val=y_val, device=device,
                                 max_time=max_time, verbose=verbose, kkt_tol=kkt_tol, dtype=dtype, solver=solver,
                                 max_iter=max_iter, block_rows=block_rows, constant_features=constant_features)


def _elastic_net_path(X, y, t_start, budget, *, family, alpha, n_lambdas, lambda_min_ratio, lambdas, tol, standardize,
                      group, sample_weight, X_val, y_val, device, max_time, verbose, kkt_tol, dtype, solver, max_iter,
                      block_rows, constant_features) -> GLMPath:
    P = _setup(X, y, family=family, alpha=alpha, n_lambdas=n_lambdas, lambda_min_ratio=lambda_min_ratio, lambdas=lambdas,
               tol=tol, standardize=standardize, group=group, sample_weight=sample_weight, X_val=X_val, y_val=y_val,
               device=device, max_time=max_time, verbose=verbose, kkt_tol=kkt_tol, dtype=dtype, solver=solver,
               max_iter=max_iter, block_rows=block_rows, constant_features=constant_features)
    (family, alpha, grid, tol, kkt_tol, max_time, max_iter, lambda_min_ratio, n_lambdas) = (
        P.family, P.alpha, P.grid, P.tol, P.kkt_tol, P.max_time, P.max_iter, P.lambda_min_ratio, P.n_lambdas)
    design, datafit, penalty, work_dtype, dev = P.design, P.datafit, P.penalty, P.work_dtype, P.dev
    b, W, G0, lam_max, Xv_t, n, d, k, sw, cdtype = P.b, P.W, P.G0, P.lam_max, P.Xv_t, P.n, P.d, P.k, P.sw, P.cdtype
    mean, std, solver_used = P.mean, P.std, P.solver_used
    tv = getattr(P, "tv", None)
    if grid is None:
        if not lam_max > 0:
            raise DebuggableError("y: expected targets that some feature can explain, got lambda_max = 0 (the intercept-only model is optimal for every lambda).")
        grid = lam_max * np.logspace(0.0, math.log10(lambda_min_ratio), n_lambdas)
    L = grid.shape[0]

    gram = design.gram()
    sol = ProxNewtonSolver(design, datafit, penalty, gram, work_dtype=work_dtype, verbose=int(verbose),
                           on_iteration=budget.update)

    # ---- the path ---------------------------------------------------------------------------
    out = {key: [] for key in ("coef_std", "b", "objective", "gap", "kkt", "converged", "n_iter", "nnz", "n_features", "time",
                               "train_loss", "train_accuracy", "val_loss", "val_accuracy")}
    deadline = None if max_time is None else t_start + max_time
    lam_prev = max(lam_max, float(grid[0]))
    score_prev = penalty.row_score(G0)
    Zcur = None
    prev_point = None
    stopped = None
    for i, lam in enumerate(grid):
        lam = float(lam)
        t0 = time.perf_counter()
        strong = torch.nonzero(score_prev >= alpha * (2 * lam - lam_prev)).flatten()
        active = torch.nonzero(W.abs().sum(1) > 0).flatten()
        A = torch.unique(torch.cat([strong, active]))
        cap = max(_WS_MIN, int(_WS_GROWTH * active.numel()))
        if A.numel() > cap:
            cand = strong[~torch.isin(strong, active)]
            keep = cand[torch.argsort(score_prev[cand], descending=True)[: max(cap - active.numel(), 0)]]
            A = torch.unique(torch.cat([active, keep]))
        W_prev, b_prev, Z_prev = W.clone(), b.clone(), Zcur
        if prev_point is not None and Zcur is not None and _EXTRAPOLATE:
            W, b, Zcur = _extrapolate(datafit, penalty, lam, (W, b, Zcur, lam_prev), prev_point)
        W, b, info = sol.solve(lam, W, b, A, tol=tol, kkt_tol=kkt_tol, max_iter=max_iter, deadline=deadline, Z=Zcur)
        cert = info.cert
        Zcur = cert.Z
        keep_z = Z_prev is not None and Z_prev.numel() * Z_prev.element_size() <= _EXTRAPOLATE_BYTES
        prev_point = (W_prev, b_prev, Z_prev, lam_prev) if keep_z else None
        score_prev = penalty.row_score(cert.gradient)
        lam_prev = lam
        el = time.perf_counter() - t0
        out["coef_std"].append(W.clone())
        out["b"].append(b.clone())
        out["objective"].append(cert.objective)
        out["gap"].append(cert.gap / max(abs(cert.objective), 1e-300))
        out["kkt"].append(cert.kkt / (lam * alpha))
        out["converged"].append(info.converged)
        out["n_iter"].append(info.n_iter)
        out["nnz"].append(int((W != 0).sum()))
        out["n_features"].append(int((W.abs().sum(1) > 0).sum()))
        out["time"].append(el)
        out["train_loss"].append(cert.loss)
        out["train_accuracy"].append(datafit.accuracy(Zcur, datafit.t))
        if Xv_t is not None:
            Zv = (Xv_t.to(torch.float64) @ W if Xv_t.dtype == torch.float64 else (Xv_t @ W.to(Xv_t.dtype)).to(torch.float64)) + b
            out["val_loss"].append(datafit.mean_loss(Zv, tv))
            out["val_accuracy"].append(datafit.accuracy(Zv, tv))
        else:
            out["val_loss"].append(float("nan"))
            out["val_accuracy"].append(float("nan"))
        if deadline is not None and time.perf_counter() > deadline and i < L - 1:
            stopped = f"max_time reached after {i + 1} of {L} lambdas"
            break

    # ---- back to the original feature scale ------------------------------------------------
    Ws = torch.stack(out["coef_std"])  # (L, D, K)
    bs = torch.stack(out["b"])  # (L, K)
    coef = Ws / std.view(1, -1, 1)
    intercept = bs - (coef * mean.view(1, -1, 1)).sum(1)
    Lc = Ws.shape[0]
    to_np = lambda v, dt=np.float64: np.asarray(v, dtype=dt)  # noqa: E731
    info_dict = {
        "family": family,
        "alpha": alpha,
        "group": bool(group),
        "standardize": bool(standardize),
        "lambda_max": lam_max,
        "lambda_min_ratio": lambda_min_ratio if lambdas is None else float(grid[-1] / lam_max) if lam_max > 0 else None,
        "n_lambdas": L,
        "tol": tol,
        "kkt_tol": kkt_tol,
        "solver": "prox_newton_" + solver_used,
        "device": str(dev),
        "dtype": str(cdtype).replace("torch.", ""),
        "n_samples": n,
        "n_features": d,
        "n_outputs": k,
        "sample_weight": sw is not None,
        "total_time": time.perf_counter() - t_start,
        "stopped": stopped,
        # the CPU thread counts the path ran with, in order (ThreadBudget)
        "threads": list(budget.history),
        "objective_scale": "standardised" if standardize else "original",
    }
    info_dict["constant_features_skipped"] = []
    result = GLMPath(
        lambdas=np.asarray(grid[:Lc], dtype=np.float64),
        coef=coef.permute(0, 2, 1).cpu().numpy().astype(np.float64),
        intercept=intercept.cpu().numpy().astype(np.float64),
        objective=to_np(out["objective"]),
        gap=to_np(out["gap"]),
        kkt=to_np(out["kkt"]),
        converged=to_np(out["converged"], bool),
        n_iter=to_np(out["n_iter"], np.int64),
        nnz=to_np(out["nnz"], np.int64),
        n_features=to_np(out["n_features"], np.int64),
        time=to_np(out["time"]),
        train_loss=to_np(out["train_loss"]),
        train_accuracy=to_np(out["train_accuracy"]),
        val_loss=to_np(out["val_loss"]),
        val_accuracy=to_np(out["val_accuracy"]),
        feature_mean=mean.cpu().numpy(),
        feature_std=std.cpu().numpy(),
        info=info_dict,
    )
    if P.keep is not None:
        expand_columns(result, P.keep, P.full_d, P.full_mean)
    return result


@torch.no_grad()
def lambda_max(X: Any, y: Any, *, family: str = "multinomial", alpha: float = 0.99, group: bool = False,
               standardize: bool = True, sample_weight: Any = None, device: Any = None) -> float:
    """The smallest lambda whose solution is all-zero (for the standardised problem when
    ``standardize``): ``max_j ||X_j^T R_0||_* / alpha`` with ``R_0`` the residual of the
    intercept-only model and ``||.||_*`` the max-norm (or the 2-norm across classes for
    ``group``)."""
    P = _setup(X, y, family=family, alpha=alpha, n_lambdas=1, lambda_min_ratio=0.5, lambdas=None, tol=1e-6,
               standardize=standardize, group=group, sample_weight=sample_weight, X_val=None, y_val=None, device=device,
               max_time=None, verbose=False, kkt_tol=1e-3, dtype="float64", solver="auto", max_iter=1, block_rows=None)
    return float(P.lam_max)
