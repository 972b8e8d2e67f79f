"""Detection-level scoring of probability maps during training (pure numpy/scipy).

A probability map is thresholded, 8-connected components are labelled
(``scipy.ndimage.label``) and each component's probability-weighted centroid
(``scipy.ndimage.center_of_mass``) is one detection. Detections closer than
``edge`` pixels to the patch border are dropped (paper §4), then matched to the
kept catalog points of the patch with :func:`atd_dl.evaluate.matching.match_points`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from atd_dl.evaluate.matching import match_points, prf

__all__ = ["centroids_from_prob", "DetectionCounter", "ThresholdScan", "threshold_grid"]

_EIGHT = np.ones((3, 3), dtype=bool)


def centroids_from_prob(prob: np.ndarray, threshold: float, *, edge: float = 3.0) -> np.ndarray:
    """(x, y) float [N, 2] centroids of the components of ``prob >= threshold``.

    ``prob`` is [H, W]; pixel centres are integers (0-based). Components whose
    centroid lies within ``edge`` px of the border are dropped.
    """
    binary = prob >= threshold
    labels, n = ndimage.label(binary, structure=_EIGHT)
    if n == 0:
        return np.zeros((0, 2))
    yx = np.asarray(ndimage.center_of_mass(prob, labels, np.arange(1, n + 1)), dtype=float)
    xy = yx[:, ::-1]
    if edge > 0:
        h, w = prob.shape
        keep = (
            (xy[:, 0] >= edge)
            & (xy[:, 1] >= edge)
            & (xy[:, 0] <= w - 1 - edge)
            & (xy[:, 1] <= h - 1 - edge)
        )
        xy = xy[keep]
    return xy


@dataclass
class DetectionCounter:
    """Running TP / FP / FN totals over many patches at one threshold."""

    threshold: float = 0.5
    radius: float = 3.0
    edge: float = 3.0
    one_to_one: bool = True
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def update(self, prob: np.ndarray, ref_xy: np.ndarray) -> None:
        """Score one probability map [H, W] against reference (x, y) points [M, 2]."""
        det = centroids_from_prob(prob, self.threshold, edge=self.edge)
        res = match_points(
            det,
            np.asarray(ref_xy, dtype=float).reshape(-1, 2),
            self.radius,
            one_to_one=self.one_to_one,
        )
        self.tp += res.tp
        self.fp += res.fp
        self.fn += res.fn

    def reset(self) -> None:
        self.tp = self.fp = self.fn = 0

    @property
    def scores(self) -> dict[str, float]:
        """precision, recall, f1 and the counts."""
        p, r, f1 = prf(self.tp, self.fp, self.fn)
        return {"precision": p, "recall": r, "f1": f1, "tp": self.tp, "fp": self.fp, "fn": self.fn}


def threshold_grid(start: float = 0.05, stop: float = 0.95, step: float = 0.05) -> list[float]:
    """Inclusive, rounded grid of probability thresholds."""
    n = int(round((stop - start) / step)) + 1
    return [round(start + i * step, 6) for i in range(n)]


@dataclass
class ThresholdScan:
    """Detection counts at many thresholds at once; pick the one with the best F1."""

    thresholds: Sequence[float]
    radius: float = 3.0
    edge: float = 3.0
    one_to_one: bool = True
    counters: list[DetectionCounter] = field(init=False)

    def __post_init__(self) -> None:
        if not len(self.thresholds):
            raise ValueError("empty threshold grid")
        self.counters = [
            DetectionCounter(float(t), self.radius, self.edge, self.one_to_one)
            for t in self.thresholds
        ]

    def update(self, probs: Iterable[np.ndarray], refs: Iterable[np.ndarray]) -> None:
        """Add patches: ``probs`` [H, W] maps and their reference points."""
        for prob, ref in zip(probs, refs):
            for c in self.counters:
                c.update(prob, ref)

    def table(self) -> list[dict[str, float]]:
        """One row per threshold: threshold, precision, recall, f1, tp, fp, fn."""
        return [{"threshold": c.threshold, **c.scores} for c in self.counters]

    def best(self) -> dict[str, float]:
        """Row with the highest F1 (ties → the lower threshold, i.e. higher recall)."""
        rows = self.table()
        return max(rows, key=lambda r: (r["f1"], -r["threshold"]))
