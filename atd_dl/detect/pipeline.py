"""Detection on new frames: read -> calibrate -> enhance -> infer -> extract -> write.

:func:`detect_frame` runs one frame (a path or a :class:`~atd_dl.io.fits_io.Frame`);
:class:`Detector` computes, :mod:`atd_dl.detect.catalog_io` writes. Batches (prefetching,
resumption, a progress bar and a run summary, going on past bad frames) are
:func:`atd_dl.detect.batch.detect_files`, the records passed between the stages
:mod:`atd_dl.detect.frame`. The names of both stay importable from here.

Per frame:

1. :func:`~atd_dl.io.fits_io.read_frame` (``hdu``/``plane``), optional
   :func:`~atd_dl.prep.calibration.calibrate` with master bias / dark / flat;
2. :func:`~atd_dl.prep.enhance.enhance_frame` on the whole frame (the same enhancement as
   for the training data), model input planes from ``image8``;
3. tiled, batched inference (:class:`~atd_dl.detect.inference.TiledPredictor`) stitched
   into one seam-free probability map;
4. threshold (the model folder's ``thresholds.json`` unless overridden) and
   :func:`~atd_dl.detect.postprocess.segment_sources` on the background-subtracted frame
   in electrons (``GAIN`` known) or ADU;
5. RA/Dec through the frame's WCS (SIP included: ``wcs.all_pix2world``, origin 0);
6. outputs, each written atomically: ``<stem>.cat.fits`` + ``<stem>.cat.ecsv`` and, on
   request, ``<stem>.reg`` (DS9), ``<stem>.seg.fits``, ``<stem>.prob.fits`` (with the
   frame's WCS) and ``<stem>.overlay.png``.

A frame without WCS gives a pixel-only catalog (``ra``/``dec`` NaN) and a warning; a frame
without any finite pixel gives an empty catalog and a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from atd_dl.detect.adaptive_threshold import (
    FdrRule,
    mirror_null_per_px,
    probability_peaks,
    threshold_from_peaks,
)
from atd_dl.detect.catalog import describe_column
from atd_dl.detect.catalog_io import (
    OUTPUT_SUFFIXES,
    OutputConfig,
    catalog_meta,
    write_frame_outputs,
)
from atd_dl.detect.domain import domain_warnings
from atd_dl.detect.flags import SourceFlag
from atd_dl.detect.frame import FrameResult, PreparedFrame, PreparedMosaic
from atd_dl.detect.measure import aperture_radius
from atd_dl.detect.postprocess import Extraction, PostprocessConfig, _empty_catalog, segment_sources
from atd_dl.errors import InputError
from atd_dl.io.fits_io import Frame, read_frame
from atd_dl.io.paths import FITS_SUFFIXES, frame_stem
from atd_dl.io.resume import file_sha256  # cached: hashed once per run
from atd_dl.prep.network_input import SIGMA_INPUT_KIND, significance_planes
from atd_dl.prep.partition import DETECT_OVERLAP
from atd_dl.prep.psf_width import measure_fwhm

log = logging.getLogger(__name__)


#: smallest aperture SNR kept on photon-counting frames (``PreparedFrame.counting``) at the
#: noise-safe threshold, unless ``min_snr`` is set: there a few photons side by side (two
#: 1-photon pixels are a 4-sigma pair at a sky of 0.1 photon/px) look like a faint star to
#: the network (~15 per 10^5 px on pure noise of 0.1 photon/px). On source-free Poisson
#: frames of 0.1-5 photons/px (8.9 Mpx) none of them reached SNR 2.6
COUNTING_MIN_SNR = 2.5

#: smallest aperture SNR kept on defect-dominated frames (``PreparedFrame.defect_dominated``:
#: many sharp maxima on the sky, no star population, :mod:`atd_dl.prep.pixel_defects`) at
#: every threshold, unless ``min_snr`` is set. Their noise has heavy tails (random
#: telegraph pixels, clumps of 2-3 pixels at 4-5 sigma), so the classical 5-sigma detection
#: limit: on the shared 5-s M13 frame every detection under it (3 on the frame, 6 on its
#: mirror, aperture SNR 3.1-4.4) is such a clump
DEFECT_MIN_SNR = 5.0


def counting_snr_floor(radius: float, cfg: PostprocessConfig) -> float:
    """:data:`COUNTING_MIN_SNR` for the aperture of the default PSF width, scaled down as
    the frame's aperture (``radius`` px) grows: the floor is aimed at compact photon clumps,
    whose aperture SNR falls as 1 / radius, and a broad PSF's faint stars (FWHM 4.5 px:
    aperture SNR 1-2 at strict F1 0.73) must survive it."""
    ref = aperture_radius(cfg.default_fwhm, cfg)
    if not np.isfinite(radius) or radius <= ref:
        return COUNTING_MIN_SNR
    return COUNTING_MIN_SNR * ref / float(radius)


@dataclass
class DetectConfig:
    """How frames are processed (everything but the model and the outputs)."""

    threshold: float | None = None  # None: the model's tuned threshold
    tile: int | None = None  # None: automatic (whole frame on CPU, 1024² on CUDA)
    overlap: int = DETECT_OVERLAP
    batch_size: int | None = None  # None: automatic
    device: str | None = None  # None: CUDA when available, else CPU
    compile: bool = False  # torch.compile the network
    amp: bool = True  # bf16 autocast on CUDA
    edge: float = 3.0  # px, NEAR_EDGE flag
    hdu: int | str | None = None
    plane: int | None = None
    gain: float | None = None  # e-/ADU; overrides the header
    background_box: int = 50
    background_filter: int = 3
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    # drop detections whose aperture SNR is below this (None: the model folder's
    # config.json "postprocess": {"min_snr": ...}, else 0 = keep all; at least
    # COUNTING_MIN_SNR on photon-counting frames)
    min_snr: float | None = None
    # probability map averaged over this many flips of the frame (1, 2 or 4; None: the model
    # folder's config.json "inference": {"symmetries": ...}, else 1): part of the model's
    # operating point, which was chosen with it
    symmetries: int | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary written into catalog headers."""
        d = dataclasses.asdict(self)
        d["postprocess"] = dataclasses.asdict(self.postprocess)
        return d


