"""Benchmark: the GLM path out of core (bounded memory) and on several gloo processes.

Three parts, each printing one JSON object per result on stdout (a readable summary
goes to stderr):

* ``make-store``: a synthetic ImageNet-shaped feature store (default 1,281,167 x 2048
  features x 1000 classes, ReLU features of a low-rank class signal plus noise, so
  they are correlated like deep features), written chunk by chunk through the
  project's :class:`~debuggable.features.store.FeatureStore` writer: one chunk is in
  memory at a time, never the whole store. ``"kind": "store"``.
* ``out-of-core``: the path on a store with ``--memory-limit`` bytes for the solver
  (default: half the store's size, so the store is twice the memory allowed), in a
  fresh process that reports its peak resident set (``VmHWM``) before and after the
  fit next to the limit and the solver's own accounting; ``--compare`` also fits the
  store in memory in another process and puts the answers side by side.
  ``"kind": "out_of_core"`` (and ``"kind": "in_memory"``, ``"kind": "compare"``).
* ``ranks``: the same store fitted by 1 process and by N gloo processes on
  127.0.0.1 (each streams or loads its own chunks), wall time and answers side by
  side. ``"kind": "ranks"`` per run and ``"kind": "compare"``.

``all`` makes a store in a temporary directory and runs both. Examples::

    python benchmarks/glm_scale.py make-store --out /data/imagenet-shaped         # 10.5 GB on disk
    python benchmarks/glm_scale.py make-store --rows 65536 --features 2048 --classes 10 --out /tmp/s
    python benchmarks/glm_scale.py out-of-core --store /tmp/s --compare
    python benchmarks/glm_scale.py ranks --store /tmp/s --procs 2
    python benchmarks/glm_scale.py all                                           # this machine's sizes

No GPU is needed; ``--device cuda`` runs the same code on one (NCCL for ``ranks``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IMAGENET = (1_281_167, 2048, 1000)
HERE = Path(__file__).resolve()


def emit(obj: dict) -> None:
    print(json.dumps(obj, default=float), flush=True)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# the synthetic store
# ----------------------------------------------------------------------------------------


def make_store(out: str, rows: int, features: int, classes: int, chunk_rows: int | None = None, rank: int = 16,
               seed: int = 0, split: str = "train") -> dict:
    """Write ``rows x features`` float32 features with ``classes`` labels, chunk by chunk.

    Features are ``relu(mu_y + noise) @ M + noise`` scaled per feature: a rank-``rank``
    class signal mixed into every feature (so they correlate, as deep features do)
    plus independent noise, with non-zero means and varied scales.
    """
    from debuggable.features.store import FeatureStore, SplitLayout

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    # ~8 MiB chunks, at least 32 of them: a chunk is read whole once to check its checksum,
    # which a memory limit must leave room for
    chunk_rows = chunk_rows or max(64, min((8 << 20) // (4 * features), -(-rows // 32)))
    mu = rng.normal(size=(classes, rank)).astype(np.float32) * 1.5
    mix = (rng.normal(size=(rank, features)) / np.sqrt(rank)).astype(np.float32)
    scale = rng.uniform(0.5, 3.0, size=features).astype(np.float32)
    shift = rng.normal(size=features).astype(np.float32)
    layout = SplitLayout(n_rows=rows, chunk_rows=chunk_rows, feature_dim=features)
    store = FeatureStore(out, mode="a")
    writer = store.create_split(split, layout, class_names=[f"class{k}" for k in range(classes)],
                                fingerprint=f"synthetic-{rows}x{features}x{classes}-seed{seed}",
                                metadata={"dataset": {"name": "synthetic-imagenet-shaped", "seed": seed}})
    for c in writer.missing_chunks():
        lo, hi = writer.chunk_bounds(c)
        g = np.random.default_rng([seed, c])
        y = g.integers(0, classes, size=hi - lo)
        if c == 0:
            y[: min(classes, hi - lo)] = np.arange(min(classes, hi - lo))  # every class occurs
        z = np.maximum(mu[y] + g.normal(size=(hi - lo, rank)).astype(np.float32), 0)
        X = (z @ mix + 0.5 * g.normal(size=(hi - lo, features)).astype(np.float32)) * scale + shift
        writer.write_chunk(c, features=X.astype(np.float32), labels=y.astype(np.int64), fsync=False)
        del X, z
    writer.finalize()
    rec = {"kind": "store", "path": str(out), "rows": rows, "features": features, "classes": classes,
           "chunk_rows": chunk_rows, "bytes": rows * features * 4, "seconds": time.perf_counter() - t0}
    return rec


# ----------------------------------------------------------------------------------------
# one fit in a fresh process (also one rank of a group)
# ----------------------------------------------------------------------------------------


def _hwm() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in bytes."""
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                got[line.split(":")[0]] = int(line.split()[1]) * 1024
    return got.get("VmRSS", 0), got.get("VmHWM", 0)


