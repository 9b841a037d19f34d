"""Any ``nn.Module`` plus a layer name as a :class:`Backbone`.

A forward hook on the named layer captures its output during the model's own forward
pass, so the adapter needs nothing from the model but its module tree:

* a 4-D output (B, C, h, w) is the ``spatial`` map and ``features`` is its global
  average pool (B, C) (or its flattening, (B, C*h*w), with ``pool="flatten"``);
* a 3-D output (B, N, D) (tokens) gives ``features`` = mean over the N tokens
  (or the flattening);
* a 2-D output (B, D) is ``features`` as it is;
* ``logits`` is the model's own output when that is a (B, K) tensor (or the first
  element of a tuple, or an object's ``.logits``), else ``None``.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Sequence

import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models.backbone import Backbone, BackboneOutput

_MAX_LISTED = 25


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of all sub-modules of ``model`` (as in ``named_modules()``), root excluded."""
    return [n for n, _ in model.named_modules() if n]


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    """The sub-module of ``model`` called ``layer`` (a dotted name from ``named_modules()``).

    Raises:
        DebuggableError: when no such sub-module exists; the message lists the closest
            matches and (up to 25 of) the valid names.
    """
    if not isinstance(layer, str) or not layer:
        raise DebuggableError(f"layer: got {layer!r}, expected a non-empty dotted module name such as 'layer4'.")
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return modules[layer]
    names = layer_names(model)
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hint = f"closest matches are {close}; " if close else ""
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    raise DebuggableError(
        f"layer: {layer!r} is not a sub-module of {type(model).__name__}; {hint}valid names are {shown}{more}."
    )


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    for attr in ("last_hidden_state", "logits"):
        t = getattr(value, attr, None)
        if isinstance(t, torch.Tensor):
            return t
    return None


def _logits_of(output: Any) -> torch.Tensor | None:
    logits = getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        logits = _first_tensor(output)
    if isinstance(logits, torch.Tensor) and logits.ndim == 2:
        return logits
    return None


