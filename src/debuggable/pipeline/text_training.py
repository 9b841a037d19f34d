"""The train stage's text branch: fine-tune the MiniLM encoder with a linear head.

``[model] kind = "minilm"`` with ``fine_tune = true``: the encoder and a linear head are
trained on the run's training sentences (planted bugs included, so a planted trigger
token is learnt as the paper's fine-tuned BERT learns its biases) with the ``[model]
train`` settings over :data:`debuggable.models.finetune.FINE_TUNE_DEFAULTS`, and saved
in ``models/<role>/`` as ``model.safetensors`` + ``model.json``. The extract stage then
reads the fine-tuned encoder's features, so the sparse layer, the word clouds, the
counterfactuals and the bias probes all inspect the fine-tuned model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.models import evaluate, fine_tune_text_classifier, save_model
from debuggable.pipeline.stage import StageContext
from debuggable.run import ModelConfig, RunDirectory


@torch.inference_mode()
def _predict(model: torch.nn.Module, dataset: Any, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model.eval()
    preds = [model(dataset.batch(rows[lo : lo + batch_size])[0]).logits.argmax(1).cpu().numpy()
             for lo in range(0, rows.size, batch_size)]
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def trigger_token_effect(model: torch.nn.Module, splits: Any, clean_test: Any) -> dict[str, Any] | None:
    """How much the planted trigger token alone drives predictions to its class.

    On the test sentences of OTHER classes that carry the token, the fraction the model
    predicts as the token's class, with the token and on the same sentences without it
    (``clean_test``: the test split before planting, same row order).
    """
    truth = splits.planted.get("trigger_token")
    if not truth or "test" not in truth["splits"]:
        return None
    target = int(truth["params"]["target_class"])
    rows = np.asarray(truth["splits"]["test"]["indices"], dtype=np.int64)
    rows = rows[splits.test.labels[rows] != target]
    if rows.size == 0:
        return None
    return {
        "token": truth["params"]["token"],
        "target_class": target,
        "sentences": int(rows.size),
        "predicted_target_with_token": float(np.mean(_predict(model, splits.test, rows) == target)),
        "predicted_target_without_token": float(np.mean(_predict(model, clean_test, rows) == target)),
    }


def fine_tune_role(run: RunDirectory, ctx: StageContext, role: str, model_cfg: ModelConfig, splits: Any) -> dict[str, Any]:
    """Fine-tune, evaluate and save the text model of ``role``; returns its train-stage summary."""
    from debuggable.data import load_dataset
    from debuggable.pipeline.train_stage import model_dir, train_config

    if splits.modality != "text":
        raise DebuggableError(f"model {role!r}: fine_tune needs text data, got {splits.modality} data.")
    tcfg = train_config(model_cfg, run.config.seed + (0 if role == "inspected" else 1), str(ctx.device))
    params = dict(model_cfg.params)
    max_length = int(params.get("max_length", 128))
    ctx.log(f"[train] {role} model: fine-tuning all-MiniLM-L6-v2 + a linear head on {len(splits.train)} sentences, "
            f"{tcfg.epochs} epochs of batches of {tcfg.batch_size} (AdamW, lr {tcfg.lr:g}, {tcfg.lr_schedule})")
    model, result = fine_tune_text_classifier(
        splits.train, splits.val, num_classes=len(splits.class_names), config=tcfg, max_length=max_length,
        model_dir=params.get("model_dir"), progress=ctx.progress)
    metrics: dict[str, Any] = {
        "val_accuracy": evaluate(model, splits.val, batch_size=64, device=ctx.device),
        "test_accuracy": evaluate(model, splits.test, batch_size=64, device=ctx.device),
        "train_seconds": result.seconds,
        "threads": torch.get_num_threads(),
    }
    effect = trigger_token_effect(model, splits, load_dataset(run.config.data.name, **run.config.data.params).test)
    if effect is not None:
        metrics["trigger_token"] = effect
    save_model(model, model_dir(run, role), config={
        "arch": "minilm_classifier", "kwargs": model.init_kwargs, "train": tcfg.model_dump(mode="json"),
        "metrics": metrics, "history": result.history})
    ctx.log(f"[train] {role}: fine-tuned in {result.seconds:.0f} s; test accuracy {metrics['test_accuracy']:.3f} "
            f"(val {metrics['val_accuracy']:.3f})")
    if effect is not None:
        ctx.log(f"[train] {role}: other classes' test sentences carrying {effect['token']!r} predicted as its class: "
                f"{effect['predicted_target_with_token']:.1%} with the token, "
                f"{effect['predicted_target_without_token']:.1%} without")
    return {"kind": model_cfg.kind, "trained": True, "training": "fine-tuned", **metrics, "history": result.history}
