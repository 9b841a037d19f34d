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
    fix_malloc_threshold,
    moments_in_memory,
    standardize_in_memory,
)
from debuggable.glm.columns import constant_features as find_constant_features
from debuggable.glm.columns import expand_columns, take_columns
from debuggable.glm.datafits import Datafit, make_datafit
from debuggable.glm.checkpoint import PathCheckpoint, problem_fingerprint
from debuggable.glm.distributed import Communicator
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


def _stream_moments(reader: Any, device: torch.device, block_rows: int,
                    comm: Communicator | None = None) -> tuple[torch.Tensor, torch.Tensor, int, tuple | None]:
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
    if comm is not None:
        acc.reduce(comm)
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


def _check_classes_global(comm: Communicator, family: str, yv: np.ndarray, k: int) -> int:
    """The number of outputs over all ranks, with every class present somewhere
    (``check_labels``'s ``require_all`` over the union of the ranks' labels)."""
    if family == "gaussian":
        lo, hi = comm.min_int(k, "comparing the targets"), -comm.min_int(-k, "comparing the targets")
        if lo != hi:
            raise DebuggableError(f"y: expected the same number of target columns on every rank, got {lo} to {hi}.")
        return k
    k = 2 if family == "binomial" else -comm.min_int(-k, "counting the classes")
    counts = torch.as_tensor(np.bincount(yv, minlength=k).astype(np.int64))
    counts = comm.sum_(counts, "counting the classes").numpy()
    present = int((counts > 0).sum())
    if present < 2:
        raise DebuggableError(f"y: expected at least two classes over all ranks, got only class {int(np.argmax(counts))}.")
    if family == "multinomial" and present < k:
        missing = np.nonzero(counts == 0)[0]
        raise DebuggableError(f"y: expected every class 0..{k - 1} to occur on some rank, got no example of class "
                              f"{int(missing[0])} (relabel the classes to 0..{present - 1}).")
    return k if family == "multinomial" else 1


#: ``(n, K)`` work arrays the streaming solver holds at once: predictions, the step's
#: predictions, the line search's trial, residual, probabilities, the certificate's
#: predictions, the previous lambda's for the warm start, and in a Newton-CG step the
#: direction's predictions, the Hessian product's and two temporaries.
_STREAM_WORK_ARRAYS = 12


def streaming_memory(n: int, d: int, k: int, itemsize: int, work_itemsize: int, block_rows: int,
                     source_itemsize: int = 4, device: torch.device | None = None, n_val: int = 0,
                     n_lambdas: int = 100, chunk_bytes: int = 0) -> dict[str, int]:
    """Bytes of the streaming solver's own working memory (not the Python and torch runtime).

    Args:
        n, d, k: this rank's rows, the features and the outputs.
        itemsize, work_itemsize: bytes per number of the compute and the work dtype.
        block_rows: rows per streamed block.
        source_itemsize: bytes per stored feature value.
        device: the compute device (a CUDA block also has a pinned staging copy).
        n_val: validation rows.
        n_lambdas: the path's length (its coefficients are kept).
        chunk_bytes: a feature-store chunk, read once whole to check its checksum.

    Returns:
        ``{"work", "gram", "coef", "blocks", "val", "per_row", "total"}``:

        * ``work``: ``_STREAM_WORK_ARRAYS`` ``(n, K)`` arrays of the work dtype;
        * ``gram``: the ``(D+1)^2`` float64 Gram matrix, the working set's copies and
          its eigendecomposition (four such matrices);
        * ``coef``: the path's ``(D, K)`` float64 coefficients, one per lambda, and six
          working copies (gradients, the certificate's, the warm start's);
        * ``blocks``: per row of a block (``per_row`` bytes), with two blocks in flight
          (the one in use and the one the background thread reads and standardises):
          the raw block in its dtype twice (three times on CUDA, with the pinned
          staging copy), the float64 standardisation's temporary, three blocks
          in the compute dtype (the two standardised blocks and the working-set
          columns of the current one) and the float64 promotion for certificate
          products; plus one stored chunk (read whole once to check its checksum);
        * ``val``: the standardised validation rows and their predictions.
    """
    copies = 3 if (device is not None and device.type == "cuda") else 2
    per_row = d * (copies * source_itemsize + 8 + 3 * itemsize + 8)
    parts = {
        "work": _STREAM_WORK_ARRAYS * n * k * work_itemsize,
        "gram": 4 * (d + 1) ** 2 * 8,
        "coef": (n_lambdas + 6) * d * k * 8,
        "blocks": block_rows * per_row + int(chunk_bytes),
        "val": n_val * (d * itemsize + 2 * k * 8),
    }
    parts["total"] = sum(parts.values())
    parts["per_row"] = per_row
    parts["block_rows"] = int(block_rows)
    return parts


