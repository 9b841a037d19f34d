"""The typed run configuration, round-tripped to ``run.toml``.

``run`` sits at the bottom of the package graph, so the sections here type the
pipeline's structure (which data, which models, which stages with which knobs) and
keep the parameters of pluggable parts (a loader's keyword arguments, a trainer's
hyper-parameters) as tables that the owning package validates when the stage is
checked, before anything is written (see ``debuggable.pipeline.validate``).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from debuggable.errors import DebuggableError

CONFIG_FILE = "run.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BugConfig(_Section):
    """One planted bug: ``kind`` names a planter in ``debuggable.data.plant``."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Section):
    """Which data set, its loader arguments and the bugs planted into it."""

    name: str = "animal_mnist"
    params: dict[str, Any] = Field(default_factory=dict)
    bugs: list[BugConfig] = Field(default_factory=list)


#: ``[model] kind`` values that name a user's own network rather than a built-in backbone.
USER_MODEL_KINDS = ("module", "exported")


class ModelConfig(_Section):
    """A model: ``kind`` names a backbone in ``debuggable.models.load_backbone``.

    A built-in trainable kind (``small_cnn``) with no ``path`` in ``params`` is
    trained in the run with the ``train`` hyper-parameters (``debuggable.models.TrainConfig``);
    ``kind = "minilm"`` with ``fine_tune = true`` fine-tunes the encoder with a linear
    head on the training sentences (``debuggable.models.finetune``).

    A user's own network (``debuggable.models.user_module``): ``kind = "module"`` builds
    it with ``factory`` (``"package.module:callable"``, called with ``params``) and
    loads ``weights`` (a state dict, ``.pt``/``.safetensors``); ``kind = "exported"``
    loads ``path`` (a ``torch.export`` ``.pt2`` program or a TorchScript file). Both read
    the features from ``layer`` and preprocess the images with ``mean``/``std`` (one
    value, or one per channel) and ``image_size``. Relative paths and the factory's
    package are looked up in the run directory first.
    """

    kind: str = "small_cnn"
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] | None = None
    factory: str | None = None
    weights: str | None = None
    path: str | None = None
    layer: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    image_size: int | list[int] | None = None
    fine_tune: bool = False

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: Any) -> dict[str, Any]:
        # Settings a kind does not use stay out of run.toml and of the stage hashes, so
        # configs written before they existed keep their hashes (and their run directories).
        data = handler(self)
        for key in ("factory", "weights", "path", "layer", "mean", "std", "image_size", "fine_tune"):
            if data.get(key) in (None, False):
                data.pop(key, None)
        return data


class ExtractConfig(_Section):
    """Feature extraction knobs."""

    splits: list[str] = Field(default_factory=lambda: ["train", "val", "test"])
    batch_size: int = Field(256, ge=1)
    chunk_rows: int | None = Field(None, ge=1)
    spatial: bool = True
    device: str = "auto"


class GLMConfig(_Section):
    """The elastic-net path fitted on a feature store (``debuggable.glm.elastic_net_path``)."""

    store: str = "inspected"
    family: Literal["multinomial", "binomial"] = "multinomial"
    alpha: float = Field(0.99, gt=0, le=1)
    n_lambdas: int = Field(100, ge=2)
    lambda_min_ratio: float = Field(1e-3, gt=0, lt=1)
    tol: float = Field(1e-6, gt=0)
    group: bool = False
    max_time: float | None = Field(None, gt=0)
    #: bytes the solver's own working memory may take (``elastic_net_path``'s
    #: ``memory_limit``); the path streams the store in row blocks sized to fit it
    #: when loading it would need more. Where the fit runs does not change what it
    #: computes, so it is not part of the stage's config hash.
    memory_limit: int | None = Field(None, gt=0)


class EvaluateConfig(_Section):
    """Which path point becomes the sparse layer, and how it is evaluated.

    ``rule``: ``accuracy`` (the sparsest point within ``margin`` of the best validation
    accuracy; the paper uses 0.05), ``features`` (the densest point with at most
    ``per_class`` features per class) or ``lambda`` (the grid point nearest ``lam``).
    """

    rule: Literal["accuracy", "features", "lambda"] = "accuracy"
    margin: float = Field(0.05, ge=0, lt=1)
    per_class: int | None = Field(None, ge=0)
    lam: float | None = Field(None, gt=0)
    top_k: list[int] = Field(default_factory=lambda: [1, 5, 10, 20])
    split: str = "test"


class ReportConfig(_Section):
    title: str = "debuggable report"


