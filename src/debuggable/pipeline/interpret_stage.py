"""Stage ``interpret``: per-feature evidence for the features the sparse layer uses.

Reads the sparse layer (``layer/``), the feature store of the model it was fitted on
and the data, and writes ``evidence/``:

* ``cards.json``: one card per (class, feature) (standardised weight, rank) and, per
  feature, its most / least activating examples with activations, attack gains, LIME
  weights (images) or word clouds (text), and the planted-bug checks;
* ``feature_<j>.png`` (images): top examples, CAM heatmaps, feature attack,
  visualisation and LIME superpixels, least-activating examples;
* ``robust_<j>.png`` (images, with a robust model in the run): the same attack and a
  visualisation on the standard model's feature j and on the robust model's
  best-matching feature, and both features climbed from one data-like seed;
* ``evidence.npz`` (images): per feature j, ``top_images_<j>``, ``cams_<j>``,
  ``attacked_<j>``, ``visualisation_<j>``, ``lime_segments_<j>``, ``lime_weights_<j>``,
  ``top_indices_<j>`` ... for other tools;
* ``feature_<j>_positive.png`` / ``_negative.png`` (text): the word clouds;

and in ``summary.json``: the cards, the planted patch's share of each card's
top-activating images (with the heatmap mass on the patch), and the standard vs
robust comparison of attacks and visualisations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from debuggable._threads import one_cpu_thread
from debuggable.errors import DebuggableError
from debuggable.interpret import (
    AttackSettings,
    FeatureCard,
    LimeSettings,
    ImageClassJudge,
    VisualisationSettings,
    build_feature_cards,
    cam_mass_in_mask,
    draw_word_cloud,
    feature_activation,
    feature_attack,
    feature_visualisation,
    climb_from_seeds,
    gaussian_seeds,
    l2_radius,
    low_frequency_share,
    object_area_share,
    perturbation_object_share,
    most_activating,
)
from debuggable.interpret.figures import evidence_figure, image_rows
from debuggable.layer import SparseDecisionLayer
from debuggable.pipeline.data_stage import build_data
from debuggable.pipeline.extract_stage import make_backbone, open_store
from debuggable.pipeline.roles import model_roles
from debuggable.pipeline.stage import StageContext
from debuggable.run import InterpretConfig, RunDirectory, atomic_write_json

CARDS_FILE = "cards.json"
ARRAYS_FILE = "evidence.npz"


def _save_arrays(out_dir, evidence: dict[int, Any]) -> None:
    """Every feature's image evidence as ``<name>_<j>`` arrays in one compressed npz."""
    import io

    from debuggable.run import atomic_write_bytes

    arrays: dict[str, np.ndarray] = {}
    for j, ev in evidence.items():
        for name in ("top_images", "bottom_images", "cams", "attacked", "visualisation"):
            value = getattr(ev, name)
            if value is not None:
                arrays[f"{name}_{j}"] = np.asarray(value, dtype=np.float32)
        arrays[f"top_indices_{j}"] = ev.top.indices
        arrays[f"bottom_indices_{j}"] = ev.bottom.indices
        if ev.lime is not None:
            arrays[f"lime_segments_{j}"] = ev.lime.segments.astype(np.int32)
            arrays[f"lime_weights_{j}"] = ev.lime.weights
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(out_dir / ARRAYS_FILE, buf.getvalue())


def check_interpret_config(config) -> None:
    """Validate the interpret settings against the rest of the config (before anything is written)."""
    cfg = config.interpret
    if cfg is None or not cfg.enabled:
        return
    roles = model_roles(config)
    if cfg.store not in roles:
        raise DebuggableError(f"interpret.store {cfg.store!r} names no model of this run; expected one of {list(roles)}.")
    if cfg.store != config.glm.store:
        raise DebuggableError(
            f"interpret.store {cfg.store!r} is not the store the sparse layer was fitted on; expected glm.store "
            f"{config.glm.store!r}."
        )
    if cfg.split not in config.extract.splits:
        raise DebuggableError(f"interpret.split {cfg.split!r} is not extracted; expected one of {config.extract.splits}.")


