"""Stages ``extract`` and ``fit`` under torchrun (2 gloo processes), and the fit's resume
after an interruption.

The oracles are the single-process run (its feature stores, written in this process)
and ``elastic_net_path`` on the whole training split in this process, with the stage's
settings, compared through the solver's certificate (see tests/glm/test_distributed.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from debuggable import pipeline
from debuggable.glm import GLMPath, elastic_net_path
from debuggable.pipeline.extract_stage import open_store
from debuggable.run import GLMConfig, RunDirectory, read_json

from ..tiny_runs import digits_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A digits run whose stages up to ``extract`` are done (small chunks: 2 ranks get 3+)."""
    # A tight certificate: at the default 1e-5 the certified solutions of one and two
    # processes (or of 1 and 2 threads) may differ in a borderline coefficient's support.
    config = digits_config(epochs=1, chunk_rows=128, glm=GLMConfig(n_lambdas=8, lambda_min_ratio=0.02, tol=1e-9))
    run = RunDirectory.create(tmp_path_factory.mktemp("fitdist") / "run", config)
    pipeline.run_until(run, "extract", progress=False)
    return run


@pytest.fixture(scope="module")
def oracle(extracted) -> GLMPath:
    """``elastic_net_path`` on the single-process stores' training split, with the stage's settings."""
    cfg = extracted.config.glm
    store = open_store(extracted, cfg.store)
    train, val = store.split("train"), store.split("val")
    return elastic_net_path(train, train.labels, family=cfg.family, alpha=cfg.alpha, n_lambdas=cfg.n_lambdas,
                            lambda_min_ratio=cfg.lambda_min_ratio, tol=cfg.tol, group=cfg.group,
                            X_val=val.to_numpy("features"), y_val=val.labels)


def _same_path(got: GLMPath, want: GLMPath, radius_slack: float = 2.0) -> None:
    np.testing.assert_allclose(got.lambdas, want.lambdas, rtol=1e-10)
    assert got.coef.shape == want.coef.shape
    for i, lam in enumerate(want.lambdas):
        g = got.gap[i] * abs(got.objective[i]) + want.gap[i] * abs(want.objective[i])
        assert abs(got.objective[i] - want.objective[i]) <= g + 1e-12
        # radius of the certified solutions, in the standardised scale
        mu = lam * (1 - want.info["alpha"])
        W1 = got.coef[i].T * got.feature_std[:, None]
        W2 = want.coef[i].T * want.feature_std[:, None]
        bound = radius_slack * (np.sqrt(2 * got.gap[i] * abs(got.objective[i]) / mu)
                                + np.sqrt(2 * want.gap[i] * abs(want.objective[i]) / mu))
        assert np.linalg.norm(W1 - W2) <= bound + 1e-9, (i, np.linalg.norm(W1 - W2), bound)


def _same_support(got: GLMPath, want: GLMPath) -> None:
    """Same nonzero pattern at every lambda, unless the coefficients agree to 1e-6 anyway."""
    for i in range(len(want)):
        assert np.array_equal(got.coef[i] != 0, want.coef[i] != 0) or np.abs(got.coef[i] - want.coef[i]).max() < 1e-6


_ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _torchrun_cmd(run: RunDirectory, launch: tuple[str, ...], stage: str, *extra: str) -> list[str]:
    """``torchrun <launch> -m debuggable <stage> RUN --no-progress <extra>`` as an argv."""
    return [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "debuggable", stage, str(run.path),
            "--no-progress", *extra]


def _torchrun(run: RunDirectory, *extra: str, stage: str = "fit", timeout: float = 200) -> subprocess.CompletedProcess:
    cmd = _torchrun_cmd(run, ("--standalone", "--nproc_per_node=2"), stage, *extra)
    return subprocess.run(cmd, cwd=ROOT, env=_ONE_THREAD, capture_output=True, text=True, timeout=timeout)