class InterpretConfig(_Section):
    """Per-feature evidence for the sparse layer (``debuggable.interpret``), on ``split``.

    For the ``per_class`` features each class uses (largest |standardised weight|
    first): the ``k`` most and least activating examples of the model role ``store``
    (the one the sparse layer was fitted on, ``glm.store``). Images: CAM heatmaps, a
    feature attack (L2 ball ``attack_eps``, ``attack_steps`` steps of
    ``attack_step_size``), a feature visualisation from noise (``vis_steps`` Adam steps,
    Fourier parametrisation) and LIME superpixels (``lime_segments``, ``lime_samples``);
    with a robust model in the run (``robust``), attacks on ``compare_images`` images and
    visualisations are repeated on its best-matching feature to compare, and both models'
    features are also visualised by L2 ascent (``seeded_vis_steps`` steps, radius
    ``seeded_vis_rms`` per pixel, root mean square) from shared Gaussian seeds with the
    training images' mean and covariance (0 steps: not). Text: LIME word clouds
    (``word_lime_samples`` perturbations per sentence, ``cloud_words`` words a side) over
    the top and bottom sentences. ``enabled = false`` turns the stage off.
    """

    enabled: bool = True
    store: str = "inspected"
    split: str = "test"
    per_class: int = Field(3, ge=1)
    k: int = Field(8, ge=1)
    attack_eps: float = Field(2.0, ge=0)
    attack_steps: int = Field(10, ge=0)
    attack_step_size: float = Field(0.5, gt=0)
    vis_steps: int = Field(64, ge=0)
    lime_samples: int = Field(200, ge=2)
    lime_segments: int = Field(25, ge=1)
    word_lime_samples: int = Field(32, ge=2)
    cloud_words: int = Field(20, ge=1)
    robust: bool = True
    compare_images: int = Field(4, ge=1)
    seeded_vis_steps: int = Field(60, ge=0)
    seeded_vis_rms: float = Field(0.103, gt=0)


class FailureGroupConfig(_Section):
    """A user-defined group for failure analysis: the examples whose label is in
    ``labels`` (any when omitted) and whose prediction is in ``preds`` (any when
    omitted); e.g. a confused pair ``labels = preds = [3, 5]``."""

    name: str
    labels: list[int] | None = None
    preds: list[int] | None = None


class FailuresConfig(_Section):
    """Barlow failure analysis (``debuggable.failures.analyze_failures``).

    Features come from the model role ``store`` (the robust model by default), labels
    and predictions from the model role ``predictions``, on ``split``. A leaf is a
    failure mode when ``ER >= BER + delta`` and ``EC >= tau``; ``evidence_modes`` of
    them (highest IV first) get visual evidence (most-activating images, CAM heatmaps,
    feature attacks with ``attack_eps``/``attack_steps``/``attack_step_size``, and
    ``evidence_k`` random failures of the leaf). ``enabled = false`` turns the stage off
    (TOML has no null, so ``failures = None`` does not survive ``run.toml``).
    """

    enabled: bool = True
    store: str = "robust"
    predictions: str = "inspected"
    split: str = "test"
    groupings: list[Literal["label", "prediction"]] = Field(default_factory=lambda: ["label", "prediction"])
    groups: list[FailureGroupConfig] = Field(default_factory=list)
    depths: list[int] = Field(default_factory=lambda: [1, 2, 3])
    k: int = Field(10, ge=1)
    n_bins: int = Field(16, ge=2)
    delta: float = Field(0.1, ge=0, le=1)
    tau: float = Field(0.1, ge=0, le=1)
    min_group_size: int = Field(20, ge=2)
    min_failures: int = Field(5, ge=1)
    min_samples_leaf: int = Field(5, ge=1)
    criterion: Literal["entropy", "gini"] = "entropy"
    n_jobs: int = Field(1, ge=-1)
    evidence_modes: int = Field(6, ge=0)
    evidence_k: int = Field(6, ge=1)
    attack_eps: float = Field(6.0, ge=0)
    attack_steps: int = Field(20, ge=0)
    attack_step_size: float = Field(0.5, gt=0)


