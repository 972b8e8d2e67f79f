"""Detection on new frames: read -> calibrate -> enhance -> infer -> extract -> write.

:func:`detect_frame` runs one frame (a path or a :class:`~atd_dl.io.fits_io.Frame`);
:func:`detect_files` runs a batch with prefetching, resumption, a progress bar and a run
summary, going on past bad frames. Both are used by ``atd-dl detect`` and ``infer.py``.

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
import glob
import json
import logging
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from atd_dl import __version__
from atd_dl.detect.catalog_io import file_sha256, write_catalog
from atd_dl.detect.domain import domain_warnings
from atd_dl.detect.flags import SourceFlag
from atd_dl.detect.postprocess import Extraction, PostprocessConfig, _empty_catalog, segment_sources
from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_write_text
from atd_dl.io.fits_io import Frame, read_frame, write_fits_image
from atd_dl.prep.network_input import SIGMA_INPUT_KIND, significance_planes
from atd_dl.prep.psf_width import FwhmMeasurement, measure_fwhm

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz", ".fz")
OUTPUT_SUFFIXES = {
    "fits": ".cat.fits",
    "ecsv": ".cat.ecsv",
    "regions": ".reg",
    "segmap": ".seg.fits",
    "probmap": ".prob.fits",
    "overlay": ".overlay.png",
}


@dataclass
class DetectConfig:
    """How frames are processed (everything but the model and the outputs)."""

    threshold: float | None = None  # None: the model's tuned threshold
    tile: int | None = None  # None: automatic (whole frame on CPU, 1024² on CUDA)
    overlap: int = 64
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
    # config.json "postprocess": {"min_snr": ...}, else 0 = keep all)
    min_snr: float | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary written into catalog headers."""
        d = dataclasses.asdict(self)
        d["postprocess"] = dataclasses.asdict(self.postprocess)
        return d


@dataclass
class OutputConfig:
    """Which files to write for each frame, and where."""

    out_dir: Path
    regions: bool = False
    segmap: bool = False
    probmap: bool = False
    overlay: bool = False
    overwrite: bool = False

    def paths(self, stem: str) -> dict[str, Path]:
        """Paths of the requested outputs of the frame ``stem``."""
        wanted = ["fits", "ecsv"] + [
            k for k in ("regions", "segmap", "probmap", "overlay") if getattr(self, k)
        ]
        return {k: Path(self.out_dir) / f"{stem}{OUTPUT_SUFFIXES[k]}" for k in wanted}

    def complete(self, stem: str) -> bool:
        """True when every requested output of ``stem`` exists (files are atomic)."""
        return all(p.is_file() for p in self.paths(stem).values())


@dataclass
class PreparedFrame:
    """A frame ready for inference: calibrated, enhanced, in electrons when possible."""

    frame: Frame
    image8: np.ndarray | None  # uint8 stretched frame (None when no finite pixel)
    image_e: np.ndarray | None  # background-subtracted frame (electrons or ADU)
    rms_e: np.ndarray | None  # background rms map (same unit)
    background_rms_adu: np.ndarray | None
    subtracted_adu: np.ndarray | None  # background-subtracted frame (ADU)
    gain: float | None
    unit: str  # "electron" or "adu"
    sha256: str | None
    calibration: str
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    fwhm: FwhmMeasurement | None = None  # measured PSF width (None when empty)

    @property
    def empty(self) -> bool:
        """True when the frame had no usable pixel (empty catalog)."""
        return self.image8 is None


