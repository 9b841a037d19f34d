"""Smoke tests of ``benchmarks/glm_path.py`` on tiny problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

pytest.importorskip("glm_saga")


@pytest.fixture()
def glm_path(load_benchmark):
    return load_benchmark("glm_path")


def _rows(out: str, kind: str) -> list[dict]:
    return [r for r in map(json.loads, out.splitlines()) if r["kind"] == kind]


def test_reference_path_resumes_from_its_checkpoint(glm_path, capsys, tmp_path):
    ck = str(tmp_path / "saga.pt")
    common = ["--size", "300x6x3", "--n-lambdas", "3", "--solvers", "glm_saga", "--threads", "1",
              "--ref-checkpoint", ck]
    glm_path.main([*common, "--ref-budget", "0"])  # stops after the first lambda
    first = capsys.readouterr()
    (summary,) = _rows(first.out, "solver")
    assert summary["n_lambdas_done"] == 1
    (lam0,) = _rows(first.out, "lambda")

    glm_path.main(common)
    second = capsys.readouterr()
    assert "resuming after lambda 1/3" in second.err
    rows = _rows(second.out, "lambda")
    assert [r["index"] for r in rows] == [0, 1, 2]
    # the first lambda is the saved one, time and solution, not solved again
    assert rows[0]["time"] == lam0["time"] and rows[0]["objective"] == lam0["objective"]
    (summary,) = _rows(second.out, "solver")
    assert summary["n_lambdas_done"] == 3
    assert summary["total_time"] == pytest.approx(sum(r["time"] for r in rows))


def test_reference_checkpoint_refuses_other_settings(glm_path, capsys, tmp_path):
    ck = str(tmp_path / "saga.pt")
    common = ["--size", "300x6x3", "--n-lambdas", "3", "--solvers", "glm_saga", "--threads", "1",
              "--ref-checkpoint", ck, "--ref-budget", "0"]
    glm_path.main(common)
    with pytest.raises(SystemExit, match="saved for other data or settings"):
        glm_path.main([*common, "--saga-lr", "0.05"])


def _write_run(path, solver, times, objectives, kkts, lambdas, n_lambdas, size="10x2x3"):
    with open(path, "w") as fh:
        for i, (t, o, k, lam) in enumerate(zip(times, objectives, kkts, lambdas)):
            fh.write(json.dumps({"kind": "lambda", "size": size, "solver": solver, "index": i, "lambda": lam,
                                 "time": t, "objective": o, "kkt_rel": k}) + "\n")
        fh.write(json.dumps({"kind": "solver", "size": size, "solver": solver, "total_time": sum(times),
                             "n_lambdas_done": len(times), "n_lambdas": n_lambdas, "threads": 2}) + "\n")


def test_report_pairs_runs_from_separate_files(load_benchmark, capsys, tmp_path):
    glm_path_report = load_benchmark("glm_path_report")

    lambdas = [1.0, 0.5, 0.25]
    ours, saga_part, saga = tmp_path / "ours.jsonl", tmp_path / "saga1.jsonl", tmp_path / "saga2.jsonl"
    _write_run(ours, "debuggable", [1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [0.0, 1e-3, 2e-3], lambdas, 3)
    _write_run(saga_part, "glm_saga", [10.0], [3.0], [0.1], lambdas[:1], 3)
    _write_run(saga, "glm_saga", [10.0, 20.0, 60.0], [3.0, 2.5, 1.0 + 1e-7], [0.1, 0.2, 0.3], lambdas, 3)
    figure = tmp_path / "fig.png"
    (rec,) = glm_path_report.main([str(ours), str(saga_part), str(saga), "--out", str(figure)])
    assert rec["lambdas_compared"] == 3  # the complete glm-saga run, not the partial one
    assert rec["speedup_total"] == pytest.approx(90.0 / 6.0)
    assert rec["objective_strictly_le_reference_all"] is True
    assert rec["max_rel_objective_excess"] == 0.0  # equal at lambda_max
    assert rec["min_rel_objective_excess"] == pytest.approx(-0.2)  # (2.0 - 2.5) / 2.5
    assert rec["max_kkt_rel_reference"] == 0.3
    assert figure.stat().st_size > 10_000

    (part,) = glm_path_report.main([str(ours), str(saga_part)])
    assert part["speedup_total"] is None and part["speedup_same_lambdas"] == pytest.approx(10.0)
    # glm-saga's first lambda alone took 10 s against our whole path's 6 s
    assert part["speedup_total_lower_bound"] == pytest.approx(10.0 / 6.0)
    assert rec["speedup_total_lower_bound"] == pytest.approx(rec["speedup_total"])
    # our path unfinished: no bound on the whole path
    _write_run(ours, "debuggable", [1.0, 2.0], [3.0, 2.0], [0.0, 1e-3], lambdas[:2], 3)
    (short,) = glm_path_report.main([str(ours), str(saga)])
    assert short["speedup_total_lower_bound"] is None and short["speedup_same_lambdas"] == pytest.approx(10.0)


def test_report_refuses_different_grids(load_benchmark, tmp_path):
    glm_path_report = load_benchmark("glm_path_report")

    ours, saga = tmp_path / "ours.jsonl", tmp_path / "saga.jsonl"
    _write_run(ours, "debuggable", [1.0, 2.0], [3.0, 2.0], [0.0, 1e-3], [1.0, 0.5], 2)
    _write_run(saga, "glm_saga", [10.0, 20.0], [3.0, 2.5], [0.1, 0.2], [1.0, 0.4], 2)
    with pytest.raises(SystemExit, match="not the same grid"):
        glm_path_report.main([str(ours), str(saga)])


def test_a_feature_store_split_is_benchmarked(glm_path, capsys, tmp_path):
    import numpy as np

    from debuggable.features import FeatureStore, SplitLayout

    rng = np.random.default_rng(0)
    n, d, k = 120, 5, 3
    y = np.arange(n) % k + 7  # labels need not start at 0
    X = np.maximum(rng.standard_normal((n, d)) + np.eye(k, d)[y - 7] * 2, 0).astype(np.float32)
    X[:, -1] = 1.0  # a constant (dead) feature: dropped by the standardisation
    store = FeatureStore(tmp_path / "fs", mode="a")
    w = store.create_split("train", SplitLayout(n_rows=n, chunk_rows=50, feature_dim=d),
                           class_names=[str(i) for i in range(10)], fingerprint="fp")
    for c in range(w.n_chunks):
        lo, hi = w.chunk_bounds(c)
        w.write_chunk(c, features=X[lo:hi], labels=y[lo:hi].astype(np.int64), fsync=False)
    assert w.finalize(fsync=False)
    glm_path.main(["--store", f"{tmp_path / 'fs'}:train", "--n-lambdas", "3", "--solvers", "debuggable,glm_saga",
                   "--threads", "1"])
    out = capsys.readouterr()
    rows = _rows(out.out, "lambda")
    assert {r["solver"] for r in rows} == {"debuggable", "glm_saga"} and len(rows) == 6
    assert rows[0]["size"].endswith("/fs:train")
    assert "n=120 d=4 k=3" in out.err
    with pytest.raises(SystemExit, match="--store"):
        glm_path.main(["--store", f"{tmp_path / 'fs'}:test", "--solvers", "debuggable"])


def test_runs_and_load_give_medians_and_the_loaded_over_quiet_ratio(glm_path, capsys):
    glm_path.main(["--size", "400x8x3", "--n-lambdas", "3", "--solvers", "debuggable", "--threads", "1",
                   "--runs", "3", "--load", "1", "--verbose", "0"])
    out = capsys.readouterr()
    solvers = _rows(out.out, "solver")
    assert [(r["run"], r["condition"]) for r in solvers] == [(0, "quiet"), (0, "loaded"), (1, "quiet"), (1, "loaded"),
                                                            (2, "quiet"), (2, "loaded")]
    (load,) = _rows(out.out, "load")
    quiet = sorted(r["total_time"] for r in solvers if r["condition"] == "quiet")
    loaded = sorted(r["total_time"] for r in solvers if r["condition"] == "loaded")
    assert load["median_quiet_time"] == pytest.approx(quiet[1]) and load["median_loaded_time"] == pytest.approx(loaded[1])
    assert load["loaded_over_quiet"] == pytest.approx(loaded[1] / quiet[1])
    by_run = {(r["run"], r["condition"]): r["total_time"] for r in solvers}
    paired = [by_run[(i, "loaded")] / by_run[(i, "quiet")] for i in range(3)]
    assert load["loaded_over_quiet_per_run"] == pytest.approx(paired)
    assert load["median_loaded_over_quiet_per_run"] == pytest.approx(sorted(paired)[1])
    assert "per run: median" in out.err


def test_competitors_run_for_the_block_only(glm_path):
    import os

    with glm_path.competitors(2) as _:
        pass
    # the busy loops were killed and reaped: no child of ours is left running
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _parent(p) == os.getpid()]


def _parent(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _summary(speedups_total, bounds, excess, kkt_ref):
    return [{"speedup_total": t, "speedup_total_lower_bound": b, "speedup_same_lambdas": None, "lambdas_compared": 3,
             "objective_le_reference_all": True, "max_rel_objective_excess": e, "max_kkt_rel_ours": 1e-3,
             "max_kkt_rel_reference": k} for t, b, e, k in zip(speedups_total, bounds, excess, kkt_ref)]


def test_summary_takes_medians_and_lower_bounds_where_the_reference_stopped(glm_path):
    ours = [{"summary": {"total_time": t, "threads": 2}} for t in (2.0, 1.0, 4.0)]
    ref = [{"summary": {"total_time": t}} for t in (10.0, 9.0, 30.0)]
    cmps = _summary([5.0, 9.0, None], [5.0, 9.0, 7.5], [-1e-9, -2e-9, None], [0.1, 0.2, None])
    rec = glm_path.summarise_runs("s", "glmnet", "quiet", cmps, ours, ref)
    assert rec["median_time_ours"] == 2.0 and rec["median_time_reference"] == 10.0
    assert rec["speedups"] == [5.0, 9.0, 7.5] and rec["median_speedup"] == 7.5
    assert rec["whole_path_every_run"] is False
    assert rec["max_rel_objective_excess"] == -1e-9 and rec["max_kkt_rel_reference"] == 0.2


def test_a_reference_with_no_answer_bounds_its_path_from_below(glm_path):
    ours = [{"index": i, "lambda": 1.0 / (i + 1), "time": 1.0, "objective": 1.0, "kkt_rel": 1e-3} for i in range(4)]
    rec = glm_path.compare("s", ours, {"total_time": 4.0}, "glmnet", [], {"total_time": 60.0}, 4)
    assert rec["lambdas_compared"] == 0 and rec["speedup_total"] is None
    assert rec["speedup_total_lower_bound"] == pytest.approx(15.0)


def test_glmnet_partial_path_gives_no_per_lambda_ratio(glm_path):
    lam = [1.0, 0.5, 0.25]
    ours = [{"index": i, "lambda": l, "time": 1.0, "objective": 2.0 - i * 0.1, "kkt_rel": 1e-3} for i, l in enumerate(lam)]
    theirs = [{"index": i, "lambda": l, "time": 10.0, "objective": 2.0 - i * 0.1, "kkt_rel": 1e-2} for i, l in enumerate(lam[:2])]
    rec = glm_path.compare("s", ours, {"total_time": 3.0}, "glmnet", theirs,
                           {"total_time": 20.0, "per_lambda_time": "equal shares of the total"}, 3)
    assert rec["speedup_same_lambdas"] is None
    assert rec["speedup_total_lower_bound"] == pytest.approx(20.0 / 3.0)


@pytest.mark.skipif(not Path(BENCHMARKS / ".venvs" / "glmnet" / "bin" / "python").exists(),
                    reason="glmnet's environment is not built here (python benchmarks/glmnet_env.py builds it; "
                           "it needs gfortran)")
def test_glmnet_solves_the_same_problem(glm_path, capsys):
    glm_path.main(["--size", "600x6x3", "--n-lambdas", "4", "--lambda-min-ratio", "1e-2", "--solvers",
                   "debuggable,glmnet", "--threads", "1", "--verbose", "0"])
    out = capsys.readouterr()
    rows = _rows(out.out, "lambda")
    ours = {r["index"]: r for r in rows if r["solver"] == "debuggable"}
    theirs = {r["index"]: r for r in rows if r["solver"] == "glmnet"}
    assert sorted(theirs) == [0, 1, 2, 3]
    for i in range(4):
        # the same optimum: glmnet (tol 1e-7) agrees with our certified solution to ~1e-5
        assert abs(ours[i]["objective"] - theirs[i]["objective"]) <= 1e-5 * abs(ours[i]["objective"])
    (summary,) = _rows(out.out, "summary")
    assert summary["reference"] == "glmnet" and summary["whole_path_every_run"]


def test_an_unknown_solver_is_refused_before_any_work(glm_path, capsys):
    with pytest.raises(SystemExit, match="unknown solver 'glmnett'.*choose from debuggable, glmnet"):
        glm_path.main(["--size", "400x8x3", "--solvers", "debuggable,glmnett", "--verbose", "0"])
    assert capsys.readouterr().out == ""  # no solver ran, nothing was timed


def test_a_reference_that_cannot_be_built_fails_before_our_path_runs(glm_path, monkeypatch, capsys):
    import glmnet_env

    def no_compiler(log):
        raise SystemExit("--solvers glmnet: building python-glmnet needs a Fortran compiler")

    monkeypatch.setattr(glmnet_env, "ensure_glmnet_env", no_compiler)
    with pytest.raises(SystemExit, match="Fortran compiler"):
        glm_path.main(["--size", "400x8x3", "--n-lambdas", "3", "--solvers", "debuggable,glmnet", "--verbose", "0"])
    # the message comes before our path's minutes, not after them
    assert _rows(capsys.readouterr().out, "solver") == []


def test_saga_timeout_stops_glm_saga_inside_a_lambda_and_bounds_its_path(glm_path, capsys):
    # tol 0: glm-saga never meets its stopping rule, so only the timeout or its 2,000 epochs
    # can end its first lambda; at 20,000 rows those epochs take far longer than 1.5 s
    # (at 2,000 rows a fast machine finished them inside the timeout)
    glm_path.main(["--size", "20000x20x5", "--n-lambdas", "3", "--solvers", "debuggable,glm_saga", "--threads", "1",
                   "--saga-tol", "0", "--saga-timeout", "1.5", "--verbose", "0"])
    out = capsys.readouterr()
    saga = next(r for r in _rows(out.out, "solver") if r["solver"] == "glm_saga")
    ours = next(r for r in _rows(out.out, "solver") if r["solver"] == "debuggable")
    assert saga["timed_out"] is True and saga["n_lambdas_done"] == 0
    assert 1.5 <= saga["total_time"] < 10 and saga["unfinished_lambda_s"] == saga["total_time"]
    (summary,) = _rows(out.out, "summary")
    assert summary["lambdas_compared"] == 0 and summary["whole_path_every_run"] is False
    # its time spent, the unfinished lambda included, over our whole path's
    assert summary["median_speedup"] == pytest.approx(saga["total_time"] / ours["total_time"])
    assert "stopped by --saga-timeout" in out.err
    import signal

    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # the timer is off again


def test_our_path_without_row_workers_runs_round_robin_beside_ours(glm_path, capsys, monkeypatch):
    from debuggable._threads import ThreadBudget

    seen = []
    real = glm_path.run_debuggable

    def spy(*a, **kw):
        seen.append(ThreadBudget.ROW_WORKERS)
        return real(*a, **kw)

    monkeypatch.setattr(glm_path, "run_debuggable", spy)
    glm_path.main(["--size", "400x8x3", "--n-lambdas", "3", "--solvers", "debuggable,debuggable_no_rows",
                   "--threads", "1", "--runs", "2", "--verbose", "0"])
    out = capsys.readouterr()
    solvers = _rows(out.out, "solver")
    # round robin: both in every run (the order alternates from run to run)
    assert sorted((r["run"], r["solver"]) for r in solvers) == [
        (0, "debuggable"), (0, "debuggable_no_rows"), (1, "debuggable"), (1, "debuggable_no_rows")]
    flags = {r["solver"]: [] for r in solvers}
    for r, flag in zip(solvers, seen):
        flags[r["solver"]].append(flag)
    assert flags == {"debuggable": [True, True], "debuggable_no_rows": [False, False]}
    assert ThreadBudget.ROW_WORKERS is True
    assert all("row_workers" in r for r in solvers)


_TINY = ["--size", "400x8x3", "--n-lambdas", "3", "--solvers", "debuggable,sklearn", "--threads", "1", "--verbose", "0"]


def test_record_keeps_complete_runs_and_runs_only_the_missing_ones(glm_path, capsys, tmp_path):
    record = tmp_path / "runs.jsonl"
    glm_path.main([*_TINY, "--runs", "2", "--record", str(record)])
    first = capsys.readouterr()
    assert sorted((r["run"], r["solver"]) for r in _rows(first.out, "solver")) == [
        (0, "debuggable"), (0, "sklearn"), (1, "debuggable"), (1, "sklearn")]
    # the file holds exactly what was printed
    assert [json.loads(line) for line in record.read_text().splitlines()] == list(map(json.loads, first.out.splitlines()))

    glm_path.main([*_TINY, "--runs", "3", "--record", str(record)])
    second = capsys.readouterr()
    new = _rows(second.out, "solver")
    # only the third run is timed, and it goes on with the round robin (run 2 starts with ours)
    assert [(r["run"], r["solver"]) for r in new] == [(2, "debuggable"), (2, "sklearn")]
    assert "2 complete run(s) of these settings kept" in second.err and "1 to run" in second.err
    (summary,) = _rows(second.out, "summary")
    ours = {r["run"]: r["total_time"] for r in _rows(first.out + second.out, "solver") if r["solver"] == "debuggable"}
    assert summary["runs"] == 3 and summary["times_ours"] == [ours[0], ours[1], ours[2]]
    assert summary["median_time_ours"] == pytest.approx(sorted(ours.values())[1])
    assert len(summary["finished_at"]) == 3

    glm_path.main([*_TINY, "--runs", "3", "--record", str(record)])
    third = capsys.readouterr()
    assert not _rows(third.out, "solver") and "0 to run" in third.err
    assert _rows(third.out, "summary")[0]["times_ours"] == summary["times_ours"]


def test_record_drops_an_unfinished_run_and_runs_of_other_settings(glm_path, capsys, tmp_path):
    record = tmp_path / "runs.jsonl"
    glm_path.main([*_TINY, "--runs", "1", "--record", str(record)])
    capsys.readouterr()
    lines = record.read_text().splitlines()
    # as if the run had been killed while the reference ran: its summary and the end of
    # the line being written are missing
    last = max(i for i, line in enumerate(lines) if json.loads(line)["kind"] == "solver")
    record.write_text("\n".join(lines[:last]) + "\n" + lines[last][:25])

    glm_path.main([*_TINY, "--runs", "1", "--record", str(record)])
    out = capsys.readouterr()
    assert "0 complete run(s)" in out.err and "1 unreadable line(s) skipped" in out.err
    # the unfinished run's index is not reused
    assert {r["run"] for r in _rows(out.out, "solver")} == {1}
    assert _rows(out.out, "summary")[0]["runs"] == 1

    glm_path.main([*_TINY[:3], "4", *_TINY[4:], "--runs", "1", "--record", str(record)])  # 4 lambdas
    out = capsys.readouterr()
    assert "0 complete run(s)" in out.err
    assert {r["run"] for r in _rows(out.out, "solver")} == {0}
