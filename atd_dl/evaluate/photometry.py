"""Photometry checks without a truth catalog: our aperture fluxes against photutils.

:func:`photutils_agreement` re-measures the catalog positions of one prepared frame with
photutils (``CircularAperture`` of the catalog's ``aper_rad``, exact pixel overlap, on the
same calibrated background-subtracted image in electrons, or ADU when the gain is unknown)
minus a local background from a ``CircularAnnulus`` (``r_in = aper_rad + 2 FWHM``,
``r_out = r_in + 3 FWHM``, sigma-clipped median from ``ApertureStats``), and compares:

* the flux ratio ours / photutils of isolated, unsaturated, ``flags == 0`` sources with
  catalog ``snr > min_snr`` (median and robust scatter ``1.4826 MAD``);
* the SNR ratio, photutils' error built as ours is
  (:func:`atd_dl.detect.centroid.aperture_fluxes` and
  :func:`atd_dl.detect.measure.local_background_correction`): ``sqrt(sum(w (rms^2 +
  max(image, 0))) + (area 1.2533 rms)^2 / n_bkg)`` (``n_bkg`` pixels in the annulus), the
  Poisson term only in electrons;
* detections with ``snr < 0``; of those, how many have a clear 3 x 3 peak (box sum above
  the annulus median by more than 3 x its noise ``3 rms``) and how many photutils measures
  at SNR > 3 -- a negative SNR from a background error of ours, not a noise or nebula
  peak whose aperture flux is truly <= 0;
* ``LOW_SNR`` flags inconsistent with ``snr < low_snr``.

Pixel convention: 0-based, pixel centre = integer (photutils' convention too). Catalog
positions of a trimmed extension (``frame.origin``) are moved back onto the trimmed image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from atd_dl.detect.flags import SourceFlag, has_flag

__all__ = ["PhotometryAgreement", "box_significance", "photutils_agreement"]

#: MAD -> sigma of a normal distribution
MAD_TO_SIGMA = 1.4826


@dataclass
class PhotometryAgreement:
    """Photometry of one frame (or one extension) against photutils."""

    frame: str
    unit: str  # "electron" or "adu"
    gain: float | None
    aper_rad: float  # px
    fwhm: float  # px
    n_detections: int
    n: int  # isolated flags == 0 sources with snr > min_snr, measured by both
    median_ratio: float  # median flux ours / photutils
    scatter: float  # 1.4826 MAD of the flux ratio
    median_snr_ratio: float  # median snr ours / photutils
    snr_scatter: float  # 1.4826 MAD of the snr ratio
    median_raw_ratio: float  # median ratio without either local background (apertures only)
    n_negative_snr: int  # detections with snr < 0
    n_negative_snr_with_peak: int  # ... whose 3x3 box exceeds the annulus median by 3 sigma
    n_negative_snr_photutils_positive: int  # ... that photutils measures at SNR > 3
    n_low_snr_inconsistent: int  # LOW_SNR flag != (snr < low_snr)
    low_snr: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN kept as float NaN)."""
        return asdict(self)


def _robust(values: np.ndarray) -> tuple[float, float]:
    """``(median, 1.4826 MAD)`` of the finite values; NaN when none."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    return med, float(MAD_TO_SIGMA * np.median(np.abs(v - med)))


def box_significance(
    image: np.ndarray,
    rms: np.ndarray | float,
    x: np.ndarray,
    y: np.ndarray,
    bad: np.ndarray,
    level: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Significance of the 3 x 3 box sum centred on the pixel nearest ``(x, y)`` above a
    local ``level`` (per source, image units): ``sum(image - level)`` over the box's good
    pixels divided by ``rms sqrt(n_good)`` (0 where the box has no good pixel)."""
    ny, nx = image.shape
    rms_map = np.broadcast_to(np.asarray(rms, dtype=np.float64), image.shape)
    xi = np.rint(np.asarray(x, float)).astype(np.int64)
    yi = np.rint(np.asarray(y, float)).astype(np.int64)
    off = np.arange(-1, 2)
    rows = yi[:, None, None] + off[None, :, None]
    cols = xi[:, None, None] + off[None, None, :]
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    r = np.clip(rows, 0, ny - 1)
    c = np.clip(cols, 0, nx - 1)
    good = inside & ~bad[r, c] & np.isfinite(image[r, c])
    n = good.sum(axis=(1, 2))
    total = np.where(good, image[r, c], 0.0).sum(axis=(1, 2)) - n * np.asarray(level, float)
    noise = rms_map[yi.clip(0, ny - 1), xi.clip(0, nx - 1)] * np.sqrt(np.maximum(n, 1))
    return np.where(n > 0, total / np.where(noise > 0, noise, 1.0), 0.0)


