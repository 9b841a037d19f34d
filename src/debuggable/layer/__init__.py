"""The sparse decision layer: a chosen point of the GLM path as a network head, and its evaluation."""

from debuggable.layer.evaluation import (
    accuracy,
    masked_accuracy,
    sparsity_curve,
    top_k_mask,
    top_k_table,
)
from debuggable.layer.sparse_layer import DebuggableModel, SparseDecisionLayer, debuggable_model

__all__ = [
    "DebuggableModel",
    "SparseDecisionLayer",
    "accuracy",
    "debuggable_model",
    "masked_accuracy",
    "sparsity_curve",
    "top_k_mask",
    "top_k_table",
]