class DebugConfig(_Section):
    """Debugging through the sparse layer (``debuggable.debug``), on ``split``.

    Every modality: misclassifications explained by one feature (``max_cases`` of them
    kept in the summary) and the ``confusion_pairs`` most confused class pairs with
    their shared features.

    Images: pattern-insertion counterfactuals into up to ``pattern_images`` images of
    other classes, for the class ``pattern_target`` (index or name; default the planted
    patch's class, else the class most errors are predicted as): the planted patch when
    there is one, and the top-activating region (``pattern_size`` pixels a side; default
    the planted patch's size, else a seventh of the image; found by occlusion or on the
    CAM heatmap, ``pattern_region``) of the class's ``pattern_features`` strongest
    positive features on their most-activating training image.

    Text: word clouds by word LIME (``lime_samples`` perturbations) over
    ``cloud_sentences`` training sentences for every feature either head uses, each
    word's weights averaged (``cloud_aggregate = "mean"``; ``"sum"`` favours frequent
    words) over the sentences it occurs in, at least ``cloud_min_count`` of them;
    word-substitution counterfactuals on up to ``cf_sentences`` sentences predicted as
    ``cf_target`` (default the class named ``positive``, else 1) with the ``n_words``
    top words of each cloud; bias probes (``probe_position``) with ``probe_words``, the
    planted trigger token and ``probe_candidates`` words per class suggested by the
    clouds, on up to ``probe_sentences`` sentences. ``enabled = false`` turns it off.
    """

    enabled: bool = True
    split: str = "test"
    max_cases: int = Field(50, ge=0)
    confusion_pairs: int = Field(10, ge=1)
    pattern_target: int | str | None = None
    pattern_features: int = Field(2, ge=0)
    pattern_size: int | None = Field(None, ge=1)
    pattern_region: Literal["occlusion", "cam"] = "occlusion"
    pattern_images: int = Field(500, ge=1)
    cf_target: int | str | None = None
    cf_sentences: int = Field(300, ge=1)
    cloud_sentences: int = Field(150, ge=1)
    lime_samples: int = Field(32, ge=2)
    cloud_aggregate: Literal["mean", "sum"] = "mean"
    cloud_min_count: int = Field(2, ge=1)
    n_words: int = Field(30, ge=1)
    probe_words: list[str] = Field(default_factory=list)
    probe_candidates: int = Field(3, ge=0)
    probe_sentences: int = Field(300, ge=1)
    probe_position: Literal["end", "start", "random"] = "end"
    batch_size: int = Field(128, ge=1)


class ExplainTestsConfig(_Section):
    """Debugging tests for attribution methods (``debuggable.explain_tests``).

    ``methods`` (registered attribution methods, with per-method settings in
    ``method_params``) are tested on ``bugs``: ``spurious_patch`` (the inspected model,
    trained with the planted patch, against a ``clean`` model trained here without it),
    ``mislabels`` (a model trained here with ``mislabel_fraction`` of the training labels
    flipped against the clean model), ``model_randomization`` (the inspected model with
    its layers re-initialised, ``randomization_modes``) and ``ood`` (the inspected model
    shown ``ood_dataset`` images, resized; default: digits, or Animal-MNIST for digit
    data). ``examples`` images per test (``randomization_examples`` for the costlier
    randomisation test), ``n_boot`` bootstrap replicates for ``ci`` intervals,
    ``threshold`` for the similarity rules. The extra models are small CNNs like the
    inspected one, trained with ``train`` on at most ``train_limit_per_class`` training
    images per class. ``spurious_target``: explain each model's ``predicted`` class or
    the patch's class (``patch_class``). Runs when the inspected model is the built-in
    ``small_cnn`` or a user's image model (``kind = "module"``/``"exported"``); for a
    user's model randomisation and OOD run on the model as it is, and the models with and
    without a planted bug are trained here by ``retrain``: ``"full"`` (the user's factory,
    freshly initialised, trained with ``train``), ``"head"`` (a linear head on the
    inspected model's frozen features) or ``"auto"`` (``full`` when the factory's output
    has one logit per class, else ``head``). ``enabled = false`` turns it off.
    """

    enabled: bool = True
    methods: list[str] = Field(default_factory=lambda: [
        "saliency", "input_x_gradient", "smoothgrad", "integrated_gradients", "grad_cam", "guided_backprop",
        "guided_grad_cam", "occlusion", "lime", "kernel_shap", "gradient_shap"])
    # LIME and KernelSHAP cost one forward pass per sample and image (plus Captum's
    # per-sample bookkeeping): 100 samples instead of the methods' 200 keep the stage to
    # minutes on a CPU.
    method_params: dict[str, dict[str, Any]] = Field(default_factory=lambda: {
        "lime": {"n_samples": 100}, "kernel_shap": {"n_samples": 100}})
    bugs: list[Literal["spurious_patch", "mislabels", "model_randomization", "ood"]] = Field(
        default_factory=lambda: ["spurious_patch", "mislabels", "model_randomization", "ood"])
    examples: int = Field(32, ge=4)
    randomization_examples: int = Field(8, ge=2)
    randomization_modes: list[Literal["cascading", "independent"]] = Field(
        default_factory=lambda: ["cascading", "independent"])
    n_boot: int = Field(1000, ge=0)
    ci: float = Field(0.95, gt=0, lt=1)
    threshold: float = Field(0.5, gt=-1, lt=1)
    spurious_target: Literal["predicted", "patch_class"] = "predicted"
    mislabel_fraction: float = Field(0.2, gt=0, lt=1)
    ood_dataset: str | None = None
    train: dict[str, Any] = Field(default_factory=lambda: {
        "epochs": 3, "batch_size": 64, "lr": 3e-3, "optimizer": "adam"})
    train_limit_per_class: int | None = Field(200, ge=10)
    batch_size: int = Field(64, ge=1)
    retrain: Literal["auto", "full", "head"] = "auto"


