"""Probability map to source catalog (paper §3.3): a chain of five stages.

:func:`segment_sources` runs, each stage a module of its own (criteria in
``docs/detect.md``):

1. **components** (:mod:`atd_dl.detect.components`): ``prob >= threshold`` -> binary mask
   -> 8-connected components (OpenCV); components smaller than ``min_area`` px are dropped;
   the background rms is estimated when not given; per-component moments, circularity and
   contact with saturated / bad pixels.
2. **trails** (:mod:`atd_dl.detect.trails`): elongated components whose intensity profile
   along the major axis is a plateau rather than a peak are flagged ``TRAIL`` and never
   deblended. Components with saturated pixels are neither trail-tested nor deblended
   (flagged ``SATURATED``).
3. **deblend** (stage functions at the end of :mod:`atd_dl.detect.deblend`; children
   flagged ``BLENDED``):

   a. two or more *distinct* intensity peaks -> one child per peak;
   b. a single peak but an intensity distribution significantly more elongated than the
      PSF (unresolved pair, separation down to ~1 FWHM) -> two children;
   c. otherwise circularity ``C = 4 pi A / P^2 < 0.7`` (Eq. 15) -> the paper's
      distance-transform seeded, circularity-controlled region growing.

   In (a) and (b) the light is shared between the children by a Gaussian-mixture
   (EM) fit with the PSF width (:func:`atd_dl.detect.measure.reference_psf`), started at
   the peaks (a) or at the pair positions implied by the second moments (b); each child's
   position is the Eq. 16 centroid of its share of the light and its segment the pixels
   where it dominates.
4. **measure** (:mod:`atd_dl.detect.measure`): intensity-weighted centroid on the
   calibrated, background-subtracted frame with negative weights clipped (Eq. 16) and its
   uncertainty, circular-aperture flux (radius ``aperture_scale * FWHM``) and SNR, area,
   circularity, peak value and peak probability;
5. **flags** (:func:`atd_dl.detect.flags.source_flags`); then the catalog
   (:class:`atd_dl.detect.catalog.SourceCatalog`).

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``. Intensities are in
electrons (``image_e``) when the gain is known; with ``poisson=False`` (gain unknown) the
noise model is the background rms alone and fluxes are in the image's unit.
Everything is vectorised over the frame; Python-level work is done only per non-trivial
component (trail candidates and blends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table

from atd_dl.detect import deblend
from atd_dl.detect.catalog import (
    CATALOG_COLUMNS,
    STANDARD_COLUMNS,
    SourceCatalog,
    empty_catalog,
)
from atd_dl.detect.components import (
    ComponentProps,
    Components,
    FrameImage,
    Pixels,
    component_pixels,
    component_properties,
    find_components,
    frame_image,
    split_by_probability,
    with_noise,
)
from atd_dl.detect.config import PostprocessConfig
from atd_dl.detect.deblend import Sources
from atd_dl.detect.flags import source_flags
from atd_dl.detect.measure import (
    Measurements,
    PsfReference,
    aperture_radius,
    measure_sources,
    reference_psf,
)
from atd_dl.detect.trails import find_trails

__all__ = [
    "CATALOG_COLUMNS",
    "STANDARD_COLUMNS",
    "ComponentRecords",
    "Deblended",
    "Extraction",
    "PostprocessConfig",
    "component_records",
    "deblended_sources",
    "extract_sources",
    "segment_sources",
]


@dataclass
class Extraction:
    """Result of :func:`segment_sources`."""

    catalog: Table  # catalog columns (no ra/dec), one row per source
    segmap: np.ndarray  # int32 [ny, nx]: catalog ``id`` of each pixel, 0 = background
    fwhm: float  # px, the FWHM used for the aperture
    aperture_radius: float  # px
    n_components: int  # connected components before deblending
    background_rms: float  # median background rms used (image units)
    threshold: float = float("nan")  # probability threshold applied (set by the Detector)


def _empty_catalog(unit: u.UnitBase) -> Table:
    """Catalog with all columns and zero rows (:func:`atd_dl.detect.catalog.empty_catalog`)."""
    return empty_catalog(unit)


def segment_sources(
    prob: np.ndarray,
    threshold: float,
    *,
    image_e: np.ndarray,
    mask: np.ndarray | None = None,
    background_rms_e: np.ndarray | float | None = None,
    saturated: np.ndarray | None = None,
    edge: float = 3,
    fwhm: float | None = None,
    poisson: bool = True,
    unit: u.UnitBase | str = u.electron,
    config: PostprocessConfig | None = None,
    counting: bool = False,
) -> Extraction:
    """Probability map -> catalog + segmentation map (see the module docstring).

    ``prob`` float [ny, nx] in [0, 1]; ``image_e`` the calibrated background-subtracted
    frame (electrons; NaN allowed); ``mask`` True = unusable pixel; ``background_rms_e``
    per-pixel (or scalar) background rms, estimated robustly from source-free pixels when
    None; ``saturated`` True = saturated pixel; ``edge`` px for the NEAR_EDGE flag;
    ``fwhm`` px (PSF width for deblending and the aperture; measured from bright isolated
    sources when None); ``poisson`` adds the sources' shot noise (needs electrons);
    ``unit`` of the flux columns; ``counting``: photon-counting data (whole counts), whose
    local residual background is a mean, not a whole-count median.
    """
    cfg = config or PostprocessConfig()
    unit = u.Unit(unit)
    prob = np.asarray(prob)
    frame = frame_image(
        prob, image_e, mask=mask, saturated=saturated, poisson=poisson, counting=counting
    )
    comps = find_components(
        prob, threshold, min_area=cfg.min_area, small_peak_prob=cfg.small_peak_prob
    )
    frame = with_noise(frame, background_rms_e, comps.binary > 0)
    if comps.n == 0:
        return _no_sources(frame, fwhm, unit, cfg)
    records = None
    if cfg.deblend and cfg.split_prominence > 0:
        records = component_records(frame, comps, cfg)
        parts = split_by_probability(
            prob, comps, cfg.split_prominence, records.trail, frame.saturated
        )
        if parts is not comps:  # new labels: their records again, the smoothing kept
            comps, records = parts, component_records(frame, parts, cfg, records.smooth)
    d = deblended_sources(frame, comps, fwhm, cfg, records)
    meas = measure_sources(frame, prob, d.pix, d.props, d.sources, d.split, d.psf.fwhm, cfg)
    flags = _flags(d.sources, meas, frame.shape, edge, cfg)
    table = SourceCatalog(d.sources, meas, flags, unit).to_table()
    radius = float(meas.aperture_radius)
    fw = d.psf.fwhm
    table.meta.update(_table_meta(threshold, fw, radius, unit, comps.n, frame.rms_median))
    return Extraction(table, d.sources.segmap, fw, radius, comps.n, frame.rms_median)


@dataclass
class Deblended:
    """The records of stages 2-3 (pixels, properties, trails, reference PSF, deblending)."""

    pix: Pixels
    props: ComponentProps
    trail: np.ndarray
    psf: PsfReference
    split: deblend.Split
    sources: Sources


@dataclass
class ComponentRecords:
    """Stage 2 on one labelling: pixels, properties, trails and the smoothed frame."""

    pix: Pixels
    props: ComponentProps
    trail: np.ndarray  # bool per label (index 0 unused)
    smooth: np.ndarray  # the frame smoothed for peak finding
    noise_factor: float  # rms reduction of that smoothing


def component_records(
    frame: FrameImage,
    comps: Components,
    cfg: PostprocessConfig,
    smooth: np.ndarray | None = None,
) -> ComponentRecords:
    """Per-component pixels and properties and the trail test on ``comps``; ``smooth``
    (the frame smoothed by ``cfg.peak_smooth_sigma``) is computed when not given."""
    pix = component_pixels(comps, frame)
    props = component_properties(comps, pix, frame)
    if smooth is None:
        smooth = deblend.gaussian_smooth(frame.image, cfg.peak_smooth_sigma)
    nf = deblend.smoothing_noise_factor(cfg.peak_smooth_sigma)
    trail = find_trails(comps, props, frame, smooth, nf, cfg)
    return ComponentRecords(pix, props, trail, smooth, nf)


def deblended_sources(
    frame: FrameImage,
    comps: Components,
    fwhm: float | None,
    cfg: PostprocessConfig,
    records: ComponentRecords | None = None,
) -> Deblended:
    """Stages 2-3 on the components of ``frame``: per-component pixels and properties,
    trails (``records`` of these ``comps`` when already computed), peaks, the reference PSF
    (``fwhm`` px, measured when None) and the deblended sources with their segmentation map."""
    r = records or component_records(frame, comps, cfg)
    pix, props, trail, smooth = r.pix, r.props, r.trail, r.smooth
    peaks = deblend.find_component_peaks(smooth, comps, pix, r.noise_factor, cfg)
    imom = deblend.intensity_moments(
        pix.label, pix.index, frame.shape[1], comps.n, pix.value, pix.var
    )
    psf = reference_psf(frame, pix, props, peaks, imom, trail, fwhm, cfg)
    split = deblend.deblend_components(comps, pix, props, peaks, imom, psf, trail, smooth, cfg)
    sources = deblend.assign_sources(comps, pix, props, split, trail)
    return Deblended(pix, props, trail, psf, split, sources)


def _no_sources(
    frame: FrameImage, fwhm: float | None, unit: u.UnitBase, cfg: PostprocessConfig
) -> Extraction:
    """The result of a map without components: empty catalog, empty segmentation map."""
    fw = float(fwhm or cfg.default_fwhm)
    segmap = np.zeros(frame.shape, dtype=np.int32)
    return Extraction(
        empty_catalog(unit), segmap, fw, aperture_radius(fw, cfg), 0, frame.rms_median
    )


def _flags(
    sources: Sources,
    meas: Measurements,
    shape: tuple[int, int],
    edge: float,
    cfg: PostprocessConfig,
) -> np.ndarray:
    """Stage 5: the flag column from the deblending and measurement results."""
    return source_flags(
        blended=sources.blended[1:],
        trail=sources.trail[1:],
        saturated=meas.saturated,
        masked=meas.masked,
        x=meas.x,
        y=meas.y,
        shape=shape,
        edge=edge,
        snr=meas.snr,
        low_snr=cfg.low_snr,
    )


def _table_meta(
    threshold: float, fwhm: float, radius: float, unit: u.UnitBase, n_comp: int, rms: float
) -> dict[str, Any]:
    """Catalog metadata of :func:`segment_sources` (FITS keywords in ``catalog_io``)."""
    return {
        "threshold": float(threshold),
        "fwhm_px": float(fwhm),
        "aper_rad": float(radius),
        "flux_unit": unit.to_string(),
        "n_comp": n_comp,
        "bkg_rms": rms,
    }


def extract_sources(
    prob: np.ndarray,
    threshold: float,
    *,
    image_e: np.ndarray,
    mask: np.ndarray | None = None,
    background_rms_e: np.ndarray | float | None = None,
    saturated: np.ndarray | None = None,
    edge: float = 3,
    fwhm: float | None = None,
    poisson: bool = True,
    unit: u.UnitBase | str = u.electron,
    config: PostprocessConfig | None = None,
) -> Table:
    """Catalog of sources found in a probability map (columns in ``docs/DESIGN.md``, no ra/dec).

    Same arguments as :func:`segment_sources`, which also returns the segmentation map.
    An empty mask gives an empty table with all columns.
    """
    return segment_sources(
        prob,
        threshold,
        image_e=image_e,
        mask=mask,
        background_rms_e=background_rms_e,
        saturated=saturated,
        edge=edge,
        fwhm=fwhm,
        poisson=poisson,
        unit=unit,
        config=config,
    ).catalog
