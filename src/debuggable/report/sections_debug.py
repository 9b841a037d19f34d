"""The report section of the ``debug`` stage (misclassifications, confusions,
counterfactuals, bias probes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from markupsafe import Markup, escape

from debuggable.report import plots
from debuggable.report.html import SectionBuilder, section
from debuggable.run import RunDirectory, read_json


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.1%}"


def _rates_chart(labels: list[str], series: dict[str, list[float]], path: Path, title: str) -> Path:
    clean = {k: [0.0 if v is None or not np.isfinite(v) else float(v) for v in vals] for k, vals in series.items()}
    return plots.bar_chart(labels, clean, path, ylabel="flip rate", title=title)


def _misclassifications(s: dict, out: SectionBuilder) -> None:
    mis = s["misclassifications"]
    out.paragraph(
        f"Of {mis['examples']} {s['split']} examples the sparse layer misclassifies {mis['errors']}. For "
        f"{mis['explained']} of them ({_pct(mis['explained_fraction'])}) removing a single feature (setting it to "
        f"its training mean) makes the layer predict the true class: that feature is the error's 'problematic' "
        f"feature (the paper reports over 30% on ImageNet). As a baseline, a randomly chosen used feature fixes a "
        f"random error {_pct(mis['random_fix_rate'])} of the time."
    )
    per = mis["per_class"]
    if per:
        out.figure(
            lambda p: plots.bar_chart(
                [r["class"] for r in per],
                {"explained by one feature": [0.0 if not r["errors"] else r["fraction"] for r in per]},
                p, ylabel="fraction of the class's errors", title="Errors explained by one feature, per true class"),
            "debug_explained_per_class",
            "Per true class: the share of the sparse layer's errors that removing one feature fixes.",
        )
        out.table(["true class", "errors", "explained by one feature", "fraction"],
                  [[r["class"], r["errors"], r["explained"], r["fraction"] if r["errors"] else "-"] for r in per])
    for p in mis.get("planted", []):
        if p["errors"]:
            feats = ", ".join(f"#{j} ({n})" for j, n in p["features"][:5]) or "none"
            out.paragraph(f"Errors on {s['split']} examples carrying the planted {p['bug']}: {p['errors']}, of which "
                          f"{p['explained']} ({_pct(p['explained_fraction'])}) are fixed by removing one feature; "
                          f"problematic features: {feats}.")
    if mis["feature_counts"]:
        out.table(["problematic feature", "errors it explains"], [[f"#{j}", n] for j, n in mis["feature_counts"][:10]])
    cases = mis.get("cases", [])
    if cases:
        names = s.get("_class_names", [])
        shown = sorted(cases, key=lambda c: c["feature"] < 0)[:12]

        def nm(k: int) -> str:
            return names[k] if k < len(names) else str(k)

        rows = [[c["row"], nm(c["label"]), nm(c["predicted"]),
                 f"#{c['feature']}" if c["feature"] >= 0 else "none", c["fixes"],
                 f"#{c['top_feature_predicted']}", f"#{c['top_feature_true']}"]
                + ([c.get("text", "")] if "text" in c else []) for c in shown]
        out.table(["row", "true", "predicted", "problematic feature", "features that fix it",
                   "top feature of the predicted class", "top feature of the true class"]
                  + (["text"] if shown and "text" in shown[0] else []), rows)
        out.paragraph("The feature cards of these features (interpretation section) show what each responds to.",
                      note=True)
    pairs = mis.get("confused_pairs", [])
    if pairs:
        out.heading("Confused classes and the features they share")
        out.paragraph(
            "The most frequent confusions. A shared feature has standardised weights of the same sign for both "
            "classes (score = confusions x product of the weights); 'contribution' is its mean push towards the "
            "predicted class on the confused examples.", note=True)
        rows = []
        for p in pairs:
            shared = ", ".join(f"#{f['feature']} ({f['weight_true']:+.2f}/{f['weight_predicted']:+.2f}, "
                               f"contrib {f['contribution']:+.2f})" for f in p["shared"]) or "none"
            rows.append([p["true_name"], p["predicted_name"], p["count"], p["rate"], shared])
        out.table(["true", "predicted", "count", "rate of the true class", "shared features"], rows)


def _images(run: RunDirectory, s: dict, out: SectionBuilder, names: list[str]) -> None:
    out.heading("Pattern-insertion counterfactuals (the paper's Fig. 9)")
    out.paragraph(
        f"Each pattern is pasted into {s['pattern_images']} {s['split']} images of other classes (none carrying a "
        f"planted patch); the flip rate is the share of images not already predicted '{s['pattern_target_name']}' "
        f"that are once the pattern is there. Feature patterns are the {s['pattern_size']}x{s['pattern_size']} "
        f"window whose occlusion lowers the feature most on its most-activating training image.")
    models = list(s["patterns"][0]["models"]) if s["patterns"] else []
    out.table(["pattern", "box (r0, c0, r1, c1)"] + [f"flip rate: {m}" for m in models]
              + ["target rate before (sparse)", "mean target-probability change (sparse)"],
              [[p["pattern"]["name"], str(tuple(p["pattern"]["box"]))]
               + [p["models"][m]["flip_rate"] for m in models]
               + [p["models"]["sparse"]["target_rate_before"], p["models"]["sparse"]["mean_target_prob_change"]]
               for p in s["patterns"]])
    if s["patterns"]:
        out.figure(lambda p: _rates_chart([q["pattern"]["name"] for q in s["patterns"]],
                                          {m: [q["models"][m]["flip_rate"] for q in s["patterns"]] for m in models},
                                          p, f"Predictions moved to '{s['pattern_target_name']}'"),
                   "debug_pattern_rates", "Flip rate of each pattern, per model.")
    npz = run.path / "debug" / "insertion.npz"
    if npz.is_file():
        z = np.load(npz)
        k = 0
        while f"before_{k}" in z:
            pattern = s["patterns"][k]["pattern"]
            before, after = z[f"before_{k}"], z[f"after_{k}"]
            titles = [f"{names[a]}" for a in z[f"pred_before_{k}"]] + [f"-> {names[a]}" for a in z[f"pred_after_{k}"]]
            box = tuple(int(v) for v in z[f"box_{k}"])
            images = np.concatenate([before, after])
            out.figure(
                lambda p, images=images, titles=titles, box=box, n=len(before): plots.image_grid(
                    images, titles, p, ncols=n, boxes=[None] * n + [box] * n),
                f"debug_insertion_{k}",
                f"{pattern['name']}: images before (top, sparse-layer prediction) and after pasting it (bottom, "
                f"pattern outlined).",
            )
            k += 1


def _text(run: RunDirectory, s: dict, out: SectionBuilder) -> None:
    cf = s["counterfactuals"]
    target = s["cf_target_name"]
    out.heading("Word-substitution counterfactuals (the paper's Sec. 4.2, Fig. 8)")
    wc = s["word_clouds"]
    out.paragraph(
        f"Word clouds: LIME over words for {wc['features']} features on {wc['sentences']} training sentences "
        f"({wc['lime_samples']} perturbations each). For each {s['split']} sentence both layers predict "
        f"'{target}' (without a planted token), a feature that is evidence for '{target}' and that a word of the "
        f"sentence drives up (the word is in its positive cloud) is picked at random, and that word is replaced by "
        f"a random word of the feature's negative cloud. On the same {cf['sentences']} sentences the prediction "
        f"flips {_pct(s['counterfactual_flip_rate_sparse'])} of the time with the sparse layer and "
        f"{_pct(s['counterfactual_flip_rate_dense'])} with the dense layer (paper: 73% vs 52%).")
    heads = cf["heads"]
    out.table(["layer", "sentences", "flip rate", "95% CI half-width", "mean change of p(" + target + ")"],
              [[h, cf["sentences"], v["flip_rate"], v["ci95"], v["mean_score_change"]] for h, v in heads.items()])
    out.figure(lambda p: _rates_chart(["counterfactuals", "probe"],
                                      {"sparse": [s["counterfactual_flip_rate_sparse"], s["probe_flip_rate"]],
                                       "dense": [s["counterfactual_flip_rate_dense"], s["probe_flip_rate_dense"]]},
                                      p, "Flip rates, sparse vs dense"),
               "debug_text_rates", f"Counterfactual flip rate and the headline probe's ({s['probe_word']!r}) flip rate.")
    for h, v in heads.items():
        rows = []
        for ex in v["examples"][:8]:
            orig = escape(ex["original"])
            edited = escape(ex["edited"])
            rows.append([Markup(str(orig)), Markup(str(edited)), f"#{ex['feature']}: {ex['word']} -> {ex['replacement']}",
                         f"{ex['score_before']:.2f} -> {ex['score_after']:.2f}", "yes" if ex["flipped"] else "no"])
        if rows:
            out.paragraph(f"Examples, {h} layer:")
            out.table(["original", "counterfactual", "feature: substitution", f"p({target})", "flipped"], rows)
    out.heading("Bias probes (the paper's Sec. 4.1, Table 5)")
    trig = s.get("trigger")
    if trig:
        clouds = ", ".join(f"#{e['feature']} ({e['side']}, rank {e['rank']}"
                           + (", used by the sparse layer)" if e["used_by_sparse"] else ")") for e in trig["in_word_clouds"])
        out.paragraph(
            f"Planted trigger token {trig['token']!r} (spuriously tied to '{trig['towards']}'): it appears in the word "
            f"clouds of {len(trig['in_word_clouds'])} features ({clouds or 'none'}); it ranks "
            f"{trig['candidate_rank'] or 'below the top'} among the cloud-suggested probe words for '{trig['towards']}'. "
            f"Appended to {trig['sentences']} correctly classified sentences of other classes it flips the sparse "
            f"layer {_pct(trig['flip_rate_sparse'])} and the dense layer {_pct(trig['flip_rate_dense'])} of the time.")
        clouds_file = run.path / "debug" / "word_clouds.json"
        sparse_hits = sorted((e for e in trig["in_word_clouds"] if e["used_by_sparse"]), key=lambda e: e["rank"])
        if clouds_file.is_file() and sparse_hits:
            from debuggable.interpret import WordCloudSet, draw_word_cloud

            clouds = WordCloudSet.from_dict(read_json(clouds_file))
            hit = sparse_hits[0]
            j = hit["feature"]
            with out.figures_row():
                for side in ("positive", "negative"):
                    words = getattr(clouds, side)(j, 40)
                    if words:
                        out.figure(lambda p, words=words: draw_word_cloud(words, p, seed=0),
                                   f"debug_trigger_cloud_{side}",
                                   f"Feature #{j} (used by the sparse layer): {side} word cloud"
                                   + (f"; {trig['token']!r} ranks {hit['rank']}" if side == hit["side"] else ""))
    out.table(["probe word", "why", "pushes towards", "sentences", "flip rate: sparse", "flip rate: dense",
               "mean change p(true): sparse", "mean change p(true): dense", "example"],
              [[p["word"], p["why"], p["towards"], p["sentences"], p["flip_rate_sparse"], p["flip_rate_dense"],
                p["score_change_sparse"], p["score_change_dense"], (p["examples"] or [""])[0]] for p in s["probes"]])


@section("debug", "Debugging through the sparse layer", order=80, stage="debug")
def debug_section(run: RunDirectory, out: SectionBuilder) -> None:
    s = run.summary("debug")
    names = run.summary("data")["class_names"] if run.summary("data") else []
    s["_class_names"] = names
    _misclassifications(s, out)
    errors = run.path / "debug" / "errors.npz"
    if errors.is_file():
        z = np.load(errors)
        titles = [f"{names[t]}->{names[p]}" + (f"\n#{f}" if f >= 0 else "")
                  for t, p, f in zip(z["labels"], z["predicted"], z["feature"])]
        out.figure(lambda p: plots.image_grid(z["images"], titles, p, ncols=min(6, len(titles))),
                   "debug_errors", "Misclassified images (true->predicted, and the problematic feature when one "
                   "feature explains the error).")
    if s.get("modality") == "image" and s.get("patterns") is not None:
        _images(run, s, out, names)
    if s.get("modality") == "text" and s.get("counterfactuals") is not None:
        _text(run, s, out)