@dataclass
class PreparedMosaic:
    """Every image extension of a multi-extension file, prepared; one catalog comes out."""

    path: Path
    parts: list[PreparedFrame]
    sha256: str | None
    warnings: list[str] = field(default_factory=list)

    @property
    def frame(self) -> Frame:
        """The first extension's frame (shape and header of the batch record)."""
        return self.parts[0].frame

    @property
    def timings(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in self.parts:
            for k, v in part.timings.items():
                out[k] = out.get(k, 0.0) + v
        return out


@dataclass
class FrameResult:
    """Everything :func:`detect_frame` produced for one frame."""

    catalog: Table
    prob: np.ndarray
    segmap: np.ndarray
    prepared: PreparedFrame
    threshold: float
    timings: dict[str, float]
    outputs: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def frame_stem(path: str | Path) -> str:
    """File name without FITS suffixes (``a.fits.fz`` -> ``a``)."""
    name = Path(path).name
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


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

    regions, n_reg = ndimage.label(ndimage.binary_dilation(saturated, iterations=grow))
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
) -> PreparedFrame:
    """Read (when given a path), calibrate and enhance a frame; see the module docstring.

    Raises :class:`~atd_dl.errors.InputError` for unreadable or unsupported input.
    """
    from atd_dl.prep.enhance import enhance_frame

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if isinstance(source, Frame):
        frame = source
        sha = file_sha256(frame.path) if checksum and frame.path and frame.path.is_file() else None
    else:
        frame = read_frame(source, hdu=hdu, plane=plane)
        sha = file_sha256(source) if checksum else None
    timings["read"] = time.perf_counter() - t0
    name = frame.path if frame.path is not None else "frame"
    t0 = time.perf_counter()
    if masters is not None and masters:
        from atd_dl.prep.calibration import calibrate

        frame = calibrate(frame, masters)
    timings["calibrate"] = time.perf_counter() - t0
    g = gain if gain is not None else frame.gain
    unit = "electron" if g else "adu"
    notes: list[str] = []
    usable = np.isfinite(frame.data) & ~frame.mask
    if not usable.any():
        notes.append(f"{name}: no finite unmasked pixel; empty catalog")
        return PreparedFrame(
            frame,
            None,
            None,
            None,
            None,
            None,
            g,
            unit,
            sha,
            _calibration_label(masters),
            timings,
            notes,
        )
    t0 = time.perf_counter()
    enh = enhance_frame(
        frame.data,
        frame.mask,
        box=background_box,
        filter_size=background_filter,
        source=frame.path,
        notes=notes,
    )
    scale = np.float32(g if g else 1.0)
    image_e = enh.subtracted * scale
    rms_e = enh.background_rms * scale
    timings["enhance"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fwhm = measure_fwhm(
        enh.subtracted, enh.background_rms, frame.mask, header=frame.header, source=name
    )
    notes.extend(fwhm.notes)
    timings["fwhm"] = time.perf_counter() - t0
    if frame.wcs is None:
        notes.append(f"{name}: no celestial WCS; pixel-only catalog (ra/dec NaN)")
    if not g:
        notes.append(f"{name}: gain unknown (no GAIN/EGAIN); fluxes in ADU, no Poisson term")
    return PreparedFrame(
        frame,
        enh.image8,
        image_e,
        rms_e,
        enh.background_rms,
        enh.subtracted,
        g,
        unit,
        sha,
        _calibration_label(masters),
        timings,
        notes,
        fwhm,
    )


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
    table["ra"].unit = u.deg
    table["dec"].unit = u.deg
    table["ra"].description = "right ascension from the frame WCS (ICRS/FK5 as in the header)"
    table["dec"].description = "declination from the frame WCS"
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
            from atd_dl.detect.inference import TiledPredictor

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
            )
        return self._predictor

    @property
    def device(self) -> str:
        if self._predictor is None and self.model is None:
            return str(self.config.device or "n/a")
        return str(self.predictor.device)

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

        assert prepared.image8 is not None
        if self.meta.get("input") == SIGMA_INPUT_KIND:
            assert prepared.subtracted_adu is not None and prepared.background_rms_adu is not None
            return significance_planes(
                prepared.subtracted_adu,
                prepared.background_rms_adu,
                bad=prepared.frame.mask,
                saturated=prepared.frame.saturated,
            )
        bad = prepared.frame.mask | ~np.isfinite(prepared.frame.data)
        return model_input(
            prepared.image8,
            channels=self.channels,
            background_rms=prepared.background_rms_adu,
            bad=bad,
        )

    def infer(self, prepared: PreparedFrame) -> np.ndarray:
        """Stitched probability map ``[ny, nx]`` float32 of a prepared frame."""
        if prepared.image8 is None:
            return np.zeros(prepared.frame.shape, dtype=np.float32)
        return self.predictor.predict(self.input_planes(prepared))

    def extract(self, prepared: PreparedFrame, prob: np.ndarray) -> Extraction:
        """Post-processing of a probability map, RA/Dec added."""
        frame = prepared.frame
        if prepared.image_e is None:
            cat = _empty_catalog(u.Unit(prepared.unit))
            ex = Extraction(cat, np.zeros(frame.shape, np.int32), float("nan"), 0.0, 0, 0.0)
        else:
            bad = (frame.mask & ~frame.saturated) | ~np.isfinite(frame.data)
            ex = segment_sources(
                prob,
                self.threshold,
                image_e=prepared.image_e,
                mask=bad,
                background_rms_e=prepared.rms_e,
                saturated=frame.saturated,
                edge=self.config.edge,
                poisson=prepared.unit == "electron",
                unit=prepared.unit,
                config=self.config.postprocess,
                fwhm=None if prepared.fwhm is None else prepared.fwhm.image_fwhm,
            )
        add_sky_coordinates(ex.catalog, frame.wcs)
        if self.binary_model is not None and len(ex.catalog):
            ex.catalog = self._classify_binaries(prepared, ex.catalog)
        if frame.saturated.any() and len(ex.catalog) > 1:
            ex = merge_saturated_fragments(ex, frame.saturated)
        if self.min_snr > 0 and len(ex.catalog):
            ex = _drop_low_snr(ex, self.min_snr)
        if frame.origin != (0, 0) and len(ex.catalog):  # trimmed: report HDU pixels
            ex.catalog["x"] += float(frame.origin[0])
            ex.catalog["y"] += float(frame.origin[1])
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
        """Metadata written with the catalog (see :data:`atd_dl.detect.catalog_io.FITS_KEYS`)."""
        frame = prepared.frame
        date_obs = frame.header.get("DATE-OBS") if frame.header is not None else None
        return {
            "model": self.meta.get("name"),
            "model_path": str(self.meta.get("path", "")),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "input_file": frame.path.name if frame.path else None,
            "input_sha256": prepared.sha256,
            "hdu": frame.hdu,
            "atd_dl_version": __version__,
            "flux_unit": prepared.unit,
            "gain": prepared.gain,
            "fwhm_px": ex.fwhm,
            "fwhm_source": prepared.fwhm.source if prepared.fwhm else "default",
            "fwhm_nstars": prepared.fwhm.n_stars if prepared.fwhm else 0,
            "aper_rad": ex.aperture_radius,
            "bkg_rms": ex.background_rms,
            "n_sources": len(ex.catalog),
            "n_comp": ex.n_components,
            "has_wcs": frame.wcs is not None,
            "calibration": prepared.calibration,
            "device": self.device,
            "date_obs": date_obs,
            "pixel_convention": "0-based, pixel centre = integer",
            "config": json.dumps(self.config.summary(), sort_keys=True, default=str),
        }

    def write(
        self,
        prepared: PreparedFrame,
        prob: np.ndarray,
        ex: Extraction,
        output: OutputConfig,
        stem: str,
    ) -> dict[str, Path]:
        """Write the requested outputs of one frame (each atomically)."""
        from atd_dl.detect.overlay import write_overlay_png
        from atd_dl.detect.regions import write_ds9_regions
        from atd_dl.io.fits_io import provenance_cards

        frame = prepared.frame
        paths = output.paths(stem)
        Path(output.out_dir).mkdir(parents=True, exist_ok=True)
        meta = self.catalog_meta(prepared, ex)
        prov = {
            "source": meta["input_file"],
            "insha256": prepared.sha256,
            "model": meta["model"],
            "thresh": self.threshold,
        }
        from astropy.io import fits

        primary = fits.Header(provenance_cards(**prov))
        write_catalog(ex.catalog, paths["fits"], paths["ecsv"], meta=meta, primary_header=primary)
        radius = max(3.0, ex.aperture_radius if np.isfinite(ex.aperture_radius) else 3.0)
        if "regions" in paths:
            write_ds9_regions(ex.catalog, paths["regions"], radius=radius)
        if "segmap" in paths:
            write_fits_image(
                paths["segmap"],
                ex.segmap.astype(np.int32),
                header=frame.header,
                wcs=frame.wcs,
                provenance={**prov, "content": "segmentation map: catalog id per pixel"},
            )
        if "probmap" in paths:
            write_fits_image(
                paths["probmap"],
                prob.astype(np.float32),
                header=frame.header,
                wcs=frame.wcs,
                provenance={**prov, "content": "foreground probability"},
            )
        if "overlay" in paths:
            img8 = (
                prepared.image8
                if prepared.image8 is not None
                else np.zeros(frame.shape, dtype=np.uint8)
            )
            shown = ex.catalog
            if frame.origin != (0, 0) and len(shown):  # drawn on the trimmed image
                shown = shown.copy(copy_data=True)
                shown["x"] -= float(frame.origin[0])
                shown["y"] -= float(frame.origin[1])
            write_overlay_png(
                img8,
                shown,
                paths["overlay"],
                radius=radius,
                title=f"{stem}: {len(ex.catalog)} sources (threshold {self.threshold:.3f})",
            )
        return paths

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
            self.threshold,
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
    overlap: int = 64,
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


