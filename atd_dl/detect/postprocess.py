"""Probability map to source catalog (paper §3.3): components, trails, deblending, centroids.

Pipeline of :func:`segment_sources` (criteria in :mod:`atd_dl.detect.deblend` and
``docs/detect.md``):

1. ``prob >= threshold`` -> binary mask -> 8-connected components (OpenCV); components
   smaller than ``min_area`` px are dropped.
2. Trail test first: elongated components whose intensity profile along the major axis is
   a plateau rather than a peak are flagged ``TRAIL`` and never deblended. Components with
   saturated pixels are neither trail-tested nor deblended (flagged ``SATURATED``).
3. Deblending of the other components (children flagged ``BLENDED``):

   a. two or more *distinct* intensity peaks -> one child per peak;
   b. a single peak but an intensity distribution significantly more elongated than the
      PSF (unresolved pair, separation down to ~1 FWHM) -> two children;
   c. otherwise circularity ``C = 4 pi A / P^2 < 0.7`` (Eq. 15) -> the paper's
      distance-transform seeded, circularity-controlled region growing.

   In (a) and (b) the light is shared between the children by a Gaussian-mixture
   (EM) fit with the PSF width, started at the peaks (a) or at the pair positions implied
   by the second moments (b); each child's position is the Eq. 16 centroid of its share
   of the light and its segment the pixels where it dominates.
4. Every source is measured: intensity-weighted centroid on the calibrated,
   background-subtracted frame with negative weights clipped (Eq. 16) and its uncertainty,
   circular-aperture flux (radius ``aperture_scale * FWHM``) and SNR, area, circularity,
   peak value and mean probability; then flags.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``. Intensities are in
electrons (``image_e``) when the gain is known; with ``poisson=False`` (gain unknown) the
noise model is the background rms alone and fluxes are in the image's unit.
Everything is vectorised over the frame; Python-level work is done only per non-trivial
component (trail candidates and blends).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from astropy import units as u
from astropy.stats import mad_std
from astropy.table import Table
from scipy import ndimage

from atd_dl.detect import deblend
from atd_dl.detect.centroid import (
    aperture_fluxes,
    estimate_fwhm,
    local_background,
    weighted_centroids,
    windowed_centroids,
)
from atd_dl.detect.flags import SourceFlag

#: Detection catalog columns of ``docs/DESIGN.md``, in order (``ra``, ``dec`` only when a WCS
#: is known). Shared by every catalog producer, the classical baselines included.
STANDARD_COLUMNS: tuple[str, ...] = (
    "id",
    "x",
    "y",
    "x_err",
    "y_err",
    "ra",
    "dec",
    "flux",
    "flux_err",
    "snr",
    "area",
    "circularity",
    "peak",
    "prob",
    "flags",
)

#: Columns of :func:`extract_sources`: the standard ones without a sky position (the
#: pipeline adds ``ra``/``dec``) plus ``parent`` of deblended children.
CATALOG_COLUMNS: tuple[str, ...] = (
    *(c for c in STANDARD_COLUMNS if c not in ("ra", "dec")),
    "parent",
)


@dataclass(frozen=True)
class PostprocessConfig:
    """Parameters of the post-processing (defaults = the documented operating point)."""

    min_area: int = 2  # px; smaller components are dropped (paper labels: >= 2 px)
    # ... unless their peak probability reaches this (> 1 = never): undersampled bright
    # stars can leave a single pixel above the threshold
    small_peak_prob: float = 1.01
    circularity_threshold: float = 0.7  # Eq. 15 blend criterion
    min_blend_area: int = 6  # px; smaller components always count as round
    min_child_area: int = 2  # px; smallest sub-target of the shape (growth) split
    max_children: int = 4  # shape split: at most this many sub-targets
    deblend: bool = True  # False: no splitting at all (trails still flagged)
    peak_smooth_sigma: float = 0.5  # px; Gaussian smoothing before peak finding
    deblend_nsigma: float = 3.0  # dip between peaks must exceed this many sigma
    deblend_contrast: float = 0.05  # ... and this fraction of the secondary peak
    pair_nsigma: float = 5.0  # elongation excess over the PSF must exceed this many sigma
    pair_min_excess: float = 0.5  # ... and this fraction of sigma_psf^2 (px^2)
    pair_min_separation: float = 0.5  # px; closer mixture pairs are not split
    pair_min_fraction: float = 0.05  # fainter child must hold this fraction of the light
    mixture_iterations: int = 25  # EM iterations of the flux-sharing fit
    max_mixture_peaks: int = 16  # more distinct peaks: steepest-ascent basins, no EM
    max_deblend_area: int = 2500  # px; larger components are never deblended
    trail_min_elongation: float = 4.0  # sqrt(l1/l2) of the pixel second moments
    trail_min_length: float = 12.0  # px, sqrt(12 l1)
    trail_plateau_nsigma: float = 3.0  # median track profile must exceed this many sigma
    trail_gap_fraction: float = 0.7  # no profile bin below (1 - this) x the median level
    aperture_scale: float = 1.5  # aperture radius = scale * FWHM
    min_aperture_radius: float = 1.5  # px
    aperture_method: str = "fast"  # "fast" (vectorised) or "exact" (photutils)
    default_fwhm: float = 2.0  # px, used when too few stars to measure it
    low_snr: float = 3.0  # LOW_SNR flag below this aperture SNR
    # subtract the median of an annulus around each source (other sources and masked
    # pixels excluded) from the aperture flux: corrects a frame background that is off
    # near bright stars, nebulosity and in crowded fields
    local_background: bool = True
    # "windowed": Eq. 16 centroid refined by a Gaussian-windowed iteration (like XWIN) for
    # isolated, non-trail sources; "segment": the paper's Eq. 16 over the segment pixels only
    centroid: str = "windowed"


@dataclass
class Extraction:
    """Result of :func:`segment_sources`."""

    catalog: Table  # catalog columns (no ra/dec), one row per source
    segmap: np.ndarray  # int32 [ny, nx]: catalog ``id`` of each pixel, 0 = background
    fwhm: float  # px, the FWHM used for the aperture
    aperture_radius: float  # px
    n_components: int  # connected components before deblending
    background_rms: float  # median background rms used (image units)


def _empty_catalog(unit: u.UnitBase) -> Table:
    """Catalog with all columns and zero rows."""
    z = np.zeros(0)
    zi = np.zeros(0, dtype=np.int64)
    return _make_table(zi, z, z, z, z, z, z, z, zi, z, z, z, zi, zi, unit)


def _local_background_correction(
    img: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    fwhm: float,
    flux: np.ndarray,
    flux_err: np.ndarray,
    seg: np.ndarray,
    bad: np.ndarray | None,
    rms: np.ndarray | float,
    cfg: PostprocessConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Aperture flux minus area x local residual background (median of source-free pixels
    in cells of max(16, 8 FWHM) px, :func:`local_background`); its error is added to
    ``flux_err``."""
    exclude = seg > 0 if bad is None else (seg > 0) | bad
    box = int(max(16, round(8 * fwhm)))
    level, count = local_background(img, x, y, box, exclude=exclude)
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
    rms_at = np.broadcast_to(np.asarray(rms, dtype=np.float64), img.shape)[
        np.clip(np.rint(y).astype(np.int64), 0, img.shape[0] - 1),
        np.clip(np.rint(x).astype(np.int64), 0, img.shape[1] - 1),
    ]
    level_err = np.where(count > 0, 1.2533 * rms_at / np.sqrt(np.maximum(count, 1)), 0.0)
    return flux - area * level, np.sqrt(flux_err**2 + (area * level_err) ** 2)


