"""Shared helpers: a linear head on standardised features, as torch tensors.

Every method of :mod:`debuggable.debug` reads a decision layer the same way: raw
features ``x`` (N, D), the normalisation ``mean``/``std`` (D,) it was fitted under,
and ``logits = z @ ws.T + bs`` with ``z = (x - mean) / std``, ``ws = weight * std``
(standardised weights) and ``bs = bias + weight @ mean``. Removing feature j (setting
it to its training mean) is then ``z[:, j] = 0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from debuggable.errors import DebuggableError


def as_device(device: Any, *tensors: Any) -> torch.device:
    """``device`` if given, else the device of the first torch tensor among ``tensors``, else CPU."""
    if device is not None:
        return torch.device(device)
    for t in tensors:
        if isinstance(t, torch.Tensor):
            return t.device
    return torch.device("cpu")


def to_tensor(a: Any, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(a), device=device, dtype=dtype)


def check_features_labels(features: Any, labels: Any, feature_dim: int, num_classes: int) -> tuple[Any, Any]:
    """Validate shapes and label range; returns the inputs unchanged."""
    shape = tuple(features.shape) if hasattr(features, "shape") else None
    if shape is None or len(shape) != 2 or shape[1] != feature_dim:
        raise DebuggableError(f"features: expected shape (N, {feature_dim}), got {shape}.")
    lshape = tuple(labels.shape) if hasattr(labels, "shape") else None
    if lshape != (shape[0],):
        raise DebuggableError(f"labels: expected shape ({shape[0]},) to match features, got {lshape}.")
    if shape[0] == 0:
        raise DebuggableError("features: got 0 rows; expected at least one example.")
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise DebuggableError(
            f"labels: values range over [{int(lab.min())}, {int(lab.max())}]; expected class indices in [0, {num_classes - 1}]."
        )
    return features, labels


def standardised_head(weight: Any, bias: Any, mean: Any, std: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ws, bs)``: (K, D) standardised weights and (K,) the bias at the mean feature."""
    w = to_tensor(weight, device)
    b = to_tensor(bias, device)
    m = to_tensor(mean, device)
    s = to_tensor(std, device)
    return w * s[None, :], b + w @ m


def standardise(features: Any, mean: Any, std: Any, device: torch.device) -> torch.Tensor:
    """(N, D) ``(x - mean) / std`` as float64 on ``device``."""
    x = to_tensor(features, device)
    return (x - to_tensor(mean, device)) / to_tensor(std, device)
