"""Numbers computed from attribution maps, and bootstrap confidence intervals.

Per-example metrics take batches of attributions, (B, C, H, W) or (B, H, W), tensors or
arrays, and return a (B,) float64 NumPy array; an example where a metric is undefined
(an all-zero map, a constant map) gets NaN, and the aggregates skip it.

* :func:`region_mass`: share of the absolute attribution inside a region (the planted
  patch), in [0, 1].
* :func:`spearman_abs`: Spearman rank correlation of the absolute values (channels
  summed), in [-1, 1] (the sanity checks' main similarity); :func:`spearman`: the
  same on the signed values.
* :func:`ssim`: structural similarity (scikit-image) of the normalised absolute maps.
* :func:`hog_similarity`: Pearson correlation of the HOG descriptors (scikit-image) of
  the normalised absolute maps.
* :func:`roc_auc`: area under the ROC curve of a score separating two groups.
* :func:`bootstrap_ci`: a statistic of one or more samples with a percentile bootstrap
  interval over examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from debuggable.bootstrap import bootstrap_ci as _bootstrap_ci
from debuggable.errors import DebuggableError
from debuggable.explain_tests.normalize import (
    as_tensor,
    normalize_attributions,
    reduce_channels,
)


def _pair(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    ta, tb = reduce_channels(a, "abs"), reduce_channels(b, "abs")
    if ta.shape != tb.shape:
        raise DebuggableError(f"b: got maps of shape {tuple(tb.shape)}, expected the shape of a, {tuple(ta.shape)}.")
    return ta, tb.to(ta.device)


def region_mass(attr: Any, mask: Any) -> np.ndarray:
    """Share of each example's absolute attribution that lies inside ``mask``.

    Args:
        attr: (B, C, H, W) or (B, H, W) attributions.
        mask: (B, H, W) or (H, W) boolean region (True inside).

    Returns:
        (B,) values in [0, 1]; NaN where the attribution is zero everywhere.
    """
    m = reduce_channels(attr, "abs").double()
    mk = as_tensor(mask, "mask").to(m.device)
    if mk.ndim == 2 and mk.shape == m.shape[1:]:
        mk = mk.expand_as(m)
    if mk.shape != m.shape:
        raise DebuggableError(f"mask: got shape {tuple(mk.shape)}, expected (H, W) or {tuple(m.shape)} to match attr.")
    inside = (m * (mk != 0)).flatten(1).sum(1)
    total = m.flatten(1).sum(1)
    share = torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)),
                        torch.full_like(total, float("nan")))
    return share.cpu().numpy()


def rankdata(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n along the last dimension, ties sharing their average rank (float64)."""
    x = x.double()
    n = x.shape[-1]
    order = x.argsort(dim=-1, stable=True)
    sorted_x = x.gather(-1, order)
    pos = torch.arange(1, n + 1, dtype=torch.float64, device=x.device).expand_as(x)
    # Runs of equal values: each position's run starts at the last run start at or
    # before it and ends at the first run end at or after it.
    new_run = torch.ones_like(sorted_x, dtype=torch.bool)
    new_run[..., 1:] = sorted_x[..., 1:] != sorted_x[..., :-1]
    is_end = torch.ones_like(new_run)
    is_end[..., :-1] = new_run[..., 1:]
    idx = torch.arange(n, device=x.device).expand_as(x)
    start = torch.where(new_run, idx, torch.zeros_like(idx)).cummax(-1).values
    end = torch.where(is_end, idx, torch.full_like(idx, n)).flip(-1).cummin(-1).values.flip(-1)
    avg = (pos.gather(-1, start) + pos.gather(-1, end)) / 2.0
    ranks = torch.empty_like(avg)
    ranks.scatter_(-1, order, avg)
    return ranks