def test_torchrun_extract_then_fit_equals_the_single_process_run(extracted, oracle, tmp_path):
    """Both stages on 2 processes: the same stores as one process wrote, then the same path
    as one process fits on them."""
    one = extracted
    two = RunDirectory.open(shutil.copytree(one.path, tmp_path / "run"))
    done = _torchrun(two, "--force", stage="extract")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[extract] done on 2 processes" in done.stdout and done.stdout.count("[extract] done") == 1
    summary = read_json(two.path / "features" / "summary.json")
    assert summary["processes"] == 2
    for split in one.config.extract.splits:
        want, got = open_store(one).split(split), open_store(two).split(split)
        assert got.n_rows == want.n_rows and got.layout.n_chunks >= 3
        assert sorted(got.arrays) == sorted(want.arrays)
        for name in got.arrays:  # each rank ran its chunks in the same batches, on one thread
            np.testing.assert_allclose(got.to_numpy(name), want.to_numpy(name), rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-5, atol=1e-6)

    fitted = _torchrun(two, "--force")
    assert fitted.returncode == 0, fitted.stdout + fitted.stderr
    assert fitted.stdout.count("[fit] elastic-net path:") == 1  # rank 0 alone speaks ...
    assert "over 2 processes" in fitted.stdout
    got = GLMPath.load(two.path / "glm")  # ... and writes
    summary = read_json(two.path / "glm" / "summary.json")
    assert summary["processes"] == 2 and summary["all_converged"]
    assert got.info["world_size"] == 2
    assert not (two.path / "glm" / "checkpoint").exists()
    _same_path(got, oracle)
    _same_support(got, oracle)
    np.testing.assert_allclose(got.val_accuracy, oracle.val_accuracy, atol=2.0 / len(open_store(one).split("val")))

    for stage in ("extract", "fit"):
        again = _torchrun(two, stage=stage)
        assert again.returncode == 0 and f"[{stage}] up to date, skipped" in again.stdout, again.stdout + again.stderr


def test_two_torchrun_nodes_on_loopback_fit_the_same_path(extracted, oracle):
    """The multi-node command (`--nnodes 2`, c10d rendezvous), two launchers of one
    process each on this machine, sharing the run directory as nodes share a file system."""
    import socket

    run = extracted
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch = ("--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
              "--rdzv_id=fit-test")
    nodes = [subprocess.Popen(_torchrun_cmd(run, (*launch, f"--node_rank={r}"), "fit", "--force"), cwd=ROOT,
                              env=_ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    outs = [p.communicate(timeout=200) for p in nodes]
    assert all(p.returncode == 0 for p in nodes), outs
    assert sum(out.count("[fit] done on 2 processes") for out, _ in outs) == 1  # one rank 0, on one node
    got = GLMPath.load(run.path / "glm")
    assert got.info["world_size"] == 2
    _same_path(got, oracle)
    _same_support(got, oracle)


def test_torchrun_refuses_other_stages(extracted, monkeypatch, capsys):
    """The CLI under torchrun's environment (as each rank sees it) refuses a one-process stage
    before it starts anything. The real launcher is driven by the tests above."""
    from debuggable.cli import main

    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    assert main(["evaluate", str(extracted.path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "torchrun: only `debuggable extract` and `debuggable fit` run on several processes" in err
    assert not (extracted.path / "layer").exists()  # the evaluate stage's directory


def test_an_interrupted_fit_resumes_from_its_last_saved_lambda(extracted, oracle, monkeypatch):
    run = extracted
    from debuggable.glm.solvers.prox_newton import ProxNewtonSolver

    real = ProxNewtonSolver.solve
    calls = {"n": 0}

    def dies_at_the_fourth(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as a kill would, after three certified lambdas
        return real(self, *a, **kw)

    monkeypatch.setattr(ProxNewtonSolver, "solve", dies_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_until(run, "fit", force=True, progress=False)
    assert pipeline._BY_NAME["fit"].status(run) == "partial"
    assert len(list((run.path / "glm" / "checkpoint").glob("lambda_*.pt"))) == 3
    monkeypatch.setattr(ProxNewtonSolver, "solve", real)
    summary = pipeline.run_until(run, "fit", progress=False)["fit"]
    assert summary["resumed_lambdas"] == 3 and summary["all_converged"]
    got = GLMPath.load(run.path / "glm")
    np.testing.assert_array_equal(got.coef, oracle.coef)  # one process: the same steps, the same bits
    assert not (run.path / "glm" / "checkpoint").exists()
