"""psphot-style peak detection (Magnier et al. 2020, §4.3–4.4), as a baseline.

Stages:

1. **Image preparation** — signal (background-subtracted flux), variance and a 16-bit
   mask image whose bits follow the paper's Table 4 (:class:`MaskBits`). Variance comes
   from gain and read noise (Poisson + read noise on the un-subtracted counts) when
   both are known, else from the Background2D RMS map. Pixels with "bad" bits get no
   weight; "suspect" bits are kept for detection and reported.
2. **Significance image** — flux and variance are smoothed with a small circular
   Gaussian applied as two 1-D passes; the flux with kernel k, the variance with k²,
   so ``S = (k ⋆ F) / sqrt(k² ⋆ V)`` is the exact signal-to-noise of the smoothed image
   for independent pixels (the covariance correction).
3. **Peaks** — pixels of S above ``threshold`` that are not lower than any of their 8
   neighbours; among equal neighbours only the one with the largest x and y survives
   (flat tops give one peak at their max-x, max-y corner).
4. **Sub-pixel position** — a bi-quadratic ``f = C00 + C10 x + C01 y + C11 xy + C20 x² +
   C02 y²`` least-squares fit to the 3×3 pixels of the smoothed flux around each peak;
   the vertex is ``x = (C11 C01 − 2 C02 C10)/D``, ``y = (C11 C10 − 2 C20 C01)/D``,
   ``D = 4 C20 C02 − C11²``. (The fit solves the normal equations exactly; the paper's
   printed matrix has 6 where Σx²y² over the 3×3 grid is 4, which would bias C11.)
   Fits that are not a maximum or move more than one pixel keep the peak pixel.
5. **Footprints and culling** — connected regions of S above threshold, grown by a disk
   of ``grow_radius`` px (regions that touch after growing merge). For every peak that
   is not the brightest in its footprint, the *key col* is the lowest S value on the
   highest path to a higher peak (a topographic saddle). The peak is culled when the
   col is less than ``cull_nsigma`` below it (``S_peak − S_col < cull_nsigma``): it is
   formally but not locally significant. Near saturation (peak flux above half the
   saturation level) the col must in addition be 5 % of saturation below the peak
   flux. Culling relative to any higher peak equals psphot's rule of testing against
   the brighter peaks already kept (a culled peak's own higher neighbour lies in the
   same region), so one pass in decreasing height suffices.

Key cols are found without per-pixel loops: a marker watershed of −S restricted to the
footprints splits them into one basin per peak; the pass height between two touching
basins is the largest ``min(S_a, S_b)`` over neighbouring pixel pairs across their
boundary; merging basins along passes in decreasing height (union–find over peaks)
gives each peak's col when its basin first joins a basin with a higher summit.

Fluxes are matched-filter estimates for a Gaussian PSF of the smoothing width:
``flux = (k ⋆ F)/Σk²`` with error ``sqrt(k² ⋆ V)/Σk²``, so ``snr`` equals S at the peak.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage

from atd_dl.baselines.base import (
    FLAG_BLENDED,
    FLAG_MASKED,
    FLAG_SATURATED,
    BaseFinder,
    background_maps,
    make_catalog,
    neighbourhood_any,
    position_error,
    prepare_image,
    sweep,
)

__all__ = [
    "BAD_BITS",
    "SUSPECT_BITS",
    "MaskBits",
    "PsphotFinder",
    "PsphotResult",
    "biquadratic_peaks",
    "build_mask",
    "build_variance",
    "cull_peaks",
    "find_footprints",
    "find_peaks",
    "key_cols",
    "significance_image",
]


class MaskBits(enum.IntFlag):
    """16-bit mask values of psphot / GPC1 (Magnier et al. 2020, Table 4)."""

    DETECTOR = 0x0001  #: detector defect
    FLAT = 0x0002  #: flat field unreliable
    DARK = 0x0004  #: dark model unreliable
    BLANK = 0x0008  #: no valid data (non-finite, outside the data window)
    CTE = 0x0010  #: poor charge transfer
    SAT = 0x0020  #: saturated
    LOW = 0x0040  #: lower than expected (dead)
    SUSPECT = 0x0080  #: suspect, reason unknown (shared with BURNTOOL)
    CR = 0x0100  #: cosmic ray
    SPIKE = 0x0200  #: diffraction spike
    GHOST = 0x0400  #: optical ghost
    STREAK = 0x0800  #: streak
    STARCORE = 0x1000  #: bright star core
    CONV_BAD = 0x2000  #: bad after convolution with a bad pixel
    CONV_POOR = 0x4000  #: poor after convolution with a bad pixel
    MARK = 0x8000  #: internal temporary mark


#: bits that exclude a pixel from detection (SAT is handled separately: kept for peaks)
BAD_BITS = int(
    MaskBits.DETECTOR
    | MaskBits.FLAT
    | MaskBits.DARK
    | MaskBits.BLANK
    | MaskBits.CTE
    | MaskBits.LOW
    | MaskBits.CR
    | MaskBits.CONV_BAD
)
#: bits that mark a pixel as usable but possibly biased
SUSPECT_BITS = int(
    MaskBits.SUSPECT
    | MaskBits.SPIKE
    | MaskBits.GHOST
    | MaskBits.STREAK
    | MaskBits.STARCORE
    | MaskBits.CONV_POOR
)


def build_mask(
    data: np.ndarray,
    *,
    saturation: float | None = None,
    bad_level: float | None = None,
    window: tuple[int, int, int, int] | None = None,
    bad: np.ndarray | None = None,
    suspect: np.ndarray | None = None,
) -> np.ndarray:
    """uint16 mask image from the paper's three default rules plus user masks.

    SAT where ``data ≥ saturation``; LOW where ``data < bad_level``; BLANK for
    non-finite pixels and outside ``window = (x0, x1, y0, y1)`` (0-based, half-open);
    DETECTOR where ``bad`` is True; SUSPECT where ``suspect`` is True.
    """
    mask = np.zeros(data.shape, dtype=np.uint16)
    finite = np.isfinite(data)
    mask[~finite] |= np.uint16(MaskBits.BLANK)
    with np.errstate(invalid="ignore"):
        if saturation is not None:
            mask[finite & (data >= saturation)] |= np.uint16(MaskBits.SAT)
        if bad_level is not None:
            mask[finite & (data < bad_level)] |= np.uint16(MaskBits.LOW)
    if window is not None:
        x0, x1, y0, y1 = window
        inside = np.zeros(data.shape, dtype=bool)
        inside[y0:y1, x0:x1] = True
        mask[~inside] |= np.uint16(MaskBits.BLANK)
    if bad is not None:
        mask[np.asarray(bad, bool)] |= np.uint16(MaskBits.DETECTOR)
    if suspect is not None:
        mask[np.asarray(suspect, bool)] |= np.uint16(MaskBits.SUSPECT)
    return mask


def build_variance(
    data: np.ndarray,
    background: np.ndarray,
    *,
    gain: float | None = None,
    read_noise: float | None = None,
    background_rms: np.ndarray | None = None,
) -> np.ndarray:
    """Per-pixel variance (ADU²).

    With ``gain`` (e-/ADU) and ``read_noise`` (e-): ``max(data, 0)/gain + (rn/gain)²``
    on the un-subtracted counts (sky + sources). Otherwise the background RMS map
    squared plus, when only the gain is known, the source Poisson term
    ``max(data − background, 0)/gain``.
    """
    if gain and read_noise is not None:
        return (np.clip(data, 0, None) / gain + (read_noise / gain) ** 2).astype(np.float32)
    if background_rms is None:
        raise ValueError("need gain and read_noise, or a background RMS map")
    var = background_rms.astype(np.float32) ** 2
    if gain:
        var = var + np.clip(data - background, 0, None) / gain
    return var.astype(np.float32)


def _gauss1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    r = max(1, int(math.ceil(truncate * sigma)))
    x = np.arange(-r, r + 1, dtype=float)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def significance_image(
    flux: np.ndarray, variance: np.ndarray, sigma: float, *, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Smoothed S/N image.

    Returns ``(S, smoothed_flux, smoothed_variance, sum_k2)`` where the smoothed flux is
    ``k ⋆ F``, the smoothed variance ``k² ⋆ V`` (the variance of ``k ⋆ F`` for
    independent pixels), ``S = (k ⋆ F)/sqrt(k² ⋆ V)`` and ``sum_k2 = Σk²`` of the 2-D
    kernel. Pixels with ``weight`` False contribute nothing. Two 1-D passes each.
    """
    w1 = _gauss1d(sigma)
    f = flux.astype(np.float64)
    v = variance.astype(np.float64)
    if weight is not None:
        f = np.where(weight, f, 0.0)
        v = np.where(weight, v, 0.0)
    sf = ndimage.correlate1d(
        ndimage.correlate1d(f, w1, axis=0, mode="constant"), w1, axis=1, mode="constant"
    )
    w2 = w1**2
    sv = ndimage.correlate1d(
        ndimage.correlate1d(v, w2, axis=0, mode="constant"), w2, axis=1, mode="constant"
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(sv > 0, sf / np.sqrt(np.where(sv > 0, sv, 1.0)), 0.0)
    return s.astype(np.float32), sf.astype(np.float32), sv.astype(np.float32), float(w2.sum() ** 2)


def find_peaks(
    image: np.ndarray, threshold: float, *, border: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """8-neighbour local maxima above ``threshold``, psphot's tie rule; returns (y, x).

    A pixel is a peak when no neighbour is higher and every equal neighbour has
    smaller-or-equal x and y. Pixels within ``border`` of the edge are skipped.
    """
    img = np.asarray(image, dtype=np.float64)
    ny, nx = img.shape
    b = max(1, int(border))
    if ny <= 2 * b or nx <= 2 * b:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    core = img[b : ny - b, b : nx - b]
    ok = core > threshold
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            nb = img[b + dy : ny - b + dy, b + dx : nx - b + dx]
            ok &= nb <= core
            if dy > 0 or dx > 0:
                # an equal neighbour at larger x or larger y wins the tie
                ok &= ~(nb == core)
    ys, xs = np.nonzero(ok)
    return ys + b, xs + b


# design matrix of the bi-quadratic on the 3x3 grid, rows in (dy, dx) raster order
_GY, _GX = np.mgrid[-1:2, -1:2]
_DESIGN = np.column_stack(
    [np.ones(9), _GX.ravel(), _GY.ravel(), (_GX * _GY).ravel(), (_GX**2).ravel(), (_GY**2).ravel()]
).astype(float)
_PINV = np.linalg.pinv(_DESIGN)  # (6, 9): exact least-squares solution of the normal equations


def biquadratic_peaks(
    image: np.ndarray, ys: np.ndarray, xs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-pixel vertex of a bi-quadratic fitted to the 3×3 pixels around each peak.

    Returns ``(x, y, ok)`` in 0-based pixels; where the fit has no maximum (D ≤ 0 or
    C20, C02 ≥ 0) or the vertex lies more than 1 px away, the peak pixel is returned and
    ``ok`` is False.
    """
    ys = np.asarray(ys, np.intp)
    xs = np.asarray(xs, np.intp)
    n = len(ys)
    if n == 0:
        z = np.zeros(0)
        return z, z, np.zeros(0, bool)
    stamps = np.stack(
        [image[ys + dy, xs + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=1
    ).astype(float)
    c00, c10, c01, c11, c20, c02 = (stamps @ _PINV.T).T
    d = 4.0 * c20 * c02 - c11**2
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = (c11 * c01 - 2.0 * c02 * c10) / d
        dy = (c11 * c10 - 2.0 * c20 * c01) / d
    ok = (d > 0) & (c20 < 0) & (c02 < 0) & (np.abs(dx) <= 1.0) & (np.abs(dy) <= 1.0)
    dx = np.where(ok, dx, 0.0)
    dy = np.where(ok, dy, 0.0)
    return xs + dx, ys + dy, ok


def find_footprints(
    significance: np.ndarray, threshold: float, grow_radius: int = 3
) -> tuple[np.ndarray, int]:
    """Label image of footprints: S > threshold, grown by a disk of ``grow_radius`` px."""
    above = significance > threshold
    if grow_radius > 0 and above.any():
        r = int(grow_radius)
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        above = ndimage.binary_dilation(above, structure=(xx**2 + yy**2) <= r * r)
    labels, n = ndimage.label(above, structure=np.ones((3, 3), bool))
    return labels.astype(np.int32), int(n)


def key_cols(
    significance: np.ndarray, ys: np.ndarray, xs: np.ndarray, footprints: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Key col of every peak inside its footprint.

    Returns ``(col, col_y, col_x, higher)``: the col height in S (``-inf`` for the
    highest peak of a footprint, which has none), the pixel of the col on the peak's
    side of the pass, and the index of the higher peak first reached (-1 if none).
    """
    from skimage.segmentation import watershed

    n = len(ys)
    col = np.full(n, -np.inf)
    col_y = np.full(n, -1, np.intp)
    col_x = np.full(n, -1, np.intp)
    higher = np.full(n, -1, np.intp)
    if n < 2:
        return col, col_y, col_x, higher
    s = np.asarray(significance, np.float64)
    inside = footprints > 0
    markers = np.zeros(s.shape, np.int32)
    markers[ys, xs] = np.arange(1, n + 1)
    # every other regional maximum inside the footprints seeds a "phantom" basin, so
    # that each pixel is reached from its summit along non-decreasing values
    from skimage.morphology import local_maxima

    plateau, n_plat = ndimage.label(
        local_maxima(s, connectivity=2) & inside, structure=np.ones((3, 3), bool)
    )
    has_peak = np.zeros(n_plat + 1, bool)
    has_peak[plateau[ys, xs]] = True
    phantom = (plateau > 0) & ~has_peak[plateau] & (markers == 0)
    ph_labels, n_ph = ndimage.label(phantom, structure=np.ones((3, 3), bool))
    markers[phantom] = n + ph_labels[phantom]
    basins = watershed(-s, markers=markers, mask=inside, connectivity=2)
    n_nodes = n + n_ph
    summit = np.empty(n_nodes)
    summit[:n] = s[ys, xs]
    if n_ph:
        summit[n:] = ndimage.maximum(s, ph_labels, np.arange(1, n_ph + 1))
    # pass heights between touching basins, over the 4 forward 8-neighbour offsets
    la_all, lb_all, h_all, pa_all = [], [], [], []
    ny, nx = s.shape
    flat_idx = np.arange(s.size).reshape(s.shape)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        y0, y1 = 0, ny - dy
        x0, x1 = max(0, -dx), nx - max(0, dx)
        a = basins[y0:y1, x0:x1]
        b = basins[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        sel = (a != b) & (a > 0) & (b > 0)
        if not sel.any():
            continue
        sa = s[y0:y1, x0:x1][sel]
        sb = s[y0 + dy : y1 + dy, x0 + dx : x1 + dx][sel]
        ia = flat_idx[y0:y1, x0:x1][sel]
        ib = flat_idx[y0 + dy : y1 + dy, x0 + dx : x1 + dx][sel]
        la_all.append(a[sel])
        lb_all.append(b[sel])
        h_all.append(np.minimum(sa, sb))
        pa_all.append(np.where(sa <= sb, ia, ib))  # the lower pixel of the pair is the col
    if not la_all:
        return col, col_y, col_x, higher
    la = np.concatenate(la_all) - 1
    lb = np.concatenate(lb_all) - 1
    h = np.concatenate(h_all)
    pix = np.concatenate(pa_all)
    lo, hi = np.minimum(la, lb), np.maximum(la, lb)
    # keep the highest pass of each basin pair
    order = np.lexsort((-h, hi, lo))
    lo, hi, h, pix = lo[order], hi[order], h[order], pix[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    lo, hi, h, pix = lo[first], hi[first], h[first], pix[first]
    # elder rule: merge along passes from the highest down
    parent = np.arange(n_nodes)
    top = np.arange(n_nodes)  # highest node of each component (valid at roots)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in np.argsort(-h, kind="stable"):
        ra, rb = root(int(lo[k])), root(int(hi[k]))
        if ra == rb:
            continue
        ta, tb = top[ra], top[rb]
        low_top, high_top = (ta, tb) if (summit[ta], ta) < (summit[tb], tb) else (tb, ta)
        if low_top < n:  # phantom summits need no col
            col[low_top] = h[k]
            col_y[low_top], col_x[low_top] = divmod(int(pix[k]), nx)
            higher[low_top] = high_top if high_top < n else -1
        parent[ra] = rb
        top[rb] = high_top
    return col, col_y, col_x, higher


def cull_peaks(
    peak_value: np.ndarray,
    col: np.ndarray,
    nsigma_delta: float = 4.0,
    *,
    peak_flux: np.ndarray | None = None,
    col_flux: np.ndarray | None = None,
    saturation: float | None = None,
    sat_fraction: float = 0.5,
    sat_drop: float = 0.05,
) -> np.ndarray:
    """Keep-mask: False for peaks whose key col is less than ``nsigma_delta`` below them.

    Peaks without a col (``-inf``) are kept. With ``saturation``, peaks whose flux
    exceeds ``sat_fraction``·saturation also need ``peak_flux − col_flux ≥ sat_drop``·saturation.
    """
    drop = np.asarray(peak_value, float) - np.asarray(col, float)
    keep = drop >= nsigma_delta
    if saturation is not None and peak_flux is not None and col_flux is not None:
        near_sat = np.asarray(peak_flux, float) > sat_fraction * saturation
        flux_drop = np.asarray(peak_flux, float) - np.asarray(col_flux, float)
        keep &= ~(near_sat & np.isfinite(col) & (flux_drop < sat_drop * saturation))
    return keep


@dataclass
class PsphotResult:
    """Output of :meth:`PsphotFinder.run`: catalog plus the intermediate images."""

    catalog: Table
    significance: np.ndarray
    mask: np.ndarray
    footprints: np.ndarray
    n_peaks: int
    n_culled: int


@dataclass
class PsphotFinder(BaseFinder):
    """psphot-style detector; ``threshold`` = PEAKS_NSIGMA_LIMIT in S/N units.

    ``smooth_fwhm`` px of the Gaussian smoothing (≈ the PSF FWHM); ``grow_radius`` px
    (FOOTPRINT_GROW_RADIUS); ``cull_nsigma`` (FOOTPRINT_CULL_NSIGMA_DELTA, PS1 uses 4);
    ``gain`` e-/ADU and ``read_noise`` e- for the variance model; ``saturation`` and
    ``bad_level`` ADU for the SAT / LOW mask bits; ``max_peaks`` keeps the most
    significant (PEAKS_NMAX).
    """

    name: ClassVar[str] = "psphot"
    SWEEP_DENSE: ClassVar[tuple[float, ...]] = tuple(sweep(2.0, 8.0, 0.1))
    SWEEP_PAPER: ClassVar[tuple[float, ...]] = (3.0, 3.3, 3.5, 3.7, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5)

    threshold: float = 5.0
    smooth_fwhm: float = 2.0
    grow_radius: int = 3
    cull_nsigma: float = 4.0
    gain: float | None = None
    read_noise: float | None = None
    saturation: float | None = None
    bad_level: float | None = None
    back_size: int = 64
    back_filtersize: int = 3
    max_peaks: int | None = None
    edge: int = 3

    def __call__(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
    ) -> Table:
        """Detect sources; returns the standard catalog (0-based x, y)."""
        return self.run(data, mask=mask, wcs=wcs, threshold=threshold).catalog

    def run(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
        mask_bits: np.ndarray | None = None,
    ) -> PsphotResult:
        """Full run; ``mask_bits`` (uint16, :class:`MaskBits`) is OR-ed into the built mask."""
        thresh = self._threshold(threshold)
        prepare_image(data, mask, name="psphot input")  # validates shape and mask
        raw = np.asarray(data, dtype=np.float32)
        mbits = build_mask(raw, saturation=self.saturation, bad_level=self.bad_level, bad=mask)
        if mask_bits is not None:
            mbits |= np.asarray(mask_bits, np.uint16)
        unusable = (mbits & BAD_BITS) != 0
        img, bad = prepare_image(raw, unusable, name="psphot input")
        bkg, rms = background_maps(
            img, bad, box_size=self.back_size, filter_size=self.back_filtersize
        )
        flux = img - bkg
        var = build_variance(
            img, bkg, gain=self.gain, read_noise=self.read_noise, background_rms=rms
        )
        sigma = self.smooth_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        sig, sflux, svar, sum_k2 = significance_image(flux, var, sigma, weight=~bad)
        ys, xs = find_peaks(sig, thresh)
        if self.max_peaks is not None and len(ys) > self.max_peaks:
            best = np.argsort(-sig[ys, xs], kind="stable")[: self.max_peaks]
            ys, xs = ys[best], xs[best]
        n_peaks = len(ys)
        foot, _ = find_footprints(sig, thresh, self.grow_radius)
        col, col_y, col_x, _ = key_cols(sig, ys, xs, foot)
        col_flux = np.where(
            col_y >= 0, sflux[np.clip(col_y, 0, None), np.clip(col_x, 0, None)], np.nan
        )
        keep = cull_peaks(
            sig[ys, xs],
            col,
            self.cull_nsigma,
            peak_flux=sflux[ys, xs],
            col_flux=col_flux,
            saturation=self.saturation,
        )
        ys, xs, col = ys[keep], xs[keep], col[keep]
        x, y, fit_ok = biquadratic_peaks(sflux, ys, xs)
        snr = sig[ys, xs].astype(float)
        flux_mf = sflux[ys, xs].astype(float) / sum_k2
        flux_err = np.sqrt(svar[ys, xs].astype(float)) / sum_k2
        flags = np.zeros(len(ys), np.int32)
        flags[np.isfinite(col)] |= FLAG_BLENDED  # has a brighter peak in its footprint
        sat_pix = (mbits & MaskBits.SAT) != 0
        flags[neighbourhood_any(sat_pix, x, y)] |= FLAG_SATURATED
        flags[neighbourhood_any(bad, x, y)] |= FLAG_MASKED
        suspect = neighbourhood_any((mbits & SUSPECT_BITS) != 0, x, y)
        pos_err = position_error(sigma, snr)
        foot_area = (
            ndimage.sum_labels(np.ones_like(foot), foot, foot[ys, xs]) if len(ys) else np.zeros(0)
        )
        catalog = make_catalog(
            x,
            y,
            flux=flux_mf,
            flux_err=flux_err,
            snr=snr,
            x_err=pos_err,
            y_err=pos_err,
            area=np.asarray(foot_area, float),
            peak=flux[ys, xs].astype(float),
            flags=flags,
            shape=img.shape,
            edge=self.edge,
            wcs=wcs,
            gain=self.gain,
            extra={
                "footprint": foot[ys, xs].astype(np.int32),
                "key_col": col,
                "fit_ok": fit_ok,
                "suspect": suspect,
            },
            meta={"finder": self.name, "threshold": thresh, "smooth_fwhm": self.smooth_fwhm},
        )
        return PsphotResult(
            catalog=catalog,
            significance=sig,
            mask=mbits,
            footprints=foot,
            n_peaks=n_peaks,
            n_culled=int((~keep).sum()),
        )
