"""Smoke tests of ``benchmarks/glm_path.py`` on tiny problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

pytest.importorskip("glm_saga")


@pytest.fixture()
def glm_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import glm_path

    yield glm_path
    monkeypatch.delitem(__import__("sys").modules, "glm_path", raising=False)


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
