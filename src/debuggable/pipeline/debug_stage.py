"""Stage ``debug``: debugging the model through its sparse decision layer (paper Sec. 4).

Reads the sparse layer (``layer/``), the GLM path (its least-regularised point is the
"dense" layer), the inspected model's feature store and the data, and writes
``debug/``:

* ``summary.json``: misclassifications explained by one feature (overall, per class,
  the random-feature baseline), the most confused class pairs with their shared
  features, and per modality: pattern-insertion flip rates (images), or
  word-substitution counterfactual flip rates for the sparse and the dense layer on the
  same sentences and bias-probe results (text);
* ``insertion.npz`` (images): example images before and after each pattern was pasted;
* ``errors.npz`` (images): a few misclassified images (those one feature explains first);
* ``word_clouds.json`` (text): the word clouds the counterfactuals and probes used.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import torch

from debuggable.debug import (
    BiasProbe,
    Pattern,
    PatternInsertion,
    WordSubstitution,
    crop_pattern,
    paste,
    peak_box,
    probe_candidates,
    problematic_features,
    shared_feature_confusion,
)
from debuggable.errors import DebuggableError
from debuggable.layer import SparseDecisionLayer
from debuggable.pipeline.data_stage import build_data
from debuggable.pipeline.extract_stage import make_backbone, open_store
from debuggable.pipeline.fit_stage import load_path
from debuggable.pipeline.stage import StageContext
from debuggable.run import (
    DebugConfig,
    RunDirectory,
    atomic_write_bytes,
    atomic_write_json,
)

INSERTION_FILE = "insertion.npz"
CLOUDS_FILE = "word_clouds.json"
ERRORS_FILE = "errors.npz"


def check_debug_config(config) -> None:
    """Validate the debug settings against the rest of the config (before anything is written)."""
    cfg = config.debug
    if cfg is None or not cfg.enabled:
        return
    if cfg.split not in config.extract.splits:
        raise DebuggableError(f"debug.split {cfg.split!r} is not extracted; expected one of {config.extract.splits}.")


def _class_index(value: Any, names: list[str], what: str) -> int:
    if isinstance(value, str):
        if value not in names:
            raise DebuggableError(f"{what} {value!r} is not a class name; expected one of {names}.")
        return names.index(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < len(names):
        raise DebuggableError(f"{what} {value!r} is not a class; expected an index in 0..{len(names) - 1} or a name.")
    return int(value)


def _pct(v: Any) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.1%}"


def _json_safe(obj: Any) -> Any:
    """NaN and infinities (JSON has none) become None, recursively."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _subsample(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size <= n:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))


# ----------------------------------------------------------------------------- every modality


def _misclassifications(layer: SparseDecisionLayer, x: np.ndarray, y: np.ndarray, cfg: DebugConfig,
                        device: torch.device) -> dict[str, Any]:
    res = problematic_features(layer, x, y, device=device)
    out = res.to_dict(max_examples=cfg.max_cases)
    matrix, pairs = shared_feature_confusion(layer, x, y, top_pairs=cfg.confusion_pairs, device=device)
    out["confusion_matrix"] = matrix.tolist()
    out["confused_pairs"] = [p.to_dict(layer.class_names) for p in pairs]
    out["_result"] = res
    return out