# ---------------------------------------------------------------------------- batches
def expand_inputs(items: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (FITS files inside, sorted) and glob patterns -> frame paths.

    Returns ``(paths, problems)``; ``problems`` lists ``(item, message)`` for inputs that
    match nothing. Duplicates are dropped, order kept.
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in items:
        s = str(item)
        p = Path(s)
        if p.is_dir():
            found = sorted(
                q for q in p.iterdir() if q.is_file() and q.name.lower().endswith(FITS_SUFFIXES)
            )
            if not found:
                problems.append((s, f"{s}: folder contains no FITS files"))
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        elif glob.has_magic(s):
            found = sorted(Path(q) for q in glob.glob(s, recursive=True) if Path(q).is_file())
            if not found:
                problems.append((s, f"{s}: pattern matches no files"))
            paths.extend(found)
        else:
            problems.append((s, str(InputError(p, "file not found"))))
    seen: set[Path] = set()
    unique = []
    for q in paths:
        key = q.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(q)
    return unique, problems


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output stems; frames with the same name in different folders get the folder prefix."""
    stems = [frame_stem(p) for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    out = []
    for p, s in zip(paths, stems):
        out.append(f"{p.resolve().parent.name}_{s}" if counts[s] > 1 else s)
    if len(set(out)) != len(out):  # still clashing: number them
        out = [f"{s}_{i:04d}" for i, s in enumerate(out)]
    return out


@dataclass
class RunSummary:
    """Outcome of :func:`detect_files` (written as ``summary.json``)."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    model: str | None = None
    device: str | None = None
    threshold: float | None = None
    started: str = ""
    finished: str = ""
    wall_s: float = 0.0

    @property
    def n_ok(self) -> int:
        return sum(f["status"] == "ok" for f in self.frames)

    @property
    def n_skipped(self) -> int:
        return sum(f["status"] == "skipped" for f in self.frames)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def n_detections(self) -> int:
        return int(sum(f.get("n_detections", 0) for f in self.frames if f["status"] == "ok"))

    def stage_totals(self) -> dict[str, float]:
        """Seconds spent per stage, summed over processed frames."""
        tot: dict[str, float] = {}
        for f in self.frames:
            for k, v in f.get("timings", {}).items():
                tot[k] = tot.get(k, 0.0) + float(v)
        return {k: round(v, 4) for k, v in tot.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "atd_dl_version": __version__,
            "model": self.model,
            "device": self.device,
            "threshold": self.threshold,
            "started": self.started,
            "finished": self.finished,
            "wall_s": round(self.wall_s, 3),
            "n_frames": len(self.frames)
            + sum(1 for f in self.failures if f.get("stage") == "input"),
            "n_ok": self.n_ok,
            "n_skipped": self.n_skipped,
            "n_failed": self.n_failed,
            "n_detections": self.n_detections,
            "timings_s": self.stage_totals(),
            "frames": self.frames,
            "failures": self.failures,
        }

    def write(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _problem(path: Path, err: BaseException) -> str:
    if isinstance(err, InputError):
        return str(err)
    first = str(err).splitlines()[0] if str(err) else ""
    return f"{path}: {type(err).__name__}: {first}".rstrip(": ")


def detect_files(
    inputs: Iterable[str | Path],
    detector: Detector,
    output: OutputConfig,
    *,
    masters: Any = None,
    workers: int = 1,
    progress: bool = True,
    summary_name: str | None = "summary.json",
    on_failure: Any = None,
) -> RunSummary:
    """Detect sources in many frames; bad frames are reported and the batch goes on.

    ``inputs``: files, folders or glob patterns. Frames whose requested outputs all exist
    are skipped unless ``output.overwrite``. Up to ``workers`` frames are read, calibrated
    and enhanced in background threads while the current one is inferred. ``on_failure``
    (callable taking the one-line message) is called for each failure as it happens.
    Writes ``summary.json`` in ``output.out_dir`` (unless ``summary_name`` is None).
    """
    t_start = time.perf_counter()
    summary = RunSummary(
        model=str(detector.meta.get("name")),
        device=detector.device,
        threshold=detector.threshold,
        started=_now(),
    )
    paths, problems = expand_inputs(inputs)
    for item, msg in problems:
        summary.failures.append({"path": item, "stage": "input", "error": msg})
        if on_failure:
            on_failure(msg)
    stems = unique_stems(paths)
    todo: list[tuple[Path, str]] = []
    for p, s in zip(paths, stems):
        if not output.overwrite and output.complete(s):
            summary.frames.append({"path": str(p), "stem": s, "status": "skipped"})
        else:
            todo.append((p, s))

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="frame", desc="detect", file=sys.stderr)
    n_workers = max(1, int(workers))
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="atd-prefetch") as pool:
        queue: deque[tuple[Path, str, Future]] = deque()
        it = iter(todo)

        def refill() -> None:
            while len(queue) < n_workers + 1:
                try:
                    p, s = next(it)
                except StopIteration:
                    return
                queue.append((p, s, pool.submit(detector.prepare, p, masters=masters)))

        refill()
        while queue:
            p, s, fut = queue.popleft()
            refill()
            record: dict[str, Any] = {"path": str(p), "stem": s}
            try:
                prepared = fut.result()
                res = detector.run(prepared, write=output, stem=s)
                flags = np.asarray(res.catalog["flags"]) if len(res.catalog) else np.zeros(0)
                record.update(
                    status="ok",
                    n_detections=len(res.catalog),
                    n_flagged=int(np.count_nonzero(flags)),
                    threshold=res.threshold,
                    shape=list(prepared.frame.shape),
                    timings={k: round(v, 4) for k, v in res.timings.items()},
                    outputs={k: str(v) for k, v in res.outputs.items()},
                    warnings=res.warnings,
                )
            except Exception as err:  # noqa: BLE001 - one bad frame must not stop the batch
                msg = _problem(p, err)
                record.update(status="failed", error=msg)
                summary.failures.append({"path": str(p), "stage": "frame", "error": msg})
                log.debug("frame failed", exc_info=True)
                if on_failure:
                    on_failure(msg)
            summary.frames.append(record)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    summary.finished = _now()
    summary.wall_s = time.perf_counter() - t_start
    if summary_name:
        Path(output.out_dir).mkdir(parents=True, exist_ok=True)
        summary.write(Path(output.out_dir) / summary_name)
    return summary


def load_masters(
    bias: str | Path | None = None,
    dark: str | Path | None = None,
    flat: str | Path | None = None,
) -> Any:
    """:class:`~atd_dl.prep.calibration.CalibrationMasters` from files, or None when none given."""
    if bias is None and dark is None and flat is None:
        return None
    from atd_dl.prep.calibration import CalibrationMasters

    return CalibrationMasters.from_files(bias=bias, dark=dark, flat=flat)


def default_workers() -> int:
    """Prefetch threads by default: 1 (reading overlaps inference; more rarely helps)."""
    return 1 if (os.cpu_count() or 1) < 4 else 2
