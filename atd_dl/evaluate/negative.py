"""The catalog-free mirrored-frame ("negative") test of a detector's false detections.

The frame ``D`` (ADU) is reflected about its own 2-D background ``B`` (ADU, from
:func:`atd_dl.prep.enhance.estimate_background`, the estimator the detection pipeline
uses)::

    mirror = 2·B − D

Every real source becomes a hole, while the background keeps its level and the noise
keeps its rms (the sign of a symmetric noise field does not change its statistics). So
every detection on the mirror is false, and for a detector run with the same settings
on both images

* ``n_frame``  — detections on the frame,
* ``n_mirror`` — detections on the mirror (an estimate of the false detections on the frame),
* ``false_fraction = n_mirror / n_frame`` — estimated fraction of false detections,
* ``n_real = n_frame − n_mirror`` — estimated number of real detections.

For a model fed the ZScale-stretched 8-bit image (``zscale8`` input), the mirror is
stretched with the **frame's** ZScale limits, so that noise maps to the same grey levels
in both (see :func:`model_counts`); the pipeline's own stretch of the mirror is reported
as the diagnostic row ``atd-dl-own-stretch``.

Masked pixels of the frame (non-finite, and saturated star cores) are NaN in the mirror
and masked there; the mirror carries no saturation level (its low values are not
"saturated"). The estimate assumes noise symmetric about the background: pixels far
*below* the background in the frame (dead columns, cold pixels, over-subtracted halos)
become bright in the mirror and count as false there, while their positive counterparts
(hot pixels, cosmic rays) count as "real" on the frame.

SExtractor is compared "at matched settings": its DETECT_THRESH (σ) is scanned
(:data:`SEXTRACTOR_SCAN`, 1.0…6.0 σ by 0.25) and the threshold whose ``n_real`` is
closest to the model's is reported, with its false fraction there; SExtractor at a fixed
:data:`SEXTRACTOR_REFERENCE` (3 σ) is reported too. The verdict
(``model_within_sextractor``) reads the scan as a curve: the model passes when its mirror
count is no more than the fewest SExtractor needs for as many real detections
(:func:`sextractor_false_at`, interpolated between scanned thresholds), or when no
SExtractor threshold finds as many.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atd_dl.baselines.base import sweep
from atd_dl.io.fits_io import SATURATION_KEYS, Frame, read_frame

__all__ = [
    "SEXTRACTOR_REFERENCE",
    "SEXTRACTOR_SCAN",
    "NegativeCounts",
    "NegativeResult",
    "choose_matched",
    "sextractor_false_at",
    "mirror_frame",
    "model_counts",
    "negative_test",
    "sextractor_counts",
]

log = logging.getLogger(__name__)

#: SExtractor DETECT_THRESH values scanned for the matched comparison (σ above background)
SEXTRACTOR_SCAN: tuple[float, ...] = tuple(float(v) for v in sweep(1.0, 6.0, 0.25))
#: fixed SExtractor threshold reported for reference (σ)
SEXTRACTOR_REFERENCE = 3.0

MODEL_ROW = "atd-dl"
MODEL_OWN_ROW = "atd-dl-own-stretch"
#: the mirror at its own per-frame threshold (models with a per-frame threshold rule)
MODEL_OWN_THRESHOLD_ROW = "atd-dl-own-threshold"
SEX_MATCHED_ROW = "sextractor-matched"
SEX_REFERENCE_ROW = "sextractor-3sigma"


@dataclass
class NegativeCounts:
    """Detections of one detector at one threshold on a frame and on its mirror.

    ``threshold`` is a probability for the model (``threshold_unit="probability"``) and
    a multiple of the background rms for SExtractor (``"sigma"``).
    """

    detector: str
    threshold: float
    threshold_unit: str
    n_frame: int
    n_mirror: int

    @property
    def false_fraction(self) -> float:
        """``n_mirror / n_frame`` (estimated fraction of false detections); NaN when 0/0."""
        if self.n_frame == 0:
            return float("nan") if self.n_mirror == 0 else float("inf")
        return self.n_mirror / self.n_frame

    @property
    def n_real(self) -> int:
        """``n_frame − n_mirror``: estimated number of real detections (may be < 0)."""
        return self.n_frame - self.n_mirror

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``false_fraction`` NaN/inf become None via ``to_jsonable``)."""
        return {
            "detector": self.detector,
            "threshold": self.threshold,
            "threshold_unit": self.threshold_unit,
            "n_frame": self.n_frame,
            "n_mirror": self.n_mirror,
            "false_fraction": self.false_fraction,
            "n_real": self.n_real,
        }


