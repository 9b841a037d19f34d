"""Barlow failure analysis: where and why a model fails, described by robust features.

Following "Understanding Failures of Deep Networks via Robust Feature Extraction"
(Singla, Nushi, Shah, Kamar, Horvitz; CVPR 2021): features of an adversarially robust
model describe the examples; failures (prediction != label) of the model under
inspection are grouped by label, by prediction or by a user-defined group; per group the
features sharing the most information with failure feed shallow decision trees whose
leaves are scored by error rate (ER), error coverage (EC) and importance value
(IV = ER * EC); leaves with ``ER >= BER + delta`` and ``EC >= tau`` are failure modes,
each a readable rule over original feature indices with visual evidence.

* :func:`analyze_failures` -> :class:`FailureAnalysis` (parallel over groups);
* :class:`FailureTree` (one tree), :func:`leaf_metrics` (the metrics from any leaf
  assignment), :func:`mutual_information` / :func:`select_features` (vectorised);
* :func:`class_groups`, :func:`confusion_group`, :func:`custom_group`;
* :func:`failure_mode_evidence` (images, CAM heatmaps, feature attacks, leaf failures).

See ``docs/failures.md``.
"""

from debuggable.failures.analysis import FailureAnalysis, TreeResult, analyze_failures
from debuggable.failures.groups import GROUPINGS, Group, class_groups, confusion_group, custom_group
from debuggable.failures.metrics import LeafMetrics, leaf_metrics
from debuggable.failures.selection import mutual_information, select_features
from debuggable.failures.tree import FailureTree

__all__ = [
    "FailureAnalysis",
    "FailureTree",
    "GROUPINGS",
    "Group",
    "LeafMetrics",
    "TreeResult",
    "analyze_failures",
    "class_groups",
    "confusion_group",
    "custom_group",
    "leaf_metrics",
    "mutual_information",
    "select_features",
]