def _reset_peak_rss() -> bool:
    """Set this process's peak resident set (``VmHWM``) to its current one (Linux 4.0+:
    ``5`` in ``/proc/self/clear_refs``); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _fit_child(argv: list[str]) -> int:
    """``_fit STORE OUT --rank R --world W --port P [...]``: fit and write OUT/rank{R}.json/.npz."""
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("out")
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--world", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory-limit", type=int, default=None)
    ap.add_argument("--solver", default="auto")
    ap.add_argument("--n-lambdas", type=int, default=8)
    ap.add_argument("--lambda-min-ratio", type=float, default=0.05)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--verbose", type=int, default=0)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from debuggable.features.store import FeatureStore
    from debuggable.glm import elastic_net_path
    from debuggable.glm.distributed import RowRangeReader, shard_bounds

    group = None
    if a.world > 1:
        import datetime

        import torch.distributed as dist

        backend = "nccl" if a.device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(a.rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{a.port}", rank=a.rank, world_size=a.world,
                                timeout=datetime.timedelta(seconds=600))
        group = dist.group.WORLD
    split = FeatureStore(a.store, mode="r").split("train")
    lo, hi = shard_bounds(split.n_rows, a.rank, a.world, split.chunk_rows)
    X = RowRangeReader(split, lo, hi)
    y = X.read("labels")
    dev = f"cuda:{torch.cuda.current_device()}" if a.device.startswith("cuda") and a.world > 1 else a.device
    # warm the runtime up (threads, allocator, the solver's code) so the baseline is fair
    w = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    elastic_net_path(w, np.arange(300) % 3, n_lambdas=2, lambda_min_ratio=0.5)
    if _reset_peak_rss():
        # the streaming code too, on this rank's first two chunks: its code pages (0.8 MB)
        # are mapped once per process, not per limit. The peak is reset after it, so the
        # warm-up's own peak does not hide the fit's.
        from debuggable.errors import DebuggableError

        warm = min(hi - lo, 2 * int(split.chunk_rows or 512))
        try:
            elastic_net_path(RowRangeReader(split, lo, lo + warm), y[:warm], n_lambdas=2, lambda_min_ratio=0.5,
                             memory_limit=a.memory_limit, solver="streaming" if a.solver == "auto" else a.solver,
                             device=dev)
        except DebuggableError:  # e.g. one class in those rows: the fit below then maps the code itself
            pass
        gc.collect()
        _reset_peak_rss()
    rss0, hwm0 = _hwm()
    t0 = time.perf_counter()
    path = elastic_net_path(X, y, n_lambdas=a.n_lambdas, lambda_min_ratio=a.lambda_min_ratio, tol=a.tol,
                            memory_limit=a.memory_limit, solver=a.solver, process_group=group, device=dev,
                            verbose=a.verbose if a.rank == 0 else 0)
    seconds = time.perf_counter() - t0
    rss1, hwm1 = _hwm()
    out = Path(a.out)
    rec = {"rank": a.rank, "world": a.world, "rows": hi - lo, "seconds": seconds, "rss_before": rss0,
           "hwm_before": hwm0, "rss_after": rss1, "hwm_after": hwm1, "solver": path.info["solver"],
           "memory": path.info["memory"], "passes": path.info.get("passes"), "n_iter": path.n_iter.tolist(), "max_kkt": float(np.max(path.kkt)),
           "max_gap": float(np.max(path.gap)), "converged": bool(path.converged.all()), "nnz": path.nnz.tolist(),
           "time_per_lambda": path.time.tolist()}
    (out / f"rank{a.rank}.json").write_text(json.dumps(rec))
    if a.rank == 0:
        np.savez(out / "path.npz", coef=path.coef, intercept=path.intercept, objective=path.objective,
                 lambdas=path.lambdas, feature_std=path.feature_std, gap=path.gap)
    if group is not None:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_fit(store: str, world: int, threads: int, extra: list[str], timeout: float) -> tuple[float, list[dict], dict]:
    """Start ``world`` fit processes on the store; returns (wall seconds, per-rank records, rank 0's path)."""
    out = Path(tempfile.mkdtemp(prefix="glm_scale_"))
    port = _free_port()
    # the solver's progress lines (--verbose) go to stderr as they come; stdout stays JSON
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(HERE), "_fit", store, str(out), "--rank", str(r), "--world",
                               str(world), "--port", str(port), "--threads", str(threads), *extra], env=env,
                              stdout=sys.stderr)
             for r in range(world)]
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"glm_scale: a fit process failed (exit codes {codes})")
    recs = [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]
    path = dict(np.load(out / "path.npz"))
    shutil.rmtree(out, ignore_errors=True)
    return wall, recs, path


