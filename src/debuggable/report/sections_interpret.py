"""Report section of the ``interpret`` stage: feature cards per class (registered on import)."""

from __future__ import annotations

import shutil
from pathlib import Path

from debuggable.report.html import SectionBuilder, section
from debuggable.run import RunDirectory


def _copy(src: Path):
    def draw(dst: Path) -> Path:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst

    return draw


def _show(out: SectionBuilder, run: RunDirectory, rel: str, name: str, caption: str) -> None:
    src = run.path / "evidence" / rel
    if src.is_file():
        out.figure(_copy(src), name, caption)
    else:
        out.paragraph(f"Figure {rel} is missing from evidence/.", note=True)


def _patch_part(out: SectionBuilder, s: dict) -> None:
    patch = s["planted_patch"]
    name = patch["target_class_name"]
    out.heading(f"Does the evidence show the planted patch? (class '{name}')")
    out.paragraph(
        f"{patch['base_rate']:.0%} of the {s['split']} images carry the planted patch (images of every class). For each "
        f"feature the sparse layer uses for '{name}': how many of its {s['k']} most-activating images carry the patch, "
        "the share of those images whose heatmap peaks on the patch (within one cell of the spatial map), the "
        "share of the heatmap's mass on the patch's pixels (against the share of the image the patch covers), and the share of the patch LIME's top 3 superpixels cover on the top image."
    )
    rows = []
    for c in patch["target_cards"]:
        rows.append([f"#{c['feature']}", c["rank"], c["weight"], f"{c['top_with_patch']}/{c['top']}",
                     c.get("cam_peak_on_patch", ""), c.get("cam_mass_on_patch", ""), c.get("patch_area_fraction", ""),
                     c.get("lime_patch_coverage", "")])
    out.table(["feature", "rank", "standardised weight", "top images with the patch", "heatmap peaks on the patch",
               "heatmap mass on the patch", "patch share of the image", "patch covered by LIME's top superpixels"], rows)
    best = max(patch["target_cards"], key=lambda c: c["top_patch_fraction"], default=None)
    if best is not None:
        verdict = ("the patch is visible in the evidence: the feature fires on patched images of any class"
                   if best["top_patch_fraction"] >= 0.5 else
                   "no feature of this class is dominated by the patch")
        out.paragraph(
            f"Feature #{best['feature']}: {best['top_with_patch']} of {best['top']} top-activating images carry the patch "
            f"against a base rate of {patch['base_rate']:.0%}; {verdict}."
        )


def _robust_part(out: SectionBuilder, run: RunDirectory, s: dict, show: list[int]) -> None:
    cmp_ = s["robust_comparison"]
    out.heading("Feature attacks and visualisations: standard vs robust model")
    out.paragraph(
        f"The same {len(cmp_['sources'])} {s['split']} images are changed within an L2 ball of radius {cmp_['eps']} "
        f"({cmp_['steps']} steps of {cmp_['step_size']}) to maximise each card's feature of the inspected (standard) "
        "model, and the best-matching feature (highest correlation on the split) of the robust model. Rise: mean "
        "activation gain in standard deviations of the feature. Low-frequency share: the share of the change's energy "
        f"at periods of 8 pixels or more (white noise: {cmp_['white_noise_low_frequency']:.0%}); structured, visible "
        "changes score high, adversarial noise low. The same share is given for the visualisations from noise. "
        "On object: the share of the change's energy on the object (pixels above 0.1, grown by one pixel; they cover "
        f"{cmp_.get('object_area', float('nan')):.0%} of these images), against noise sprinkled over the background."
        + (" Vis. class prob.: the probability that a classifier of real training images' power spectra (neither "
           "network) gives the visualisation's class, the class that weighs the feature most positively "
           f"(chance {cmp_['judge_chance']:.2f}): whether the visualisation looks like what the feature is used for."
           if cmp_.get("judge_chance") else "")
        + (f" From seed: both features climbed by L2 ascent (radius {sd['eps']:.1f}, {sd['steps']} steps) from the "
           "same class-less seed, a draw of a Gaussian with the training images' mean and covariance (Santurkar et al., "
           "2019); seed class prob.: the probability a classifier of the real images' pixels gives the feature's class "
           f"(the seeds themselves: {sd['start_class_probability']:.2f}, chance {sd['judge_chance']:.2f})."
           if (sd := cmp_.get("seeded")) else "")
    )
    rows = []
    for r in cmp_["features"]:
        st, rb = r["standard"], r["robust"]
        rows.append([f"#{r['feature']}", f"#{r['robust_feature']}", r["correlation"], st["rise_std"], rb["rise_std"],
                     st["attack_low_frequency"], rb["attack_low_frequency"],
                     st.get("attack_on_object", ""), rb.get("attack_on_object", ""),
                     st.get("visualisation_low_frequency", ""), rb.get("visualisation_low_frequency", ""),
                     st.get("visualisation_class_probability", ""), rb.get("visualisation_class_probability", ""),
                     st.get("seeded_class_probability", ""), rb.get("seeded_class_probability", "")])
    m = cmp_["mean"]
    rows.append(["mean", "", "", m["standard"]["rise_std"], m["robust"]["rise_std"], m["standard"]["attack_low_frequency"],
                 m["robust"]["attack_low_frequency"], m["standard"].get("attack_on_object", ""),
                 m["robust"].get("attack_on_object", ""), m["standard"].get("visualisation_low_frequency", ""),
                 m["robust"].get("visualisation_low_frequency", ""),
                 m["standard"].get("visualisation_class_probability", ""),
                 m["robust"].get("visualisation_class_probability", ""),
                 m["standard"].get("seeded_class_probability", ""), m["robust"].get("seeded_class_probability", "")])
    st, rb = m["standard"], m["robust"]
    more = "more" if rb["attack_low_frequency"] > st["attack_low_frequency"] else "less"
    out.paragraph(
        f"On this run the same budget raises the standard model's features by {st['rise_std']:.1f} standard deviations "
        f"on average and the robust model's by {rb['rise_std']:.1f}"
        + (": the standard features can be driven far by small changes, so its attack images say little about what "
           "the feature means" if st["rise_std"] > rb["rise_std"] else "")
        + f". The robust model's attack changes are {more} low-frequency ({rb['attack_low_frequency']:.0%} vs "
        f"{st['attack_low_frequency']:.0%})"
        + (f" and {rb['attack_on_object']:.0%} of their energy lies on the object ({st['attack_on_object']:.0%} "
           "for the standard model)" if "attack_on_object" in st else "")
        + (f"; its visualisations {rb['visualisation_low_frequency']:.0%} vs {st['visualisation_low_frequency']:.0%}"
           if "visualisation_low_frequency" in st else "")
        + (f". The spectrum classifier gives the visualisations' classes {rb['visualisation_class_probability']:.2f} "
           f"(robust) vs {st['visualisation_class_probability']:.2f} (standard) on average, against chance "
           f"{cmp_['judge_chance']:.2f}" if "visualisation_class_probability" in st else "")
        + (f". Climbed from the same data-like seeds, the pixel classifier gives the features' classes "
           f"{rb['seeded_class_probability']:.2f} (robust) vs {st['seeded_class_probability']:.2f} (standard), from "
           f"{cmp_['seeded']['start_class_probability']:.2f} for the seeds" if "seeded_class_probability" in st else "")
        + ". Judge the images below for yourself."
    )
    out.table(["feature", "robust feature", "correlation", "rise (standard)", "rise (robust)",
               "attack low-freq. (standard)", "attack low-freq. (robust)", "attack on object (standard)",
               "attack on object (robust)", "vis. low-freq. (standard)",
               "vis. low-freq. (robust)", "vis. class prob. (standard)", "vis. class prob. (robust)",
               "seed class prob. (standard)", "seed class prob. (robust)"], rows)
    with out.figures_row():
        for j in show:
            _show(out, run, f"robust_{j}.png", f"interpret_robust_{j}",
                  f"Feature #{j} (strongest feature of a class): the images, attacked on the standard and on the "
                  "robust model; the mean of each feature's top images, its visualisation from noise and, where "
                  "shown, the data-like seed and both features climbed from it.")


