"""Distributed path solving: 2 gloo processes on 127.0.0.1, each with its own rows.

The oracle is the single-process path on all rows and the solver's own certificate:
the objective is ``lam (1 - alpha)``-strongly convex in ``W``, so a point whose duality
gap is ``g`` lies within ``sqrt(2 g / (lam (1 - alpha)))`` of the optimum, and two
certified solutions within the sum of their radii (the intercept's optimality is in
the KKT residual, so the bound gets a factor 2 of slack).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from debuggable.glm import elastic_net_path

from .dist_worker import problem
from .oracles import to_standardized

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(case: str, out: Path, *, world: int = 2, timeout: float = 150, extra: dict[int, list[str]] | None = None,
            common: list[str] | None = None) -> list[int]:
    """Start ``world`` worker processes and wait for all; returns their exit codes."""
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = []
    for r in range(world):
        cmd = [sys.executable, "-m", "tests.glm.dist_worker", case, str(r), str(world), str(port), str(out)]
        cmd += (common or []) + ((extra or {}).get(r, []))
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    codes = []
    try:
        for p in procs:
            p.wait(timeout=timeout)
            codes.append(p.returncode)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for r, p in enumerate(procs):
        log = p.stdout.read().decode(errors="replace")
        (out / f"rank{r}.log").write_text(log, encoding="utf-8")
    return codes


def _load(out: Path, rank: int) -> SimpleNamespace:
    d = dict(np.load(out / f"rank{rank}.npz"))
    d["info"] = json.loads((out / f"rank{rank}.json").read_text())
    return SimpleNamespace(**d)


def _check_matches(dist_path, single, X, alpha):
    """Same grid, identical support, coefficients within the certificates' radius."""
    np.testing.assert_allclose(dist_path.lambdas, single.lambdas, rtol=1e-10)
    assert bool(np.all(dist_path.converged)) and bool(np.all(single.converged))
    for i, lam in enumerate(single.lambdas):
        assert np.array_equal(dist_path.coef[i] != 0, single.coef[i] != 0), f"support differs at lambda {i}"
        W1, b1 = to_standardized(dist_path, i, X)
        W2, b2 = to_standardized(single, i, X)
        g1 = dist_path.gap[i] * abs(dist_path.objective[i])
        g2 = single.gap[i] * abs(single.objective[i])
        mu = lam * (1 - alpha)
        radius = np.sqrt(2 * g1 / mu) + np.sqrt(2 * g2 / mu)
        assert np.linalg.norm(W1 - W2) <= 2 * radius + 1e-9, (i, np.linalg.norm(W1 - W2), radius)
        assert abs(dist_path.objective[i] - single.objective[i]) <= g1 + g2 + 1e-12 * abs(single.objective[i])


def _single(case: str):
    X, y, w, kw = problem(case)
    torch.set_num_threads(1)
    return X, y, w, kw, elastic_net_path(X, y, sample_weight=w, **kw)


@pytest.mark.parametrize("case", ["multinomial", "binomial", "gaussian"])
def test_two_ranks_match_single_process(tmp_path, case):
    X, y, w, kw, single = _single(case)
    codes = _launch(case, tmp_path)
    assert codes == [0, 0], (tmp_path / "rank0.log").read_text() + (tmp_path / "rank1.log").read_text()
    r0, r1 = _load(tmp_path, 0), _load(tmp_path, 1)
    assert r0.info["world_size"] == 2 and r0.info["n_samples"] == X.shape[0]
    for key in ("coef", "intercept", "objective", "gap", "kkt"):  # every rank returns the same path
        assert np.array_equal(getattr(r0, key), getattr(r1, key)), key
    # the certificate is over all rows: recompute it here in NumPy
    assert np.all(r0.kkt <= kw["kkt_tol"]) and np.all(r0.gap <= kw["tol"])
    _check_matches(r0, single, X, kw["alpha"])
    if case != "gaussian":
        np.testing.assert_allclose(r0.train_accuracy, single.train_accuracy, atol=2.0 / X.shape[0])