def _compare(a: dict, b: dict) -> dict:
    """Answers of two paths side by side (standardised coefficients)."""
    Wa = a["coef"] * a["feature_std"][None, None, :]
    Wb = b["coef"] * b["feature_std"][None, None, :]
    n = min(len(a["lambdas"]), len(b["lambdas"]))
    return {"lambdas": n,
            "same_grid": bool(np.allclose(a["lambdas"][:n], b["lambdas"][:n], rtol=1e-9)),
            "max_objective_rel_diff": float(np.max(np.abs(a["objective"][:n] - b["objective"][:n])
                                                   / np.abs(b["objective"][:n]))),
            "max_coef_abs_diff": float(np.max(np.abs(Wa[:n] - Wb[:n]))),
            "max_coef_abs": float(np.max(np.abs(Wb[:n]))),
            "same_support_lambdas": int(sum(np.array_equal(Wa[i] != 0, Wb[i] != 0) for i in range(n))),
            "max_rel_gap": float(max(np.max(a["gap"][:n]), np.max(b["gap"][:n])))}


def _fit_args(args) -> list[str]:
    return ["--n-lambdas", str(args.n_lambdas), "--lambda-min-ratio", str(args.lambda_min_ratio), "--tol",
            str(args.tol), "--device", args.device, "--verbose", str(args.verbose)]


def out_of_core(args) -> None:
    from debuggable.features.store import FeatureStore

    split = FeatureStore(args.store, mode="r").split("train")
    n, d = split.shape
    store_bytes = n * d * 4
    limit = args.memory_limit or store_bytes // 2
    wall, (rec,), path = _run_fit(args.store, 1, args.threads, ["--memory-limit", str(limit), *_fit_args(args)],
                                  args.timeout)
    grew = rec["hwm_after"] - rec["hwm_before"]
    emit({"kind": "out_of_core", "store": args.store, "rows": n, "features": d, "store_bytes": store_bytes,
          "memory_limit": limit, "store_over_limit": store_bytes / limit, "peak_rss": rec["hwm_after"],
          "rss_before_fit": rec["rss_before"], "peak_rss_growth": grew, "growth_over_limit": grew / limit,
          "accounted": rec["memory"], "solver": rec["solver"], "seconds": rec["seconds"], "wall_s": wall,
          "passes": rec["passes"], "seconds_per_pass": rec["seconds"] / max(1, rec["passes"] or 1),
          "n_iter": rec["n_iter"], "max_kkt": rec["max_kkt"], "max_gap": rec["max_gap"], "converged": rec["converged"]})
    say(f"out-of-core: {n} x {d} store of {store_bytes / 2**20:.0f} MiB with a {limit / 2**20:.0f} MiB limit: the fit "
        f"grew the process by {grew / 2**20:.0f} MiB (peak RSS {rec['hwm_after'] / 2**20:.0f} MiB, "
        f"{rec['rss_before'] / 2**20:.0f} MiB before the fit), {rec['memory']['block_rows']} rows per block, "
        f"{rec['seconds']:.1f} s, max KKT {rec['max_kkt']:.2e}")
    if args.compare:
        wall2, (rec2,), path2 = _run_fit(args.store, 1, args.threads, ["--solver", "in_memory", *_fit_args(args)],
                                         args.timeout)
        emit({"kind": "in_memory", "peak_rss_growth": rec2["hwm_after"] - rec2["hwm_before"], "seconds": rec2["seconds"],
              "n_iter": rec2["n_iter"], "max_kkt": rec2["max_kkt"]})
        cmp = _compare(path, path2)
        emit({"kind": "compare", "what": "out_of_core vs in_memory", **cmp})
        say(f"  in memory: {rec2['seconds']:.1f} s, grew {(rec2['hwm_after'] - rec2['hwm_before']) / 2**20:.0f} MiB; "
            f"objectives within {cmp['max_objective_rel_diff']:.1e}, coefficients within {cmp['max_coef_abs_diff']:.1e}, "
            f"same support at {cmp['same_support_lambdas']} of {cmp['lambdas']} lambdas")


