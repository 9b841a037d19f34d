"""Model contamination: re-initialise named layers for a while, then restore them.

The sanity checks randomise a trained network's layers and ask whether an attribution
method notices. :func:`randomizable_layers` lists the layers with weights (convolutions
and linear layers) from the output down; :func:`randomized` is a context manager that
re-initialises exactly the named layers (each with its own ``reset_parameters``, or
PyTorch's default convolution/linear initialisation for an exported module, under
a seeded generator) and puts every saved parameter and buffer back on exit, even after
an exception. :func:`cascading_steps` and :func:`independent_steps` give the layer
sets of the two protocols.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from debuggable.errors import DebuggableError

#: module types that count as layers to randomise
LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def _own_weight(m: nn.Module) -> torch.Tensor | None:
    return dict(m.named_parameters(recurse=False)).get("weight")


def _is_layer(m: nn.Module) -> bool:
    """A ``LAYER_TYPES`` module, or a module that is not one of torch's own classes (an
    exported program's or a TorchScript file's sub-module) holding a weight of 2 or more
    dimensions itself (a convolution or linear layer whose class did not survive export)."""
    if isinstance(m, LAYER_TYPES):
        return True
    if type(m).__module__.startswith("torch.nn.modules"):
        return False
    w = _own_weight(m)
    return w is not None and w.ndim >= 2


def randomizable_layers(model: nn.Module) -> list[str]:
    """Names of ``model``'s layers with weights (``LAYER_TYPES``, or exported modules
    holding such a weight; see :func:`_is_layer`), from the output (last registered)
    to the input (first registered)."""
    names = [name for name, m in model.named_modules() if name and _is_layer(m)]
    return names[::-1]


def _default_init(m: nn.Module) -> None:
    """PyTorch's default initialisation of convolution and linear layers, on any module
    holding ``weight`` (out, in, *kernel) and optionally ``bias``: both uniform in
    +-1/sqrt(fan_in) (``kaiming_uniform_(a=sqrt(5))`` for the weight)."""
    import math

    params = dict(m.named_parameters(recurse=False))
    w = params["weight"]
    fan_in = int(w[0].numel())
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    if params.get("bias") is not None and fan_in > 0:
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(params["bias"], -bound, bound)


def cascading_steps(layers: Sequence[str]) -> list[list[str]]:
    """Cascading randomisation: the top layer, then the top two, ... then all."""
    return [list(layers[: i + 1]) for i in range(len(layers))]


def independent_steps(layers: Sequence[str]) -> list[list[str]]:
    """Independent randomisation: each layer on its own."""
    return [[name] for name in layers]


def _check_names(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    if isinstance(names, str):
        names = [names]
    modules = dict(model.named_modules())
    valid = randomizable_layers(model)
    out = []
    for name in names:
        if name not in modules or not name:
            raise DebuggableError(f"layers: {name!r} is not a sub-module of {type(model).__name__}; expected some of {valid}.")
        m = modules[name]
        if not hasattr(m, "reset_parameters") and not _is_layer(m):
            raise DebuggableError(
                f"layers: {name!r} ({type(m).__name__}) has no reset_parameters() to re-initialise it; "
                f"expected layers such as {valid}."
            )
        out.append(m)
    return out


@contextmanager
def randomized(model: nn.Module, layers: Sequence[str], *, seed: int = 0) -> Iterator[nn.Module]:
    """Re-initialise ``layers`` of ``model`` inside the ``with`` block.

    Args:
        model: modified in place, restored on exit.
        layers: dotted module names (see :func:`randomizable_layers`); every one must
            have ``reset_parameters`` (PyTorch's default initialisation of that layer)
            or be an exported layer holding a weight (initialised the same way).
        seed: layer ``i`` of ``layers`` is drawn under ``torch.manual_seed(seed + i)``
            (the global random state is left as it was).

    Yields:
        ``model``, with the named layers re-initialised.
    """
    modules = _check_names(model, layers)
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    for m in modules:
        for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
            saved.append((t, t.detach().clone()))
    cuda = sorted({t.device for t, _ in saved if t.device.type == "cuda"}, key=str)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            for i, m in enumerate(modules):
                torch.manual_seed(int(seed) + i)
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                else:
                    _default_init(m)
        yield model
    finally:
        with torch.no_grad():
            for t, copy in saved:
                t.copy_(copy)
