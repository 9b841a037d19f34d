"""Lazy imports of optional libraries with one clear error when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from debuggable.errors import DebuggableError


class MissingDependencyError(DebuggableError, ImportError):
    """An optional library that a loader needs is not installed."""


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError`.

    Args:
        module: the importable name, e.g. ``"torchvision"``.
        extra: the ``debuggable`` extra that installs it, e.g. ``"vision"``.
        purpose: what needs it, e.g. ``"torchvision_backbone"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {module!r}, which could not be imported "
            f"({exc}); install it with: pip install 'debuggable[{extra}]'."
        ) from None
