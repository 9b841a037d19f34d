"""Saving and loading the built-in models.

A saved model is a directory holding

* ``model.safetensors``: the state dict (``safetensors.torch.save_file``);
* ``model.json``: ``format_version``, ``architecture`` (a name in the registry,
  e.g. ``"small_cnn"``), ``init_kwargs`` (the constructor arguments), the training
  ``config``, ``metrics``, the ``debuggable_version`` that wrote it and the weights'
  SHA-256.

Both files are written to temporary names and renamed into place, ``model.json``
last, so a directory with a ``model.json`` always has the weights it describes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.run.atomic import atomic_write_file, atomic_write_text
from debuggable.models.cnn import SmallCNN, SmallCNNBackbone

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "model.json"

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"small_cnn": SmallCNN}


def register_architecture(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``load_model`` able to rebuild models saved under ``architecture = name``.

    Args:
        name: the architecture name stored in ``model.json``.
        factory: called with the saved ``init_kwargs`` to build an untrained model;
            the model must expose the same ``init_kwargs`` dict and ``architecture``
            name to be saved by :func:`save_model`.
    """
    if not isinstance(name, str) or not name:
        raise DebuggableError(f"name: got {name!r}, expected a non-empty architecture name.")
    if not callable(factory):
        raise DebuggableError(f"factory: got a {type(factory).__name__}, expected a callable building an nn.Module.")
    _ARCHITECTURES[name] = factory


def architectures() -> list[str]:
    """Names of the architectures :func:`load_model` can rebuild."""
    return sorted(_ARCHITECTURES)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"a {type(obj).__name__} is not JSON-serialisable")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unwrap(model: Any) -> nn.Module:
    if isinstance(model, SmallCNNBackbone):
        return model.model
    return model


def save_model(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    config: Mapping[str, Any] | Any | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Save a built-in model (weights + description) into ``directory``.

    Args:
        model: a :class:`SmallCNN` (or its :class:`SmallCNNBackbone`, or any model
            with ``architecture`` and ``init_kwargs`` whose architecture is registered).
        directory: created if missing; ``model.safetensors`` and ``model.json`` in it
            are replaced.
        config: the training configuration (a dict or a pydantic model), stored as is.
        metrics: results to keep with the model (e.g. accuracies), JSON-serialisable.

    Returns:
        The directory as a ``Path``.

    Nothing is written unless the description serialises to JSON.
    """
    model = _unwrap(model)
    arch = getattr(model, "architecture", None)
    init_kwargs = getattr(model, "init_kwargs", None)
    if not isinstance(model, nn.Module) or arch not in _ARCHITECTURES or not isinstance(init_kwargs, dict):
        raise DebuggableError(
            f"model: got a {type(model).__name__}, expected a built-in model with a registered architecture "
            f"({', '.join(architectures())}) and init_kwargs."
        )
    from safetensors.torch import save_file

    import debuggable

    info = {
        "format_version": FORMAT_VERSION,
        "architecture": arch,
        "init_kwargs": dict(init_kwargs),
        "config": config,
        "metrics": dict(metrics) if metrics is not None else {},
        "debuggable_version": debuggable.__version__,
        "torch_version": torch.__version__,
    }
    try:
        json.dumps(info, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DebuggableError(
            f"config/metrics: cannot be written as JSON ({exc}); expected plain numbers, strings, lists and dicts."
        ) from None
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DebuggableError(
            f"directory: {str(directory)!r} exists and is not a directory; expected a directory path."
        )
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    atomic_write_file(weights, lambda tmp: save_file(state, str(tmp), metadata={"architecture": arch, "format": "debuggable"}))
    info["weights_sha256"] = _sha256(weights)
    text = json.dumps(info, indent=2, default=_json_default, allow_nan=False) + "\n"
    atomic_write_text(directory / INFO_FILE, text)
    return directory


def read_model_info(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``model.json`` of a saved model directory (validated)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DebuggableError(
            f"directory: {str(directory)!r} does not exist; expected a directory written by save_model."
        )
    info_path = directory / INFO_FILE
    if not info_path.is_file():
        raise DebuggableError(
            f"directory: {str(directory)!r} has no {INFO_FILE}; expected a directory written by save_model."
        )
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DebuggableError(
            f"directory: {str(info_path)!r} is not valid JSON ({exc}); expected a model.json written by save_model."
        ) from None
    if not isinstance(info, dict):
        raise DebuggableError(f"directory: {str(info_path)!r} holds a {type(info).__name__}, expected a JSON object.")
    version = info.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise DebuggableError(
            f"directory: {str(info_path)!r} has format_version {version!r}, expected 1..{FORMAT_VERSION} "
            "(a newer debuggable may have written it)."
        )
    arch = info.get("architecture")
    if arch not in _ARCHITECTURES:
        raise DebuggableError(
            f"directory: {str(info_path)!r} names architecture {arch!r}, expected one of {architectures()}."
        )
    if not isinstance(info.get("init_kwargs"), dict):
        raise DebuggableError(
            f"directory: {str(info_path)!r} has no init_kwargs object; expected the constructor arguments."
        )
    return info


def load_model(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model`, in eval mode on ``device``.

    Raises:
        DebuggableError: when the directory is missing, its files are missing or
            corrupt, or the weights do not fit the described architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    info = read_model_info(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise DebuggableError(
            f"directory: {str(directory)!r} has no {WEIGHTS_FILE}; expected the weights next to model.json."
        )
    expected = info.get("weights_sha256")
    if isinstance(expected, str) and _sha256(weights) != expected:
        raise DebuggableError(
            f"directory: {str(weights)!r} does not match the checksum in model.json; expected the weights saved with it."
        )
    try:
        model = _ARCHITECTURES[info["architecture"]](**info["init_kwargs"])
    except (TypeError, DebuggableError) as exc:
        raise DebuggableError(
            f"directory: init_kwargs {info['init_kwargs']} cannot build {info['architecture']!r} ({exc})."
        ) from None
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DebuggableError(f"directory: {str(weights)!r} is not a readable safetensors file ({exc}).") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise DebuggableError(
            f"directory: the weights in {str(weights)!r} do not fit {info['architecture']} with {info['init_kwargs']} ({detail})."
        ) from None
    return model.to(device).eval()
