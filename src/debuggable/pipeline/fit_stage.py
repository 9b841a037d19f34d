"""Stage ``fit``: the elastic-net regularisation path on a feature store's training split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.glm import GLMPath, elastic_net_path
from debuggable.pipeline.extract_stage import open_store
from debuggable.pipeline.stage import StageContext
from debuggable.pipeline.train_stage import model_roles
from debuggable.run import RunDirectory


def glm_dir(run: RunDirectory) -> Path:
    return run.path / "glm"


class UsedColumns:
    """A feature-store reader seen without some columns (same ``iter_blocks`` protocol).

    Deep features often have dead units (constant over the data set); they carry no
    signal and the GLM refuses zero-variance columns, so the fit skips them and their
    weights are zero.
    """

    def __init__(self, reader: Any, keep: np.ndarray):
        self.reader = reader
        self.keep = np.asarray(keep, dtype=np.int64)
        self.shape = (int(reader.n_rows), int(self.keep.size))

    def iter_blocks(self, array: str = "features", block_rows: int | None = None, **kwargs: Any):
        index = None
        for start, block in self.reader.iter_blocks(array, block_rows=block_rows, **kwargs):
            if isinstance(block, torch.Tensor):
                if index is None or index.device != block.device:
                    index = torch.as_tensor(self.keep, device=block.device)
                yield start, block.index_select(1, index)
            else:
                yield start, block[:, self.keep]


def constant_features(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Indices of features whose spread is zero (up to float64 rounding) on the training split."""
    return np.flatnonzero(~np.isfinite(std) | (std == 0) | (std <= 1e-10 * np.abs(mean)))


def expand_columns(path: GLMPath, keep: np.ndarray, dim: int, mean: np.ndarray) -> GLMPath:
    """Put a path fitted on columns ``keep`` back into all ``dim`` features (zero weights elsewhere)."""
    coef = np.zeros(path.coef.shape[:2] + (dim,), dtype=path.coef.dtype)
    coef[:, :, keep] = path.coef
    feature_mean = mean.astype(path.feature_mean.dtype, copy=True)
    feature_mean[keep] = path.feature_mean
    feature_std = np.ones(dim, dtype=path.feature_std.dtype)
    feature_std[keep] = path.feature_std
    path.coef, path.feature_mean, path.feature_std = coef, feature_mean, feature_std
    path.info["constant_features_skipped"] = sorted(set(range(dim)) - set(keep.tolist()))
    return path


def run_fit_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    cfg = run.config.glm
    roles = list(model_roles(run.config))
    if cfg.store not in roles:
        raise DebuggableError(f"glm.store {cfg.store!r} is not a feature store of this run; expected one of {roles}.")
    store = open_store(run, cfg.store)
    train = store.split("train")
    val = store.split("val") if "val" in store.splits() else None
    dim = train.feature_dim
    constant = constant_features(train.mean, train.std())
    keep = np.setdiff1d(np.arange(dim), constant)
    if keep.size == 0:
        raise DebuggableError(f"feature store {cfg.store!r}: every one of its {dim} features is constant on the training split.")
    ctx.log(f"[fit] elastic-net path: {cfg.n_lambdas} lambdas on {train.n_rows} x {dim} features"
            + (f" ({constant.size} constant features skipped)" if constant.size else ""))
    path = elastic_net_path(
        UsedColumns(train, keep) if constant.size else train,
        train.labels,
        family=cfg.family,
        alpha=cfg.alpha,
        n_lambdas=cfg.n_lambdas,
        lambda_min_ratio=cfg.lambda_min_ratio,
        tol=cfg.tol,
        group=cfg.group,
        X_val=None if val is None else val.to_numpy("features")[:, keep],
        y_val=None if val is None else val.labels,
        device=ctx.device,
        max_time=cfg.max_time,
        verbose=ctx.progress,
    )
    if constant.size:
        path = expand_columns(path, keep, dim, train.mean)
    path.save(glm_dir(run))
    summary = path_summary(path)
    summary["constant_features_skipped"] = int(constant.size)
    ctx.log(
        f"[fit] {len(path)} lambdas in {summary['seconds']:.1f} s; max relative gap {summary['max_gap']:.2e}, "
        f"max KKT residual / (lam*alpha) {summary['max_kkt']:.2e}"
    )
    return summary, ["glm/glm_path.safetensors", "glm/glm_path.json"]


def path_summary(path: GLMPath) -> dict[str, Any]:
    """Headline figures of a fitted path (JSON-able)."""
    finite_val = np.isfinite(path.val_accuracy)
    return {
        "n_lambdas": int(len(path)),
        "lambda_max": float(path.lambdas[0]),
        "lambda_min": float(path.lambdas[-1]),
        "seconds": float(np.sum(path.time)),
        "max_gap": float(np.nanmax(path.gap)),
        "max_kkt": float(np.nanmax(path.kkt)),
        "all_converged": bool(np.all(path.converged)),
        "nnz_range": [int(path.nnz.min()), int(path.nnz.max())],
        "best_val_accuracy": float(np.nanmax(path.val_accuracy)) if finite_val.any() else None,
        "solver": path.info.get("solver"),
        "device": path.info.get("device"),
    }


def load_path(run: RunDirectory) -> GLMPath:
    return GLMPath.load(glm_dir(run))