def _move_to(batch: Any, device: torch.device) -> Any:
    """The default preprocessing: tensors (or a dict of them) moved to ``device`` unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], str):
        raise DebuggableError(
            "preprocess: got a batch of strings but no preprocess function; pass preprocess= that tokenizes them."
        )
    return torch.as_tensor(batch).to(device)


class ModuleBackbone(Backbone):
    """Wrap any network and read its features from one named layer.

    Args:
        model: the network; ``model(prepared_batch)`` must run its forward pass
            (a dict input is passed as keyword arguments, a tuple as positional ones).
        layer: a dotted sub-module name from ``model.named_modules()``, e.g. ``"layer4"``.
        preprocess: maps a raw batch (images (B, C, H, W) in [0, 1], or a list of
            strings) to the model's input; an ``nn.Module`` preprocess moves with the
            backbone. Default: move tensors to the model's device unchanged.
        pool: how a spatial (4-D) or token (3-D) output becomes ``features``:
            ``"avg"`` (mean over positions; (B, C)) or ``"flatten"`` (B, C*h*w).
        name: a short description for reports; default ``"<ModelClass>:<layer>"``.
        modality: ``"image"`` or ``"text"``.
        input_shape: shape of ONE raw item, e.g. ``(3, 224, 224)``; when given, a
            zero batch is run once (eval mode, no gradients) so ``feature_dim``,
            ``num_classes`` and ``has_spatial`` are known before the first real batch.
            Otherwise they are filled in by the first forward pass.

    The forward hook exists only while this adapter's own forward call runs (it is
    removed in a ``finally`` block, even when the model raises), so nothing is left
    on the wrapped model between calls, calling the model directly records nothing,
    and the adapter can be deep-copied or pickled like any module.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        *,
        preprocess: Callable[[Any], Any] | None = None,
        pool: str = "avg",
        name: str | None = None,
        modality: str = "image",
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise DebuggableError(f"model: got a {type(model).__name__}, expected a torch.nn.Module.")
        if pool not in ("avg", "flatten"):
            raise DebuggableError(f"pool: got {pool!r}, expected 'avg' or 'flatten'.")
        if modality not in ("image", "text"):
            raise DebuggableError(f"modality: got {modality!r}, expected 'image' or 'text'.")
        self.model = model
        self.layer = layer
        # Kept out of the sub-module registry so the state dict has no duplicate keys.
        object.__setattr__(self, "_layer_module", resolve_layer(model, layer))
        self.pool = pool
        self.modality = modality
        self.name = name or f"{type(model).__name__}:{layer}"
        if preprocess is not None and not callable(preprocess):
            raise DebuggableError(f"preprocess: got a {type(preprocess).__name__}, expected a callable or None.")
        if isinstance(preprocess, nn.Module):
            self.preprocess_module = preprocess  # registered, so it moves with .to(device)
        object.__setattr__(self, "_preprocess", preprocess)
        self.feature_dim = None  # type: ignore[assignment]
        self.num_classes = None
        self.has_spatial = False
        if input_shape is not None:
            self.probe(input_shape)

    # -- Backbone interface ----------------------------------------------
    def prepare(self, batch: Any) -> Any:
        """Raw batch -> the wrapped model's input (via ``preprocess``)."""
        if self._preprocess is None:
            return _move_to(batch, self.device)
        return self._preprocess(batch)

    def forward_prepared(self, inputs: Any) -> BackboneOutput:
        """Run the model once; features/spatial from the hooked layer, logits from the output.

        Returns:
            :class:`BackboneOutput` with ``features`` (B, D), ``spatial`` (B, C, h, w)
            for a 4-D layer output else ``None``, ``logits`` (B, K) or ``None``.
        """
        captured: list[Any] = []
        handle = self._layer_module.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            if isinstance(inputs, dict):
                output = self.model(**inputs)
            elif isinstance(inputs, tuple):
                output = self.model(*inputs)
            else:
                output = self.model(inputs)
        finally:
            handle.remove()
        if not captured:
            raise DebuggableError(
                f"layer: {self.layer!r} did not run during the forward pass of {type(self.model).__name__}; "
                "expected a layer on the forward path."
            )
        act = _first_tensor(captured[-1])
        if act is None:
            raise DebuggableError(
                f"layer: {self.layer!r} returned a {type(captured[-1]).__name__}, expected a tensor (or a tuple starting with one)."
            )
        if act.ndim < 2:
            raise DebuggableError(
                f"layer: {self.layer!r} returned shape {tuple(act.shape)}, expected a batch of shape (B, D), (B, N, D) or (B, C, h, w)."
            )
        spatial = act if act.ndim == 4 else None
        if act.ndim == 2:
            features = act
        elif self.pool == "flatten":
            features = act.flatten(1)
        elif act.ndim == 3:
            features = act.mean(dim=1)
        else:
            features = act.mean(dim=tuple(range(2, act.ndim)))
        logits = _logits_of(output)
        self.feature_dim = int(features.shape[1])
        self.has_spatial = spatial is not None
        self.num_classes = None if logits is None else int(logits.shape[1])
        return BackboneOutput(features=features, spatial=spatial, logits=logits)

    def probe(self, input_shape: Sequence[int], dtype: torch.dtype = torch.float32) -> BackboneOutput:
        """Run one zero item of shape ``input_shape`` to learn the output shapes.

        The model runs in eval mode without gradients; each sub-module's train/eval
        flag is restored afterwards.
        """
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise DebuggableError(
                f"input_shape: got {input_shape!r}, expected the positive shape of one item, e.g. (3, 224, 224)."
            )
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            with torch.no_grad():
                return self.forward(torch.zeros((1, *shape), dtype=dtype))
        finally:
            for m, mode in modes:
                m.training = mode

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": type(self).__name__,
            "modality": self.modality,
            "feature_dim": None if self.feature_dim is None else int(self.feature_dim),
            "num_classes": None if self.num_classes is None else int(self.num_classes),
            "has_spatial": bool(self.has_spatial),
            "model": type(self.model).__name__,
            "layer": self.layer,
            "pool": self.pool,
        }
