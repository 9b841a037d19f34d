"""Smoke test of ``benchmarks/studies_load.py`` at a tiny size (the figures come from the full run)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def studies_load(load_benchmark):
    return load_benchmark("studies_load")


def test_load_and_kill_lose_and_duplicate_nothing(studies_load, capsys):
    # The plain load scenario is the kill scenario's first half; the smoke test runs the latter.
    results = studies_load.main(["--annotators", "4", "--tasks", "6", "--duplicates", "0.5", "--timeout", "60",
                                 "--scenarios", "load_kill,direct_db"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in lines] == ["machine", "load_kill", "direct_db"]
    assert lines[1:] == results
    for r in results:
        assert r["rows"] == r["submits"] == 24 and r["duplicated"] == 0
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["throughput_per_s"] > 0
    for r in results[:1]:
        assert r["acknowledged"] == 24 and r["lost"] == 0 and r["errors"] == 0
        assert r["duplicates_sent"] > 0 and r["duplicate_replies_wrong"] == 0
    assert results[0]["restart_s"] > 0 and results[0]["retries"] > 0  # the server was killed and came back


def test_a_study_size_that_cannot_be_balanced_is_refused(studies_load, tmp_path):
    with pytest.raises(SystemExit, match="--tasks 2: expected more than 2"):
        studies_load.build_studies(tmp_path, 4, 2)
