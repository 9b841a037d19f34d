"""Report section of the human studies: what was made, progress, and the scores (registered on import)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from debuggable.report.html import SectionBuilder, section
from debuggable.report.plots import _save, plt
from debuggable.run import RunDirectory, read_json


def rate_chart(rows: list[tuple[str, dict[str, Any]]], path: Path, *, title: str, chance: float | None = None,
               paper: dict[str, float] | None = None) -> Path:
    """Rates with their Wilson intervals as horizontal bars; chance and the paper's figures as marks."""
    fig, ax = plt.subplots(figsize=(5.6, 0.55 * len(rows) + 1.1))
    y = np.arange(len(rows))[::-1]
    rates = [r["rate"] if r.get("n") else np.nan for _, r in rows]
    lo = [r["rate"] - r["low"] if r.get("n") else 0 for _, r in rows]
    hi = [r["high"] - r["rate"] if r.get("n") else 0 for _, r in rows]
    ax.barh(y, rates, xerr=[lo, hi], color="#4c72b0", alpha=0.85, capsize=4)
    for yi, (label, r) in zip(y, rows):
        if r.get("n"):
            ax.text(1.01, yi, f"{r['rate']:.0%} (n={r['n']})", va="center", fontsize=8, transform=ax.get_yaxis_transform())
        if paper and label in paper:
            ax.plot([paper[label]], [yi], marker="D", color="#c44e52", ms=6, label="paper" if yi == y[0] else None)
    if chance is not None:
        ax.axvline(chance, color="0.4", ls="--", lw=1, label=f"chance {chance:.0%}")
    ax.set_yticks(y, [label for label, _ in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of answers (95% Wilson interval)")
    ax.set_title(title, fontsize=10)
    if chance is not None or paper:
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def likert_chart(dists: dict[str, dict[str, Any]], path: Path, *, title: str) -> Path:
    """Stacked shares of Likert answers 1-5 per row."""
    fig, ax = plt.subplots(figsize=(5.6, 0.5 * len(dists) + 1.2))
    colours = plt.get_cmap("RdYlGn")(np.linspace(0.1, 0.9, 5))
    for yi, (label, d) in enumerate(reversed(list(dists.items()))):
        left = 0.0
        for k in range(1, 6):
            share = d["shares"].get(str(k), 0.0) if d["n"] else 0.0
            ax.barh(yi, share, left=left, color=colours[k - 1], label=str(k) if yi == 0 else None)
            left += share
        if d["n"]:
            ax.text(1.01, yi, f"mean {d['mean']:.2f}", va="center", fontsize=8)
    ax.set_yticks(range(len(dists)), list(reversed(list(dists))))
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of answers")
    ax.set_title(title, fontsize=10)
    ax.legend(ncol=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), title="1 = lowest, 5 = highest",
              title_fontsize=7)
    return _save(fig, path)


def _pct(r: dict[str, Any] | None) -> str:
    if not r or not r.get("n"):
        return "n/a"
    return f"{r['rate']:.1%} [{r['low']:.1%}, {r['high']:.1%}] (n = {r['n']})"


def _copy(run: RunDirectory, rel: str | None):
    if not rel:
        return None
    src = run.path / rel
    if not src.is_file():
        return None

    def draw(p: Path) -> Path:
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, p)
        return p

    return draw


