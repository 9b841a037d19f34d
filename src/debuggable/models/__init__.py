"""Backbone adapters, the small built-in models, their trainer and adversarial attacks.

Every adapter implements :class:`Backbone`: ``prepare`` turns a raw batch (images
(B, C, H, W) in [0, 1], or a list of strings) into the network's input, and
``forward`` returns :class:`BackboneOutput` (``features`` (B, D), ``spatial``
(B, C, h, w) or ``None``, ``logits`` (B, K) or ``None``).

Config files name a backbone by kind: ``load_backbone("small_cnn", path="...")``,
``load_backbone("efficientnet_lite0")``, ``load_backbone("minilm")``, ... (see
:data:`BACKBONE_KINDS`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from debuggable.errors import DebuggableError
from debuggable.models._optional import MissingDependencyError
from debuggable.models.attacks import logits_of, pgd_attack, project
from debuggable.models.backbone import Backbone, BackboneOutput
from debuggable.models.cnn import SmallCNN, SmallCNNBackbone
from debuggable.models.finetune import FineTunedMiniLM, fine_tune_text_classifier
from debuggable.models.efficientnet import (
    EfficientNetLite0Backbone,
    packaged_weights_path,
)
from debuggable.models.hooks import ModuleBackbone, layer_names, resolve_layer
from debuggable.models.hub import (
    TimmBackbone,
    hf_text_backbone,
    robustness_backbone,
    robustness_state_dict,
    timm_backbone,
    torchvision_backbone,
)
from debuggable.models.io import (
    architectures,
    load_model,
    read_model_info,
    register_architecture,
    save_model,
)
from debuggable.models.preprocess import ImagePreprocess
from debuggable.models.text import (
    HFTextBackbone,
    MiniLMBackbone,
    mean_pool,
    minilm_model_dir,
)
from debuggable.models.train import (
    AdversarialConfig,
    EpochStats,
    TrainConfig,
    TrainResult,
    evaluate,
    make_attack_config,
    make_train_config,
    train_classifier,
)


register_architecture("minilm_classifier", FineTunedMiniLM)


def _small_cnn(*, path: str) -> SmallCNNBackbone:
    """A saved :class:`SmallCNN` (a directory written by :func:`save_model`)."""
    model = load_model(path)
    if not isinstance(model, SmallCNN):
        raise DebuggableError(f"path: {str(path)!r} holds a {type(model).__name__}, expected a saved SmallCNN.")
    return SmallCNNBackbone(model)


#: kind -> loader; each loader's keyword arguments are the kind's params.
BACKBONE_KINDS: dict[str, Callable[..., Backbone]] = {
    "small_cnn": _small_cnn,
    "efficientnet_lite0": EfficientNetLite0Backbone,
    "minilm": MiniLMBackbone,
    "torchvision": torchvision_backbone,
    "timm": timm_backbone,
    "hf_text": hf_text_backbone,
    "robustness": robustness_backbone,
}


def list_backbones() -> list[str]:
    """The backbone kinds :func:`load_backbone` accepts, sorted."""
    return sorted(BACKBONE_KINDS)


def _loader(kind: str) -> Callable[..., Backbone]:
    if not isinstance(kind, str) or kind not in BACKBONE_KINDS:
        raise DebuggableError(f"kind: got {kind!r}, expected one of {sorted(BACKBONE_KINDS)}.")
    return BACKBONE_KINDS[kind]


def check_backbone_params(kind: str, params: dict[str, Any]) -> None:
    """Check ``kind`` and the names of ``params`` without loading anything.

    Raises:
        DebuggableError: for an unknown kind, an unknown parameter or a missing
            required one.
    """
    loader = _loader(kind)
    sig = inspect.signature(loader)
    accepted = {n: p for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    for name in params:
        if name == "device":
            continue
        if name not in accepted:
            raise DebuggableError(
                f"params: {name!r} is not a parameter of backbone kind {kind!r}; expected some of {sorted(accepted) + ['device']}."
            )
    for name, p in accepted.items():
        if p.default is inspect.Parameter.empty and name not in params:
            raise DebuggableError(f"params: backbone kind {kind!r} needs {name!r}; got only {sorted(params)}.")


def load_backbone(kind: str, **params: Any) -> Backbone:
    """Build a backbone from a config entry.

    Args:
        kind: one of :data:`BACKBONE_KINDS`: ``"small_cnn"`` (``path``: a saved
            model directory), ``"efficientnet_lite0"`` (``weights``, ``image_size``),
            ``"minilm"`` (``model_dir``, ``max_length``), ``"torchvision"``
            (``arch``, ``weights``, ``layer``, ``image_size``), ``"timm"`` (``name``,
            ``checkpoint_path``, ``layer``), ``"hf_text"`` (``name_or_path``,
            ``pooling``, ``normalize``, ``max_length``, ``local_files_only``),
            ``"robustness"`` (``checkpoint_path``, ``arch``, ``layer``, ``image_size``).
        **params: the loader's keyword arguments, plus ``device`` (e.g. ``"cuda"``)
            to move the backbone there.

    Returns:
        The :class:`Backbone`, in eval mode.
    """
    check_backbone_params(kind, params)
    device = params.pop("device", None)
    backbone = _loader(kind)(**params)
    if device is not None:
        try:
            backbone = backbone.to(torch.device(device))
        except (RuntimeError, TypeError, AssertionError) as exc:
            raise DebuggableError(f"device: got {device!r}, which is not usable here ({exc}).") from None
    return backbone.eval()


__all__ = [
    "AdversarialConfig",
    "BACKBONE_KINDS",
    "Backbone",
    "BackboneOutput",
    "EfficientNetLite0Backbone",
    "EpochStats",
    "FineTunedMiniLM",
    "HFTextBackbone",
    "ImagePreprocess",
    "MiniLMBackbone",
    "MissingDependencyError",
    "ModuleBackbone",
    "SmallCNN",
    "SmallCNNBackbone",
    "TimmBackbone",
    "TrainConfig",
    "TrainResult",
    "architectures",
    "check_backbone_params",
    "evaluate",
    "fine_tune_text_classifier",
    "hf_text_backbone",
    "layer_names",
    "list_backbones",
    "load_backbone",
    "load_model",
    "logits_of",
    "make_attack_config",
    "make_train_config",
    "mean_pool",
    "minilm_model_dir",
    "packaged_weights_path",
    "pgd_attack",
    "project",
    "read_model_info",
    "register_architecture",
    "resolve_layer",
    "robustness_backbone",
    "robustness_state_dict",
    "save_model",
    "timm_backbone",
    "torchvision_backbone",
    "train_classifier",
]