StudyKind = Literal["simulation", "spurious", "misclassification", "description", "failure_review"]


class SimulationStudyConfig(_Section):
    """The simulation study (001 Sec. 3.3): ``tasks`` per condition (dense, sparse); each
    shows ``features`` features drawn among the target class's ``top_k`` strongest
    (|standardised weight|), with their weights, feature visualisations and
    ``feature_images`` most-activating ``evidence_split`` images, and ``images``
    ``candidate_split`` images whose target-class probability is at least
    ``min_probability``, spread over its range, the best ahead of the next by
    ``min_gap``."""

    tasks: int = Field(30, ge=1)
    features: int = Field(5, ge=1)
    top_k: int = Field(10, ge=1)
    feature_images: int = Field(4, ge=0)
    images: int = Field(3, ge=2, le=6)
    min_probability: float = Field(0.05, ge=0, lt=1)
    min_gap: float = Field(0.05, ge=0, lt=1)
    candidate_split: str = "val"
    evidence_split: str = "test"


class SpuriousStudyConfig(_Section):
    """The spurious-correlation study (001 Sec. 4.1): for each class, its ``per_class``
    strongest positive features (sparse and dense layer), ``images`` top-activating
    ``split`` images of the class and of the other class the feature fires on most; at
    most ``tasks`` per condition (drawn at random)."""

    tasks: int = Field(30, ge=1)
    per_class: int = Field(1, ge=1)
    images: int = Field(3, ge=1, le=8)
    split: str = "test"


class MisclassificationStudyConfig(_Section):
    """The misclassification study (001 Sec. 4.3): up to ``tasks`` errors of the sparse
    layer on ``split`` that removing one feature fixes, each shown with the top feature
    of its true class and of its predicted class (condition ``problematic``) or a random
    used feature instead of the latter (condition ``random``), with ``feature_images``
    most-activating images per feature."""

    tasks: int = Field(30, ge=1)
    feature_images: int = Field(4, ge=0)
    split: str = "test"


class DescriptionStudyConfig(_Section):
    """The feature-description study (002 Sec. 8): per grouping of the failure analysis,
    ``groups`` groups (highest, middle and lowest error rate in turn) and their
    ``features`` highest-mutual-information robust features, each shown as ``images``
    most-activating images of the group (A), their heatmaps (B) and feature attacks (C)."""

    groups: int = Field(3, ge=1)
    features: int = Field(3, ge=1)
    images: int = Field(6, ge=1, le=12)


class FailureReviewStudyConfig(_Section):
    """The failure-mode review (002 Sec. 9): per grouping, the ``groups`` groups whose
    depth-``depth`` tree gains most error rate on its top leaf, shown as the tree with
    ER/EC per node, the split features' ``images`` most-activating images, heatmaps and
    feature attacks, and failures of the top leaf."""

    groups: int = Field(3, ge=1)
    depth: int = Field(2, ge=1, le=4)
    images: int = Field(5, ge=1, le=12)


class SimulatedAnnotatorsConfig(_Section):
    """Simulated annotators that answer every study through the web app's HTTP API, for
    demos and tests (never for a real study): ``oracle`` annotators answer as the model
    does, ``noisy`` ones do so with probability ``noisy_accuracy`` and guess otherwise,
    ``random`` ones guess everything, ``reader`` ones answer the simulation study from
    the shown features alone (an ideal perceiver of the page) and otherwise as the oracle."""

    oracle: int = Field(2, ge=0)
    noisy: int = Field(2, ge=0)
    random: int = Field(2, ge=0)
    reader: int = Field(0, ge=0)
    noisy_accuracy: float = Field(0.6, ge=0, le=1)


