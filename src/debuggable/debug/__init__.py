"""Debugging a network through its sparse decision layer (paper Sec. 4).

* :func:`problematic_features`: misclassifications fixed by removing one feature;
* :func:`shared_feature_confusion`: confused class pairs and the features they share;
* :class:`WordSubstitution`: word-substitution counterfactuals for text (sparse vs dense);
* :class:`BiasProbe`: append or insert probe words, measure score change and flips;
* :class:`PatternInsertion`: paste an image pattern into other classes' images.
"""

from debuggable.debug.confusion import (
    ConfusedPair,
    confusion_matrix,
    shared_feature_confusion,
)
from debuggable.debug.misclassifications import (
    ProblematicFeatures,
    problematic_features,
)
from debuggable.debug.patterns import (
    InsertionResult,
    Pattern,
    PatternInsertion,
    crop_pattern,
    occlusion_box,
    paste,
    peak_box,
)
from debuggable.debug.text import (
    BiasProbe,
    CounterfactualResult,
    ProbeResult,
    Substitution,
    WordSubstitution,
    class_evidence,
    insert_word,
    probe_candidates,
    replace_word,
)

__all__ = [
    "BiasProbe",
    "ConfusedPair",
    "CounterfactualResult",
    "InsertionResult",
    "Pattern",
    "PatternInsertion",
    "ProbeResult",
    "ProblematicFeatures",
    "Substitution",
    "WordSubstitution",
    "class_evidence",
    "confusion_matrix",
    "crop_pattern",
    "insert_word",
    "occlusion_box",
    "paste",
    "peak_box",
    "probe_candidates",
    "problematic_features",
    "replace_word",
    "shared_feature_confusion",
]
