"""Positional cross-matching of detections against reference positions.

Two rules are supported (pixel coordinates, 0-based, any consistent units):

* **strict** (``one_to_one=True``): every candidate pair closer than ``radius`` is
  considered, nearest pairs first; a detection and a reference are each used at
  most once. Unused detections are FP, unused references FN.
* **paper rule** (``one_to_one=False``, He et al. 2026 §4): a detection with any
  reference within ``radius`` is a TP (it is paired with its nearest reference);
  several detections may share a reference. References that no detection claimed
  as its nearest are FN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["MatchResult", "match_points", "prf"]


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts; 0.0 where a ratio is undefined."""
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


@dataclass(frozen=True)
class MatchResult:
    """Outcome of :func:`match_points`.

    ``det_index[k]`` is matched to ``ref_index[k]`` at ``distances[k]`` (same units
    as the input coordinates). Under the paper rule a reference index may repeat.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    det_index: np.ndarray = field(repr=False)
    ref_index: np.ndarray = field(repr=False)
    distances: np.ndarray = field(repr=False)
    n_det: int = 0
    n_ref: int = 0

    @property
    def det_matched(self) -> np.ndarray:
        """Bool [n_det]: True for detections counted as TP."""
        out = np.zeros(self.n_det, dtype=bool)
        out[self.det_index] = True
        return out

    @property
    def ref_matched(self) -> np.ndarray:
        """Bool [n_ref]: True for references that were recovered."""
        out = np.zeros(self.n_ref, dtype=bool)
        out[self.ref_index] = True
        return out


def _as_xy(points: np.ndarray | list, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite coordinates")
    return arr


def _result(
    det_i: np.ndarray, ref_i: np.ndarray, dist: np.ndarray, n_det: int, n_ref: int
) -> MatchResult:
    tp = int(det_i.size)
    fp = n_det - tp
    fn = n_ref - int(np.unique(ref_i).size)
    precision, recall, f1 = prf(tp, fp, fn)
    return MatchResult(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        det_index=det_i.astype(np.intp),
        ref_index=ref_i.astype(np.intp),
        distances=dist.astype(float),
        n_det=n_det,
        n_ref=n_ref,
    )


def match_points(
    det_xy: np.ndarray,
    ref_xy: np.ndarray,
    radius: float = 3.0,
    *,
    one_to_one: bool = True,
) -> MatchResult:
    """Match detections ``det_xy`` [N, 2] to references ``ref_xy`` [M, 2] within ``radius``.

    Coordinates are (x, y) pixels; a pair matches when its Euclidean distance is
    ``<= radius``. See the module docstring for the strict and paper rules. The
    returned pairs are sorted by detection index.
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    det = _as_xy(det_xy, "det_xy")
    ref = _as_xy(ref_xy, "ref_xy")
    n_det, n_ref = len(det), len(ref)
    empty_i = np.zeros(0, dtype=np.intp)
    if n_det == 0 or n_ref == 0:
        return _result(empty_i, empty_i, np.zeros(0), n_det, n_ref)

    if not one_to_one:
        # query's bound is exclusive; nudge it so distance == radius matches like the strict rule
        bound = float(np.nextafter(radius, np.inf))
        dist, idx = cKDTree(ref).query(det, k=1, distance_upper_bound=bound)
        ok = np.isfinite(dist)
        det_i = np.flatnonzero(ok)
        return _result(det_i, idx[ok], dist[ok], n_det, n_ref)

    # strict: all candidate pairs within radius, greedily assigned nearest first
    pairs = cKDTree(det).sparse_distance_matrix(cKDTree(ref), radius, output_type="ndarray")
    if pairs.size == 0:
        return _result(empty_i, empty_i, np.zeros(0), n_det, n_ref)
    # stable ordering: distance, then detection index, then reference index
    order = np.lexsort((pairs["j"], pairs["i"], pairs["v"]))
    pi, pj, pv = pairs["i"][order], pairs["j"][order], pairs["v"][order]
    det_used = np.zeros(n_det, dtype=bool)
    ref_used = np.zeros(n_ref, dtype=bool)
    keep = np.zeros(pi.size, dtype=bool)
    # loop runs over candidate pairs only (a few per detection), not pixels
    for k in range(pi.size):
        i, j = pi[k], pj[k]
        if det_used[i] or ref_used[j]:
            continue
        det_used[i] = ref_used[j] = True
        keep[k] = True
    det_i, ref_i, dist = pi[keep], pj[keep], pv[keep]
    srt = np.argsort(det_i, kind="stable")
    return _result(det_i[srt], ref_i[srt], dist[srt], n_det, n_ref)
