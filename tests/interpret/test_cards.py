import numpy as np
import pytest
import torch

from debuggable.data import ImageArrayDataset, TextDataset
from debuggable.errors import DebuggableError
from debuggable.interpret import (
    AttackSettings,
    LimeSettings,
    VisualisationSettings,
    build_feature_cards,
    card_features,
    most_activating,
)
from debuggable.layer import SparseDecisionLayer
from debuggable.models import SmallCNN, SmallCNNBackbone

from .conftest import BagOfWordsEncoder


def _layer(weight, std=None):
    weight = np.asarray(weight, dtype=float)
    k, d = weight.shape
    std = np.ones(d) if std is None else np.asarray(std, dtype=float)
    return SparseDecisionLayer(weight, np.zeros(k), np.zeros(d), std, [f"c{i}" for i in range(k)])


def test_card_features_rank_by_standardised_weight():
    layer = _layer([[0.0, 1.0, -3.0, 0.5], [2.0, 0.0, 0.0, 0.0]], std=[1.0, 4.0, 1.0, 1.0])
    # class 0: |1*4| > |-3| > |0.5|
    assert card_features(layer, per_class=2) == [(0, 1, 4.0, 1), (0, 2, -3.0, 2), (1, 0, 2.0, 1)]
    assert card_features(layer, per_class=5, classes=[1]) == [(1, 0, 2.0, 1)]
    with pytest.raises(DebuggableError, match="classes: 2 is not a class index"):
        card_features(layer, classes=[2])


def test_image_cards_share_evidence_and_show_the_top_examples():
    torch.manual_seed(0)
    backbone = SmallCNNBackbone(SmallCNN(in_channels=1, num_classes=2, width=4, feature_dim=6)).eval()
    images = torch.rand(20, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    data = ImageArrayDataset(images, np.arange(20) % 2, ["c0", "c1"])
    with torch.no_grad():
        out = backbone(images)
    feats, spatial = out.features.numpy(), out.spatial.numpy()
    layer = _layer([[0, 0, 1.0, 0, -0.5, 0], [0, 0, 0.3, 0, 0, 0]])
    cards = build_feature_cards(layer, feats, data, backbone=backbone, spatial=spatial, k=4,
                                attack=AttackSettings(eps=1.0, steps=3, step_size=0.4),
                                visualisation=VisualisationSettings(steps=3),
                                lime=LimeSettings(n_samples=20, n_segments=4, segmentation="grid"))
    assert [(c.class_index, c.feature, c.rank) for c in cards] == [(0, 2, 1), (0, 4, 2), (1, 2, 1)]
    assert cards[0].evidence is cards[2].evidence  # feature 2 computed once
    ev = cards[0].evidence
    top = most_activating(feats, 2, 4)
    np.testing.assert_array_equal(ev.top.indices, top.indices)
    np.testing.assert_allclose(ev.top_images, images[top.indices].numpy())
    assert ev.cams.shape == (4, 12, 12) and ev.attacked.shape == (4, 1, 12, 12)
    assert np.all(ev.attack_after >= ev.attack_before - 1e-5)
    assert ev.visualisation.shape == (1, 12, 12) and ev.lime.n_segments == 4
    d = cards[1].to_dict()
    assert d["class_name"] == "c0" and d["weight"] == -0.5 and d["rank"] == 2
    assert cards[1].evidence.to_dict()["attack"]["mean_gain"] >= 0


def test_text_cards_carry_word_clouds():
    vocab = ["good", "bad", "film", "dull"]
    table = np.array([[1.0, 0.0], [-1.0, 0.2], [0.0, 0.1], [-0.5, 1.0]])
    enc = BagOfWordsEncoder(vocab, table)
    texts = ["good film", "bad film", "dull and bad", "good good", "film", "dull film"]
    data = TextDataset(texts, [1, 0, 0, 1, 1, 0], ["neg", "pos"])
    feats = enc(texts).numpy()
    layer = _layer([[0, 2.0], [1.0, 0]])
    cards = build_feature_cards(layer, feats, data, backbone=enc, k=2, lime=LimeSettings(n_samples=30, alpha=0.0))
    by_feature = {c.feature: c.evidence for c in cards}
    assert by_feature[0].top_texts == ["good good", "good film"]
    assert by_feature[0].positive_words[0][0] == "good"
    assert by_feature[0].negative_words[0][0] in ("bad", "dull")
    assert by_feature[1].positive_words[0][0] == "dull"


def test_bad_input():
    layer = _layer([[1.0, 0.0]])
    data = TextDataset(["a", "b"], [0, 0], ["c0"])
    with pytest.raises(DebuggableError, match=r"expected \(N, 2\) to match the sparse layer"):
        build_feature_cards(layer, np.zeros((2, 3)), data)
    with pytest.raises(DebuggableError, match="has 3 rows but the dataset has 2"):
        build_feature_cards(layer, np.zeros((3, 2)), data)
    backbone = SmallCNNBackbone(SmallCNN(in_channels=1, num_classes=1, width=2, feature_dim=2))
    with pytest.raises(DebuggableError, match="its modality is 'image' but the dataset holds text data"):
        build_feature_cards(layer, np.zeros((2, 2)), data, backbone=backbone)
