"""Stage 4 of the post-processing: measure every source on its final segment.

* :func:`reference_psf` -- the PSF width used by deblending and photometry: the given FWHM
  or one measured on bright isolated single-peak components, and the PSF's intensity
  elongation (the zero point of the unresolved-pair test);
* :func:`measure_sources` -- centroid (paper Eq. 16, intensity-weighted with negative
  weights clipped, refined by a Gaussian-windowed iteration for isolated non-trail sources
  when ``centroid="windowed"``; mixture children keep their fitted positions) and its
  1-sigma uncertainty, circular-aperture flux (radius ``aperture_scale * FWHM``, at least
  ``min_aperture_radius``) minus a local residual background, SNR, area, peak value,
  peak probability and contact with saturated / bad pixels.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``; positions and radii
in px, fluxes and peaks in the frame's flux unit (electrons when the gain is known).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atd_dl.detect.centroid import (
    aperture_fluxes,
    local_background,
    median_moment_fwhm,
    weighted_centroids,
    windowed_centroids,
)
from atd_dl.detect.components import ComponentProps, FrameImage, Pixels, label_max
from atd_dl.detect.config import PostprocessConfig
from atd_dl.detect.deblend import Peaks, Sources, Split

#: FWHM / sigma of a Gaussian, 2 sqrt(2 ln 2) to the precision used throughout
FWHM_PER_SIGMA = 2.3548


@dataclass(frozen=True)
class PsfReference:
    """The PSF as seen by deblending and photometry."""

    fwhm: float  # px
    sigma: float  # px, fwhm / 2.3548
    delta: float  # px^2, median intensity elongation l1 - l2 of isolated stars (0: unknown)


def reference_psf(
    frame: FrameImage,
    pix: Pixels,
    props: ComponentProps,
    peaks: Peaks,
    imom: dict[str, np.ndarray],
    trail: np.ndarray,
    fwhm: float | None,
    cfg: PostprocessConfig,
) -> PsfReference:
    """PSF width ``fwhm`` (px) or, when None, measured on up to 300 of the brightest
    single-peak components without trail, saturated or bad pixels whose peak exceeds 20x
    their rms (:func:`~atd_dl.detect.centroid.median_moment_fwhm`, ``cfg.default_fwhm`` when too
    few); ``delta`` is the median ``imom["delta"]`` of those stars when there are >= 5."""
    n = peaks.count.size - 1
    peak_comp = label_max(pix.label, pix.value.astype(np.float64), n)
    var_sum = np.bincount(pix.label, weights=pix.var, minlength=n + 1)[1:]
    rms_comp = np.sqrt(var_sum / props.moments["area"][1:])
    single = (peaks.count == 1) & ~trail & ~props.saturated & ~props.bad
    single[0] = False
    good = np.flatnonzero(single[1:] & (peak_comp > 20.0 * rms_comp)) + 1
    good = good[np.argsort(-peak_comp[good - 1])][:300]
    if fwhm is None:
        gi = peaks.first[good]
        used = median_moment_fwhm(frame.image, peaks.x[gi], peaks.y[gi], default=cfg.default_fwhm)
    else:
        used = float(fwhm)
    delta = float(np.median(imom["delta"][good])) if good.size >= 5 else 0.0
    return PsfReference(float(used), used / FWHM_PER_SIGMA, delta)


def aperture_radius(fwhm: float, cfg: PostprocessConfig) -> float:
    """Photometry aperture radius in px: ``max(aperture_scale * fwhm, min_aperture_radius)``."""
    return max(cfg.aperture_scale * fwhm, cfg.min_aperture_radius)


@dataclass(frozen=True)
class Measurements:
    """Per-source measurements (arrays of length ``n``, row ``i`` = source id ``i + 1``)."""

    x: np.ndarray  # px, 0-based column of the centroid
    y: np.ndarray  # px, 0-based row
    x_err: np.ndarray  # px, 1-sigma
    y_err: np.ndarray  # px, 1-sigma
    area: np.ndarray  # px^2, pixels in the segment
    flux: np.ndarray  # aperture flux minus local background (flux unit)
    flux_err: np.ndarray  # 1-sigma (flux unit)
    snr: np.ndarray  # flux / flux_err (0 when flux_err = 0)
    peak: np.ndarray  # maximum intensity in the segment (flux unit)
    prob: np.ndarray  # maximum network probability in the segment, in [0, 1]
    saturated: np.ndarray  # bool: a saturated pixel in / next to the segment (or component)
    masked: np.ndarray  # bool: a bad pixel in / next to the segment
    aperture_radius: float  # px


def centroids(
    frame: FrameImage,
    pix: Pixels,
    sources: Sources,
    split: Split,
    fwhm: float,
    cfg: PostprocessConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x, y, x_err, y_err, area`` of every source (px; see the module docstring)."""
    if cfg.centroid not in ("windowed", "segment"):
        raise ValueError(f"centroid must be 'windowed' or 'segment', got {cfg.centroid!r}")
    nx = frame.shape[1]
    cen = weighted_centroids(sources.seg_fg, pix.index, nx, sources.n, pix.value, pix.var)
    x, y, x_err, y_err = cen.x.copy(), cen.y.copy(), cen.x_err.copy(), cen.y_err.copy()
    mix = split.mixture
    if mix:
        ids = sources.first_id[mix["comp"]] + mix["rank"] - 1
        x[ids], y[ids] = mix["x"], mix["y"]
        x_err[ids], y_err[ids] = mix["x_err"], mix["y_err"]
    single = ~(sources.blended[1:] | sources.trail[1:])
    if cfg.centroid == "windowed" and single.any():
        wx, wy, wxe, wye, wok = windowed_centroids(
            frame.image,
            x[single],
            y[single],
            fwhm,
            variance=frame.variance(),
            bad=frame.bad_or_none(),
        )
        idx = np.flatnonzero(single)[wok]
        x[idx], y[idx] = wx[wok], wy[wok]
        x_err[idx], y_err[idx] = wxe[wok], wye[wok]
    return x, y, x_err, y_err, cen.area


