"""Input checks for :mod:`debuggable.glm`.

Every check raises :class:`~debuggable.errors.DebuggableError` with one sentence that
names the argument, the offending value and what was expected. Nothing in
:mod:`debuggable.glm` writes anything before these checks pass.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from debuggable.errors import DebuggableError

FAMILIES = ("multinomial", "binomial", "gaussian")


@runtime_checkable
class BlockReader(Protocol):
    """What the streaming solver needs from a feature-store reader.

    Any object with a ``shape`` of ``(n_rows, n_features)`` and an ``iter_blocks``
    method that yields ``(row_start, block)`` pairs in row order, e.g.
    ``debuggable.features.SplitReader``.
    """

    @property
    def shape(self) -> tuple[int, int]: ...

    def iter_blocks(self, array: str = "features", block_rows: int | None = None, **kwargs: Any) -> Any: ...


def is_reader(X: Any) -> bool:
    """True for a block reader (duck-typed: ``iter_blocks`` and ``shape``)."""
    return hasattr(X, "iter_blocks") and hasattr(X, "shape") and not isinstance(X, (np.ndarray, torch.Tensor))


def _describe(x: Any) -> str:
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return f"an array of shape {tuple(x.shape)}"
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise DebuggableError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {_describe(value)}.")
    return value


def check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0.0 < float(alpha) <= 1.0):
        raise DebuggableError(f"alpha: expected a number in (0, 1] (1 is the lasso), got {_describe(alpha)}.")
    return float(alpha)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise DebuggableError(f"{name}: expected an integer >= {minimum}, got {_describe(value)}.")
    return int(value)


def check_positive_float(name: str, value: Any, *, allow_none: bool = False, upper: float | None = None) -> float | None:
    if value is None and allow_none:
        return None
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value) > 0
    if ok and upper is not None:
        ok = float(value) < upper
    if not ok:
        rng = f"in (0, {upper})" if upper is not None else "> 0"
        raise DebuggableError(f"{name}: expected a finite number {rng}, got {_describe(value)}.")
    return float(value)


def check_lambdas(lambdas: Any) -> np.ndarray:
    try:
        lam = np.asarray(lambdas.detach().cpu() if isinstance(lambdas, torch.Tensor) else lambdas, dtype=np.float64)
    except (TypeError, ValueError):
        raise DebuggableError(f"lambdas: expected a 1-D sequence of positive numbers, got {_describe(lambdas)}.") from None
    if lam.ndim != 1 or lam.size == 0:
        raise DebuggableError(f"lambdas: expected a non-empty 1-D sequence, got shape {lam.shape}.")
    if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        bad = lam[~(np.isfinite(lam) & (lam > 0))][0]
        raise DebuggableError(f"lambdas: expected finite positive values, got {float(bad):g} among them.")
    if lam.size > 1 and np.any(np.diff(lam) >= 0):
        i = int(np.nonzero(np.diff(lam) >= 0)[0][0])
        raise DebuggableError(
            f"lambdas: expected a strictly decreasing grid, got {lam[i]:.6g} followed by {lam[i + 1]:.6g} at position {i}."
        )
    return lam


def resolve_device(device: Any, X: Any) -> torch.device:
    """The device to compute on: ``device`` if given, else the tensor's device, else CPU."""
    if device is None:
        if isinstance(X, torch.Tensor):
            return X.device
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError):
        raise DebuggableError(f"device: expected a torch device such as 'cpu' or 'cuda', got {_describe(device)}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DebuggableError(f"device: {str(dev)!r} was requested but CUDA is not available; use device='cpu'.")
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):
        raise DebuggableError(f"device: expected 'cpu' or an accelerator such as 'cuda', got {str(dev)!r}.")
    return dev


def check_dtype(dtype: Any) -> torch.dtype:
    table = {None: torch.float32, "float32": torch.float32, "float64": torch.float64,
             torch.float32: torch.float32, torch.float64: torch.float64,
             np.float32: torch.float32, np.float64: torch.float64}
    try:
        return table[dtype]
    except (KeyError, TypeError):
        raise DebuggableError(f"dtype: expected 'float32' or 'float64', got {_describe(dtype)}.") from None


