"""PSF-width estimator: the stellar locus among fitted widths, the vectorised PRF fit."""

from __future__ import annotations

import numpy as np
import pytest

from atd_dl.prep.psf_width import stellar_locus


def test_stellar_locus_prefers_the_tight_group_of_a_mixed_field() -> None:
    rng = np.random.default_rng(5)
    stars = rng.normal(2.5, 0.05, 10)
    knots = rng.uniform(3.5, 11.0, 18)  # extended sources of a galaxy: widths spread out
    assert abs(stellar_locus(np.concatenate([stars, knots])) - 2.5) < 0.1
    # stars dominate: their width, not pulled up by a few wide blends
    field = np.concatenate([rng.normal(3.0, 0.2, 20), [6.0, 8.0, 9.0]])
    assert abs(stellar_locus(field) - 3.0) < 0.15
    # a small frame whose sources are half galaxies and stars in wings, 1.2-1.6x wider
    # (the shared NTT frame: clean stars 2.1-2.4 px, the median of all 2.8)
    mixed = np.array([2.11, 2.14, 2.17, 2.39, 2.40, 2.75, 2.80, 2.86, 3.08, 3.22, 3.24, 3.55])
    assert stellar_locus(mixed) == pytest.approx(2.17, abs=0.1)
    assert float(np.median(mixed)) > 2.7


@pytest.mark.parametrize("fwhm", [1.0, 2.5, 6.0])
def test_prf_fit_matches_photutils_fit_fwhm(fwhm: float) -> None:
    """The vectorised fit reproduces photutils' CircularGaussianPRF fit (undersampled too)."""
    import warnings

    from photutils.psf import CircularGaussianPRF, fit_fwhm

    from atd_dl.prep.psf_width import prf_fwhm

    rng = np.random.default_rng(int(fwhm * 10))
    yy, xx = np.mgrid[0:200, 0:200]
    image = rng.normal(0, 1.0, (200, 200))
    cx, cy = rng.uniform(30, 170, 12), rng.uniform(30, 170, 12)
    for x0, y0 in zip(cx, cy, strict=True):
        image += CircularGaussianPRF(flux=3e3, x_0=x0, y_0=y0, fwhm=fwhm)(xx, yy)
    x, y = np.rint(cx).astype(int), np.rint(cy).astype(int)
    half = int(np.clip(round(1.5 * fwhm), 2, 12))
    ours = prf_fwhm(image, x, y, half, first_fwhm=1.3 * fwhm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(fit_fwhm(image, xypos=np.column_stack([x, y]), fit_shape=2 * half + 1))
    assert np.allclose(ours, theirs, atol=2e-3)
    assert abs(np.median(ours) - fwhm) < 0.05 * fwhm
