"""A tiny trained run (digits, a few epochs) shared by the failures stage tests."""

from __future__ import annotations

import pytest
import torch

from debuggable.pipeline import STAGES, StageContext, run_stage
from debuggable.run import FailuresConfig, RunConfig, RunDirectory
from tests.tiny_runs import digits_config


def tiny_failures_config() -> RunConfig:
    return digits_config(
        test_fraction=0.4, epochs=5, batch_size=32, lr=1e-2, robust="linf", robust_steps=1, chunk_rows=256,
        failures=FailuresConfig(depths=[1, 2], k=5, min_group_size=10, min_failures=3, min_samples_leaf=2,
                                evidence_modes=2, evidence_k=3, attack_steps=3, attack_eps=2.0, attack_step_size=1.0),
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
