"""The report's built-in sections, one per stage (registered on import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from markupsafe import Markup

from debuggable.report import plots
from debuggable.report.html import SectionBuilder, section
from debuggable.run import RunDirectory, read_json


@section("overview", "Run overview", order=0, stage=None)
def overview(run: RunDirectory, out: SectionBuilder) -> None:
    out.paragraph(
        "Each stage reads and writes this run directory; rerunning a command skips stages that are done "
        "and resumes those that were interrupted."
    )
    rows = []
    for name, rec in run.manifest["stages"].items():
        if name == "report":
            continue
        status = rec.get("status", "?")
        cls = "done" if status == "done" else "partial"
        rows.append([
            name,
            Markup(f'<span class="status-{cls}">{status}</span>'),
            rec.get("seconds", ""),
            rec.get("finished", ""),
            ", ".join(rec.get("outputs", [])),
        ])
    out.table(["stage", "status", "seconds", "finished", "outputs"], rows)
    out.code((run.path / "run.toml").read_text(encoding="utf-8"), summary="Configuration (run.toml)")


@section("data", "Data and planted bugs", order=10, stage="data")
def data_section(run: RunDirectory, out: SectionBuilder) -> None:
    s = run.summary("data")
    names = s["class_names"]
    out.paragraph(
        f"{s['dataset']}: {s['num_classes']} classes, "
        + ", ".join(f"{k} {v}" for k, v in s["splits"].items())
        + f" examples. Data fingerprint {s['fingerprint']}."
    )
    out.figure(
        lambda p: plots.bar_chart(names, {k: v for k, v in s["class_counts"].items() if k in ("train", "val", "test")},
                                  p, ylabel="examples", title="Examples per class"),
        "data_class_counts",
        "Class balance of each split.",
    )
    gt_path = run.path / "data" / "ground_truth.json"
    if gt_path.is_file():
        gt = read_json(gt_path)
        for kind, truth in gt.items():
            out.heading(f"Planted bug: {kind}")
            params = truth.get("params", {})
            out.paragraph("Parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()))
            counts = {split: len(info.get("indices", [])) for split, info in truth.get("splits", {}).items()}
            if counts:
                out.table(["split", "examples carrying the bug"], [[k, v] for k, v in counts.items()])
    samples = run.path / "data" / "samples.npz"
    if samples.is_file():
        z = np.load(samples)
        with out.figures_row():
            out.figure(
                lambda p: plots.image_grid(z["class_images"], [names[i] for i in z["class_labels"]], p, ncols=10),
                "data_examples",
                "Test examples, two per class (test images of every class may carry the planted patch).",
            )
            if "patched_images" in z:
                out.figure(
                    lambda p: plots.image_grid(
                        z["patched_images"], [names[i] for i in z["patched_labels"]], p, ncols=5,
                        boxes=[tuple(b) for b in z["patched_boxes"]],
                    ),
                    "data_patched",
                    "Training images carrying the planted patch (outlined in red).",
                )


@section("train", "Models", order=20, stage="train")
def train_section(run: RunDirectory, out: SectionBuilder) -> None:
    s = run.summary("train")
    attack = s["attack"]
    if any("test_accuracy_under_attack" in m for m in s["models"].values()):
        out.paragraph(
            f"Robustness is measured with the same attack for every model: PGD under the "
            f"{attack['norm'].upper()} norm, eps={attack['eps']}, {attack['steps']} steps of {attack['step_size']}."
        )
    rows = []
    for role, m in s["models"].items():
        if m.get("trained"):
            rows.append([role, m["training"], m["val_accuracy"], m["test_accuracy"],
                         m.get("test_accuracy_under_attack", ""), m["train_seconds"]])
        else:
            what = m.get("factory") or m.get("path")
            rows.append([role, f"{m['kind']}" + (f" {what}" if what else "") + " (not trained here)", "", "", "", ""])
    out.table(["model", "training", "val accuracy", "test accuracy", "test accuracy under attack", "train seconds"], rows)
    effects = {role: m["spurious_patch"] for role, m in s["models"].items() if m.get("spurious_patch")}
    if effects:
        names = run.summary("data")["class_names"]
        first = next(iter(effects.values()))
        target = names[first["target_class"]]
        out.heading("Does the planted patch drive predictions?")
        out.paragraph(
            f"Test images of classes other than {target!r} that carry the planted patch: the share each model "
            f"predicts as {target!r} with the patch, and on the same images without it. A large gap means the "
            f"model learned the spurious patch."
        )
        out.table(["model", "images", f"predicted {target!r} with patch", f"predicted {target!r} without patch"],
                  [[role, e["images"], e["predicted_target_with_patch"], e["predicted_target_without_patch"]]
                   for role, e in effects.items()])
    triggers = {role: m["trigger_token"] for role, m in s["models"].items() if m.get("trigger_token")}
    if triggers:
        names = run.summary("data")["class_names"]
        first = next(iter(triggers.values()))
        target = names[first["target_class"]]
        out.heading("Does the planted trigger token drive predictions?")
        out.paragraph(
            f"Test sentences of classes other than {target!r} that carry the planted token {first['token']!r}: the "
            f"share the fine-tuned model predicts as {target!r} with the token, and on the same sentences without it."
        )
        out.table(["model", "sentences", f"predicted {target!r} with token", f"predicted {target!r} without token"],
                  [[role, e["sentences"], e["predicted_target_with_token"], e["predicted_target_without_token"]]
                   for role, e in triggers.items()])
    with out.figures_row():
        for role, m in s["models"].items():
            hist = m.get("history") or []
            if not hist:
                continue
            epochs = [h["epoch"] for h in hist]
            series = {k: [h[k] for h in hist] for k in ("train_accuracy", "val_accuracy") if k in hist[0]}
            adversarial = m.get("training", "").startswith("PGD")
            caption = f"Training curve of the {role} model." + (
                " Training accuracy is measured on the PGD examples it trains on; validation accuracy on clean images."
                if adversarial else "")
            out.figure(
                lambda p, e=epochs, sr=series, r=role: plots.line_chart(e, sr, p, xlabel="epoch", ylabel="accuracy",
                                                                       title=f"{r} model"),
                f"train_{role}",
                caption,
            )


@section("extract", "Feature stores", order=30, stage="extract")
def extract_section(run: RunDirectory, out: SectionBuilder) -> None:
    s = run.summary("extract")
    for role, st in s["stores"].items():
        b = st["backbone"]
        out.heading(f"{role}: {b['name']} ({b['feature_dim']} features)")
        rows = []
        for split, info in st["splits"].items():
            rows.append([split, info["rows"], info["feature_dim"], info.get("head_accuracy", ""),
                         info["dead_features"], info["seconds"]])
        out.table(["split", "rows", "features", "accuracy of the original head", "dead features", "seconds"], rows)
        store = Path(run.path / "features" / role)
        try:
            from debuggable.features import FeatureStore

            reader = FeatureStore(store).split("train")
            mean, std = reader.mean, reader.std()
        except Exception as exc:  # the report must render even for a damaged store
            out.paragraph(f"Feature statistics unavailable: {exc}", note=True)
            continue
        with out.figures_row():
            out.figure(lambda p, m=mean: plots.histogram(m, p, xlabel="mean activation (train)",
                                                         title=f"{role}: per-feature means"),
                       f"features_{role}_mean", "Distribution of per-feature mean activations on the training split.")
            out.figure(lambda p, sd=std: plots.histogram(sd, p, xlabel="std of activation (train)",
                                                         title=f"{role}: per-feature std"),
                       f"features_{role}_std", "Distribution of per-feature standard deviations on the training split.")


@section("glm", "Elastic-net regularisation path", order=40, stage="fit")
def glm_section(run: RunDirectory, out: SectionBuilder) -> None:
    from debuggable.glm import GLMPath

    s = run.summary("fit")
    path = GLMPath.load(run.path / "glm")
    out.paragraph(
        f"{s['n_lambdas']} lambdas from {s['lambda_max']:.3g} down to {s['lambda_min']:.3g}, fitted in "
        f"{s['seconds']:.1f} s ({s['solver']} on {s['device']}). Every point is certified: the largest relative "
        f"duality gap is {s['max_gap']:.1e} and the largest KKT residual is {s['max_kkt']:.1e} x lambda x alpha"
        + ("." if s["all_converged"] else "; some points did not reach the tolerance (see the table).")
    )
    lam = path.lambdas
    with out.figures_row():
        out.figure(
            lambda p: plots.line_chart(
                lam, {"train": path.train_accuracy, "validation": path.val_accuracy}, p,
                xlabel="lambda", ylabel="accuracy", title="Accuracy along the path", logx=True,
            ),
            "glm_accuracy", "Training and validation accuracy at each lambda (log scale).",
        )
        out.figure(
            lambda p: plots.path_plot(lam, path.coef * path.feature_std[None, None, :], p),
            "glm_path", "Standardised weights along the path (each line one class-feature weight; "
            "the 12 largest at the end of the path are coloured).",
        )
    worst = np.argsort(-np.nan_to_num(path.gap))[:5]
    out.table(
        ["lambda", "non-zeros", "relative gap", "KKT / (lam alpha)", "iterations", "seconds", "converged"],
        [[float(path.lambdas[i]), int(path.nnz[i]), float(path.gap[i]), float(path.kkt[i]), int(path.n_iter[i]),
          float(path.time[i]), bool(path.converged[i])] for i in sorted(worst)],
    )
    out.paragraph("The five points with the largest duality gap.", note=True)


@section("layer", "Sparse decision layer", order=50, stage="evaluate")
def layer_section(run: RunDirectory, out: SectionBuilder) -> None:
    s = run.summary("evaluate")
    sel = s["selection"]
    fpc = s["features_per_class"]
    rule = {"accuracy": f"the sparsest point within {sel.get('margin', 0):.0%} of the best validation accuracy",
            "features": f"the densest point with at most {sel.get('per_class')} features per class",
            "lambda": f"the grid point nearest lambda {sel.get('requested_lambda')}"}.get(sel.get("rule"), sel.get("rule"))
    out.paragraph(
        f"Chosen: {rule} (lambda {sel['lambda']:.3g}). It uses {s['sparse_nnz']} of "
        f"{len(fpc) * s['feature_dim']} weights ({s['sparse_density']:.1%}), {sum(fpc) / len(fpc):.1f} features per "
        f"class on average and {s['used_features']} distinct features. The dense comparison is {s['dense_is']}."
    )
    rows = [["sparse layer", s["sparse_accuracy"], s["sparse_nnz"]], ["dense layer", s["dense_accuracy"], s["dense_nnz"]]]
    if "original_head_accuracy" in s:
        rows.append(["the model's own head", s["original_head_accuracy"], ""])
    out.table([f"{s['split']} split", "accuracy", "non-zero weights"], rows)
    out.heading("Top-k features per class (the paper's Figure 4(b))")
    out.paragraph(
        "Accuracy when each class keeps only its k largest standardised weights (top-k), and when it keeps all but "
        "those (rest); removed features sit at their training mean. A sparse layer whose few features carry its "
        "decisions scores high on top-k and low on rest.", note=True)
    out.table(["layer", "k", "top-k accuracy", "rest accuracy", "all features"],
              [[r["layer"], r["k"], r["top_k"], r["rest"], r["all"]] for r in s["top_k"]])
    curve = s["curve"]
    out.figure(
        lambda p: plots.line_chart(
            [c["features_per_class"] for c in curve], {f"{s['split']} accuracy": [c["accuracy"] for c in curve]}, p,
            xlabel="features per class (mean)", ylabel="accuracy", title="Sparsity vs accuracy", logx=False,
        ),
        "layer_sparsity_curve", "Accuracy of every path point against the features it uses per class.",
    )
    out.heading("Features each class uses")
    out.table(["class", "features", "top features (standardised weight)"],
              [[name, fpc[c], ", ".join(f"#{j} ({w:+.2f})" for j, w in s["top_features"][name])]
               for c, name in enumerate(s["top_features"])])

from debuggable.report import sections_failures as _sections_failures  # noqa: E402,F401  (registers "failures")
from debuggable.report import sections_debug as _sections_debug  # noqa: E402,F401  (registers "debug")
from debuggable.report import sections_explain_tests as _sections_explain_tests  # noqa: E402,F401  (registers "explain_tests")
from debuggable.report import sections_interpret as _sections_interpret  # noqa: E402,F401  (registers "interpret")
from debuggable.report import sections_studies as _sections_studies  # noqa: E402,F401  (registers "studies")
