"""One rank of a distributed path fit, started by ``tests/glm/test_distributed.py``.

``python -m tests.glm.dist_worker CASE RANK WORLD PORT OUT [--store DIR] [--checkpoint DIR]
[--die-after N]``: joins a gloo group on 127.0.0.1:PORT, fits this rank's rows of the
case's problem and writes the path to ``OUT/rank{RANK}.npz`` (exit code 0), or the error
to ``OUT/rank{RANK}.err`` (exit code 3). With ``--die-after N`` the rank kills itself
(SIGKILL, no goodbye to the group) once the checkpoint holds N solved lambdas.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from debuggable.errors import DebuggableError
from debuggable.glm import elastic_net_path
from debuggable.glm.distributed import RowRangeReader, shard_bounds

from .oracles import make_classification

#: Seconds a collective waits for a dead rank in these tests.
GLOO_TIMEOUT_S = 20


def problem(case: str):
    """``(X, y, sample_weight, kwargs)`` of a case: the full data, which every rank
    generates and slices (and the test's single-process oracle fits whole)."""
    if case in ("multinomial", "bad"):
        X, y = make_classification(900, 24, 4, seed=21)
        return X, y, None, dict(family="multinomial", alpha=0.9, n_lambdas=8, lambda_min_ratio=0.02, tol=1e-9,
                                kkt_tol=1e-4)
    if case in ("binomial", "binomial_store"):
        X, y = make_classification(800, 20, 2, seed=22)
        # a feature store holds no sample weights
        w = None if case == "binomial_store" else np.random.default_rng(3).uniform(0.5, 2.0, size=X.shape[0])
        return X, y, w, dict(family="binomial", alpha=0.8, n_lambdas=8, lambda_min_ratio=0.02, tol=1e-9, kkt_tol=1e-4)
    if case == "gaussian":
        X, y = make_classification(700, 16, 3, seed=23)
        Y = np.stack([X[:, 0] - 2 * X[:, 3], X[:, 5] + X[:, 7]], 1) + np.random.default_rng(4).normal(size=(700, 2))
        return X, Y, None, dict(family="gaussian", alpha=0.95, n_lambdas=8, lambda_min_ratio=0.02, tol=1e-9, kkt_tol=1e-4)
    if case == "kill":
        X, y = make_classification(1500, 32, 5, seed=24)
        return X, y, None, dict(family="multinomial", alpha=0.9, n_lambdas=12, lambda_min_ratio=0.01, tol=1e-9,
                                kkt_tol=1e-4)
    raise ValueError(case)


def _die_when(checkpoint: Path, n: int) -> None:
    def watch():
        while len(list(checkpoint.glob("lambda_*.pt"))) < n:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("rank", type=int)
    ap.add_argument("world", type=int)
    ap.add_argument("port", type=int)
    ap.add_argument("out")
    ap.add_argument("--store", default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--die-after", type=int, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=a.rank, world_size=a.world,
                            timeout=datetime.timedelta(seconds=GLOO_TIMEOUT_S))
    try:
        X, y, w, kw = problem(a.case)
        if a.store:
            from debuggable.features.store import FeatureStore

            split = FeatureStore(a.store, mode="r").split("train")
            lo, hi = shard_bounds(split.n_rows, a.rank, a.world, split.chunk_rows)
            Xr = RowRangeReader(split, lo, hi)
            yr = Xr.read("labels")
            kw.update(solver="streaming", block_rows=64)
        else:
            lo, hi = shard_bounds(X.shape[0], a.rank, a.world)
            Xr, yr = X[lo:hi].copy(), y[lo:hi]
            if a.case == "bad" and a.rank == 1:
                Xr[5, 3] = np.nan  # only this rank's rows are bad: every rank must fail, none hang
        if a.checkpoint and a.die_after:
            _die_when(Path(a.checkpoint), a.die_after)
        path = elastic_net_path(Xr, yr, sample_weight=None if w is None else w[lo:hi], process_group=dist.group.WORLD,
                                checkpoint=a.checkpoint, **kw)
    except DebuggableError as exc:
        (out / f"rank{a.rank}.err").write_text(str(exc), encoding="utf-8")
        sys.stdout.flush()
        # a group whose peer died cannot be torn down cleanly (gloo aborts in its
        # destructor): leave without running destructors, as the CLI does
        os._exit(3)
    np.savez(out / f"rank{a.rank}.npz", lambdas=path.lambdas, coef=path.coef, intercept=path.intercept,
             objective=path.objective, gap=path.gap, kkt=path.kkt, converged=path.converged, nnz=path.nnz,
             train_accuracy=path.train_accuracy, n_iter=path.n_iter)
    (out / f"rank{a.rank}.json").write_text(json.dumps({k: v for k, v in path.info.items() if k != "memory"}),
                                           encoding="utf-8")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
