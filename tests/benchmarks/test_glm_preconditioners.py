"""Smoke test of ``benchmarks/glm_preconditioners.py`` on a tiny problem."""

from __future__ import annotations

import json


def test_the_exact_per_class_blocks_beat_no_preconditioner(capsys, load_benchmark):
    glm_preconditioners = load_benchmark("glm_preconditioners")
    glm_preconditioners.main(["--size", "400x8x20", "--index", "15", "--threads", "1"])
    rows = {r["preconditioner"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert len(rows) == 11
    blocks, none = rows["per-class blocks"], rows["none"]
    assert blocks["products_rtol_0.05"] < none["products_rtol_0.05"]
    assert blocks["products_rtol_1e-3"] < none["products_rtol_1e-3"]
    kept = [rows[f"per-class blocks, {m}% of the curvature"]["samples_per_class"] for m in (99, 95, 90, 80, 50)]
    assert kept == sorted(kept, reverse=True) and kept[0] <= 400  # less of the curvature, fewer samples