def _select_sources(ex: Extraction, keep: np.ndarray, seg_ids: np.ndarray) -> Extraction:
    """Keep the catalog rows ``keep``; ids renumbered 1..n and the segmap (whose pixels
    hold the old ids ``seg_ids``; 0 or a dropped id -> background) mapped to them."""
    ids = np.asarray(ex.catalog["id"], dtype=np.int64)
    lut = np.zeros(int(max(ids.max(), seg_ids.max())) + 1, dtype=np.int32)
    lut[ids[keep]] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    out = ex.catalog[keep]
    out["id"] = np.arange(1, len(out) + 1, dtype=np.int64)
    return dataclasses.replace(ex, catalog=out, segmap=lut[seg_ids])


def merge_saturated_fragments(ex: Extraction, saturated: np.ndarray, grow: int = 2) -> Extraction:
    """One detection per saturated star: of the sources whose segment touches the same
    saturated region (grown by ``grow`` px), the largest is kept and the others' pixels
    join it; ids and segmap renumbered. Their centroids and fluxes are the kept source's."""
    from scipy import ndimage

    from atd_dl.prep.morphology import grow_mask

    regions, n_reg = ndimage.label(grow_mask(saturated, grow))
    if n_reg == 0:
        return ex
    seg = ex.segmap
    on = (seg > 0) & (regions > 0)
    if not on.any():
        return ex
    pairs = np.unique(np.stack([regions[on], seg[on]], axis=1), axis=0)  # (region, id)
    cat = ex.catalog
    ids = np.asarray(cat["id"], dtype=np.int64)
    row = {int(i): k for k, i in enumerate(ids)}
    area = np.asarray(cat["area"], dtype=np.int64)
    target = np.arange(int(max(ids.max(), seg.max())) + 1, dtype=np.int64)  # id -> kept id
    for r in np.unique(pairs[:, 0]):
        members = [int(i) for i in pairs[pairs[:, 0] == r, 1] if int(i) in row]
        if len(members) < 2:
            continue
        keep = max(members, key=lambda i: area[row[i]])
        for i in members:
            target[i] = keep
    if np.all(target == np.arange(len(target))):
        return ex
    return _select_sources(ex, target[ids] == ids, target[seg])


