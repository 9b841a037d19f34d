"""The failure-mode review (002 Sec. 9): practitioners inspect one grouping's shallow tree.

For a group (a class under the label or the prediction grouping) the annotator sees
its depth-2 decision tree with the error rate (ER) and error coverage (EC) of every
node, the split features' most-activating images, heatmaps and feature attacks, and
failures from the top leaf, then answers the section's questions: can you describe
the cluster, is the feature necessary for the task or a spurious correlation, which
action items would you take, and six statements to agree or disagree with. (The
seed text names the statements' topic, not their wording; ours are in
:data:`STATEMENTS`.)
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.run.config import FailureReviewStudyConfig
from debuggable.studies.generators.barlow import BarlowContext, FailureGroup, require_groups
from debuggable.studies.generators.common import StudyImages, attention_checks, choice, likert, text
from debuggable.studies.schema import Block, Option, Question, Study, Task
from debuggable.studies.source import RunSource

KIND = "failure_review"

INSTRUCTIONS = [
    "Imagine you are part of a team that will deploy this model in production and wants to understand where it "
    "is wrong and what to do about it.",
    "Each task shows one group of pictures (those of one category, or those the model assigns to one category) "
    "split by a decision tree on the model's internal features. Each node shows how many pictures it holds, its "
    "error rate (ER: the share of its pictures the model gets wrong) and its error coverage (EC: the share of "
    "the group's errors that fall in it). Below the tree, each feature the tree splits on is shown by the "
    "pictures that activate it most, heatmaps and feature attacks, then some failures of the worst node.",
    "Answer the questions at the bottom; the statements at the end ask for your agreement from 1 (strongly "
    "disagree) to 5 (strongly agree).",
]

ACTIONS = [
    ("collect", "collect more or more diverse data"),
    ("augment", "augment the data (e.g. vary backgrounds)"),
    ("relabel", "check and fix labels"),
    ("rebalance", "rebalance classes or reweight examples"),
    ("architecture", "change the model's architecture or capacity"),
    ("training", "change the training (objective, regularisation, robustness)"),
    ("none", "no action needed"),
]

STATEMENTS = [
    "The tree showed me where the model fails.",
    "The feature views made clear what each split feature looks for.",
    "Error rate and coverage helped me judge how much each failure matters.",
    "I could decide on concrete action items from this analysis.",
    "I would run this analysis before deploying a model.",
    "The analysis surfaced failures I would not have found otherwise.",
]


def route(tree: dict[str, Any], x: np.ndarray, rows: np.ndarray) -> dict[int, np.ndarray]:
    """{node id: rows} of every node, sending ``rows`` of ``x`` down the tree (left: ``<=``)."""
    out: dict[int, np.ndarray] = {}

    def walk(node: dict[str, Any], r: np.ndarray) -> None:
        out[int(node["id"])] = r
        if node.get("leaf"):
            return
        go_left = x[r, int(node["feature"])] <= float(node["threshold"])
        walk(node["left"], r[go_left])
        walk(node["right"], r[~go_left])

    walk(tree, rows)
    return out


def nodes(tree: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every node with the path of conditions leading to it, in depth-first order."""
    out = []

    def walk(node: dict[str, Any], path: str) -> None:
        out.append((node, path or "(all)"))
        if not node.get("leaf"):
            f, t = int(node["feature"]), float(node["threshold"])
            walk(node["left"], (path + " and " if path else "") + f"feature {f} <= {t:.3g}")
            walk(node["right"], (path + " and " if path else "") + f"feature {f} > {t:.3g}")

    walk(tree, "")
    return out


