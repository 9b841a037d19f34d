import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret import feature_activation, feature_attack, feature_visualisation
from debuggable.models import SmallCNN, SmallCNNBackbone

from .conftest import DotBackbone, TextBackboneStub


def _cnn(seed=0):
    torch.manual_seed(seed)
    return SmallCNNBackbone(SmallCNN(in_channels=1, num_classes=3, width=4, feature_dim=8)).eval()


def test_attack_stays_in_the_ball_and_the_valid_range_and_raises_the_feature():
    backbone = _cnn()
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    before = feature_activation(backbone, x, 3)
    for p in backbone.parameters():
        p.grad = None
    adv = feature_attack(backbone, x, 3, eps=1.5, steps=15, step_size=0.3)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= 1.5 + 1e-5
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    after = feature_activation(backbone, adv, 3)
    assert torch.all(after >= before) and float((after - before).mean()) > 0
    assert all(p.grad is None for p in backbone.parameters())  # gradients w.r.t. the input only
    assert not backbone.training


def test_attack_on_a_linear_feature_reaches_the_closed_form_optimum():
    # f(x) = <v, x>: the best point in the L2 ball is x + eps * v / ||v|| (inside [0, 1] here).
    rng = np.random.default_rng(0)
    v = rng.normal(size=(16, 2))
    backbone = DotBackbone(v)
    x = torch.full((2, 1, 4, 4), 0.5)
    adv = feature_attack(backbone, x, 1, eps=0.4, steps=3, step_size=0.4)
    expected = 0.5 + 0.4 * v[:, 1] / np.linalg.norm(v[:, 1])
    np.testing.assert_allclose(adv[0].flatten().numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(adv[1].flatten().numpy(), expected, atol=1e-5)


def test_one_feature_per_image_in_a_batch_matches_separate_attacks():
    backbone = _cnn(1)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    together = feature_attack(backbone, x, [0, 1, 0, 5], eps=1.0, steps=4, step_size=0.3)
    alone = feature_attack(backbone, x[3:], 5, eps=1.0, steps=4, step_size=0.3)
    torch.testing.assert_close(together[3:], alone, atol=1e-5, rtol=1e-5)


def test_zero_budget_returns_the_images():
    backbone = _cnn()
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(feature_attack(backbone, x, 0, eps=0.0, steps=5, step_size=0.1), x)


def test_visualisation_raises_the_feature_above_noise():
    backbone = _cnn(2)
    for param in ("fourier", "pixel"):
        img = feature_visualisation(backbone, 2, shape=(1, 12, 12), steps=40, lr=0.1, jitter=1,
                                    parametrisation=param, seed=0)
        assert img.shape == (1, 12, 12) and float(img.min()) >= 0 and float(img.max()) <= 1
        noise = torch.rand(16, 1, 12, 12, generator=torch.Generator().manual_seed(0))
        assert float(feature_activation(backbone, img[None], 2)) > float(feature_activation(backbone, noise, 2).max())
    both = feature_visualisation(backbone, [2, 5], shape=(1, 12, 12), steps=2)
    assert both.shape == (2, 1, 12, 12)
    assert all(p.grad is None for p in backbone.parameters())


def test_colour_visualisation_is_decorrelated_rgb():
    torch.manual_seed(0)
    backbone = SmallCNNBackbone(SmallCNN(in_channels=3, num_classes=2, width=4, feature_dim=4)).eval()
    img = feature_visualisation(backbone, 1, shape=(3, 8, 8), steps=5)
    assert img.shape == (3, 8, 8)


def test_bad_input():
    backbone = _cnn()
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(DebuggableError, match=r"feature: index 8 is out of range; expected 0..7"):
        feature_attack(backbone, x, 8, eps=1.0, steps=1, step_size=0.1)
    with pytest.raises(DebuggableError, match="eps: got -1"):
        feature_attack(backbone, x, 0, eps=-1, steps=1, step_size=0.1)
    with pytest.raises(DebuggableError, match=r"expected images in \[0, 1\]"):
        feature_attack(backbone, x * 3, 0, eps=1.0, steps=1, step_size=0.1)
    with pytest.raises(DebuggableError, match="works on image models, but this backbone's modality is 'text'"):
        feature_attack(TextBackboneStub(), x, 0, eps=1.0, steps=1, step_size=0.1)
    with pytest.raises(DebuggableError, match="modality is 'text'"):
        feature_visualisation(TextBackboneStub(), 0, shape=(1, 8, 8))
    with pytest.raises(DebuggableError, match="parametrisation: got 'wavelet'"):
        feature_visualisation(backbone, 0, shape=(1, 8, 8), parametrisation="wavelet")
    with pytest.raises(DebuggableError, match="feature: index 9 is out of range"):
        feature_visualisation(backbone, 9, shape=(1, 8, 8))


class _DeadAtStart(torch.nn.Module):
    """feature = mean(relu(x - 0.8)): exactly 0 on grey noise around 0.5."""

    modality = "image"
    feature_dim = 1
    has_spatial = False

    def __init__(self):
        super().__init__()
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        from debuggable.models import BackboneOutput

        return BackboneOutput(features=self.relu(x - 0.8).mean(dim=(1, 2, 3))[:, None])


def test_redirected_relu_lets_a_feature_that_is_dead_on_noise_grow():
    model = _DeadAtStart()
    stuck = feature_visualisation(model, 0, shape=(1, 6, 6), steps=30, lr=0.2, redirect_steps=0, jitter=0)
    grown = feature_visualisation(model, 0, shape=(1, 6, 6), steps=30, lr=0.2, jitter=0)
    assert float(model(stuck[None]).features) == 0.0
    assert float(model(grown[None]).features) > 0.05
    assert not model.relu._forward_hooks  # hooks removed afterwards


def test_object_share_of_a_perturbation_by_hand():
    from debuggable.interpret import object_area_share, perturbation_object_share

    x = torch.zeros(2, 1, 6, 6)
    x[:, :, 2:4, 2:4] = 1.0  # a 2x2 object; grown by one pixel it covers 4x4 = 16 of 36 pixels
    p = x.clone()
    p[0, 0, 1, 1] += 0.0  # image 0: no change at all
    p[1, 0, 0, 0] = 0.3  # background, outside the grown mask: energy 0.09
    p[1, 0, 2, 2] = 0.6  # object: energy 0.16
    p[1, 0, 1, 4] = 0.2  # the grown outline counts as object: energy 0.04
    share = perturbation_object_share(x, p)
    np.testing.assert_allclose(share, [0.0, 0.20 / 0.29])
    np.testing.assert_allclose(object_area_share(x), [16 / 36, 16 / 36])
    np.testing.assert_allclose(object_area_share(x, dilate=0), [4 / 36, 4 / 36])
    with pytest.raises(DebuggableError, match=r"^perturbed: expected the shape of images"):
        perturbation_object_share(x, p[:, :, :5])
