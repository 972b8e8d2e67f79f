"""A per-frame probability threshold that bounds the expected fraction of noise detections.

One fixed probability threshold cannot serve every star density: the threshold that keeps a
source-free frame clean (fewer than ~0.3 false detections per 10^5 px) throws away faint
stars in a crowded field, where a faint bump is far more likely to be a star. Classical
astronomy answers this with false-discovery-rate control (Miller et al. 2001, AJ 122, 3492;
Hopkins et al. 2002, AJ 123, 1086): fix the expected *fraction* of false detections rather
than their number per pixel, so the cut adapts to how many sources the frame holds.

Here, for each candidate threshold ``t`` of a grid:

* ``N(t)``: local maxima (3 x 3) of the frame's probability map at or above ``t``;
* ``E(t) = null(t) · A``: the expected number of noise maxima at or above ``t`` on the
  frame's usable area ``A``, with ``null(t)`` the noise maxima per pixel measured on
  source-free frames of several noise kinds (their maximum: conservative) when the model
  was shipped (``thresholds.json``, written by ``benchmarks/choose_operating_point.py``);
* the frame's threshold is the lowest ``t`` (not above the shipped noise-safe threshold)
  such that ``E(t') / N(t') <= fdr`` for every grid value ``t' >= t`` up to that threshold.

The shipped null comes from simulated noise; a real frame may be noisier for the network
(correlated noise of resampled mosaics, pattern noise). So the frame's own null is measured
too, the way radio surveys estimate false detections on the inverted image: the network
runs on the mirror ``2B - D`` (every source a hole, the noise statistically unchanged) of a
central crop of ``mirror_px`` pixels (at most half the frame, :data:`MIRROR_MAX_SHARE`),
and ``null(t)`` is the larger of the shipped and the measured rate. Only the mirror's
*noise-like* maxima count: one whose 3 x 3 box sum lies 5 or more of the crop's own box-sum
rms above zero (:data:`NOISE_PEAK_MAX_SIGMA`) is a real negative feature of the frame (an
over-subtracted star, a dark blob) turned over, which noise does not make; such a feature is
found at any threshold, so it does not measure what lowering the threshold adds. That costs one more
tile of inference (~15 % of a 1600² frame's, at most half a small frame's), paid only when the
shipped null alone would lower the threshold: the own null can only raise the expected noise
count, so a frame that keeps the ceiling without it keeps it with it.

**Own-null mode** (``null_floor_per_px`` in the rule): the shipped null is the *largest*
rate over the validation noise kinds (correlated noise, sparse photon counts), 20-40 times
the rate a frame of ordinary sky noise shows on its mirror, and it kept dense fields of
such frames cut near the ceiling. In this mode the frame's own null replaces it: the
Poisson upper bound (:func:`poisson_upper`) of the maxima counted on the mirrored crop,
floored by the *least* rate over the validation noise kinds. The mirror then runs
whenever the floor alone would lower the threshold (the cheap pre-check, ``optimistic``);
where it cannot run, the shipped null is used. A null only holds noise: galaxies, PSF wings
and spikes and nebulosity give false detections at low thresholds that no mirror shows, so
the rule may carry a ``min_threshold`` (chosen on validation frames for their precision).

On a source-free (or mirrored) frame ``N(t) <= E(t)``, so the shipped threshold is kept; in a
crowded field the cut goes down. The threshold used is written in the catalog header
(``THRESH``, ``THRSRC``). An explicit ``--threshold`` turns the rule off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "FdrRule",
    "probability_peaks",
    "peak_positions",
    "self_scaled_box_sums",
    "peak_counts",
    "noise_peaks_per_px",
    "mirror_null_per_px",
    "threshold_from_peaks",
    "rule_null",
    "poisson_upper",
    "frame_threshold",
]

#: maxima below this probability are never counted (px of pure background)
PEAK_FLOOR = 0.02


@dataclass(frozen=True)
class FdrRule:
    """The shipped rule: ``fdr`` target, the grid and its noise maxima per pixel, and the
    noise-safe ``ceiling`` threshold (the model's ``prob_threshold``)."""

    fdr: float
    thresholds: tuple[float, ...]
    null_per_px: tuple[float, ...]
    ceiling: float
    mirror_px: int = 0  # area (px) of the mirrored crop measuring the frame's own null; 0: off
    #: own-null mode: the frame's own null (an upper bound), floored by these noise maxima per
    #: pixel (the least over the source-free validation frames), replaces the shipped one
    null_floor_per_px: tuple[float, ...] | None = None
    #: the rule never cuts below this: false detections that are not noise (galaxies, PSF
    #: wings and spikes, nebulosity) are not in any null, mirrored or shipped
    min_threshold: float = 0.0
    #: the null of photon-counting frames (``PreparedFrame.counting``), measured on the
    #: source-free validation frames the pipeline classifies as photon counting; with it,
    #: ``null_per_px`` holds the other frames' null (None: ``null_per_px`` serves all frames)
    null_counting_per_px: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.null_per_px) or not self.thresholds:
            raise ValueError("thresholds and null_per_px need the same, non-zero length")
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError("thresholds must be ascending")
        if not 0.0 < self.fdr < 1.0:
            raise ValueError(f"fdr must lie in (0, 1), got {self.fdr}")
        counting = self.null_counting_per_px
        if counting is not None and len(counting) != len(self.thresholds):
            raise ValueError("null_counting_per_px needs one value per threshold")
        if self.null_floor_per_px is not None:
            if len(self.null_floor_per_px) != len(self.thresholds):
                raise ValueError("null_floor_per_px needs one value per threshold")
            if self.mirror_px <= 0:
                raise ValueError("the own-null mode (null_floor_per_px) needs mirror_px > 0")

    @property
    def own_null_mode(self) -> bool:
        return self.null_floor_per_px is not None

    def for_frame(self, counting: bool) -> FdrRule:
        """The rule for a frame of this noise regime: on a photon-counting frame the
        counting null (when the rule has one) replaces ``null_per_px``."""
        if not counting or self.null_counting_per_px is None:
            return self
        return replace(self, null_per_px=self.null_counting_per_px, null_counting_per_px=None)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], ceiling: float) -> FdrRule:
        """From the ``adaptive`` block of ``thresholds.json``."""
        return cls(
            fdr=float(d["fdr"]),
            thresholds=tuple(float(v) for v in d["thresholds"]),
            null_per_px=tuple(float(v) for v in d["null_per_px"]),
            ceiling=float(ceiling),
            mirror_px=int(d.get("mirror_px", 0)),
            null_floor_per_px=_floats(d.get("null_floor_per_px")),
            min_threshold=float(d.get("min_threshold", 0.0)),
            null_counting_per_px=_floats(d.get("null_counting_per_px")),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fdr": self.fdr,
            "thresholds": list(self.thresholds),
            "null_per_px": list(self.null_per_px),
            "mirror_px": self.mirror_px,
        }
        if self.null_floor_per_px is not None:
            out["null_floor_per_px"] = list(self.null_floor_per_px)
        if self.min_threshold > 0:
            out["min_threshold"] = self.min_threshold
        if self.null_counting_per_px is not None:
            out["null_counting_per_px"] = list(self.null_counting_per_px)
        return out

    def describe(self) -> str:
        own = f", own null from a {self.mirror_px / 1e6:.2f} Mpx mirror" if self.mirror_px else ""
        mode = " replacing the shipped one" if self.own_null_mode else ""
        low = f", never below {self.min_threshold:g}" if self.min_threshold > 0 else ""
        regime = ", photon-counting frames their own null" if self.null_counting_per_px else ""
        return f"fdr {self.fdr:g} (noise-safe ceiling {self.ceiling:.2f}{own}{mode}{low}{regime})"


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    """An optional per-threshold list of ``thresholds.json`` as a tuple of floats."""
    return None if values is None else tuple(float(v) for v in values)


