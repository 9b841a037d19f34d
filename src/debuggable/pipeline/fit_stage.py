"""Stage ``fit``: the elastic-net regularisation path on a feature store's training split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.glm import GLMPath, elastic_net_path
from debuggable.pipeline.extract_stage import open_store
from debuggable.pipeline.stage import StageContext
from debuggable.pipeline.train_stage import model_roles
from debuggable.run import RunDirectory


def glm_dir(run: RunDirectory) -> Path:
    return run.path / "glm"


def run_fit_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    cfg = run.config.glm
    roles = list(model_roles(run.config))
    if cfg.store not in roles:
        raise DebuggableError(f"glm.store {cfg.store!r} is not a feature store of this run; expected one of {roles}.")
    store = open_store(run, cfg.store)
    train = store.split("train")
    val = store.split("val") if "val" in store.splits() else None
    dim = train.feature_dim
    ctx.log(f"[fit] elastic-net path: {cfg.n_lambdas} lambdas on {train.n_rows} x {dim} features")
    # Dead units (constant columns) are left out of the fit and get zero weight
    # (elastic_net_path's constant_features="drop"; see debuggable.glm.columns).
    path = elastic_net_path(
        train,
        train.labels,
        family=cfg.family,
        alpha=cfg.alpha,
        n_lambdas=cfg.n_lambdas,
        lambda_min_ratio=cfg.lambda_min_ratio,
        tol=cfg.tol,
        group=cfg.group,
        X_val=None if val is None else val.to_numpy("features"),
        y_val=None if val is None else val.labels,
        device=ctx.device,
        max_time=cfg.max_time,
        verbose=ctx.progress,
    )
    skipped = path.info.get("constant_features_skipped", [])
    if skipped:
        ctx.log(f"[fit] {len(skipped)} constant features skipped (zero weight): {skipped[:10]}"
                + (" ..." if len(skipped) > 10 else ""))
    path.save(glm_dir(run))
    summary = path_summary(path)
    summary["constant_features_skipped"] = len(skipped)
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
