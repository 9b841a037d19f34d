"""Visual evidence of a failure mode, through debuggable.interpret, on a tiny CNN."""

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.failures.evidence import FailureModeEvidence, failure_mode_evidence
from debuggable.models.cnn import SmallCNN, SmallCNNBackbone


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    backbone = SmallCNNBackbone(SmallCNN(in_channels=1, num_classes=3, width=4, feature_dim=8)).eval()
    images = torch.rand(40, 1, 12, 12)
    with torch.no_grad():
        out = backbone(images)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    preds = np.where(rng.random(40) < 0.5, labels, (labels + 1) % 3)
    return backbone, images, out.features.numpy(), out.spatial.numpy(), labels, preds


def test_evidence_rows_images_heatmaps_attacks_and_failures(setup, tmp_path):
    backbone, images, feats, spatial, labels, preds = setup
    group = np.arange(5, 35)
    leaf = np.arange(5, 25)
    alive = [int(j) for j in np.argsort(-feats[group].std(0))[:2]]    # random init: some units are dead
    mode = {"features": alive, "group": "g"}
    ev = failure_mode_evidence(mode, group, leaf, features=feats, labels=labels, preds=preds,
                               images=lambda r: images[r].numpy(), spatial=lambda r: spatial[r], backbone=backbone,
                               k=4, n_failures=3, attack_eps=1.0, attack_steps=3, attack_step_size=0.5, seed=1)
    assert ev.top_rows.shape == (2, 4) and ev.top_images.shape == (2, 4, 1, 12, 12)
    for i, j in enumerate(alive):
        expected = group[np.argsort(-feats[group, j], kind="stable")[:4]]
        np.testing.assert_array_equal(ev.top_rows[i], expected)        # most activating within the group
        np.testing.assert_allclose(ev.top_values[i], feats[expected, j], rtol=1e-6)
        np.testing.assert_array_equal(ev.top_images[i], images[expected].numpy())
        # attacks stay in the L2 ball and raise the feature on average
        delta = (ev.attacks[i] - ev.top_images[i]).reshape(4, -1)
        assert np.all(np.linalg.norm(delta, axis=1) <= 1.0 + 1e-5)
        with torch.no_grad():
            after = backbone(torch.from_numpy(ev.attacks[i])).features[:, j].numpy()
        assert after.mean() > ev.top_values[i].mean()
    assert ev.cams.shape == (2, 4, 12, 12) and ev.cams.min() >= 0 and ev.cams.max() <= 1
    assert ev.has_cam and ev.has_attack
    fails = leaf[labels[leaf] != preds[leaf]]
    assert len(ev.failure_rows) == 3 and set(ev.failure_rows) <= set(fails)
    np.testing.assert_array_equal(ev.failure_labels, labels[ev.failure_rows])
    back = FailureModeEvidence.load(ev.save(tmp_path / "ev.npz"))
    np.testing.assert_array_equal(back.attacks, ev.attacks)
    assert back.has_cam is True


def test_without_backbone_or_spatial_maps(setup):
    _, images, feats, _, labels, preds = setup
    ev = failure_mode_evidence({"features": [1]}, np.arange(40), np.arange(40), features=feats, labels=labels,
                               preds=preds, images=lambda r: images[r].numpy(), k=3)
    assert not ev.has_cam and not ev.has_attack
    np.testing.assert_array_equal(ev.attacks, ev.top_images)
    with pytest.raises(DebuggableError, match="no split feature"):
        failure_mode_evidence({"features": [], "group": "g"}, np.arange(4), np.arange(4), features=feats,
                              labels=labels, preds=preds, images=lambda r: images[r].numpy())