def test_two_ranks_stream_their_rows_of_a_feature_store(tmp_path):
    from debuggable.features.store import FeatureStore, SplitLayout

    X, y, _, kw = problem("binomial_store")
    layout = SplitLayout(n_rows=X.shape[0], chunk_rows=100, feature_dim=X.shape[1])
    store = FeatureStore(tmp_path / "fs", mode="a")
    wr = store.create_split("train", layout, class_names=["a", "b"], fingerprint="fp")
    for c in range(wr.n_chunks):
        lo, hi = wr.chunk_bounds(c)
        wr.write_chunk(c, features=X[lo:hi].astype(np.float32), labels=y[lo:hi].astype(np.int64), fsync=False)
    assert wr.finalize()
    # the oracle on the same float32 numbers the store holds
    single = elastic_net_path(X.astype(np.float32), y, **kw)
    codes = _launch("binomial_store", tmp_path / "out", common=["--store", str(tmp_path / "fs")])
    out = tmp_path / "out"
    assert codes == [0, 0], (out / "rank0.log").read_text() + (out / "rank1.log").read_text()
    r0 = _load(out, 0)
    assert r0.info["solver"] == "prox_newton_streaming"
    _check_matches(r0, single, X.astype(np.float32).astype(np.float64), kw["alpha"])


def test_a_rank_failing_its_checks_fails_every_rank(tmp_path):
    codes = _launch("bad", tmp_path, timeout=90)
    assert codes == [3, 3]
    own = (tmp_path / "rank1.err").read_text()
    other = (tmp_path / "rank0.err").read_text()
    assert "expected finite numbers" in own and "NaN" in own
    assert "expected finite numbers" in other  # the reduced count reaches rank 0 too


def test_killed_rank_fails_the_job_and_a_rerun_resumes(tmp_path):
    X, y, w, kw, single = _single("kill")
    ckpt = tmp_path / "ckpt"
    codes = _launch("kill", tmp_path / "a", common=["--checkpoint", str(ckpt)], extra={1: ["--die-after", "3"]},
                    timeout=120)
    assert codes[1] == -9  # SIGKILL
    assert codes[0] == 3, (tmp_path / "a" / "rank0.log").read_text()
    msg = (tmp_path / "a" / "rank0.err").read_text()
    assert msg.startswith("process_group: ") and "failed on rank 0 of 2" in msg and "resume" in msg
    saved = len(list(ckpt.glob("lambda_*.pt")))
    assert 3 <= saved < len(single.lambdas)
    codes = _launch("kill", tmp_path / "b", common=["--checkpoint", str(ckpt)])
    assert codes == [0, 0], (tmp_path / "b" / "rank0.log").read_text()
    r0 = _load(tmp_path / "b", 0)
    assert r0.info["resumed_lambdas"] >= 3
    _check_matches(r0, single, X, kw["alpha"])


def test_checkpoint_resume_is_bit_identical_in_one_process(tmp_path):
    X, y, w, kw, full = _single("multinomial")
    ckpt = tmp_path / "ckpt"
    first = elastic_net_path(X, y, checkpoint=ckpt, **kw)
    np.testing.assert_array_equal(first.coef, full.coef)
    for f in sorted(ckpt.glob("lambda_*.pt"))[3:]:
        f.unlink()  # as if killed after the third lambda
    again = elastic_net_path(X, y, checkpoint=ckpt, **kw)
    assert again.info["resumed_lambdas"] == 3
    np.testing.assert_array_equal(again.coef, full.coef)
    np.testing.assert_array_equal(again.intercept, full.intercept)
    np.testing.assert_array_equal(again.n_iter, full.n_iter)
    # another problem in the same directory starts over instead of resuming
    other = elastic_net_path(X, y, checkpoint=ckpt, **dict(kw, alpha=0.8))
    assert other.info["resumed_lambdas"] == 0
