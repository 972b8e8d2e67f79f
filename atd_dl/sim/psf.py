"""Pixel-integrated elliptical Moffat PSF, varying smoothly over the field, and star rendering.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``. A pixel's value is the
PSF integrated over the pixel square ``[x-0.5, x+0.5] x [y-0.5, y+0.5]`` (approximated by
the mean over ``oversample x oversample`` sub-pixel samples), so a rendered star's flux
centroid equals its true position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# (flux_e upper bound, stamp radius px, oversampling) — fainter stars use smaller stamps
RENDER_TIERS: tuple[tuple[float, int, int], ...] = (
    (3.0e3, 3, 3),
    (3.0e4, 7, 3),
    (3.0e5, 15, 5),
    (np.inf, 40, 5),
)


def moffat_alpha(fwhm: np.ndarray | float, beta: float) -> np.ndarray | float:
    """Moffat core width ``alpha`` (px) for a given FWHM (px) and ``beta``."""
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


class PSFModel(Protocol):
    """What :func:`add_stars` needs of a PSF: a Moffat ``beta`` and shape parameters by position."""

    @property
    def beta(self) -> float: ...

    def params(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class MoffatPSF:
    """Field-dependent elliptical Moffat PSF of a fast wide-field lens.

    FWHM grows quadratically with distance from the optical axis from ``fwhm`` to
    ``fwhm_corner`` (px) at the frame corner; ellipticity ``1 - b/a`` likewise from
    ``ellip_center`` to ``ellip_corner``, with the major axis pointing radially.
    ``shape`` = (ny, nx) of the frame; the optical axis is the frame centre.
    """

    shape: tuple[int, int]
    fwhm: float = 1.25
    fwhm_corner: float = 1.8
    beta: float = 3.0
    ellip_center: float = 0.03
    ellip_corner: float = 0.12

    def params(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(fwhm_px, ellipticity, theta_rad)`` at pixel positions ``x, y``."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        ny, nx = self.shape
        xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
        r2 = ((x - xc) ** 2 + (y - yc) ** 2) / (xc**2 + yc**2 + 1e-12)
        fwhm = self.fwhm + (self.fwhm_corner - self.fwhm) * r2
        ellip = self.ellip_center + (self.ellip_corner - self.ellip_center) * r2
        theta = np.arctan2(y - yc, x - xc)
        return fwhm, ellip, theta


def psf_stamps(
    dx: np.ndarray,
    dy: np.ndarray,
    fwhm: np.ndarray,
    ellip: np.ndarray,
    theta: np.ndarray,
    *,
    beta: float,
    radius: int,
    oversample: int = 3,
) -> np.ndarray:
    """Unit-flux pixel-integrated Moffat stamps, float32 ``[n, 2r+1, 2r+1]``.

    ``dx, dy`` are the star positions relative to the stamp's central pixel centre
    (normally in [-0.5, 0.5]); stamp pixel ``[r + j, r + i]`` covers offsets ``(i, j)``.
    The stamp sums to the Moffat flux enclosed in the box (< 1 for small radii).
    """
    n = len(dx)
    size = 2 * radius + 1
    grid = np.arange(-radius, radius + 1, dtype=np.float32)
    sub = ((np.arange(oversample, dtype=np.float32) + 0.5) / oversample - 0.5).astype(np.float32)
    # offsets of every sub-sample in the stamp, flattened: [size*os] along each axis
    axis = (grid[:, None] + sub[None, :]).ravel()
    alpha = moffat_alpha(np.asarray(fwhm, dtype=np.float64), beta)
    e = np.clip(np.asarray(ellip, dtype=np.float64), 0.0, 0.9)
    a = (alpha / np.sqrt(1.0 - e)).astype(np.float32)
    b = (alpha * np.sqrt(1.0 - e)).astype(np.float32)
    c = np.cos(theta).astype(np.float32)
    s = np.sin(theta).astype(np.float32)
    X = axis[None, None, :] - np.asarray(dx, dtype=np.float32)[:, None, None]  # [n, 1, S]
    Y = axis[None, :, None] - np.asarray(dy, dtype=np.float32)[:, None, None]  # [n, S, 1]
    u = X * c[:, None, None] + Y * s[:, None, None]
    v = Y * c[:, None, None] - X * s[:, None, None]
    q = (u / a[:, None, None]) ** 2 + (v / b[:, None, None]) ** 2
    val = np.power(1.0 + q, np.float32(-beta))
    norm = ((beta - 1.0) / (np.pi * a * b)).astype(np.float32)
    val *= norm[:, None, None]
    val = val.reshape(n, size, oversample, size, oversample).mean(axis=(2, 4))
    return val.astype(np.float32, copy=False)


def render_psf_stamp(
    psf: MoffatPSF, x: float, y: float, *, radius: int = 7, oversample: int = 5
) -> np.ndarray:
    """Unit-flux PSF stamp ``[2r+1, 2r+1]`` for a star at frame position ``(x, y)``.

    The stamp is centred on pixel ``(round(x), round(y))``; the PSF shape is the one at
    ``(x, y)`` in the frame. Useful for injection tests and binary-star stamps.
    """
    fw, el, th = psf.params(np.array([x]), np.array([y]))
    ix, iy = np.round(x), np.round(y)
    return psf_stamps(
        np.array([x - ix]),
        np.array([y - iy]),
        fw,
        el,
        th,
        beta=psf.beta,
        radius=radius,
        oversample=oversample,
    )[0]


def add_stars(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux_e: np.ndarray,
    psf: PSFModel,
    *,
    tiers: tuple[tuple[float, int, int], ...] = RENDER_TIERS,
    chunk_pixels: int = 4_000_000,
) -> np.ndarray:
    """Add point sources to ``image`` in place; return each source's 3x3-box flux (e-).

    ``x, y`` are 0-based pixel positions (may lie off the frame: only on-frame pixels are
    added), ``flux_e`` the total flux. The PSF shape follows ``psf.params(x, y)``; stamp size
    and sub-sampling grow with flux (``tiers``) so that the light lost outside the stamp
    stays far below the noise. The returned ``f3`` is the star's own flux inside the 3x3
    pixel box centred on pixel ``(round(x), round(y))``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    flux = np.asarray(flux_e, dtype=np.float64)
    f3 = np.zeros(len(x), dtype=np.float64)
    if len(x) == 0:
        return f3
    ny, nx = image.shape
    fwhm, ellip, theta = psf.params(x, y)
    ix = np.round(x).astype(np.int64)
    iy = np.round(y).astype(np.int64)
    lower = 0.0
    for upper, radius, oversample in tiers:
        sel = np.flatnonzero((flux >= lower) & (flux < upper))
        lower = upper
        if len(sel) == 0:
            continue
        size = 2 * radius + 1
        per_star = size * size * oversample * oversample
        step = max(1, chunk_pixels // per_star)
        off = np.arange(-radius, radius + 1)
        for start in range(0, len(sel), step):
            idx = sel[start : start + step]
            stamps = psf_stamps(
                x[idx] - ix[idx],
                y[idx] - iy[idx],
                fwhm[idx],
                ellip[idx],
                theta[idx],
                beta=psf.beta,
                radius=radius,
                oversample=oversample,
            )
            stamps *= flux[idx, None, None].astype(np.float32)
            f3[idx] = stamps[:, radius - 1 : radius + 2, radius - 1 : radius + 2].sum(axis=(1, 2))
            px = ix[idx, None, None] + off[None, None, :]
            py = iy[idx, None, None] + off[None, :, None]
            inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
            pix = np.broadcast_to(py * nx + px, stamps.shape)[inside]
            image += (
                np.bincount(pix, weights=stamps[inside], minlength=ny * nx)
                .reshape(ny, nx)
                .astype(image.dtype, copy=False)
            )
    return f3


def inject_stars(
    image_adu: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux_e: np.ndarray,
    psf: MoffatPSF,
    *,
    gain: float,
    rng: np.random.Generator,
    saturate: float | None = 65535.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Inject stars with photon noise into an existing frame (injection–recovery tests).

    Returns ``(new_image, f3_e)``: a float32 copy of ``image_adu`` with the stars' Poisson
    electrons divided by ``gain`` (e-/ADU) added and clipped at ``saturate``, and each
    star's expected 3x3-box flux in electrons (see :func:`add_stars`). The frame's own
    noise is kept, so the injected stars see the real background.
    """
    model = np.zeros(image_adu.shape, dtype=np.float32)
    f3 = add_stars(model, x, y, flux_e, psf)
    out = np.asarray(image_adu, dtype=np.float32) + (
        rng.poisson(np.maximum(model, 0.0)).astype(np.float32) / np.float32(gain)
    )
    if saturate is not None:
        np.minimum(out, np.float32(saturate), out=out)
    return out, f3