def _pearson_rows(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    r = (a * b).sum(1) / torch.where(den > 0, den, torch.ones_like(den))
    r = torch.where(den > 0, r.clamp(-1, 1), torch.full_like(r, float("nan")))
    return r.cpu().numpy()


def pearson(a: Any, b: Any) -> np.ndarray:
    """Per-example Pearson correlation of two batches of flattened arrays, (B,); NaN if either is constant."""
    ta, tb = as_tensor(a, "a"), as_tensor(b, "b")
    if ta.shape != tb.shape or ta.ndim < 2:
        raise DebuggableError(f"b: got shape {tuple(tb.shape)}, expected the shape of a, {tuple(ta.shape)} (batch first).")
    return _pearson_rows(ta.flatten(1), tb.flatten(1).to(ta.device))


def spearman_abs(a: Any, b: Any) -> np.ndarray:
    """Per-example Spearman rank correlation of |a| and |b| (channels summed), (B,) in [-1, 1]."""
    ta, tb = _pair(a, b)
    return _pearson_rows(rankdata(ta.flatten(1)), rankdata(tb.flatten(1)))


def spearman(a: Any, b: Any) -> np.ndarray:
    """Per-example Spearman rank correlation of the signed maps (channels summed), (B,) in [-1, 1]."""
    ta, tb = reduce_channels(a, "signed"), reduce_channels(b, "signed")
    if ta.shape != tb.shape:
        raise DebuggableError(f"b: got maps of shape {tuple(tb.shape)}, expected the shape of a, {tuple(ta.shape)}.")
    return _pearson_rows(rankdata(ta.flatten(1)), rankdata(tb.flatten(1).to(ta.device)))


def _win_size(h: int, w: int) -> int:
    k = min(7, h, w)
    return k if k % 2 == 1 else k - 1


def ssim(a: Any, b: Any, *, percentile: float = 99.0) -> np.ndarray:
    """Per-example SSIM of the normalised absolute maps (scikit-image, data range 1,
    7x7 uniform window or the largest odd window that fits), (B,) in [-1, 1]."""
    from skimage.metrics import structural_similarity

    ta, tb = _pair(a, b)
    if min(ta.shape[-2:]) < 3:
        raise DebuggableError(f"a: maps of {tuple(ta.shape[-2:])} pixels are too small for SSIM; expected at least 3x3.")
    na = normalize_attributions(ta, "abs", percentile=percentile).cpu().numpy().astype(np.float64)
    nb = normalize_attributions(tb, "abs", percentile=percentile).cpu().numpy().astype(np.float64)
    win = _win_size(*na.shape[-2:])
    return np.asarray([structural_similarity(x, y, data_range=1.0, win_size=win) for x, y in zip(na, nb)])


def hog_features(maps: Any, *, pixels_per_cell: int | None = None, percentile: float = 99.0) -> np.ndarray:
    """HOG descriptors (scikit-image; 9 orientations, 2x2-cell blocks, L2-Hys) of the
    normalised absolute maps, (B, F). ``pixels_per_cell`` defaults to a quarter of the
    shorter side (at least 2)."""
    from skimage.feature import hog

    m = normalize_attributions(reduce_channels(maps, "abs"), "abs", percentile=percentile).cpu().numpy()
    h, w = m.shape[-2:]
    ppc = pixels_per_cell or max(2, min(h, w) // 4)
    if min(h, w) < 2 * ppc:
        raise DebuggableError(f"pixels_per_cell: {ppc} is too large for {h}x{w} maps; expected at most {min(h, w) // 2}.")
    return np.stack([hog(x.astype(np.float64), orientations=9, pixels_per_cell=(ppc, ppc), cells_per_block=(2, 2),
                         block_norm="L2-Hys", feature_vector=True) for x in m])


def hog_similarity(a: Any, b: Any, *, pixels_per_cell: int | None = None) -> np.ndarray:
    """Per-example Pearson correlation of the HOG descriptors of a and b, (B,) in [-1, 1]."""
    ta, tb = _pair(a, b)
    fa = hog_features(ta, pixels_per_cell=pixels_per_cell)
    fb = hog_features(tb, pixels_per_cell=pixels_per_cell)
    return _pearson_rows(torch.from_numpy(fa), torch.from_numpy(fb))


SIMILARITIES: dict[str, Callable[[Any, Any], np.ndarray]] = {
    "spearman": spearman,
    "spearman_abs": spearman_abs,
    "ssim": ssim,
    "hog": hog_similarity,
}


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: the probability that a random positive (label 1) scores
    higher than a random negative, ties counting one half (Mann-Whitney U / (n1 n0)).

    Raises:
        DebuggableError: when either group is empty or the lengths differ.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise DebuggableError(f"labels: got {y.size} labels for {s.size} scores, expected one per score.")
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise DebuggableError(f"labels: got {n1} positives and {n0} negatives, expected at least one of each.")
    ranks = rankdata(torch.from_numpy(s)[None])[0].numpy()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def bootstrap_ci(
    statistic: Callable[..., float],
    samples: Sequence[Any],
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    paired: bool = False,
) -> tuple[float, float, float]:
    """A statistic and its percentile bootstrap interval, resampling examples.

    :func:`debuggable.bootstrap.bootstrap_ci`, with :func:`safe_auc` of paired
    (scores, labels) vectorised over replicates.

    Args:
        statistic: ``statistic(*samples) -> float``.
        samples: one or more arrays whose first axis indexes examples. Non-finite
            entries of 1-d samples are dropped first (for ``paired``, the examples
            where any sample is non-finite).
        n_boot: bootstrap replicates, >= 1 (0 gives no interval: NaN bounds).
        ci: interval coverage in (0, 1).
        seed: seeds the resampling.
        paired: resample the same example indices in every sample (equal lengths);
            otherwise each sample is resampled on its own.

    Returns:
        ``(value, low, high)``: the statistic on the data and the interval's ends;
        all NaN when a sample is empty.
    """
    vectorized = _auc_replicates if statistic is safe_auc and paired and len(samples) == 2 else None
    return _bootstrap_ci(statistic, samples, n_boot=n_boot, ci=ci, seed=seed, paired=paired, vectorized=vectorized)


def _auc_replicates(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return _auc_rows(scores.astype(np.float64), labels.astype(bool))


def _auc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of every row of (R, n) scores and labels; NaN for rows with one group."""
    ranks = rankdata(torch.from_numpy(scores)).numpy()
    n1 = labels.sum(1).astype(np.float64)
    n0 = labels.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * labels).sum(1) - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def safe_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """:func:`roc_auc`, or NaN when a resample holds only one group (for bootstraps)."""
    y = np.asarray(labels).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    return roc_auc(scores, y)
