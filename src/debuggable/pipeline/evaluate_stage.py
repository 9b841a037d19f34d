"""Stage ``evaluate``: choose the sparse layer on the path and compare it with dense.

Writes ``layer/`` (the :class:`~debuggable.layer.SparseDecisionLayer`) and in its
summary: the selection rule, dense vs sparse accuracy, the paper's top-k table
(Figure 4(b)) and the sparsity-accuracy curve over the whole path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.glm import select
from debuggable.layer import SparseDecisionLayer, accuracy, sparsity_curve, top_k_table
from debuggable.pipeline.extract_stage import open_store
from debuggable.pipeline.fit_stage import load_path
from debuggable.pipeline.stage import StageContext
from debuggable.run import EvaluateConfig, RunDirectory


def _selection_kwargs(cfg: EvaluateConfig) -> dict[str, Any]:
    if cfg.rule == "accuracy":
        return {"margin": cfg.margin}
    if cfg.rule == "features":
        if cfg.per_class is None:
            raise DebuggableError("evaluate.per_class is required when evaluate.rule is 'features'.")
        return {"per_class": cfg.per_class}
    if cfg.lam is None:
        raise DebuggableError("evaluate.lam is required when evaluate.rule is 'lambda'.")
    return {"lam": cfg.lam}


def run_evaluate_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    cfg = run.config.evaluate
    path = load_path(run)
    store = open_store(run, run.config.glm.store)
    if cfg.split not in store.splits():
        raise DebuggableError(f"evaluate.split {cfg.split!r} was not extracted; expected one of {store.splits()}.")
    test = store.split(cfg.split)
    x, y = test.to_numpy("features"), test.labels
    chosen = select(path, cfg.rule, **_selection_kwargs(cfg))
    layer = SparseDecisionLayer.from_path(
        path, chosen.index, mean=path.feature_mean, std=path.feature_std, class_names=test.class_names,
        selection=chosen.rule,
    )
    layer.save(run.path / "layer")

    dense_w, dense_b = path.coef[-1], path.intercept[-1]
    results: dict[str, Any] = {
        "split": cfg.split,
        "selection": chosen.rule,
        "sparse_accuracy": accuracy(layer.weight, layer.bias, x, y),
        "dense_accuracy": accuracy(dense_w, dense_b, x, y),
        "dense_is": f"the least regularised path point (lambda {float(path.lambdas[-1]):.3g})",
        "sparse_nnz": layer.nnz,
        "dense_nnz": int(np.count_nonzero(dense_w)),
        "sparse_density": layer.density,
        "features_per_class": layer.features_per_class().tolist(),
        "used_features": int(layer.used_features().size),
        "feature_dim": layer.feature_dim,
    }
    if "preds" in test.arrays and (test.num_classes or 0) == layer.num_classes:
        results["original_head_accuracy"] = float(np.mean(test.read("preds") == y))
    results["top_k"] = top_k_table(
        {"dense": (dense_w, dense_b), "sparse": (layer.weight, layer.bias)},
        layer.mean, layer.std, x, y, ks=cfg.top_k,
    )
    results["curve"] = sparsity_curve(path, x, y)
    results["top_features"] = {
        name: layer.top_features(c, 10) for c, name in enumerate(layer.class_names)
    }
    ctx.log(
        f"[evaluate] sparse layer: {layer.nnz} of {layer.weight.size} weights ({layer.density:.1%}), "
        f"{np.mean(results['features_per_class']):.1f} features per class; {cfg.split} accuracy "
        f"{results['sparse_accuracy']:.3f} sparse vs {results['dense_accuracy']:.3f} dense"
    )
    return results, ["layer/layer.safetensors", "layer/layer.json"]