def _block_rows_for_limit(memory_limit: int, n: int, d: int, k: int, itemsize: int, work_itemsize: int,
                          device: torch.device, n_val: int, cap: int, source_itemsize: int, n_lambdas: int,
                          chunk_bytes: int) -> int:
    """The largest row block (at most ``cap``) whose streaming solve stays within ``memory_limit``."""
    fixed = streaming_memory(n, d, k, itemsize, work_itemsize, 0, source_itemsize, device, n_val, n_lambdas,
                             chunk_bytes)
    rows = (memory_limit - fixed["total"]) // fixed["per_row"]
    if rows < _MIN_BLOCK_ROWS:
        need = fixed["total"] + _MIN_BLOCK_ROWS * fixed["per_row"]
        raise DebuggableError(
            f"memory_limit: expected at least {need} bytes ({need / 2**20:.1f} MiB) for a streaming solve of {n} rows x "
            f"{d} features x {k} outputs (the (n, K) work arrays, Gram matrices and coefficients alone take "
            f"{fixed['total'] / 2**20:.1f} MiB), got {memory_limit}."
        )
    return int(min(rows, cap))


#: The smallest row block a memory limit may leave (fewer rows make every pass slow).
_MIN_BLOCK_ROWS = 64


def _setup(X, y, *, family, alpha, n_lambdas, lambda_min_ratio, lambdas, tol, standardize, group, sample_weight,
           X_val, y_val, device, max_time, verbose, kkt_tol, dtype, solver, max_iter, block_rows,
           constant_features="drop", process_group=None, memory_limit=None) -> SimpleNamespace:
    """Validate everything, build the design and the null model; compute lambda_max.

    Under a process group ``X``, ``y``, ``sample_weight`` and the validation set are
    this rank's rows; the checks that depend on one rank's data are agreed on (every
    rank fails when one does), the rest uses all-reduced values."""
    comm = Communicator(process_group)
    err: DebuggableError | None = None
    try:
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
        if memory_limit is not None:
            memory_limit = V.check_positive_int("memory_limit", memory_limit)

        # ---- data (this rank's rows) -----------------------------------------------------------
        reader = X if V.is_reader(X) else None
        if reader is not None:
            try:
                n, d = (int(s) for s in reader.shape)
            except (TypeError, ValueError):
                raise DebuggableError(f"X: expected a reader whose shape is (n_rows, n_features), got {reader.shape!r}.") from None
        else:
            X = V.as_matrix("X", X)
            n, d = X.shape
        if comm.active:
            if n < 1 or d < 1:
                raise DebuggableError(f"X: expected at least 1 row and 1 feature on rank {comm.rank}, got shape ({n}, {d}).")
        elif n < 2 or d < 1:
            raise DebuggableError(f"X: expected at least 2 rows and 1 feature, got shape ({n}, {d}).")
        dev = V.resolve_device(device, X)
        # one rank may miss a class: the union over the ranks is checked below
        yv = V.check_labels("y", y, n, family, require_all=not comm.active)
        k = yv.shape[1] if family == "gaussian" else (1 if family == "binomial" else int(yv.max()) + 1)
        sw = V.check_sample_weight(sample_weight, n) if not comm.active else _local_weights(sample_weight, n)
        if (X_val is None) != (y_val is None):
            raise DebuggableError("X_val, y_val: expected both or neither, got only " + ("X_val." if y_val is None else "y_val."))
        if X_val is not None:
            if not V.is_reader(X_val):
                X_val = V.as_matrix("X_val", X_val)
            if len(X_val.shape) != 2 or int(X_val.shape[1]) != d:
                raise DebuggableError(f"X_val: expected {d} features like X, got shape {tuple(int(v) for v in X_val.shape)}.")
            n_val = int(X_val.shape[0])
        else:
            n_val = 0
    except DebuggableError as exc:
        err = exc
    comm.raise_if_any(err)

    # ---- what every rank must agree on --------------------------------------------------------
    n_total = n
    if comm.active:
        lo, hi = comm.min_int(d, "comparing the feature counts"), -comm.min_int(-d, "comparing the feature counts")
        if lo != hi:
            raise DebuggableError(f"X: expected the same number of features on every rank, got {lo} to {hi}.")
        if _mixed(comm, X_val is None, "comparing the validation sets"):
            raise DebuggableError("X_val, y_val: expected a validation set on every rank or on none.")
        n_total = comm.sum_int(n, "counting the rows")
        k = _check_classes_global(comm, family, yv, k)
        if _mixed(comm, sw is None, "comparing the sample weights"):
            raise DebuggableError("sample_weight: expected sample weights on every rank or on none.")
        if sw is not None and not comm.sum_float(float(sw.sum()), "summing the sample weights") > 0:
            raise DebuggableError("sample_weight: expected at least one positive weight over all ranks, got all zeros.")
    err = None
    try:
        if X_val is not None:
            yv_val = V.check_labels("y_val", y_val, n_val, family, n_outputs=k if family != "binomial" else None,
                                    require_all=False)
        itemsize = 8 if cdtype == torch.float64 else 4
        work_itemsize = 8 if comm.all_true(_work_dtype(n, k, dev) == torch.float64, "choosing the work dtype") else 4
        work_dtype = torch.float64 if work_itemsize == 8 else torch.float32
        copy_x = not _usable_as_is(X, bool(standardize), cdtype, dev)
        need = V.in_memory_bytes(n, d, k, itemsize, work_itemsize, copy_x)
        room = V.available_memory(dev) if memory_limit is None else min(memory_limit, V.available_memory(dev))
        if solver == "auto":
            fits = comm.all_true(need <= room, "choosing the solver")
            solver_used = "in_memory" if (reader is None or fits) else "streaming"
            if memory_limit is not None and not fits:
                solver_used = "streaming"
        else:
            solver_used = solver
        if solver_used == "in_memory":
            if memory_limit is not None and need > memory_limit:
                raise DebuggableError(
                    f"memory_limit: the in-memory solver needs about {need} bytes for this problem, more than the "
                    f"{memory_limit} allowed; expected solver='streaming' or 'auto' (which streams it).")
            V.check_fits_in_memory(n, d, k, itemsize, dev, work_itemsize, copy_x)
        brows = block_rows or block_rows_for(d, dev)
        if memory_limit is not None and solver_used == "streaming":
            src_item = _source_itemsize(reader if reader is not None else X)
            n_lam = n_lambdas if grid is None else grid.shape[0]
            chunk = min(_chunk_bytes(reader, d, src_item), n * d * src_item)
            brows = _block_rows_for_limit(memory_limit, n, d, k, itemsize, work_itemsize, dev, n_val, brows, src_item,
                                          n_lam, chunk)
            stream_mem = streaming_memory(n, d, k, itemsize, work_itemsize, brows, src_item, dev, n_val, n_lam, chunk)
            if dev.type == "cpu":
                fix_malloc_threshold()  # freed blocks go back to the system, so the limit holds
        else:
            stream_mem = None
    except DebuggableError as exc:
        err = exc
    comm.raise_if_any(err)

    # ---- moments, finiteness, constant features (over every rank's rows) -----------------------
    if reader is not None:
        mean, std, bad, first = _stream_moments(reader, dev, brows, comm)
    else:
        if isinstance(X, torch.Tensor) and not X.is_floating_point():
            X = X.to(torch.float64)
        mean, std, bad = moments_in_memory(X, dev, comm)
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
            design = InMemoryDesign(X, w_t, comm)  # read-only use; never modified
        else:
            Xsrc = _read_all(reader, dev) if reader is not None else X
            design = InMemoryDesign(standardize_in_memory(Xsrc, mean, std, cdtype, dev), w_t, comm)
            del Xsrc
    else:
        src = reader if reader is not None else ArrayReader(X, brows)
        design = StreamingDesign(src, mean, std, w_t, cdtype, dev, brows, comm)
        if stream_mem is not None:
            # what the Newton-CG blocks may take (prox_newton): the limit less the rest
            design.spare_bytes = max(0, memory_limit - stream_mem["total"])
    design.memory = stream_mem
    Xv_t = None
    if X_val is not None:
        err = None
        try:
            Xv_t = _val_matrix(X_val, d, mean, std, cdtype, dev)
        except DebuggableError as exc:
            err = exc
        comm.raise_if_any(err)
        tv = torch.as_tensor(yv_val, device=dev)
        if family == "gaussian":
            tv = tv.to(torch.float64)
    datafit: Datafit = make_datafit(family, yv, sw, dev, comm, n_outputs=k if family == "multinomial" else None)
    penalty = make_penalty(alpha, bool(group))

    # ---- lambda_max and the grid -------------------------------------------------------------
    b = datafit.null_intercept().to(torch.float64)
    W = torch.zeros(d, k, dtype=torch.float64, device=dev)
    Z = b.to(work_dtype).unsqueeze(0).expand(n, k).clone()
    _, G0, _ = gradient(design, datafit, Z, exact=True, full=True)
    lam_max = penalty.lambda_max(G0)
    env = dict(locals())
    return SimpleNamespace(**{name: val for name, val in env.items() if not name.startswith("_")})


