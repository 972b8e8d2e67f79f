"""Aperture photometry SNR of blobs and catalog positions (paper Eqs. 8–11).

Both measurements use the same recipe:

* the net signal ``F_e = (F_ADU − A·μ_B)·G`` (Eq. 9), where ``F_ADU`` is the sum of the
  aperture pixels, ``A`` the number of aperture pixels, ``μ_B`` the sky level and ``G`` the
  gain in e⁻/ADU;
* the background noise ``σ_bg = √A·σ_B·G`` (Eq. 10) with ``σ_B`` the per-pixel sky scatter;
* ``SNR = F_e / √(F_e + σ_bg²)`` (Eq. 11). A negative net signal adds no shot noise:
  the denominator uses ``max(F_e, 0)``, so faint negative fluctuations get a small
  negative SNR instead of a square root of a negative number.

``μ_B`` and ``σ_B`` are the sigma-clipped mean and (population) standard deviation of the
pixels in a concentric sky annulus. The clipping (``sigma`` = 3, a few iterations,
seeded with the local background map when given, else the median / MAD) removes
neighbouring stars, hot pixels and cosmics from the annulus.

Aperture membership uses the pixel centre ("center" method of photutils): a pixel
belongs to a circle of radius ``R`` around ``(x, y)`` when its centre lies within ``R``,
so with ``R = max|P_i − c| + 1`` (Eq. 8) every pixel of the blob is inside its aperture.
The sky annulus ``r_in <= d < r_out`` is centred on the pixel nearest to the aperture
centre, its radii rounded to 0.5 px, so that all apertures of one radius class share one
list of pixel offsets. The whole computation is vectorised: the pixels of all apertures
and annuli are gathered at once (grouped by size, in chunks), ~20× faster than looping
over photutils apertures and identical to ``photutils.aperture.ApertureStats`` (center
method) on the same pixels.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "ApertureSNR",
    "snr_from_counts",
    "aperture_snr",
    "box_snr",
    "blob_snr",
]

_MAX_CHUNK_ELEMENTS = 1_000_000
# pixel codes of the padded stamp gather
_BAD, _SAT, _OUTSIDE, _NOT_IN = 1, 2, 3, 255


@dataclass
class ApertureSNR:
    """Per-position aperture measurement (all arrays of length N)."""

    flux_adu: np.ndarray  # sum of usable aperture pixels, ADU
    area: np.ndarray  # usable aperture pixels (A)
    sky_mean: np.ndarray  # μ_B, ADU / pixel
    sky_std: np.ndarray  # σ_B, ADU / pixel
    sky_npix: np.ndarray  # annulus pixels left after clipping
    flux_e: np.ndarray  # F_e, electrons (Eq. 9)
    sigma_bg_e: np.ndarray  # σ_bg, electrons (Eq. 10)
    snr: np.ndarray  # Eq. 11
    n_bad: np.ndarray  # unusable (masked, non-saturated) pixels inside the aperture
    n_saturated: np.ndarray  # saturated pixels inside the aperture
    n_outside: np.ndarray  # aperture pixels falling outside the frame

    def __len__(self) -> int:
        return len(self.snr)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def snr_from_counts(
    flux_adu: np.ndarray | float,
    area: np.ndarray | float,
    sky_mean: np.ndarray | float,
    sky_std: np.ndarray | float,
    gain: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(F_e, σ_bg, SNR)`` from aperture counts (Eqs. 9–11).

    ``flux_adu`` is the summed aperture signal in ADU over ``area`` pixels, ``sky_mean`` and
    ``sky_std`` the per-pixel sky level and scatter in ADU, ``gain`` in e⁻/ADU.
    """
    if not np.isfinite(gain) or gain <= 0:
        raise ValueError(f"gain must be a positive number of e-/ADU, got {gain}")
    flux_adu = np.asarray(flux_adu, dtype=np.float64)
    area = np.asarray(area, dtype=np.float64)
    flux_e = (flux_adu - area * np.asarray(sky_mean, dtype=np.float64)) * gain
    sigma_bg = np.sqrt(area) * np.asarray(sky_std, dtype=np.float64) * gain
    var = np.maximum(flux_e, 0.0) + sigma_bg**2
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(var > 0, flux_e / np.sqrt(var), np.nan)
    return flux_e, sigma_bg, snr


