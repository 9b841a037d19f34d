"""One tiny finished run with every study made from it, built once per test process.

Digits with a planted patch, a small and a robust CNN, the failure analysis and
small studies (5 annotators, 2 answers per task) answered by nobody yet: tests that
answer copy it first (:func:`fresh_copy`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from debuggable import pipeline
from debuggable.run import FailuresConfig, InterpretConfig, RunDirectory, StudiesConfig
from debuggable.run.config import (
    DescriptionStudyConfig,
    FailureReviewStudyConfig,
    MisclassificationStudyConfig,
    SimulationStudyConfig,
    SpuriousStudyConfig,
)

from tests.tiny_runs import digits_config

_BUILT: dict[str, Path] = {}


def studies_config(**overrides) -> StudiesConfig:
    parts = dict(
        annotators=5, replication=2, checks_per_annotator=2,
        simulation=SimulationStudyConfig(tasks=6, features=3, feature_images=2),
        spurious=SpuriousStudyConfig(tasks=3, images=2),
        misclassification=MisclassificationStudyConfig(tasks=4, feature_images=2),
        description=DescriptionStudyConfig(groups=2, features=1, images=3),
        failure_review=FailureReviewStudyConfig(groups=1, images=3),
    )
    parts.update(overrides)
    return StudiesConfig(**parts)


def tiny_config(**overrides):
    return digits_config(
        robust="l2", test_fraction=0.3,
        interpret=InterpretConfig(per_class=1, k=3, attack_steps=2, vis_steps=4, lime_samples=8, robust=False,
                                  seeded_vis_steps=0),
        failures=FailuresConfig(depths=[1, 2], k=4, min_group_size=10, min_failures=2, evidence_modes=0,
                                attack_steps=2),
        studies=studies_config(**overrides),
    )


def tiny_study_run(root: Path) -> Path:
    """The run directory (built under ``root`` the first time, then reused)."""
    if "run" not in _BUILT:
        run = RunDirectory.create(Path(root) / "run", tiny_config())
        pipeline.validate(run.config)
        pipeline.run_until(run, "studies", progress=False)
        _BUILT["run"] = run.path
    return _BUILT["run"]


def fresh_copy(root: Path, target: Path) -> RunDirectory:
    """A copy of the tiny run (studies and an empty database included) at ``target``."""
    shutil.copytree(tiny_study_run(root), target)
    return RunDirectory.open(target)
