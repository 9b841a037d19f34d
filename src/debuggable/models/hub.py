"""Loaders for third-party model zoos, imported lazily.

``torchvision`` and ``timm`` (extra ``debuggable[vision]``) and ``transformers``
(extra ``debuggable[text]``) are imported inside the loaders only; a missing one
raises :class:`MissingDependencyError` naming the extra to install. Weights always
come from local files: nothing here downloads.

Robustness-library checkpoints (MadryLab ``robustness``) store an ``AttackerModel``
state dict: the classifier under ``module.model.``, a second copy under
``module.attacker.model.``, and the input normaliser's ``new_mean``/``new_std``
under ``module.normalizer.`` (``module.`` is missing when saved without
``DataParallel``). :func:`robustness_state_dict` turns that into a plain state dict
plus the normaliser, and :func:`robustness_backbone` applies the normaliser in
``prepare``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models._optional import require
from debuggable.models.backbone import Backbone, BackboneOutput
from debuggable.models.hooks import ModuleBackbone
from debuggable.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from debuggable.models.text import HFTextBackbone

#: torchvision families whose head is "global average pool -> (dropout) -> linear",
#: with the layer whose pooled output is exactly that penultimate vector.
TORCHVISION_FEATURE_LAYERS: dict[str, str] = {
    "resnet": "layer4",
    "resnext": "layer4",
    "wide_resnet": "layer4",
    "regnet": "trunk_output",
    "efficientnet": "features",
    "mobilenet_v2": "features",
    "mnasnet": "layers",
    "shufflenet": "conv5",
    "googlenet": "inception5b",
    "inception": "Mixed_7c",
}


def torchvision_feature_layer(arch: str) -> str | None:
    """The default feature layer for a torchvision architecture name, or ``None``."""
    for prefix, layer in TORCHVISION_FEATURE_LAYERS.items():
        if arch.startswith(prefix):
            return layer
    return None


# -- checkpoints ---------------------------------------------------------
def read_checkpoint(path: str | os.PathLike, *, trust_checkpoint: bool = False, what: str = "checkpoint_path") -> Any:
    """Load a checkpoint file (``.safetensors``, or a torch pickle) on the CPU.

    Torch pickles are read with ``weights_only=True`` (tensors and plain containers
    only) unless ``trust_checkpoint`` is set, which allows arbitrary pickled objects
    and so must only be used for files from a trusted source.
    """
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise DebuggableError(f"{what}: {str(path)!r} does not exist; expected a local checkpoint file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise DebuggableError(
                f"{what}: {str(path)!r} is not a readable safetensors file ({type(exc).__name__})."
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except Exception as exc:
        if not trust_checkpoint and "Unsupported global" in str(exc):
            raise DebuggableError(
                f"{what}: {str(path)!r} holds pickled Python objects besides tensors; "
                "expected a weights-only checkpoint, or pass trust_checkpoint=True if you trust its source."
            ) from None
        raise DebuggableError(
            f"{what}: {str(path)!r} could not be read as a torch checkpoint ({type(exc).__name__})."
        ) from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(checkpoint: Any, *, what: str = "checkpoint_path") -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: itself, or its ``'model'``/``'state_dict'`` entry."""
    if _is_state_dict(checkpoint):
        return dict(checkpoint)
    if isinstance(checkpoint, Mapping):
        for key in ("model", "state_dict", "model_state_dict", "model_state"):
            if _is_state_dict(checkpoint.get(key)):
                return dict(checkpoint[key])
        keys = sorted(str(k) for k in checkpoint)[:10]
        raise DebuggableError(
            f"{what}: the checkpoint has keys {keys} but no state dict; expected tensors or a 'model'/'state_dict' entry."
        )
    raise DebuggableError(f"{what}: the checkpoint is a {type(checkpoint).__name__}, expected a state dict.")


