"""A tiny trained run (digits, a few epochs) shared by the failures stage tests."""

from __future__ import annotations

import pytest
import torch

from debuggable.pipeline import STAGES, StageContext, run_stage
from debuggable.run import (
    BugConfig,
    DataConfig,
    ExtractConfig,
    FailuresConfig,
    ModelConfig,
    RunConfig,
    RunDirectory,
)


def tiny_failures_config() -> RunConfig:
    return RunConfig(
        seed=0,
        data=DataConfig(
            name="digits",
            params={"val_fraction": 0.15, "test_fraction": 0.4, "seed": 0},
            bugs=[BugConfig(kind="spurious_patch", params={
                "target_class": 3, "train_fraction": 0.8, "test_fraction": 0.2,
                "patch": {"shape": "square", "size": 2, "colour": 1.0, "position": "top_left"}, "seed": 0})],
        ),
        model=ModelConfig(kind="small_cnn", params={"width": 8, "feature_dim": 16},
                          train={"epochs": 5, "batch_size": 32, "lr": 1e-2, "optimizer": "adam"}),
        robust_model=ModelConfig(kind="small_cnn", params={"width": 8, "feature_dim": 16},
                                 train={"epochs": 1, "batch_size": 64, "lr": 5e-3, "optimizer": "adam",
                                        "adversarial": {"norm": "linf", "eps": 0.1, "step_size": 0.05, "steps": 1}}),
        extract=ExtractConfig(batch_size=128, chunk_rows=256, spatial=True, device="cpu"),
        failures=FailuresConfig(depths=[1, 2], k=5, min_group_size=10, min_failures=3, min_samples_leaf=2,
                                evidence_modes=2, evidence_k=3, attack_steps=3, attack_eps=2.0,
                                attack_step_size=1.0),
    )


def run_stages(run: RunDirectory, names, **kw) -> dict:
    ctx = StageContext(device=torch.device("cpu"), progress=False, log=lambda msg: None)
    out = {}
    for stage in STAGES:
        if stage.name in names:
            out[stage.name] = run_stage(stage, run, ctx, **kw)
    return out


@pytest.fixture(scope="session")
def tiny_extracted_run(tmp_path_factory):
    """A run directory with data, both models trained and features extracted."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path_factory.mktemp("failures_run") / "run"
        run = RunDirectory.create(path, tiny_failures_config())
        run_stages(run, ("data", "train", "extract"))
    finally:
        torch.set_num_threads(threads)
    return path