def _planted_errors(res, rows: set[int], what: str) -> dict[str, Any]:
    """How the errors on examples carrying a planted bug are explained."""
    on = np.array([int(r) in rows for r in res.rows], dtype=bool)
    feats, counts = np.unique(res.feature[on & res.explained], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {"bug": what, "errors": int(on.sum()), "explained": int((on & res.explained).sum()),
            "explained_fraction": float((on & res.explained).sum() / on.sum()) if on.any() else None,
            "features": [[int(feats[i]), int(counts[i])] for i in order]}


def _error_examples(run: RunDirectory, ds, mis: dict[str, Any], outputs: list[str], n: int = 12) -> None:
    """Attach the inputs of the first errors to the summary's cases (texts) or to
    ``debug/errors.npz`` (images): explained errors first."""
    cases = sorted(mis["cases"], key=lambda c: c["feature"] < 0)[:n]
    if not cases:
        return
    rows = np.array([c["row"] for c in cases], dtype=np.int64)
    if ds.modality == "text":
        for c in mis["cases"]:
            c["text"] = ds.texts[c["row"]]
        return
    images, _ = ds.batch(rows)
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images.numpy(), rows=rows,
                        labels=np.array([c["label"] for c in cases]), predicted=np.array([c["predicted"] for c in cases]),
                        feature=np.array([c["feature"] for c in cases]))
    atomic_write_bytes(run.path / "debug" / ERRORS_FILE, buf.getvalue())
    outputs.append(f"debug/{ERRORS_FILE}")


# ----------------------------------------------------------------------------- images


