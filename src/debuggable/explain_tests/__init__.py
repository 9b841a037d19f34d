"""Debugging tests for explanation methods (Adebayo et al., NeurIPS 2020).

Which attribution methods reveal which bugs? Four planted bugs, each test producing
numbers with bootstrap confidence intervals:

* data contamination: a spurious patch (:func:`spurious_patch_test`) and mislabelled
  training examples (:func:`mislabel_test`);
* model contamination: cascading and independent layer re-initialisation
  (:func:`model_randomization_test`, :func:`randomized`);
* test-time contamination: out-of-distribution inputs (:func:`ood_test`).

Attribution methods come from Captum behind one call shape
(:class:`AttributionMethod`, :func:`get_method`, :func:`register_method`); maps are
normalised for display and comparison by :func:`normalize_attributions`; the
similarity metrics live in :mod:`debuggable.explain_tests.metrics`.
"""

from debuggable.explain_tests.methods import (
    BUILTIN_METHODS,
    METHODS,
    AttributionMethod,
    attribute,
    attribute_batched,
    default_cam_layer,
    get_method,
    grid_segments,
    list_methods,
    register_method,
    resolve_targets,
    unregister_method,
)
from debuggable.explain_tests.metrics import (
    SIMILARITIES,
    bootstrap_ci,
    hog_similarity,
    pearson,
    rankdata,
    region_mass,
    roc_auc,
    spearman,
    spearman_abs,
    ssim,
)
from debuggable.explain_tests.mislabels import mislabel_test
from debuggable.explain_tests.model_randomization import model_randomization_test
from debuggable.explain_tests.normalize import MODES as NORMALIZATION_MODES
from debuggable.explain_tests.normalize import normalize_attributions, reduce_channels
from debuggable.explain_tests.ood import ood_test, resize_images
from debuggable.explain_tests.randomization import (
    cascading_steps,
    independent_steps,
    randomizable_layers,
    randomized,
)
from debuggable.explain_tests.results import (
    BUGS,
    BugResult,
    TableRow,
    method_bug_table,
    primary_matrix,
    qualitative_findings,
)
from debuggable.explain_tests.spurious import spurious_patch_test

__all__ = [
    "BUGS",
    "BUILTIN_METHODS",
    "METHODS",
    "NORMALIZATION_MODES",
    "SIMILARITIES",
    "AttributionMethod",
    "BugResult",
    "TableRow",
    "attribute",
    "attribute_batched",
    "bootstrap_ci",
    "cascading_steps",
    "default_cam_layer",
    "get_method",
    "grid_segments",
    "hog_similarity",
    "independent_steps",
    "list_methods",
    "method_bug_table",
    "mislabel_test",
    "model_randomization_test",
    "normalize_attributions",
    "ood_test",
    "pearson",
    "primary_matrix",
    "qualitative_findings",
    "randomizable_layers",
    "randomized",
    "rankdata",
    "reduce_channels",
    "region_mass",
    "register_method",
    "resize_images",
    "resolve_targets",
    "roc_auc",
    "spearman",
    "spearman_abs",
    "spurious_patch_test",
    "ssim",
    "unregister_method",
]
