"""The vectorised background meshes equal photutils ``Background2D``'s, box for box."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from atd_dl.prep.background_mesh import box_meshes, fill_excluded_boxes, median_filter_mesh


def photutils_meshes(
    data: np.ndarray, bad: np.ndarray, box: int, exclude_percentile: float
) -> tuple[np.ndarray, np.ndarray]:
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MADStdBackgroundRMS, MedianBackground

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bkg = Background2D(
            data,
            (box, box),
            mask=bad,
            filter_size=3,
            exclude_percentile=exclude_percentile,
            sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
            bkg_estimator=MedianBackground(),
            bkg_rms_estimator=MADStdBackgroundRMS(),
        )
        return bkg.background_mesh, bkg.background_rms_mesh


def our_meshes(
    data: np.ndarray, bad: np.ndarray, box: int, exclude_percentile: float
) -> tuple[np.ndarray, np.ndarray]:
    bkg, rms = box_meshes(data, bad, (box, box), exclude_percentile=exclude_percentile)
    return median_filter_mesh(fill_excluded_boxes(bkg)), median_filter_mesh(
        fill_excluded_boxes(rms)
    )


def star_field(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sky gradient, Gaussian noise, bright stars, a saturated block and NaN columns."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    data = 100.0 + 0.02 * xx + 0.01 * yy + rng.normal(0.0, 5.0, shape)
    for _ in range(ny * nx // 400):
        y, x = rng.uniform(0, ny), rng.uniform(0, nx)
        data += rng.pareto(1.5) * 80.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.5)
    data = data.astype(np.float32)
    data[:, 3:5] = np.nan
    bad = ~np.isfinite(data)
    bad[ny // 3 : ny // 3 + 40, nx // 2 : nx // 2 + 70] = True  # a masked saturated region
    return data, bad


@pytest.mark.parametrize(
    ("shape", "box", "exclude"),
    [((300, 400), 50, 10.0), ((331, 277), 50, 10.0), ((256, 200), 64, 50.0)],
)
def test_meshes_equal_photutils(shape: tuple[int, int], box: int, exclude: float) -> None:
    data, bad = star_field(shape, seed=sum(shape))
    ours = our_meshes(data, bad, box, exclude)
    theirs = photutils_meshes(data, bad, box, exclude)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)


def test_partial_and_excluded_boxes_are_refilled() -> None:
    data, bad = star_field((331, 277), seed=3)
    bkg, _ = box_meshes(data, bad, (50, 50))
    # the partial last row/column (31 and 27 px) keep < 90 % of a box: excluded
    assert np.isnan(bkg[-1]).all() and np.isnan(bkg[:, -1]).all()
    filled = fill_excluded_boxes(bkg)
    assert np.isfinite(filled).all()
    assert np.nanmin(bkg) <= filled[-1, -1] <= np.nanmax(bkg)


def test_clipping_removes_stars_from_the_median() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(10.0, 1.0, (100, 100)).astype(np.float32)
    data[40:60, 40:60] += 50.0  # 4 % of the pixels far above the sky
    bkg, rms = box_meshes(data, np.zeros(data.shape, bool), (100, 100))
    assert abs(float(bkg[0, 0]) - 10.0) < 0.05
    assert abs(float(rms[0, 0]) - 1.0) < 0.05


def test_every_box_masked_raises() -> None:
    data = np.ones((100, 100), np.float32)
    with pytest.raises(ValueError, match="every 50x50 box"):
        box_meshes(data, np.ones(data.shape, bool), (50, 50))