def probability_peaks(prob: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Values of the 3 x 3 local maxima of ``prob`` (>= :data:`PEAK_FLOOR`), at ``valid``
    pixels; a plateau counts once per pixel, which only matters for saturated stars. The
    frame edge repeats the edge pixels (a maximum filter's ``mode="nearest"``). Only pixels
    above the floor are compared with their neighbours, so the cost follows the number of
    candidates, not the frame size."""
    return peak_positions(prob, valid)[2]


def peak_positions(
    prob: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns (0-based pixel indices) and values of :func:`probability_peaks`."""
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2 or prob.size == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty, np.zeros(0, np.float32)
    above = prob >= PEAK_FLOOR
    if valid is not None:
        above &= valid
    ys, xs = np.nonzero(above)
    values = prob[ys, xs]
    is_peak = np.ones(values.shape, dtype=bool)
    ny, nx = prob.shape
    for dy in (-1, 0, 1):
        yn = np.clip(ys + dy, 0, ny - 1)
        for dx in (-1, 0, 1):
            if dy or dx:
                is_peak &= values >= prob[yn, np.clip(xs + dx, 0, nx - 1)]
    return ys[is_peak], xs[is_peak], values[is_peak]


def peak_counts(
    prob: np.ndarray, thresholds: Sequence[float] | np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Number of :func:`probability_peaks` at or above each of ``thresholds``."""
    return _at_or_above(probability_peaks(prob, valid), thresholds)


def _at_or_above(values: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """How many of ``values`` (peak probabilities) lie at or above each threshold."""
    ordered = np.sort(np.asarray(values, np.float32))
    return len(ordered) - np.searchsorted(ordered, np.asarray(thresholds, np.float32), "left")


def noise_peaks_per_px(
    probs: Sequence[np.ndarray], thresholds: Sequence[float], *, least: bool = False
) -> np.ndarray:
    """Maxima per pixel at or above each threshold: the largest (``least``: the smallest)
    over ``probs`` (probability maps of source-free frames)."""
    rates = np.stack([peak_counts(prob, thresholds) / prob.size for prob in probs])
    return rates.min(axis=0) if least else rates.max(axis=0)


#: border (px) of the mirrored crop left out of the count (less context for the network)
MIRROR_BORDER = 16
#: largest share of the frame's area the mirrored crop covers: a sample, so that a small
#: frame (a 50 x 4000 strip, a 0.3 Mpx SDSS cut-out) does not pay its inference twice
MIRROR_MAX_SHARE = 0.5


def mirror_null_per_px(
    subtracted: np.ndarray,
    rms: np.ndarray,
    bad: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    rule: FdrRule,
) -> np.ndarray | None:
    """The frame's own noise maxima per pixel at each of ``rule.thresholds``: the network
    (``predict``: significance planes ``[2, h, w]`` -> probability ``[h, w]``) on the mirror
    of a central crop of about ``rule.mirror_px`` px. ``subtracted``/``rms`` in one unit;
    ``bad`` True = unusable. None when the rule does not ask for it or nothing is usable."""
    from atd_dl.prep.network_input import significance_planes

    if rule.mirror_px <= 0:
        return None
    ny, nx = subtracted.shape
    crop_px = min(rule.mirror_px, int(MIRROR_MAX_SHARE * ny * nx))
    hy = min(ny, int(np.sqrt(crop_px)))
    hx = min(nx, -(-crop_px // max(hy, 1)))
    y0, x0 = (ny - hy) // 2, (nx - hx) // 2
    sl = (slice(y0, y0 + hy), slice(x0, x0 + hx))
    mirrored = -subtracted[sl]
    prob = predict(significance_planes(mirrored, rms[sl], bad=bad[sl]))
    b = MIRROR_BORDER if min(hy, hx) > 8 * MIRROR_BORDER else 0
    inner = (slice(b, hy - b), slice(b, hx - b))
    usable = ~bad[sl][inner]
    area = np.count_nonzero(usable)
    if area == 0:
        return None
    ys, xs, values = peak_positions(prob[inner], usable)
    significance = self_scaled_box_sums(mirrored[inner], rms[sl][inner], usable)
    noise_like = values[significance[ys, xs] < NOISE_PEAK_MAX_SIGMA]
    counts = _at_or_above(noise_like, rule.thresholds).astype(np.float64)
    if rule.own_null_mode:  # the estimate replaces the shipped null: take its upper bound
        counts = poisson_upper(counts)
    return counts / area


#: a maximum of the mirror whose 3 x 3 box sum lies this many of the crop's own box-sum rms
#: above zero is a real negative feature of the frame (an over-subtracted star or halo, a
#: dark blob), not noise: noise gives such a box once in ~3 million
NOISE_PEAK_MAX_SIGMA = 5.0


def self_scaled_box_sums(image: np.ndarray, rms: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """The 3 x 3 box sum of ``image / rms`` in units of its own robust (MAD) scatter over the
    ``usable`` pixels: the significance of a point source of any width the noise can fake,
    correlated noise included (its box sums scatter more, so the unit grows with it)."""
    from astropy.stats import mad_std
    from scipy.ndimage import uniform_filter

    z = np.where(usable & (rms > 0), image / np.where(rms > 0, rms, 1.0), 0.0)
    box = 9.0 * uniform_filter(z.astype(np.float64), size=3, mode="constant")
    sample = box[usable]
    if sample.size == 0:
        return np.zeros_like(box)
    scale = float(mad_std(sample))
    return box / scale if scale > 0 else np.zeros_like(box)


def poisson_upper(counts: np.ndarray) -> np.ndarray:
    """About the 97.5 % upper limit of a Poisson mean from observed ``counts``
    (``k + 1 + 2 sqrt(k + 1)``: 3 for 0, 17.6 for 10; Gehrels 1986 gives 3.7 and 20.0 at
    97.5 %, 3.0 and 17.0 at 95 %)."""
    k = np.asarray(counts, dtype=np.float64)
    return k + 1.0 + 2.0 * np.sqrt(k + 1.0)


def frame_threshold(
    prob: np.ndarray,
    rule: FdrRule,
    valid: np.ndarray | None = None,
    own_null: np.ndarray | None = None,
) -> float:
    """The frame's threshold under ``rule`` (see the module docstring); ``valid`` marks the
    usable pixels (default all); ``own_null``: the frame's own noise maxima per pixel
    (:func:`mirror_null_per_px`), combined with the shipped null by their maximum."""
    area = float(prob.size if valid is None else np.count_nonzero(valid))
    return threshold_from_peaks(probability_peaks(prob, valid), area, rule, own_null)


def rule_null(
    rule: FdrRule, own_null: np.ndarray | None = None, *, optimistic: bool = False
) -> np.ndarray:
    """Noise maxima per pixel the rule expects at each threshold. Classic mode: the shipped
    null, raised to the frame's own where measured. Own-null mode: the frame's own
    (:func:`mirror_null_per_px`, an upper bound) floored by ``null_floor_per_px``; without
    it the shipped null, or with ``optimistic`` the floor (the least any frame can have:
    a frame that keeps the ceiling with it keeps it with every measured null)."""
    shipped = np.asarray(rule.null_per_px, dtype=np.float64)
    if rule.null_floor_per_px is None:
        return shipped if own_null is None else np.maximum(shipped, own_null)
    floor = np.asarray(rule.null_floor_per_px, dtype=np.float64)
    if own_null is not None:
        return np.maximum(floor, np.asarray(own_null, dtype=np.float64))
    return floor if optimistic else shipped


def threshold_from_peaks(
    peaks: np.ndarray,
    area: float,
    rule: FdrRule,
    own_null: np.ndarray | None = None,
    *,
    optimistic: bool = False,
) -> float:
    """:func:`frame_threshold` from the frame's :func:`probability_peaks` and its usable
    area (px), so one set of peaks serves the shipped-null and the own-null decisions
    (``optimistic``: see :func:`rule_null`)."""
    grid = np.asarray(rule.thresholds, dtype=np.float64)
    keep = (grid <= rule.ceiling + 1e-9) & (grid >= rule.min_threshold - 1e-9)
    null = rule_null(rule, own_null, optimistic=optimistic)
    grid, null = grid[keep], null[keep]
    if grid.size == 0 or area == 0:
        return rule.ceiling
    n_above = _at_or_above(peaks, grid)
    expected = null * area
    ok = expected <= rule.fdr * np.maximum(n_above, 1)
    # lowest grid value from which every higher value (up to the ceiling) passes
    chosen = rule.ceiling
    for t, passes in zip(grid[::-1], ok[::-1], strict=True):
        if not passes:
            break
        chosen = float(t)
    return chosen
