"""Smoke test of ``benchmarks/glm_scale.py`` on a tiny store (bounded in time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "glm_scale.py"
pytestmark = pytest.mark.timeout(300)


def _rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_store_out_of_core_and_ranks(tmp_path):
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, str(SCRIPT), "make-store", "--out", str(store), "--rows", "16000",
                           "--features", "256", "--classes", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (rec,) = _rows(done.stdout)
    assert rec["kind"] == "store" and rec["bytes"] == 16000 * 256 * 4
    from debuggable.features.store import FeatureStore

    split = FeatureStore(store, mode="r").split("train")
    assert split.shape == (16000, 256) and split.n_chunks >= 32  # written chunk by chunk
    assert set(np.unique(split.labels)) == {0, 1}

    common = ["--n-lambdas", "3", "--lambda-min-ratio", "0.2", "--tol", "1e-5"]
    done = subprocess.run([sys.executable, str(SCRIPT), "out-of-core", "--store", str(store), "--compare", *common,
                           "--threads", "1"],
                          capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr
    rows = {r["kind"]: r for r in _rows(done.stdout)}
    oc = rows["out_of_core"]
    assert oc["solver"] == "prox_newton_streaming" and oc["store_over_limit"] == 2.0 and oc["converged"]
    assert oc["accounted"]["total"] <= oc["memory_limit"]
    assert oc["peak_rss_growth"] <= oc["memory_limit"]
    assert rows["compare"]["same_support_lambdas"] == 3 and rows["compare"]["max_objective_rel_diff"] < 1e-6

    done = subprocess.run([sys.executable, str(SCRIPT), "ranks", "--store", str(store), "--procs", "2", *common,
                           "--threads", "2"],
                          capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    runs = [r for r in rows if r["kind"] == "ranks"]
    assert [(r["processes"], r["threads_per_process"]) for r in runs] == [(1, 2), (1, 1), (2, 1)]
    assert runs[-1]["rows_per_rank"][0] + runs[-1]["rows_per_rank"][1] == 16000
    (cmp,) = [r for r in rows if r["kind"] == "compare"]
    assert cmp["same_grid"] and cmp["same_support_lambdas"] == 3 and cmp["max_objective_rel_diff"] < 1e-6