def ranks(args) -> None:
    """1 process with ``--threads`` threads, 1 with one thread, then each of ``--procs``
    processes with ``--threads / N`` threads each (the same cores in all)."""
    runs = {}
    plan = [(1, args.threads)] + ([(1, 1)] if args.threads > 1 else []) + [(w, max(1, args.threads // w)) for w in args.procs]
    for world, threads in plan:
        extra = _fit_args(args) + (["--memory-limit", str(args.memory_limit)] if args.memory_limit else [])
        wall, recs, path = _run_fit(args.store, world, threads, extra, args.timeout)
        runs[(world, threads)] = path
        emit({"kind": "ranks", "processes": world, "threads_per_process": threads, "wall_s": wall,
              "fit_seconds": max(r["seconds"] for r in recs), "rows_per_rank": [r["rows"] for r in recs],
              "solver": recs[0]["solver"], "n_iter": recs[0]["n_iter"], "max_kkt": recs[0]["max_kkt"],
              "max_gap": recs[0]["max_gap"], "converged": recs[0]["converged"], "nnz": recs[0]["nnz"],
              "peak_rss_growth_per_rank": [r["hwm_after"] - r["hwm_before"] for r in recs]})
        say(f"ranks: {world} process(es) x {threads} thread(s): fit {max(r['seconds'] for r in recs):.1f} s "
            f"(wall {wall:.1f} s), iterations {sum(recs[0]['n_iter'])}, max KKT {recs[0]['max_kkt']:.2e}")
    for world in args.procs:
        cmp = _compare(runs[(world, max(1, args.threads // world))], runs[(1, args.threads)])
        emit({"kind": "compare", "what": f"{world} processes vs 1", **cmp})
        say(f"  {world} vs 1: objectives within {cmp['max_objective_rel_diff']:.1e}, coefficients within "
            f"{cmp['max_coef_abs_diff']:.1e} (largest {cmp['max_coef_abs']:.2f}), same support at "
            f"{cmp['same_support_lambdas']} of {cmp['lambdas']} lambdas")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_fit"]:
        return _fit_child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ms = sub.add_parser("make-store", help="write a synthetic ImageNet-shaped store chunk by chunk")
    ms.add_argument("--out", required=True)
    for p in (ms,):
        p.add_argument("--rows", type=int, default=IMAGENET[0])
        p.add_argument("--features", type=int, default=IMAGENET[1])
        p.add_argument("--classes", type=int, default=IMAGENET[2])
        p.add_argument("--chunk-rows", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)

    def fit_opts(p):
        p.add_argument("--n-lambdas", type=int, default=8)
        p.add_argument("--lambda-min-ratio", type=float, default=0.05)
        p.add_argument("--tol", type=float, default=1e-6)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--device", default="cpu")
        p.add_argument("--timeout", type=float, default=3600)
        p.add_argument("--memory-limit", type=int, default=None, help="bytes (default: half the store)")
        p.add_argument("--verbose", type=int, default=0,
                       help="the solver's progress on stderr (rank 0): 1 a line per lambda, 2 per outer step")

    oc = sub.add_parser("out-of-core", help="the path on a store twice the memory limit, peak RSS measured")
    oc.add_argument("--store", required=True)
    oc.add_argument("--compare", action="store_true", help="also fit in memory and compare the answers")
    fit_opts(oc)
    rk = sub.add_parser("ranks", help="1 vs N gloo processes on the same store")
    rk.add_argument("--store", required=True)
    rk.add_argument("--procs", type=int, nargs="+", default=[2])
    fit_opts(rk)
    al = sub.add_parser("all", help="make a store in a temporary directory, then out-of-core and ranks")
    al.add_argument("--rows", type=int, default=65536)
    al.add_argument("--features", type=int, default=2048)
    al.add_argument("--classes", type=int, default=10)
    al.add_argument("--keep", default=None, help="write the store here and keep it")
    al.add_argument("--procs", type=int, nargs="+", default=[2])
    al.add_argument("--compare", action="store_true")
    fit_opts(al)
    args = ap.parse_args(argv)
    if args.cmd == "make-store":
        rec = make_store(args.out, args.rows, args.features, args.classes, args.chunk_rows, seed=args.seed)
        emit(rec)
        say(f"store: {rec['rows']} x {rec['features']} x {rec['classes']} ({rec['bytes'] / 2**30:.2f} GiB) in "
            f"{rec['seconds']:.1f} s -> {rec['path']}")
        return 0
    if args.cmd == "out-of-core":
        out_of_core(args)
        return 0
    if args.cmd == "ranks":
        ranks(args)
        return 0
    where = args.keep or tempfile.mkdtemp(prefix="glm_scale_store_")
    try:
        rec = make_store(str(Path(where) / "store") if not args.keep else args.keep, args.rows, args.features,
                         args.classes)
        emit(rec)
        args.store = rec["path"]
        memory_limit = args.memory_limit
        out_of_core(args)
        args.memory_limit = memory_limit
        ranks(args)
    finally:
        if not args.keep:
            shutil.rmtree(where, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
