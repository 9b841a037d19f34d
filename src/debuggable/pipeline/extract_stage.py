"""Stage ``extract``: features, logits and predictions of each model into feature stores.

``features/inspected`` holds the model under inspection (its features feed the
sparse decision layer); ``features/robust`` the robust model's features (for failure
analysis), when one is configured. Extraction resumes chunk by chunk after a kill.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from debuggable.features import FeatureStore, extract_features, split_fingerprint
from debuggable.features.store import StoreIntegrityError
from debuggable.glm.distributed import Communicator
from debuggable.models import Backbone, load_backbone, load_model
from debuggable.pipeline.data_stage import build_data
from debuggable.pipeline.roles import model_roles, needs_training
from debuggable.pipeline.stage import StageContext
from debuggable.pipeline.train_stage import model_dir
from debuggable.run import RunDirectory


def store_path(run: RunDirectory, role: str) -> Path:
    return run.path / "features" / role


def make_backbone(run: RunDirectory, role: str) -> Backbone:
    """The backbone of ``role`` (a model trained in this run, or a configured one)."""
    from debuggable.pipeline.roles import fine_tunes, is_user_model
    from debuggable.pipeline.user_models import user_model_backbone

    model_cfg = model_roles(run.config)[role]
    if is_user_model(model_cfg):
        return user_model_backbone(run, role, model_cfg)
    if fine_tunes(model_cfg):
        return load_model(model_dir(run, role))
    params = dict(model_cfg.params)
    if needs_training(model_cfg):
        params = {"path": str(model_dir(run, role))}
    return load_backbone(model_cfg.kind, **params)


def stale_split(path: Path, split: str, backbone: Backbone, dataset: Any, *, spatial: bool) -> bool:
    """True when the run's store at ``path`` holds ``split`` from other weights or data,
    or without the spatial maps now asked for.

    The store is this stage's own output, so such a split went stale with the train
    stage (retrained weights) or the config and is replaced; a split from the same
    weights and data is reused, or resumed chunk by chunk when a kill left it partial.
    """
    if FeatureStore.inspect_path(path) != "store":
        return False
    store = FeatureStore(path, mode="r")
    if split not in store:
        return False
    try:
        meta = store.metadata(split)
    except StoreIntegrityError:
        return False  # damaged: extract_features repairs it (--repair) or says how
    if meta.get("fingerprint") != split_fingerprint(backbone, dataset)[0]:
        return True
    return spatial and meta.get("layout", {}).get("spatial_shape") is None


def run_extract_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    splits = build_data(run.config, ctx)
    cfg = run.config.extract
    summary: dict[str, Any] = {"stores": {}}
    comm = Communicator(ctx.process_group)
    if comm.active:
        summary["processes"] = comm.world_size
    outputs = []
    for role in model_roles(run.config):
        backbone = make_backbone(run, role).to(ctx.device).eval()
        path = store_path(run, role)
        role_summary: dict[str, Any] = {"backbone": backbone.describe(), "splits": {}}
        for split in cfg.splits:
            ds = splits[split]
            t0 = time.perf_counter()
            spatial = cfg.spatial and backbone.has_spatial
            replace = stale_split(path, split, backbone, ds, spatial=spatial)
            if replace:
                ctx.log(f"[extract] {role}/{split}: the stored features came from other weights or settings; replacing them")
            # --force re-extracts every split; --repair recomputes only damaged chunks.
            repair = ctx.repair and not replace
            replace = replace or (ctx.force and not ctx.repair)
            if comm.active:  # rank 0's view of the store decides, before any rank changes it
                replace, repair = comm.broadcast_object((replace, repair), f"agreeing on {role}/{split}")
            reader = extract_features(
                backbone,
                ds,
                path,
                split,
                batch_size=cfg.batch_size,
                chunk_rows=cfg.chunk_rows,
                spatial=spatial,
                device=ctx.device,
                progress=ctx.progress,
                overwrite=replace,
                repair=repair,
            )
            if reader.repaired_chunks:
                ctx.log(f"[extract] {role}/{split}: recomputed damaged chunks {reader.repaired_chunks}")
            elif repair:
                ctx.log(f"[extract] {role}/{split}: every chunk matches its checksum")
            seconds = time.perf_counter() - t0
            info: dict[str, Any] = {"rows": int(reader.n_rows), "feature_dim": int(reader.shape[1]),
                                    "seconds": round(seconds, 3)}
            # A head trained on other labels (e.g. ImageNet's 1000) says nothing about these.
            if "preds" in reader.arrays and backbone.num_classes == ds.num_classes:
                info["head_accuracy"] = float(np.mean(reader.read("preds") == ds.labels))
            mean, std = reader.mean, reader.std()
            info["mean_activation"] = float(np.mean(mean))
            info["dead_features"] = int(np.sum(std == 0))
            role_summary["splits"][split] = info
            ctx.log(f"[extract] {role}/{split}: {info['rows']} x {info['feature_dim']} in {seconds:.1f} s")
        summary["stores"][role] = role_summary
        outputs.append(f"features/{role}")
    return summary, outputs


def open_store(run: RunDirectory, role: str = "inspected") -> FeatureStore:
    """The feature store written by this stage for ``role``."""
    return FeatureStore(store_path(run, role))