def _drop_low_snr(ex: Extraction, min_snr: float) -> Extraction:
    """Remove sources with aperture ``snr < min_snr``; ids and segmap renumbered."""
    keep = np.asarray(ex.catalog["snr"], dtype=float) >= min_snr
    if keep.all():
        return ex
    out = _select_sources(ex, keep, ex.segmap)
    out.catalog.meta["min_snr"] = float(min_snr)
    return out


def _calibration_label(masters: Any) -> str:
    if masters is None or not masters:
        return "none"
    parts = [k for k in ("bias", "dark", "flat") if getattr(masters, k, None) is not None]
    return "+".join(parts) or "none"


def prepare_frame(
    source: str | Path | Frame,
    *,
    masters: Any = None,
    hdu: int | str | None = None,
    plane: int | None = None,
    gain: float | None = None,
    background_box: int = 50,
    background_filter: int = 3,
    checksum: bool = True,
    stretch: bool = True,
) -> PreparedFrame:
    """Read (when given a path), calibrate and enhance a frame; see the module docstring.

    Raises :class:`~atd_dl.errors.InputError` for unreadable or unsupported input.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    frame, sha = _read_source(source, hdu=hdu, plane=plane, checksum=checksum)
    timings["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if masters is not None and masters:
        from atd_dl.prep.calibration import calibrate

        frame = calibrate(frame, masters)
    timings["calibrate"] = time.perf_counter() - t0
    g = gain if gain is not None else frame.gain
    empty = PreparedFrame(
        frame,
        None,
        None,
        None,
        None,
        None,
        g,
        "electron" if g else "adu",
        sha,
        _calibration_label(masters),
        timings,
        [],
    )
    usable = np.isfinite(frame.data) & ~frame.mask
    if not usable.any():
        name = frame.path if frame.path is not None else "frame"
        empty.warnings.append(f"{name}: no finite unmasked pixel; empty catalog")
        return empty
    return _enhance(
        empty, background_box=background_box, background_filter=background_filter, stretch=stretch
    )


def _read_source(
    source: str | Path | Frame, *, hdu: int | str | None, plane: int | None, checksum: bool
) -> tuple[Frame, str | None]:
    """The frame (read when ``source`` is a path) and its file's SHA-256 (when wanted)."""
    if isinstance(source, Frame):
        frame = source
        sha = file_sha256(frame.path) if checksum and frame.path and frame.path.is_file() else None
        return frame, sha
    return read_frame(source, hdu=hdu, plane=plane), (file_sha256(source) if checksum else None)