def _simulation(run, out: SectionBuilder, name: str, s: dict[str, Any]) -> None:
    conds = s["conditions"]
    out.table(["condition", "accuracy [Wilson 95%]", "bootstrap over annotators", "annotators", "vs chance (p)"],
              [[c, _pct(v), (f"{v['bootstrap']['mean']:.1%} [{v['bootstrap']['low']:.1%}, {v['bootstrap']['high']:.1%}]"
                             if v.get("bootstrap") else "n/a"), v.get("annotators", 0),
                f"{v['chance_test']['p_value']:.2g}" if v.get("chance_test") else "n/a"] for c, v in conds.items()])
    paper = {k: v for k, v in s.get("paper", {}).items() if isinstance(v, float)}
    out.figure(lambda p: rate_chart(list(conds.items()), p, title="Simulation accuracy per condition",
                                    chance=s["chance"], paper=paper),
               f"study_{name}_accuracy",
               f"Share of answers that picked the image the model scores highest (chance {s['chance']:.0%}); red "
               f"diamonds: the paper's {paper.get('sparse', float('nan')):.0%} sparse vs "
               f"{paper.get('dense', float('nan')):.0%} dense.")
    cmp_ = s.get("comparison", {})
    if cmp_.get("two_proportion"):
        t = cmp_["two_proportion"]
        line = (f"{cmp_['a']} - {cmp_['b']}: {t['diff']:+.1%} [{t['low']:+.1%}, {t['high']:+.1%}], two-proportion "
                f"z = {t['z']:.2f}, p = {t['p_value']:.2g}")
        if cmp_.get("paired"):
            pt = cmp_["paired"]
            line += (f"; paired over {pt['n_annotators']} annotators: {pt['diff']:+.1%} [{pt['low']:+.1%}, "
                     f"{pt['high']:+.1%}], sign-flip p = {pt['p_value']:.2g}")
        out.paragraph(line + ".")
    kap = {c: k for c, k in s.get("kappa", {}).items() if k}
    if kap:
        out.paragraph("Fleiss' kappa of the choices: " + "; ".join(
            f"{c} {k['kappa']:.2f} [{k['low']:.2f}, {k['high']:.2f}] over {k['items']} tasks" for c, k in kap.items()) + ".")


def _spurious(run, out: SectionBuilder, name: str, s: dict[str, Any]) -> None:
    rows = []
    for c, v in s["conditions"].items():
        agree = (s.get("agreement") or {}).get(c)
        rows.append([c, _pct(v["shared"]), _pct(v["surroundings"]),
                     f"{agree['overall']:.2f} over {agree['tasks']} tasks" if agree else "n/a"])
    out.table(["condition", "shared pattern seen", "called surroundings (spurious)", "description agreement (cosine)"],
              rows)
    planted = s.get("planted_patch")
    if planted:
        out.paragraph(f"Planted patch: on the {planted['answers']} judgements of a class whose shown images carry the "
                      f"patch, a shared pattern was seen in {_pct(planted['shared_seen'])} and called part of the "
                      f"surroundings in {_pct(planted['called_surroundings'])}.")
    with out.figures_row():
        for c, rel in (s.get("word_clouds") or {}).items():
            draw = _copy(run, rel)
            if draw:
                out.figure(draw, f"study_{name}_{c}_cloud", f"Descriptions, {c} layer.")


def _misclassification(run, out: SectionBuilder, name: str, s: dict[str, Any]) -> None:
    rows = []
    for c, v in s["conditions"].items():
        role = "predicted" if c == "problematic" else "random"
        rows.append([c, _pct(v[f"{role}_feature_present"]), _pct(v[f"{role}_feature_better"]),
                     _pct(v["true_feature_present"])])
    out.table(["condition", "second feature seen in the image", "second feature the better match",
               "true class's feature seen"], rows)
    pp = s.get("paper", {})
    out.paragraph(f"The paper: the predicted class's feature is seen in {pp.get('predicted_present', 0):.0%} of the "
                  f"images and judged the better match in {pp.get('predicted_better', 0):.0%}; a random feature is "
                  f"seen in {pp.get('random_present', 0):.0%}.", note=True)
    cmp_ = s.get("comparison", {})
    if cmp_.get("two_proportion"):
        t = cmp_["two_proportion"]
        out.paragraph(f"Seen in the image, problematic - random: {t['diff']:+.1%} [{t['low']:+.1%}, {t['high']:+.1%}], "
                      f"p = {t['p_value']:.2g}.")


def _description(run, out: SectionBuilder, name: str, s: dict[str, Any]) -> None:
    rows, likerts = [], {}
    for c, v in s["conditions"].items():
        ag = v["agreement"]
        rows.append([c, f"{v['ease']['mean']:.2f}", f"{v['confidence']['mean']:.2f}",
                     ", ".join(f"{k} {sh:.0%}" for k, sh in v["helpful"]["shares"].items()),
                     "; ".join(f"{k} {a['overall']:.2f}" for k, a in ag.items() if a) or "n/a",
                     _pct(v["features_with_none_majority"])])
        likerts[f"{c}: ease"] = v["ease"]
        likerts[f"{c}: confidence"] = v["confidence"]
    out.table(["grouping", "ease (1-5)", "confidence (1-5)", "most helpful section", "agreement (cosine)",
               "features with 'neither' as majority"], rows)
    out.figure(lambda p: likert_chart(likerts, p, title="Ease and confidence"), f"study_{name}_likert",
               "Likert answers: how easy the feature was to understand, and confidence in the description.")
    with out.figures_row():
        for c, v in s["conditions"].items():
            draw = _copy(run, v.get("word_cloud"))
            if draw:
                out.figure(draw, f"study_{name}_{c}_cloud", f"Descriptions, {c} grouping.")


