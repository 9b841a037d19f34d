"""Asking whether an object is a torch tensor without importing torch."""

from __future__ import annotations

import sys
from typing import Any


def is_tensor(obj: Any) -> bool:
    """``isinstance(obj, torch.Tensor)``; False without importing torch when it is not
    loaded yet, since no tensor can exist before it is."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)
