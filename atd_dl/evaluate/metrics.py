"""Detection metrics: the ATD-DL paper protocol and a strict one-to-one variant.

Pixel convention: 0-based, pixel centre = integer, ``x`` = column, ``y`` = row.

Reference sets (He et al. 2026, §4):

* **A** = every reference source projected onto the frame (catalog or truth);
* **G** = the members of A with SNR >= ``snr_min`` (default 2; the 3×3-aperture SNR for
  a catalog, the true SNR for a simulation) and, optionally, of the wanted kind.

Candidates closer than ``edge`` pixels to the image border are dropped first. Then:

* **paper rule**: a candidate with any member of A within ``radius`` is a TP, else an
  FP. Each candidate also looks up its nearest member of G within ``radius``; members of
  G never chosen that way are FN. ``recall = TP / (TP + FN)``, exactly as in the paper,
  so a TP matched to a faint (non-G) catalog source still counts in the numerator.
* **strict rule**: candidates and members of A are paired one-to-one, nearest pairs
  first (:func:`~atd_dl.evaluate.matching.match_points`). Paired candidates are TP,
  the others FP; members of G left unpaired are FN and
  ``recall = recovered G / |G|`` (a true completeness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from atd_dl.evaluate.matching import match_points, prf

__all__ = [
    "FAINT_SNR",
    "SNR_BIN_EDGES",
    "AstrometryResult",
    "Counts",
    "FrameEvaluation",
    "GrowthResult",
    "OperatingPoint",
    "PooledMetrics",
    "align_precision",
    "astrometric_rms",
    "astrometry_from_residuals",
    "edge_keep",
    "evaluate_frame",
    "growth_and_false_positive",
    "interpolate_at_precision",
    "pool_frames",
    "recall_by_snr",
    "snr_bin_labels",
    "top_k_mean",
]

#: Recall bins of width 1 in SNR: [2,3), [3,4), ..., [9,10), [10, inf) (paper Fig. 13).
SNR_BIN_EDGES: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, np.inf)
#: The paper's faint range: 2 < SNR < 5 (open interval).
FAINT_SNR: tuple[float, float] = (2.0, 5.0)
RULES = ("paper", "strict")


def snr_bin_labels(edges: Sequence[float] = SNR_BIN_EDGES) -> list[str]:
    """Human labels for SNR bins: ``"2-3"``, ..., ``"9-10"``, ``">10"``."""
    labels = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        labels.append(f">{lo:g}" if not np.isfinite(hi) else f"{lo:g}-{hi:g}")
    return labels


@dataclass(frozen=True)
class Counts:
    """TP/FP/FN of one rule (``"paper"`` or ``"strict"``) on one frame or pooled.

    ``tp``/``fp`` count candidates; ``n_ref`` = |G|, ``recovered`` = members of G found,
    ``fn = n_ref - recovered``.
    """

    rule: str
    tp: int
    fp: int
    fn: int
    n_ref: int
    recovered: int

    @property
    def n_det(self) -> int:
        return self.tp + self.fp

    @property
    def precision(self) -> float:
        return prf(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        if self.rule == "paper":
            return prf(self.tp, self.fp, self.fn)[1]
        return self.recovered / self.n_ref if self.n_ref > 0 else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def __add__(self, other: Counts) -> Counts:
        if other.rule != self.rule:
            raise ValueError(f"cannot add {self.rule!r} and {other.rule!r} counts")
        return Counts(
            self.rule,
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.n_ref + other.n_ref,
            self.recovered + other.recovered,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out.update(precision=self.precision, recall=self.recall, f1=self.f1)
        return out


@dataclass(frozen=True)
class AstrometryResult:
    """Centroid residuals (detection − reference, px) after removing the mean offset.

    ``rms_total = sqrt(rms_x² + rms_y²)``; NaN when fewer than 2 pairs.
    """

    n: int
    mean_dx: float
    mean_dy: float
    rms_x: float
    rms_y: float
    rms_total: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GrowthResult:
    """2MASS-reprocessing metrics (Liu et al. 2025, Eqs. 1–2).

    ``growth_rate = n_new / n_base`` (new confirmed sources per base-catalog source);
    ``fp_rate = n_fp / n_det`` (detections matching neither catalog).
    """

    n_det: int
    n_base: int
    n_base_matched: int
    n_new: int
    n_fp: int
    growth_rate: float
    fp_rate: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FrameEvaluation:
    """Everything measured on one frame at one operating point.

    Detection arrays refer to the candidates kept after the edge cut
    (``det_index`` = their rows in the input). ``g_*`` arrays refer to the members of G.
    Residual arrays hold the strict 2-px astrometric pairs against A.
    """

    name: str
    n_det_input: int
    paper: Counts
    strict: Counts
    det_index: np.ndarray = field(repr=False)
    det_tp_paper: np.ndarray = field(repr=False)
    det_tp_strict: np.ndarray = field(repr=False)
    det_ref: np.ndarray = field(repr=False)  # nearest A index within radius, -1 if none
    det_dist: np.ndarray = field(repr=False)  # distance to it, NaN if none
    g_index: np.ndarray = field(repr=False)  # rows of A that form G
    g_snr: np.ndarray = field(repr=False)
    g_found_paper: np.ndarray = field(repr=False)
    g_found_strict: np.ndarray = field(repr=False)
    res_dx: np.ndarray = field(repr=False)
    res_dy: np.ndarray = field(repr=False)
    res_snr: np.ndarray = field(repr=False)

    def counts(self, rule: str) -> Counts:
        return self.paper if rule == "paper" else self.strict

    def g_found(self, rule: str) -> np.ndarray:
        return self.g_found_paper if rule == "paper" else self.g_found_strict


def edge_keep(xy: np.ndarray, shape: tuple[int, int] | None, edge: float) -> np.ndarray:
    """Bool mask of points at least ``edge`` px inside the frame ``shape`` = (ny, nx).

    A point is kept when ``edge <= x <= nx - 1 - edge`` and likewise for y; with
    ``edge = 3`` the outer three pixel rows/columns are dropped.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if shape is None or edge <= 0:
        return np.ones(len(xy), dtype=bool)
    ny, nx = shape
    x, y = xy[:, 0], xy[:, 1]
    return (x >= edge) & (x <= nx - 1 - edge) & (y >= edge) & (y <= ny - 1 - edge)


