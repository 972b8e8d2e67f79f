"""Tests for atd_dl.prep.enhance: background, ZScale stretch, quality metrics (Table 1)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.visualization import ZScaleInterval
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from atd_dl.errors import InputError
from atd_dl.prep.enhance import (
    enhance_frame,
    estimate_background,
    linear_uint8,
    quality_metrics,
    stretch_to_uint8,
    table1_metrics,
    zscale_stretch,
)


def star_field(
    n: int = 192, *, gradient: float = 30.0, noise: float = 3.0, sky: float = 880.0, seed: int = 0
) -> np.ndarray:
    """Integer-valued 16-bit-like frame: sky + linear gradient + Gaussian stars + noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    img = sky + gradient * xx / n
    sigma = 1.5
    for _ in range(120):
        x0, y0 = rng.uniform(0, n, 2)
        flux = 10 ** rng.uniform(2, 4)
        img = img + flux / (2 * np.pi * sigma**2) * np.exp(
            -((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2)
        )
    return np.rint(img + rng.normal(0, noise, img.shape)).astype(np.float32)


def test_background_recovers_gradient_on_odd_size() -> None:
    rng = np.random.default_rng(3)
    ny, nx = 330, 270  # not multiples of the 50-pixel box
    yy, xx = np.mgrid[:ny, :nx]
    sky = 500 + 0.8 * xx + 0.3 * yy
    data = (sky + rng.normal(0, 5, sky.shape)).astype(np.float32)
    bkg, rms = estimate_background(data, None, box=50, filter_size=3)
    assert bkg.shape == data.shape and rms.shape == data.shape
    assert bkg.dtype == np.float32
    inner = (slice(100, -100), slice(100, -100))  # away from the extrapolated border
    assert np.abs(bkg - sky)[inner].max() < 3.0  # noise is 5 ADU per pixel
    assert np.abs(np.median((bkg - sky)[inner])) < 1.0
    # a gradient inside the boxes adds to the RMS map; on a flat sky it is the noise
    _, flat_rms = estimate_background(data - sky.astype(np.float32), None, box=50)
    assert np.median(flat_rms) == pytest.approx(5.0, rel=0.05)


def test_background_masks_and_small_frames() -> None:
    rng = np.random.default_rng(4)
    data = rng.normal(100, 2, (40, 30)).astype(np.float32)  # smaller than one box
    mask = np.zeros(data.shape, bool)
    data[5:8, 5:8] = np.nan
    data[20, 20] = 1e6
    mask[20, 20] = True
    bkg, _ = estimate_background(data, mask, box=50)
    assert np.all(np.isfinite(bkg)) and np.abs(bkg - 100).max() < 1.5


def test_background_heavily_masked_falls_back_with_a_note() -> None:
    data = np.random.default_rng(5).normal(10, 1, (100, 100)).astype(np.float32)
    mask = np.ones(data.shape, bool)
    mask[::5] = False  # 80 % masked in every box
    notes: list[str] = []
    bkg, rms = estimate_background(data, mask, box=50, source="frame.fits", notes=notes)
    assert np.abs(bkg - 10).max() < 0.3 and np.abs(rms - 1).max() < 0.2
    assert len(notes) == 1 and notes[0].startswith("frame.fits: background ")
    assert "80.0% of pixels masked" in notes[0] or "50% masked" in notes[0]


def test_background_survives_saturated_stars_and_nan_borders() -> None:
    """The 8 real frames of issue 10 failed with sigma clipping; the chain must not."""
    rng = np.random.default_rng(6)
    data = rng.normal(500, 5, (300, 300)).astype(np.float32)
    yy, xx = np.mgrid[0:300, 0:300]
    for x0, y0 in ((60, 60), (200, 150), (120, 240)):
        data += (6e4 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 6.0**2))).astype(np.float32)
    data[:, 150:153] = np.maximum(data[:, 150:153], 65535)  # a bleed column over the frame
    data[:, :8] = np.nan
    sat = data >= 65535
    np.minimum(data, 65535, out=data)
    bkg, rms = estimate_background(data, sat, box=50)
    far = (np.hypot(xx - 60, yy - 60) > 40) & (np.abs(xx - 151) > 20) & (xx > 20)
    assert np.median(np.abs(bkg[far] - 500)) < 2.0
    assert 3.0 < float(np.median(rms)) < 8.0


