"""The designs' products against plain float64 matrix products."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.glm._design import InMemoryDesign, StreamingDesign, thin_rt_x

from .spies import spying_rows
from .test_streaming import TinyReader


def _designs(X: np.ndarray):
    mean = torch.zeros(X.shape[1], dtype=torch.float64)
    std = torch.ones(X.shape[1], dtype=torch.float64)
    mem = InMemoryDesign(torch.as_tensor(X, dtype=torch.float32), None)
    st = StreamingDesign(TinyReader(X), mean, std, None, torch.float32, torch.device("cpu"), block_rows=16)
    return {"in_memory": mem, "streaming": st}


@pytest.mark.parametrize("kind", ["in_memory", "streaming"])
@pytest.mark.parametrize("exact", [False, True])
def test_mv_all_is_the_full_product_and_keeps_the_working_set(kind, exact):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 12)).astype(np.float32)
    W = torch.as_tensor(rng.normal(size=(12, 3)))
    W[[1, 4, 7]] = 0  # zero rows are skipped, which must not change the product
    design = _designs(X)[kind]
    A = torch.tensor([0, 2, 5])
    design.set_columns(A)
    Z = design.mv_all(W, exact=exact)
    expected = X.astype(np.float64) @ W.numpy()
    np.testing.assert_allclose(Z.numpy(), expected, rtol=0, atol=1e-12 if exact else 1e-4)
    # the working set is untouched: products still see only columns A
    V = torch.as_tensor(rng.normal(size=(3, 3)))
    np.testing.assert_allclose(design.mv(V, exact=True).numpy(), X[:, [0, 2, 5]].astype(np.float64) @ V.numpy(), atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_thin_rt_x_matches_the_plain_product_for_any_split(threads, dtype):
    # 3,301 rows: with 2 or 3 threads the chunks leave a remainder that is added separately.
    rng = np.random.default_rng(0)
    R = rng.normal(size=(3301, 7))
    X = np.maximum(rng.normal(size=(3301, 40)), 0)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = thin_rt_x(torch.as_tensor(R, dtype=dtype), torch.as_tensor(X, dtype=dtype))
    finally:
        torch.set_num_threads(saved)
    assert got.shape == (7, 40) and got.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(got.numpy(), R.T @ X, rtol=tol, atol=tol * np.abs(R.T @ X).max())
    # a non-contiguous X (a column view) falls back to the plain product
    Xv = torch.as_tensor(X, dtype=dtype)[:, ::2]
    np.testing.assert_allclose(thin_rt_x(torch.as_tensor(R, dtype=dtype), Xv).numpy(), R.T @ X[:, ::2],
                               rtol=tol, atol=tol * np.abs(R.T @ X).max())


@pytest.mark.parametrize("kind", ["in_memory", "streaming"])
def test_weighted_grams_are_the_weighted_products_of_the_row_and_column_subsets(kind):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(70, 9)).astype(np.float32)
    design = _designs(X)[kind]
    # rows spanning several of the streaming design's 16-row blocks, one request with a single row
    requests = [(np.array([0, 3, 15, 16, 17, 40, 69]), np.array([1, 4, 8])), (np.array([33]), np.array([0, 2])),
                (np.arange(70), np.arange(9))]
    torch_requests, expected = [], []
    for rows, cols in requests:
        w = rng.uniform(0.1, 2.0, size=rows.size)
        X1 = np.hstack([X[rows][:, cols].astype(np.float64), np.ones((rows.size, 1))])
        expected.append(X1.T @ (w[:, None] * X1))
        torch_requests.append((torch.as_tensor(rows), torch.as_tensor(w), torch.as_tensor(cols)))
    for got, want in zip(design.weighted_grams(torch_requests), expected):
        assert got.dtype == torch.float64 and got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    if kind == "in_memory":  # with the row-chunk workers on, each request is one worker's task
        design.rows, seen = spying_rows()
        try:
            on_workers = design.weighted_grams(torch_requests)
        finally:
            design.rows.close()
        assert seen and all(name.startswith("debuggable-rows") for name in seen)
        for got, want in zip(on_workers, expected):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["in_memory", "streaming"])
def test_work_counts_are_the_products_flops_and_bytes(kind):
    """Each product is counted as 2 * rows * inner * outer FLOPs in its compute dtype."""
    rng = np.random.default_rng(1)
    n, d, k = 50, 12, 3
    X = rng.normal(size=(n, d)).astype(np.float32)
    design = _designs(X)[kind]
    A = torch.tensor([0, 2, 5, 9])
    design.set_columns(A)
    design.mv(torch.ones(4, k, dtype=torch.float64))                      # float32, 4 columns
    design.rmv(torch.ones(n, k, dtype=torch.float64), exact=True)          # float64, 4 columns
    design.rmv(torch.ones(n, k, dtype=torch.float64), full=True)           # float32, all 12
    got = design.work.snapshot()
    assert got["products"] == 3
    assert got["flops_float32"] == 2 * n * 4 * k + 2 * n * d * k
    assert got["flops_float64"] == 2 * n * 4 * k
    if kind == "streaming":
        assert design.passes == 3 and got["x_bytes"] == 3 * n * d * 4  # every pass reads every stored column
    else:
        assert got["x_bytes"] >= n * 4 * 4 + n * d * 4


def test_a_path_records_its_work_per_lambda_and_a_streamed_one_counts_one_product_per_pass():
    from debuggable.glm import elastic_net_path

    from .oracles import make_classification

    X, y = make_classification(400, 15, 3, seed=5)
    kw = dict(alpha=0.95, n_lambdas=5, lambda_min_ratio=1e-2, dtype="float64")
    reader = TinyReader(X)
    st = elastic_net_path(reader, y, solver="streaming", block_rows=64, **kw)
    mem = elastic_net_path(X, y, **kw)
    work = st.info["work"]
    assert len(work) == len(st) and all(w["products"] > 0 for w in work[1:])
    total = sum(w["products"] for w in work) + st.info["work_setup"]["products"]
    # the reader counts its passes itself: one per product, plus the pass that checks
    # the rows are finite and computes the feature moments (not a product)
    assert reader.passes == total + 1
    assert len(mem.info["work"]) == len(mem)
    assert all(w["flops_float32"] + w["flops_float64"] > 0 and w["working_set"] > 0 for w in mem.info["work"][1:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_standardize_block_with_and_without_scratch_is_numpys_float64_standardisation(dtype):
    from debuggable.glm._design import standardize_block

    rng = np.random.default_rng(3)
    X = (rng.normal(size=(37, 11)) * 5 + 1e3).astype(np.float32)
    mean, std = X.astype(np.float64).mean(0), X.astype(np.float64).std(0)
    want = ((X.astype(np.float64) - mean) / std).astype(torch.empty(0, dtype=dtype).numpy().dtype)
    blk = torch.as_tensor(X.copy())
    scratch = torch.full((40 * 11,), np.nan, dtype=torch.float64)
    m, s = torch.as_tensor(mean), torch.as_tensor(std)
    for rows in (37, 5):  # a full block, then a shorter last block in the same scratch
        got = standardize_block(blk[:rows], m, s, dtype, scratch)
        assert got.dtype == dtype and got.shape == (rows, 11)
        assert np.array_equal(got.numpy(), want[:rows])  # the same bits as NumPy's float64 arithmetic
        assert np.array_equal(standardize_block(blk[:rows], m, s, dtype).numpy(), want[:rows])
    assert np.array_equal(blk.numpy(), X)  # the input block is left as it was
    # a result never shares the scratch: the next block must not overwrite a block in use
    first = standardize_block(blk[:5], m, s, dtype, scratch)
    standardize_block(blk[5:10], m, s, dtype, scratch)
    assert np.array_equal(first.numpy(), want[:5])


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("cols", [None, "few", "most"])
def test_products_over_row_chunk_workers_equal_the_single_call_products(exact, cols):
    """With the budget's row workers on, ``mv``, ``mv_all`` and ``rmv`` run over row chunks
    on worker threads; the results are NumPy's float64 products (up to the compute
    dtype's rounding) and the workers really ran them."""
    rng = np.random.default_rng(3)
    n, d, k = 5000, 40, 7
    X = rng.standard_normal((n, d)).astype(np.float32)
    V = rng.standard_normal((d, k))
    R = rng.standard_normal((n, k))
    design = InMemoryDesign(torch.from_numpy(X), None)
    rows, seen = spying_rows()
    design.rows = rows
    A = {None: None, "few": torch.tensor([1, 5, 9]), "most": torch.arange(0, d - 2)}[cols]
    design.set_columns(A)
    idx = np.arange(d) if A is None else A.numpy()
    X64 = X.astype(np.float64)
    tol = 1e-12 if exact else 1e-4
    try:
        Z = design.mv(torch.from_numpy(V[idx]), exact=exact).numpy()
        np.testing.assert_allclose(Z, X64[:, idx] @ V[idx], rtol=tol, atol=tol * 10)
        G = design.rmv(torch.from_numpy(R), exact=exact).numpy()
        np.testing.assert_allclose(G, X64[:, idx].T @ R, rtol=tol, atol=tol * 100)
        Gf = design.rmv(torch.from_numpy(R), exact=exact, full=True).numpy()
        np.testing.assert_allclose(Gf, X64.T @ R, rtol=tol, atol=tol * 100)
        Zall = design.mv_all(torch.from_numpy(V), exact=exact).numpy()
        np.testing.assert_allclose(Zall, X64 @ V, rtol=tol, atol=tol * 10)
    finally:
        rows.close()
    assert seen and all(name.startswith("debuggable-rows") for name in seen)
    assert rows.calls >= 4


def test_row_chunk_products_are_reproducible_and_off_when_inactive():
    from debuggable._threads import RowChunks

    rng = np.random.default_rng(4)
    X = torch.from_numpy(rng.standard_normal((6000, 30)).astype(np.float32))
    R = torch.from_numpy(rng.standard_normal((6000, 5)))
    design = InMemoryDesign(X, None)
    design.rows = RowChunks()
    off = design.rmv(R)
    assert design.rows.calls == 0  # one worker: a plain call in this thread
    design.rows.set_workers(2)
    try:
        first, second = design.rmv(R), design.rmv(R)
    finally:
        design.rows.close()
    assert torch.equal(first, second)  # fixed chunks, fixed order of the partial sums
    torch.testing.assert_close(first, off, rtol=1e-5, atol=1e-3)