def _photutils_fluxes(
    image: np.ndarray,
    var: np.ndarray,
    rms: np.ndarray,
    bad: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    r_in: float,
    r_out: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """photutils ``(flux, flux_err, bare aperture sum, annulus median)`` at ``(x, y)``:
    exact-overlap aperture sum minus area x the annulus' sigma-clipped median; the error
    is ``sqrt(sum(w var) + (area 1.2533 rms)^2 / n_annulus)`` with ``rms`` the background
    rms at the position (our error model: :func:`atd_dl.detect.measure.local_background_correction`)."""
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    pos = np.column_stack([x, y])
    aper = CircularAperture(pos, r=radius)
    ann = CircularAnnulus(pos, r_in=r_in, r_out=r_out)
    phot = aperture_photometry(image, aper, error=np.sqrt(var), mask=bad, method="exact")
    raw = np.asarray(phot["aperture_sum"], float)
    raw_err = np.asarray(phot["aperture_sum_err"], float)
    area = np.atleast_1d(np.asarray(aper.area_overlap(image, mask=bad, method="exact"), float))
    stats = ApertureStats(image, ann, mask=bad, sum_method="center")  # sigma clip 3, 10 iter
    level = np.atleast_1d(np.asarray(stats.median, float))
    n_ann = np.atleast_1d(np.asarray(stats.sum_aper_area.value, float))
    flux = raw - area * level
    ny, nx = image.shape
    rms_at = rms[
        np.clip(np.rint(y).astype(np.int64), 0, ny - 1),
        np.clip(np.rint(x).astype(np.int64), 0, nx - 1),
    ]
    err = np.sqrt(raw_err**2 + (area * 1.2533 * rms_at) ** 2 / np.maximum(n_ann, 1.0))
    return flux, err, raw, level


def photutils_agreement(
    prepared: Any,
    catalog: Any,
    *,
    label: str | None = None,
    min_snr: float = 20.0,
    low_snr: float = 3.0,
    isolation: float | None = None,
    neighbour_snr: float = 5.0,
) -> PhotometryAgreement:
    """Compare the catalog of one :class:`~atd_dl.detect.frame.PreparedFrame` with photutils
    aperture photometry at the same positions (see the module docstring).

    ``catalog`` is the detector's table for this frame (``aper_rad`` and ``fwhm_px`` in its
    meta); ``isolation`` (px) the distance to the nearest other detection (with
    ``snr >= neighbour_snr``: noise peaks do not count) below which a source is left out
    (default: the annulus' inner radius, so that no neighbour enters the aperture or its
    surroundings; the annulus median is sigma-clipped).
    """
    from scipy.spatial import cKDTree

    from atd_dl.detect.centroid import aperture_fluxes

    frame = prepared.frame
    name = label or (frame.path.name if frame.path is not None else "frame")
    meta = catalog.meta
    radius = float(meta.get("aper_rad", meta.get("APER_RAD", np.nan)))
    fwhm = float(meta.get("fwhm_px", meta.get("FWHM_PX", np.nan)))
    image = np.asarray(prepared.image_e, dtype=np.float64)
    rms = np.broadcast_to(np.asarray(prepared.rms_e, dtype=np.float64), image.shape)
    # the pixels the detector measures: bad = masked but not saturated, or non-finite
    bad = (np.asarray(frame.mask, bool) & ~np.asarray(frame.saturated, bool)) | ~np.isfinite(image)
    img0 = np.where(bad, 0.0, image)
    var = rms**2 + (np.clip(img0, 0.0, None) if prepared.unit == "electron" else 0.0)
    x = np.asarray(catalog["x"], float) - frame.origin[0]
    y = np.asarray(catalog["y"], float) - frame.origin[1]
    snr = np.asarray(catalog["snr"], float)
    flags = np.asarray(catalog["flags"]).astype(np.int64)
    n_det = len(catalog)
    r_in = radius + 2.0 * fwhm
    r_out = r_in + 3.0 * fwhm
    nan = float("nan")

    # negative SNR: photutils (annulus background) at the same positions, and a 3x3 peak
    # above the annulus median
    neg = np.flatnonzero(snr < 0)
    n_peak = n_pos = 0
    if neg.size:
        fl, er, _, lvl = _photutils_fluxes(img0, var, rms, bad, x[neg], y[neg], radius, r_in, r_out)
        sig = box_significance(img0, rms, x[neg], y[neg], bad, np.nan_to_num(lvl))
        n_peak = int(np.sum(sig > 3.0))
        n_pos = int(np.sum(fl > 3.0 * er))
    low = has_flag(flags, SourceFlag.LOW_SNR)
    inconsistent = int(np.sum(low != (snr < low_snr)))

    ny, nx = image.shape
    sel = (flags == 0) & (snr > min_snr) & np.isfinite(x) & np.isfinite(y)
    sel &= (x >= r_out) & (x <= nx - 1 - r_out) & (y >= r_out) & (y <= ny - 1 - r_out)
    iso_r = r_in if isolation is None else float(isolation)
    real = snr >= neighbour_snr
    if real.sum() > 1:
        tree = cKDTree(np.column_stack([x[real], y[real]]))
        near = tree.query_ball_point(np.column_stack([x, y]), iso_r, return_length=True)
        sel &= np.asarray(near) - real.astype(int) == 0
    idx = np.flatnonzero(sel)
    med = scat = smed = sscat = rmed = nan
    if idx.size:
        flux, err, raw, _ = _photutils_fluxes(
            img0, var, rms, bad, x[idx], y[idx], radius, r_in, r_out
        )
        med, scat = _robust(np.asarray(catalog["flux"], float)[idx] / flux)
        smed, sscat = _robust(snr[idx] / (flux / err))
        # bare apertures, no local background on either side: aperture vs background
        ours_raw, _ = aperture_fluxes(
            img0.astype(np.float32), x[idx], y[idx], radius, 1.0, poisson=False, mask=bad
        )
        rmed, _ = _robust(ours_raw / raw)
    return PhotometryAgreement(
        name, prepared.unit, prepared.gain, radius, fwhm, n_det, int(idx.size), med, scat,
        smed, sscat, rmed, int(neg.size), n_peak, n_pos, inconsistent, low_snr,
    )  # fmt: skip