@dataclass
class NegativeResult:
    """Outcome of :func:`negative_test` for one frame.

    ``rows``: the model (``"atd-dl"``), for stretched-image models its diagnostic run
    with the mirror's own stretch (``"atd-dl-own-stretch"``), then (when SExtractor ran)
    SExtractor at the matched threshold (``"sextractor-matched"``) and at
    :data:`SEXTRACTOR_REFERENCE` (``"sextractor-3sigma"``). ``sextractor_scan``: every scanned SExtractor
    threshold. ``sextractor_note``: why SExtractor is missing, else None. ``notes``:
    one-line remarks (background fallbacks, unknown gain, ...).
    """

    path: str | None
    shape: tuple[int, int]
    rows: list[NegativeCounts]
    sextractor_scan: list[NegativeCounts] = field(default_factory=list)
    sextractor_note: str | None = None
    notes: list[str] = field(default_factory=list)
    n_masked: int = 0

    def row(self, detector: str) -> NegativeCounts | None:
        """The row of ``detector`` (``"atd-dl"``, ``"sextractor-matched"``, ...), else None."""
        return next((r for r in self.rows if r.detector == detector), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of the result."""
        return {
            "path": self.path,
            "shape": list(self.shape),
            "n_masked_pixels": self.n_masked,
            "rows": [r.to_dict() for r in self.rows],
            "sextractor_scan": [
                {k: v for k, v in r.to_dict().items() if k not in ("detector", "threshold_unit")}
                for r in self.sextractor_scan
            ],
            "sextractor_note": self.sextractor_note,
            "sextractor_matched_gap": self.matched_gap,
            "sextractor_false_at_model_real": self.sextractor_false_at_model_real,
            "model_within_sextractor": self.model_within_sextractor,
            "notes": list(self.notes),
        }

    @property
    def sextractor_false_at_model_real(self) -> float | None:
        """:func:`sextractor_false_at` the model's ``n_real`` (None: SExtractor never gets
        there, or it did not run)."""
        model = self.row(MODEL_ROW)
        if model is None or not self.sextractor_scan:
            return None
        return sextractor_false_at(self.sextractor_scan, model.n_real)

    @property
    def model_within_sextractor(self) -> bool | None:
        """Whether the model's mirror detections are no more than SExtractor's for as many
        real detections (True as well when SExtractor cannot reach the model's real count);
        None without a SExtractor scan."""
        model = self.row(MODEL_ROW)
        if model is None or not self.sextractor_scan:
            return None
        sex = self.sextractor_false_at_model_real
        return sex is None or model.n_mirror <= sex + 1e-9

    @property
    def matched_gap(self) -> int | None:
        """SExtractor's ``n_real`` at the matched threshold minus the model's (None if absent).

        Far from 0 when no scanned threshold reaches the model's estimated real count.
        """
        model, sex = self.row(MODEL_ROW), self.row(SEX_MATCHED_ROW)
        if model is None or sex is None:
            return None
        return sex.n_real - model.n_real


# ---------------------------------------------------------------------------- the mirror


def mirror_frame(
    frame: Frame,
    *,
    box: int = 50,
    filter_size: int = 3,
    notes: list[str] | None = None,
) -> Frame:
    """The frame reflected about its 2-D background: ``2·B − D`` (float32 ADU).

    ``B`` is :func:`~atd_dl.prep.enhance.estimate_background` of ``frame.data`` with
    ``frame.mask`` left out (``box`` px boxes, ``filter_size`` boxes median filter: the
    detection pipeline's defaults). Pixels masked in the frame (non-finite or saturated)
    are NaN in the mirror, and the mirror's ``mask`` is exactly those pixels; its
    ``saturated`` is all False, its ``saturation_level`` None and SATURATE / SATLEVEL are
    removed from its header. Header (GAIN...), WCS, path and HDU are kept.
    """
    from atd_dl.prep.enhance import estimate_background

    data = np.asarray(frame.data, dtype=np.float32)
    bad = np.asarray(frame.mask, dtype=bool) | ~np.isfinite(data)
    background, _rms = estimate_background(
        data, bad, box, filter_size, source=frame.path, notes=notes
    )
    with np.errstate(invalid="ignore", over="ignore"):
        mirror = (2.0 * background.astype(np.float64) - data).astype(np.float32)
    mirror[bad] = np.nan
    header = frame.header.copy()
    for key in SATURATION_KEYS:
        header.remove(key, ignore_missing=True, remove_all=True)
    header["HISTORY"] = "ATD-DL mirrored frame: 2*B - D about the 2-D background B"
    return dataclasses.replace(
        frame,
        data=mirror,
        mask=bad.copy(),
        saturated=np.zeros(data.shape, dtype=bool),
        header=header,
        saturation_level=None,
    )


# ---------------------------------------------------------------------------- detectors


def _prepare(detector: Any, frame: Frame, notes: list[str]) -> Any:
    from atd_dl.detect.pipeline import prepare_frame

    c = detector.config
    prepared = prepare_frame(
        frame,
        gain=c.gain,
        background_box=c.background_box,
        background_filter=c.background_filter,
        checksum=False,
        stretch=detector.needs_stretch,
    )
    for note in prepared.warnings:
        if note not in notes:
            notes.append(note)
    return prepared


def _count(detector: Any, prepared: Any, threshold: float | None = None) -> tuple[int, float]:
    """Detections and the threshold used: ``threshold``, else the detector's own for this
    frame (fixed, or its per-frame rule)."""
    prob = detector.infer(prepared)
    t = detector.frame_threshold(prepared, prob) if threshold is None else float(threshold)
    return len(detector.extract(prepared, prob, threshold=t).catalog), t


def model_counts(
    detector: Any, frame: Frame, mirror: Frame, *, notes: list[str] | None = None
) -> tuple[NegativeCounts, NegativeCounts | None]:
    """Run a :class:`~atd_dl.detect.pipeline.Detector` on ``frame`` and ``mirror``.

    Both go through the same preparation (background subtraction), inference and
    post-processing at ``detector.threshold`` (a probability); every catalog row counts.

    The frame is cut at the detector's threshold for it (its per-frame rule when the model
    ships one) and the mirror at that same threshold, so the mirror counts the false
    detections of the frame's catalog.

    Returns ``(counts, own_stretch)``. For a model fed the ZScale-stretched 8-bit image,
    ``counts`` stretches the background-subtracted mirror with the **frame's** ZScale
    limits, so noise maps to the same grey levels on both images (the premise of the
    test; sources become values below Vmin, i.e. 0). ZScale limits are clipped at the
    extremes of the sampled pixels, which sit on the noise side of the frame but on the
    hole side of the mirror, so the mirror's own limits shift its sky grey level; the
    run with those (what ``atd-dl detect`` would do on the mirror file) is returned as
    the diagnostic ``own_stretch`` row (``detector="atd-dl-own-stretch"``). For models
    fed significance planes (no stretch) the second row is the mirror at its own per-frame
    threshold (``detector="atd-dl-own-threshold"``) when the model has a per-frame rule,
    else None.
    """
    from atd_dl.prep.enhance import stretch_to_uint8, zscale_stretch

    notes = notes if notes is not None else []
    pf = _prepare(detector, frame, notes)
    pm = _prepare(detector, mirror, notes)
    n_frame, thr = _count(detector, pf)
    if not detector.needs_stretch or pf.image8 is None or pm.image8 is None:
        # the frame's threshold on the mirror: the false detections of the frame's catalog
        n_mirror, _ = _count(detector, pm, thr)
        own = None
        if detector.fdr_rule is not None:  # what detect does on the mirror
            n_own, t_own = _count(detector, pm)
            own = NegativeCounts(MODEL_OWN_THRESHOLD_ROW, t_own, "probability", n_frame, n_own)
        return NegativeCounts(MODEL_ROW, thr, "probability", n_frame, n_mirror), own
    n_mirror_own, _ = _count(detector, pm, thr)
    # the frame's limits, exactly as enhance_frame computed them for pf.image8
    _img8, vmin, vmax = zscale_stretch(pf.subtracted_adu, frame.mask, source=frame.path)
    pm_frame = dataclasses.replace(pm, image8=stretch_to_uint8(pm.subtracted_adu, vmin, vmax))
    n_mirror, _ = _count(detector, pm_frame, thr)
    return (
        NegativeCounts(MODEL_ROW, thr, "probability", n_frame, n_mirror),
        NegativeCounts(MODEL_OWN_ROW, thr, "probability", n_frame, n_mirror_own),
    )


def sextractor_counts(
    frame: Frame,
    mirror: Frame,
    thresholds: Sequence[float] = SEXTRACTOR_SCAN,
    *,
    finder: Any = None,
) -> list[NegativeCounts]:
    """SExtractor detections on ``frame`` and ``mirror`` at each threshold (σ).

    ``finder``: a :class:`~atd_dl.baselines.sextractor.SExtractorFinder` (default: the
    paper's settings with the frame's gain and saturation level, as ``atd-dl baseline``
    uses it). On the frame, saturated cores stay usable (SExtractor flags them); on the
    mirror every masked pixel is left out. Raises
    :class:`~atd_dl.baselines.base.BaselineUnavailable` when SExtractor is not installed.
    """
    from atd_dl.baselines.sextractor import SExtractorFinder

    if finder is None:
        level = frame.saturation_level
        finder = SExtractorFinder(
            gain=frame.gain,
            saturation=level if level is not None and math.isfinite(level) else None,
        )
    mirror_finder = finder.with_params(saturation=None)
    frame_mask = np.asarray(frame.mask, bool) & ~np.asarray(frame.saturated, bool)
    out = []
    for t in thresholds:
        n_f = len(finder(frame.data, mask=frame_mask, threshold=float(t)))
        n_m = len(mirror_finder(mirror.data, mask=mirror.mask, threshold=float(t)))
        out.append(NegativeCounts("sextractor", float(t), "sigma", n_f, n_m))
    return out


def sextractor_false_at(scan: Sequence[NegativeCounts], n_real: int) -> float | None:
    """The fewest mirror detections SExtractor needs for at least ``n_real`` real ones.

    Over the scanned thresholds with ``n_real`` at or above the target, and linearly
    interpolated where the count crosses the target between neighbouring thresholds.
    None when no scanned threshold reaches ``n_real`` (SExtractor cannot find as many
    real sources on this frame at any false-alarm cost).
    """
    rows = sorted(scan, key=lambda r: -r.threshold)
    best = math.inf
    for i, r in enumerate(rows):
        if r.n_real >= n_real:
            best = min(best, float(r.n_mirror))
        if i and (rows[i - 1].n_real < n_real) != (r.n_real < n_real):
            a, b = rows[i - 1], r
            w = (n_real - a.n_real) / (b.n_real - a.n_real)
            best = min(best, a.n_mirror + w * (b.n_mirror - a.n_mirror))
    return None if math.isinf(best) else best


def choose_matched(scan: Sequence[NegativeCounts], n_real: int) -> int:
    """Index in ``scan`` whose ``n_real`` is closest to ``n_real``.

    Ties go to the fewer mirror detections, then to the higher threshold (the choice
    most favourable to the compared detector). Raises ``ValueError`` for an empty scan.
    """
    if not scan:
        raise ValueError("empty threshold scan")
    return min(
        range(len(scan)),
        key=lambda i: (abs(scan[i].n_real - n_real), scan[i].n_mirror, -scan[i].threshold),
    )


def negative_test(
    source: str | Path | Frame,
    detector: Any,
    *,
    sextractor: bool = True,
    thresholds: Sequence[float] = SEXTRACTOR_SCAN,
    reference_threshold: float = SEXTRACTOR_REFERENCE,
    hdu: int | str | None = None,
) -> NegativeResult:
    """The mirrored-frame test of ``detector`` (and SExtractor) on one frame.

    ``source``: a FITS path (read with ``hdu``) or a :class:`~atd_dl.io.fits_io.Frame`
    (ADU). ``detector``: a :class:`~atd_dl.detect.pipeline.Detector`; its background box
    and filter are used for the mirror too. With ``sextractor``, SExtractor is run on
    both images at every threshold of ``thresholds`` (σ) plus ``reference_threshold``;
    when it is not installed ``sextractor_note`` says so and only the model row is
    returned. Raises :class:`~atd_dl.errors.InputError` for unreadable input.
    """
    from atd_dl.baselines.base import BaselineUnavailable

    frame = source if isinstance(source, Frame) else read_frame(source, hdu=hdu)
    notes: list[str] = []
    c = detector.config
    mirror = mirror_frame(frame, box=c.background_box, filter_size=c.background_filter, notes=notes)
    model, own = model_counts(detector, frame, mirror, notes=notes)
    result = NegativeResult(
        path=None if frame.path is None else str(frame.path),
        shape=frame.shape,
        rows=[model] if own is None else [model, own],
        notes=notes,
        n_masked=int(np.count_nonzero(mirror.mask)),
    )
    if not sextractor:
        result.sextractor_note = "SExtractor not run (disabled)"
        return result
    ts = [float(t) for t in thresholds]
    ref_t = float(reference_threshold)
    extra = [] if any(math.isclose(t, ref_t) for t in ts) else [ref_t]
    try:
        counts = sextractor_counts(frame, mirror, ts + extra)
    except BaselineUnavailable:
        result.sextractor_note = (
            "SExtractor not installed (source-extractor / sex not on PATH): model only"
        )
        return result
    scan = counts[: len(ts)]
    ref = next(r for r in counts if math.isclose(r.threshold, ref_t))
    result.sextractor_scan = scan
    if scan:
        best = scan[choose_matched(scan, model.n_real)]
        result.rows.append(dataclasses.replace(best, detector=SEX_MATCHED_ROW))
    name = SEX_REFERENCE_ROW if math.isclose(ref_t, 3.0) else f"sextractor-{ref_t:g}sigma"
    result.rows.append(dataclasses.replace(ref, detector=name))
    return result