def _strip(prefix: str, key: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def robustness_state_dict(
    checkpoint: Any,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
    """Split a robustness-library checkpoint into the classifier's state dict and its normaliser.

    Args:
        checkpoint: the loaded checkpoint: a dict with ``'model'`` or ``'state_dict'``
            (or the state dict itself).

    Returns:
        ``(state_dict, mean, std)``: the classifier's weights with the
        ``module.``/``model.`` prefixes stripped and the ``attacker.`` copy dropped;
        ``mean``/``std`` (C,) from ``normalizer.new_mean``/``new_std`` (``None`` when
        the checkpoint has no normaliser).
    """
    raw = extract_state_dict(checkpoint)
    keys = {_strip("module.", k): v for k, v in raw.items()}
    wrapped = any(k.startswith("model.") for k in keys)
    state: dict[str, torch.Tensor] = {}
    mean = std = None
    for key, value in keys.items():
        if key.startswith("attacker."):
            continue
        if key.startswith("normalizer."):
            if key.endswith("new_mean"):
                mean = value.detach().reshape(-1).float()
            elif key.endswith("new_std"):
                std = value.detach().reshape(-1).float()
            continue
        if wrapped:
            if not key.startswith("model."):
                raise DebuggableError(
                    f"checkpoint_path: unexpected key {key!r} in a robustness checkpoint; expected 'model.', 'attacker.' or 'normalizer.' entries."
                )
            key = key[len("model.") :]
        state[key] = value
    if not state:
        raise DebuggableError(
            "checkpoint_path: the robustness checkpoint holds no classifier weights ('module.model.*'); expected an AttackerModel state dict."
        )
    return state, mean, std


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], *, what: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with a one-sentence error on mismatch."""
    result_missing: list[str] = []
    try:
        result = model.load_state_dict(state, strict=False)
        result_missing = list(result.missing_keys)
        unexpected = list(result.unexpected_keys)
    except RuntimeError as exc:  # shape mismatches
        line = str(exc).strip().splitlines()
        detail = " ".join(s.strip() for s in line[1:3]) or line[0]
        raise DebuggableError(f"{what}: the weights do not fit {type(model).__name__} ({detail}).") from None
    if result_missing or unexpected:
        raise DebuggableError(
            f"{what}: the weights do not fit {type(model).__name__} (missing {result_missing[:4]}, "
            f"unexpected {unexpected[:4]}); expected a checkpoint of this architecture."
        )


# -- torchvision ---------------------------------------------------------
def _torchvision_model(arch: str, num_classes: int | None = None, aux_logits: bool = False) -> nn.Module:
    tv = require("torchvision", extra="vision", purpose="torchvision_backbone")
    if not isinstance(arch, str) or not arch:
        raise DebuggableError(f"arch: got {arch!r}, expected a torchvision model name such as 'resnet50'.")
    names = list(tv.models.list_models(module=tv.models))
    if arch not in names:
        import difflib

        close = difflib.get_close_matches(arch, names, n=5)
        raise DebuggableError(f"arch: {arch!r} is not a torchvision classification model; closest are {close}.")
    kwargs: dict[str, Any] = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if arch.startswith(("inception", "googlenet")):
        kwargs["aux_logits"] = aux_logits
        kwargs["init_weights"] = False
    return tv.models.get_model(arch, **kwargs)


def _layer_for(model: nn.Module, arch_name: str, layer: str | None) -> str:
    if layer is not None:
        return layer
    default = torchvision_feature_layer(arch_name) or getattr(model, "default_feature_layer", None)
    if default is None:
        families = ", ".join(sorted(TORCHVISION_FEATURE_LAYERS))
        raise DebuggableError(
            f"layer: no default feature layer is known for {arch_name!r} (known families: {families}); "
            "expected layer= naming the sub-module whose output to use."
        )
    return default


def torchvision_backbone(
    arch: str,
    *,
    weights: str | os.PathLike | None = None,
    layer: str | None = None,
    image_size: int | None = None,
    pool: str = "avg",
) -> ModuleBackbone:
    """A torchvision classifier as a backbone (needs ``debuggable[vision]``).

    Args:
        arch: a torchvision model name, e.g. ``"resnet50"``.
        weights: ``None`` (random initialisation) or a local state-dict file
            (``.pth``/``.pt`` read with ``weights_only=True``, or ``.safetensors``);
            the number of classes follows the checkpoint's ``fc``/``classifier``.
        layer: the feature layer; default per family (``TORCHVISION_FEATURE_LAYERS``,
            e.g. ``"layer4"`` for ResNets, the map right before the global pool).
        image_size: input side length; default 299 for Inception-v3, else 224.
        pool: ``"avg"`` or ``"flatten"`` (see :class:`ModuleBackbone`).

    Returns:
        A :class:`ModuleBackbone` in eval mode whose ``prepare`` repeats grayscale to
        RGB, resizes and applies the ImageNet mean/std.
    """
    state = None
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise DebuggableError(f"weights: got a {type(weights).__name__}, expected None or a local checkpoint path.")
        if not Path(os.path.expanduser(str(weights))).is_file():
            raise DebuggableError(
                f"weights: {str(weights)!r} is not a file; expected None or a local checkpoint path "
                "(debuggable never downloads weights)."
            )
        state = {
            _strip("module.", k): v
            for k, v in extract_state_dict(read_checkpoint(weights, what="weights"), what="weights").items()
        }
    num_classes = None
    if state is not None:
        for key in (
            "fc.weight",
            "classifier.weight",
            "classifier.1.weight",
            "classifier.3.weight",
            "classifier.6.weight",
        ):
            if key in state and state[key].ndim == 2:
                num_classes = int(state[key].shape[0])
    aux = state is not None and any(k.startswith(("AuxLogits.", "aux1.", "aux2.")) for k in state)
    model = _torchvision_model(arch, num_classes, aux_logits=aux)
    if state is not None:
        load_state_dict_strict(model, state, what="weights")
    size = image_size or (299 if arch.startswith("inception") else 224)
    backbone = ModuleBackbone(
        model,
        _layer_for(model, arch, layer),
        preprocess=ImagePreprocess(channels=3, size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        pool=pool,
        name=f"torchvision:{arch}",
        input_shape=(3, size, size),
    )
    return backbone.eval()


# -- timm ----------------------------------------------------------------
class TimmBackbone(Backbone):
    """A timm model through its own ``forward_features`` / ``forward_head`` split.

    ``spatial`` is ``forward_features`` when that is a (B, C, h, w) map (CNNs;
    ``None`` for token outputs), ``features`` is ``forward_head(., pre_logits=True)``
    (the model's own pooling, e.g. the class token for ViTs) and ``logits`` is
    ``forward_head(.)`` (``None`` for a model without a classifier).
    """

    modality = "image"

    def __init__(self, model: nn.Module, *, preprocess: nn.Module, name: str, input_shape: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.name = name
        self.feature_dim = None  # type: ignore[assignment]
        self.num_classes = None
        self.has_spatial = False
        self.eval()
        with torch.no_grad():
            self.forward(torch.zeros((1, *input_shape)))

    def prepare(self, batch: Any) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> the model's resized, normalised input."""
        return self.preprocess(batch)

    def forward_prepared(self, inputs: torch.Tensor) -> BackboneOutput:
        """features (B, D), spatial (B, C, h, w) or ``None``, logits (B, K) or ``None``."""
        fmap = self.model.forward_features(inputs)
        features = self.model.forward_head(fmap, pre_logits=True)
        has_head = int(getattr(self.model, "num_classes", 0) or 0) > 0
        logits = self.model.forward_head(fmap) if has_head else None
        spatial = fmap if fmap.ndim == 4 else None
        self.feature_dim = int(features.shape[1])
        self.has_spatial = spatial is not None
        self.num_classes = None if logits is None else int(logits.shape[1])
        return BackboneOutput(features=features, spatial=spatial, logits=logits)


def timm_backbone(
    name: str,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    layer: str | None = None,
    pool: str = "avg",
) -> Backbone:
    """A timm model as a backbone (needs ``debuggable[vision]``).

    Args:
        name: a timm model name, e.g. ``"resnet50"`` or ``"vit_small_patch16_224"``.
        checkpoint_path: a local checkpoint (``.safetensors``, or a torch file read
            with ``weights_only=True``); ``None`` keeps the random initialisation.
        layer: ``None`` uses timm's ``forward_features``/``forward_head`` split
            (:class:`TimmBackbone`); a sub-module name hooks that layer instead
            (:class:`ModuleBackbone` with ``pool``).

    Returns:
        A backbone in eval mode whose ``prepare`` resizes to the model's input size
        and applies its mean/std (from timm's data config).
    """
    timm = require("timm", extra="vision", purpose="timm_backbone")
    if not isinstance(name, str) or not name:
        raise DebuggableError(f"name: got {name!r}, expected a timm model name such as 'resnet50'.")
    state = None
    if checkpoint_path is not None:
        state = {_strip("module.", k): v for k, v in extract_state_dict(read_checkpoint(checkpoint_path)).items()}
    kwargs: dict[str, Any] = {"pretrained": False}
    if state is not None:
        for key in ("head.fc.weight", "head.weight", "fc.weight", "classifier.weight"):
            if key in state and state[key].ndim == 2:
                kwargs["num_classes"] = int(state[key].shape[0])
                break
    try:
        model = timm.create_model(name, **kwargs)
    except RuntimeError as exc:
        raise DebuggableError(f"name: timm cannot build {name!r} ({exc}).") from None
    if state is not None:
        load_state_dict_strict(model, state, what="checkpoint_path")
    cfg = timm.data.resolve_data_config({}, model=model)
    input_shape = tuple(int(s) for s in cfg["input_size"])
    preprocess = ImagePreprocess(
        channels=input_shape[0], size=input_shape[1:], mean=tuple(cfg["mean"]), std=tuple(cfg["std"])
    )
    if layer is None:
        return TimmBackbone(model, preprocess=preprocess, name=f"timm:{name}", input_shape=input_shape)
    backbone = ModuleBackbone(
        model, layer, preprocess=preprocess, pool=pool, name=f"timm:{name}:{layer}", input_shape=input_shape
    )
    return backbone.eval()


# -- Hugging Face text ---------------------------------------------------
def hf_text_backbone(
    name_or_path: str | os.PathLike,
    *,
    pooling: str = "mean",
    normalize: bool = False,
    max_length: int = 128,
    local_files_only: bool = True,
) -> HFTextBackbone:
    """A Hugging Face encoder as a text backbone (needs ``debuggable[text]``).

    Args:
        name_or_path: a local model directory, or a hub id already in the local cache.
        pooling: ``"mean"`` over the attention mask, or ``"cls"`` (first token).
        normalize: L2-normalise the pooled vector.
        max_length: the token limit per text.
        local_files_only: never contact the hub (default).

    Returns:
        An :class:`HFTextBackbone` (features (B, hidden_size), no spatial map, no logits).
    """
    return HFTextBackbone(
        name_or_path, pooling=pooling, normalize=normalize, max_length=max_length, local_files_only=local_files_only
    )


# -- robustness library ----------------------------------------------------
def robustness_backbone(
    checkpoint_path: str | os.PathLike,
    arch: str | nn.Module = "resnet50",
    *,
    layer: str | None = None,
    image_size: int | None = None,
    pool: str = "avg",
    trust_checkpoint: bool = False,
) -> ModuleBackbone:
    """An adversarially trained robustness-library model as a backbone.

    Args:
        checkpoint_path: the ``.pt`` file saved by MadryLab's ``robustness`` library.
        arch: a torchvision architecture name (needs ``debuggable[vision]``; the
            robustness ImageNet models share torchvision's layer names), or an
            ``nn.Module`` of the right architecture to load the weights into.
        layer: the feature layer; default per torchvision family (``"layer4"`` for
            ResNets) or the module's ``default_feature_layer``.
        image_size: input side length; default 224 for a torchvision arch, else the
            input's own size.
        pool: ``"avg"`` or ``"flatten"``.
        trust_checkpoint: allow pickled Python objects in the file (only for trusted files).

    Returns:
        A :class:`ModuleBackbone` in eval mode whose ``prepare`` applies the
        checkpoint's own normaliser (ImageNet mean/std when it has none).
    """
    ckpt = read_checkpoint(checkpoint_path, trust_checkpoint=trust_checkpoint)
    state, mean, std = robustness_state_dict(ckpt)
    if isinstance(arch, nn.Module):
        model, arch_name = arch, type(arch).__name__
        size = image_size
    elif isinstance(arch, str):
        num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else None
        aux = any(k.startswith(("AuxLogits.", "aux1.", "aux2.")) for k in state)
        model, arch_name = _torchvision_model(arch, num_classes, aux_logits=aux), arch
        size = image_size or 224
    else:
        raise DebuggableError(f"arch: got a {type(arch).__name__}, expected a torchvision model name or an nn.Module.")
    load_state_dict_strict(model, state, what="checkpoint_path")
    mean_t = mean if mean is not None else torch.tensor(IMAGENET_MEAN)
    std_t = std if std is not None else torch.tensor(IMAGENET_STD)
    channels = int(mean_t.numel())
    preprocess = ImagePreprocess(channels=channels, size=size, mean=mean_t.tolist(), std=std_t.tolist())
    backbone = ModuleBackbone(
        model,
        _layer_for(model, arch_name, layer),
        preprocess=preprocess,
        pool=pool,
        name=f"robustness:{arch_name}",
        input_shape=(channels, size, size) if size is not None else None,
    )
    return backbone.eval()
