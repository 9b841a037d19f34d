"""``benchmarks/run_record.py``: runs kept in a JSON-lines file over several sittings."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def run_record(load_benchmark):
    return load_benchmark("run_record")


def _run(record, run, solver, n, cid="c1", size="s", done=None):
    for i in range(n):
        record.append({"kind": "lambda", "size": size, "solver": solver, "run": run, "condition": "quiet",
                       "index": i, "config_id": cid, "time": 1.0})
    record.append({"kind": "solver", "size": size, "solver": solver, "run": run, "condition": "quiet",
                   "n_lambdas_done": n if done is None else done, "config_id": cid, "total_time": float(run)})


def test_complete_runs_only_and_the_next_index(run_record, tmp_path):
    rec = run_record.RunRecord(tmp_path / "r.jsonl")
    assert rec.runs("s", "c1", {("a", "quiet")}) == ({}, 0)
    _run(rec, 0, "a", 3)
    _run(rec, 0, "b", 3)
    _run(rec, 1, "a", 3)  # b never finished run 1
    _run(rec, 2, "a", 3, cid="other")  # other settings
    _run(rec, 3, "a", 3, size="t")  # another size
    _run(rec, 4, "a", 3, done=4)  # a summary whose rows are missing
    _run(rec, 4, "b", 3)
    complete, nxt = rec.runs("s", "c1", {("a", "quiet"), ("b", "quiet")})
    assert sorted(complete) == [0] and nxt == 5
    got = complete[0][("a", "quiet")]
    assert [r["index"] for r in got["rows"]] == [0, 1, 2] and got["summary"]["total_time"] == 0.0
    # asked for "a" alone, run 1 is complete too
    assert sorted(rec.runs("s", "c1", {("a", "quiet")})[0]) == [0, 1]


def test_a_line_cut_short_is_skipped_and_the_next_record_starts_a_line(run_record, tmp_path):
    path = tmp_path / "r.jsonl"
    rec = run_record.RunRecord(path)
    _run(rec, 0, "a", 2)
    path.write_text(path.read_text() + '{"kind": "lamb')  # killed while writing
    _run(rec, 1, "a", 2)
    complete, nxt = rec.runs("s", "c1", {("a", "quiet")})
    assert sorted(complete) == [0, 1] and nxt == 2 and rec.skipped == 1
    assert all(json.loads(line) for line in path.read_text().splitlines()[:3])


def test_code_hash_follows_the_code(run_record, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    h = run_record.code_hash(tmp_path)
    assert h == run_record.code_hash(tmp_path) and len(h) == 12
    (tmp_path / "pkg" / "m.py").write_text("x = 2\n")
    assert run_record.code_hash(tmp_path) != h
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    assert run_record.code_hash(tmp_path) == h
    assert run_record.config_id({"a": 1, "b": 2}) == run_record.config_id({"b": 2, "a": 1})
    assert run_record.config_id({"a": 1}) != run_record.config_id({"a": 2})