# ----------------------------------------------------------------------------- planted patch


def _peak_on(cams: np.ndarray, masks: np.ndarray, cell: int) -> np.ndarray:
    """(N,) bool: whether each heatmap's maximum lies on its mask grown by ``cell`` pixels in
    every direction (one cell of the spatial map the heatmap was upsampled from: the
    map's resolution cannot place a peak more precisely)."""
    from scipy.ndimage import binary_dilation

    out = []
    square = np.ones((3, 3), dtype=bool)
    for cam, m in zip(cams, masks):
        grown = binary_dilation(m, structure=square, iterations=cell) if cell > 1 else m
        r, c = np.unravel_index(int(np.argmax(cam)), cam.shape)
        out.append(bool(grown[r, c]))
    return np.asarray(out)


def _patch_checks(cards: list[FeatureCard], truth: dict[str, Any], split: str, n_rows: int,
                  cell: int = 1) -> dict[str, Any] | None:
    """Does each card's evidence show the planted patch? (share of top images carrying it,
    heatmap mass on it, LIME's top superpixels covering it)."""
    info = truth.get("splits", {}).get(split)
    if not info:
        return None
    from debuggable.data import patch_masks

    rows, masks = patch_masks(truth, split)
    mask_of = {int(r): m for r, m in zip(rows, masks)}
    target = int(truth["params"]["target_class"])
    per_feature: dict[int, dict[str, Any]] = {}
    for card in cards:
        ev = card.evidence
        if ev.feature in per_feature:
            continue
        top = [int(i) for i in ev.top.indices]
        carrying = [n for n, i in enumerate(top) if i in mask_of]
        check: dict[str, Any] = {"top_with_patch": len(carrying), "top": len(top),
                                 "top_patch_fraction": len(carrying) / max(1, len(top))}
        if carrying and ev.cams is not None:
            m = np.stack([mask_of[top[n]] for n in carrying])
            check["cam_mass_on_patch"] = float(np.mean(cam_mass_in_mask(ev.cams[carrying], m)))
            check["patch_area_fraction"] = float(m.mean())
            check["cam_peak_on_patch"] = float(np.mean(_peak_on(ev.cams[carrying], m, cell)))
        if ev.lime is not None and top and top[0] in mask_of:
            m = mask_of[top[0]]
            check["lime_patch_coverage"] = float((ev.lime.mask(3) & m).sum() / max(1, m.sum()))
        per_feature[ev.feature] = check
    for card in cards:
        card.extra["planted_patch"] = per_feature[card.feature]
    target_cards = [
        {"feature": c.feature, "weight": c.weight, "rank": c.rank, **per_feature[c.feature]}
        for c in cards if c.class_index == target
    ]
    return {
        "target_class": target,
        "target_class_name": truth["params"].get("target_class_name", str(target)),
        "base_rate": len(mask_of) / max(1, n_rows),
        "target_cards": target_cards,
        "best_top_patch_fraction": max((c["top_patch_fraction"] for c in target_cards), default=0.0),
        "features": {str(j): v for j, v in per_feature.items()},
    }


# ----------------------------------------------------------------------------- robust comparison


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(1), den, out=np.zeros(len(a)), where=den > 0)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


