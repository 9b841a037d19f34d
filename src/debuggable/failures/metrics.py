"""Barlow's failure metrics from leaf assignments (Singla et al., CVPR 2021, Sec. 3 and 5.1).

For a group of N examples of which F fail, and a leaf (any cluster) l holding n_l
examples of which f_l fail:

* base error rate  BER  = F / N
* error rate       ER_l = f_l / n_l
* error coverage   EC_l = f_l / F
* importance value IV_l = ER_l * EC_l
* average leaf error rate ALER = sum over leaves of EC_l * ER_l

Conventions for degenerate groups: with no failures (F = 0) every EC is 0, so every IV
and the ALER are 0; an empty leaf has ER 0. By Proposition 1 of the paper,
``ALER >= BER`` always holds (the EC-weighted mean of the ER is at least the
n-weighted mean), with equality when every leaf has the same error rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from debuggable.errors import DebuggableError


@dataclass(frozen=True)
class LeafMetrics:
    """Metrics of every leaf of one partition of a group.

    Attributes:
        leaves: (L,) the leaf ids, sorted (only leaves holding at least one example).
        n: (L,) examples per leaf.
        failures: (L,) failing examples per leaf.
        er: (L,) error rate f_l / n_l.
        ec: (L,) error coverage f_l / F (0 when F = 0).
        iv: (L,) importance value ER * EC.
        ber: base error rate F / N of the whole group.
        aler: sum of EC * ER over the leaves.
        n_total: N.
        failures_total: F.
    """

    leaves: np.ndarray
    n: np.ndarray
    failures: np.ndarray
    er: np.ndarray
    ec: np.ndarray
    iv: np.ndarray
    ber: float
    aler: float
    n_total: int
    failures_total: int

    @property
    def top(self) -> int:
        """Position (into :attr:`leaves`) of the leaf with the highest IV; ties go to
        the higher error rate, then to the larger leaf, then to the lower leaf id."""
        order = np.lexsort((self.leaves, -self.n, -self.er, -self.iv))
        return int(order[0])

    def valid(self, delta: float, tau: float) -> np.ndarray:
        """(L,) bool: leaves with ``ER >= BER + delta`` and ``EC >= tau`` (failure modes).

        A tiny tolerance (1e-12) absorbs floating-point error at the thresholds.
        """
        eps = 1e-12
        return (self.er >= self.ber + delta - eps) & (self.ec >= tau - eps) & (self.failures > 0)


def leaf_metrics(leaf_ids, failed) -> LeafMetrics:
    """BER, ALER and per-leaf size, failures, ER, EC and IV from leaf assignments.

    Args:
        leaf_ids: (N,) integer leaf (cluster) id of every example of the group.
        failed: (N,) bool (or 0/1) failure indicator, prediction != label.

    Returns:
        :class:`LeafMetrics` over the leaves that hold at least one example.

    Raises:
        DebuggableError: empty input, mismatched lengths, or a non-binary ``failed``.
    """
    leaf_ids = np.asarray(leaf_ids)
    failed = np.asarray(failed)
    if leaf_ids.ndim != 1 or failed.ndim != 1:
        raise DebuggableError(f"leaf_ids, failed: expected 1-D arrays, got shapes {leaf_ids.shape} and {failed.shape}.")
    if leaf_ids.shape[0] != failed.shape[0]:
        raise DebuggableError(
            f"leaf_ids, failed: expected the same length, got {leaf_ids.shape[0]} and {failed.shape[0]}.")
    if leaf_ids.shape[0] == 0:
        raise DebuggableError("leaf_ids: expected at least one example, got an empty array.")
    if not np.issubdtype(leaf_ids.dtype, np.integer):
        raise DebuggableError(f"leaf_ids: expected integer leaf ids, got dtype {leaf_ids.dtype}.")
    if failed.dtype != np.bool_:
        if not np.isin(failed, (0, 1)).all():
            raise DebuggableError("failed: expected a boolean (or 0/1) failure indicator, got other values.")
        failed = failed.astype(bool)
    leaves, inverse = np.unique(leaf_ids, return_inverse=True)
    n = np.bincount(inverse, minlength=leaves.size).astype(np.int64)
    f = np.bincount(inverse, weights=failed.astype(np.float64), minlength=leaves.size).round().astype(np.int64)
    n_total, f_total = int(failed.size), int(failed.sum())
    er = f / n
    ec = f / f_total if f_total > 0 else np.zeros(leaves.size)
    iv = er * ec
    return LeafMetrics(
        leaves=leaves.astype(np.int64), n=n, failures=f, er=er, ec=ec, iv=iv,
        ber=f_total / n_total, aler=float(np.sum(ec * er)), n_total=n_total, failures_total=f_total,
    )
