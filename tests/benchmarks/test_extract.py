"""Tests of ``benchmarks/extract.py``'s ResNet-50-sized case and its float32 baseline (tiny sizes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "extract.py"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_extract_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_resnet50_sized_has_resnet50s_parameters_and_shapes(bench):
    net = bench.ResNet50Sized().eval()
    # torchvision's resnet50 (the published architecture) has 25,557,032 parameters.
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    with torch.inference_mode():
        out = net(torch.rand(2, 3, 224, 224))
    assert out.features.shape == (2, 2048)
    assert out.spatial.shape == (2, 2048, 7, 7)
    assert out.logits.shape == (2, 1000)
    torch.testing.assert_close(out.features, out.spatial.mean(dim=(2, 3)))


def test_baseline_and_agreement_on_channels_last(bench, tmp_path):
    net, data = bench.SmallCNN(), bench._images(48, 32)
    line = bench.bench_extract("t", net, data, 16, 1, tmp_path, chunk_rows=32, amp=False, channels_last=True,
                               baseline_fp32=True)
    assert line["amp"] is None and line["channels_last"] is True and line["n"] == 48
    assert line["vs_fp32_forward"] == pytest.approx(line["fp32_forward_s"] / line["extract_s"], rel=1e-2)
    from debuggable.features import FeatureStore

    reader = FeatureStore(tmp_path / "fs").split("train")
    agree = bench._agreement_with_fp32(net, data, 16, reader)
    # the same float32 arithmetic in another memory layout: equal up to summation order
    assert agree["features_rel_err"] < 1e-5 and agree["argmax_agree"] == 1.0
    # the stored rows are the ones the extractor wrote, in order
    with torch.inference_mode():
        ref = net(data.batch(np.arange(48))[0]).features.numpy()
    np.testing.assert_allclose(reader.read("features"), ref, rtol=1e-4, atol=1e-5)

