"""The sparse decision layer: one point of an elastic-net path, ready to replace a head.

A :class:`SparseDecisionLayer` holds the chosen point's weights and bias on RAW
features (the GLM path reports its coefficients in the original feature scale), the
feature normalisation the path was fitted under (mean and std per feature), the class
names and the rule that chose the point. Feature importance is read from the
*standardised* weights ``weight * std`` (the weight a one-standard-deviation change
of the feature carries), which makes weights of differently scaled features
comparable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.run.atomic import atomic_directory

WEIGHTS_FILE = "layer.safetensors"
INFO_FILE = "layer.json"


@dataclass
class SparseDecisionLayer:
    """A linear decision layer ``logits = features @ weight.T + bias``.

    Attributes:
        weight: (K, D) float64 weights on raw features; most entries are zero.
        bias: (K,) float64 intercepts.
        mean: (D,) per-feature mean of the training features (the path's normalisation).
        std: (D,) per-feature standard deviation (1 where a feature is constant).
        class_names: K names.
        selection: how the point was chosen (rule, lambda, path index, accuracies).
    """

    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    class_names: list[str]
    selection: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, dtype=np.float64)
        self.bias = np.asarray(self.bias, dtype=np.float64)
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        self.class_names = [str(c) for c in self.class_names]
        if self.weight.ndim != 2:
            raise DebuggableError(f"weight: expected a (K, D) matrix, got shape {self.weight.shape}.")
        k, d = self.weight.shape
        if self.bias.shape != (k,):
            raise DebuggableError(f"bias: expected shape ({k},) to match weight {self.weight.shape}, got {self.bias.shape}.")
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.shape != (d,):
                raise DebuggableError(f"{name}: expected shape ({d},) to match weight {self.weight.shape}, got {v.shape}.")
        if len(self.class_names) != k:
            raise DebuggableError(f"class_names: expected {k} names to match weight {self.weight.shape}, got {len(self.class_names)}.")
        if not (np.all(np.isfinite(self.weight)) and np.all(np.isfinite(self.bias))):
            raise DebuggableError("weight/bias: contain NaN or infinite values; the path point is unusable.")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_path(
        cls,
        path: Any,
        index: int,
        *,
        mean: np.ndarray,
        std: np.ndarray,
        class_names: Sequence[str],
        selection: dict[str, Any] | None = None,
    ) -> "SparseDecisionLayer":
        """Point ``index`` of a GLM path (anything with ``coef`` (L, K, D), ``intercept``
        (L, K) and ``lambdas`` (L,), as :class:`debuggable.glm.GLMPath`)."""
        coef = np.asarray(path.coef)
        if not -coef.shape[0] <= index < coef.shape[0]:
            raise DebuggableError(f"index {index} is outside the path's {coef.shape[0]} points.")
        info = {"path_index": int(index % coef.shape[0]), "lambda": float(np.asarray(path.lambdas)[index])}
        info.update(selection or {})
        return cls(coef[index], np.asarray(path.intercept)[index], mean, std, list(class_names), info)

    # -- structure ----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def feature_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def standardized_weight(self) -> np.ndarray:
        """(K, D) weights on standardised features, ``weight * std``: comparable across features."""
        return self.weight * self.std[None, :]

    @property
    def nnz(self) -> int:
        """Number of non-zero weights."""
        return int(np.count_nonzero(self.weight))

    @property
    def density(self) -> float:
        """Fraction of non-zero weights, in [0, 1]."""
        return self.nnz / self.weight.size

    def features_per_class(self) -> np.ndarray:
        """(K,) number of features each class uses."""
        return np.count_nonzero(self.weight, axis=1)

    def used_features(self) -> np.ndarray:
        """Sorted indices of the features any class uses."""
        return np.flatnonzero(np.any(self.weight != 0, axis=0))

    def top_features(self, class_index: int, k: int | None = None) -> list[tuple[int, float]]:
        """The class's features ranked by |standardised weight|, as ``(feature, weight)``.

        Only non-zero weights are listed; ``k`` caps the list. Weights are standardised.
        """
        if not 0 <= class_index < self.num_classes:
            raise DebuggableError(f"class_index {class_index} is out of range; expected 0..{self.num_classes - 1}.")
        w = self.standardized_weight[class_index]
        order = [int(j) for j in np.argsort(-np.abs(w), kind="stable") if w[j] != 0]
        return [(j, float(w[j])) for j in order[:k]]

    # -- use ----------------------------------------------------------------------------
    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """(N, K) logits for raw features (N, D)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise DebuggableError(f"features: expected shape (N, {self.feature_dim}), got {x.shape}.")
        return x @ self.weight.T + self.bias

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N,) predicted class indices for raw features (N, D)."""
        return self.decision_function(features).argmax(axis=1)

    def as_linear(self, dtype: torch.dtype = torch.float32) -> nn.Linear:
        """An ``nn.Linear(D, K)`` on raw features computing the same logits."""
        lin = nn.Linear(self.feature_dim, self.num_classes, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(self.weight, dtype=dtype))
            lin.bias.copy_(torch.as_tensor(self.bias, dtype=dtype))
        return lin

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``layer.safetensors`` (weight, bias, mean, std) and ``layer.json`` atomically."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            save_file({"weight": self.weight, "bias": self.bias, "mean": self.mean, "std": self.std},
                      str(tmp / WEIGHTS_FILE))
            info = {"format": 1, "class_names": self.class_names, "selection": self.selection,
                    "nnz": self.nnz, "shape": list(self.weight.shape)}
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SparseDecisionLayer":
        """Read a layer written by :meth:`save`."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        if not (directory / WEIGHTS_FILE).is_file() or not (directory / INFO_FILE).is_file():
            raise DebuggableError(f"{str(directory)!r} holds no sparse layer (expected {WEIGHTS_FILE} and {INFO_FILE}).")
        t = load_file(str(directory / WEIGHTS_FILE))
        info = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))
        if info.get("format") != 1:
            raise DebuggableError(f"{str(directory)!r} holds a sparse layer of format {info.get('format')}; expected 1.")
        return cls(t["weight"], t["bias"], t["mean"], t["std"], info["class_names"], info.get("selection", {}))


class DebuggableModel(nn.Module):
    """A backbone followed by a sparse decision layer: the debuggable network.

    ``forward(batch)`` takes what the backbone takes (a raw dataset batch) and returns
    (B, K) logits of the sparse head on the backbone's penultimate features.
    """

    def __init__(self, backbone: nn.Module, layer: SparseDecisionLayer):
        super().__init__()
        feature_dim = getattr(backbone, "feature_dim", None)
        if feature_dim is not None and feature_dim != layer.feature_dim:
            raise DebuggableError(
                f"layer: it reads {layer.feature_dim} features but the backbone gives {feature_dim}."
            )
        self.backbone = backbone
        self.head = layer.as_linear()
        self.class_names = layer.class_names

    def forward(self, batch: Any) -> torch.Tensor:
        features = self.backbone(batch).features
        return self.head(features.to(self.head.weight.dtype))


def debuggable_model(backbone: nn.Module, layer: SparseDecisionLayer) -> DebuggableModel:
    """Backbone + sparse head as one ``nn.Module`` (see :class:`DebuggableModel`)."""
    model = DebuggableModel(backbone, layer)
    device = getattr(backbone, "device", None)
    return model.to(device) if device is not None else model
