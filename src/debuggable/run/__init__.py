"""The run directory: typed config, manifest, atomic artifact writes, stage status."""

from debuggable.run.atomic import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_file,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from debuggable.run.config import (
    BugConfig,
    DataConfig,
    EvaluateConfig,
    ExtractConfig,
    GLMConfig,
    ModelConfig,
    ReportConfig,
    RunConfig,
    dumps_config,
    load_config,
    loads_config,
)
from debuggable.run.rundir import FORMAT_VERSION, RunDirectory, ensure_writable

__all__ = [
    "BugConfig",
    "DataConfig",
    "EvaluateConfig",
    "ExtractConfig",
    "GLMConfig",
    "FORMAT_VERSION",
    "ModelConfig",
    "ReportConfig",
    "RunConfig",
    "RunDirectory",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_file",
    "atomic_write_json",
    "atomic_write_text",
    "dumps_config",
    "ensure_writable",
    "load_config",
    "loads_config",
    "read_json",
]