def _model_probe(backbone, feats: list[int], x_np: np.ndarray, sources: np.ndarray, data, k: int,
                 attack: AttackSettings, vis: VisualisationSettings | None, seed: int, device,
                 judge: ImageClassJudge | None = None, classes: list[int] | None = None,
                 seeded: _Seeded | None = None) -> dict[str, Any]:
    """Attack ``sources`` towards each feature and visualise it, on one model; returns arrays and metrics."""
    n = len(sources)
    src, _ = data.batch(sources)
    src = src.float()
    x = src.repeat(len(feats), 1, 1, 1)
    per_image = [j for j in feats for _ in range(n)]
    adv = feature_attack(backbone, x, per_image, eps=attack.eps, steps=attack.steps, step_size=attack.step_size,
                         device=device)
    before = feature_activation(backbone, x, per_image, device=device).numpy()
    after = feature_activation(backbone, adv, per_image, device=device).numpy()
    std = x_np[:, feats].std(axis=0)
    protos = []
    for j in feats:
        top = most_activating(x_np, j, k)
        imgs, _ = data.batch(top.indices)
        protos.append(imgs.float().mean(0).numpy())
    protos = np.stack(protos)
    delta = (adv - x).numpy()
    towards = np.repeat(protos, n, axis=0) - x.numpy()
    align = _cosine(delta, towards)
    smooth = low_frequency_share(delta)
    on_object = perturbation_object_share(x, adv)
    visual = None
    if vis is not None:
        visual = feature_visualisation(backbone, feats, shape=tuple(int(s) for s in src.shape[1:]), steps=vis.steps,
                                       lr=vis.lr, jitter=vis.jitter, parametrisation=vis.parametrisation, seed=seed,
                                       device=device).numpy()
    judged = judge.class_probability(visual, classes) if (judge is not None and visual is not None) else None
    climbed = seeded_judged = None
    if seeded is not None:
        climbed = climb_from_seeds(backbone, seeded.starts, feats, eps=seeded.eps, steps=seeded.steps,
                                   device=device).numpy()
        seeded_judged = seeded.judge.class_probability(climbed, classes)
    out: dict[str, Any] = {"adv": adv.numpy(), "protos": protos, "visual": visual, "seeded": climbed, "metrics": []}
    for f, j in enumerate(feats):
        s = slice(f * n, (f + 1) * n)
        m = {"feature": int(j),
             "rise_std": float(np.mean(after[s] - before[s]) / std[f]) if std[f] > 0 else 0.0,
             "before": float(np.mean(before[s])), "after": float(np.mean(after[s])),
             "alignment": float(np.mean(align[s])), "attack_low_frequency": float(np.mean(smooth[s])),
             "attack_on_object": float(np.mean(on_object[s]))}
        if visual is not None:
            m["visualisation_low_frequency"] = float(low_frequency_share(visual[f][None])[0])
            m["visualisation_correlation"] = _pearson(visual[f], protos[f])
        if judged is not None:
            m["visualisation_class_probability"] = float(judged[f])
        if seeded_judged is not None:
            m["seeded_class_probability"] = float(seeded_judged[f])
        out["metrics"].append(m)
    return out


@dataclass(frozen=True)
class _Seeded:
    """Feature visualisation by L2 ascent from ``starts`` (F, C, H, W), one per feature,
    judged by ``judge`` (a classifier of real images' pixels: the seeds keep the layout)."""

    starts: torch.Tensor
    eps: float
    steps: int
    judge: ImageClassJudge


def robust_partners(x: np.ndarray, r: np.ndarray, feats: list[int]) -> tuple[list[int], np.ndarray]:
    """For each standard feature ``j`` in ``feats``, the robust feature most correlated with
    it: ``x`` (N, D) and ``r`` (N, D') are the two models' features on the same images.

    Returns the partners' indices and their Pearson correlations ``(len(feats),)``;
    constant robust features are never chosen.
    """
    xs, rs = x.std(0), r.std(0)
    xz = (x - x.mean(0)) / np.where(xs > 0, xs, 1)
    rz = (r - r.mean(0)) / np.where(rs > 0, rs, 1)
    corr = xz[:, feats].T @ rz / len(x)  # (F, D') Pearson correlations
    corr[:, rs == 0] = -np.inf
    match = corr.argmax(1)
    return [int(k) for k in match], corr[np.arange(len(feats)), match]


