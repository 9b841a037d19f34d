import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models import SmallCNNBackbone, pgd_attack, project


def _batch(digits, n=64):
    x, y = digits[1].batch(np.arange(n))
    return x, y


@pytest.mark.parametrize(("norm", "eps"), [("l2", 0.8), ("linf", 0.1)])
def test_projection_respects_eps_and_loss_increases(trained_cnn, digits, norm, eps):
    x, y = _batch(digits)
    gen = torch.Generator().manual_seed(0)
    x_adv = pgd_attack(trained_cnn, x, y, norm=norm, eps=eps, step_size=2.5 * eps / 10, steps=10, generator=gen)
    delta = (x_adv - x).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().max(dim=1).values
    assert float(size.max()) <= eps * (1 + 1e-5)
    assert float(size.max()) >= 0.95 * eps  # the budget is actually used, up to the boundary
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    with torch.no_grad():
        clean = F.cross_entropy(trained_cnn(x), y, reduction="none")
        adv = F.cross_entropy(trained_cnn(x_adv), y, reduction="none")
        assert adv.sum() > 3 * clean.sum()
        assert (adv >= clean - 1e-4).float().mean() >= 0.95
        assert (trained_cnn(x_adv).argmax(1) == y).float().mean() < (trained_cnn(x).argmax(1) == y).float().mean()


def test_project_matches_closed_form():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(6, 1, 4, 4)).astype(np.float32)
    d[0] *= 1e-3  # inside the ball: unchanged
    eps = 1.5
    l2 = project(torch.from_numpy(d), norm="l2", eps=eps).numpy().reshape(6, -1)
    flat = d.reshape(6, -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    expected = np.where(norms > eps, flat * eps / norms, flat)
    np.testing.assert_allclose(l2, expected, rtol=1e-5, atol=1e-7)
    linf = project(torch.from_numpy(d), norm="linf", eps=0.3).numpy()
    np.testing.assert_array_equal(linf, np.clip(d, -0.3, 0.3))


def test_single_step_matches_hand_computed_gradient_of_a_linear_model():
    # logits = W x + b; d CE / d x = W^T (softmax - onehot), computed in NumPy.
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(5, 1, 4, 4) * 0.5 + 0.25
    y = torch.tensor([0, 1, 2, 1, 0])
    W = lin[1].weight.detach().numpy().astype(np.float64)
    b = lin[1].bias.detach().numpy().astype(np.float64)
    xf = x.numpy().reshape(5, -1).astype(np.float64)
    z = xf @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(3)[y.numpy()]) @ W
    eps = 0.1
    linf = pgd_attack(lin, x, y, norm="linf", eps=eps, step_size=eps, steps=1, random_start=False)
    np.testing.assert_allclose(linf.numpy().reshape(5, -1), np.clip(xf + eps * np.sign(g), 0, 1), atol=1e-6)
    l2 = pgd_attack(lin, x, y, norm="l2", eps=eps, step_size=eps, steps=1, random_start=False)
    step = g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(l2.numpy().reshape(5, -1), np.clip(xf + eps * step * (1 - 1e-6), 0, 1), atol=1e-6)


def test_model_mode_state_and_gradients_untouched(trained_cnn, digits):
    model = copy.deepcopy(trained_cnn).train()
    model.features[1].eval()  # a mixed-mode model: the per-module flags must come back as they were
    bn = model.features[4]
    stats = bn.running_mean.clone()
    x, y = _batch(digits, 16)
    pgd_attack(model, x, y, norm="l2", eps=0.5, step_size=0.2, steps=3)
    assert model.training and not model.features[1].training and bn.training
    assert torch.equal(bn.running_mean, stats)
    assert all(p.grad is None for p in model.parameters())


def test_reproducible_with_generator_and_trivial_budgets(trained_cnn, digits):
    x, y = _batch(digits, 8)
    kw = dict(norm="linf", eps=0.1, step_size=0.03, steps=2)
    a = pgd_attack(trained_cnn, x, y, generator=torch.Generator().manual_seed(3), **kw)
    b = pgd_attack(trained_cnn, x, y, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a, b)
    assert torch.equal(pgd_attack(trained_cnn, x, y, norm="l2", eps=0.0, step_size=0.1, steps=5), x)
    assert torch.equal(pgd_attack(trained_cnn, x, y, norm="l2", eps=1.0, step_size=0.1, steps=0, random_start=False), x)
    start = pgd_attack(trained_cnn, x, y, norm="l2", eps=1.0, step_size=0.1, steps=0)
    assert float((start - x).flatten(1).norm(dim=1).max()) <= 1.0 + 1e-5


def test_works_through_a_backbone(trained_cnn, digits):
    x, y = _batch(digits, 8)
    bb = SmallCNNBackbone(trained_cnn)
    kw = dict(norm="l2", eps=0.5, step_size=0.2, steps=3, random_start=False)
    assert torch.allclose(pgd_attack(bb, x, y, **kw), pgd_attack(trained_cnn, x, y, **kw), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"norm": "l1"}, "norm"),
        ({"eps": -0.1}, "eps"),
        ({"step_size": float("nan")}, "step_size"),
        ({"steps": 1.5}, "steps"),
    ],
)
def test_bad_parameters(trained_cnn, digits, kwargs, word):
    x, y = _batch(digits, 4)
    params = {"norm": "l2", "eps": 0.5, "step_size": 0.1, "steps": 2, **kwargs}
    with pytest.raises(DebuggableError, match=word):
        pgd_attack(trained_cnn, x, y, **params)


def test_bad_inputs(trained_cnn, digits):
    x, y = _batch(digits, 4)
    with pytest.raises(DebuggableError, match=r"\[0, 1\]"):
        pgd_attack(trained_cnn, x * 3, y, eps=0.5, step_size=0.1, steps=1)
    with pytest.raises(DebuggableError, match="y"):
        pgd_attack(trained_cnn, x, y[:2], eps=0.5, step_size=0.1, steps=1)
