"""Which models a run has and what the pipeline does with each: plain config questions,
answered without importing torch (``debuggable status`` and ``--help`` ask them)."""

from __future__ import annotations

from debuggable.run import ModelConfig, RunConfig
from debuggable.run.config import USER_MODEL_KINDS

#: Built-in kinds the train stage trains when their ``params`` name no saved ``path``.
TRAINABLE = {"small_cnn"}


def model_roles(config: RunConfig) -> dict[str, ModelConfig]:
    """Role name -> model config: ``inspected`` always, ``robust`` when configured."""
    roles = {"inspected": config.model}
    if config.robust_model is not None:
        roles["robust"] = config.robust_model
    return roles


def section_name(role: str) -> str:
    """``inspected`` -> ``model``, ``robust`` -> ``robust_model`` (the run.toml tables)."""
    return "model" if role == "inspected" else f"{role}_model"


def is_user_model(model: ModelConfig) -> bool:
    """A user's own network (``kind = "module"`` or ``"exported"``)."""
    return model.kind in USER_MODEL_KINDS


def fine_tunes(model: ModelConfig) -> bool:
    """Whether the train stage fine-tunes this text model (``kind = "minilm"``, ``fine_tune = true``)."""
    return model.kind == "minilm" and bool(model.fine_tune)


def needs_training(model: ModelConfig) -> bool:
    """A built-in trainable kind without a saved ``path``, or a text encoder to fine-tune."""
    return (model.kind in TRAINABLE and "path" not in model.params) or fine_tunes(model)