@pytest.mark.parametrize("sky", [0.1, 0.5, 1.5])
def test_photon_counting_background_is_the_mean_not_a_whole_count(sky: float) -> None:
    """A sky of < ~2 photons/px has a whole-count median and a MAD of 0: the background is
    the clipped mean (not the median 0, which biased every aperture flux by -sky per pixel)
    and the rms the Poisson one, with stars present; the note names the estimator."""
    rng = np.random.default_rng(int(10 * sky))
    counts = rng.poisson(sky, (400, 300)).astype(np.float32)
    yy, xx = np.mgrid[0:400, 0:300]
    for x0, y0 in ((50, 60), (200, 150), (120, 300)):
        counts += rng.poisson(400 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 4.5))
    notes: list[str] = []
    bkg, rms = estimate_background(counts + 100, box=50, source="emccd.fits", notes=notes)
    assert abs(float(np.median(bkg)) - (100 + sky)) < 0.05 * max(sky, 0.5)
    assert abs(float(np.median(rms)) - np.sqrt(sky)) < 0.1 * np.sqrt(sky)
    assert notes == ["emccd.fits: background from 5-sigma-clipped mean and std in boxes: "
                     "photon-counting noise"]  # fmt: skip


def test_coarse_quantisation_of_ordinary_noise_is_not_photon_counting() -> None:
    """1.5 ADU of noise is photon counting only if an ADU is about one photon."""
    from atd_dl.prep.enhance import whole_count_noise

    rng = np.random.default_rng(8)
    data = np.round(rng.normal(300.0, 1.5, (200, 200))).astype(np.float32)
    valid = np.ones(data.shape, bool)
    assert whole_count_noise(data, valid, gain=1.0)
    assert whole_count_noise(data, valid)  # gain unknown: ADU taken as counts
    assert not whole_count_noise(data, valid, gain=5.0)  # 7.5 e- of noise
    assert not whole_count_noise(data + 0.25, valid, gain=1.0)  # not whole numbers
    notes: list[str] = []
    estimate_background(data, gain=5.0, notes=notes)
    assert notes == []  # the sigma-clipped median, no note


def test_background_of_a_constant_frame_is_its_value_with_zero_rms() -> None:
    notes: list[str] = []
    bkg, rms = estimate_background(np.full((80, 80), 3.0, np.float32), source="f.fits", notes=notes)
    assert np.all(bkg == 3.0) and np.all(rms == 0.0)
    assert notes and "constant" in notes[-1] and notes[-1].startswith("f.fits: ")


def test_fully_masked_frame_is_an_input_error() -> None:
    data = np.full((60, 60), np.nan, dtype=np.float32)
    with pytest.raises(InputError, match="no unmasked finite pixels"):
        enhance_frame(data)
    with pytest.raises(InputError, match="no unmasked finite pixels: cannot compute ZScale"):
        zscale_stretch(np.ones((5, 5)), np.ones((5, 5), bool))


def test_constant_frame_gives_zeros_with_warning() -> None:
    with pytest.warns(RuntimeWarning, match="degenerate stretch limits"):
        result = enhance_frame(np.full((60, 80), 1234.0, dtype=np.float32))
    assert result.image8.dtype == np.uint8 and not result.image8.any()
    assert result.vmin == result.vmax == 0.0


def test_zscale_matches_astropy_and_formula() -> None:
    data = star_field(96, gradient=0.0, noise=5.0)
    img8, vmin, vmax = zscale_stretch(data)
    ref_lo, ref_hi = ZScaleInterval().get_limits(data)
    assert (vmin, vmax) == pytest.approx((ref_lo, ref_hi))
    expected = np.rint(255 * (np.clip(data, vmin, vmax) - vmin) / (vmax - vmin))
    assert np.abs(img8.astype(int) - expected).max() <= 1  # float32 vs float64 rounding
    assert (img8.astype(int) == expected).mean() > 0.999


def test_masked_pixels_excluded_from_limits_nan_becomes_zero() -> None:
    data = np.random.default_rng(6).normal(0, 1, (50, 50)).astype(np.float32)
    data[0, :10] = np.nan
    data[1, :10] = 1e6  # saturated-like
    mask = ~np.isfinite(data)
    mask[1, :10] = True
    img8, vmin, vmax = zscale_stretch(data, mask)
    assert vmax < 10
    assert (img8[0, :10] == 0).all() and (img8[1, :10] == 255).all()


