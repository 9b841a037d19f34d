"""Load on the annotation server: many annotators at once, then the same with a SIGKILL mid-way.

On loopback, the real server (``python -m debuggable.studies.server``, a child
process) serves a synthetic study of ``--annotators`` x ``--tasks``; every annotator
is a client coroutine that submits all its answers through the JSON API, repeating
some submits on purpose (``--duplicates``: the share sent a second time right after
the first was acknowledged; each must come back ``created: false``). The run is
bounded: every client stops at ``--timeout`` seconds.

Scenarios, each printed as one JSON line (``kind``):

* ``load``: answers acknowledged, rows in the database, lost (acknowledged but not
  stored) and duplicated rows, p50/p95/p99 latency of the acknowledged submits (ms)
  and throughput (acknowledged answers per second of wall time);
* ``load_kill``: the same, with the server killed by SIGKILL once half the answers are
  acknowledged and started again on the same database; clients retry what was not
  acknowledged (connection refused or reset) until it is;
* ``direct_db``: the reference floor without HTTP: the same answers written by
  ``--annotators`` threads straight into :class:`StudyDatabase` (same database kind).

``--repeat 3`` runs each scenario three times and adds a ``median`` line per scenario.

    python benchmarks/studies_load.py                       # 50 annotators x 40 tasks, SQLite
    python benchmarks/studies_load.py --database postgresql+psycopg://user@host/db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from debuggable.studies import Block, Option, Question, Study, StudySet, Task, assign_tasks, save_study
from debuggable.studies.db import StudyDatabase
from debuggable.studies.server import ServerProcess

CHECKS = 2


def build_studies(root: Path, annotators: int, tasks: int, *, replication: int = 2, seed: int = 0) -> StudySet:
    """A study whose every annotator gets ``tasks`` tasks (``CHECKS`` of them attention checks)."""
    main_per_annotator = tasks - CHECKS
    if main_per_annotator < 1 or (main_per_annotator * annotators) % replication:
        raise SystemExit(f"--tasks {tasks}: expected more than {CHECKS} and (tasks - {CHECKS}) x annotators divisible "
                         f"by the replication {replication}.")
    n_main = main_per_annotator * annotators // replication
    questions = [
        Question(key="pick", kind="choice", prompt="Which one?", options=[Option(value=c, label=c) for c in "ABC"]),
        Question(key="sure", kind="likert", prompt="How sure?", low=1, high=5),
        Question(key="why", kind="text", prompt="Why?", max_chars=300, required=False),
    ]
    items = [Task(id=f"load/{i:05d}", study="load", condition=("dense", "sparse")[i % 2],
                  blocks=[Block(kind="text", text=f"Task {i}")], questions=questions, key={"pick": "ABC"[i % 3]})
             for i in range(n_main)]
    items += [Task(id=f"load/check{i}", study="load", condition="attention", attention_check=True,
                   blocks=[Block(kind="text", text="Choose B.")], questions=questions[:1], key={"pick": "B"})
              for i in range(CHECKS)]
    study = Study(name="load", kind="load", title="Load", instructions=["Answer."], conditions=["dense", "sparse"],
                  tasks=items, replication=replication, seed=seed)
    save_study(root, study, assign_tasks(study, annotators, checks_per_annotator=CHECKS))
    StudySet.write_index(root, ["load"], None)
    return StudySet(root)


def _answer(rng: random.Random, task: Task) -> dict:
    out = {"pick": rng.choice("ABC")}
    if len(task.questions) > 1:
        out["sure"] = rng.randint(1, 5)
        out["why"] = "because <b>it</b> looks '; DROP TABLE answers; --"
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]  # nearest rank


def _db_state(url: str) -> tuple[set[tuple[str, str]], int, int]:
    db = StudyDatabase(url)
    try:
        rows = {(r["annotator_id"], r["task_id"]) for r in db.answers()}
        with db.engine.connect() as conn:
            total = conn.execute(text("SELECT COUNT(*) FROM answers")).scalar()
            dup = conn.execute(text("SELECT COUNT(*) FROM (SELECT annotator, task FROM answers "
                                    "GROUP BY annotator, task HAVING COUNT(*) > 1) AS d")).scalar()
    finally:
        db.close()
    return rows, int(total), int(dup)


async def _run_clients(server: ServerProcess, study_set: StudySet, *, duplicates: float, deadline: float,
                       kill_at: int | None, seed: int) -> dict:
    lists = study_set.assignments["load"]
    total = sum(len(v) for v in lists.values())
    acknowledged: set[tuple[str, str]] = set()
    latencies: list[float] = []
    stats = {"duplicates_sent": 0, "duplicates_wrong": 0, "retries": 0, "errors": 0, "restart_s": None}
    killed = asyncio.Event()
    kill_task = None

    async def restart():
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, server.kill)
        killed.set()
        await loop.run_in_executor(None, server.start)
        stats["restart_s"] = round(time.perf_counter() - t0, 3)

    limits = httpx.Limits(max_connections=len(lists) + 8, max_keepalive_connections=len(lists) + 8)
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0, limits=limits) as http:
        async def post(url: str, body: dict) -> httpx.Response:
            # Retries until answered or the deadline: a killed server refuses or resets.
            while True:
                try:
                    t0 = time.perf_counter()
                    r = await http.post(url, json=body)
                    return r, (time.perf_counter() - t0) * 1000
                except httpx.TransportError:
                    stats["retries"] += 1
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)

        async def annotator(annotator_id: str, ids: list[str], rng: random.Random):
            nonlocal kill_task
            token = study_set.signer.annotator_token(annotator_id)
            for position, task_id in enumerate(ids, 1):
                if time.monotonic() > deadline:
                    return
                body = {"task_id": task_id, "answer": _answer(rng, study_set.task(task_id)), "elapsed_ms": rng.randint(500, 9000)}
                url = f"/api/a/{token}/tasks/{position}"
                try:
                    r, ms = await post(url, body)
                except httpx.TransportError:
                    stats["errors"] += 1
                    return
                if r.status_code not in (200, 201):
                    stats["errors"] += 1
                    continue
                acknowledged.add((annotator_id, task_id))
                latencies.append(ms)
                if kill_at is not None and kill_task is None and len(acknowledged) >= kill_at:
                    kill_task = asyncio.create_task(restart())
                if rng.random() < duplicates:
                    stats["duplicates_sent"] += 1
                    try:
                        r2, _ = await post(url, body)
                    except httpx.TransportError:
                        stats["errors"] += 1
                        return
                    if r2.status_code != 200 or r2.json() != {"created": False}:
                        stats["duplicates_wrong"] += 1

        t0 = time.perf_counter()
        rngs = random.Random(seed)
        await asyncio.gather(*(annotator(a, ids, random.Random(rngs.random())) for a, ids in lists.items()))
        wall = time.perf_counter() - t0
        if kill_task is not None:
            await kill_task
    return dict(total=total, acknowledged=acknowledged, latencies=latencies, wall=wall, **stats)


def run_load(study_set: StudySet, database_url: str, *, kill: bool, duplicates: float, timeout: float, seed: int) -> dict:
    db = StudyDatabase(database_url)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM answers"))
    db.close()
    server = ServerProcess(study_set.root, database_url=database_url).start()
    try:
        total = sum(len(v) for v in study_set.assignments["load"].values())
        out = asyncio.run(_run_clients(server, study_set, duplicates=duplicates, deadline=time.monotonic() + timeout,
                                       kill_at=total // 2 if kill else None, seed=seed))
    finally:
        server.stop()
    rows, count, duplicated = _db_state(database_url)
    lat = out["latencies"]
    result = dict(
        kind="load_kill" if kill else "load", annotators=len(study_set.assignments["load"]),
        tasks_per_annotator=len(next(iter(study_set.assignments["load"].values()))), submits=out["total"],
        duplicates_sent=out["duplicates_sent"], duplicate_replies_wrong=out["duplicates_wrong"],
        acknowledged=len(out["acknowledged"]), rows=count, lost=len(out["acknowledged"] - rows),
        duplicated=duplicated, errors=out["errors"],
        p50_ms=round(_percentile(lat, 50), 2), p95_ms=round(_percentile(lat, 95), 2), p99_ms=round(_percentile(lat, 99), 2),
        throughput_per_s=round(len(out["acknowledged"]) / out["wall"], 1), wall_s=round(out["wall"], 3),
    )
    if kill:
        result.update(retries=out["retries"], restart_s=out["restart_s"])
    return result


def run_direct(study_set: StudySet, database_url: str, *, seed: int) -> dict:
    db = StudyDatabase(database_url)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM answers"))
    lists = study_set.assignments["load"]
    latencies: list[float] = []
    lock = threading.Lock()

    def annotator(annotator_id, ids, rng):
        for position, task_id in enumerate(ids, 1):
            task = study_set.task(task_id)
            t0 = time.perf_counter()
            db.record_answer(annotator_id, position, task_id, task.validate_answer(_answer(rng, task)), 1000)
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000)

    rngs = random.Random(seed)
    threads = [threading.Thread(target=annotator, args=(a, ids, random.Random(rngs.random()))) for a, ids in lists.items()]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    db.close()
    rows, count, duplicated = _db_state(database_url)
    return dict(kind="direct_db", annotators=len(lists), submits=len(latencies), rows=count, duplicated=duplicated,
                p50_ms=round(_percentile(latencies, 50), 2), p95_ms=round(_percentile(latencies, 95), 2),
                p99_ms=round(_percentile(latencies, 99), 2), throughput_per_s=round(len(latencies) / wall, 1),
                wall_s=round(wall, 3))


def _emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=40, help="tasks per annotator (2 of them attention checks)")
    parser.add_argument("--studies", type=Path, default=None,
                        help="a studies/ directory holding a study named 'load' (default: a synthetic one)")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite in the studies directory)")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of submits repeated on purpose")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each scenario may run")
    parser.add_argument("--scenarios", default="load,load_kill,direct_db")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    scenarios = args.scenarios.split(",")
    unknown = set(scenarios) - {"load", "load_kill", "direct_db"}
    if unknown:
        raise SystemExit(f"--scenarios: unknown {sorted(unknown)}; expected load, load_kill, direct_db")
    with tempfile.TemporaryDirectory(prefix="studies-load-") as tmp:
        root = args.studies or Path(tmp) / "studies"
        study_set = StudySet(root) if args.studies else build_studies(root, args.annotators, args.tasks, seed=args.seed)
        url = args.database or study_set.database_url
        setup = StudyDatabase(url)
        setup.migrate()
        setup.import_studies(study_set)
        setup.close()
        _emit(dict(kind="machine", python=platform.python_version(), cpus=os.cpu_count(),
                   load_average=[round(x, 2) for x in os.getloadavg()],
                   database=StudyDatabase(url).engine.url.get_backend_name()))
        results: list[dict] = []
        by_kind: dict[str, list[dict]] = {}
        for i in range(args.repeat):
            for kind in scenarios:
                if kind == "direct_db":
                    row = run_direct(study_set, url, seed=args.seed + i)
                else:
                    row = run_load(study_set, url, kill=kind == "load_kill", duplicates=args.duplicates,
                                   timeout=args.timeout, seed=args.seed + i)
                row["run"] = i + 1
                _emit(row)
                results.append(row)
                by_kind.setdefault(kind, []).append(row)
        if args.repeat > 1:
            for kind, rows in by_kind.items():
                median = {"kind": "median", "of": kind, "runs": len(rows)}
                for field in ("p50_ms", "p95_ms", "p99_ms", "throughput_per_s", "wall_s", "restart_s"):
                    values = [r[field] for r in rows if r.get(field) is not None]
                    if values:
                        median[field] = round(statistics.median(values), 2)
                for field in ("lost", "duplicated", "errors"):
                    if field in rows[0]:
                        median[f"{field}_max"] = max(r[field] for r in rows)
                _emit(median)
                results.append(median)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
