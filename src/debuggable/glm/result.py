"""The regularisation path a solve returns, and its on-disk form.

:class:`GLMPath` holds, for L lambdas, K outputs and D features:

* ``lambdas`` (L,), ``coef`` (L, K, D) and ``intercept`` (L, K) in the ORIGINAL
  feature scale (``x @ coef[l].T + intercept[l]`` are the logits);
* per lambda: ``objective`` (on the standardised problem, as defined in
  :mod:`debuggable.glm.datafits`), ``gap`` (relative duality gap), ``kkt`` (max
  subgradient violation divided by ``lam * alpha``), ``converged``, ``n_iter``,
  ``nnz`` (non-zero coefficients), ``n_features`` (features used by any class),
  ``time`` (seconds), and ``train_loss`` / ``train_accuracy`` / ``val_loss`` /
  ``val_accuracy`` (also as ``loss[split]`` / ``accuracy[split]``; NaN without a
  validation set);
* ``info``: a JSON-able dict of settings (family, alpha, standardisation, solver,
  device, lambda_max, ...) and ``selection``, the rule of the last selection.

``save(directory)`` writes ``glm_path.safetensors`` (arrays) and then
``glm_path.json`` (the rest), each atomically, so a directory with the JSON file
holds a complete path. ``GLMPath.load(directory)`` reads it back.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from debuggable.errors import DebuggableError

ARRAYS = ("lambdas", "coef", "intercept", "objective", "gap", "kkt", "converged", "n_iter", "nnz", "n_features",
          "time", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "feature_mean", "feature_std")
FORMAT = "debuggable.glm.path/1"
ARRAY_FILE = "glm_path.safetensors"
META_FILE = "glm_path.json"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600; the saved path honours the umask like any other file
        mask = os.umask(0o077)  # read by setting it; restrictive meanwhile
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


@dataclass
class GLMPath:
    lambdas: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    objective: np.ndarray
    gap: np.ndarray
    kkt: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    nnz: np.ndarray
    n_features: np.ndarray
    time: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    feature_mean: np.ndarray
    feature_std: np.ndarray
    info: dict = field(default_factory=dict)
    selection: dict | None = None

    # -- convenience -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.lambdas.shape[0])

    @property
    def loss(self) -> dict[str, np.ndarray]:
        return {"train": self.train_loss, "val": self.val_loss}

    @property
    def accuracy(self) -> dict[str, np.ndarray]:
        return {"train": self.train_accuracy, "val": self.val_accuracy}

    @property
    def family(self) -> str:
        return str(self.info.get("family", "multinomial"))

    @property
    def features_per_class(self) -> np.ndarray:
        """(L, K) number of non-zero coefficients per output."""
        return (self.coef != 0).sum(axis=2)

    def _index(self, index: int | None) -> int:
        if index is None:
            if self.selection is None:
                raise DebuggableError("index: expected a path index (0..{}) or a prior selection, got None.".format(len(self) - 1))
            return int(self.selection["index"])
        i = int(index)
        if not -len(self) <= i < len(self):
            raise DebuggableError(f"index: expected an integer in 0..{len(self) - 1}, got {index!r}.")
        return i % len(self)

    def decision_function(self, X: Any, index: int | None = None) -> np.ndarray:
        """Linear predictions ``X @ coef[index].T + intercept[index]`` (float64)."""
        i = self._index(index)
        X = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.coef.shape[2]:
            raise DebuggableError(f"X: expected a 2-D array with {self.coef.shape[2]} features, got shape {X.shape}.")
        return X @ self.coef[i].T.astype(np.float64) + self.intercept[i].astype(np.float64)

    def predict(self, X: Any, index: int | None = None) -> np.ndarray:
        Z = self.decision_function(X, index)
        if self.family == "multinomial":
            return Z.argmax(1)
        if self.family == "binomial":
            return (Z[:, 0] > 0).astype(np.int64)
        return Z

    def predict_proba(self, X: Any, index: int | None = None) -> np.ndarray:
        Z = self.decision_function(X, index)
        if self.family == "multinomial":
            Z = Z - Z.max(1, keepdims=True)
            P = np.exp(Z)
            return P / P.sum(1, keepdims=True)
        if self.family == "binomial":
            p = 1.0 / (1.0 + np.exp(-Z[:, 0]))
            return np.stack([1 - p, p], 1)
        raise DebuggableError("predict_proba: expected a classification path (multinomial or binomial), got family='gaussian'.")

    def summary(self) -> list[dict]:
        """One dict per lambda (for printing or JSON)."""
        rows = []
        for i in range(len(self)):
            rows.append({k: _jsonable(getattr(self, k)[i]) for k in ("lambdas", "objective", "gap", "kkt", "converged", "n_iter",
                                                                    "nnz", "n_features", "time", "train_loss", "train_accuracy",
                                                                    "val_loss", "val_accuracy")})
        return rows

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the path to ``directory`` (created); returns the directory."""
        from safetensors.numpy import save as st_save

        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise DebuggableError(f"directory: expected a directory to write the path into, got the existing file {str(d)!r}.")
        arrays = {}
        for k in ARRAYS:
            a = np.ascontiguousarray(getattr(self, k))
            if a.dtype == bool:
                a = a.astype(np.uint8)
            arrays[k] = a
        meta = {"format": FORMAT, "info": _jsonable(self.info), "selection": _jsonable(self.selection)}
        _atomic_write(d / ARRAY_FILE, st_save(arrays))
        _atomic_write(d / META_FILE, (json.dumps(meta, indent=2, allow_nan=False) + "\n").encode())
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "GLMPath":
        from safetensors.numpy import load_file

        d = Path(directory)
        if not (d / META_FILE).is_file() or not (d / ARRAY_FILE).is_file():
            raise DebuggableError(f"directory: expected a saved GLM path ({META_FILE} and {ARRAY_FILE}) in {str(d)!r}, found none.")
        meta = json.loads((d / META_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise DebuggableError(f"directory: expected a path saved as {FORMAT!r}, got format {meta.get('format')!r}.")
        arrays = load_file(str(d / ARRAY_FILE))
        kw = {k: arrays[k] for k in ARRAYS}
        kw["converged"] = kw["converged"].astype(bool)
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "objective", "gap", "kkt", "time"):
            kw[k] = kw[k].astype(np.float64)
        return cls(**kw, info=meta.get("info") or {}, selection=meta.get("selection"))
