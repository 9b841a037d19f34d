"""Benchmark: the multinomial datafit's passes over (n, K), whole-array against row blocks.

Every outer step of the path solver makes several passes over the ``(n, K)``
predictions: a log-sum-exp per line-search trial, ``exp(Z - lse)``, the residual, the
curvature diagonal ``p (1 - p)``, the directional curvature. With whole-array torch
operations each pass streams the array through memory once per operation (10^7
float64 numbers at 10,000 x 1,000 are 80 MB); in row blocks of
``Multinomial.BLOCK_ENTRIES`` numbers a block's operations stay in the core's cache
(:meth:`debuggable.glm.datafits.Datafit.row_blocks`). This script times one outer
step's worth of the passes both ways:

* ``whole``: ``Multinomial.BLOCKED_MIN_ENTRIES`` above the array's size (one block, the
  code before the blocks);
* ``blocks``: the default blocks, on the calling thread with torch's threads; beside a
  competitor also on the row-chunk workers (``RowChunks``, 2 workers, torch on one
  thread in the caller), as the path's thread budget runs them.

Quiet, torch runs on ``--threads`` threads; beside one ``while True: pass`` process
(``--load``) on one thread, as the budget sets it. Prints one JSON object per
configuration with the median milliseconds per step and the speed-up over ``whole``.
Usage::

    python benchmarks/glm_datafit_blocks.py [--shape 10000x1000] [--reps 5] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from debuggable._threads import RowChunks
from debuggable.glm.datafits import Multinomial, make_datafit


def one_step(fit: Multinomial, Z: torch.Tensor, Zd: torch.Tensor) -> None:
    """The datafit's passes of one model step: gradient, curvature, directional
    curvature, two line-search trials."""
    _, M = fit.loss_and_mean(Z)
    R = fit.residual(M)
    fit.sum_rows(R)
    fit.curvature(Z)
    fit.dir_curvature(Z, Zd)
    fit.loss_along(Z, Zd, 1.0)
    fit.loss_along(Z, Zd, 0.5)


def time_steps(fit: Multinomial, Z: torch.Tensor, Zd: torch.Tensor, reps: int) -> float:
    one_step(fit, Z, Zd)  # warm-up (allocations, the workers' start)
    t = time.perf_counter()
    for _ in range(reps):
        one_step(fit, Z, Zd)
    return (time.perf_counter() - t) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="10000x1000", help="n x K")
    ap.add_argument("--reps", type=int, default=5, help="steps per timing")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over them)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads when quiet")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, K = (int(v) for v in args.shape.lower().split("x"))

    rng = np.random.default_rng(args.seed)
    y = rng.integers(0, K, n)
    fit = make_datafit("multinomial", y, None, torch.device("cpu"))
    Z = torch.from_numpy(3 * rng.standard_normal((n, K)))
    Zd = torch.from_numpy(rng.standard_normal((n, K)))
    rows = RowChunks()
    default_min = Multinomial.BLOCKED_MIN_ENTRIES
    configs = [("quiet", "whole", 0), ("quiet", "blocks", 0), ("loaded", "whole", 0), ("loaded", "blocks", 0),
               ("loaded", "blocks", 2)]
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    competitor = None
    try:
        for _ in range(args.rounds):
            for condition in ("quiet", "loaded"):
                if condition == "loaded":
                    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    time.sleep(0.3)
                torch.set_num_threads(args.threads if condition == "quiet" else 1)
                for config in configs:
                    if config[0] != condition:
                        continue
                    _, way, workers = config
                    Multinomial.BLOCKED_MIN_ENTRIES = n * K + 1 if way == "whole" else default_min
                    rows.set_workers(max(1, workers))
                    fit.rows = rows if workers else None
                    times[config].append(time_steps(fit, Z, Zd, args.reps))
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
                    competitor = None
    finally:
        Multinomial.BLOCKED_MIN_ENTRIES = default_min
        rows.close()
        if competitor is not None:
            competitor.kill()
    for condition in ("quiet", "loaded"):
        base = statistics.median(times[(condition, "whole", 0)])
        for config in configs:
            if config[0] != condition:
                continue
            ms = statistics.median(times[config])
            record = {"shape": [n, K], "condition": condition, "way": config[1], "workers": config[2],
                      "torch_threads": args.threads if condition == "quiet" else 1, "ms_per_step": round(ms, 2),
                      "runs_ms": [round(v, 2) for v in times[config]], "speedup_over_whole": round(base / ms, 3)}
            print(json.dumps(record))
            print(f"{condition:6s} {config[1]:6s} workers={config[2]}: {ms:8.2f} ms per step, "
                  f"{base / ms:.2f}x over whole-array passes", file=sys.stderr)


if __name__ == "__main__":
    main()
