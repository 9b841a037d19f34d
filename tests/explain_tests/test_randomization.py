"""Randomisation re-initialises exactly the layers named and restores the model afterwards."""

import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.explain_tests.randomization import (
    cascading_steps,
    independent_steps,
    randomizable_layers,
    randomized,
)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_layers_listed_from_the_top(tiny_cnn):
    assert randomizable_layers(tiny_cnn) == ["fc", "features.14", "features.10", "features.7", "features.3", "features.0"]
    assert cascading_steps(["a", "b", "c"]) == [["a"], ["a", "b"], ["a", "b", "c"]]
    assert independent_steps(["a", "b"]) == [["a"], ["b"]]


@pytest.mark.parametrize("names", [["fc"], ["features.7"], ["fc", "features.14", "features.0"]])
def test_exactly_the_named_layers_change_and_come_back(tiny_cnn, names):
    before = _snapshot(tiny_cnn)
    rng_before = torch.random.get_rng_state()
    with randomized(tiny_cnn, names, seed=3) as m:
        assert m is tiny_cnn
        during = _snapshot(tiny_cnn)
    for key, value in before.items():
        layer = key.rsplit(".", 1)[0]
        if layer in names:
            assert not torch.equal(value, during[key]), key
        else:
            assert torch.equal(value, during[key]), key  # BatchNorm stats and other layers untouched
    after = _snapshot(tiny_cnn)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng_before, torch.random.get_rng_state())  # the global generator is left alone


def test_same_seed_same_weights_and_restore_after_error(tiny_cnn):
    before = _snapshot(tiny_cnn)
    with randomized(tiny_cnn, ["fc"], seed=1):
        first = tiny_cnn.fc.weight.detach().clone()
    with randomized(tiny_cnn, ["fc"], seed=1):
        assert torch.equal(first, tiny_cnn.fc.weight)
    with pytest.raises(RuntimeError, match="boom"):
        with randomized(tiny_cnn, ["fc", "features.0"]):
            raise RuntimeError("boom")
    after = _snapshot(tiny_cnn)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unknown_layer_fails_before_touching_the_model(tiny_cnn):
    before = _snapshot(tiny_cnn)
    with pytest.raises(DebuggableError, match="'conv9'"):
        with randomized(tiny_cnn, ["fc", "conv9"]):
            pass
    with pytest.raises(DebuggableError, match="reset_parameters"):
        with randomized(tiny_cnn, ["pool"]):
            pass
    after = _snapshot(tiny_cnn)
    assert all(torch.equal(before[k], after[k]) for k in before)
