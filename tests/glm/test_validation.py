"""Bad input fails early with one clear sentence naming the argument and the value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.glm import GLMPath, elastic_net_path
from debuggable.glm import _validation

from .oracles import make_classification

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return make_classification(80, 6, 3, seed=20)


def _err(match, X, y, **kw):
    with pytest.raises(DebuggableError, match=match) as info:
        elastic_net_path(X, y, n_lambdas=3, **kw)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert msg.count(". ") == 0 and msg.endswith("."), msg  # one sentence
    return msg


def test_nan_and_inf(data):
    X, y = data
    Xn = X.copy()
    Xn[3, 1] = np.nan
    _err(r"^X: expected finite numbers, got 1 NaN or infinite values \(first at row 3, column 1\)\.$", Xn, y)
    Xi = X.copy()
    Xi[5, 4] = np.inf
    _err(r"row 5, column 4", torch.tensor(Xi), y)


def test_constant_feature(data):
    X, y = data
    Xc = X.copy()
    Xc[:, 2] = 3.25
    _err(r"^X: expected features with non-zero variance, got 1 constant feature\(s\) \(column 2\); drop them", Xc, y,
         constant_features="raise")
    _err(r"constant feature", Xc, y, standardize=False, constant_features="raise")


def test_labels(data):
    X, y = data
    _err(r"^y: expected at least two classes, got only class 0\.$", X, np.zeros(len(y), int))
    y_gap = np.where(y == 1, 2, y)  # no example of class 1
    _err(r"^y: expected every class 0\.\.2 to occur, got no example of class 1", X, y_gap)
    _err(r"^y: expected integer class labels 0\.\.K-1, got -1\.$", X, np.where(y == 0, -1, y))
    _err(r"^y: expected integer class labels 0\.\.K-1, got 0\.5\.$", X, np.where(y == 0, 0.5, y))
    _err(r"^y: expected integer class labels 0\.\.K-1, got dtype <U\d+\.$", X, y.astype(str))
    _err(r"^y: expected labels 0 and 1 for family='binomial', got 2\.$", X, y, family="binomial")


def test_length_mismatch(data):
    X, y = data
    _err(r"^y: expected 80 entries to match the 80 rows of X, got shape \(79,\)\.$", X, y[:-1])
    _err(r"^sample_weight: expected shape \(80,\)", X, y, sample_weight=np.ones(10))


@pytest.mark.parametrize("alpha", [0, 1.5, -0.1, float("nan"), True, "0.5"])
def test_alpha_outside_range(data, alpha):
    X, y = data
    _err(r"^alpha: expected a number in \(0, 1\] \(1 is the lasso\), got ", X, y, alpha=alpha)


def test_lambda_grid(data):
    X, y = data
    _err(r"^lambdas: expected a strictly decreasing grid, got 0\.1 followed by 0\.2 at position 0\.$", X, y, lambdas=[0.1, 0.2])
    _err(r"^lambdas: expected a strictly decreasing grid", X, y, lambdas=[0.1, 0.1])
    _err(r"^lambdas: expected finite positive values, got -0\.1 among them\.$", X, y, lambdas=[0.2, -0.1])
    _err(r"^lambda_min_ratio: expected a finite number in \(0, 1\.0\), got 1\.5\.$", X, y, lambda_min_ratio=1.5)
    with pytest.raises(DebuggableError, match=r"^n_lambdas: expected an integer >= 1, got 0\.$"):
        elastic_net_path(X, y, n_lambdas=0)


def test_other_arguments(data):
    X, y = data
    _err(r"^family: expected one of 'multinomial', 'binomial', 'gaussian', got 'poisson'\.$", X, y, family="poisson")
    _err(r"^tol: expected a finite number > 0, got 0\.$", X, y, tol=0)
    _err(r"^sample_weight: expected finite non-negative weights", X, y, sample_weight=-np.ones(len(y)))
    _err(r"^X_val, y_val: expected both or neither, got only X_val\.$", X, y, X_val=X)
    _err(r"^X_val: expected 6 features like X, got shape \(80, 5\)\.$", X, y, X_val=X[:, :5], y_val=y)
    _err(r"^X: expected a 2-D \(samples x features\) array, got shape \(80,\)\.$", X[:, 0], y)
    _err(r"^device: 'cuda' was requested but CUDA is not available", X, y, device="cuda") if not torch.cuda.is_available() else None
    _err(r"^solver: expected one of 'auto', 'in_memory', 'streaming', got 'sgd'\.$", X, y, solver="sgd")
    _err(r"^dtype: expected 'float32' or 'float64', got 'float16'\.$", X, y, dtype="float16")
    _err(r"^y_val: expected class labels 0\.\.2 as in the training labels, got 3\.$", X, y, X_val=X, y_val=np.full(len(y), 3))


def test_too_large_for_memory_suggests_streaming(data, monkeypatch):
    X, y = data
    monkeypatch.setattr(_validation, "available_memory", lambda device: 1000)
    msg = _err(r"^X: a 80 x 6 problem with 3 outputs needs about .* GiB on cpu but only 0\.0 GiB are free", X, y, solver="in_memory")
    assert "streaming" in msg
    # the automatic choice falls back to streaming for a reader instead of failing
    from .test_streaming import TinyReader

    path = elastic_net_path(TinyReader(X), y, n_lambdas=2)
    assert path.info["solver"] == "prox_newton_streaming"


def test_nothing_written_on_bad_input(tmp_path, data):
    X, y = data
    path = elastic_net_path(X, y, n_lambdas=2)
    target = tmp_path / "afile"
    target.write_text("x")
    with pytest.raises(DebuggableError, match="existing file"):
        path.save(target)
    assert target.read_text() == "x"
    with pytest.raises(DebuggableError, match="expected a saved GLM path"):
        GLMPath.load(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