def test_enhance_frame_fields() -> None:
    data = star_field(300, gradient=100.0, noise=5.0)
    data[10, 10] = np.nan
    result = enhance_frame(data, ~np.isfinite(data))
    assert result.image8.shape == data.shape and result.image8.dtype == np.uint8
    assert (
        result.background.dtype
        == result.background_rms.dtype
        == result.subtracted.dtype
        == np.float32
    )
    np.testing.assert_allclose(result.subtracted, data - result.background, equal_nan=True)
    assert np.isnan(result.subtracted[10, 10]) and result.image8[10, 10] == 0
    assert result.vmin < 0 < result.vmax  # limits of the background-subtracted frame
    # the sky gradient is gone: columns left and right of centre have the same grey level
    left, right = np.median(result.image8[:, 90:120]), np.median(result.image8[:, 180:210])
    assert abs(float(left) - float(right)) <= 3
    raw8, _, _ = zscale_stretch(data)
    assert np.median(raw8[:, 180:210]) - np.median(raw8[:, 90:120]) > 20  # without subtraction


def test_quality_metrics_known_values() -> None:
    img = np.zeros((4, 4), np.uint8)
    img[:, 2:] = 255
    m = quality_metrics(img)
    assert (m.mean, m.contrast, m.entropy) == pytest.approx((127.5, 127.5, 1.0))
    uniform = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert quality_metrics(uniform).entropy == pytest.approx(8.0)
    assert quality_metrics(np.full((3, 3), 7, np.uint8)).entropy == 0.0
    mask = np.zeros((4, 4), bool)
    mask[:, 2:] = True
    assert quality_metrics(img, mask).mean == 0.0
    with pytest.raises(ValueError, match="uint8"):
        quality_metrics(img.astype(float))


def test_linear_uint8() -> None:
    np.testing.assert_array_equal(
        linear_uint8(np.array([0, 257, 65535, 70000, -3, np.nan])), [0, 1, 255, 255, 0, 0]
    )


def test_table1_trends_on_quantised_frame_with_sky_gradient() -> None:
    data = star_field(192, gradient=30.0, noise=3.0)
    rows = {r["method"]: r for r in table1_metrics(data)}
    original, zscale, both = rows["original"], rows["zscale"], rows["background_zscale"]
    # as in the paper's Table 1: stretching raises mean grey, contrast and entropy a lot
    assert zscale["mean"] > 10 * original["mean"]
    assert zscale["contrast"] > 10 * original["contrast"]
    assert zscale["entropy"] > original["entropy"] + 3
    # background subtraction raises the entropy again (integer data + gradient: the
    # ZScale-only image leaves grey levels empty that the subtracted frame fills)
    assert both["entropy"] > zscale["entropy"] + 0.5
    assert both["mean"] > zscale["mean"]


@settings(max_examples=50, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(2, 40), st.integers(2, 40)),
        elements=st.floats(-1e5, 1e5, width=32, allow_nan=False),
    )
)
def test_stretch_range_and_monotonic(data: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant arrays: all-zero output
        img8, vmin, vmax = zscale_stretch(data)
    assert img8.dtype == np.uint8 and img8.shape == data.shape
    flat, out = data.ravel().astype(np.float64), img8.ravel().astype(int)
    order = np.argsort(flat, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)  # brighter input never gives a darker pixel
    if vmax > vmin:
        assert out[flat <= vmin].max(initial=0) == 0
        assert out[flat >= vmax].min(initial=255) == 255


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 200), elements=st.floats(-1e6, 1e6, allow_nan=False)),
    st.floats(-1e3, 1e3),
    st.floats(1e-3, 1e4),
)
def test_stretch_to_uint8_property(values: np.ndarray, vmin: float, width: float) -> None:
    out = stretch_to_uint8(values, vmin, vmin + width).astype(int)
    order = np.argsort(values, kind="stable")
    assert out.min() >= 0 and out.max() <= 255
    assert np.all(np.diff(out[order]) >= 0)


@pytest.mark.parametrize("shape", [(300, 200), (257, 131)])
def test_background_mesh_upsampling_matches_photutils(shape: tuple[int, int]) -> None:
    """The separable mesh zoom equals Background2D's own (bicubic spline) background map."""
    from photutils.background import Background2D, MedianBackground

    from atd_dl.prep.enhance import upsample_mesh

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    data = 100 + 0.05 * xx + 20 * np.sin(yy / 40.0) + rng.normal(0, 2, shape)
    bkg = Background2D(data, (32, 32), filter_size=3, bkg_estimator=MedianBackground())
    ours = upsample_mesh(bkg.background_mesh, bkg.box_size, data.shape)
    assert ours.shape == shape
    assert np.allclose(ours, np.asarray(bkg.background), atol=1e-4)
