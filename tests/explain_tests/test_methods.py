"""Attribution methods: closed forms on a linear model, shapes, devices, the registry."""

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.explain_tests import (
    BUILTIN_METHODS,
    AttributionMethod,
    attribute,
    attribute_batched,
    get_method,
    grid_segments,
    list_methods,
    register_method,
    unregister_method,
)
from tests.explain_tests.conftest import LinearImageModel


@pytest.fixture
def linear():
    torch.manual_seed(0)
    w = torch.randn(3, 1, 4, 4)
    x = torch.rand(2, 1, 4, 4)
    return LinearImageModel(w, torch.tensor([0.1, -0.2, 0.3])).eval(), w, x


def test_builtin_methods_are_registered():
    assert set(BUILTIN_METHODS) == {
        "saliency", "input_x_gradient", "smoothgrad", "integrated_gradients", "grad_cam", "guided_backprop",
        "guided_grad_cam", "occlusion", "lime", "kernel_shap", "gradient_shap"}
    assert list_methods()[: len(BUILTIN_METHODS)] == list(BUILTIN_METHODS)


@pytest.mark.parametrize("name, params, expected", [
    ("saliency", {}, lambda w, x: w.expand_as(x)),
    ("smoothgrad", {"n_samples": 4}, lambda w, x: w.expand_as(x)),  # the gradient is constant
    ("guided_backprop", {}, lambda w, x: w.expand_as(x)),  # no ReLU to guide
    ("input_x_gradient", {}, lambda w, x: x * w),
    ("integrated_gradients", {"n_steps": 5}, lambda w, x: x * w),  # exact for a linear model
    ("occlusion", {"window": 1, "stride": 1}, lambda w, x: x * w),  # logit drop when one pixel is zeroed
])
def test_closed_forms_on_a_linear_model(linear, name, params, expected):
    model, w, x = linear
    got = attribute(model, name, x, 1, **params)
    torch.testing.assert_close(got, expected(w[1:2], x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, params", [("kernel_shap", {}), ("lime", {"ridge": 0.0})])
def test_surrogates_recover_superpixel_sums_on_a_linear_model(linear, name, params):
    # An additive function is fitted exactly: each 2x2 superpixel gets the sum of w * x over it.
    model, w, x = linear
    got = attribute(model, name, x, 2, cell=2, n_samples=60, **params)
    contrib = (x * w[2:3])[:, 0]
    sums = contrib.reshape(2, 2, 2, 2, 2).sum(dim=(2, 4))  # (B, 2, 2) superpixel sums
    want = sums.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, None]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_grid_segments():
    seg = grid_segments((2, 5, 5), 2)
    assert seg.shape == (1, 2, 5, 5)
    assert seg[0, 0, 0].tolist() == [0, 0, 1, 1, 2]
    assert seg[0, 1, 4].tolist() == [6, 6, 7, 7, 8]


@pytest.mark.parametrize("name", BUILTIN_METHODS)
def test_every_method_shape_dtype_device_and_determinism(tiny_cnn, name):
    x = torch.rand(3, 1, 12, 12)
    params = {"n_samples": 8} if name in ("lime", "kernel_shap", "smoothgrad", "gradient_shap") else {}
    method = get_method(name, tiny_cnn, seed=5, **params)
    a = method.attribute(x)
    assert a.shape == x.shape and a.dtype == torch.float32 and a.device == x.device and not a.requires_grad
    assert torch.isfinite(a).all()
    torch.testing.assert_close(method.attribute(x), a)  # seeded: the same call gives the same map
    assert not tiny_cnn.training  # eval mode kept


def test_grad_cam_is_upsampled_and_repeated_over_channels():
    from debuggable.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=2, width=4, feature_dim=8).eval()
    x = torch.rand(2, 3, 16, 16)
    a = attribute(model, "grad_cam", x, 0)
    assert a.shape == x.shape and (a >= 0).all()
    torch.testing.assert_close(a[:, 0], a[:, 2])


def test_targets_train_mode_and_errors(tiny_cnn):
    x = torch.rand(4, 1, 8, 8)
    pred = tiny_cnn(x).argmax(1)
    m = get_method("saliency", tiny_cnn)
    torch.testing.assert_close(m.attribute(x), m.attribute(x, pred))
    torch.testing.assert_close(m.attribute(x, 2), m.attribute(x, [2, 2, 2, 2]))
    tiny_cnn.train()
    m.attribute(x, 1)
    assert tiny_cnn.training and all(mod.training for mod in tiny_cnn.modules())
    with pytest.raises(DebuggableError, match="target"):
        m.attribute(x, [1, 2])
    with pytest.raises(DebuggableError, match="images"):
        m.attribute(torch.rand(8, 8))
    with pytest.raises(DebuggableError, match="n_steps"):
        get_method("saliency", tiny_cnn, n_steps=3)
    with pytest.raises(DebuggableError, match="not registered"):
        get_method("deeplift_v9", tiny_cnn)


def test_batched_matches_one_call(tiny_cnn):
    x = torch.rand(7, 1, 8, 8)
    m = get_method("integrated_gradients", tiny_cnn, n_steps=4)
    torch.testing.assert_close(attribute_batched(m, x, 1, batch_size=3), m.attribute(x, 1), rtol=1e-5, atol=1e-6)


def test_register_a_function_and_a_class(linear):
    model, w, x = linear

    def times_two(model, images, target, factor=2.0):
        return factor * images

    try:
        register_method("times_two", times_two)
        torch.testing.assert_close(attribute(model, "times_two", x), 2 * x)
        torch.testing.assert_close(attribute(model, "times_two", x, factor=3.0), 3 * x)
        with pytest.raises(DebuggableError, match="already registered"):
            register_method("times_two", times_two)

        @register_method("ones")
        class Ones(AttributionMethod):
            def _attribute(self, images, target):
                return torch.ones_like(images)

        assert "ones" in list_methods()
        torch.testing.assert_close(attribute(model, "ones", x), torch.ones_like(x))
    finally:
        for n in ("times_two", "ones"):
            if n in list_methods():
                unregister_method(n)
    with pytest.raises(DebuggableError, match="lower-case"):
        register_method("Bad Name", times_two)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", BUILTIN_METHODS)
def test_methods_on_gpu(tiny_cnn, name):
    model = tiny_cnn.cuda()
    x = torch.rand(2, 1, 12, 12)
    params = {"n_samples": 8} if name in ("lime", "kernel_shap", "smoothgrad", "gradient_shap") else {}
    on_cpu_input = get_method(name, model, **params).attribute(x)
    assert on_cpu_input.device.type == "cpu"  # follows the input
    on_gpu = get_method(name, model, **params).attribute(x.cuda())
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.cpu().numpy(), on_cpu_input.numpy(), rtol=1e-3, atol=1e-4)


def test_entry_point_methods_are_registered(monkeypatch, linear):
    import importlib.metadata as md

    import debuggable.explain_tests.methods as methods_module

    ep = md.EntryPoint("ep_double", "tests.explain_tests.test_methods:_double", methods_module.ENTRY_POINT_GROUP)
    monkeypatch.setattr(md, "entry_points", lambda group=None: [ep] if group == methods_module.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(methods_module, "_entry_points_loaded", False)
    model, _, x = linear
    try:
        assert "ep_double" in list_methods()
        torch.testing.assert_close(attribute(model, "ep_double", x), 2 * x)
    finally:
        unregister_method("ep_double")


def _double(model, images, target):
    return 2 * images
