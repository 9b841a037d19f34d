"""debuggable: make trained deep networks debuggable.

Sub-packages, bottom to top: ``run`` (run directory), ``data`` (datasets),
``models`` (backbones and trainers), ``features`` (feature store and extraction),
``report`` (static HTML report) and the ``debuggable`` command in ``cli``.
"""

__version__ = "0.1.0"

from debuggable.errors import DebuggableError

__all__ = ["__version__", "DebuggableError"]