def _robust_comparison(run: RunDirectory, ctx: StageContext, cfg: InterpretConfig, feats: list[int], reader, data,
                       backbone, attack: AttackSettings, vis: VisualisationSettings | None,
                       out_dir, outputs: list[str], classes: list[int], judge_data) -> dict[str, Any] | None:
    if not cfg.robust or "robust" not in model_roles(run.config) or cfg.store == "robust" or not feats:
        return None
    rstore = open_store(run, "robust")
    if cfg.split not in rstore.splits():
        return None
    rreader = rstore.split(cfg.split)
    x_np, r_np = reader.to_numpy("features").astype(np.float64), rreader.to_numpy("features").astype(np.float64)
    match, corr = robust_partners(x_np, r_np, feats)
    robust = make_backbone(run, "robust").to(ctx.device).eval()
    rng = np.random.default_rng(run.config.seed)
    sources = np.sort(rng.choice(len(data), size=min(cfg.compare_images, len(data)), replace=False))
    seed = run.config.seed
    judge = seeded = None
    if vis is not None or cfg.seeded_vis_steps > 0:
        images, labels = judge_data.batch(np.arange(len(judge_data)))
        images = images.float()
    if vis is not None:
        # an independent classifier of real images' spectra says whether a visualisation looks like its class
        judge = ImageClassJudge(seed=seed).fit(images, labels)
    if cfg.seeded_vis_steps > 0:
        # Santurkar et al. (2019): class-less seeds with the data's mean and covariance, the same for both models
        seeded = _Seeded(starts=gaussian_seeds(images, len(feats), seed=seed),
                         eps=l2_radius(tuple(images.shape[1:]), cfg.seeded_vis_rms),
                         steps=cfg.seeded_vis_steps,
                         judge=ImageClassJudge(features="pixels", seed=seed).fit(images, labels))
    std_probe = _model_probe(backbone, feats, x_np, sources, data, cfg.k, attack, vis, seed, ctx.device, judge, classes,
                             seeded)
    rob_probe = _model_probe(robust, match, r_np, sources, data, cfg.k, attack, vis, seed, ctx.device, judge, classes,
                             seeded)
    src, _ = data.batch(sources)
    n = len(sources)
    rows = []
    for f, (j, r) in enumerate(zip(feats, match)):
        s = slice(f * n, (f + 1) * n)
        ms, mr = std_probe["metrics"][f], rob_probe["metrics"][f]
        rows.append({"feature": j, "robust_feature": r, "class": int(classes[f]), "correlation": float(corr[f]),
                     "standard": ms, "robust": mr})
        fig_rows = [("images", src.float().numpy()), (f"std #{j}", std_probe["adv"][s]), (f"robust #{r}", rob_probe["adv"][s])]
        panel = [std_probe["protos"][f], rob_probe["protos"][f]]
        names = ["std top mean", "rob top mean"]
        if vis is not None:
            panel += [std_probe["visual"][f], rob_probe["visual"][f]]
            names += ["std vis.", "rob vis."]
        if seeded is not None:
            panel += [seeded.starts[f].numpy(), std_probe["seeded"][f], rob_probe["seeded"][f]]
            names += ["seed", "std from seed", "rob from seed"]
        fig_rows.append(("top mean / vis.", np.stack(panel)))
        image_rows(fig_rows, out_dir / f"robust_{j}.png", captions=[None, None, None, names])
        outputs.append(f"evidence/robust_{j}.png")
    keys = ["rise_std", "alignment", "attack_low_frequency", "attack_on_object"] + (
        ["visualisation_low_frequency", "visualisation_correlation", "visualisation_class_probability"]
        if vis is not None else []) + (["seeded_class_probability"] if seeded is not None else [])
    mean = {model: {k: float(np.mean([row[model][k] for row in rows])) for k in keys} for model in ("standard", "robust")}
    return {"eps": attack.eps, "steps": attack.steps, "step_size": attack.step_size, "sources": sources.tolist(),
            "object_area": float(np.mean(object_area_share(src.float()))),
            "low_frequency_cutoff": 0.125, "white_noise_low_frequency": float(np.mean(low_frequency_share(
                np.random.default_rng(0).normal(size=(64,) + tuple(src.shape[1:]))))),
            "judge_chance": judge.chance if judge is not None else None,
            "seeded": None if seeded is None else {
                "eps": seeded.eps, "steps": seeded.steps, "judge": "pixels", "judge_chance": seeded.judge.chance,
                "start_class_probability": float(np.mean(seeded.judge.class_probability(seeded.starts, classes)))},
            "features": rows, "mean": mean}


# ----------------------------------------------------------------------------- stage