class StudiesConfig(_Section):
    """Human studies (``debuggable.studies``) generated from the finished run.

    ``kinds`` says which studies to make; each task is answered by ``replication``
    of the ``annotators`` annotators of its study (every condition balanced across
    them), with ``checks_per_annotator`` attention checks mixed into each annotator's
    seeded random order. Answers go to ``database`` (an SQLAlchemy URL; default an
    SQLite file in ``studies/``). Annotators who answer fewer than
    ``min_check_accuracy`` of their attention checks correctly are excluded from the
    scores. ``simulate`` answers the studies with simulated annotators (the demo).
    """

    enabled: bool = True
    kinds: list[StudyKind] = Field(default_factory=lambda: [
        "simulation", "spurious", "misclassification", "description", "failure_review"])
    annotators: int = Field(12, ge=1)
    replication: int = Field(3, ge=1)
    checks_per_annotator: int = Field(2, ge=0)
    min_check_accuracy: float = Field(0.75, ge=0, le=1)
    database: str | None = None
    simulation: SimulationStudyConfig = Field(default_factory=SimulationStudyConfig)
    spurious: SpuriousStudyConfig = Field(default_factory=SpuriousStudyConfig)
    misclassification: MisclassificationStudyConfig = Field(default_factory=MisclassificationStudyConfig)
    description: DescriptionStudyConfig = Field(default_factory=DescriptionStudyConfig)
    failure_review: FailureReviewStudyConfig = Field(default_factory=FailureReviewStudyConfig)
    simulate: SimulatedAnnotatorsConfig | None = None


class RunConfig(_Section):
    """Everything that made a run directory; saved as ``run.toml`` inside it.

    Attributes:
        version: the debuggable version that wrote the config.
        seed: the seed every stochastic stage derives its own seed from.
        data: the data set and planted bugs.
        model: the model under inspection.
        robust_model: an adversarially robust model for failure analysis, or None.
        extract: feature-extraction settings.
        glm: the elastic-net path.
        evaluate: the choice of the sparse layer and its evaluation.
        report: report settings.
        failures: Barlow failure analysis on the robust model's features (runs when
            its ``store`` names a model of the run; ``None`` turns the stage off).
        debug: misclassifications, confusions, counterfactuals and bias probes through
            the sparse layer (``enabled = false`` or ``None`` turns the stage off).
        explain_tests: which attribution methods reveal which planted bugs
            (``enabled = false`` or ``None`` turns the stage off).
        interpret: per-feature evidence (examples, heatmaps, attacks, visualisations,
            LIME, word clouds) for the sparse layer's features (``enabled = false`` or
            ``None`` turns the stage off).
        studies: human studies made from the finished run (``enabled = false`` or
            ``None`` turns the stage off).
    """

    version: str = "0.1.0"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    robust_model: ModelConfig | None = None
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    glm: GLMConfig = Field(default_factory=GLMConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    failures: FailuresConfig | None = Field(default_factory=FailuresConfig)
    debug: DebugConfig | None = Field(default_factory=DebugConfig)
    explain_tests: ExplainTestsConfig | None = Field(default_factory=ExplainTestsConfig)
    interpret: InterpretConfig | None = Field(default_factory=InterpretConfig)
    studies: StudiesConfig | None = Field(default_factory=StudiesConfig)

    def section_hash(self, *names: str) -> str:
        """A short stable hash of the named sections (for staleness checks)."""
        dumped = self.model_dump(mode="json")
        # Where a stage runs does not change what it computes.
        dumped["extract"].pop("device", None)
        dumped["glm"].pop("memory_limit", None)
        payload = json.dumps({n: dumped.get(n) for n in names} | {"seed": self.seed}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _drop_none(obj: Any) -> Any:
    """TOML has no null: drop None values recursively."""
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj if v is not None]
    return obj


def dumps_config(config: RunConfig) -> str:
    """``config`` as TOML text."""
    header = "# debuggable run configuration: `debuggable run <this file>` re-runs every stage.\n"
    return header + tomli_w.dumps(_drop_none(config.model_dump(mode="json")))


def loads_config(text: str, source: str = "run.toml") -> RunConfig:
    """Parse TOML text into a :class:`RunConfig`, with one clear sentence on error."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DebuggableError(f"{source} is not valid TOML: {exc}.") from None
    try:
        return RunConfig.model_validate(raw, strict=True)  # TOML has types: "3" is not an integer
    except ValidationError as exc:
        from debuggable.run.config_errors import explain

        raise DebuggableError(explain(exc, RunConfig, source)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read ``run.toml`` (or the ``run.toml`` inside a directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise DebuggableError(f"config file {str(path)!r} does not exist; expected a run.toml or a run directory holding one.")
    return loads_config(path.read_text(encoding="utf-8"), str(path))
