
import numpy as np
import torch

from debuggable.glm import elastic_net_path
from debuggable.pipeline.fit_stage import UsedColumns, constant_features, expand_columns


class Reader:
    """The feature-store reader protocol over an in-memory array."""

    def __init__(self, x):
        self.x = x
        self.n_rows = x.shape[0]
        self.shape = x.shape

    def iter_blocks(self, array="features", block_rows=None, as_torch=False, device=None, **_):
        step = block_rows or 7
        for lo in range(0, self.n_rows, step):
            blk = self.x[lo : lo + step]
            yield lo, torch.as_tensor(blk, device=device) if as_torch else blk


def test_used_columns_streams_the_kept_columns_only():
    x = np.arange(60.0).reshape(10, 6)
    view = UsedColumns(Reader(x), np.array([0, 3, 5]))
    assert view.shape == (10, 3)
    for as_torch in (False, True):
        blocks = [np.asarray(b) for _, b in view.iter_blocks("features", block_rows=4, as_torch=as_torch)]
        np.testing.assert_array_equal(np.concatenate(blocks), x[:, [0, 3, 5]])


def test_constant_columns_are_skipped_and_get_zero_weight():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + x[:, 2] > 0).astype(int) + (x[:, 4] > 1).astype(int)
    x[:, 1] = 3.0  # a dead unit
    mean, std = x.mean(0), x.std(0)
    const = constant_features(mean, std)
    assert const.tolist() == [1]
    keep = np.setdiff1d(np.arange(5), const)
    path = elastic_net_path(x[:, keep], y, n_lambdas=5, lambda_min_ratio=0.05)
    full = expand_columns(path, keep, 5, mean)
    assert full.coef.shape == (5, 3, 5)
    assert np.all(full.coef[:, :, 1] == 0) and full.feature_std[1] == 1.0 and full.feature_mean[1] == 3.0
    # The expanded path predicts exactly as the fit on the kept columns did.
    logits_full = x @ full.coef[-1].T + full.intercept[-1]
    logits_kept = x[:, keep] @ full.coef[-1][:, keep].T + full.intercept[-1]
    np.testing.assert_allclose(logits_full, logits_kept)
    assert full.info["constant_features_skipped"] == [1]