def _clear(out_dir) -> None:
    for p in list(out_dir.glob("*.png")) + [out_dir / CARDS_FILE, out_dir / ARRAYS_FILE]:
        if p.is_file():
            p.unlink()


def run_interpret_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    cfg = run.config.interpret
    if cfg is None or not cfg.enabled:
        raise DebuggableError("interpret: the stage is turned off in run.toml (interpret.enabled = false).")
    check_interpret_config(run.config)
    with one_cpu_thread(ctx.device):  # the evidence runs the model on a few images at a time
        return _run(run, ctx, cfg)


def _run(run: RunDirectory, ctx: StageContext, cfg: InterpretConfig) -> tuple[dict[str, Any], list[str]]:
    t0 = time.perf_counter()
    splits = build_data(run.config, ctx)
    data = splits[cfg.split]
    layer = SparseDecisionLayer.load(run.path / "layer")
    store = open_store(run, cfg.store)
    if cfg.split not in store.splits():
        raise DebuggableError(f"interpret.split {cfg.split!r} was not extracted; expected one of {store.splits()}.")
    reader = store.split(cfg.split)
    backbone = make_backbone(run, cfg.store).to(ctx.device).eval()
    out_dir = run.stage_dir("evidence")
    _clear(out_dir)
    outputs: list[str] = []
    seed = run.config.seed
    lime = LimeSettings(n_samples=cfg.lime_samples, n_segments=cfg.lime_segments)
    summary: dict[str, Any] = {"split": cfg.split, "store": cfg.store, "modality": data.modality,
                               "per_class": cfg.per_class, "k": cfg.k}
    if data.modality == "image":
        attack = AttackSettings(eps=cfg.attack_eps, steps=cfg.attack_steps, step_size=cfg.attack_step_size)
        vis = VisualisationSettings(steps=cfg.vis_steps) if cfg.vis_steps > 0 else None
        spatial = reader if "spatial" in reader.arrays else None
        cards = build_feature_cards(layer, reader, data, backbone=backbone, spatial=spatial, per_class=cfg.per_class,
                                    k=cfg.k, attack=attack, visualisation=vis, lime=lime, seed=seed,
                                    device=ctx.device, progress=ctx.progress)
        truth = splits.planted.get("spurious_patch")
        cell = 1
        if spatial is not None:
            cell = max(1, int(round(data.image_shape[1] / spatial.array_shape("spatial")[2])))
        patch = _patch_checks(cards, truth, cfg.split, len(data), cell) if truth else None
        boxes_of: dict[int, tuple[int, int, int, int]] = {}
        if truth and cfg.split in truth.get("splits", {}):
            info = truth["splits"][cfg.split]
            boxes_of = {int(i): tuple(b) for i, b in zip(info["indices"], info["boxes"])}
        features = list(dict.fromkeys(c.feature for c in cards))
        evidence = {c.feature: c.evidence for c in cards}
        for j in features:
            ev = evidence[j]
            evidence_figure(ev, out_dir / f"feature_{j}.png", boxes=[boxes_of.get(int(i)) for i in ev.top.indices])
            outputs.append(f"evidence/feature_{j}.png")
        _save_arrays(out_dir, evidence)
        outputs.append(f"evidence/{ARRAYS_FILE}")
        strongest = {}
        for c in cards:  # each feature's class: the one that weighs it most positively
            if c.feature not in strongest or c.weight > strongest[c.feature].weight:
                strongest[c.feature] = c
        classes = [strongest[j].class_index for j in features]
        judge_data = splits["train"]
        comparison = _robust_comparison(run, ctx, cfg, features, reader, data, backbone, attack, vis, out_dir, outputs,
                                        classes, judge_data)
        if patch is not None:
            summary["planted_patch"] = patch
            best = max(patch["target_cards"], key=lambda c: c["top_patch_fraction"], default=None)
            if best is not None:
                extra = ""
                if "cam_mass_on_patch" in best:
                    extra = (f"; its heatmap peaks on the patch in {best['cam_peak_on_patch']:.0%} of them and puts "
                             f"{best['cam_mass_on_patch']:.0%} of its mass there ({best['patch_area_fraction']:.0%} "
                             "of the image)")
                ctx.log(f"[interpret] planted patch class '{patch['target_class_name']}': feature #{best['feature']} "
                        f"(weight {best['weight']:+.2f}): {best['top_with_patch']}/{best['top']} top-activating "
                        f"{cfg.split} images carry the patch (base rate {patch['base_rate']:.0%}){extra}")
        if comparison is not None:
            summary["robust_comparison"] = comparison
            m = comparison["mean"]
            ctx.log(
                f"[interpret] feature attack (L2 eps={attack.eps}), standard vs robust model: activation rise "
                f"{m['standard']['rise_std']:.1f} vs {m['robust']['rise_std']:.1f} std; low-frequency share of the "
                f"change {m['standard']['attack_low_frequency']:.0%} vs {m['robust']['attack_low_frequency']:.0%}, "
                f"on the object {m['standard']['attack_on_object']:.0%} vs {m['robust']['attack_on_object']:.0%} "
                f"(object area {comparison['object_area']:.0%})"
                + (f", of the visualisation {m['standard']['visualisation_low_frequency']:.0%} vs "
                   f"{m['robust']['visualisation_low_frequency']:.0%}" if vis is not None else "")
                + f" (white noise {comparison['white_noise_low_frequency']:.0%})"
            )
            if vis is not None:
                ctx.log(f"[interpret] feature visualisation, standard vs robust model: a classifier of real images' spectra "
                        f"gives the feature's class {m['standard']['visualisation_class_probability']:.2f} vs "
                        f"{m['robust']['visualisation_class_probability']:.2f} on average (chance "
                        f"{comparison['judge_chance']:.2f})")
            if comparison["seeded"] is not None:
                sd = comparison["seeded"]
                ctx.log(f"[interpret] feature visualisation by L2 ascent (eps {sd['eps']:.1f}) from data-like seeds, "
                        f"standard vs robust model: a classifier of real images' pixels gives the feature's class "
                        f"{m['standard']['seeded_class_probability']:.2f} vs {m['robust']['seeded_class_probability']:.2f} "
                        f"(the seeds {sd['start_class_probability']:.2f}, chance {sd['judge_chance']:.2f})")
    else:
        cards = build_feature_cards(layer, reader, data, backbone=backbone, per_class=cfg.per_class, k=cfg.k,
                                    attack=None, visualisation=None,
                                    lime=LimeSettings(n_samples=cfg.word_lime_samples), cloud_words=cfg.cloud_words,
                                    seed=seed, device=ctx.device, progress=ctx.progress)
        features = list(dict.fromkeys(c.feature for c in cards))
        evidence = {c.feature: c.evidence for c in cards}
        for j in features:
            ev = evidence[j]
            for side, words in (("positive", ev.positive_words), ("negative", ev.negative_words)):
                if words:
                    draw_word_cloud(dict(words), out_dir / f"feature_{j}_{side}.png", seed=seed)
                    outputs.append(f"evidence/feature_{j}_{side}.png")
        trigger = splits.planted.get("trigger_token")
        if trigger:
            token = str(trigger["params"]["token"]).lower()
            found = [{"feature": j, "side": side, "rank": [w for w, _ in words].index(token) + 1}
                     for j in features for side, words in (("positive", evidence[j].positive_words or []),
                                                           ("negative", evidence[j].negative_words or []))
                     if token in [w for w, _ in words]]
            summary["trigger_token"] = {"token": token, "in_word_clouds": found}
            ctx.log(f"[interpret] planted trigger {token!r} appears in {len(found)} of {2 * len(features)} word clouds")
    summary["cards"] = [c.to_dict() for c in cards]
    summary["features"] = {str(j): evidence[j].to_dict() for j in features}
    summary["n_cards"] = len(cards)
    summary["n_features"] = len(features)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(out_dir / CARDS_FILE, {"cards": summary["cards"], "features": summary["features"]})
    outputs.insert(0, f"evidence/{CARDS_FILE}")
    ctx.log(f"[interpret] {len(cards)} feature cards ({len(features)} features) for {layer.num_classes} classes "
            f"in {summary['seconds']:.1f} s")
    return summary, outputs