@section("interpret", "Feature cards: what the sparse layer's features respond to", order=70, stage="interpret")
def interpret_section(run: RunDirectory, out: SectionBuilder) -> None:
    s = run.summary("interpret")
    image = s["modality"] == "image"
    out.paragraph(
        f"For each class, the {s['per_class']} features with the largest |standardised weight| in the sparse layer, "
        f"with their {s['k']} most and least activating {s['split']} examples"
        + (": CAM heatmaps (where the feature fires), a feature attack (the images changed to raise the feature), a "
           "feature visualisation from noise and LIME's top superpixels (on the first top image)." if image else
           ", and word clouds: the words whose LIME weight drives the feature up (positive) and down (negative), "
           "summed over the top and bottom sentences.")
        + f" {s['n_cards']} cards, {s['n_features']} distinct features, built in {s['seconds']:.1f} s."
    )
    if s.get("planted_patch"):
        _patch_part(out, s)
    if s.get("trigger_token"):
        trig = s["trigger_token"]
        found = ", ".join(f"#{f['feature']} {f['side']} (rank {f['rank']})" for f in trig["in_word_clouds"]) or "none"
        out.paragraph(f"Planted trigger token {trig['token']!r} in the cards' word clouds: {found}.")
    if s.get("robust_comparison"):
        # Each class's strongest feature (the planted patch's class first).
        target = s.get("planted_patch", {}).get("target_class")
        firsts = [c for c in s["cards"] if c["rank"] == 1]
        firsts.sort(key=lambda c: c["class_index"] != target)
        show = list(dict.fromkeys(c["feature"] for c in firsts))
        _robust_part(out, run, s, show)
    features = s["features"]
    current = None
    for card in s["cards"]:
        if card["class_index"] != current:
            current = card["class_index"]
            out.heading(f"Class '{card['class_name']}'")
        j = card["feature"]
        ev = features[str(j)]
        line = f"Feature #{j} (rank {card['rank']}, standardised weight {card['weight']:+.3f})"
        pp = card.get("planted_patch")
        if pp:
            line += f"; {pp['top_with_patch']}/{pp['top']} top images carry the planted patch"
        if "attack" in ev:
            line += f"; attack raises it by {ev['attack']['mean_gain']:.2f} on average"
        out.paragraph(line + ".")
        if image:
            _show(out, run, f"feature_{j}.png", f"interpret_feature_{j}",
                  f"Feature #{j}: top-activating images (activation below; planted patch outlined in red), heatmaps, "
                  "feature attack (activation after), visualisation and LIME superpixels, least-activating images.")
        else:
            rows = [[t, v] for t, v in zip(ev.get("top_texts", []), ev["top"]["values"])]
            out.table(["most activating sentence", "activation"], rows[:5])
            with out.figures_row():
                for side in ("positive", "negative"):
                    if (run.path / "evidence" / f"feature_{j}_{side}.png").is_file():
                        _show(out, run, f"feature_{j}_{side}.png", f"interpret_feature_{j}_{side}",
                              f"Feature #{j}: words that drive it {'up' if side == 'positive' else 'down'}.")
