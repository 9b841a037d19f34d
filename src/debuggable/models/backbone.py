"""The uniform backbone interface every model adapter implements.

A backbone turns a batch from a :class:`debuggable.data.Dataset` into

* ``features``: the penultimate feature vector, (B, D) float32;
* ``spatial``: the pre-pooling spatial map, (B, C, h, w), when the model has one
  (CNNs; used for CAM heatmaps), else ``None``;
* ``logits``: the original head's output, (B, K), when the model has a head, else
  ``None``.

Adapters own their preprocessing: :meth:`Backbone.prepare` maps a raw batch (images
in [0, 1], or a list of strings) to what the wrapped network eats, so callers never
need to know a model's normalisation or tokenizer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class BackboneOutput:
    """What a backbone returns for one batch (shapes in the module docstring)."""

    features: torch.Tensor
    spatial: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class Backbone(nn.Module, ABC):
    """A network seen as feature extractor + original head.

    Subclasses implement :meth:`prepare` and :meth:`forward_prepared`, and set:

    Attributes:
        modality: ``"image"`` or ``"text"``.
        feature_dim: D, the length of the penultimate feature vector.
        num_classes: K of the original head, or ``None`` when there is no head.
        has_spatial: whether :meth:`forward` fills ``spatial``.
        name: a short description for reports.
    """

    modality: str = "image"
    feature_dim: int
    num_classes: int | None = None
    has_spatial: bool = False
    name: str = "backbone"

    @abstractmethod
    def prepare(self, batch: Any) -> Any:
        """Map a raw dataset batch to the network's input on this module's device.

        Args:
            batch: images (B, C, H, W) float in [0, 1], or a list of B strings.
        """

    @abstractmethod
    def forward_prepared(self, inputs: Any) -> BackboneOutput:
        """Run the network on already prepared inputs."""

    def forward(self, batch: Any) -> BackboneOutput:
        """Features, spatial map and logits for a raw dataset batch."""
        return self.forward_prepared(self.prepare(batch))

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def close(self) -> None:
        """Release what the adapter holds besides its weights (hooks); a no-op here."""

    def __enter__(self) -> "Backbone":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary for manifests and reports."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "modality": self.modality,
            "feature_dim": int(self.feature_dim),
            "num_classes": None if self.num_classes is None else int(self.num_classes),
            "has_spatial": bool(self.has_spatial),
        }
