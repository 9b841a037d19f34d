"""The pipeline: stages in order, the demo's config, validation and result summaries.

Stages (each a sub-command of ``debuggable``): ``data`` -> ``train`` -> ``extract``
-> ``fit`` -> ``evaluate`` -> ``report``. Later capabilities add stages to :data:`STAGES`.

Importing this package is cheap (no torch, no scikit-learn): the stage table
(:mod:`~debuggable.pipeline.registry`) imports each stage's module when the stage runs.

* :mod:`~debuggable.pipeline.registry`: :data:`STAGES`, their dependencies and status;
* :mod:`~debuggable.pipeline.runner`: :func:`run_until`, :func:`run_all`, :func:`run_distributed`;
* :mod:`~debuggable.pipeline.validation`: :func:`validate`, :func:`resolve_device`;
* :mod:`~debuggable.pipeline.demos`: the demos' configs;
* :mod:`~debuggable.pipeline.describe`: :func:`describe_results`.
"""

from __future__ import annotations

from typing import Any

from debuggable.pipeline.demos import demo_config, pretrained_demo_config, text_demo_config
from debuggable.pipeline.describe import describe_results
from debuggable.pipeline.registry import BY_NAME, STAGES, dependencies, stage_statuses
from debuggable.pipeline.runner import DISTRIBUTED_STAGES, run_all, run_distributed, run_fit_distributed, run_until
from debuggable.pipeline.stage import Stage, StageContext, run_stage
from debuggable.pipeline.validation import resolve_device, validate

_BY_NAME = BY_NAME


def __getattr__(name: str) -> Any:
    if name == "build_data":  # the data stage's module imports the data sets' loaders
        from debuggable.pipeline.data_stage import build_data

        return build_data
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DISTRIBUTED_STAGES",
    "STAGES",
    "Stage",
    "StageContext",
    "build_data",
    "demo_config",
    "dependencies",
    "describe_results",
    "pretrained_demo_config",
    "resolve_device",
    "run_all",
    "run_distributed",
    "run_fit_distributed",
    "run_stage",
    "run_until",
    "stage_statuses",
    "text_demo_config",
    "validate",
]