def _enhance(
    prepared: PreparedFrame, *, background_box: int, background_filter: int, stretch: bool
) -> PreparedFrame:
    """Enhance a read (and calibrated) frame with usable pixels, measure its PSF width;
    ``prepared`` holds the frame, gain, unit, checksum and calibration, no images yet.
    ``stretch``: also the ZScale 8-bit image (paper-mode input, overlays)."""
    from atd_dl.prep.enhance import enhance_frame

    frame, g, timings = prepared.frame, prepared.gain, prepared.timings
    name = frame.path if frame.path is not None else "frame"
    notes: list[str] = []
    t0 = time.perf_counter()
    enh = enhance_frame(
        frame.data,
        frame.mask,
        box=background_box,
        filter_size=background_filter,
        source=frame.path,
        notes=notes,
        stretch=stretch,
        gain=g,
    )
    timings["enhance"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fwhm = measure_fwhm(
        enh.subtracted, enh.background_rms, frame.mask, header=frame.header, source=name
    )
    notes.extend(fwhm.notes)
    timings["fwhm"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    subtracted, dominated = _clean_defects(enh, frame.mask, name, notes)
    timings["defects"] = time.perf_counter() - t0
    scale = np.float32(g if g else 1.0)
    image_e = subtracted * scale
    rms_e = enh.background_rms * scale
    if frame.wcs is None:
        notes.append(f"{name}: no celestial WCS; pixel-only catalog (ra/dec NaN)")
    if not g:
        notes.append(f"{name}: gain unknown (no GAIN/EGAIN); fluxes in ADU, no Poisson term")
    return dataclasses.replace(
        prepared,
        image8=enh.image8,
        image_e=image_e,
        rms_e=rms_e,
        background_rms_adu=enh.background_rms,
        subtracted_adu=subtracted,
        warnings=notes,
        fwhm=fwhm,
        counting=enh.counting,
        defect_dominated=dominated,
    )


#: share of the usable pixels above which the number of cleaned defects is reported
DEFECT_NOTE_SHARE = 1e-3


def _clean_defects(
    enh: Any, mask: np.ndarray, name: Any, notes: list[str]
) -> tuple[np.ndarray, bool]:
    """The background-subtracted frame (ADU) with its hot and cold pixels cleaned
    (:mod:`atd_dl.prep.pixel_defects`; photon-counting frames are returned as they are) and
    whether the frame is defect-dominated."""
    from atd_dl.prep.pixel_defects import clean_sharp_pixels

    if enh.counting:
        return np.asarray(enh.subtracted, dtype=np.float32), False
    cleaned, found = clean_sharp_pixels(enh.subtracted, enh.background_rms, mask)
    n_hot, n_cold = int(found.hot.sum()), int(found.cold.sum())
    if n_hot + n_cold > DEFECT_NOTE_SHARE * max(int(np.count_nonzero(~mask)), 1):
        notes.append(
            f"{name}: {n_hot} hot and {n_cold} cold isolated pixels replaced by their 3x3 "
            "median"
            + (
                "; defect-dominated frame: LOW_SNR detections dropped"
                if found.defect_dominated
                else ""
            )
        )
    return cleaned, found.defect_dominated


def add_sky_coordinates(table: Table, wcs: Any) -> Table:
    """Insert ``ra``, ``dec`` (deg) after ``y_err`` from 0-based ``x, y`` through ``wcs``.

    Uses ``wcs.all_pix2world(x, y, 0)`` (SIP and other distortions included); NaN when
    ``wcs`` is None.
    """
    n = len(table)
    if wcs is None or n == 0:
        ra = np.full(n, np.nan)
        dec = np.full(n, np.nan)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            ra, dec = wcs.all_pix2world(
                np.asarray(table["x"], dtype=float), np.asarray(table["y"], dtype=float), 0
            )
        ra = np.mod(np.asarray(ra, dtype=float), 360.0)
        dec = np.asarray(dec, dtype=float)
    pos = table.colnames.index("y_err") + 1 if "y_err" in table.colnames else len(table.colnames)
    table.add_column(ra, name="ra", index=pos)
    table.add_column(dec, name="dec", index=pos + 1)
    describe_column(table, "ra")  # unit and description: atd_dl.detect.catalog
    describe_column(table, "dec")
    return table


class Detector:
    """A loaded model plus processing options; call :meth:`run` on frames."""

    def __init__(
        self, model: Any, meta: dict[str, Any], config: DetectConfig | None = None
    ) -> None:
        from atd_dl.detect.inference import input_channels

        self.model = model
        self.meta = dict(meta)
        self.config = config or DetectConfig()
        self.channels = input_channels(self.meta)
        self._predictor: Any = None
        # optional visual-binary stamp classifier: (network, meta) from
        # atd_dl.binaries.model.load_binary_model; adds p_binary / binary and flag BINARY
        self.binary_model: tuple[Any, dict[str, Any]] | None = None
        if self.config.threshold is not None:
            self.threshold = float(self.config.threshold)
            self.threshold_source = "user"
        else:
            self.threshold = float(self.meta.get("threshold", 0.5))
            self.threshold_source = str(self.meta.get("threshold_source", "thresholds.json"))
        if not 0.0 < self.threshold < 1.0:
            raise InputError(None, f"threshold must be in (0, 1), got {self.threshold}")
        #: per-frame threshold rule shipped with the model (off with an explicit threshold)
        self.fdr_rule: FdrRule | None = None
        adaptive = self.meta.get("adaptive")
        if self.config.threshold is None and isinstance(adaptive, dict):
            self.fdr_rule = FdrRule.from_dict(adaptive, ceiling=self.threshold)
            self.threshold_source = (
                f"{self.threshold_source}, per frame: {self.fdr_rule.describe()}"
            )
        model_pp = (self.meta.get("config") or {}).get("postprocess") or {}
        # the model folder's post-processing settings (part of its operating point)
        fields = {f.name for f in dataclasses.fields(PostprocessConfig)}
        pp = {k: v for k, v in model_pp.items() if k in fields}
        if pp:
            self.config = dataclasses.replace(
                self.config, postprocess=dataclasses.replace(self.config.postprocess, **pp)
            )
        self.min_snr = float(
            self.config.min_snr if self.config.min_snr is not None else model_pp.get("min_snr", 0.0)
        )

    @property
    def predictor(self) -> Any:
        """The :class:`~atd_dl.detect.inference.TiledPredictor` (built on first use)."""
        if self._predictor is None:
            from atd_dl.detect.inference import TiledPredictor, tile_multiple

            if self.model is None:
                raise ValueError("this Detector has no model (post-processing only)")
            c = self.config
            self._predictor = TiledPredictor(
                self.model,
                tile=c.tile,
                overlap=c.overlap,
                batch_size=c.batch_size,
                device=c.device,
                compile=c.compile,
                amp=c.amp,
                multiple=tile_multiple(self.meta),
                symmetries=self.symmetries,
            )
        return self._predictor

    @property
    def symmetries(self) -> int:
        """Flips averaged at inference: the user's, else the model folder's, else 1."""
        if self.config.symmetries is not None:
            return int(self.config.symmetries)
        inference = (self.meta.get("config") or {}).get("inference") or {}
        return int(inference.get("symmetries", 1))

    @property
    def device(self) -> str:
        if self._predictor is None and self.model is None:
            return str(self.config.device or "n/a")
        engine = self.meta.get("engine")
        return f"{self.predictor.device} ({engine})" if engine else str(self.predictor.device)

    @property
    def needs_stretch(self) -> bool:
        """True when this model's input is the ZScale 8-bit image (paper models)."""
        return self.meta.get("input") != SIGMA_INPUT_KIND

    def prepare(
        self, source: str | Path | Frame, *, masters: Any = None
    ) -> PreparedFrame | PreparedMosaic:
        """:func:`prepare_frame` with this detector's options; a multi-extension file
        without ``hdu`` gives a :class:`PreparedMosaic` of all its image extensions."""
        from atd_dl.io.fits_io import image_hdus

        c = self.config
        prepare = functools.partial(
            prepare_frame,
            plane=c.plane,
            gain=c.gain,
            background_box=c.background_box,
            background_filter=c.background_filter,
            stretch=self.needs_stretch,
        )
        if isinstance(source, (str, Path)) and c.hdu is None:
            hdus = image_hdus(source)
            if len(hdus) > 1:
                if masters:
                    raise InputError(
                        source,
                        f"{len(hdus)} image extensions: calibrate each with --hdu N and "
                        "masters of that extension",
                    )
                parts = [prepare(source, hdu=h, checksum=False) for h in hdus]
                return PreparedMosaic(Path(source), parts, file_sha256(source))
        return prepare(source, masters=masters, hdu=c.hdu)

    def input_planes(self, prepared: PreparedFrame) -> np.ndarray:
        """Network input ``[C, ny, nx]`` float32 of a prepared frame, for this model's input
        kind: the significance planes of :mod:`atd_dl.prep.network_input` (``sigma`` models,
        the same function as in training) or the ZScale 8-bit planes (paper models)."""
        from atd_dl.detect.inference import model_input

        if not self.needs_stretch:
            assert prepared.subtracted_adu is not None and prepared.background_rms_adu is not None
            return significance_planes(
                prepared.subtracted_adu,
                prepared.background_rms_adu,
                bad=prepared.frame.mask,
                saturated=prepared.frame.saturated,
            )
        bad = prepared.frame.mask | ~np.isfinite(prepared.frame.data)
        assert prepared.image8 is not None, "prepared without the stretch (needs_stretch)"
        return model_input(
            prepared.image8,
            channels=self.channels,
            background_rms=prepared.background_rms_adu,
            bad=bad,
        )

    def infer(self, prepared: PreparedFrame) -> np.ndarray:
        """Stitched probability map ``[ny, nx]`` float32 of a prepared frame."""
        if prepared.empty:
            return np.zeros(prepared.frame.shape, dtype=np.float32)
        return self.predictor.predict(self.input_planes(prepared))

    def frame_threshold(self, prepared: PreparedFrame, prob: np.ndarray) -> float:
        """The probability threshold for this frame: the fixed one, or the shipped per-frame
        rule's (:mod:`atd_dl.detect.adaptive_threshold`) on the usable pixels."""
        if self.fdr_rule is None or prepared.empty:
            return self.threshold
        frame = prepared.frame
        rule = self.fdr_rule.for_frame(prepared.counting)
        valid = ~frame.mask & np.isfinite(frame.data)
        peaks, area = probability_peaks(prob, valid), float(np.count_nonzero(valid))
        first = threshold_from_peaks(peaks, area, rule, optimistic=True)
        # the least null the frame can be given (the shipped one, or in own-null mode its
        # floor) already keeps the ceiling: the mirror is not needed
        if first >= rule.ceiling:
            return first
        own = None
        if prepared.subtracted_adu is not None and prepared.background_rms_adu is not None:
            own = mirror_null_per_px(
                prepared.subtracted_adu,
                prepared.background_rms_adu,
                ~valid,
                self.predictor.predict,
                rule,
            )
        return threshold_from_peaks(peaks, area, rule, own)

    def extract(
        self, prepared: PreparedFrame, prob: np.ndarray, *, threshold: float | None = None
    ) -> Extraction:
        """Post-processing of a probability map, RA/Dec added; ``threshold`` overrides the
        detector's (fixed or per-frame) threshold, as threshold sweeps do."""
        frame = prepared.frame
        t = float(threshold) if threshold is not None else self.frame_threshold(prepared, prob)
        if prepared.image_e is None:
            cat = _empty_catalog(u.Unit(prepared.unit))
            ex = Extraction(cat, np.zeros(frame.shape, np.int32), float("nan"), 0.0, 0, 0.0)
        else:
            bad = (frame.mask & ~frame.saturated) | ~np.isfinite(frame.data)
            ex = segment_sources(
                prob,
                t,
                image_e=prepared.image_e,
                mask=bad,
                background_rms_e=prepared.rms_e,
                saturated=frame.saturated,
                edge=self.config.edge,
                poisson=prepared.unit == "electron",
                unit=prepared.unit,
                config=self.config.postprocess,
                fwhm=None if prepared.fwhm is None else prepared.fwhm.image_fwhm,
                counting=prepared.counting,
            )
        add_sky_coordinates(ex.catalog, frame.wcs)
        if self.binary_model is not None and len(ex.catalog):
            ex.catalog = self._classify_binaries(prepared, ex.catalog)
        if frame.saturated.any() and len(ex.catalog) > 1:
            ex = merge_saturated_fragments(ex, frame.saturated)
        min_snr = self.min_snr
        if self.config.min_snr is None:
            # photon clumps matter where stars are few: a frame the per-frame rule cuts below
            # the noise-safe threshold is rich in sources, and its false-discovery control holds
            if prepared.counting and t >= self.threshold:
                floor = counting_snr_floor(ex.aperture_radius, self.config.postprocess)
                min_snr = max(min_snr, floor)
            # faint "sources" are mostly defect clumps, at any threshold: no noise null holds
            # them, so a rule that cut lower would only let more of them in
            if prepared.defect_dominated:
                min_snr = max(min_snr, DEFECT_MIN_SNR)
        if min_snr > 0 and len(ex.catalog):
            ex = _drop_low_snr(ex, min_snr)
        if frame.origin != (0, 0) and len(ex.catalog):  # trimmed: report HDU pixels
            ex.catalog["x"] += float(frame.origin[0])
            ex.catalog["y"] += float(frame.origin[1])
        ex.threshold = t
        return ex

    def _classify_binaries(self, prepared: PreparedFrame, catalog: Table) -> Table:
        """Add the visual-binary probability columns and the BINARY flag bit."""
        from atd_dl.binaries.classify import classify_detections

        assert self.binary_model is not None
        net, meta = self.binary_model
        frame = prepared.frame
        image = prepared.image_e if prepared.image_e is not None else frame.data
        out = classify_detections(
            image, catalog, net, meta, wcs=frame.wcs, mask=frame.mask, device="cpu"
        )
        flags = np.asarray(out["flags"]).astype(np.int64)
        flags[np.asarray(out["binary"], bool)] |= int(SourceFlag.BINARY)
        out["flags"] = flags.astype(np.asarray(catalog["flags"]).dtype)
        return out

    def catalog_meta(self, prepared: PreparedFrame, ex: Extraction) -> dict[str, Any]:
        """Metadata written with the catalog: :func:`atd_dl.detect.catalog_io.catalog_meta`."""
        return catalog_meta(self, prepared, ex)

    def write(
        self,
        prepared: PreparedFrame,
        prob: np.ndarray,
        ex: Extraction,
        output: OutputConfig,
        stem: str,
    ) -> dict[str, Path]:
        """Write the requested outputs of one frame (each atomically):
        :func:`atd_dl.detect.catalog_io.write_frame_outputs`."""
        return write_frame_outputs(self, prepared, prob, ex, output, stem)

    def run(
        self,
        source: str | Path | Frame | PreparedFrame,
        *,
        masters: Any = None,
        write: OutputConfig | None = None,
        stem: str | None = None,
    ) -> FrameResult:
        """Detect sources in one frame; optionally write its outputs (see module docstring)."""
        prepared: PreparedFrame | PreparedMosaic
        if isinstance(source, (PreparedFrame, PreparedMosaic)):
            prepared = source
        else:
            prepared = self.prepare(source, masters=masters)
        if isinstance(prepared, PreparedMosaic):
            return self._run_mosaic(prepared, write=write, stem=stem)
        t0 = time.perf_counter()
        prob = self.infer(prepared)
        t_inf = time.perf_counter() - t0
        return self.run_on_prob(prepared, prob, write=write, stem=stem, inference_s=t_inf)

    def _run_mosaic(
        self, mosaic: PreparedMosaic, *, write: OutputConfig | None, stem: str | None
    ) -> FrameResult:
        """All extensions -> one catalog with an ``ext`` column (HDU index); x, y in each
        extension's own pixel grid. Maps and overlays are per frame: not written here."""
        from astropy.table import vstack

        t0 = time.perf_counter()
        tables, results = [], []
        for part in mosaic.parts:
            res = self.run_on_prob(part, self.infer(part))
            tab = res.catalog
            tab.add_column(np.full(len(tab), part.frame.hdu, dtype=np.int16), name="ext", index=1)
            tab["ext"].description = "FITS HDU (extension) index the source was found in"
            tables.append(tab)
            results.append(res)
        catalog = vstack(tables, metadata_conflicts="silent")
        catalog["id"] = np.arange(1, len(catalog) + 1)
        first = mosaic.parts[0]
        warnings_: list[str] = [w for r in results for w in r.warnings]  # logged per part
        outputs: dict[str, Path] = {}
        if write is not None:
            skipped = [k for k in ("segmap", "probmap", "overlay") if getattr(write, k)]
            if skipped:
                note = (
                    f"{mosaic.path.name}: {', '.join(skipped)} not written for a "
                    f"{len(mosaic.parts)}-extension file (use --hdu N for one extension)"
                )
                log.warning(note)
                warnings_.append(note)
            out = dataclasses.replace(write, segmap=False, probmap=False, overlay=False)
            m = tables[0].meta
            ex = Extraction(
                catalog,
                results[0].segmap,
                float(m.get("fwhm_px", np.nan)),
                float(m.get("aper_rad", np.nan)),
                int(sum(t.meta.get("n_comp", 0) for t in tables)),
                float(m.get("bkg_rms", np.nan)),
            )
            merged = dataclasses.replace(first, sha256=mosaic.sha256)
            outputs = self.write(merged, results[0].prob, ex, out, stem or frame_stem(mosaic.path))
        timings = mosaic.timings
        timings["total"] = time.perf_counter() - t0
        return FrameResult(
            catalog,
            results[0].prob,
            results[0].segmap,
            first,
            self.threshold,
            timings,
            outputs,
            warnings_,
        )

    def run_on_prob(
        self,
        prepared: PreparedFrame,
        prob: np.ndarray,
        *,
        write: OutputConfig | None = None,
        stem: str | None = None,
        inference_s: float | None = None,
    ) -> FrameResult:
        """Post-process a probability map of a prepared frame and optionally write outputs."""
        timings = dict(prepared.timings)
        if inference_s is not None:
            timings["inference"] = inference_s
        t0 = time.perf_counter()
        ex = self.extract(prepared, prob)
        timings["postprocess"] = time.perf_counter() - t0
        fw = prepared.fwhm
        prepared.warnings.extend(
            domain_warnings(
                self.meta,
                fw.fwhm if fw else None,
                fw.source if fw else "default",
                len(ex.catalog),
                prepared.frame.shape,
                str(prepared.frame.path.name if prepared.frame.path else "frame"),
            )
        )
        for note in prepared.warnings:
            log.warning(note)
        outputs: dict[str, Path] = {}
        if write is not None:
            t0 = time.perf_counter()
            if stem is None:
                p = prepared.frame.path
                stem = frame_stem(p) if p is not None else "frame"
            outputs = self.write(prepared, prob, ex, write, stem)
            timings["write"] = time.perf_counter() - t0
        return FrameResult(
            ex.catalog,
            prob,
            ex.segmap,
            prepared,
            ex.threshold,
            timings,
            outputs,
            list(prepared.warnings),
        )


def detect_frame(
    path_or_frame: str | Path | Frame,
    model: Any,
    meta: dict[str, Any],
    *,
    threshold: float | None = None,
    masters: Any = None,
    tile: int | None = None,
    overlap: int = DETECT_OVERLAP,
    batch_size: int | None = None,
    device: str | None = None,
    write: OutputConfig | str | Path | None = None,
    config: DetectConfig | None = None,
) -> FrameResult:
    """Detect sources in one frame with ``model`` (and its ``meta`` from the model folder).

    ``threshold`` overrides the model's tuned threshold; ``masters`` a
    :class:`~atd_dl.prep.calibration.CalibrationMasters`; ``write`` an
    :class:`OutputConfig` or an output folder (catalogs only). ``config`` gives every
    other option (its tile/overlap/... are replaced by the explicit arguments).
    """
    cfg = dataclasses.replace(
        config or DetectConfig(),
        threshold=threshold if threshold is not None else (config.threshold if config else None),
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
    )
    out = OutputConfig(Path(write)) if isinstance(write, (str, Path)) else write
    return Detector(model, meta, cfg).run(path_or_frame, masters=masters, write=out)


# ------------------------------------------------------------- names that moved elsewhere
#: batch running moved to :mod:`atd_dl.detect.batch`, which imports this module; the old
#: names resolve lazily (PEP 562: ``from atd_dl.detect.pipeline import detect_files`` still
#: works) so that this module never imports it (no cycle). New code imports them from batch.
_BATCH_NAMES = (
    "RunSummary",
    "_now",
    "_problem",
    "default_workers",
    "detect_files",
    "expand_inputs",
    "load_masters",
    "unique_stems",
)


def __getattr__(name: str) -> Any:
    if name in _BATCH_NAMES:
        import importlib

        return getattr(importlib.import_module("atd_dl.detect.batch"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FITS_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "DetectConfig",
    "Detector",
    "FrameResult",
    "OutputConfig",
    "PreparedFrame",
    "PreparedMosaic",
    "add_sky_coordinates",
    "detect_frame",
    "frame_stem",
    "merge_saturated_fragments",
    "prepare_frame",
]
