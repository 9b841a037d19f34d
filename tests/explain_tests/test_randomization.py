"""Randomisation re-initialises exactly the layers named and restores the model afterwards."""

import pytest
import torch
from torch import nn

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


def test_exported_layers_are_found_and_initialised_as_torch_does():
    """A torch.export program's sub-modules are not nn.Conv2d/nn.Linear any more; they are
    found by their own weight and re-initialised exactly as reset_parameters would."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    program = torch.export.unflatten(torch.export.export(net, (torch.zeros(2, 1, 8, 8),)))
    assert randomizable_layers(program) == ["3", "0"] == randomizable_layers(net)
    with randomized(program, ["3", "0"], seed=7):
        got = {k: v.detach().clone() for k, v in program.state_dict().items()}
    for i, name in enumerate(["3", "0"]):  # the oracle: torch's own reset_parameters under the same seed
        torch.manual_seed(7 + i)
        dict(net.named_modules())[name].reset_parameters()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)
    assert not torch.equal(program.state_dict()["3.weight"], net.state_dict()["3.weight"])  # restored on exit
