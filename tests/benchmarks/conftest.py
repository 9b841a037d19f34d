"""Shared fixtures of the benchmark scripts' tests."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def load_benchmark(monkeypatch):
    """``load_benchmark("glm_path")``: a script of ``benchmarks/`` imported as a module,
    with ``benchmarks/`` on ``sys.path`` for its own imports; the module is dropped from
    ``sys.modules`` after the test, so the next test imports it afresh."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    loaded: list[str] = []

    def load(name: str):
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