def _clipped_stats(
    values: np.ndarray,
    use: np.ndarray,
    center: np.ndarray | None,
    scale: np.ndarray | None,
    sigma: float,
    iters: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise sigma-clipped mean, std (ddof=0) and count of ``values[use]``.

    The first pass clips around ``center ± sigma·scale`` (seeds, e.g. the background map;
    default the row median and 1.4826·MAD), later passes around the clipped mean ± sigma·std.
    """
    if center is None or scale is None:
        a = np.where(use, values, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            center = np.nanmedian(a, axis=1)
            scale = 1.4826 * np.nanmedian(np.abs(a - center[:, None]), axis=1)
    mean = np.asarray(center, dtype=np.float64)
    std = np.asarray(scale, dtype=np.float64)
    n = use.sum(axis=1)
    prev_n = None
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(max(iters, 1)):
            lim = (sigma * np.where(std > 0, std, np.inf)).astype(values.dtype)
            dev = values - mean.astype(values.dtype)[:, None]
            keep = use & (np.abs(dev) <= lim[:, None])
            dev *= keep
            n = keep.sum(axis=1)
            s1 = dev.sum(axis=1, dtype=np.float64)
            s2 = np.einsum("ij,ij->i", dev, dev, dtype=np.float64)
            m1 = s1 / n
            mean = mean + m1
            std = np.sqrt(np.maximum(s2 / n - m1**2, 0.0))
            if prev_n is not None and np.array_equal(n, prev_n):
                break
            prev_n = n
    return mean, std, n


def aperture_snr(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    gain: float,
    radius: np.ndarray | float | None = None,
    box: int | None = None,
    r_in: np.ndarray | float = 5.0,
    r_out: np.ndarray | float = 9.0,
    bad: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    sky_center: np.ndarray | None = None,
    sky_scale: np.ndarray | None = None,
    sigma: float = 3.0,
    iters: int = 2,
) -> ApertureSNR:
    """Aperture SNR (Eqs. 9–11) at many positions at once.

    Exactly one of ``radius`` (circular aperture centred on the sub-pixel ``(x, y)``,
    scalar or one radius per position) or ``box`` (an odd ``box × box`` square centred on the
    nearest pixel; the annulus is then centred on that pixel centre) must be given.

    Parameters
    ----------
    data : ndarray [ny, nx]
        Calibrated frame, ADU (not background subtracted: the annulus gives the sky).
    x, y : array_like [N]
        Positions, 0-based pixels.
    gain : float
        e⁻/ADU.
    r_in, r_out : float or array [N]
        Sky annulus radii in pixels.
    bad : bool ndarray, optional
        Unusable pixels (excluded from aperture sums and the annulus).
    saturated : bool ndarray, optional
        Saturated pixels: kept in the aperture sum (counted in ``n_saturated``),
        excluded from the annulus.
    sky_center, sky_scale : array [N], optional
        Seeds of the sigma clipping (e.g. background and rms maps at the positions).
    """
    if (radius is None) == (box is None):
        raise ValueError("give exactly one of radius= or box=")
    if box is not None and (box < 1 or box % 2 == 0):
        raise ValueError(f"box must be a positive odd integer, got {box}")
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    n = len(x)
    ny, nx = data.shape
    r_in_a = np.broadcast_to(np.asarray(r_in, dtype=np.float64), (n,))
    r_out_a = np.broadcast_to(np.asarray(r_out, dtype=np.float64), (n,))
    if box is not None:
        rad_a = np.full(n, box / 2.0)
    else:
        rad_a = np.broadcast_to(np.asarray(radius, dtype=np.float64), (n,))
    out = {
        name: np.zeros(n, dtype=np.float64)
        for name in ("flux_adu", "area", "sky_mean", "sky_std", "sky_npix")
    }
    counts = {name: np.zeros(n, dtype=np.int64) for name in ("n_bad", "n_saturated", "n_outside")}
    if n == 0:
        fe, sb, snr = snr_from_counts(out["flux_adu"], out["area"], 0.0, 0.0, gain)
        return ApertureSNR(**out, flux_e=fe, sigma_bg_e=sb, snr=snr, **counts)  # type: ignore[arg-type]
    # positions that are non-finite or so far off the frame that nothing can overlap it get
    # empty apertures (area 0, SNR NaN); the rest are measured
    reach_all = np.maximum(r_out_a, rad_a * np.sqrt(2.0)) + 2
    with np.errstate(invalid="ignore"):
        near = (
            np.isfinite(x)
            & np.isfinite(y)
            & (x > -reach_all)
            & (x < nx - 1 + reach_all)
            & (y > -reach_all)
            & (y < ny - 1 + reach_all)
        )
    if not near.all():
        sub = aperture_snr(
            data,
            x[near],
            y[near],
            gain=gain,
            radius=None if radius is None else rad_a[near],
            box=box,
            r_in=r_in_a[near],
            r_out=r_out_a[near],
            bad=bad,
            saturated=saturated,
            sky_center=None if sky_center is None else np.asarray(sky_center)[near],
            sky_scale=None if sky_scale is None else np.asarray(sky_scale)[near],
            sigma=sigma,
            iters=iters,
        )
        full = {}
        for name, arr in sub.as_dict().items():
            fill = (
                0 if name in ("flux_adu", "area", "sky_npix") or arr.dtype.kind == "i" else np.nan
            )
            full[name] = np.full(n, fill, dtype=arr.dtype)
            full[name][near] = arr
        return ApertureSNR(**full)

    bx = np.rint(x).astype(np.int64)
    by = np.rint(y).astype(np.int64)
    # sky annuli are centred on the nearest pixel centre, radii on a 0.5 px grid, so that
    # all positions of one radius class share one list of pixel offsets
    q_in = np.round(2.0 * r_in_a) / 2.0
    q_out = np.maximum(np.round(2.0 * r_out_a) / 2.0, q_in + 0.5)
    ap_half = np.ceil(rad_a * (np.sqrt(2.0) if box else 1.0)).astype(int) + 1
    # pad once so that every stamp pixel has a valid index; a code map says what each is
    reach = max(int(ap_half.max()), int(np.ceil(q_out.max())) + 1)
    pad = int(max(reach, -min(bx.min(), by.min()), bx.max() - nx + 1, by.max() - ny + 1) + 1)
    raw = np.pad(np.asarray(data, dtype=np.float32), pad, constant_values=0.0)
    code = np.full(raw.shape, _OUTSIDE, dtype=np.uint8)
    inner = code[pad : pad + ny, pad : pad + nx]
    inner[...] = 0
    bad_map = ~np.isfinite(data) if bad is None else (np.asarray(bad, bool) | ~np.isfinite(data))
    sat_map = np.zeros(data.shape, bool) if saturated is None else np.asarray(saturated, bool)
    inner[bad_map & ~sat_map] = _BAD
    inner[sat_map] = _SAT
    # NaN / bad / outside pixels read as 0; saturated pixels keep their (clipped) value
    raw[(code == _BAD) | (code == _OUTSIDE) | ~np.isfinite(raw)] = 0.0
    pnx = nx + 2 * pad
    flat_data = raw.ravel()
    flat_code = code.ravel()
    base = (by + pad) * pnx + (bx + pad)

    # aperture sums
    for h in np.unique(ap_half):
        idx_all = np.flatnonzero(ap_half == h)
        off = np.arange(-h, h + 1)
        ody, odx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
        if box is not None:
            hb = box // 2
            keep_off = (np.abs(odx) <= hb) & (np.abs(ody) <= hb)
            ody, odx = ody[keep_off], odx[keep_off]
        doff = ody * pnx + odx
        chunk = max(1, _MAX_CHUNK_ELEMENTS // len(doff))
        for start in range(0, len(idx_all), chunk):
            idx = idx_all[start : start + chunk]
            flat = base[idx, None] + doff[None, :]
            cod = flat_code[flat]
            if box is None:
                fx = (bx[idx] - x[idx]).astype(np.float32)[:, None] + odx[None, :]
                fy = (by[idx] - y[idx]).astype(np.float32)[:, None] + ody[None, :]
                in_ap = (fx * fx + fy * fy) <= (rad_a[idx, None] ** 2).astype(np.float32)
                cod = np.where(in_ap, cod, _NOT_IN)
            use = (cod == 0) | (cod == _SAT)
            out["flux_adu"][idx] = np.where(use, flat_data[flat], np.float32(0)).sum(
                axis=1, dtype=np.float64
            )
            out["area"][idx] = use.sum(axis=1)
            counts["n_bad"][idx] = (cod == _BAD).sum(axis=1)
            counts["n_saturated"][idx] = (cod == _SAT).sum(axis=1)
            counts["n_outside"][idx] = (cod == _OUTSIDE).sum(axis=1)

    # sky annuli: sigma-clipped mean and std of the usable, unsaturated annulus pixels
    cen = None if sky_center is None else np.asarray(sky_center, dtype=np.float64)
    scl = None if sky_scale is None else np.asarray(sky_scale, dtype=np.float64)
    pairs = np.column_stack([q_in, q_out])
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    inv = inv.ravel()
    for g, (a_in, a_out) in enumerate(uniq):
        idx_all = np.flatnonzero(inv == g)
        h = int(np.ceil(a_out))
        off = np.arange(-h, h + 1)
        ody, odx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
        d2 = odx**2 + ody**2
        ring = (d2 >= a_in**2) & (d2 < a_out**2)
        doff = (ody * pnx + odx)[ring]
        chunk = max(1, _MAX_CHUNK_ELEMENTS // max(len(doff), 1))
        for start in range(0, len(idx_all), chunk):
            idx = idx_all[start : start + chunk]
            flat = base[idx, None] + doff[None, :]
            use = flat_code[flat] == 0
            c = None if cen is None else cen[idx]
            sc = None if scl is None else scl[idx]
            mean, std, npix = _clipped_stats(flat_data[flat], use, c, sc, sigma, iters)
            out["sky_mean"][idx] = mean
            out["sky_std"][idx] = std
            out["sky_npix"][idx] = npix
    flux_e, sigma_bg, snr = snr_from_counts(
        out["flux_adu"], out["area"], out["sky_mean"], out["sky_std"], gain
    )
    return ApertureSNR(
        flux_adu=out["flux_adu"],
        area=out["area"],
        sky_mean=out["sky_mean"],
        sky_std=out["sky_std"],
        sky_npix=out["sky_npix"],
        flux_e=flux_e,
        sigma_bg_e=sigma_bg,
        snr=snr,
        n_bad=counts["n_bad"],
        n_saturated=counts["n_saturated"],
        n_outside=counts["n_outside"],
    )


def box_snr(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    gain: float,
    box: int = 3,
    r_in: float = 5.0,
    r_out: float = 9.0,
    bad: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    background: np.ndarray | None = None,
    background_rms: np.ndarray | None = None,
    sigma: float = 3.0,
) -> ApertureSNR:
    """Fixed ``box × box`` (default 3×3) aperture SNR at catalog positions.

    The box is centred on the pixel nearest to ``(x, y)`` and the sky annulus
    ``r_in..r_out`` (default 5–9 px, ≈176 px) on that pixel centre. ``background`` /
    ``background_rms`` maps, when given, seed the sigma clipping of the annulus.
    """
    c, s = _seed(x, y, background, background_rms, data.shape)
    return aperture_snr(
        data,
        x,
        y,
        gain=gain,
        box=box,
        r_in=r_in,
        r_out=r_out,
        bad=bad,
        saturated=saturated,
        sky_center=c,
        sky_scale=s,
        sigma=sigma,
    )


def blob_snr(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: np.ndarray,
    *,
    gain: float,
    annulus_gap: float = 2.0,
    annulus_width: float = 4.0,
    bad: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    background: np.ndarray | None = None,
    background_rms: np.ndarray | None = None,
    sigma: float = 3.0,
) -> ApertureSNR:
    """Blob SNR (Eqs. 8–11): circle of radius ``R`` at the blob centroid ``(x, y)``.

    ``R`` is the Eq. 8 radius (:attr:`Segmentation.radius`). The sky annulus runs from
    ``R + annulus_gap`` to ``R + annulus_gap + annulus_width`` (defaults 2 and 4 px:
    ≥ 140 sky pixels for the smallest blobs, clear of the blob's own wings).
    """
    radius = np.asarray(radius, dtype=np.float64)
    c, s = _seed(x, y, background, background_rms, data.shape)
    r_in = radius + annulus_gap
    return aperture_snr(
        data,
        x,
        y,
        gain=gain,
        radius=radius,
        r_in=r_in,
        r_out=r_in + annulus_width,
        bad=bad,
        saturated=saturated,
        sky_center=c,
        sky_scale=s,
        sigma=sigma,
    )


def _seed(
    x: np.ndarray,
    y: np.ndarray,
    background: np.ndarray | None,
    background_rms: np.ndarray | None,
    shape: tuple[int, ...],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Background and rms map values at the nearest pixels (clipping seeds)."""
    if background is None or background_rms is None:
        return None, None
    ny, nx = shape
    ix = np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, nx - 1).astype(np.int64)
    iy = np.clip(np.rint(np.asarray(y, dtype=np.float64)), 0, ny - 1).astype(np.int64)
    return background[iy, ix].astype(np.float64), background_rms[iy, ix].astype(np.float64)