def as_matrix(name: str, X: Any) -> np.ndarray | torch.Tensor:
    """``X`` as a 2-D numeric NumPy array or tensor (not copied when possible)."""
    if isinstance(X, torch.Tensor):
        if X.ndim != 2:
            raise DebuggableError(f"{name}: expected a 2-D (samples x features) tensor, got shape {tuple(X.shape)}.")
        if X.is_complex() or not (X.is_floating_point() or X.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
            raise DebuggableError(f"{name}: expected real numbers, got a tensor of dtype {X.dtype}.")
        return X
    try:
        A = np.asarray(X)
    except Exception:  # noqa: BLE001 - any conversion failure is bad input
        raise DebuggableError(f"{name}: expected an array, tensor or feature-store reader, got {_describe(X)}.") from None
    if A.dtype == object or not (np.issubdtype(A.dtype, np.floating) or np.issubdtype(A.dtype, np.integer) or A.dtype == bool):
        raise DebuggableError(f"{name}: expected an array of real numbers, got dtype {A.dtype}.")
    if A.ndim != 2:
        raise DebuggableError(f"{name}: expected a 2-D (samples x features) array, got shape {A.shape}.")
    return A


def check_finite_matrix(name: str, X: np.ndarray | torch.Tensor) -> None:
    if isinstance(X, torch.Tensor):
        if not X.is_floating_point():
            return
        bad = ~torch.isfinite(X)
        if bool(bad.any()):
            idx = torch.nonzero(bad)[0].tolist()
            raise DebuggableError(
                f"{name}: expected finite numbers, got {int(bad.sum())} NaN or infinite values (first at row {idx[0]}, column {idx[1]})."
            )
        return
    if not np.issubdtype(X.dtype, np.floating):
        return
    # chunked so a large array does not need a full boolean copy
    step = max(1, (1 << 24) // max(1, X.shape[1]))
    for lo in range(0, X.shape[0], step):
        blk = X[lo : lo + step]
        if not np.isfinite(blk).all():
            bad = ~np.isfinite(blk)
            r, c = np.argwhere(bad)[0]
            total = int((~np.isfinite(X)).sum())
            raise DebuggableError(
                f"{name}: expected finite numbers, got {total} NaN or infinite values (first at row {lo + int(r)}, column {int(c)})."
            )


def check_labels(name: str, y: Any, n: int, family: str, *, n_outputs: int | None = None, require_all: bool = True) -> np.ndarray:
    """Labels for ``family``; returns int64 (multinomial/binomial) or float64 targets.

    For the classification families the labels must be integers 0..K-1; with
    ``require_all`` every class must occur (otherwise an intercept diverges).
    ``n_outputs`` fixes K (for validation labels).
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    try:
        y = np.asarray(y)
    except Exception:  # noqa: BLE001
        raise DebuggableError(f"{name}: expected an array of labels, got {_describe(y)}.") from None
    if y.shape[:1] != (n,):
        raise DebuggableError(f"{name}: expected {n} entries to match the {n} rows of X, got shape {y.shape}.")
    if family == "gaussian":
        if y.ndim not in (1, 2) or y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise DebuggableError(f"{name}: expected a numeric (n,) or (n, K) array of targets for family='gaussian', got dtype {y.dtype} and shape {y.shape}.")
        y = y.astype(np.float64).reshape(n, -1)
        if not np.all(np.isfinite(y)):
            raise DebuggableError(f"{name}: expected finite targets, got {int((~np.isfinite(y)).sum())} NaN or infinite values.")
        if n_outputs is not None and y.shape[1] != n_outputs:
            raise DebuggableError(f"{name}: expected {n_outputs} target columns, got {y.shape[1]}.")
        return y
    if y.ndim != 1:
        raise DebuggableError(f"{name}: expected a 1-D array of integer class labels, got shape {y.shape}.")
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise DebuggableError(f"{name}: expected integer class labels 0..K-1, got dtype {y.dtype}.")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)):
            raise DebuggableError(f"{name}: expected integer class labels 0..K-1, got NaN or infinite values.")
        if not np.all(np.mod(y, 1) == 0):
            bad = y[np.mod(y, 1) != 0][0]
            raise DebuggableError(f"{name}: expected integer class labels 0..K-1, got {float(bad):g}.")
    yi = y.astype(np.int64)
    if yi.size and yi.min() < 0:
        raise DebuggableError(f"{name}: expected integer class labels 0..K-1, got {int(yi.min())}.")
    if family == "binomial":
        if yi.size and yi.max() > 1:
            raise DebuggableError(f"{name}: expected labels 0 and 1 for family='binomial', got {int(yi.max())}.")
        k = 2
    else:
        k = int(yi.max()) + 1 if n_outputs is None else n_outputs
        if yi.size and yi.max() >= k:
            raise DebuggableError(f"{name}: expected class labels 0..{k - 1} as in the training labels, got {int(yi.max())}.")
    if require_all:
        counts = np.bincount(yi, minlength=k)
        present = int((counts > 0).sum())
        if present < 2:
            raise DebuggableError(f"{name}: expected at least two classes, got only class {int(yi[0]) if yi.size else 0}.")
        if present < k:
            missing = np.nonzero(counts == 0)[0]
            raise DebuggableError(
                f"{name}: expected every class 0..{k - 1} to occur, got no example of class {int(missing[0])} "
                f"(relabel the classes to 0..{present - 1})."
            )
    return yi


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    if isinstance(sample_weight, torch.Tensor):
        sample_weight = sample_weight.detach().cpu().numpy()
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise DebuggableError(f"sample_weight: expected {n} non-negative numbers, got {_describe(sample_weight)}.") from None
    if w.shape != (n,):
        raise DebuggableError(f"sample_weight: expected shape ({n},) to match the rows of X, got {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DebuggableError("sample_weight: expected finite non-negative weights, got a negative, NaN or infinite value.")
    if not np.any(w > 0):
        raise DebuggableError("sample_weight: expected at least one positive weight, got all zeros.")
    return w


def check_constant_features(name: str, const: np.ndarray) -> None:
    """Raise for the constant feature columns ``const`` (indices), if any."""
    const = np.asarray(const).ravel()
    if const.size:
        listed = ", ".join(str(int(j)) for j in const[:5]) + (", ..." if const.size > 5 else "")
        raise DebuggableError(
            f"{name}: expected features with non-zero variance, got {const.size} constant feature(s) (column {listed}); "
            "drop them before fitting, or pass constant_features='drop'."
        )


def available_memory(device: torch.device) -> int:
    """Bytes free on ``device`` (host RAM for the CPU)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return int(info.get("MemAvailable", info.get("MemFree", 0)))
    except OSError:
        try:
            return int(os_sysconf("SC_AVPHYS_PAGES") * os_sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return 1 << 62


def os_sysconf(name: str) -> int:
    import os

    return int(os.sysconf(name))


def check_fits_in_memory(n: int, d: int, k: int, itemsize: int, device: torch.device, work_itemsize: int = 8,
                         copy_x: bool = True) -> None:
    """Raise when the in-memory solver would not fit on ``device``."""
    need = in_memory_bytes(n, d, k, itemsize, work_itemsize, copy_x)
    free = available_memory(device)
    if need > free:
        raise DebuggableError(
            f"X: a {n} x {d} problem with {k} outputs needs about {need / 2**30:.1f} GiB on {device} but only "
            f"{free / 2**30:.1f} GiB are free; pass a feature-store reader instead of an array (or solver='streaming') "
            "to use the streaming solver."
        )


def in_memory_bytes(n: int, d: int, k: int, itemsize: int, work_itemsize: int = 8, copy_x: bool = True) -> int:
    """Bytes the in-memory solver needs: the standardised copy of X (unless X is used
    as is), a working-set copy of at most 60% of it, about six ``(n, K)`` work arrays
    (predictions, step, residual, probabilities, line-search temporaries) and the
    ``(d+1)^2`` Gram matrix with its working-set copies."""
    return int(((1.6 if copy_x else 0.6) * n * d * itemsize) + 6 * n * k * work_itemsize + 3 * (d + 1) ** 2 * 8)
