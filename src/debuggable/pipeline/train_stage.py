"""Stage ``train``: train the built-in models the config asks for.

The model under inspection (``[model]``) and the robust feature extractor
(``[robust_model]``) are trained here when they are a built-in trainable kind with no
``path``, or a text encoder to fine-tune (``kind = "minilm"``, ``fine_tune = true``;
see :mod:`debuggable.pipeline.text_training`); pretrained backbones and a user's own
models need no training and the stage records that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from debuggable.models import (
    AdversarialConfig,
    SmallCNN,
    TrainConfig,
    evaluate,
    load_model,
    save_model,
    train_classifier,
)
from debuggable.pipeline.data_stage import build_data
from debuggable.pipeline.roles import fine_tunes, is_user_model, model_roles, needs_training
from debuggable.pipeline.stage import StageContext
from debuggable.run import ModelConfig, RunConfig, RunDirectory

#: Attack used to compare the robustness of the trained models when the config names none.
DEFAULT_ATTACK = {"norm": "l2", "eps": 1.0, "step_size": 0.25, "steps": 10}


def model_dir(run: RunDirectory, role: str) -> Path:
    return run.path / "models" / role


def train_config(model: ModelConfig, seed: int, device: str) -> TrainConfig:
    """The model's ``train`` table as a :class:`TrainConfig` (over the fine-tuning
    defaults for a text encoder), with the run's seed and device unless it names them."""
    from debuggable.models.finetune import fine_tune_config

    params = dict(model.train or {})
    params.setdefault("seed", seed)
    params.setdefault("device", device)
    if fine_tunes(model):
        return fine_tune_config(params)
    return TrainConfig.model_validate(params)


def comparison_attack(config: RunConfig) -> AdversarialConfig:
    """The attack every model is evaluated under.

    The robust model's norm and radius, but at least 10 PGD steps of 2.5 * eps / steps
    (training often uses fewer, weaker steps to save time); :data:`DEFAULT_ATTACK`
    when no robust model is trained.
    """
    attack = dict(DEFAULT_ATTACK)
    if config.robust_model is not None and config.robust_model.train and config.robust_model.train.get("adversarial"):
        trained = config.robust_model.train["adversarial"]
        attack.update(norm=trained.get("norm", attack["norm"]), eps=trained.get("eps", attack["eps"]))
        attack["steps"] = max(10, int(trained.get("steps", 10)))
    attack["step_size"] = 2.5 * attack["eps"] / attack["steps"]
    return AdversarialConfig.model_validate(attack)


@torch.inference_mode()
def _predict(model: torch.nn.Module, dataset, rows: np.ndarray, device: torch.device, batch_size: int = 512) -> np.ndarray:
    was_training = model.training
    model.eval()
    preds = []
    for lo in range(0, rows.size, batch_size):
        x, _ = dataset.batch(rows[lo : lo + batch_size])
        preds.append(model(x.to(device)).argmax(1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def spurious_patch_effect(model, splits, clean_test, device: torch.device) -> dict[str, Any] | None:
    """How much the planted patch alone drives predictions to its class.

    On the test images of OTHER classes that carry the patch, the fraction predicted as
    the patch's class, with the patch and on the same images without it (``clean_test``
    is the test split before planting; planting keeps row order).

    Returns:
        ``{"target_class", "images", "predicted_target_with_patch",
        "predicted_target_without_patch"}``, or None when no patch was planted.
    """
    truth = splits.planted.get("spurious_patch")
    if not truth or "test" not in truth["splits"]:
        return None
    target = int(truth["params"]["target_class"])
    rows = np.asarray(truth["splits"]["test"]["indices"], dtype=np.int64)
    rows = rows[splits.test.labels[rows] != target]
    if rows.size == 0:
        return None
    with_patch = _predict(model, splits.test, rows, device)
    without = _predict(model, clean_test, rows, device)
    return {
        "target_class": target,
        "images": int(rows.size),
        "predicted_target_with_patch": float(np.mean(with_patch == target)),
        "predicted_target_without_patch": float(np.mean(without == target)),
    }


def _clean_test(config: RunConfig):
    from debuggable.data import load_dataset

    return load_dataset(config.data.name, **config.data.params).test


def run_train_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    splits = build_data(run.config, ctx)
    attack = comparison_attack(run.config)
    summary: dict[str, Any] = {"attack": attack.model_dump(mode="json"), "models": {}}
    outputs: list[str] = []
    for role, model_cfg in model_roles(run.config).items():
        if not needs_training(model_cfg):
            from debuggable.pipeline.user_models import describe_model

            summary["models"][role] = (describe_model(model_cfg) if is_user_model(model_cfg)
                                       else {"kind": model_cfg.kind, "trained": False})
            continue
        if model_cfg.kind == "minilm":
            from debuggable.pipeline.text_training import fine_tune_role

            summary["models"][role] = fine_tune_role(run, ctx, role, model_cfg, splits)
            outputs.append(f"models/{role}")
            continue
        if splits.modality != "image":
            from debuggable.errors import DebuggableError

            raise DebuggableError(f"model {role!r}: kind {model_cfg.kind!r} needs image data, got {splits.modality} data.")
        tcfg = train_config(model_cfg, run.config.seed + (0 if role == "inspected" else 1), str(ctx.device))
        in_channels = splits.train.image_shape[0]
        with torch.random.fork_rng(devices=[]):  # seeded initial weights: reruns train the same model
            torch.manual_seed(tcfg.seed)
            model = SmallCNN(in_channels=in_channels, num_classes=len(splits.class_names), **model_cfg.params)
        kind = "PGD-" + tcfg.adversarial.norm if tcfg.adversarial else "standard"
        ctx.log(f"[train] {role} model: {kind} training for {tcfg.epochs} epochs")
        result = train_classifier(model, splits.train, splits.val, tcfg, progress=ctx.progress)
        metrics = {
            "val_accuracy": evaluate(model, splits.val, device=ctx.device),
            "test_accuracy": evaluate(model, splits.test, device=ctx.device),
            "test_accuracy_under_attack": evaluate(model, splits.test, attack=attack, device=ctx.device),
            "train_seconds": result.seconds,
        }
        effect = spurious_patch_effect(model, splits, _clean_test(run.config), ctx.device) if (
            "spurious_patch" in splits.planted) else None
        if effect is not None:
            metrics["spurious_patch"] = effect
        save_model(
            model,
            model_dir(run, role),
            config={
                "arch": "small_cnn",
                "kwargs": {"in_channels": in_channels, "num_classes": len(splits.class_names), **model_cfg.params},
                "train": tcfg.model_dump(mode="json"),
                "metrics": metrics,
                "history": result.history,
            },
        )
        summary["models"][role] = {"kind": model_cfg.kind, "trained": True, "training": kind, **metrics,
                                   "history": result.history}
        outputs.append(f"models/{role}")
        ctx.log(
            f"[train] {role}: test accuracy {metrics['test_accuracy']:.3f}, "
            f"under attack {metrics['test_accuracy_under_attack']:.3f}"
        )
        if effect is not None:
            ctx.log(
                f"[train] {role}: other classes' test images predicted as the patch's class: "
                f"{effect['predicted_target_with_patch']:.1%} with the patch, "
                f"{effect['predicted_target_without_patch']:.1%} without"
            )
    return summary, outputs


def load_trained(run: RunDirectory, role: str):
    """The trained model of ``role`` from the run directory."""
    return load_model(model_dir(run, role))