def _xy(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {arr.shape}")
    return arr


def evaluate_frame(
    det_xy: np.ndarray,
    ref_xy: np.ndarray,
    ref_snr: np.ndarray | None = None,
    *,
    shape: tuple[int, int] | None = None,
    radius: float = 3.0,
    edge: float = 3.0,
    snr_min: float = 2.0,
    ref_target: np.ndarray | None = None,
    astrometry_radius: float = 2.0,
    name: str = "",
) -> FrameEvaluation:
    """Score candidates ``det_xy`` [N, 2] against reference set A = ``ref_xy`` [M, 2].

    ``ref_snr`` [M] gives the SNR that defines G (``>= snr_min``; all of A when None);
    ``ref_target`` [M] bool further restricts G (e.g. stars only, not trails).
    ``shape`` (ny, nx) enables the ``edge``-pixel border cut on candidates.
    Both the paper and the strict rule are evaluated (see the module docstring).
    """
    det_all = _xy(det_xy, "det_xy")
    ref = _xy(ref_xy, "ref_xy")
    n_ref = len(ref)
    snr = np.full(n_ref, np.inf) if ref_snr is None else np.asarray(ref_snr, dtype=float)
    if snr.shape != (n_ref,):
        raise ValueError(f"ref_snr must have length {n_ref}, got shape {snr.shape}")
    target = np.ones(n_ref, dtype=bool) if ref_target is None else np.asarray(ref_target, bool)
    if target.shape != (n_ref,):
        raise ValueError(f"ref_target must have length {n_ref}, got shape {target.shape}")

    keep = edge_keep(det_all, shape, edge)
    det_index = np.flatnonzero(keep)
    det = det_all[keep]
    n_det = len(det)
    in_g = target & (np.nan_to_num(snr, nan=-np.inf) >= snr_min)
    g_index = np.flatnonzero(in_g)
    n_g = g_index.size

    # paper rule: nearest of A -> TP/FP; nearest of G (searched separately) -> found G
    pa = match_points(det, ref, radius, one_to_one=False)
    det_tp_paper = pa.det_matched
    det_ref = np.full(n_det, -1, dtype=np.intp)
    det_ref[pa.det_index] = pa.ref_index
    det_dist = np.full(n_det, np.nan)
    det_dist[pa.det_index] = pa.distances
    pg = match_points(det, ref[g_index], radius, one_to_one=False)
    g_found_paper = pg.ref_matched
    tp = int(det_tp_paper.sum())
    paper = Counts(
        "paper", tp, n_det - tp, n_g - int(g_found_paper.sum()), n_g, int(g_found_paper.sum())
    )

    # strict rule: one-to-one against A
    st = match_points(det, ref, radius, one_to_one=True)
    det_tp_strict = st.det_matched
    g_found_strict = st.ref_matched[g_index]
    rec = int(g_found_strict.sum())
    strict = Counts("strict", st.tp, st.fp, n_g - rec, n_g, rec)

    # astrometry: strict pairs within the (smaller) astrometric radius
    am = match_points(det, ref, astrometry_radius, one_to_one=True)
    d = det[am.det_index] - ref[am.ref_index]

    return FrameEvaluation(
        name=name,
        n_det_input=len(det_all),
        paper=paper,
        strict=strict,
        det_index=det_index,
        det_tp_paper=det_tp_paper,
        det_tp_strict=det_tp_strict,
        det_ref=det_ref,
        det_dist=det_dist,
        g_index=g_index,
        g_snr=snr[g_index],
        g_found_paper=g_found_paper,
        g_found_strict=g_found_strict,
        res_dx=d[:, 0].copy(),
        res_dy=d[:, 1].copy(),
        res_snr=snr[am.ref_index],
    )


def recall_by_snr(
    snr: np.ndarray, found: np.ndarray, edges: Sequence[float] = SNR_BIN_EDGES
) -> dict[str, dict[str, float | int]]:
    """Recall of reference sources per SNR bin ``[edges[i], edges[i+1])``.

    Returns ``{label: {"n": members, "found": recovered, "recall": found/n or NaN}}``.
    """
    snr = np.asarray(snr, dtype=float)
    found = np.asarray(found, dtype=bool)
    out: dict[str, dict[str, float | int]] = {}
    for label, lo, hi in zip(snr_bin_labels(edges), edges[:-1], edges[1:]):
        sel = (snr >= lo) & (snr < hi)
        n = int(sel.sum())
        k = int(found[sel].sum())
        out[label] = {"n": n, "found": k, "recall": k / n if n else float("nan")}
    return out


def _range_recall(snr: np.ndarray, found: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    sel = (snr > lo) & (snr < hi)
    return int(found[sel].sum()), int(sel.sum())


def astrometry_from_residuals(dx: np.ndarray, dy: np.ndarray) -> AstrometryResult:
    """RMS of residuals per axis and total after subtracting the mean offset per axis."""
    dx = np.asarray(dx, dtype=float)
    dy = np.asarray(dy, dtype=float)
    n = int(dx.size)
    if n < 2:
        nan = float("nan")
        m = (float(dx.mean()), float(dy.mean())) if n else (nan, nan)
        return AstrometryResult(n, m[0], m[1], nan, nan, nan)
    mx, my = float(dx.mean()), float(dy.mean())
    rx = float(np.sqrt(np.mean((dx - mx) ** 2)))
    ry = float(np.sqrt(np.mean((dy - my) ** 2)))
    return AstrometryResult(n, mx, my, rx, ry, float(np.hypot(rx, ry)))


def astrometric_rms(
    det_xy: np.ndarray,
    ref_xy: np.ndarray,
    radius: float = 2.0,
    *,
    ref_snr: np.ndarray | None = None,
    snr_min: float | None = None,
) -> AstrometryResult:
    """Match one-to-one within ``radius`` px (paper: 2 px) and measure the centroid RMS.

    With ``ref_snr`` and ``snr_min`` only pairs whose reference has SNR > ``snr_min``
    count (the paper's bright-star check uses SNR > 10).
    """
    det = _xy(det_xy, "det_xy")
    ref = _xy(ref_xy, "ref_xy")
    m = match_points(det, ref, radius, one_to_one=True)
    d = det[m.det_index] - ref[m.ref_index]
    if ref_snr is not None and snr_min is not None:
        sel = np.asarray(ref_snr, dtype=float)[m.ref_index] > snr_min
        d = d[sel]
    return astrometry_from_residuals(d[:, 0], d[:, 1])


def growth_and_false_positive(
    det_xy: np.ndarray,
    base_xy: np.ndarray,
    confirm_xy: np.ndarray,
    radius: float = 3.0,
) -> GrowthResult:
    """Growth rate and false-positive rate of a detection list (2MASS paper, Eqs. 1–2).

    ``base_xy`` is the catalog being extended (2MASS PSC there, the Gaia-like input
    catalog here); ``confirm_xy`` a deeper confirming list (VHS there, the simulation
    truth here). A detection with a base source within ``radius`` is known; otherwise a
    one-to-one match to the confirming list makes it *new*; a detection matching
    neither is a false positive.
    """
    det = _xy(det_xy, "det_xy")
    base = _xy(base_xy, "base_xy")
    conf = _xy(confirm_xy, "confirm_xy")
    mb = match_points(det, base, radius, one_to_one=False)
    unknown = np.flatnonzero(~mb.det_matched)
    mc = match_points(det[unknown], conf, radius, one_to_one=True)
    n_new = mc.tp
    n_fp = unknown.size - n_new
    n_det = len(det)
    n_base = len(base)
    return GrowthResult(
        n_det=n_det,
        n_base=n_base,
        n_base_matched=int(mb.ref_matched.sum()),
        n_new=int(n_new),
        n_fp=int(n_fp),
        growth_rate=n_new / n_base if n_base else float("nan"),
        fp_rate=n_fp / n_det if n_det else 0.0,
    )


@dataclass
class PooledMetrics:
    """Metrics summed over frames at one operating point (both rules side by side)."""

    paper: Counts
    strict: Counts
    per_frame: list[dict[str, Any]]
    snr_recall: dict[str, dict[str, dict[str, float | int]]]  # rule -> bin -> stats
    faint: dict[str, dict[str, float | int]]  # rule -> {"n", "found", "recall"}
    astrometry: AstrometryResult
    astrometry_bright: AstrometryResult  # reference SNR > 10 only
    residuals: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def counts(self, rule: str) -> Counts:
        return self.paper if rule == "paper" else self.strict

    def to_dict(self, *, residual_sample: int = 0, seed: int = 0) -> dict[str, Any]:
        """JSON-ready dict; with ``residual_sample > 0`` includes up to that many residuals."""
        out: dict[str, Any] = {
            "paper": self.paper.to_dict(),
            "strict": self.strict.to_dict(),
            "faint": self.faint,
            "snr_recall": self.snr_recall,
            "astrometry": self.astrometry.to_dict(),
            "astrometry_bright": self.astrometry_bright.to_dict(),
            "per_frame": self.per_frame,
        }
        if residual_sample > 0 and self.residuals:
            n = self.residuals["dx"].size
            idx = np.arange(n)
            if n > residual_sample:
                idx = np.sort(np.random.default_rng(seed).choice(n, residual_sample, replace=False))
            out["residuals"] = {k: np.round(v[idx], 4).tolist() for k, v in self.residuals.items()}
        return out


def pool_frames(
    frames: Sequence[FrameEvaluation],
    *,
    edges: Sequence[float] = SNR_BIN_EDGES,
    faint: tuple[float, float] = FAINT_SNR,
    bright_snr: float = 10.0,
) -> PooledMetrics:
    """Sum counts over ``frames`` and compute recall per SNR bin, faint recall and astrometry."""
    paper = Counts("paper", 0, 0, 0, 0, 0)
    strict = Counts("strict", 0, 0, 0, 0, 0)
    per_frame = []
    for fe in frames:
        paper = paper + fe.paper
        strict = strict + fe.strict
        row: dict[str, Any] = {"frame": fe.name, "n_det": fe.paper.n_det, "n_ref": fe.paper.n_ref}
        for rule in RULES:
            c = fe.counts(rule)
            row.update(
                {
                    f"{rule}_tp": c.tp,
                    f"{rule}_fp": c.fp,
                    f"{rule}_fn": c.fn,
                    f"{rule}_precision": c.precision,
                    f"{rule}_recall": c.recall,
                    f"{rule}_f1": c.f1,
                }
            )
        per_frame.append(row)

    def cat(attr: str) -> np.ndarray:
        parts = [getattr(fe, attr) for fe in frames]
        return np.concatenate(parts) if parts else np.zeros(0)

    g_snr = cat("g_snr")
    snr_recall = {}
    faint_out = {}
    for rule in RULES:
        found = cat(f"g_found_{rule}").astype(bool)
        snr_recall[rule] = recall_by_snr(g_snr, found, edges)
        k, n = _range_recall(g_snr, found, *faint)
        faint_out[rule] = {"n": n, "found": k, "recall": k / n if n else float("nan")}
    dx, dy, rs = cat("res_dx"), cat("res_dy"), cat("res_snr")
    bright = rs > bright_snr
    return PooledMetrics(
        paper=paper,
        strict=strict,
        per_frame=per_frame,
        snr_recall=snr_recall,
        faint=faint_out,
        astrometry=astrometry_from_residuals(dx, dy),
        astrometry_bright=astrometry_from_residuals(dx[bright], dy[bright]),
        residuals={"dx": dx, "dy": dy, "snr": rs},
    )


# --------------------------------------------------------------------------- sweeps


@dataclass(frozen=True)
class OperatingPoint:
    """The sweep point chosen for a target precision (index into the sweep)."""

    index: int
    value: float
    precision: float
    recall: float
    faint_recall: float
    target: float
    rule: str
    interpolated_recall: float | None = None
    interpolated_faint_recall: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def align_precision(
    precisions: Sequence[float], target: float = 0.90, *, mode: str = "closest"
) -> int:
    """Index of the sweep point matched to ``target`` precision.

    ``mode="closest"`` (default, as the paper's Table 5 where aligned precisions fall on
    both sides of 90 %): the point whose precision is nearest to the target, ties going
    to the higher precision. ``mode="at_least"``: the lowest precision that is still
    >= target (i.e. the most complete point meeting it); if none reaches it, the point
    with the highest precision.
    """
    p = np.asarray(precisions, dtype=float)
    if p.size == 0:
        raise ValueError("empty sweep")
    if mode == "closest":
        # lexsort: primary |p - target|, secondary -p (prefer above the target)
        order = np.lexsort((-p, np.abs(p - target)))
        return int(order[0])
    if mode == "at_least":
        ok = np.flatnonzero(p >= target)
        if ok.size == 0:
            return int(np.argmax(p))
        return int(ok[np.argmin(p[ok])])
    raise ValueError(f"unknown mode {mode!r}; use 'closest' or 'at_least'")


def interpolate_at_precision(
    precisions: Sequence[float], values: Sequence[float], target: float = 0.90
) -> float | None:
    """Linearly interpolate ``values`` (e.g. recall) at ``target`` precision.

    Uses the two sweep points bracketing the target that are adjacent in precision
    order; None when the sweep does not bracket the target.
    """
    p = np.asarray(precisions, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(p, kind="stable")
    p, v = p[order], v[order]
    if p.size == 0 or target < p[0] or target > p[-1]:
        return None
    return float(np.interp(target, p, v))


def top_k_mean(
    precisions: Sequence[float], recalls: Sequence[float], f1s: Sequence[float], k: int = 3
) -> dict[str, Any]:
    """Mean and standard deviation of P, R, F1 over the ``k`` sweep points of highest F1."""
    f = np.asarray(f1s, dtype=float)
    idx = np.argsort(-f, kind="stable")[:k]
    out: dict[str, Any] = {"indices": idx.tolist(), "k": int(idx.size)}
    for key, arr in (("precision", precisions), ("recall", recalls), ("f1", f1s)):
        a = np.asarray(arr, dtype=float)[idx]
        out[key] = float(a.mean()) if a.size else float("nan")
        out[f"{key}_std"] = float(a.std()) if a.size else float("nan")
    return out