def _mixed(comm: Communicator, flag: bool, what: str) -> bool:
    """Whether ``flag`` holds on some ranks but not on all (the same answer on every rank)."""
    return comm.any_true(flag, what) and not comm.all_true(flag, what)


def _local_weights(sample_weight: Any, n: int) -> np.ndarray | None:
    """This rank's sample weights: as :func:`check_sample_weight`, except that a rank's
    weights may all be zero (the sum over the ranks is checked)."""
    if sample_weight is None:
        return None
    try:
        return V.check_sample_weight(sample_weight, n)
    except DebuggableError as exc:
        if "all zeros" not in str(exc):
            raise
        return np.zeros(n)


def _chunk_bytes(reader: Any, d: int, itemsize: int) -> int:
    """Bytes of one stored chunk of a feature-store reader (0 for other sources)."""
    base = reader
    while base is not None and not hasattr(base, "chunk_rows"):
        base = getattr(base, "reader", None)
    rows = getattr(base, "chunk_rows", None) if base is not None else None
    return int(rows) * d * itemsize if isinstance(rows, (int, np.integer)) else 0


def _source_itemsize(X: Any) -> int:
    """Bytes per stored number of the features a reader or array yields (8 if unknown: a
    memory limit must hold for float64 blocks too)."""
    try:
        dt = getattr(X, "dtype", None)
        if callable(dt):
            dt = dt("features")
        if isinstance(dt, torch.dtype):
            return dt.itemsize
        if dt is not None:
            return int(np.dtype(dt).itemsize)
    except Exception:  # noqa: BLE001 - a reader need not say
        pass
    return 8


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
    process_group: Any = None,
    memory_limit: int | None = None,
    checkpoint: Any = None,
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
            every half second (:class:`debuggable._threads.ThreadBudget`; problems under 2M
            feature entries keep the current count): on a busy
            machine a thread that shares its core with another process makes the
            others spin at every barrier. While it holds torch at one thread below
            that maximum, the in-memory design's products run on row-chunk worker
            threads pinned to the cores instead (:class:`debuggable._threads.RowChunks`),
            which use the part of a core the other process leaves
            (``info["row_workers"]``). A positive integer fixes the count. Ignored
            off the CPU; the thread count is restored on return.
        process_group: a ``torch.distributed`` process group (gloo on CPU, NCCL on
            GPU) to solve over: ``X``, ``y``, ``sample_weight`` and ``X_val``/``y_val``
            are then *this rank's* rows, every sum over rows is all-reduced and every
            rank returns the same path (see :mod:`debuggable.glm.distributed`); a
            collective that fails (a dead rank, the group's timeout) raises
            :class:`~debuggable.glm.distributed.DistributedError`.
        memory_limit: bytes the streaming solver's own working memory may take (the
            ``(n, K)`` work arrays, Gram matrices, row blocks and the background
            reader's prefetched block, see :func:`streaming_memory`; not the Python
            and torch runtime). ``solver="auto"`` streams when the in-memory solver
            would need more; the row block is then the largest that fits. Per rank
            under a process group.
        checkpoint: a directory where each solved lambda is saved (rank 0); a rerun
            with the same problem resumes after the last saved lambda
            (:mod:`debuggable.glm.checkpoint`).

    Returns:
        a :class:`GLMPath` over all ``D`` features. Its ``info["work"]`` holds, per
        lambda, what the solver did on this rank's rows: the products' multiply-add
        FLOPs by dtype (``flops_float32``, ``flops_float64``), the bytes of ``X`` they
        read (``x_bytes``), the number of products (each a pass over the rows), the
        working-set size, inner steps and certificates (``None`` for lambdas resumed
        from a checkpoint; ``info["work_setup"]`` is the work before the first lambda).
        ``benchmarks/glm_cost_model.py`` fits its time model on these counts.

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
                                 max_iter=max_iter, block_rows=block_rows, constant_features=constant_features,
                                 process_group=process_group, memory_limit=memory_limit, checkpoint=checkpoint)


