"""Attribution maps for display and comparison: channel reduction, sign, percentile clipping.

:func:`normalize_attributions` turns (B, C, H, W) attributions into (B, H, W) maps:

* ``mode="abs"``: sum over channels of |a|, in [0, 1];
* ``mode="pos"`` / ``"neg"``: the positive / negative part of the channel sum, in [0, 1];
* ``mode="signed"``: the channel sum, in [-1, 1].

Each map is divided by the ``percentile``-th percentile of its absolute values and
clipped to the range (percentile 100: divide by the maximum), so a few extreme pixels
do not wash out the rest. A map that is zero everywhere stays zero.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from debuggable.errors import DebuggableError

Mode = Literal["abs", "pos", "neg", "signed"]
MODES: tuple[str, ...] = ("abs", "pos", "neg", "signed")


def as_tensor(attr: Any, name: str = "attr") -> torch.Tensor:
    """A NumPy array or tensor as a float tensor (device kept), with a clear error otherwise."""
    if isinstance(attr, np.ndarray):
        attr = torch.from_numpy(np.ascontiguousarray(attr))
    if not isinstance(attr, torch.Tensor):
        raise DebuggableError(f"{name}: got a {type(attr).__name__}, expected a NumPy array or a torch tensor.")
    return attr.float() if not attr.is_floating_point() else attr


def reduce_channels(attr: Any, mode: Mode = "abs") -> torch.Tensor:
    """(B, C, H, W) or (B, H, W) -> (B, H, W), before any scaling (see module docstring).

    Raises:
        DebuggableError: for an unknown mode or shape.
    """
    a = as_tensor(attr)
    if mode not in MODES:
        raise DebuggableError(f"mode: got {mode!r}, expected one of {list(MODES)}.")
    if a.ndim == 3:
        a = a.unsqueeze(1)
    if a.ndim != 4:
        raise DebuggableError(f"attr: got shape {tuple(a.shape)}, expected (B, C, H, W) or (B, H, W).")
    if mode == "abs":
        return a.abs().sum(1)
    s = a.sum(1)
    if mode == "pos":
        return s.clamp(min=0)
    if mode == "neg":
        return (-s).clamp(min=0)
    return s


def normalize_attributions(attr: Any, mode: Mode = "abs", *, percentile: float = 99.0) -> torch.Tensor:
    """Display/comparison maps (B, H, W) on the input's device (see module docstring).

    Args:
        attr: (B, C, H, W) or (B, H, W) attributions (tensor or array).
        mode: ``"abs"``, ``"pos"``, ``"neg"`` or ``"signed"``.
        percentile: in (0, 100]; each map is scaled so this percentile of its
            absolute values becomes 1, then clipped.

    Returns:
        float32 tensor (B, H, W): in [0, 1], or [-1, 1] for ``"signed"``.
    """
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise DebuggableError(f"percentile: got {percentile!r}, expected a number in (0, 100].")
    m = reduce_channels(attr, mode).float()
    flat = m.abs().flatten(1)
    if flat.shape[1] == 0:
        raise DebuggableError("attr: got maps with no pixels, expected H and W >= 1.")
    scale = torch.quantile(flat, float(percentile) / 100.0, dim=1) if percentile < 100 else flat.max(1).values
    # A map whose percentile is 0 but which is not all zero falls back to its maximum.
    scale = torch.where(scale > 0, scale, flat.max(1).values)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    out = m / scale[:, None, None]
    lo = -1.0 if mode == "signed" else 0.0
    return out.clamp(lo, 1.0)
