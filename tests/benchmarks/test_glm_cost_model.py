"""``benchmarks/glm_cost_model.py``: the fit recovers a known cost model, and the
whole script runs on a real (tiny) ``glm_path.py`` output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture()
def cost_model(load_benchmark):
    return load_benchmark("glm_cost_model")


def _synthetic_results(path: Path, truth: np.ndarray, ratio: float, rng) -> None:
    """glm_path.py-shaped records whose times follow ``truth`` exactly (float64 FLOPs
    weighing ``ratio`` float32 ones)."""
    lines = []
    for size in ("2000x64x10", "3000x128x25", "1000x256x300"):
        n, d, k = (int(v) for v in size.split("x"))
        total = 0.0
        for i in range(12):
            detail = {"flops_float32": int(rng.integers(1, 50)) * 2 * n * d * k,
                      "flops_float64": int(rng.integers(1, 5)) * 2 * n * d * k,
                      "x_bytes": 0, "products": int(rng.integers(2, 40)), "working_set": int(rng.integers(5, d)),
                      "inner": int(rng.integers(0, 300)), "certificates": int(rng.integers(1, 3)),
                      "n_iter": int(rng.integers(0, 20))}
            from glm_cost_model import features, predict

            t = float(predict(features(detail, n, k)[None, :], truth, ratio)[0])
            total += t
            lines.append({"kind": "lambda", "size": size, "solver": "debuggable", "run": 0, "condition": "quiet",
                          "index": i, "time": t, "solver_detail": detail})
        lines.append({"kind": "solver", "size": size, "solver": "debuggable", "run": 0, "condition": "quiet",
                      "threads": 2, "total_time": total})
        # another solver's records are ignored
        lines.append({"kind": "lambda", "size": size, "solver": "glmnet", "run": 0, "condition": "quiet",
                      "index": 0, "time": 99.0})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_the_fit_recovers_the_rates_that_made_the_times(cost_model, tmp_path):
    truth = np.array([1 / 20e9, 2e-9, 3e-10, 1e-3])  # s per unit of each regressor
    _synthetic_results(tmp_path / "runs.jsonl", truth, 2.0, np.random.default_rng(0))
    runs = cost_model.load([str(tmp_path / "runs.jsonl")], threads=2)
    assert sorted(runs) == ["1000x256x300", "2000x64x10", "3000x128x25"]
    np.testing.assert_allclose(cost_model.fit(runs, 2.0), truth, rtol=1e-6)
    assert cost_model.load([str(tmp_path / "runs.jsonl")], threads=1) == {}


def test_work_scales_with_the_shape(cost_model):
    run = {"x": np.array([[8.0, 4.0, 2.0, 6.0, 1.0]])}
    x = cost_model.scaled_work(run, (10, 4, 300), (20, 8, 600))
    np.testing.assert_allclose(x, [[8.0 * 8, 4.0 * 8, 2.0 * 4, 6.0 * 2 * 2, 1.0]])
    x = cost_model.scaled_work(run, (10, 4, 10), (10, 8, 10))  # below 200 classes the model grows with m^2
    np.testing.assert_allclose(x[0, 3], 6.0 * 4)


def test_the_script_on_a_real_benchmark_output(cost_model, load_benchmark, tmp_path, capsys):
    load_benchmark("glm_path").main(["--size", "600x24x3", "--size", "500x16x6", "--n-lambdas", "5",
                                     "--lambda-min-ratio", "0.05", "--solvers", "debuggable", "--threads", "1",
                                     "--fixed-threads"])
    out = capsys.readouterr().out
    (tmp_path / "runs.jsonl").write_text(out)
    lambdas = [r for r in map(json.loads, out.splitlines()) if r["kind"] == "lambda"]
    assert len(lambdas) == 10 and all(r["solver_detail"]["products"] >= 1 for r in lambdas[1:])
    assert cost_model.main([str(tmp_path / "runs.jsonl"), "--threads", "1", "--plot", str(tmp_path / "m.png")]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    checks = [r for r in records if r["kind"] == "check"]
    assert {r["size"] for r in checks} == {"600x24x3", "500x16x6"}
    assert all(r["predicted_held_out"] > 0 for r in checks)
    pred = [r for r in records if r["kind"] == "prediction"][0]
    assert pred["gpu_8_s"] < pred["gpu_1_s"] < pred["this_cpu_s"]
    assert any("not measured" in a for a in pred["assumptions"])
    assert (tmp_path / "m.png").stat().st_size > 1000