def local_background_correction(
    frame: FrameImage,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    fwhm: float,
    flux: np.ndarray,
    flux_err: np.ndarray,
    segmap: np.ndarray,
    cfg: PostprocessConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Aperture flux minus area x local residual background (median of source-free pixels,
    their mean for photon counts, in cells of max(16, 8 FWHM) px,
    :func:`~atd_dl.detect.centroid.local_background`);
    its error (1.2533 rms / sqrt(pixels)) is added to ``flux_err`` in quadrature."""
    img, bad = frame.image, frame.bad_or_none()
    exclude = segmap > 0 if bad is None else (segmap > 0) | bad
    box = int(max(16, round(8 * fwhm)))
    level, count = local_background(img, x, y, box, exclude=exclude, mean=frame.counting)
    area, _ = aperture_fluxes(
        np.ones(img.shape, np.float32),
        x,
        y,
        radius,
        0.0,
        poisson=False,
        mask=bad,
        method=cfg.aperture_method,
    )
    rms_at = np.broadcast_to(np.asarray(frame.rms, dtype=np.float64), img.shape)[
        np.clip(np.rint(y).astype(np.int64), 0, img.shape[0] - 1),
        np.clip(np.rint(x).astype(np.int64), 0, img.shape[1] - 1),
    ]
    level_err = np.where(count > 0, 1.2533 * rms_at / np.sqrt(np.maximum(count, 1)), 0.0)
    return flux - area * level, np.sqrt(flux_err**2 + (area * level_err) ** 2)


def photometry(
    frame: FrameImage,
    x: np.ndarray,
    y: np.ndarray,
    segmap: np.ndarray,
    fwhm: float,
    cfg: PostprocessConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circular-aperture ``flux, flux_err`` (local background subtracted when
    ``cfg.local_background``) and ``snr = flux / flux_err`` (0 where ``flux_err = 0``)."""
    radius = aperture_radius(fwhm, cfg)
    flux, flux_err = aperture_fluxes(
        frame.image,
        x,
        y,
        radius,
        frame.rms,
        poisson=frame.poisson,
        mask=frame.bad_or_none(),
        method=cfg.aperture_method,
    )
    if cfg.local_background:
        flux, flux_err = local_background_correction(
            frame, x, y, radius, fwhm, flux, flux_err, segmap, cfg
        )
    snr = np.where(flux_err > 0, flux / np.where(flux_err > 0, flux_err, 1.0), 0.0)
    return flux, flux_err, snr


def pixel_contact(
    frame: FrameImage, pix: Pixels, props: ComponentProps, sources: Sources
) -> tuple[np.ndarray, np.ndarray]:
    """Per source: (saturated, masked) -- a saturated pixel in or next to its segment or its
    component; a bad pixel in or next to its segment."""
    n = sources.n
    saturated = np.zeros(n, dtype=bool)
    masked = np.zeros(n, dtype=bool)
    if frame.any_saturated:
        sat_src = np.bincount(sources.seg_fg, weights=pix.saturated, minlength=n + 1) > 0
        saturated = (sat_src | props.saturated[sources.component])[1:]
    if frame.any_bad:
        masked = np.bincount(sources.seg_fg, weights=pix.bad, minlength=n + 1)[1:] > 0
    return saturated, masked


def measure_sources(
    frame: FrameImage,
    prob: np.ndarray,
    pix: Pixels,
    props: ComponentProps,
    sources: Sources,
    split: Split,
    fwhm: float,
    cfg: PostprocessConfig,
) -> Measurements:
    """Measure every source (see the module docstring); ``prob`` is the probability map
    and ``fwhm`` the PSF FWHM in px (:func:`reference_psf`)."""
    x, y, x_err, y_err, area = centroids(frame, pix, sources, split, fwhm, cfg)
    peak = label_max(sources.seg_fg, pix.value.astype(np.float64), sources.n)
    prob_fg = np.nan_to_num(prob.ravel()[pix.index].astype(np.float64), nan=0.0)
    # confidence = the segment's peak probability: it rises with significance, and keeping
    # rows with prob >= t approximates a run at threshold t (one number to trade
    # completeness for purity)
    confidence = np.clip(label_max(sources.seg_fg, prob_fg, sources.n), 0.0, 1.0)
    flux, flux_err, snr = photometry(frame, x, y, sources.segmap, fwhm, cfg)
    saturated, masked = pixel_contact(frame, pix, props, sources)
    return Measurements(
        x,
        y,
        x_err,
        y_err,
        area,
        flux,
        flux_err,
        snr,
        peak,
        confidence,
        saturated,
        masked,
        aperture_radius(fwhm, cfg),
    )
