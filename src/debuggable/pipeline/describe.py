"""The few lines ``debuggable`` prints at the end of a run: what it produced and where."""

from __future__ import annotations

from typing import Any

from debuggable.pipeline.roles import model_roles
from debuggable.run import RunDirectory, read_json


def describe_results(run: RunDirectory, summaries: dict[str, Any]) -> str:
    """A few lines saying what the run produced and where."""
    lines = [f"run directory: {run.path}"]
    data = summaries.get("data")
    if data:
        splits = ", ".join(f"{k} {v}" for k, v in data["splits"].items())
        bugs = ", ".join(data["planted_bugs"]) or "none"
        lines.append(f"  data:     {data['dataset']} ({data['num_classes']} classes; {splits}); planted: {bugs}")
    for role, m in model_roles(run.config).items():
        if m.kind in ("module", "exported"):
            what = m.factory if m.kind == "module" else m.path
            lines.append(f"  model:    {role}: {m.kind} {what}, layer {m.layer!r} (not trained here)")
    train = summaries.get("train")
    if train:
        for role, m in train["models"].items():
            if m.get("trained") and m.get("training") == "fine-tuned":
                lines.append(f"  model:    {role} (fine-tuned {m['kind']} + linear head, {m['train_seconds']:.0f} s): "
                             f"test accuracy {m['test_accuracy']:.3f}")
                trig = m.get("trigger_token")
                if trig:
                    lines.append(
                        f"            planted trigger {trig['token']!r}: {trig['predicted_target_with_token']:.1%} of "
                        f"{trig['sentences']} test sentences of other classes carrying it predicted as its class "
                        f"(without it: {trig['predicted_target_without_token']:.1%})")
            elif m.get("trained"):
                lines.append(
                    f"  model:    {role} ({m['training']}): test accuracy {m['test_accuracy']:.3f}, "
                    f"under L{train['attack']['norm'][1:]} PGD eps={train['attack']['eps']}: "
                    f"{m['test_accuracy_under_attack']:.3f}"
                )
                effect = m.get("spurious_patch")
                if effect:
                    target = effect["target_class"]
                    target = data["class_names"][target] if data else target
                    lines.append(
                        f"            planted patch: {effect['predicted_target_with_patch']:.1%} of {effect['images']} "
                        f"patched test images of other classes predicted '{target}' "
                        f"(without the patch: {effect['predicted_target_without_patch']:.1%})"
                    )
    extract = summaries.get("extract")
    if extract:
        for role, st in extract["stores"].items():
            parts = ", ".join(f"{s} {i['rows']}x{i['feature_dim']}" for s, i in st["splits"].items())
            lines.append(f"  features: {role}: {parts} -> {run.path / 'features' / role}")
    fit = summaries.get("fit")
    if fit:
        lines.append(
            f"  glm path: {fit['n_lambdas']} lambdas in {fit['seconds']:.1f} s ({fit['solver']}), "
            f"max relative gap {fit['max_gap']:.1e}, max KKT residual/(lam*alpha) {fit['max_kkt']:.1e}"
        )
    ev = summaries.get("evaluate")
    if ev:
        fpc = ev["features_per_class"]
        lines.append(
            f"  sparse layer: {ev['sparse_nnz']} of {len(fpc) * ev['feature_dim']} weights "
            f"({ev['sparse_density']:.1%}; {sum(fpc) / len(fpc):.1f} features per class), "
            f"{ev['split']} accuracy {ev['sparse_accuracy']:.3f} vs dense {ev['dense_accuracy']:.3f}"
            + (f" (original head {ev['original_head_accuracy']:.3f})" if "original_head_accuracy" in ev else "")
        )
    fa = summaries.get("failures")
    if fa:
        vlf = ", ".join(f"{g} " + "/".join(f"{v:.2f}" for v in per.values()) for g, per in fa["valid_leaf_fraction"].items())
        lines.append(
            f"  failures: {len(fa['failure_modes'])} failure modes in {fa['groups_analysed']} groups "
            f"({fa['split']} split, {fa['store']} features); classes with a valid leaf at depths "
            f"{'/'.join(fa['valid_leaf_fraction'][next(iter(fa['valid_leaf_fraction']))])}: {vlf}"
        )
        top = fa["failure_modes"][0] if fa["failure_modes"] else None
        if top:
            lines.append(f"            top: {top['group']} (depth {top['depth']}, IV {top['iv']:.2f}): {top['rule']}")
        for c in fa.get("planted_checks", []):
            if c["group"].startswith("prediction=") and c["depth"] == min(fa["params"]["depths"]):
                lines.append(
                    f"            planted patch: {c['group']} top leaf splits on feature(s) {c['features']}; "
                    f"{c['condition_in_leaf']:.0%} of its examples carry the patch (group {c['condition_in_group']:.0%})"
                )
    et = summaries.get("explain_tests")
    if et:
        lines.append(f"  explain:  {len(et['methods'])} attribution methods x {len(et['bugs'])} planted bugs "
                     f"-> {run.path / 'explain_tests' / 'summary.json'}")
        from debuggable.pipeline.explain_tests_stage import describe_compact

        lines += [f"            {line}" for line in describe_compact(et)]
    it = summaries.get("interpret")
    if it:
        lines.append(f"  evidence: {it['n_cards']} feature cards ({it['n_features']} features, {it['split']} split) "
                     f"-> {run.path / 'evidence'}")
        patch = it.get("planted_patch")
        best = max(patch["target_cards"], key=lambda c: c["top_patch_fraction"], default=None) if patch else None
        if best is not None:
            lines.append(
                f"            '{patch['target_class_name']}' feature #{best['feature']}: {best['top_with_patch']}/"
                f"{best['top']} top-activating images carry the planted patch (base rate {patch['base_rate']:.0%})"
                + (f"; heatmap peaks on it in {best['cam_peak_on_patch']:.0%}, mass on it "
                   f"{best['cam_mass_on_patch']:.0%} (patch area {best['patch_area_fraction']:.0%})"
                   if "cam_mass_on_patch" in best else ""))
        cmp_ = it.get("robust_comparison")
        if cmp_:
            m = cmp_["mean"]
            lines.append(
                f"            feature attack eps={cmp_['eps']}, standard vs robust: rise {m['standard']['rise_std']:.1f} vs "
                f"{m['robust']['rise_std']:.1f} std; low-frequency share of the change "
                f"{m['standard']['attack_low_frequency']:.0%} vs {m['robust']['attack_low_frequency']:.0%} "
                f"(white noise {cmp_['white_noise_low_frequency']:.0%})"
                + (f"; on the object {m['standard']['attack_on_object']:.0%} vs {m['robust']['attack_on_object']:.0%} "
                   f"(object area {cmp_['object_area']:.0%})" if "attack_on_object" in m["standard"] else ""))
            if "visualisation_class_probability" in m["standard"]:
                lines.append(
                    f"            feature visualisation, standard vs robust: a spectrum classifier of real images gives "
                    f"the feature's class {m['standard']['visualisation_class_probability']:.2f} vs "
                    f"{m['robust']['visualisation_class_probability']:.2f} (chance {cmp_['judge_chance']:.2f})")
            sd = cmp_.get("seeded")
            if sd:
                lines.append(
                    f"            climbed from data-like seeds (L2 eps {sd['eps']:.1f}), standard vs robust: a pixel "
                    f"classifier gives the feature's class {m['standard']['seeded_class_probability']:.2f} vs "
                    f"{m['robust']['seeded_class_probability']:.2f} (seeds {sd['start_class_probability']:.2f}, "
                    f"chance {sd['judge_chance']:.2f})")
        trig = it.get("trigger_token")
        if trig:
            lines.append(f"            trigger {trig['token']!r} in {len(trig['in_word_clouds'])} word clouds of the cards")
    dbg = summaries.get("debug")
    if dbg:
        lines.append(
            f"  debug:    {dbg['errors']} errors of the sparse layer, {dbg['explained_by_one_feature']:.1%} fixed by removing "
            f"one feature (random used feature: {dbg['random_feature_fix_rate']:.1%})"
        )
        if dbg.get("pattern_insertion_flip_rate") is not None:
            orig = dbg.get("pattern_insertion_flip_rate_original")
            lines.append(
                f"            pattern insertion ({dbg['pattern_insertion_headline']}) -> '{dbg['pattern_target_name']}': "
                f"{dbg['pattern_insertion_flip_rate']:.1%} of {dbg['pattern_images']} other-class images flip (sparse)"
                + (f", {orig:.1%} (original model)" if orig is not None else "")
            )
        if dbg.get("counterfactual_flip_rate_sparse") is not None:
            lines.append(
                f"            word-substitution counterfactuals on {dbg['counterfactual_sentences']} sentences: flip rate "
                f"{dbg['counterfactual_flip_rate_sparse']:.1%} sparse vs {dbg['counterfactual_flip_rate_dense']:.1%} dense"
            )
        if dbg.get("probe_flip_rate") is not None:
            trig = dbg.get("trigger")
            where = (f"; in {len(trig['in_word_clouds'])} word clouds" if trig else "")
            lines.append(
                f"            bias probe {dbg['probe_word']!r}{where}: flips {dbg['probe_flip_rate']:.1%} (sparse), "
                f"{dbg['probe_flip_rate_dense']:.1%} (dense) of correctly classified sentences"
            )
    st = summaries.get("studies")
    if st is not None:
        made = st.get("studies", {})
        if made:
            first = next(iter(made.values()))
            sizes = ", ".join(f"{k} {v['tasks']}" for k, v in made.items())
            lines.append(f"  studies:  {len(made)} studies ({sizes} tasks) "
                         f"for {first['annotators']} annotators each, {first['replication']} answers per task "
                         f"-> {run.path / 'studies'}")
        for kind, reason in st.get("skipped", {}).items():
            lines.append(f"            {kind}: not made ({reason})")
        scores_path = run.path / "studies" / "scores.json"
        if made and scores_path.is_file():
            scores = read_json(scores_path)
            who = "simulated annotators" if scores.get("simulated") else "annotators"
            sim = scores["studies"].get("simulation", {}).get("conditions")
            if sim and all(v.get("n") for v in sim.values()):
                parts = " vs ".join(f"{c} {v['rate']:.1%} [{v['low']:.1%}, {v['high']:.1%}]" for c, v in sim.items())
                chance = scores["studies"]["simulation"]["chance"]
                lines.append(f"            simulation, {who}: accuracy {parts} (chance {chance:.1%}; people in the "
                             "paper: 63.0% vs 35.6%)")
        if made:
            lines.append(f"            serve to people: debuggable study serve {run.path} --host 127.0.0.1 --port 8000")
    report = summaries.get("report")
    if report:
        lines.append(f"  report:   {run.path / report['index']}")
    return "\n".join(lines)
