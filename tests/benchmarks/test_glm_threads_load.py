"""Smoke test of ``benchmarks/glm_threads_load.py`` (tiny shape, one round)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def threads_load(load_benchmark):
    threads = torch.get_num_threads()
    yield load_benchmark("glm_threads_load")
    torch.set_num_threads(threads)


def test_chunked_products_are_the_plain_product(threads_load):
    gen = torch.Generator().manual_seed(1)
    X, W, R = torch.randn(103, 7, generator=gen), torch.randn(7, 3, generator=gen), torch.randn(103, 3, generator=gen)
    with ThreadPoolExecutor(2) as pool:
        for chunks in (1, 2, 5):
            G = threads_load.products_chunked(X, W, R, 2, chunks, pool)
            torch.testing.assert_close(G, X.T @ R, rtol=1e-5, atol=1e-5)


def test_every_way_quiet_and_loaded_against_openmp_quiet(threads_load):
    rows = threads_load.main(["--shape", "3000x16x3", "--reps", "3", "--rounds", "1", "--chunks", "2", "4", "--workers", "2", "--unpinned",
                              "--default-slice"])
    assert [(r["way"], r["competitors"]) for r in rows] == [
        (w, c) for w in ("omp2", "omp1", "chunk2", "chunk4", "rows2", "rows2-unpinned", "rows2-default-slice")
        for c in (0, 1)]
    assert rows[0]["over_omp2_quiet"] == 1.0
    for r in rows:
        assert r["median_s"] > 0 and r["all_s"] == [r["median_s"]] and r["over_omp2_quiet"] > 0
        assert 0 < r["cores_used"] <= 4


def test_the_solvers_row_chunked_products_are_the_plain_product(threads_load):
    gen = torch.Generator().manual_seed(2)
    X, W, R = torch.randn(5000, 9, generator=gen), torch.randn(9, 4, generator=gen), torch.randn(5000, 4, generator=gen)
    for workers in (1, 2, 3):
        G = threads_load.products_rows(X, W, R, 2, workers)
        torch.testing.assert_close(G, (X.T.double() @ R.double()), rtol=1e-5, atol=1e-4)