def draw_tree(tree: dict[str, Any], top_leaf: int, title: str) -> np.ndarray:
    """(H, W, 3) in [0, 1]: the tree with n, ER and EC per node, the top leaf outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions: dict[int, tuple[float, float]] = {}
    leaves: list[int] = []

    def layout(node: dict[str, Any], depth: int) -> float:
        if node.get("leaf"):
            leaves.append(int(node["id"]))
            x = float(len(leaves) - 1)
        else:
            x = (layout(node["left"], depth + 1) + layout(node["right"], depth + 1)) / 2
        positions[int(node["id"])] = (x, -depth)
        return x

    layout(tree, 0)
    width = max(len(leaves), 2)
    depth = -min(y for _, y in positions.values())
    fig, ax = plt.subplots(figsize=(2.3 * width, 1.6 * (depth + 1)), dpi=100)
    by_id = {int(n["id"]): n for n, _ in nodes(tree)}
    for nid, node in by_id.items():
        x, y = positions[nid]
        if not node.get("leaf"):
            for side, child in (("<=", node["left"]), (">", node["right"])):
                cx, cy = positions[int(child["id"])]
                ax.plot([x, cx], [y - 0.18, cy + 0.18], color="0.5", lw=1, zorder=1)
                ax.text((x + cx) / 2, (y + cy) / 2, f"f{node['feature']} {side} {float(node['threshold']):.3g}",
                        ha="center", va="center", fontsize=8,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))
        er = float(node["er"])
        colour = plt.cm.Reds(0.15 + 0.7 * er)
        edge = "black" if nid == top_leaf else "0.4"
        ax.text(x, y, f"node {nid}\nn = {node['n']}\nER {er:.0%}  EC {float(node['ec']):.0%}", ha="center",
                va="center", fontsize=8, zorder=2,
                bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec=edge, lw=2.5 if nid == top_leaf else 1))
    ax.set_xlim(-0.7, width - 0.3)
    ax.set_ylim(-depth - 0.5, 0.5)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from PIL import Image

    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def _gain(fg: FailureGroup, depth: int) -> float:
    t = fg.trees[depth]
    top = int(t["top_leaf"])
    leaf = next(n for n, _ in nodes(t["tree"]) if int(n["id"]) == top)
    return float(leaf["er"]) - float(t["ber"])


def failure_review_study(source: RunSource, directory, cfg: FailureReviewStudyConfig, *, name: str = KIND,
                         seed: int = 0, replication: int = 1, checks: int = 4) -> Study:
    """One task per chosen group; the groupings are the conditions, balanced by keeping
    as many groups of each as the smaller one has."""
    if source.modality != "image":
        raise DebuggableError("the failure-mode review shows images; this run's data are not images.")
    ctx = BarlowContext(source)
    require_groups(ctx, "failure-mode review")
    rng = np.random.default_rng(seed)
    writer = StudyImages(directory)
    names = source.class_names
    conditions = ctx.groupings()
    plans = {}
    for g in conditions:
        candidates = [fg for fg in ctx.of(g) if cfg.depth in fg.trees]
        plans[g] = sorted(candidates, key=lambda fg: (-_gain(fg, cfg.depth), fg.name))[: cfg.groups]
    n = min(len(p) for p in plans.values())
    if n == 0:
        raise DebuggableError(f"the failure-mode review needs depth-{cfg.depth} trees in every grouping; add "
                              f"{cfg.depth} to failures.depths and rerun `debuggable failures`.")
    tasks: list[Task] = []
    number = 0
    for condition in conditions:
        for fg in plans[condition][:n]:
            number += 1
            t = fg.trees[cfg.depth]
            top = int(t["top_leaf"])
            who = "labelled" if fg.grouping == "label" else "predicted as"
            title = f"{fg.name}: {fg.rows.size} pictures {who} {names[fg.cls]}, error rate {fg.ber:.1%}"
            tree_img = writer.add(f"tree_{fg.grouping}_{fg.cls}_{cfg.depth}", draw_tree(t["tree"], top, title),
                                  alt="the decision tree")
            blocks = [
                Block(kind="text", text=f"Group: the {fg.rows.size} pictures {who} '{names[fg.cls]}'; the model is "
                                        f"wrong on {fg.ber:.1%} of them. The outlined node is the worst failure mode."),
                Block(kind="images", title="The decision tree", images=[tree_img], columns=1),
                Block(kind="table", title="Nodes", header=["node", "condition", "pictures", "failures", "ER", "EC"],
                      rows=[[str(nd["id"]), path, str(nd["n"]), str(nd["failures"]), f"{float(nd['er']):.1%}",
                             f"{float(nd['ec']):.1%}"] for nd, path in nodes(t["tree"])]),
            ]
            split_features = list(dict.fromkeys(int(nd["feature"]) for nd, _ in nodes(t["tree"]) if not nd.get("leaf")))
            for j in split_features:
                views, _ = ctx.feature_views(writer, fg, j, cfg.images)
                blocks.append(Block(kind="heading", text=f"Feature {j}"))
                blocks += views
            members = route(t["tree"], ctx.features, fg.rows)
            leaf_rows = members.get(top, np.zeros(0, dtype=np.int64))
            failing = leaf_rows[ctx.labels[leaf_rows] != ctx.preds[leaf_rows]]
            shown = np.sort(rng.choice(failing, size=min(cfg.images, failing.size), replace=False)) if failing.size \
                else failing
            if shown.size:
                imgs = source.images(ctx.split, shown)
                blocks.append(Block(
                    kind="images", title=f"Failures in node {top}",
                    images=[writer.add(f"{ctx.split}_{r}", im,
                                       caption=f"{names[ctx.labels[r]]} -> {names[ctx.preds[r]]}",
                                       alt="a failure") for r, im in zip(shown, imgs)],
                    columns=min(int(shown.size), 6), data={"rows": [int(r) for r in shown]}))
            questions = [
                choice("describable", "Can you describe the cluster of pictures the split features define?",
                       ["yes", "partly", "no"], ["Yes", "Partly", "No"]),
                text("describe", "Describe it.", words=15, max_chars=400, required=False),
                choice("necessary", "Is the feature necessary for the task, or a spurious correlation?",
                       ["necessary", "spurious", "unsure"], ["Necessary for the task", "A spurious correlation",
                                                            "Not sure"]),
                Question(key="actions", kind="multi", prompt="Which action items would you take to mitigate these "
                                                             "errors?",
                         options=[Option(value=v, label=lab, key=None) for v, lab in ACTIONS], required=False),
                text("actions_text", "Other action items, or details.", max_chars=400, required=False),
                *[likert(f"s{i}", s, "strongly disagree", "strongly agree") for i, s in enumerate(STATEMENTS, 1)],
            ]
            tasks.append(Task(
                id=f"{name}/{number:04d}", study=name, condition=condition, blocks=blocks, questions=questions,
                meta={"group": fg.name, "class": fg.cls, "class_name": names[fg.cls], "depth": cfg.depth,
                      "top_leaf": top, "aler": float(t["aler"]), "ber": fg.ber, "gain": _gain(fg, cfg.depth),
                      "split_features": split_features},
            ))
    pool = [im for t in tasks for b in t.blocks if b.title.startswith("Section A") for im in b.images]
    tasks += attention_checks(name, pool, checks, rng, first_id=number + 1)
    return Study(name=name, kind=KIND, title="Where does the model fail, and why?", instructions=INSTRUCTIONS,
                 conditions=conditions, tasks=tasks, replication=replication, seed=seed,
                 source={"settings": cfg.model_dump(mode="json"), "groups_per_condition": n, "statements": STATEMENTS,
                         "actions": dict(ACTIONS)})
