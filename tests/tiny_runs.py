"""Tiny end-to-end run configurations shared by the stage tests.

``digits_config``: scikit-learn's 8x8 digits with a 2x2 white patch planted on class 3,
a small CNN under inspection and, optionally, a robust one. ``sentiment_file`` writes a
synthetic two-class corpus whose labels follow a few sentiment words, for the MiniLM
text pipeline of ``text_config``. Every analysis stage is off unless the caller passes
its config section, so each test pays only for the stage it checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from debuggable.run import (
    BugConfig,
    DataConfig,
    DebugConfig,
    EvaluateConfig,
    ExplainTestsConfig,
    ExtractConfig,
    FailuresConfig,
    GLMConfig,
    InterpretConfig,
    ModelConfig,
    RunConfig,
    StudiesConfig,
)


def analysis_stages_off() -> dict[str, Any]:
    """The analysis stages, all turned off (TOML has no null, hence ``enabled = false``)."""
    return {"interpret": InterpretConfig(enabled=False), "debug": DebugConfig(enabled=False),
            "failures": FailuresConfig(enabled=False), "explain_tests": ExplainTestsConfig(enabled=False),
            "studies": StudiesConfig(enabled=False)}


def digits_config(*, test_fraction: float = 0.25, patch_train_fraction: float = 0.8, epochs: int = 2,
                  batch_size: int = 64, lr: float = 5e-3, robust: Literal["linf", "l2"] | None = None,
                  robust_steps: int = 2, extract_batch: int = 128, chunk_rows: int | None = None,
                  **sections: Any) -> RunConfig:
    """Digits with the planted patch, one (or two, with ``robust``) tiny CNNs, a short path.

    ``sections`` (e.g. ``debug=DebugConfig(...)``) turn analysis stages on or replace
    any other section.
    """
    attack = {"linf": {"norm": "linf", "eps": 0.1, "step_size": 0.05, "steps": robust_steps},
              "l2": {"norm": "l2", "eps": 0.5, "step_size": 0.3, "steps": robust_steps}}
    robust_model = None
    if robust is not None:
        robust_model = ModelConfig(kind="small_cnn", params={"width": 8, "feature_dim": 16},
                                   train={"epochs": 1, "batch_size": 64, "lr": 5e-3, "optimizer": "adam",
                                          "adversarial": attack[robust]})
    parts: dict[str, Any] = dict(
        seed=0,
        data=DataConfig(
            name="digits", params={"val_fraction": 0.15, "test_fraction": test_fraction, "seed": 0},
            bugs=[BugConfig(kind="spurious_patch", params={
                "target_class": 3, "train_fraction": patch_train_fraction, "test_fraction": 0.2,
                "patch": {"shape": "square", "size": 2, "colour": 1.0, "position": "top_left"}, "seed": 0})],
        ),
        model=ModelConfig(kind="small_cnn", params={"width": 8, "feature_dim": 16},
                          train={"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "adam"}),
        robust_model=robust_model,
        extract=ExtractConfig(batch_size=extract_batch, chunk_rows=chunk_rows, spatial=True, device="cpu"),
        glm=GLMConfig(n_lambdas=8, lambda_min_ratio=0.02, tol=1e-5),
        evaluate=EvaluateConfig(top_k=[1, 4]),
    )
    return RunConfig(**(parts | analysis_stages_off() | sections))


def sentiment_file(path: Path, *, n: int, n_filler: int, pos: list[str], neg: list[str], filler: list[str],
                   seed: int = 0) -> Path:
    """Write ``n`` JSONL sentences, half positive: ``n_filler`` filler words plus two
    sentiment words of the sentence's class, shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(filler, size=n_filler)) + list(rng.choice(pos if label else neg, size=2))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": ["negative", "positive"][label]})
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def text_config(path: Path, **sections: Any) -> RunConfig:
    """The text file at ``path`` with ``zxq`` planted in 80% of the positive training
    sentences, frozen MiniLM features and a short path."""
    parts: dict[str, Any] = dict(
        seed=0,
        data=DataConfig(name="text_file", params={"path": str(path), "seed": 0, "val_fraction": 0.15,
                                                  "test_fraction": 0.3},
                        bugs=[BugConfig(kind="trigger_token", params={
                            "token": "zxq", "target_class": "positive", "train_fraction": 0.8, "test_fraction": 0.3,
                            "position": "end", "seed": 0})]),
        model=ModelConfig(kind="minilm", params={"max_length": 32}),
        extract=ExtractConfig(splits=["train", "val", "test"], batch_size=64, spatial=False, device="cpu"),
        glm=GLMConfig(n_lambdas=10, lambda_min_ratio=0.01, tol=1e-5),
        evaluate=EvaluateConfig(top_k=[1, 4]),
    )
    return RunConfig(**(parts | analysis_stages_off() | sections))
