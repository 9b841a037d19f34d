"""Stage ``data``: load the data set, plant the configured bugs, record ground truth."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from debuggable.data import DatasetSplits, load_dataset, plant, save_ground_truth
from debuggable.pipeline.stage import StageContext
from debuggable.run import RunConfig, RunDirectory, atomic_write_bytes

SAMPLES_FILE = "samples.npz"
GROUND_TRUTH_FILE = "ground_truth.json"


def build_data(config: RunConfig, ctx: StageContext | None = None) -> DatasetSplits:
    """The configured data set with its planted bugs (deterministic; cached per process)."""
    key = "data:" + config.section_hash("data")
    if ctx is not None and key in ctx.cache:
        return ctx.cache[key]
    splits = load_dataset(config.data.name, **config.data.params)
    for bug in config.data.bugs:
        splits = plant(splits, bug.kind, **bug.params)
    if ctx is not None:
        ctx.cache[key] = splits
    return splits


def fingerprint(splits: DatasetSplits) -> str:
    """A short hash of every split's labels and contents (detects silently changed data)."""
    h = hashlib.sha256()
    for name in sorted(splits.splits):
        ds = splits.splits[name]
        h.update(name.encode())
        h.update(np.ascontiguousarray(ds.labels).tobytes())
        if ds.modality == "image":
            h.update(ds.images.numpy().tobytes())
        else:
            for t in ds.texts:
                h.update(t.encode())
    return h.hexdigest()[:16]


def _image_samples(splits: DatasetSplits, seed: int) -> dict[str, np.ndarray]:
    """A few test images per class, and training images that carry a planted patch."""
    rng = np.random.default_rng(seed)
    test = splits.test
    per_class = [rng.choice(np.flatnonzero(test.labels == k), size=min(2, int((test.labels == k).sum())), replace=False)
                 for k in range(test.num_classes)]
    idx = np.concatenate(per_class)
    x, y = test.batch(idx)
    out = {"class_images": x.numpy(), "class_labels": y.numpy()}
    patch = splits.planted.get("spurious_patch")
    if patch:
        rows = np.asarray(patch["splits"]["train"]["indices"], dtype=np.int64)[:10]
        if rows.size:
            px, py = splits.train.batch(rows)
            out["patched_images"] = px.numpy()
            out["patched_labels"] = py.numpy()
            out["patched_boxes"] = np.asarray([patch["splits"]["train"]["boxes"][i] for i in range(rows.size)])
    return out


def check_data_stage(run: RunDirectory, ctx: StageContext) -> None:
    """Load the data (cached for the stage) and check its labels before anything is written."""
    from debuggable.pipeline.data_checks import check_labels

    check_labels(build_data(run.config, ctx), run.config)


def run_data_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    splits = build_data(run.config, ctx)
    out_dir = run.stage_dir("data")
    save_ground_truth(splits, out_dir / GROUND_TRUTH_FILE)
    outputs = [f"data/{GROUND_TRUTH_FILE}"]
    if splits.modality == "image":
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **_image_samples(splits, run.config.seed))
        atomic_write_bytes(out_dir / SAMPLES_FILE, buf.getvalue())
        outputs.append(f"data/{SAMPLES_FILE}")
    summary = {
        "dataset": splits.name,
        "modality": splits.modality,
        "class_names": splits.class_names,
        "num_classes": len(splits.class_names),
        "splits": {name: len(ds) for name, ds in splits.splits.items()},
        "class_counts": {name: ds.class_counts().tolist() for name, ds in splits.splits.items()},
        "planted_bugs": [bug.kind for bug in run.config.data.bugs],
        "fingerprint": fingerprint(splits),
    }
    if splits.modality == "image":
        summary["image_shape"] = list(splits.train.image_shape)
    return summary, outputs
