"""``memory_limit``: the streaming solver's working memory is sized from it and honoured.

The oracle for the answers is the in-memory path (the streamed problem is bit-identical,
see test_streaming.py) and the NumPy KKT check; the memory is measured as the peak
resident set (``VmHWM``) of a fresh process streaming a feature store from disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from debuggable.errors import DebuggableError
from debuggable.glm import elastic_net_path
from debuggable.glm.path import streaming_memory

from .oracles import kkt_violation, make_classification, standardize, to_standardized
from .test_streaming import TinyReader

ROOT = Path(__file__).resolve().parents[2]


def test_memory_limit_streams_in_blocks_that_fit_and_reaches_the_in_memory_optimum():
    X, y = make_classification(2000, 40, 3, seed=31)
    kw = dict(alpha=0.9, n_lambdas=5, lambda_min_ratio=0.05, dtype="float64")
    mem = elastic_net_path(X, y, **kw)
    fixed = streaming_memory(2000, 40, 3, 8, 8, 0, source_itemsize=8, n_lambdas=5)
    limit = fixed["total"] + 80 * fixed["per_row"]  # room for 80 rows per block
    st = elastic_net_path(TinyReader(X), y, memory_limit=limit, **kw)
    info = st.info["memory"]
    assert st.info["solver"] == "prox_newton_streaming"  # auto: the in-memory solver would need more
    assert info["block_rows"] == 80 and info["total"] <= limit
    np.testing.assert_allclose(st.objective, mem.objective, rtol=1e-8)
    Xs = standardize(X)
    for i, lam in enumerate(st.lambdas):
        W, b = to_standardized(st, i, X)
        assert kkt_violation("multinomial", Xs, y, W, b, lam, 0.9) <= 5e-3 * lam * 0.9


def test_a_memory_limit_too_small_for_the_work_arrays_is_refused():
    X, y = make_classification(500, 10, 3, seed=32)
    with pytest.raises(DebuggableError, match=r"^memory_limit: expected at least \d+ bytes .* got 1000\.$"):
        elastic_net_path(TinyReader(X), y, memory_limit=1000, n_lambdas=3)
    with pytest.raises(DebuggableError, match="memory_limit: expected an integer >= 1"):
        elastic_net_path(X, y, memory_limit=-5, n_lambdas=3)
    with pytest.raises(DebuggableError, match="memory_limit: the in-memory solver needs about"):
        elastic_net_path(X, y, memory_limit=10_000, solver="in_memory", n_lambdas=3)


_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from debuggable.features.store import FeatureStore
    from debuggable.glm import elastic_net_path

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    split = FeatureStore(sys.argv[1], mode="r").split("train")
    labels = split.labels
    # warm the runtime up (threads, allocator, the solver's code) on a tiny problem
    Xw = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    elastic_net_path(Xw, np.arange(300) % 3, n_lambdas=2, lambda_min_ratio=0.5)
    base = hwm()
    path = elastic_net_path(split, labels, memory_limit=int(sys.argv[2]), n_lambdas=4, lambda_min_ratio=0.1, tol=1e-5)
    print(json.dumps({"base": base, "peak": hwm(), "memory": path.info["memory"], "solver": path.info["solver"],
                      "converged": bool(path.converged.all())}))
""")


@pytest.mark.timeout(180)
def test_peak_memory_of_a_streamed_fit_stays_within_the_limit(tmp_path):
    from debuggable.features.store import FeatureStore, SplitLayout

    n, d, k = 24_000, 512, 4  # a 49 MB store, streamed with a 24 MB limit
    layout = SplitLayout(n_rows=n, chunk_rows=1000, feature_dim=d)
    w = FeatureStore(tmp_path / "fs", mode="a").create_split("train", layout, class_names=list("abcd"), fingerprint="f")
    rng = np.random.default_rng(5)
    mix = rng.normal(size=(16, d)).astype(np.float32)
    means = rng.normal(size=(k, 16)).astype(np.float32)
    for c in range(w.n_chunks):
        lo, hi = w.chunk_bounds(c)
        yc = rng.integers(0, k, hi - lo)
        Xc = np.maximum((means[yc] + rng.normal(size=(hi - lo, 16))) @ mix, 0) + 0.1 * rng.normal(size=(hi - lo, d))
        w.write_chunk(c, features=Xc.astype(np.float32), labels=yc.astype(np.int64), fsync=False)
    assert w.finalize()
    limit = 24 << 20
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "fs"), str(limit)], cwd=ROOT,
                          capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["solver"] == "prox_newton_streaming" and got["converged"]
    assert got["memory"]["total"] <= limit
    # the process grew by less than the limit while streaming twice that much data
    assert got["peak"] - got["base"] <= limit, got
