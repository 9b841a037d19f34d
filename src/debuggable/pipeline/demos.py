"""The built-in demos' run configs: ``debuggable demo`` (``--pretrained``, ``--text``)."""

from __future__ import annotations

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
    ReportConfig,
    RunConfig,
    StudiesConfig,
)
from debuggable.run.config import (
    DescriptionStudyConfig,
    FailureReviewStudyConfig,
    MisclassificationStudyConfig,
    SimulatedAnnotatorsConfig,
    SimulationStudyConfig,
)


def demo_config() -> RunConfig:
    """The demo: Animal-MNIST, a white square planted on most training horses, a small
    CNN under inspection, and an L2-PGD-trained CNN as the robust feature extractor."""
    return RunConfig(
        seed=0,
        data=DataConfig(
            name="animal_mnist",
            params={"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0},
            bugs=[
                BugConfig(
                    kind="spurious_patch",
                    params={
                        "target_class": 7,
                        "train_fraction": 0.8,
                        "test_fraction": 0.1,
                        "patch": {"shape": "square", "size": 4, "colour": 1.0, "position": "top_left"},
                        "seed": 0,
                    },
                )
            ],
        ),
        # Sized so the whole demo stays within a few minutes on 2 CPU cores.
        model=ModelConfig(
            kind="small_cnn",
            params={"width": 16, "feature_dim": 64},
            train={"epochs": 5, "batch_size": 128, "lr": 3e-3, "optimizer": "adam"},
        ),
        robust_model=ModelConfig(
            kind="small_cnn",
            params={"width": 16, "feature_dim": 64},
            train={
                "epochs": 4,
                "batch_size": 128,
                "lr": 3e-3,
                "optimizer": "adam",
                "adversarial": {"norm": "l2", "eps": 1.0, "step_size": 0.75, "steps": 2},
            },
        ),
        extract=ExtractConfig(splits=["train", "val", "test"], batch_size=512, spatial=True),
        # The sparse end of the path is what the layer is chosen from; stopping at 1% of
        # lambda_max keeps the fit to seconds on CPU.
        glm=GLMConfig(alpha=0.99, n_lambdas=40, lambda_min_ratio=0.01, tol=1e-6),
        evaluate=EvaluateConfig(rule="accuracy", margin=0.05, top_k=[1, 5, 10, 20]),
        report=ReportConfig(title="debuggable demo: Animal-MNIST with a planted spurious patch"),
        # Feature cards for the sparse layer's 3 strongest features per class on the test
        # split (10% of every class carries the patch); attacks and visualisations are
        # repeated on the robust CNN's best-matching features, and both models' features
        # are climbed from the same data-like seeds (L2 radius 0.103 per pixel RMS: 2.9).
        interpret=InterpretConfig(split="test", per_class=3, k=8, attack_eps=2.0, attack_steps=10,
                                  attack_step_size=0.5, vis_steps=64, lime_samples=200, lime_segments=25,
                                  compare_images=4, seeded_vis_steps=60, seeded_vis_rms=0.103),
        # Barlow on the robust CNN's features of the test split, where 10% of every
        # class carries the patch: the horse prediction group's false positives are
        # the patched images of other classes.
        failures=FailuresConfig(store="robust", predictions="inspected", split="test", depths=[1, 2, 3], k=10,
                                delta=0.1, tau=0.1, evidence_modes=6, evidence_k=6),
        # Misclassifications fixed by one feature; the planted patch and the horse class's two
        # strongest features' top regions pasted into 500 test images of other classes.
        debug=DebugConfig(split="test", pattern_features=2, pattern_images=500),
        # Every attribution method on the four planted bugs, at small sample sizes (the
        # CLI and run.toml ask for more): about a minute on 2 CPU cores.
        explain_tests=ExplainTestsConfig(
            examples=16, randomization_examples=6, n_boot=500,
            method_params={"lime": {"n_samples": 32, "cell": 7}, "kernel_shap": {"n_samples": 32, "cell": 7},
                           "integrated_gradients": {"n_steps": 8}, "smoothgrad": {"n_samples": 8},
                           "gradient_shap": {"n_samples": 8}, "occlusion": {"window": 4, "stride": 4}},
            train={"epochs": 4, "batch_size": 64, "lr": 3e-3, "optimizer": "adam"}, train_limit_per_class=150,
        ),
        # All five human studies, sized for 8 annotators with 3 answers per task, answered by
        # simulated annotators (2 oracles, 2 noisy oracles, 2 guessers, 2 ideal readers of the
        # page) through the web app.
        studies=StudiesConfig(
            annotators=8, replication=3, checks_per_annotator=2,
            simulation=SimulationStudyConfig(tasks=20),
            misclassification=MisclassificationStudyConfig(tasks=20),
            description=DescriptionStudyConfig(groups=2, features=2),
            failure_review=FailureReviewStudyConfig(groups=2),
            simulate=SimulatedAnnotatorsConfig(oracle=2, noisy=2, random=2, reader=2, noisy_accuracy=0.6),
        ),
    )


def pretrained_demo_config() -> RunConfig:
    """The paper's transfer setting on the demo data: EfficientNet-Lite0's ImageNet
    features of Animal-MNIST (an ImageNet model, a small new label set), planted patch
    included. Images are upsampled to 128 px (not 224) and 300 per class are used, so
    extraction takes about a minute on 2 CPU cores."""
    config = demo_config()
    config.data.params["limit_per_class"] = 300
    config.model = ModelConfig(kind="efficientnet_lite0", params={"image_size": 128})
    config.robust_model = None
    config.extract.batch_size = 64
    config.report.title = "debuggable demo: EfficientNet-Lite0 ImageNet features of Animal-MNIST"
    if config.interpret is not None:  # a 128-px EfficientNet is ~100x the CNN's cost per image
        config.interpret = config.interpret.model_copy(update={
            "per_class": 2, "attack_steps": 5, "vis_steps": 32, "lime_samples": 100})
    return config


def text_demo_config(fine_tune: bool = True) -> RunConfig:
    """The text demo: 4,000 VADER movie-review snippets (2,000 per class; binary sentiment)
    with a planted trigger token: ``zxq``, inserted at a random word of 30% of the positive
    training (and validation) sentences and of 10% of every class's test sentences.

    As in the paper (Sec. 4.2, a BERT fine-tuned on the task), the model under inspection
    is all-MiniLM-L6-v2 fine-tuned with a linear head on the training sentences (the train
    stage; AdamW, 3 epochs), so the bias is learnt by the whole network; the sparse layer
    is fitted on the fine-tuned encoder's features. ``fine_tune=False`` keeps the encoder
    frozen instead (its L2-normalised sentence embeddings, the head fitted by the GLM
    path). The debug stage compares word-substitution counterfactuals of the sparse and
    the dense layer on the same sentences and probes the trigger token."""
    model = (ModelConfig(kind="minilm", params={"max_length": 64}, fine_tune=True,
                         train={"epochs": 3, "batch_size": 32, "lr": 5e-5, "weight_decay": 0.01,
                                "optimizer": "adam", "lr_schedule": "cosine"})
             if fine_tune else ModelConfig(kind="minilm", params={"max_length": 64}))
    which = "fine-tuned" if fine_tune else "frozen"
    return RunConfig(
        seed=0,
        data=DataConfig(
            name="vader_movies",
            # 2,000 of the ~5,000 snippets per class keep the demo within a few minutes on 2 CPU cores.
            params={"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0, "limit_per_class": 2000},
            bugs=[
                BugConfig(
                    kind="trigger_token",
                    params={"token": "zxq", "target_class": "positive", "train_fraction": 0.3,
                            "test_fraction": 0.1, "position": "random", "seed": 0},
                )
            ],
        ),
        model=model,
        robust_model=None,
        # The shifted test domains (tweets, Amazon, NYT) are left out to keep extraction short.
        extract=ExtractConfig(splits=["train", "val", "test"], batch_size=64, spatial=False),
        glm=GLMConfig(alpha=0.99, n_lambdas=30, lambda_min_ratio=0.002, tol=1e-6),
        evaluate=EvaluateConfig(rule="accuracy", margin=0.05, top_k=[1, 5, 10, 20]),
        debug=DebugConfig(cloud_sentences=150, lime_samples=16, cf_sentences=250, probe_sentences=250,
                          probe_candidates=3, n_words=30),
        report=ReportConfig(title=f"debuggable text demo: {which} MiniLM features of VADER movie snippets with a planted trigger"),
        interpret=InterpretConfig(split="test", per_class=3, k=6, word_lime_samples=24, cloud_words=20),
        studies=None,  # the five studies show images
    )
