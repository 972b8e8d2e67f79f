"""PSF width estimate from bright, isolated, unsaturated stars.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["select_psf_stars", "median_prf_fwhm"]

log = logging.getLogger(__name__)


def select_psf_stars(
    x: np.ndarray,
    y: np.ndarray,
    snr: np.ndarray,
    shape: tuple[int, int],
    *,
    all_x: np.ndarray | None = None,
    all_y: np.ndarray | None = None,
    bad: np.ndarray | None = None,
    min_snr: float = 20.0,
    isolation: float = 6.0,
    edge: int = 6,
    max_stars: int = 50,
) -> np.ndarray:
    """Indices of stars fit for a PSF estimate, brightest first.

    A star qualifies with ``snr >= min_snr``, no other source (from ``all_x/all_y``,
    default the same list) within ``isolation`` px, at least ``edge`` px from the border
    and no ``bad`` pixel (e.g. saturated) within ``edge`` px.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    snr = np.asarray(snr, dtype=np.float64)
    ny, nx = shape
    ok = np.isfinite(snr) & (snr >= min_snr)
    ok &= (x >= edge) & (x <= nx - 1 - edge) & (y >= edge) & (y <= ny - 1 - edge)
    if not ok.any():
        return np.zeros(0, dtype=np.int64)
    ax = x if all_x is None else np.asarray(all_x, dtype=np.float64)
    ay = y if all_y is None else np.asarray(all_y, dtype=np.float64)
    tree = cKDTree(np.column_stack([ax, ay]))
    idx = np.flatnonzero(ok)
    # the star itself is within 0 px: isolated means exactly one neighbour in the radius
    counts = np.array(
        [len(n) for n in tree.query_ball_point(np.column_stack([x[idx], y[idx]]), isolation)]
    )
    idx = idx[counts <= 1]
    if bad is not None and len(idx):
        from scipy.ndimage import maximum_filter

        near_bad = maximum_filter(np.asarray(bad, dtype=np.uint8), size=2 * edge + 1) > 0
        idx = idx[~near_bad[np.rint(y[idx]).astype(int), np.rint(x[idx]).astype(int)]]
    return idx[np.argsort(-snr[idx])][:max_stars]


def median_prf_fwhm(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    fit_shape: int = 5,
    guess: float = 2.0,
) -> float:
    """Median FWHM (px) of circular Gaussian PRF fits at ``(x, y)`` (photutils ``fit_fwhm``).

    ``image`` must be background subtracted. The pixel-integrated Gaussian model suits
    undersampled PSFs (FWHM ≈ 1–2 px). Returns NaN when no fit succeeds.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        return float("nan")
    from photutils.psf import fit_fwhm

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fwhm = fit_fwhm(
                np.asarray(image, dtype=np.float64),
                xypos=np.column_stack([x, y]),
                fit_shape=fit_shape,
                fwhm=guess,
            )
    except Exception as err:  # fitting failure must not stop a dataset build
        log.debug("FWHM fit failed: %s", err)
        return float("nan")
    fwhm = np.asarray(fwhm, dtype=np.float64)
    fwhm = fwhm[np.isfinite(fwhm) & (fwhm > 0.3) & (fwhm < 4.0 * fit_shape)]
    return float(np.median(fwhm)) if len(fwhm) else float("nan")
