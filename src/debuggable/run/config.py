"""The typed run configuration, round-tripped to ``run.toml``.

``run`` sits at the bottom of the package graph, so the sections here type the
pipeline's structure (which data, which models, which stages with which knobs) and
keep the parameters of pluggable parts (a loader's keyword arguments, a trainer's
hyper-parameters) as tables that the owning package validates when the stage is
checked, before anything is written (see ``debuggable.pipeline.validate``).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from debuggable.errors import DebuggableError

CONFIG_FILE = "run.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BugConfig(_Section):
    """One planted bug: ``kind`` names a planter in ``debuggable.data.plant``."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Section):
    """Which data set, its loader arguments and the bugs planted into it."""

    name: str = "animal_mnist"
    params: dict[str, Any] = Field(default_factory=dict)
    bugs: list[BugConfig] = Field(default_factory=list)


class ModelConfig(_Section):
    """A model: ``kind`` names a backbone in ``debuggable.models.load_backbone``.

    A built-in trainable kind (``small_cnn``) with no ``path`` in ``params`` is
    trained in the run with the ``train`` hyper-parameters (``debuggable.models.TrainConfig``).
    """

    kind: str = "small_cnn"
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] | None = None


class ExtractConfig(_Section):
    """Feature extraction knobs."""

    splits: list[str] = Field(default_factory=lambda: ["train", "val", "test"])
    batch_size: int = Field(256, ge=1)
    chunk_rows: int | None = Field(None, ge=1)
    spatial: bool = True
    device: str = "auto"


class GLMConfig(_Section):
    """The elastic-net path fitted on a feature store (``debuggable.glm.elastic_net_path``)."""

    store: str = "inspected"
    family: Literal["multinomial", "binomial"] = "multinomial"
    alpha: float = Field(0.99, gt=0, le=1)
    n_lambdas: int = Field(100, ge=2)
    lambda_min_ratio: float = Field(1e-3, gt=0, lt=1)
    tol: float = Field(1e-6, gt=0)
    group: bool = False
    max_time: float | None = Field(None, gt=0)


class EvaluateConfig(_Section):
    """Which path point becomes the sparse layer, and how it is evaluated.

    ``rule``: ``accuracy`` (the sparsest point within ``margin`` of the best validation
    accuracy; the paper uses 0.05), ``features`` (the densest point with at most
    ``per_class`` features per class) or ``lambda`` (the grid point nearest ``lam``).
    """

    rule: Literal["accuracy", "features", "lambda"] = "accuracy"
    margin: float = Field(0.05, ge=0, lt=1)
    per_class: int | None = Field(None, ge=0)
    lam: float | None = Field(None, gt=0)
    top_k: list[int] = Field(default_factory=lambda: [1, 5, 10, 20])
    split: str = "test"


class ReportConfig(_Section):
    title: str = "debuggable report"


class RunConfig(_Section):
    """Everything that made a run directory; saved as ``run.toml`` inside it.

    Attributes:
        version: the debuggable version that wrote the config.
        seed: the seed every stochastic stage derives its own seed from.
        data: the data set and planted bugs.
        model: the model under inspection.
        robust_model: an adversarially robust model for failure analysis, or None.
        extract: feature-extraction settings.
        glm: the elastic-net path.
        evaluate: the choice of the sparse layer and its evaluation.
        report: report settings.
    """

    version: str = "0.1.0"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    robust_model: ModelConfig | None = None
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    glm: GLMConfig = Field(default_factory=GLMConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    def section_hash(self, *names: str) -> str:
        """A short stable hash of the named sections (for staleness checks)."""
        dumped = self.model_dump(mode="json")
        # Where a stage runs does not change what it computes.
        dumped["extract"].pop("device", None)
        payload = json.dumps({n: dumped.get(n) for n in names} | {"seed": self.seed}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _drop_none(obj: Any) -> Any:
    """TOML has no null: drop None values recursively."""
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj if v is not None]
    return obj


def dumps_config(config: RunConfig) -> str:
    """``config`` as TOML text."""
    header = "# debuggable run configuration: `debuggable run <this file>` re-runs every stage.\n"
    return header + tomli_w.dumps(_drop_none(config.model_dump(mode="json")))


def loads_config(text: str, source: str = "run.toml") -> RunConfig:
    """Parse TOML text into a :class:`RunConfig`, with one clear sentence on error."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DebuggableError(f"{source} is not valid TOML: {exc}.") from None
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise DebuggableError(f"{source}: setting {where!r} is invalid: {err['msg']}.") from None


def load_config(path: str | Path) -> RunConfig:
    """Read ``run.toml`` (or the ``run.toml`` inside a directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise DebuggableError(f"config file {str(path)!r} does not exist; expected a run.toml or a run directory holding one.")
    return loads_config(path.read_text(encoding="utf-8"), str(path))
