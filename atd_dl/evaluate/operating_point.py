"""One operating point for all conditions: threshold sweeps on validation frames that span
the generator, with the false-alarm rate on source-free frames as a constraint.

:func:`noise_frame` makes source-free frames (Gaussian or Poisson noise, with a bias
level); :func:`sweep_thresholds` runs a detector once per frame (the probability map) and the
post-processing at every threshold; :func:`choose_threshold` picks the threshold with the
best pooled strict F1 among those whose false-alarm rate on the noise frames stays below
a limit (detections per 10^5 px). Used by ``benchmarks/choose_operating_point.py`` to set
the shipped model's ``thresholds.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits

from atd_dl.evaluate.matching import prf
from atd_dl.evaluate.metrics import evaluate_frame
from atd_dl.evaluate.references import References
from atd_dl.io.fits_io import Frame

__all__ = [
    "noise_frame",
    "array_frame",
    "SweepRow",
    "ScoredMaps",
    "score_maps",
    "score_rule",
    "fixed_threshold",
    "sweep_thresholds",
    "choose_threshold",
]


def array_frame(
    data: np.ndarray,
    *,
    gain: float | None = None,
    saturation: float | None = None,
    header: fits.Header | None = None,
) -> Frame:
    """A :class:`~atd_dl.io.fits_io.Frame` from an in-memory ADU array (no file, no WCS)."""
    data = np.asarray(data, dtype=np.float32)
    hdr = fits.Header() if header is None else header.copy()
    if gain is not None:
        hdr["GAIN"] = gain
    finite = np.isfinite(data)
    sat = finite & (data >= saturation) if saturation is not None else np.zeros(data.shape, bool)
    return Frame(data, ~finite | sat, sat, hdr, None, None, 0, saturation)


def noise_frame(
    shape: tuple[int, int],
    kind: str,
    level: float,
    rng: np.random.Generator,
    *,
    bias: float = 100.0,
    corr_px: float = 1.0,
) -> np.ndarray:
    """Source-free frame (ADU, float32): ``gaussian`` with sigma ``level``, ``poisson`` with
    mean ``level`` counts, or ``correlated``: white Gaussian noise smoothed by a Gaussian of
    ``corr_px`` px (as in resampled, drizzled or reprojected mosaics) rescaled to sigma
    ``level``; plus ``bias``, quantised to integers like a raw frame."""
    if kind == "gaussian":
        data = rng.normal(0.0, level, shape)
    elif kind == "poisson":
        data = rng.poisson(level, shape).astype(np.float64)
    elif kind == "correlated":
        from scipy.ndimage import gaussian_filter

        data = gaussian_filter(rng.normal(0.0, 1.0, shape), corr_px)
        data *= level / data.std()
    else:
        raise ValueError(f"kind must be 'gaussian', 'poisson' or 'correlated', got {kind!r}")
    return np.round(data + bias).astype(np.float32)


@dataclass
class SweepRow:
    """Pooled results at one threshold (strict one-to-one rule)."""

    threshold: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    mean_frame_f1: float
    false_per_1e5px: float  # detections on the source-free frames per 10^5 px
    min_frame_precision: float = 1.0  # the lowest strict precision of a frame (>= min_stars)
    worst_false_per_1e5px: float = 0.0  # the highest rate of one source-free frame


def _prepared_maps(detector: Any, frames: Sequence[Frame]) -> list[tuple[Any, np.ndarray]]:
    out = []
    for fr in frames:
        prepared = detector.prepare(fr)
        out.append((prepared, detector.infer(prepared)))
    return out


#: how a frame's threshold is picked from its prepared frame and probability map
ThresholdPick = Callable[[Any, np.ndarray], float]


def _positions(detector: Any, prepared: Any, prob: np.ndarray, threshold: float) -> np.ndarray:
    cat = detector.extract(prepared, prob, threshold=float(threshold)).catalog
    return np.column_stack([np.asarray(cat["x"], float), np.asarray(cat["y"], float)])


@dataclass
class ScoredMaps:
    """Validation and source-free frames with their probability maps, computed once."""

    maps: list[tuple[Any, np.ndarray]]
    references: Sequence[References]
    noise_maps: list[tuple[Any, np.ndarray]]
    noise_px: float


def score_maps(
    detector: Any, frames: Sequence[Frame], references: Sequence[References], noise: Sequence[Frame]
) -> ScoredMaps:
    """Run the network once on every validation and source-free frame."""
    return ScoredMaps(
        _prepared_maps(detector, frames),
        references,
        _prepared_maps(detector, noise),
        float(sum(f.data.size for f in noise)) or 1.0,
    )


def score_rule(
    detector: Any,
    scored: ScoredMaps,
    pick: ThresholdPick,
    label: float,
    *,
    radius: float = 3.0,
    edge: float = 3.0,
    snr_min: float = 2.0,
    min_stars: int = 20,
) -> SweepRow:
    """Pooled strict P/R/F1, mean per-frame F1 (frames with >= ``min_stars`` reference
    stars) and false detections per 10^5 px on the source-free frames, each frame cut at
    ``pick(prepared, prob)``; ``label`` goes into ``SweepRow.threshold``. ``label`` is also the
    detector's noise-safe threshold while scoring (``detector.threshold``: the threshold at or
    above which the photon-counting SNR floor applies), as it would be once shipped."""
    shipped = detector.threshold
    detector.threshold = float(label)
    try:
        return _score_rule(detector, scored, pick, label, radius, edge, snr_min, min_stars)
    finally:
        detector.threshold = shipped


def _score_rule(
    detector: Any,
    scored: ScoredMaps,
    pick: ThresholdPick,
    label: float,
    radius: float,
    edge: float,
    snr_min: float,
    min_stars: int,
) -> SweepRow:
    tp = fp = fn = 0
    f1s, precisions = [], []
    for (prep, prob), ref in zip(scored.maps, scored.references, strict=True):
        n_g = int(np.sum(ref.target & (np.nan_to_num(ref.snr, nan=-1.0) >= snr_min)))
        det = _positions(detector, prep, prob, pick(prep, prob))
        ev = evaluate_frame(
            det,
            ref.xy,
            ref.snr,
            shape=prob.shape,
            radius=radius,
            edge=edge,
            snr_min=snr_min,
            ref_target=ref.target,
        )
        c = ev.strict
        tp, fp, fn = tp + c.tp, fp + c.fp, fn + c.fn
        if n_g >= min_stars:  # F1 of a near-empty frame is noise: pooled only
            p_frame, _, f1_frame = prf(c.tp, c.fp, c.fn)
            f1s.append(f1_frame)
            precisions.append(p_frame)
    n_noise = [len(_positions(detector, p, m, pick(p, m))) for p, m in scored.noise_maps]
    n_false = sum(n_noise)
    worst = max((1e5 * n / m.size for n, (_, m) in zip(n_noise, scored.noise_maps)), default=0)
    p_, r_, f_ = prf(tp, fp, fn)
    return SweepRow(
        float(label),
        tp,
        fp,
        fn,
        p_,
        r_,
        f_,
        float(np.mean(f1s)) if f1s else 0.0,
        1e5 * n_false / scored.noise_px,
        min(precisions, default=1.0),
        float(worst),
    )


def fixed_threshold(threshold: float) -> ThresholdPick:
    """The pick that cuts every frame at ``threshold``."""
    value = float(threshold)

    def pick(_prepared: Any, _prob: np.ndarray) -> float:
        return value

    return pick


def sweep_thresholds(
    detector: Any,
    frames: Sequence[Frame],
    references: Sequence[References],
    noise: Sequence[Frame],
    thresholds: Sequence[float],
    *,
    radius: float = 3.0,
    edge: float = 3.0,
    snr_min: float = 2.0,
    min_stars: int = 20,
) -> list[SweepRow]:
    """Strict P/R/F1 pooled over ``frames`` and the false-alarm rate on ``noise`` per threshold.

    ``mean_frame_f1`` averages the frames with at least ``min_stars`` reference stars.
    """
    scored = score_maps(detector, frames, references, noise)
    return [
        score_rule(
            detector,
            scored,
            fixed_threshold(t),
            float(t),
            radius=radius,
            edge=edge,
            snr_min=snr_min,
            min_stars=min_stars,
        )
        for t in thresholds
    ]


def choose_threshold(
    rows: Sequence[SweepRow],
    max_false_per_1e5px: float = 0.3,
    max_frame_false_per_1e5px: float = math.inf,
) -> SweepRow:
    """Row with the best mean per-frame strict F1 among those under the false-alarm limits:
    pooled over the source-free frames and on the worst one of them (the lowest
    false-alarm row when none is under both)."""
    ok = [
        r
        for r in rows
        if r.false_per_1e5px <= max_false_per_1e5px
        and r.worst_false_per_1e5px <= max_frame_false_per_1e5px
    ]
    if not ok:
        return min(rows, key=lambda r: (r.worst_false_per_1e5px, r.false_per_1e5px, -r.threshold))
    return max(ok, key=lambda r: (r.mean_frame_f1, -r.threshold))