def _elastic_net_path(X, y, t_start, budget, *, family, alpha, n_lambdas, lambda_min_ratio, lambdas, tol, standardize,
                      group, sample_weight, X_val, y_val, device, max_time, verbose, kkt_tol, dtype, solver, max_iter,
                      block_rows, constant_features, process_group, memory_limit, checkpoint) -> GLMPath:
    P = _setup(X, y, family=family, alpha=alpha, n_lambdas=n_lambdas, lambda_min_ratio=lambda_min_ratio, lambdas=lambdas,
               tol=tol, standardize=standardize, group=group, sample_weight=sample_weight, X_val=X_val, y_val=y_val,
               device=device, max_time=max_time, verbose=verbose, kkt_tol=kkt_tol, dtype=dtype, solver=solver,
               max_iter=max_iter, block_rows=block_rows, constant_features=constant_features,
               process_group=process_group, memory_limit=memory_limit)
    (family, alpha, grid, tol, kkt_tol, max_time, max_iter, lambda_min_ratio, n_lambdas) = (
        P.family, P.alpha, P.grid, P.tol, P.kkt_tol, P.max_time, P.max_iter, P.lambda_min_ratio, P.n_lambdas)
    design, datafit, penalty, work_dtype, dev = P.design, P.datafit, P.penalty, P.work_dtype, P.dev
    b, W, G0, lam_max, Xv_t, n, d, k, sw, cdtype = P.b, P.W, P.G0, P.lam_max, P.Xv_t, P.n, P.d, P.k, P.sw, P.cdtype
    mean, std, solver_used, comm, n_total = P.mean, P.std, P.solver_used, P.comm, P.n_total
    tv = getattr(P, "tv", None)
    if grid is None:
        if not lam_max > 0:
            raise DebuggableError("y: expected targets that some feature can explain, got lambda_max = 0 (the intercept-only model is optimal for every lambda).")
        grid = lam_max * np.logspace(0.0, math.log10(lambda_min_ratio), n_lambdas)
    L = grid.shape[0]

    if not design.streaming:
        design.rows = budget.rows  # the workers the budget turns on beside a competing process
    datafit.rows = budget.rows  # and the datafit's passes over (n, K), in memory either way
    gram = design.gram()
    sol = ProxNewtonSolver(design, datafit, penalty, gram, work_dtype=work_dtype, verbose=int(verbose) if comm.is_root else 0,
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
    start = 0
    ckpt = None
    if checkpoint is not None:
        ckpt = PathCheckpoint(checkpoint, comm, problem_fingerprint(
            family=family, alpha=alpha, group=bool(group), standardize=bool(standardize), tol=tol, kkt_tol=kkt_tol,
            dtype=str(cdtype), max_iter=max_iter, n_samples=n_total, n_features=P.full_d, n_outputs=k,
            kept=None if P.keep is None else [int(j) for j in P.keep], mean=mean, std=std,
            weight_sum=None if sw is None else float(f"{datafit.wsum:.9e}")))
        grid, saved, note = ckpt.resume(grid)
        if saved:
            W, b, Zcur, score_prev, lam_prev, prev_point = _restore(saved, grid, sol, out, dev)
            start = len(saved)
        if verbose and comm.is_root:
            print(f"[glm] checkpoint {ckpt.dir}: {note}" + (f", resuming at lambda {start + 1} of {L}" if saved else ""))
    setup_work = design.work.snapshot()  # before the first lambda: the Gram matrix, lambda_max's gradient
    work: list[dict[str, int] | None] = [None] * start  # per lambda: the products' counted work (WorkCount)
    for i in range(start, L):
        lam = float(grid[i])
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
        before = design.work.snapshot()
        W, b, info = sol.solve(lam, W, b, A, tol=tol, kkt_tol=kkt_tol, max_iter=max_iter, deadline=deadline, Z=Zcur)
        work.append({key: v - before[key] for key, v in design.work.snapshot().items()}
                    | {"working_set": int(A.numel()), "inner": int(info.n_inner), "certificates": int(info.n_certificates)})
        cert = info.cert
        Zcur = cert.Z
        keep_z = comm.all_true(Z_prev is not None and Z_prev.numel() * Z_prev.element_size() <= _EXTRAPOLATE_BYTES,
                               "keeping the warm start")
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
        comm.check_same(torch.cat([W.reshape(-1), b.reshape(-1)]), "coefficients")
        if ckpt is not None:
            ckpt.save(i, {"W": W, "b": b, "c": float(sol.c), **{key: out[key][-1] for key in _SCALARS}})
        if deadline is not None and comm.any_true(time.perf_counter() > deadline, "the deadline") and i < L - 1:
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
        "n_samples": n_total,
        "n_features": d,
        "n_outputs": k,
        "sample_weight": sw is not None,
        "total_time": time.perf_counter() - t_start,
        "stopped": stopped,
        # the CPU thread counts the path ran with, in order (ThreadBudget)
        "threads": list(budget.history),
        # the row-chunk worker counts the budget set, in order (1: off), and how many
        # products ran on them
        "row_workers": list(budget.row_history),
        "row_chunked_products": budget.rows.calls,
        "objective_scale": "standardised" if standardize else "original",
        "world_size": comm.world_size,
        "resumed_lambdas": start,
        "memory": P.stream_mem,
        "passes": getattr(design, "passes", None),  # streaming: passes over the rows (each rank's)
        # per lambda, this rank's products with X: FLOPs by dtype, bytes of X read, count
        "work": work,
        "work_setup": setup_work,
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


#: The per-lambda figures a checkpoint keeps besides the coefficients.
_SCALARS = ("objective", "gap", "kkt", "converged", "n_iter", "nnz", "n_features", "time", "train_loss",
            "train_accuracy", "val_loss", "val_accuracy")


def _restore(saved: list[dict[str, Any]], grid: np.ndarray, sol: ProxNewtonSolver, out: dict[str, list],
             dev: torch.device):
    """The loop state after the saved lambdas: the last solution ``(W, b)``, its
    predictions, the strong rule's scores, the last lambda and the warm start's previous
    point, exactly as the loop leaves them (predictions and gradient recomputed in
    float64 as the certificate computes them); fills ``out`` with the saved figures."""
    for rec in saved:
        out["coef_std"].append(rec["W"].to(dev, torch.float64))
        out["b"].append(rec["b"].to(dev, torch.float64))
        for key in _SCALARS:
            out[key].append(rec[key])
    m = len(saved)
    W, b = out["coef_std"][-1].clone(), out["b"][-1].clone()
    sol.c = float(saved[-1]["c"])
    Z = sol.predictions(W, b, exact=True)
    _, G, _ = gradient(sol.design, sol.datafit, Z, exact=True, full=True)
    score = sol.penalty.row_score(G)
    prev_point = None
    if m >= 2:
        Wp, bp = out["coef_std"][-2].clone(), out["b"][-2].clone()
        Zp = sol.predictions(Wp, bp, exact=True)
        keep = sol.datafit.comm.all_true(Zp.numel() * Zp.element_size() <= _EXTRAPOLATE_BYTES, "keeping the warm start")
        prev_point = (Wp, bp, Zp, float(grid[m - 2])) if keep else None
    return W, b, Z, score, float(grid[m - 1]), prev_point


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
