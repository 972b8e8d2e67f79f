"""Per-source measurements on a segmentation map: weighted centroids, fluxes, FWHM.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``. All functions are
vectorised over sources (``np.bincount`` over the segment pixels, photutils apertures);
images are background-subtracted intensities, in electrons when the gain is known.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Centroids:
    """Intensity-weighted centroids (paper Eq. 16) of segments ``1..n`` (arrays of length n)."""

    x: np.ndarray
    y: np.ndarray
    x_err: np.ndarray
    y_err: np.ndarray
    sum_weights: np.ndarray  # sum of the clipped intensities (isophotal flux, >= 0)
    area: np.ndarray  # pixels in the segment


def weighted_centroids(
    labels_fg: np.ndarray,
    fg: np.ndarray,
    width: int,
    n: int,
    intensity_fg: np.ndarray,
    variance_fg: np.ndarray,
) -> Centroids:
    """Eq. 16 centroids ``x_c = sum(x I) / sum(I)`` of segments ``1..n``.

    The segments are given by their pixels: flat indices ``fg`` into an image of
    ``width`` columns, with segment numbers ``labels_fg``, background-subtracted
    intensities ``intensity_fg`` (non-finite already replaced by 0) and variances
    ``variance_fg``. Negative intensities are clipped to 0 before weighting. A segment
    whose weights sum to 0 falls back to its geometric centre. Uncertainty:
    ``var(x_c) = sum((x - x_c)^2 var_i) / (sum I)^2``; the geometric fallback gets
    ``sqrt(1/12)`` px.
    """
    lab = labels_fg
    y, x = np.divmod(fg, width)
    w = np.clip(intensity_fg.astype(np.float64), 0.0, None)
    m = n + 1
    area = np.bincount(lab, minlength=m).astype(np.float64)
    sw = np.bincount(lab, weights=w, minlength=m)
    sx = np.bincount(lab, weights=w * x, minlength=m)
    sy = np.bincount(lab, weights=w * y, minlength=m)
    gx = np.bincount(lab, weights=x, minlength=m) / np.maximum(area, 1.0)
    gy = np.bincount(lab, weights=y, minlength=m) / np.maximum(area, 1.0)
    ok = sw > 0
    safe = np.where(ok, sw, 1.0)
    xc = np.where(ok, sx / safe, gx)
    yc = np.where(ok, sy / safe, gy)
    var = variance_fg.astype(np.float64)
    vx = np.bincount(lab, weights=(x - xc[lab]) ** 2 * var, minlength=m)
    vy = np.bincount(lab, weights=(y - yc[lab]) ** 2 * var, minlength=m)
    fallback = np.sqrt(1.0 / 12.0)
    x_err = np.where(ok, np.sqrt(vx) / safe, fallback)
    y_err = np.where(ok, np.sqrt(vy) / safe, fallback)
    return Centroids(
        x=xc[1:], y=yc[1:], x_err=x_err[1:], y_err=y_err[1:], sum_weights=sw[1:], area=area[1:]
    )


def aperture_weights(dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Fractional pixel coverage of a circle of ``radius`` px, vectorised.

    ``dx, dy`` are pixel-centre offsets from the aperture centre (any broadcastable
    shape). A pixel whose centre lies at distance ``d`` is weighted
    ``clip(r' + 0.5 - d, 0, 1)`` with ``r' = sqrt(r^2 - 1/12)``: the linear edge ramp
    over-counts the area by ``pi / 12`` px^2, which ``r'`` removes, so the weights sum to
    ``pi r^2`` (to < 0.1 %) and differ from the exact pixel/circle overlap by at most
    0.07 on individual edge pixels.
    """
    r_eff = np.sqrt(max(radius * radius - 1.0 / 12.0, 1e-6))
    return np.clip(r_eff + 0.5 - np.hypot(dx, dy), 0.0, 1.0)


