"""Stage ``fit``: the elastic-net regularisation path on a feature store's training split.

Each solved lambda is saved under ``glm/checkpoint/`` as it is certified, so a fit that
was killed (or whose process group lost a rank) resumes after the last saved lambda
when the stage is rerun; the checkpoint is removed once the whole path is saved.

Under torchrun (``ctx.process_group``) every rank reads its own contiguous range of
the store's chunks (as the distributed extraction writes them) for the training and
validation splits, the path is solved over the group, and rank 0 alone writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.glm import GLMPath, elastic_net_path
from debuggable.glm.checkpoint import PathCheckpoint
from debuggable.glm.distributed import Communicator, RowRangeReader, shard_bounds
from debuggable.pipeline.extract_stage import open_store
from debuggable.pipeline.roles import model_roles
from debuggable.pipeline.stage import StageContext
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
    comm = Communicator(ctx.process_group)
    log = ctx.log if comm.is_root else (lambda msg: None)
    where = f" over {comm.world_size} processes" if comm.active else ""
    log(f"[fit] elastic-net path: {cfg.n_lambdas} lambdas on {train.n_rows} x {dim} features{where}")
    X, y = train, train.labels
    X_val = y_val = None
    if comm.active:
        X = RowRangeReader(train, *shard_bounds(train.n_rows, comm.rank, comm.world_size, train.chunk_rows))
        y = X.read("labels")
        if val is not None:
            vr = RowRangeReader(val, *shard_bounds(val.n_rows, comm.rank, comm.world_size, val.chunk_rows))
            X_val, y_val = vr.read("features"), vr.read("labels")
    elif val is not None:
        X_val, y_val = val.to_numpy("features"), val.labels
    checkpoint = glm_dir(run) / "checkpoint"
    # Dead units (constant columns) are left out of the fit and get zero weight
    # (elastic_net_path's constant_features="drop"; see debuggable.glm.columns).
    path = elastic_net_path(
        X,
        y,
        family=cfg.family,
        alpha=cfg.alpha,
        n_lambdas=cfg.n_lambdas,
        lambda_min_ratio=cfg.lambda_min_ratio,
        tol=cfg.tol,
        group=cfg.group,
        X_val=X_val,
        y_val=y_val,
        device=ctx.device,
        max_time=cfg.max_time,
        verbose=ctx.progress,
        process_group=ctx.process_group,
        memory_limit=cfg.memory_limit,
        checkpoint=checkpoint,
    )
    resumed = int(path.info.get("resumed_lambdas", 0))
    if resumed:
        log(f"[fit] resumed after {resumed} lambdas saved by an earlier, interrupted fit")
    skipped = path.info.get("constant_features_skipped", [])
    if skipped:
        log(f"[fit] {len(skipped)} constant features skipped (zero weight): {skipped[:10]}"
            + (" ..." if len(skipped) > 10 else ""))
    if comm.is_root:
        path.save(glm_dir(run))
        PathCheckpoint(checkpoint, comm, {}).remove()  # the path is saved: nothing left to resume
    summary = path_summary(path)
    summary["constant_features_skipped"] = len(skipped)
    summary["processes"] = comm.world_size
    summary["resumed_lambdas"] = resumed
    log(
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
