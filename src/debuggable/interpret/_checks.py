"""Input checks shared by the interpretation methods (one clear sentence each)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from debuggable.errors import DebuggableError


def check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise DebuggableError(f"{name}: got {value!r}, expected an integer >= {minimum}.")
    return int(value)


def check_float(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite float >= ``minimum`` (> with ``strict``), else raise."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        rel = ">" if strict else ">="
        raise DebuggableError(f"{name}: got {value!r}, expected a finite number {rel} {minimum}.")
    return float(value)


def check_feature(feature: Any, dim: int, name: str = "feature") -> int:
    """A feature index in ``0..dim-1``, else raise."""
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)):
        raise DebuggableError(f"{name}: got {feature!r}, expected an integer feature index in 0..{dim - 1}.")
    if not 0 <= int(feature) < dim:
        raise DebuggableError(f"{name}: index {int(feature)} is out of range; expected 0..{dim - 1} for {dim} features.")
    return int(feature)


def check_image_backbone(backbone: Any, method: str) -> None:
    """Raise unless ``backbone`` is an image model (a text model has no pixels to attack)."""
    modality = getattr(backbone, "modality", None)
    if modality is None or not callable(backbone):
        raise DebuggableError(
            f"backbone: got a {type(backbone).__name__}, expected a debuggable.models.Backbone for {method}."
        )
    if modality != "image":
        raise DebuggableError(
            f"backbone: {method} works on image models, but this backbone's modality is {modality!r}; "
            "use word_lime / word_clouds for text models."
        )


def check_images(images: Any, name: str = "images") -> torch.Tensor:
    """A float tensor (B, C, H, W) with values in [0, 1], else raise."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise DebuggableError(f"{name}: got {shape}, expected a float array of images (B, C, H, W) in [0, 1].")
    if images.shape[0] == 0:
        raise DebuggableError(f"{name}: got no images (shape {tuple(images.shape)}); expected at least one.")
    lo, hi = float(images.min()), float(images.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-6 or hi > 1 + 1e-6:
        raise DebuggableError(f"{name}: values lie in [{lo:.3g}, {hi:.3g}], expected images in [0, 1].")
    return images


def feature_dim_of(backbone: Any) -> int:
    dim = getattr(backbone, "feature_dim", None)
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise DebuggableError(f"backbone: a {type(backbone).__name__} has no feature_dim; expected a Backbone.")
    return int(dim)


def resolve_device(device: Any, backbone: Any) -> torch.device:
    """``device`` if given, else the backbone's device."""
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError):
            raise DebuggableError(f"device: got {device!r}, expected a torch device such as 'cpu' or 'cuda'.") from None
    dev = getattr(backbone, "device", None)
    return dev if isinstance(dev, torch.device) else torch.device("cpu")


class eval_mode:
    """Context manager: put a module in eval mode and restore every sub-module's flag."""

    def __init__(self, module: Any):
        self.modes = [(m, m.training) for m in module.modules()] if isinstance(module, torch.nn.Module) else []
        self.module = module

    def __enter__(self):
        if isinstance(self.module, torch.nn.Module):
            self.module.eval()
        return self.module

    def __exit__(self, *exc) -> None:
        for m, mode in self.modes:
            m.training = mode
