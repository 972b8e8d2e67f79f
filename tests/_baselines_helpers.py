"""Seeded synthetic star fields for the baseline tests (exact pixel-integrated Gaussians)."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from scipy.special import erf

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def add_gaussian_stars(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, sigma: float, radius: int = 8
) -> np.ndarray:
    """Add circular Gaussians integrated over each pixel (0-based centres) to ``image``."""
    ny, nx = image.shape
    offs = np.arange(-radius, radius + 1)
    for x0, y0, f in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(flux)):
        cx, cy = int(round(x0)), int(round(y0))
        xs, ys = cx + offs, cy + offs
        s2 = np.sqrt(2.0) * sigma
        px = 0.5 * (erf((xs + 0.5 - x0) / s2) - erf((xs - 0.5 - x0) / s2))
        py = 0.5 * (erf((ys + 0.5 - y0) / s2) - erf((ys - 0.5 - y0) / s2))
        okx = (xs >= 0) & (xs < nx)
        oky = (ys >= 0) & (ys < ny)
        image[np.ix_(ys[oky], xs[okx])] += f * np.outer(py[oky], px[okx])
    return image


def make_star_field(
    shape: tuple[int, int] = (160, 160),
    n: int = 40,
    *,
    fwhm: float = 2.5,
    sky: float = 200.0,
    read_noise: float = 5.0,
    flux_range: tuple[float, float] = (150.0, 40000.0),
    min_sep: float = 9.0,
    border: int = 8,
    seed: int = 0,
) -> tuple[np.ndarray, Table]:
    """Noisy frame (gain 1, electrons = ADU) and its truth table ``x, y, flux, snr_true``.

    Stars are log-uniform in flux, at least ``min_sep`` px apart and ``border`` px from
    the edges. ``snr_true = F / sqrt(F + 4πσ²(sky + rn²))`` (PSF-fitting S/N).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    xs: list[float] = []
    ys: list[float] = []
    tries = 0
    while len(xs) < n and tries < 50 * n:
        tries += 1
        px, py = rng.uniform(border, nx - 1 - border), rng.uniform(border, ny - 1 - border)
        if all((px - qx) ** 2 + (py - qy) ** 2 >= min_sep**2 for qx, qy in zip(xs, ys)):
            xs.append(px)
            ys.append(py)
    x, y = np.array(xs), np.array(ys)
    flux = np.exp(rng.uniform(np.log(flux_range[0]), np.log(flux_range[1]), len(x)))
    sigma = fwhm / FWHM_PER_SIGMA
    expected = add_gaussian_stars(np.full(shape, sky, dtype=float), x, y, flux, sigma)
    image = rng.normal(expected, np.sqrt(expected + read_noise**2)).astype(np.float32)
    snr = flux / np.sqrt(flux + 4.0 * np.pi * sigma**2 * (sky + read_noise**2))
    truth = Table({"x": x, "y": y, "flux": flux, "snr_true": snr})
    return image, truth


def recovered_fraction(
    catalog: Table, truth: Table, *, snr_min: float = 20.0, radius: float = 1.0
) -> float:
    """Fraction of truth stars with ``snr_true ≥ snr_min`` that have a detection within ``radius``."""
    from scipy.spatial import cKDTree

    bright = truth[truth["snr_true"] >= snr_min]
    if len(bright) == 0:
        raise ValueError("no bright stars in the truth table")
    if len(catalog) == 0:
        return 0.0
    tree = cKDTree(np.column_stack([catalog["x"], catalog["y"]]))
    d, _ = tree.query(np.column_stack([bright["x"], bright["y"]]))
    return float(np.mean(d <= radius))
