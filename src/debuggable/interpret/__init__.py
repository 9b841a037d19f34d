"""Per-feature evidence: what a deep feature responds to, for images and text.

* :func:`most_activating`: the top / bottom examples of a feature, streamed from a
  feature store;
* :func:`feature_cam`: CAM heatmaps (Barlow, Appendix B), :func:`overlay` to draw them;
* :func:`feature_attack`: maximise a feature inside an L2 ball around real images
  (Barlow, Appendix C); :func:`feature_visualisation`: from noise, Fourier
  parametrisation and jitter (the paper's Fig. 3); :func:`gaussian_seeds`: class-less
  starting images with the data's mean and covariance; :class:`ImageClassJudge`: whether a
  synthesised image looks like its class to a classifier of real images;
* :func:`image_lime`: LIME superpixels for a feature; :func:`word_lime` and
  :func:`word_clouds` / :func:`draw_word_cloud`: LIME over words and word clouds per
  feature (the paper's Fig. 2 and 8(a));
* :class:`FeatureCard` / :func:`build_feature_cards`: all of it for the features the
  sparse decision layer uses for each class.

See ``docs/interpret.md``.
"""

from debuggable.interpret.activating import ActivatingExamples, most_activating
from debuggable.interpret.attack import (
    feature_activation,
    feature_attack,
    object_area_share,
    perturbation_object_share,
)
from debuggable.interpret.cam import backbone_cam, cam_mass_in_mask, feature_cam, overlay
from debuggable.interpret.cards import (
    AttackSettings,
    FeatureCard,
    FeatureEvidence,
    LimeSettings,
    VisualisationSettings,
    build_feature_cards,
    card_features,
)
from debuggable.interpret.lime_image import ImageLime, image_lime, segment_image
from debuggable.interpret.lime_text import WordLime, remove_words, split_words, word_lime
from debuggable.interpret.judge import ImageClassJudge
from debuggable.interpret.seeds import SANTURKAR_RMS, climb_from_seeds, gaussian_seeds, l2_radius
from debuggable.interpret.visualisation import feature_visualisation, low_frequency_share
from debuggable.interpret.wordclouds import WordCloudSet, draw_word_cloud, word_clouds

__all__ = [
    "ActivatingExamples",
    "AttackSettings",
    "FeatureCard",
    "FeatureEvidence",
    "ImageLime",
    "LimeSettings",
    "VisualisationSettings",
    "WordCloudSet",
    "WordLime",
    "SANTURKAR_RMS",
    "backbone_cam",
    "build_feature_cards",
    "cam_mass_in_mask",
    "card_features",
    "climb_from_seeds",
    "draw_word_cloud",
    "feature_activation",
    "feature_attack",
    "gaussian_seeds",
    "l2_radius",
    "object_area_share",
    "perturbation_object_share",
    "feature_cam",
    "feature_visualisation",
    "image_lime",
    "low_frequency_share",
    "ImageClassJudge",
    "most_activating",
    "overlay",
    "remove_words",
    "segment_image",
    "split_words",
    "word_clouds",
    "word_lime",
]
