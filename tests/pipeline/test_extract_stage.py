"""The extract stage after the train stage retrained a model: the run's stores are replaced."""

import os

import numpy as np
import torch

from debuggable.pipeline import STAGES, StageContext, run_stage
from debuggable.pipeline.data_stage import build_data
from debuggable.pipeline.extract_stage import make_backbone, open_store
from debuggable.run import RunDirectory
from tests.tiny_runs import digits_config


def _run(run: RunDirectory, names, force: bool = False) -> list[str]:
    logs: list[str] = []
    ctx = StageContext(device=torch.device("cpu"), progress=False, log=logs.append)
    for stage in STAGES:
        if stage.name in names:
            run_stage(stage, run, ctx, force=force)
    return logs


def test_retrained_model_replaces_its_features_and_unchanged_ones_are_kept(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = digits_config(epochs=1)
        run = RunDirectory.create(tmp_path / "run", config)
        _run(run, ("data", "train", "extract"))
        before = open_store(run, "inspected").split("test").to_numpy("features")

        # Forced with the same weights: really re-extracted (new files), to the same bytes.
        marker = run.path / "features" / "inspected" / "test" / "_complete.json"
        os.utime(marker, ns=(0, 0))
        logs = _run(run, ("extract",), force=True)
        assert any("[extract] inspected/test" in line for line in logs)
        assert not any("replacing" in line for line in logs)
        assert marker.stat().st_mtime_ns != 0  # written anew
        np.testing.assert_array_equal(open_store(run, "inspected").split("test").to_numpy("features"), before)

        # Another learning rate retrains the model; its stored features are now stale.
        run = RunDirectory.create(tmp_path / "run", digits_config(epochs=1, lr=2e-2))
        logs = _run(run, ("data", "train", "extract"))
        assert sum("replacing" in line for line in logs) == len(config.extract.splits)

        after = open_store(run, "inspected").split("test").to_numpy("features")
        assert not np.allclose(before, after)
        backbone = make_backbone(run, "inspected").eval()
        test = build_data(run.config, StageContext(device=torch.device("cpu"), progress=False))["test"]
        images, _ = test.batch(np.arange(len(test)))
        with torch.no_grad():
            expected = backbone(images.float()).features.numpy()
        np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-5)
    finally:
        torch.set_num_threads(threads)