def _failure_review(run, out: SectionBuilder, name: str, s: dict[str, Any]) -> None:
    statements = s.get("statements", [])
    for c, v in s["conditions"].items():
        out.heading(f"{name}: {c} grouping ({v['answers']} answers)")
        out.paragraph("Could describe the cluster: " + ", ".join(f"{k} {n}" for k, n in v["describable"]["counts"].items())
                      + ". Feature judged: " + ", ".join(f"{k} {n}" for k, n in v["necessary"]["counts"].items())
                      + ". Action items: " + ", ".join(f"{k} {n}" for k, n in v["actions"].items() if n) + ".")
        likerts = {f"S{i}": d for i, d in enumerate(v["statements"], 1)}
        out.figure(lambda p, likerts=likerts: likert_chart(likerts, p, title="Agreement with the statements"),
                   f"study_{name}_{c}_statements",
                   " ".join(f"S{i}: {t}" for i, t in enumerate(statements, 1)))


_KIND = {"simulation": _simulation, "spurious": _spurious, "misclassification": _misclassification,
         "description": _description, "failure_review": _failure_review}


@section("studies", "Human studies", order=95, stage="studies")
def studies_section(run: RunDirectory, out: SectionBuilder) -> None:
    summary = run.summary("studies") or {}
    made = summary.get("studies", {})
    if not made:
        out.paragraph("No study was made from this run: " + "; ".join(
            f"{k}: {v}" for k, v in summary.get("skipped", {}).items()))
        return
    out.paragraph(
        "Tasks generated from this run for the papers' human studies (001 Sec. 3.3, 4.1, 4.3; 002 Sec. 8-9). Serve "
        f"them with `debuggable study serve {run.path}`; score the answers with `debuggable study score {run.path}`.")
    out.table(["study", "tasks per condition", "attention checks", "annotators", "answers per task", "tasks per annotator"],
              [[name, ", ".join(f"{c} {n}" for c, n in m["conditions"].items()), m["attention_checks"], m["annotators"],
                m["replication"], "-".join(str(x) for x in dict.fromkeys(m["tasks_per_annotator"]))]
               for name, m in made.items()])
    for kind, reason in summary.get("skipped", {}).items():
        out.paragraph(f"{kind}: not made ({reason}).", note=True)
    scores_path = run.path / "studies" / "scores.json"
    if not scores_path.is_file():
        out.paragraph("No answers scored yet.", note=True)
        return
    scores = read_json(scores_path)
    if scores.get("simulated"):
        out.paragraph("These answers come from SIMULATED annotators (oracle, noisy oracle, random policies answering "
                      "through the web app's HTTP API): they check the chain end to end and show what a scored study "
                      "looks like; they say nothing about people.", note=True)
    out.paragraph(f"Scored {scores['scored_at']}. {scores['exclusion_rule']}")
    for name, s in scores["studies"].items():
        out.heading(f"{name}: {s['title']}")
        out.paragraph(f"{s['answers']} answers from {s['annotators_answering']} of {s['annotators']} annotators; "
                      f"{len(s['excluded'])} excluded by the attention checks ({s['attention']['checks_passed']} of "
                      f"{s['attention']['checks_answered']} checks passed); {s['answers_kept']} answers scored.")
        if s.get("by_policy"):
            out.table(["simulated policy", "keyed answers correct [Wilson 95%]", "must be"],
                      [[p, _pct(v), f"{v['expected']:.1%}" if v.get("expected") is not None else "n/a"]
                       for p, v in sorted(s["by_policy"].items())])
        fn = _KIND.get(s["kind"])
        if fn is not None and "conditions" in s:
            fn(run, out, name, s)