def _make_table(
    ids: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    x_err: np.ndarray,
    y_err: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    snr: np.ndarray,
    area: np.ndarray,
    circ: np.ndarray,
    peak: np.ndarray,
    prob: np.ndarray,
    flags: np.ndarray,
    parent: np.ndarray,
    unit: u.UnitBase,
) -> Table:
    t = Table()
    t["id"] = np.asarray(ids, dtype=np.int64)
    t["x"] = np.asarray(x, dtype=np.float64)
    t["x"].unit = u.pix
    t["y"] = np.asarray(y, dtype=np.float64)
    t["y"].unit = u.pix
    t["x_err"] = np.asarray(x_err, dtype=np.float64)
    t["x_err"].unit = u.pix
    t["y_err"] = np.asarray(y_err, dtype=np.float64)
    t["y_err"].unit = u.pix
    t["flux"] = np.asarray(flux, dtype=np.float64)
    t["flux"].unit = unit
    t["flux_err"] = np.asarray(flux_err, dtype=np.float64)
    t["flux_err"].unit = unit
    t["snr"] = np.asarray(snr, dtype=np.float64)
    t["area"] = np.asarray(area, dtype=np.int64)
    t["area"].unit = u.pix**2
    t["circularity"] = np.asarray(circ, dtype=np.float64)
    t["peak"] = np.asarray(peak, dtype=np.float64)
    t["peak"].unit = unit
    t["prob"] = np.asarray(prob, dtype=np.float64)
    t["flags"] = np.asarray(flags, dtype=np.int32)
    t["parent"] = np.asarray(parent, dtype=np.int64)
    descriptions = {
        "id": "source number (= value in the segmentation map)",
        "x": "intensity-weighted centroid, 0-based column (pixel centre = integer)",
        "y": "intensity-weighted centroid, 0-based row (pixel centre = integer)",
        "x_err": "1-sigma centroid uncertainty in x",
        "y_err": "1-sigma centroid uncertainty in y",
        "flux": "circular-aperture flux, background subtracted",
        "flux_err": "1-sigma aperture flux uncertainty",
        "snr": "aperture signal-to-noise ratio flux / flux_err",
        "area": "pixels in the source's segment",
        "circularity": "4 pi A / P^2 of the segment (Eq. 15)",
        "peak": "maximum background-subtracted pixel value in the segment",
        "prob": "confidence: peak network probability in the segment (cut on it to trade "
        "completeness for purity)",
        "flags": "bit mask: 1 blended, 2 trail, 4 saturated, 8 masked, 16 near edge, 32 low SNR",
        "parent": "component number a deblended child came from (0 = not deblended)",
    }
    for name, text in descriptions.items():
        t[name].description = text
    return t


