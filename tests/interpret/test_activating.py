import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret import most_activating


class BlockReader:
    """The feature-store reader protocol over an in-memory array (records block reads)."""

    def __init__(self, x):
        self.x = x
        self.shape = x.shape
        self.reads = []

    def iter_blocks(self, array="features", block_rows=None, **_):
        step = block_rows or 5
        for lo in range(0, self.x.shape[0], step):
            self.reads.append((lo, min(lo + step, self.x.shape[0])))
            yield lo, self.x[lo : lo + step]


@pytest.mark.parametrize("bottom", [False, True])
def test_matches_a_stable_numpy_argsort_with_ties(bottom):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(53, 4)).astype(np.float32)  # many ties
    for j in range(4):
        for k in (1, 7, 53):
            got = most_activating(x, j, k, bottom=bottom, block_rows=6)
            order = np.argsort(x[:, j] if bottom else -x[:, j], kind="stable")[:k]
            np.testing.assert_array_equal(got.indices, order)
            np.testing.assert_array_equal(got.values, x[order, j])
            assert got.indices.dtype == np.int64 and got.bottom == bottom and got.n_rows == 53


def test_streams_a_reader_block_by_block_and_accepts_tensors():
    x = np.random.default_rng(1).normal(size=(23, 3))
    reader = BlockReader(x)
    got = most_activating(reader, 2, 4)
    assert reader.reads == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    np.testing.assert_array_equal(got.indices, np.argsort(-x[:, 2], kind="stable")[:4])
    t = most_activating(torch.as_tensor(x), 2, 4)
    np.testing.assert_array_equal(t.indices, got.indices)


def test_k_is_capped_at_the_number_of_rows():
    got = most_activating(np.arange(6.0).reshape(3, 2), 0, k=10)
    assert got.indices.tolist() == [2, 1, 0] and len(got) == 3


def test_bad_input_fails_with_one_sentence():
    x = np.zeros((4, 3))
    with pytest.raises(DebuggableError, match=r"feature: index 3 is out of range; expected 0..2"):
        most_activating(x, 3)
    with pytest.raises(DebuggableError, match="feature: index -1 is out of range"):
        most_activating(x, -1)
    with pytest.raises(DebuggableError, match="k: got 0"):
        most_activating(x, 0, k=0)
    with pytest.raises(DebuggableError, match="got 0 rows"):
        most_activating(np.zeros((0, 3)), 0)
    with pytest.raises(DebuggableError, match=r"expected an \(N, D\) array"):
        most_activating(np.zeros(5), 0)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(DebuggableError, match="row 2 has a non-finite value of feature 1"):
        most_activating(bad, 1)