class _SharedFeatures:
    """Backbone outputs of the last batch, so several heads on one backbone cost one pass."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.x = None  # held, so its identity cannot be reused by a new tensor
        self.version = -1
        self.out = None

    def __call__(self, x: torch.Tensor):
        if x is not self.x or x._version != self.version:
            self.x, self.version, self.out = x, x._version, self.backbone(x)
        return self.out


def _image_models(backbone, layer: SparseDecisionLayer, dense: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """name -> images -> logits: the sparse layer, the dense layer and (when it has a
    head for these classes) the original network, sharing one backbone pass per batch."""
    shared = _SharedFeatures(backbone)
    device = getattr(backbone, "device", torch.device("cpu"))
    models = {}
    for name, (w, b) in (("sparse", (layer.weight, layer.bias)), ("dense", dense)):
        wt = torch.as_tensor(w, dtype=torch.float64, device=device)
        bt = torch.as_tensor(b, dtype=torch.float64, device=device)
        models[name] = (lambda wt, bt: lambda x: shared(x).features.double() @ wt.T + bt)(wt, bt)
    if getattr(backbone, "num_classes", None) == layer.num_classes:
        models["original"] = lambda x: shared(x).logits
    return models


def _patterns(run: RunDirectory, splits, store, layer: SparseDecisionLayer, target: int, cfg: DebugConfig,
              size: int, backbone) -> list[Pattern]:
    """The planted patch (when there is one for ``target``) and the top-activating
    region of each of the target class's strongest positive features: on the feature's
    most-activating training image, the ``size`` x ``size`` window whose occlusion
    lowers the feature most (``pattern_region = "occlusion"``), or the peak of its CAM
    heatmap (``"cam"``)."""
    from debuggable.data import patch_masks
    from debuggable.debug import occlusion_box
    from debuggable.interpret import feature_cam, most_activating

    patterns = []
    planted = splits.planted.get("spurious_patch")
    if planted and int(planted["params"]["target_class"]) == target:
        rows, masks = patch_masks(planted, "train")
        if rows.size:
            box = planted["splits"]["train"]["boxes"][0]
            img, _ = splits.train.batch(rows[:1])
            p = crop_pattern(img[0], box, name="planted patch", source={"kind": "planted", "train_row": int(rows[0])})
            r0, c0, r1, c1 = box
            patterns.append(Pattern(p.pixels, p.top, p.left, mask=masks[0][r0:r1, c0:c1], name=p.name, source=p.source))
    train = store.split("train")
    positive = [(j, w) for j, w in layer.top_features(target) if w > 0][: cfg.pattern_features]
    use_cam = cfg.pattern_region == "cam"
    if use_cam and "spatial" not in train.arrays:
        raise DebuggableError("debug.pattern_region 'cam' needs spatial maps in the feature store; "
                              "set extract.spatial = true or use 'occlusion'.")
    for j, w in positive:
        top = most_activating(train, j, k=1)
        row = int(top.indices[0])
        img, _ = splits.train.batch(np.array([row]))
        if use_cam:
            box = peak_box(feature_cam(train.read("spatial", np.array([row])), j, tuple(img.shape[2:]))[0], size)
        else:
            box, _ = occlusion_box(backbone, img[0], j, size, stride=max(1, size // 4))
        patterns.append(crop_pattern(img[0], box, name=f"feature {j} region",
                                     source={"kind": "feature", "feature": int(j), "weight": float(w),
                                             "train_row": row, "activation": float(top.values[0]),
                                             "region": cfg.pattern_region}))
    return patterns


def _image_debug(run: RunDirectory, ctx: StageContext, cfg: DebugConfig, splits, store, layer, dense,
                 x: np.ndarray, y: np.ndarray, mis: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    names = layer.class_names
    planted = splits.planted.get("spurious_patch")
    if cfg.pattern_target is not None:
        target = _class_index(cfg.pattern_target, names, "debug.pattern_target")
    elif planted:
        target = int(planted["params"]["target_class"])
    else:
        counts = np.asarray(mis["confusion_matrix"]).copy()
        np.fill_diagonal(counts, 0)
        target = int(counts.sum(0).argmax())
    h, w = splits.train.image_shape[1:]
    if cfg.pattern_size is not None:
        size = cfg.pattern_size
    elif planted:
        b = planted["splits"]["train"]["boxes"][0] if planted["splits"].get("train", {}).get("boxes") else None
        size = int(max(b[2] - b[0], b[3] - b[1])) if b else max(1, min(h, w) // 7)
    else:
        size = max(1, min(h, w) // 7)
    if size > min(h, w):
        raise DebuggableError(f"debug.pattern_size {size} is larger than the images ({h}x{w}); expected at most {min(h, w)}.")
    ds = splits[cfg.split]
    exclude = set()
    if planted and cfg.split in planted["splits"]:
        exclude = set(int(i) for i in planted["splits"][cfg.split]["indices"])
    rows = np.array([i for i in np.flatnonzero(ds.labels != target) if int(i) not in exclude], dtype=np.int64)
    rows = _subsample(rows, cfg.pattern_images, run.config.seed)
    if rows.size == 0:
        raise DebuggableError(f"debug: split {cfg.split!r} has no image outside class {names[target]!r} to paste patterns into.")
    images, labels = ds.batch(rows)
    backbone = make_backbone(run, run.config.glm.store).to(ctx.device).eval()
    models = _image_models(backbone, layer, dense)
    patterns = _patterns(run, splits, store, layer, target, cfg, size, backbone)
    insert = PatternInsertion(models, target, batch_size=256, device=ctx.device)
    results = []
    examples: dict[str, np.ndarray] = {}
    done: dict[tuple, tuple[Any, str]] = {}  # pasted content -> (result, first pattern's name)
    for k, pattern in enumerate(patterns):
        full = pattern.mask is None or bool(np.all(pattern.mask))  # an all-true mask pastes the whole crop
        key = (pattern.box, pattern.pixels.tobytes(), None if full else pattern.mask.tobytes())
        same_as = done[key][1] if key in done else None  # a feature region may be exactly the planted patch
        if key not in done:
            done[key] = (insert.attribute(images, labels.numpy(), pattern), pattern.name)
        res = done[key][0]
        res = type(res)(**{**res.__dict__, "pattern": pattern})
        # Show mostly images whose prediction moved to the target, as the paper's Fig. 9.
        moved = np.flatnonzero((res.after["sparse"] == target) & (res.before["sparse"] != target))
        still = np.flatnonzero(res.after["sparse"] != target)
        show = np.sort(np.concatenate([moved[:6], still[: 8 - min(6, moved.size)]]))
        results.append(res.to_dict())
        examples[f"before_{k}"] = images[show].numpy()
        examples[f"after_{k}"] = paste(images[show], pattern).numpy()
        examples[f"pred_before_{k}"] = res.before["sparse"][show]
        examples[f"pred_after_{k}"] = res.after["sparse"][show]
        examples[f"box_{k}"] = np.asarray(pattern.box)
        ctx.log(f"[debug] pattern '{pattern.name}' -> '{names[target]}': sparse {res.flip_rate('sparse'):.1%}"
                + "".join(f", {m} {res.flip_rate(m):.1%}" for m in models if m != "sparse")
                + f" of {rows.size} images"
                + (f" (the same pixels in the same place as '{same_as}')" if same_as else ""))
    if examples:
        buf = io.BytesIO()
        np.savez_compressed(buf, **examples)
        atomic_write_bytes(run.path / "debug" / INSERTION_FILE, buf.getvalue())
        outputs.append(f"debug/{INSERTION_FILE}")
    headline = next((r for r in results if r["pattern"]["source"].get("kind") == "feature"), results[0] if results else None)
    return {
        "pattern_target": target,
        "pattern_target_name": names[target],
        "pattern_size": size,
        "pattern_images": int(rows.size),
        "patterns": results,
        "pattern_insertion_flip_rate": None if headline is None else headline["models"]["sparse"]["flip_rate"],
        "pattern_insertion_flip_rate_original": None if headline is None or "original" not in headline["models"]
        else headline["models"]["original"]["flip_rate"],
        "pattern_insertion_headline": None if headline is None else headline["pattern"]["name"],
    }


# ----------------------------------------------------------------------------- text


def _text_debug(run: RunDirectory, ctx: StageContext, cfg: DebugConfig, splits, layer: SparseDecisionLayer,
                dense: tuple[np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray,
                outputs: list[str]) -> dict[str, Any]:
    from debuggable.interpret import word_clouds, word_lime

    names = layer.class_names
    seed = run.config.seed
    if cfg.cf_target is not None:
        target = _class_index(cfg.cf_target, names, "debug.cf_target")
    else:
        target = names.index("positive") if "positive" in names else min(1, len(names) - 1)
    heads = {"sparse": (layer.weight, layer.bias), "dense": (dense[0], dense[1])}
    backbone = make_backbone(run, run.config.glm.store).to(ctx.device).eval()
    trigger = splits.planted.get("trigger_token")
    ds = splits[cfg.split]
    texts = list(ds.texts)
    carries = set()
    if trigger and cfg.split in trigger["splits"]:
        carries = set(int(i) for i in trigger["splits"][cfg.split]["indices"])
    clean = np.array([i for i in range(len(texts)) if i not in carries], dtype=np.int64)

    # Word clouds: LIME over training sentences (where any learnt bias lives) for every
    # feature either head uses; one encoder pass serves all features.
    t0 = time.perf_counter()
    train_texts = list(splits.train.texts)
    cloud_rows = _subsample(np.arange(len(train_texts)), cfg.cloud_sentences, seed)
    used = sorted(set(np.flatnonzero(np.any(layer.weight != 0, 0)).tolist())
                  | set(np.flatnonzero(np.any(dense[0] != 0, 0)).tolist()))
    lime = word_lime(backbone, [train_texts[i] for i in cloud_rows], used, n_samples=cfg.lime_samples, seed=seed,
                     batch_size=cfg.batch_size, progress=ctx.progress, device=ctx.device)
    clouds = word_clouds(lime, aggregate=cfg.cloud_aggregate, min_count=cfg.cloud_min_count)
    atomic_write_json(run.path / "debug" / CLOUDS_FILE, clouds.to_dict())
    outputs.append(f"debug/{CLOUDS_FILE}")
    ctx.log(f"[debug] word clouds: {len(used)} features over {cloud_rows.size} training sentences "
            f"({cfg.lime_samples} LIME samples each) in {time.perf_counter() - t0:.1f} s")

    # Counterfactuals: sentences without the planted token, predicted as the target by both heads.
    cf_rows = _subsample(clean, cfg.cf_sentences, seed)
    cf = WordSubstitution(backbone, heads, clouds, target=target, n_words=cfg.n_words, seed=seed,
                          batch_size=cfg.batch_size).attribute([texts[i] for i in cf_rows], x[cf_rows])
    cf_dict = cf.to_dict(max_examples=20)
    for head in cf_dict["heads"].values():
        for ex in head["examples"]:
            ex["row"] = int(cf_rows[ex["row"]])
    ctx.log(f"[debug] counterfactuals on {len(cf.rows)} sentences predicted '{names[target]}': flip rate sparse "
            f"{cf.flip_rate('sparse'):.1%} vs dense {cf.flip_rate('dense'):.1%}")

    # Bias probes: the planted trigger, the user's words and candidates from the clouds.
    std_w = layer.standardized_weight
    candidates = {names[c]: probe_candidates(clouds, std_w, c, n=cfg.probe_candidates, n_words=cfg.n_words)
                  for c in range(len(names))}
    probe_rows = _subsample(clean, cfg.probe_sentences, seed + 1)
    probes: list[dict[str, Any]] = []
    jobs: list[tuple[str, int, str]] = []  # (word, class it pushes towards, why)
    if trigger:
        jobs.append((trigger["params"]["token"], int(trigger["params"]["target_class"]), "planted trigger"))
    for wd in cfg.probe_words:
        jobs.append((wd, target, "configured"))
    for c, name in enumerate(names):
        for wd, _ in candidates[name]:
            jobs.append((wd, c, f"word-cloud candidate for '{name}'"))
    seen = set()
    for wd, c, why in jobs:
        if (wd, c) in seen:
            continue
        seen.add((wd, c))
        others = [k for k in range(len(names)) if k != c]
        res = BiasProbe(backbone, heads, position=cfg.probe_position, classes=others, seed=seed,
                        batch_size=cfg.batch_size).attribute([texts[i] for i in probe_rows], y[probe_rows], [wd],
                                                             x[probe_rows])
        row = res.table()[0]
        row.update(towards=names[c], why=why)
        probes.append(row)
    trigger_info = None
    if trigger:
        token = trigger["params"]["token"]
        in_clouds = []
        for j in clouds.features:
            for side in ("positive", "negative"):
                ranked = [w_ for w_, _ in getattr(clouds, side)(j, cfg.n_words)]
                if token.lower() in ranked:
                    in_clouds.append({"feature": int(j), "side": side, "rank": ranked.index(token.lower()) + 1,
                                      "used_by_sparse": bool(np.any(layer.weight[:, j] != 0))})
        probe = next(p for p in probes if p["why"] == "planted trigger")
        cands = [w_ for w_, _ in candidates[trigger["params"]["target_class_name"]]]
        trigger_info = {
            "token": token,
            "towards": trigger["params"]["target_class_name"],
            "in_word_clouds": in_clouds,
            "in_sparse_feature_clouds": any(e["used_by_sparse"] for e in in_clouds),
            "candidate_rank": cands.index(token.lower()) + 1 if token.lower() in cands else None,
            "flip_rate_sparse": probe["flip_rate_sparse"],
            "flip_rate_dense": probe["flip_rate_dense"],
            "score_change_sparse": probe["score_change_sparse"],
            "score_change_dense": probe["score_change_dense"],
            "sentences": probe["sentences"],
        }
        ctx.log(f"[debug] planted trigger {token!r}: in {len(in_clouds)} word clouds"
                f" (sparse features: {trigger_info['in_sparse_feature_clouds']}); appended to {probe['sentences']} "
                f"correctly classified sentences it flips sparse {probe['flip_rate_sparse']:.1%}, "
                f"dense {probe['flip_rate_dense']:.1%}")
    headline = trigger_info or (max(probes, key=lambda p: p["flip_rate_sparse"]) if probes else None)
    return {
        "cf_target": target,
        "cf_target_name": names[target],
        "counterfactuals": cf_dict,
        "counterfactual_flip_rate_sparse": cf.flip_rate("sparse"),
        "counterfactual_flip_rate_dense": cf.flip_rate("dense"),
        "counterfactual_sentences": len(cf.rows),
        "word_clouds": {"features": len(clouds.features), "sentences": int(cloud_rows.size),
                        "lime_samples": cfg.lime_samples, "aggregate": cfg.cloud_aggregate,
                        "min_count": cfg.cloud_min_count},
        "probe_candidates": {k: [[w_, float(s)] for w_, s in v] for k, v in candidates.items()},
        "probes": probes,
        "trigger": trigger_info,
        "probe_word": None if headline is None else headline.get("token", headline.get("word")),
        "probe_flip_rate": None if headline is None else headline["flip_rate_sparse"],
        "probe_flip_rate_dense": None if headline is None else headline["flip_rate_dense"],
    }


# ----------------------------------------------------------------------------- the stage


def run_debug_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    cfg = run.config.debug
    if cfg is None or not cfg.enabled:
        raise DebuggableError("debug: the stage is turned off in this config (debug.enabled = false).")
    layer = SparseDecisionLayer.load(run.path / "layer")
    path = load_path(run)
    dense = (np.asarray(path.coef[-1], dtype=np.float64), np.asarray(path.intercept[-1], dtype=np.float64))
    store = open_store(run, run.config.glm.store)
    if cfg.split not in store.splits():
        raise DebuggableError(f"debug.split {cfg.split!r} was not extracted; expected one of {store.splits()}.")
    split = store.split(cfg.split)
    x, y = split.to_numpy("features").astype(np.float64), np.asarray(split.labels, dtype=np.int64)
    splits = build_data(run.config, ctx)
    outputs: list[str] = []
    (run.path / "debug").mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    mis = _misclassifications(layer, x, y, cfg, ctx.device)
    res = mis.pop("_result")
    for kind in ("spurious_patch", "trigger_token", "mislabels"):
        truth = splits.planted.get(kind)
        if truth and cfg.split in truth.get("splits", {}):
            mis.setdefault("planted", []).append(
                _planted_errors(res, set(int(i) for i in truth["splits"][cfg.split]["indices"]), kind))
    summary: dict[str, Any] = {
        "split": cfg.split,
        "modality": splits.modality,
        "errors": mis["errors"],
        "explained_by_one_feature": mis["explained_fraction"],
        "random_feature_fix_rate": mis["random_fix_rate"],
        "misclassifications": mis,
        "pattern_insertion_flip_rate": None,
        "counterfactual_flip_rate_sparse": None,
        "counterfactual_flip_rate_dense": None,
        "probe_flip_rate": None,
    }
    ctx.log(f"[debug] {mis['errors']} of {mis['examples']} {cfg.split} examples misclassified by the sparse layer; "
            f"{_pct(mis['explained_fraction'])} fixed by removing one feature (a random used feature fixes "
            f"{_pct(mis['random_fix_rate'])}) in {time.perf_counter() - t0:.2f} s")
    for p in mis.get("planted", []):
        if p["errors"]:
            ctx.log(f"[debug] {p['errors']} errors on {cfg.split} examples carrying the planted {p['bug']}: "
                    f"{p['explained']} fixed by removing one feature"
                    + (f" (mostly #{p['features'][0][0]}: {p['features'][0][1]})" if p["features"] else ""))
    _error_examples(run, splits[cfg.split], mis, outputs)
    if splits.modality == "image":
        summary.update(_image_debug(run, ctx, cfg, splits, store, layer, dense, x, y, mis, outputs))
    elif splits.modality == "text":
        summary.update(_text_debug(run, ctx, cfg, splits, layer, dense, x, y, outputs))
    return _json_safe(summary), outputs