def _sorted_max(lab: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-label maximum of ``values`` (labels 1..n, every label present) by one sort."""
    order = np.argsort(lab, kind="stable")
    ls = lab[order]
    vs = values[order]
    starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
    out = np.full(n + 1, -np.inf)
    out[ls[starts]] = np.maximum.reduceat(vs, starts)
    return out[1:]


def _background_rms(img: np.ndarray, exclude: np.ndarray) -> float:
    """Robust (MAD) rms of the pixels outside ``exclude``, on a 1-in-4 subsample."""
    vals = img[::2, ::2][~exclude[::2, ::2]]
    if vals.size < 10:
        vals = img[~exclude]
    if vals.size < 10:
        return 1.0
    rms = float(mad_std(vals))
    return rms if np.isfinite(rms) and rms > 0 else 1.0


def _bbox_cut(stats: np.ndarray, lab: int | np.integer) -> tuple[slice, slice]:
    x0, y0, w, h = (int(v) for v in stats[lab - 1, :4])
    return slice(y0, y0 + h), slice(x0, x0 + w)


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
) -> Extraction:
    """Probability map -> catalog + segmentation map (see the module docstring).

    ``prob`` float [ny, nx] in [0, 1]; ``image_e`` the calibrated background-subtracted
    frame (electrons; NaN allowed); ``mask`` True = unusable pixel; ``background_rms_e``
    per-pixel (or scalar) background rms, estimated robustly from source-free pixels when
    None; ``saturated`` True = saturated pixel; ``edge`` px for the NEAR_EDGE flag;
    ``fwhm`` px (PSF width for deblending and the aperture; measured from bright isolated
    sources when None); ``poisson`` adds the sources' shot noise (needs electrons);
    ``unit`` of the flux columns.
    """
    cfg = config or PostprocessConfig()
    unit = u.Unit(unit)
    prob = np.asarray(prob)
    img = np.asarray(image_e, dtype=np.float32)
    if prob.ndim != 2 or prob.shape != img.shape:
        raise ValueError(
            f"prob {prob.shape} and image_e {img.shape} must be 2-D arrays of the same shape"
        )
    ny, nx = img.shape
    bad = ~np.isfinite(img)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    any_bad = bool(bad.any())
    img0 = np.where(bad, np.float32(0), img) if any_bad else img
    sat = None if saturated is None else np.asarray(saturated, dtype=bool)
    any_sat = sat is not None and bool(sat.any())
    kernel = np.ones((3, 3), np.uint8)

    # 1. binary mask -> 8-connected components; small ones dropped
    binary = np.ascontiguousarray((prob >= threshold).view(np.uint8))  # NaN compares False
    n_raw, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary, connectivity=8, ltype=cv2.CV_32S
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= cfg.min_area
    if cfg.small_peak_prob <= 1.0:  # undersampled stars: a confident single pixel counts
        small = ~keep
        small[0] = False
        if small.any():
            peak_p = np.zeros(n_raw)
            pv = np.nan_to_num(np.asarray(prob, dtype=np.float64).ravel(), nan=0.0)
            np.maximum.at(peak_p, np.asarray(labels, dtype=np.int64).ravel(), pv)
            keep |= small & (peak_p >= cfg.small_peak_prob)
    keep[0] = False
    n = int(keep.sum())
    if n < n_raw - 1:
        remap = np.zeros(n_raw, dtype=np.int32)
        remap[keep] = np.arange(1, n + 1, dtype=np.int32)
        labels = remap[labels]
    stats = stats[keep]

    if background_rms_e is None:
        rms: np.ndarray | float = _background_rms(img0, bad | (binary > 0))
    else:
        rms = np.asarray(background_rms_e, dtype=np.float32)
        if rms.ndim == 0:
            rms = float(rms)
        elif not np.all(np.isfinite(rms)):
            rms = np.where(np.isfinite(rms), rms, np.float32(np.nanmedian(rms)))
    rms_med = float(np.median(rms[::4, ::4])) if isinstance(rms, np.ndarray) else float(rms)
    if n == 0:
        fw = float(fwhm or cfg.default_fwhm)
        radius0 = max(cfg.aperture_scale * fw, cfg.min_aperture_radius)
        return Extraction(
            _empty_catalog(unit), np.zeros((ny, nx), dtype=np.int32), fw, radius0, 0, rms_med
        )

    fg = np.flatnonzero(labels)
    lab_fg = labels.ravel()[fg]
    img_fg = img0.ravel()[fg]
    fy, fx = np.divmod(fg, nx)
    rms_fg = rms.ravel()[fg] if isinstance(rms, np.ndarray) else np.full(fg.size, rms)
    var_fg = rms_fg.astype(np.float64) ** 2
    if poisson:
        var_fg += np.clip(img_fg, 0.0, None)

    # 2. per-component properties, vectorised
    mom = deblend.label_moments(labels, n, fg)
    circ_comp = deblend.label_circularity(labels, n)
    sat_fg = np.zeros(fg.size, dtype=bool)
    sat_comp = np.zeros(n + 1, dtype=bool)
    if any_sat and sat is not None:
        sat_fg = cv2.dilate(sat.view(np.uint8), kernel).ravel()[fg] > 0
        sat_comp = np.bincount(lab_fg, weights=sat_fg, minlength=n + 1) > 0
    bad_fg = np.zeros(fg.size, dtype=bool)
    bad_comp = np.zeros(n + 1, dtype=bool)
    if any_bad:
        bad_fg = cv2.dilate(bad.view(np.uint8), kernel).ravel()[fg] > 0
        bad_comp = np.bincount(lab_fg, weights=bad_fg, minlength=n + 1) > 0
    smooth = deblend.gaussian_smooth(img0, cfg.peak_smooth_sigma)
    nf = deblend.smoothing_noise_factor(cfg.peak_smooth_sigma)

    # 3. trail test first (trails are never deblended)
    trail = np.zeros(n + 1, dtype=bool)
    cand = np.flatnonzero(
        (mom["elongation"] >= cfg.trail_min_elongation)
        & (mom["length"] >= cfg.trail_min_length)
        & ~sat_comp
    )
    for lab in cand[cand > 0]:
        sl = _bbox_cut(stats, lab)
        cut = labels[sl] == lab
        ys, xs = np.nonzero(cut)
        sig2 = np.asarray(rms[sl][cut] if isinstance(rms, np.ndarray) else rms) ** 2
        vvar = (sig2 + (np.clip(img0[sl][cut], 0.0, None) if poisson else 0.0)) * nf**2
        trail[lab] = deblend.is_trail_profile(
            ys.astype(np.float64),
            xs.astype(np.float64),
            smooth[sl][cut],
            np.broadcast_to(vvar, ys.shape),
            float(mom["theta"][lab]),
            plateau_nsigma=cfg.trail_plateau_nsigma,
            gap_fraction=cfg.trail_gap_fraction,
        )

    # 4. peaks, PSF width, elongation
    py, px, pl, owner = deblend.distinct_peaks(
        smooth,
        labels,
        fg,
        var_fg,
        nsigma=cfg.deblend_nsigma,
        contrast=cfg.deblend_contrast,
        noise_factor=nf,
    )
    npk = np.bincount(pl, minlength=n + 1)
    first_peak = np.searchsorted(pl, np.arange(n + 1))
    imom = deblend.intensity_moments(lab_fg, fg, nx, n, img_fg, var_fg)
    peak_comp = _sorted_max(lab_fg, img_fg.astype(np.float64), n)
    rms_comp = np.sqrt(np.bincount(lab_fg, weights=var_fg, minlength=n + 1)[1:] / mom["area"][1:])
    single = (npk == 1) & ~trail & ~sat_comp & ~bad_comp
    single[0] = False
    good = np.flatnonzero(single[1:] & (peak_comp > 20.0 * rms_comp)) + 1
    good = good[np.argsort(-peak_comp[good - 1])][:300]
    if fwhm is None:
        gi = first_peak[good]
        used = estimate_fwhm(img0, px[gi], py[gi], default=cfg.default_fwhm)
    else:
        used = float(fwhm)
    sigma_psf = used / 2.3548
    delta_psf = float(np.median(imom["delta"][good])) if good.size >= 5 else 0.0

    # 5. deblending
    eligible = ~trail & ~sat_comp & (mom["area"] <= cfg.max_deblend_area)
    eligible[0] = False
    counts = np.ones(n + 1, dtype=np.int64)
    counts[0] = 0
    rank_fg = np.zeros(fg.size, dtype=np.int64)  # child index within its component
    grown: dict[int, np.ndarray] = {}
    mix_pos: dict[str, np.ndarray] = {}
    if cfg.deblend:
        many = np.flatnonzero(eligible & (npk > cfg.max_mixture_peaks))
        if many.size:  # crowded components: steepest-ascent basins of the distinct peaks
            in_many = np.zeros(n + 1, dtype=bool)
            in_many[many] = True
            sel_many = in_many[lab_fg]
            rank_fg[sel_many] = owner[sel_many] - first_peak[lab_fg[sel_many]]
            counts[many] = npk[many]
        multi = np.flatnonzero(eligible & (npk >= 2) & (npk <= cfg.max_mixture_peaks))
        excess = imom["delta"] - delta_psf
        pair = np.flatnonzero(
            eligible
            & (npk == 1)
            & (mom["area"] >= cfg.min_blend_area)
            & (excess >= cfg.pair_nsigma * imom["delta_err"])
            & (excess >= cfg.pair_min_excess * sigma_psf**2)
        )
        blends = np.r_[multi, pair]
        k = np.r_[npk[multi], np.full(pair.size, 2)]
        if blends.size:
            # initial mixture: the distinct peaks (multi) or +-d/2 along the major axis (pair)
            pk_idx = (
                np.concatenate([np.arange(first_peak[b], first_peak[b] + npk[b]) for b in multi])
                if multi.size
                else np.zeros(0, np.int64)
            )
            half = np.sqrt(np.maximum(excess[pair], 0.0))  # equal fluxes: d^2 / 4 = excess
            ax, ay = np.cos(imom["theta"][pair]), np.sin(imom["theta"][pair])
            x0 = np.r_[
                px[pk_idx],
                np.column_stack(
                    [imom["xc"][pair] - half * ax, imom["xc"][pair] + half * ax]
                ).ravel(),
            ]
            y0 = np.r_[
                py[pk_idx],
                np.column_stack(
                    [imom["yc"][pair] - half * ay, imom["yc"][pair] + half * ay]
                ).ravel(),
            ]
            f0 = np.r_[
                np.maximum(smooth.ravel()[py[pk_idx] * nx + px[pk_idx]], 1e-6),
                np.repeat(imom["flux"][pair] / 2.0 + 1e-6, 2),
            ]
            blend_of = np.full(n + 1, -1, dtype=np.int64)
            blend_of[blends] = np.arange(blends.size)
            sel = np.flatnonzero(blend_of[lab_fg] >= 0)
            group = blend_of[lab_fg[sel]]
            mix = deblend.mixture_deblend(
                group,
                fx[sel],
                fy[sel],
                img_fg[sel],
                var_fg[sel],
                k,
                x0,
                y0,
                f0,
                sigma_psf,
                iterations=cfg.mixture_iterations,
            )
            start = np.cumsum(k) - k
            ncomp = int(k.sum())
            owned = np.bincount(mix.owner, minlength=ncomp)
            blend_idx = np.repeat(np.arange(blends.size), k)
            ok = np.ones(blends.size, dtype=bool)
            ok &= np.bincount(blend_idx, weights=owned == 0, minlength=blends.size) == 0
            # pairs: real separation and a non-negligible fainter share
            npair0 = multi.size
            if pair.size:
                a_, b_ = start[npair0:], start[npair0:] + 1
                sep = np.hypot(mix.x[a_] - mix.x[b_], mix.y[a_] - mix.y[b_])
                frac = np.minimum(mix.flux[a_], mix.flux[b_]) / np.maximum(
                    mix.flux[a_] + mix.flux[b_], 1e-12
                )
                ok[npair0:] &= (sep >= cfg.pair_min_separation) & (frac >= cfg.pair_min_fraction)
            use = ok[group]
            rank_fg[sel[use]] = mix.owner[use] - start[group[use]]
            # multi-peak blends whose mixture failed fall back to the steepest-ascent basins
            fb = ~use & (npk[lab_fg[sel]] >= 2)
            rank_fg[sel[fb]] = owner[sel[fb]] - first_peak[lab_fg[sel[fb]]]
            done = blends[ok | (np.arange(blends.size) < npair0)]
            counts[done] = np.r_[k, np.zeros(0, np.int64)][ok | (np.arange(blends.size) < npair0)]
            mix_ids = np.flatnonzero(np.repeat(ok, k))
            mix_pos = {
                "comp": blends[blend_idx[mix_ids]],
                "rank": mix_ids - start[blend_idx[mix_ids]],
                "x": mix.x[mix_ids],
                "y": mix.y[mix_ids],
                "x_err": mix.x_err[mix_ids],
                "y_err": mix.y_err[mix_ids],
            }
        shaped = np.flatnonzero(
            eligible
            & (counts == 1)
            & (npk < 2)
            & (circ_comp < cfg.circularity_threshold)
            & (mom["area"] >= cfg.min_blend_area)
        )
        for lab in shaped:
            sl = _bbox_cut(stats, lab)
            cm = deblend.split_by_growth(
                labels[sl] == lab,
                circularity=float(circ_comp[lab]),
                threshold=cfg.circularity_threshold,
                min_child_area=cfg.min_child_area,
                min_blend_area=cfg.min_blend_area,
                max_children=cfg.max_children,
            )
            nk = int(cm.max())
            if nk >= 2:
                grown[int(lab)] = cm
                counts[lab] = nk

    # 6. final segmentation map: one id per source, children get consecutive ids
    first_id = np.cumsum(counts) - counts + 1
    n_src = int(counts.sum())
    seg_fg = (first_id[lab_fg] + rank_fg).astype(np.int32)
    seg = np.zeros(ny * nx, dtype=np.int32)
    seg[fg] = seg_fg
    seg = seg.reshape(ny, nx)
    for lab, cm in grown.items():
        sl = _bbox_cut(stats, lab)
        inside = cm > 0
        seg[sl][inside] = first_id[lab] + cm[inside] - 1
    if grown:
        seg_fg = seg.ravel()[fg]
    comp_of = np.r_[0, np.repeat(np.arange(n + 1), counts)]  # component of each source id
    split = counts > 1
    blended = split[comp_of]
    parent = np.where(blended, comp_of, 0)
    circ = circ_comp[comp_of].copy()
    if split.any():
        child_ids = np.flatnonzero(blended)
        boxes = ndimage.find_objects(seg)
        for i in child_ids:
            box = boxes[i - 1]
            circ[i] = deblend.mask_circularity(seg[box] == i) if box is not None else 1.0

    # 7. measurements on the final segments
    cen = weighted_centroids(seg_fg, fg, nx, n_src, img_fg, var_fg)
    x, y, x_err, y_err = cen.x.copy(), cen.y.copy(), cen.x_err.copy(), cen.y_err.copy()
    if mix_pos:
        ids = first_id[mix_pos["comp"]] + mix_pos["rank"] - 1
        x[ids], y[ids] = mix_pos["x"], mix_pos["y"]
        x_err[ids], y_err[ids] = mix_pos["x_err"], mix_pos["y_err"]
    if cfg.centroid == "windowed":
        single = ~(blended[1:] | trail[comp_of][1:])
        if single.any():
            var_img = rms.astype(np.float64) ** 2 if isinstance(rms, np.ndarray) else rms**2
            if poisson:
                var_img = var_img + np.clip(img0, 0.0, None)
            wx, wy, wxe, wye, wok = windowed_centroids(
                img0,
                x[single],
                y[single],
                used,
                variance=var_img,
                bad=bad if any_bad else None,
            )
            idx = np.flatnonzero(single)[wok]
            x[idx], y[idx] = wx[wok], wy[wok]
            x_err[idx], y_err[idx] = wxe[wok], wye[wok]
    elif cfg.centroid != "segment":
        raise ValueError(f"centroid must be 'windowed' or 'segment', got {cfg.centroid!r}")
    peak = _sorted_max(seg_fg, img_fg.astype(np.float64), n_src)
    prob_fg = np.nan_to_num(prob.ravel()[fg].astype(np.float64), nan=0.0)
    # confidence = the segment's peak probability: it rises with significance, and keeping
    # rows with prob >= t approximates a run at threshold t (one number to trade
    # completeness for purity)
    confidence = np.clip(_sorted_max(seg_fg, prob_fg, n_src), 0.0, 1.0)

    flags = np.zeros(n_src, dtype=np.int32)
    flags[blended[1:]] |= int(SourceFlag.BLENDED)
    flags[trail[comp_of][1:]] |= int(SourceFlag.TRAIL)
    if any_sat:
        sat_src = np.bincount(seg_fg, weights=sat_fg, minlength=n_src + 1) > 0
        flags[(sat_src | sat_comp[comp_of])[1:]] |= int(SourceFlag.SATURATED)
    if any_bad:
        bad_src = np.bincount(seg_fg, weights=bad_fg, minlength=n_src + 1)[1:] > 0
        flags[bad_src] |= int(SourceFlag.MASKED)
    near = (x < edge) | (y < edge) | (x > nx - 1 - edge) | (y > ny - 1 - edge)
    flags[near] |= int(SourceFlag.NEAR_EDGE)

    radius = max(cfg.aperture_scale * used, cfg.min_aperture_radius)
    flux, flux_err = aperture_fluxes(
        img0,
        x,
        y,
        radius,
        rms,
        poisson=poisson,
        mask=bad if any_bad else None,
        method=cfg.aperture_method,
    )
    if cfg.local_background:
        flux, flux_err = _local_background_correction(
            img0, x, y, radius, used, flux, flux_err, seg, bad if any_bad else None, rms, cfg
        )
    snr = np.where(flux_err > 0, flux / np.where(flux_err > 0, flux_err, 1.0), 0.0)
    flags[snr < cfg.low_snr] |= int(SourceFlag.LOW_SNR)

    table = _make_table(
        np.arange(1, n_src + 1),
        x,
        y,
        x_err,
        y_err,
        flux,
        flux_err,
        snr,
        cen.area,
        circ[1:],
        peak,
        confidence,
        flags,
        parent[1:],
        unit,
    )
    table.meta.update(
        {
            "threshold": float(threshold),
            "fwhm_px": float(used),
            "aper_rad": float(radius),
            "flux_unit": unit.to_string(),
            "n_comp": n,
            "bkg_rms": rms_med,
        }
    )
    return Extraction(table, seg, float(used), float(radius), n, rms_med)


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
