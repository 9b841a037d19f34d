"""The four bug tests on linear models whose answers are known by construction."""

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.explain_tests import (
    method_bug_table,
    mislabel_test,
    model_randomization_test,
    ood_test,
    primary_matrix,
    qualitative_findings,
    spurious_patch_test,
)
from tests.explain_tests.conftest import LinearImageModel

PATCH = np.zeros((8, 8), dtype=bool)
PATCH[:4, :4] = True


def _weights(inside: float, outside: float, k: int = 3) -> torch.Tensor:
    w = torch.full((k, 1, 8, 8), outside)
    w[:, :, :4, :4] = inside
    return w


def test_spurious_patch_mass_known_answer():
    buggy = LinearImageModel(_weights(1.0, 0.1)).eval()
    clean = LinearImageModel(_weights(0.0, 0.1)).eval()
    x = torch.rand(6, 1, 8, 8) + 0.1
    masks = np.broadcast_to(PATCH, (6, 8, 8))
    res = spurious_patch_test(buggy, clean, x, masks, ["saliency", "integrated_gradients"], n_boot=50)
    rows = {(r.method, r.metric): r for r in res.rows}
    sal = rows[("saliency", "patch_mass_difference")]
    # Saliency is the weight map: 16 * 1 / (16 * 1 + 48 * 0.1) inside the patch for the buggy model, 0 for the clean one.
    assert sal.value == pytest.approx(16 / 20.8) and sal.ci_low == pytest.approx(16 / 20.8) and sal.detected
    assert sal.primary and sal.n == 6
    assert rows[("saliency", "patch_mass_buggy_model")].detected  # far above the patch's 25% of the pixels
    assert rows[("integrated_gradients", "patch_mass_difference")].detected
    assert res.panels["buggy/saliency"].shape == (4, 8, 8)
    # The same model on both sides: no difference, nothing detected.
    same = spurious_patch_test(buggy, buggy, x, masks, ["saliency"], n_boot=50)
    d = next(r for r in same.rows if r.metric == "patch_mass_difference")
    assert d.value == 0.0 and not d.detected
    with pytest.raises(DebuggableError, match="masks"):
        spurious_patch_test(buggy, clean, x, PATCH, ["saliency"])


def test_mislabel_detector_known_answers():
    torch.manual_seed(0)
    w = torch.randn(3, 1, 8, 8)
    w_flipped = w.clone()
    w_flipped[2] = torch.randn(1, 8, 8)  # the model trained on flipped labels learnt class 2 differently
    clean, mis = LinearImageModel(w).eval(), LinearImageModel(w_flipped).eval()
    x = torch.rand(8, 1, 8, 8)
    labels = np.array([2, 2, 2, 2, 0, 1, 0, 1])  # the flipped examples all carry label 2
    flipped = np.array([True] * 4 + [False] * 4)
    res = mislabel_test(mis, clean, x, labels, flipped, ["saliency"], n_boot=50)
    rows = {r.metric: r for r in res.rows}
    assert rows["detector_auc"].value == pytest.approx(1.0) and rows["detector_auc"].detected
    assert rows["similarity_gap"].value > 0.5 and rows["similarity_gap"].detected
    # Identical models: every similarity is 1, the detector is at chance.
    same = mislabel_test(clean, clean, x, labels, flipped, ["saliency"], n_boot=50)
    rows = {r.metric: r for r in same.rows}
    assert rows["detector_auc"].value == pytest.approx(0.5) and not rows["detector_auc"].detected
    assert rows["similarity_gap"].value == pytest.approx(0.0) and not rows["similarity_gap"].detected
    with pytest.raises(DebuggableError, match="both groups"):
        mislabel_test(clean, clean, x, labels, np.zeros(8, dtype=bool), ["saliency"])


def test_model_randomization_on_a_linear_model_restores_it():
    torch.manual_seed(1)
    model = LinearImageModel(torch.randn(3, 1, 8, 8)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, 1, 8, 8)
    res = model_randomization_test(model, x, ["saliency", "input_x_gradient"], n_boot=50)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    rows = {(r.method, r.metric): r for r in res.rows}
    # Saliency is the weight row: re-drawn weights are unrelated to the trained ones.
    sal = rows[("saliency", "spearman_top_layer")]
    assert sal.primary and abs(sal.value) < 0.5 and sal.detected
    assert {m for _, m in rows} == {"spearman_top_layer", "spearman_abs_top_layer", "ssim_top_layer", "hog_top_layer"}
    curves = res.details["curves"]
    assert set(curves) == {"cascading", "independent"} and res.details["layers"] == ["fc"]
    assert curves["cascading"]["saliency"]["spearman"][0]["layers"] == ["fc"]
    assert res.panels["cascade/saliency"].shape == (2, 8, 8)  # trained + one step
    with pytest.raises(DebuggableError, match="modes"):
        model_randomization_test(model, x, ["saliency"], modes=["sideways"])


def test_ood_identical_maps_do_not_separate_but_inputs_do():
    # A bias that makes every prediction class 0: saliency is then w[0] for every image.
    model = LinearImageModel(torch.randn(3, 1, 8, 8), torch.tensor([100.0, 0.0, 0.0])).eval()
    x_in = torch.zeros(10, 1, 8, 8)
    x_in[:, :, :, :4] = torch.rand(10, 1, 8, 4) + 0.5
    x_out = torch.zeros(10, 1, 8, 8)
    x_out[:, :, :, 4:] = torch.rand(10, 1, 8, 4) + 0.5
    res = ood_test(model, x_in, x_out, ["saliency", "input_x_gradient"], n_boot=50)
    rows = {(r.method, r.metric): r for r in res.rows}
    # Saliency of a linear model ignores the input: identical maps cannot separate the groups.
    assert rows[("saliency", "ood_separation_auc")].value == pytest.approx(0.5)
    assert not rows[("saliency", "ood_separation_auc")].detected
    assert rows[("saliency", "mean_map_similarity")].value == pytest.approx(1.0)
    # The inputs themselves, and input x gradient, do.
    assert rows[("inputs (reference)", "ood_separation_auc")].value == pytest.approx(1.0)
    assert rows[("input_x_gradient", "ood_separation_auc")].detected
    assert ("max_softmax (reference)", "ood_separation_auc") in rows


def test_table_matrix_and_findings():
    buggy = LinearImageModel(_weights(1.0, 0.1)).eval()
    clean = LinearImageModel(_weights(0.0, 0.1)).eval()
    x = torch.rand(4, 1, 8, 8)
    res = spurious_patch_test(buggy, clean, x, np.broadcast_to(PATCH, (4, 8, 8)), ["saliency"], n_boot=20)
    table = method_bug_table([res])
    assert set(table[0]) >= {"method", "bug", "metric", "value", "ci_low", "ci_high", "detected", "rule"}
    assert isinstance(table[0]["detected"], bool)
    methods, bugs, cells = primary_matrix(table)
    assert methods == ["saliency"] and bugs == ["spurious_patch"]
    assert qualitative_findings(table)["spurious_patch_detected_by"] == ["saliency"]