def aperture_fluxes(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    background_rms: np.ndarray | float,
    *,
    poisson: bool = True,
    mask: np.ndarray | None = None,
    method: str = "fast",
) -> tuple[np.ndarray, np.ndarray]:
    """Circular-aperture sums of ``image`` at ``(x, y)`` and their 1-sigma errors.

    The per-pixel variance is ``background_rms^2`` plus, with ``poisson``, the positive
    part of ``image`` (the source's shot noise; ``image`` in electrons). ``mask`` True
    pixels are left out of both sums. ``method="fast"`` (default) stacks all apertures into
    one array with :func:`aperture_weights` (vectorised; pixels off the frame count as
    masked); ``method="exact"`` uses photutils ``CircularAperture`` with exact pixel
    overlap (slower: one Python call per source). The error is ``sqrt(sum(w var))`` as
    photutils computes it. Returns ``(flux, flux_err)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0), np.zeros(0)
    image = np.asarray(image, dtype=np.float32)
    rms = np.broadcast_to(np.asarray(background_rms, dtype=np.float32), image.shape)
    if method == "exact":
        from photutils.aperture import CircularAperture

        var = rms.astype(np.float64) ** 2
        if poisson:
            var = var + np.clip(image, 0.0, None)
        aper = CircularAperture(np.column_stack([x, y]), r=float(radius))
        flux, err = aper.do_photometry(image, error=np.sqrt(var), mask=mask, method="exact")
        return np.asarray(flux, dtype=np.float64), np.asarray(err, dtype=np.float64)
    if method != "fast":
        raise ValueError(f"unknown aperture method {method!r}; use 'fast' or 'exact'")
    k = int(np.ceil(radius + 0.5))
    off = np.arange(-k, k + 1)
    ny, nx = image.shape
    xi = np.rint(x).astype(np.int64)
    yi = np.rint(y).astype(np.int64)
    rows = yi[:, None, None] + off[None, :, None]
    cols = xi[:, None, None] + off[None, None, :]
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    flat = np.clip(rows, 0, ny - 1) * nx + np.clip(cols, 0, nx - 1)
    dx = (xi - x)[:, None, None] + off[None, None, :]
    dy = (yi - y)[:, None, None] + off[None, :, None]
    w = aperture_weights(dx, dy, radius) * inside
    if mask is not None:
        w *= ~np.asarray(mask, dtype=bool).ravel()[flat]
    vals = image.ravel()[flat]
    var = rms.ravel()[flat].astype(np.float64) ** 2
    if poisson:
        var += np.clip(vals, 0.0, None)
    flux = np.einsum("nij,nij->n", w, vals.astype(np.float64))
    ferr = np.sqrt(np.maximum(np.einsum("nij,nij->n", w, var), 0.0))
    return flux, ferr


def local_background(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    box: int,
    *,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Residual background level at ``(x, y)`` and the pixels it rests on.

    ``image`` is cut into ``box`` x ``box`` cells; each cell's median over pixels not in
    ``exclude`` (other sources' segments, masked pixels) gives a coarse map, cells with
    fewer than a quarter of their pixels usable are filled from their neighbours, the map
    is 3 x 3 median-filtered and interpolated bilinearly at the positions. Linear in the
    pixel count (not in the source count). Returns ``(level, n_pixels)``, units of ``image``.
    """
    from scipy import ndimage

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    b = max(int(box), 4)
    ny, nx = image.shape
    gy, gx = -(-ny // b), -(-nx // b)
    pad = np.full((gy * b, gx * b), np.nan, dtype=np.float32)
    pad[:ny, :nx] = image
    if exclude is not None:
        ex = np.zeros(pad.shape, bool)
        ex[:ny, :nx] = exclude
        pad[ex] = np.nan
    cells = pad.reshape(gy, b, gx, b).transpose(0, 2, 1, 3).reshape(gy, gx, b * b)
    count = np.sum(np.isfinite(cells), axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        grid = np.nanmedian(cells, axis=2)
    good = count >= (b * b) // 4
    if not good.any():
        return np.zeros(len(x)), np.zeros(len(x), dtype=np.int64)
    if not good.all():  # nearest usable cell
        idx = ndimage.distance_transform_edt(~good, return_distances=False, return_indices=True)
        grid = grid[idx[0], idx[1]]
        count = np.where(good, count, count[idx[0], idx[1]])
    if min(gy, gx) >= 3:
        grid = ndimage.median_filter(grid, size=3, mode="nearest")
    coords = np.vstack([(y + 0.5) / b - 0.5, (x + 0.5) / b - 0.5])
    level = ndimage.map_coordinates(grid.astype(np.float64), coords, order=1, mode="nearest")
    n = count[np.clip((y // b).astype(int), 0, gy - 1), np.clip((x // b).astype(int), 0, gx - 1)]
    return level, n.astype(np.int64)


def estimate_fwhm(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    good: np.ndarray | None = None,
    half_size: int = 5,
    max_stars: int = 300,
    default: float = 2.0,
    iterations: int = 6,
) -> float:
    """Median FWHM (px) of bright isolated sources from adaptive (Gaussian-weighted) moments.

    For each source (``good`` selects candidates; the first ``max_stars`` are used, so pass
    them brightest first) the intensity in a ``(2 half_size + 1)^2`` box around the nearest
    pixel is weighted by a circular Gaussian of width ``s`` centred on the weighted
    centroid; for a Gaussian star of width ``sigma`` the weighted second moment is
    ``sigma^2 / 2`` when ``s = sigma``, so iterating ``s <- sqrt(2 m2)`` converges to the
    star's ``sigma`` while the weight suppresses noise and PSF wings. ``FWHM = 2.3548 sigma``
    (pixel-integrated, i.e. including the pixel's 1/12 px^2). Returns ``default`` when
    fewer than 5 sources are usable. The estimate only sets the photometry aperture.
    """
    ny, nx = image.shape
    xi = np.rint(np.asarray(x)).astype(np.int64)
    yi = np.rint(np.asarray(y)).astype(np.int64)
    sel = np.ones(len(xi), dtype=bool) if good is None else np.asarray(good, dtype=bool).copy()
    h = half_size
    sel &= (xi >= h) & (xi < nx - h) & (yi >= h) & (yi < ny - h)
    idx = np.flatnonzero(sel)[:max_stars]
    if idx.size < 5:
        return float(default)
    off = np.arange(-h, h + 1, dtype=np.float64)
    boxes = image[
        yi[idx][:, None, None] + np.arange(-h, h + 1)[None, :, None],
        xi[idx][:, None, None] + np.arange(-h, h + 1)[None, None, :],
    ].astype(np.float64)
    boxes = np.clip(boxes, 0.0, None)
    gx = off[None, None, :]
    gy = off[None, :, None]
    s = np.full(len(idx), default / 2.3548)
    mx = np.zeros(len(idx))
    my = np.zeros(len(idx))
    for _ in range(iterations):
        r2 = (gx - mx[:, None, None]) ** 2 + (gy - my[:, None, None]) ** 2
        w = boxes * np.exp(-0.5 * r2 / (s[:, None, None] ** 2))
        sw = np.maximum(w.sum(axis=(1, 2)), 1e-30)
        mx = np.clip((w * gx).sum(axis=(1, 2)) / sw, -1.0, 1.0)
        my = np.clip((w * gy).sum(axis=(1, 2)) / sw, -1.0, 1.0)
        r2 = (gx - mx[:, None, None]) ** 2 + (gy - my[:, None, None]) ** 2
        m2 = 0.5 * (w * r2).sum(axis=(1, 2)) / sw
        s = np.clip(np.sqrt(2.0 * m2), 0.3, h / 1.5)
    ok = boxes.sum(axis=(1, 2)) > 0
    if ok.sum() < 5:
        return float(default)
    return float(np.clip(2.3548 * np.median(s[ok]), 0.8, 20.0))


def windowed_centroids(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fwhm: float,
    *,
    variance: np.ndarray | float | None = None,
    bad: np.ndarray | None = None,
    window_scale: float = 1.5,
    iterations: int = 30,
    tolerance: float = 2e-4,
    max_shift: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian-windowed iterative centroids (like SExtractor's XWIN/YWIN), vectorised.

    Starting from ``x, y`` (0-based px), each step moves the position by
    ``2·Σ w I (x_i − x) / Σ w I`` with ``w = exp(−r²/2σ²)``, over the pixels within ``4σ``
    (background-subtracted ``image``; ``bad`` pixels get no weight). The window is wider
    than the PSF, ``σ = window_scale·fwhm/2.3548``: with a window matched to an undersampled
    PSF (FWHM ≈ 1.5 px) the fixed point is pulled towards pixel centres by up to 0.06 px;
    at 1.5× the FWHM that pixel-phase bias stays under 0.01 px.
    Sources whose window has no positive signal, or that would move by more than
    ``max_shift`` px, keep their start position (``ok`` False). Returns
    ``(x, y, x_err, y_err, ok)``; errors from ``variance`` (per pixel, image units²) when
    given, else NaN.
    """
    x0 = np.asarray(x, float)
    y0 = np.asarray(y, float)
    n = x0.size
    if n == 0:
        empty = np.zeros(0)
        return empty, empty, empty, empty, np.zeros(0, bool)
    ny, nx = image.shape
    sigma = window_scale * max(float(fwhm), 0.5) / 2.3548
    h = int(np.ceil(4.0 * sigma)) + 1
    oy, ox = np.mgrid[-h : h + 1, -h : h + 1]
    ox = ox.ravel().astype(float)
    oy = oy.ravel().astype(float)
    cx = np.rint(x0).astype(int)
    cy = np.rint(y0).astype(int)
    px = cx[:, None] + ox[None, :].astype(int)
    py = cy[:, None] + oy[None, :].astype(int)
    inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    pxc = np.clip(px, 0, nx - 1)
    pyc = np.clip(py, 0, ny - 1)
    val = np.where(inside, np.nan_to_num(image[pyc, pxc].astype(float)), 0.0)
    if bad is not None:
        inside &= ~bad[pyc, pxc]
        val = np.where(inside, val, 0.0)
    fx = px.astype(float)
    fy = py.astype(float)
    xc, yc = x0.copy(), y0.copy()
    active = np.ones(n, bool)
    ok = np.ones(n, bool)
    r_max2 = (4.0 * sigma) ** 2
    for _ in range(iterations):
        dx = fx - xc[:, None]
        dy = fy - yc[:, None]
        r2 = dx * dx + dy * dy
        w = np.where(inside & (r2 <= r_max2), np.exp(-0.5 * r2 / sigma**2), 0.0)
        wi = w * val
        s = wi.sum(axis=1)
        good = s > 0
        safe = np.where(good, s, 1.0)
        step_x = np.where(good, 2.0 * (wi * dx).sum(axis=1) / safe, 0.0)
        step_y = np.where(good, 2.0 * (wi * dy).sum(axis=1) / safe, 0.0)
        ok &= good
        step_x[~active] = 0.0
        step_y[~active] = 0.0
        xc += step_x
        yc += step_y
        active &= np.hypot(step_x, step_y) > tolerance
        if not active.any():
            break
    ok &= np.hypot(xc - x0, yc - y0) <= max_shift
    xc = np.where(ok, xc, x0)
    yc = np.where(ok, yc, y0)
    if variance is None:
        x_err = np.full(n, np.nan)
        y_err = np.full(n, np.nan)
    else:
        var = np.broadcast_to(np.asarray(variance, float), image.shape)
        vpix = np.where(inside, var[pyc, pxc], 0.0)
        dx = fx - xc[:, None]
        dy = fy - yc[:, None]
        r2 = dx * dx + dy * dy
        w = np.where(inside & (r2 <= r_max2), np.exp(-0.5 * r2 / sigma**2), 0.0)
        s = (w * val).sum(axis=1)
        safe = np.where(s > 0, s, 1.0)
        x_err = 2.0 * np.sqrt((w * w * vpix * dx * dx).sum(axis=1)) / safe
        y_err = 2.0 * np.sqrt((w * w * vpix * dy * dy).sum(axis=1)) / safe
    return xc, yc, x_err, y_err, ok
