"""psphot-style detection (Magnier et al. 2020 §4.3–4.4): mask, significance, peaks, key cols."""

from __future__ import annotations

import numpy as np
import pytest
from _baselines_helpers import add_gaussian_stars, make_star_field, recovered_fraction

from atd_dl.baselines.psphot import (
    MaskBits,
    PsphotFinder,
    biquadratic_peaks,
    build_mask,
    build_variance,
    cull_peaks,
    find_footprints,
    find_peaks,
    key_cols,
    significance_image,
)
from atd_dl.detect.flags import SourceFlag


def test_mask_bits_follow_the_paper_table() -> None:
    assert MaskBits.SAT == 0x20 and MaskBits.LOW == 0x40 and MaskBits.BLANK == 0x08
    assert MaskBits.CR == 0x100 and MaskBits.MARK == 0x8000
    data = np.array([[1.0, 70000.0, np.nan], [-5.0, 10.0, 10.0]])
    bad = np.zeros(data.shape, bool)
    bad[1, 2] = True
    m = build_mask(data, saturation=65000.0, bad_level=0.0, window=(0, 3, 0, 2), bad=bad)
    assert m.dtype == np.uint16
    assert m[0, 1] == MaskBits.SAT
    assert m[0, 2] == MaskBits.BLANK
    assert m[1, 0] == MaskBits.LOW
    assert m[1, 2] == MaskBits.DETECTOR
    assert m[0, 0] == 0 and m[1, 1] == 0
    outside = build_mask(np.ones((4, 4)), window=(1, 3, 1, 3))
    assert (outside[0] == MaskBits.BLANK).all() and outside[1, 1] == 0


def test_variance_models() -> None:
    data = np.array([[100.0, 400.0]])
    var = build_variance(data, np.zeros_like(data), gain=2.0, read_noise=4.0)
    np.testing.assert_allclose(var, [[100 / 2 + 4.0, 400 / 2 + 4.0]])
    rms = np.full_like(data, 3.0)
    np.testing.assert_allclose(build_variance(data, data - 50.0, background_rms=rms), 9.0)
    np.testing.assert_allclose(
        build_variance(data, data - 50.0, gain=5.0, background_rms=rms), 19.0
    )
    with pytest.raises(ValueError, match="need gain and read_noise"):
        build_variance(data, data)


def test_significance_of_pure_noise_has_unit_spread() -> None:
    """Smoothing the variance with k² gives the exact noise of the smoothed flux."""
    rng = np.random.default_rng(0)
    sigma_pix = np.where(np.arange(256)[None, :] < 128, 2.0, 5.0) * np.ones((256, 1))
    flux = rng.normal(0.0, sigma_pix)
    sig, _, _, sum_k2 = significance_image(flux, sigma_pix**2, 1.2)
    core = sig[10:-10, 10:-10]
    assert np.std(core[:, :100]) == pytest.approx(1.0, abs=0.06)
    assert np.std(core[:, 140:]) == pytest.approx(1.0, abs=0.06)
    assert sum_k2 == pytest.approx(1.0 / (4 * np.pi * 1.2**2), rel=0.02)


@pytest.mark.parametrize("vertex", [(4.3, 3.8), (3.55, 4.45), (4.0, 4.0), (4.9, 3.1)])
def test_biquadratic_recovers_the_vertex_exactly(vertex: tuple[float, float]) -> None:
    x0, y0 = vertex
    yy, xx = np.mgrid[:9, :9].astype(float)
    surface = 100.0 - 2.0 * (xx - x0) ** 2 - 3.0 * (yy - y0) ** 2 + 0.7 * (xx - x0) * (yy - y0)
    ys, xs = np.array([int(round(y0))]), np.array([int(round(x0))])
    x, y, ok = biquadratic_peaks(surface, ys, xs)
    assert ok[0]
    assert abs(x[0] - x0) < 1e-9 and abs(y[0] - y0) < 1e-9


def test_biquadratic_rejects_non_maxima() -> None:
    yy, xx = np.mgrid[:5, :5].astype(float)
    saddle = (xx - 2.0) ** 2 - (yy - 2.0) ** 2
    x, y, ok = biquadratic_peaks(saddle, np.array([2]), np.array([2]))
    assert not ok[0] and x[0] == 2.0 and y[0] == 2.0


def test_peak_rules_and_flat_tops() -> None:
    img = np.zeros((9, 9))
    img[2, 2] = 5.0  # isolated peak
    img[5:7, 5:7] = 3.0  # flat 2x2 top: one peak at its max-x, max-y corner
    img[2, 6] = 0.5  # below threshold
    ys, xs = find_peaks(img, 1.0)
    assert sorted(zip(ys.tolist(), xs.tolist())) == [(2, 2), (6, 6)]


def _two_peak_image(secondary: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Smooth S/N-like image: a broad pedestal (10) carrying a bright narrow peak (+40) at
    x = 20 and a narrow secondary peak of height ``secondary`` at x = 30 (row 20)."""
    yy, xx = np.mgrid[:40, :60].astype(float)
    s = 10.0 * np.exp(-((xx - 25) ** 2 + (yy - 20) ** 2) / (2 * 10.0**2))
    s += 40.0 * np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / (2 * 1.2**2))
    s += secondary * np.exp(-((xx - 30) ** 2 + (yy - 20) ** 2) / (2 * 1.2**2))
    return s, (20, 30)


def test_key_col_culling_removes_insignificant_and_keeps_real_secondary() -> None:
    for secondary, expect_kept in ((3.0, False), (15.0, True)):
        s, (py, px) = _two_peak_image(secondary)
        ys, xs = find_peaks(s, 5.0)
        assert (py, px) in set(zip(ys.tolist(), xs.tolist()))  # the secondary is a formal peak
        foot, n_foot = find_footprints(s, 5.0, grow_radius=3)
        assert n_foot == 1
        col, cy, cx, higher = key_cols(s, ys, xs, foot)
        main = int(np.argmax(s[ys, xs]))
        sec = [i for i in range(len(ys)) if (ys[i], xs[i]) == (py, px)][0]
        assert col[main] == -np.inf and higher[main] == -1
        assert higher[sec] == main
        # the col is the lowest point of the ridge between the peaks (on the joining row)
        ridge = s[20, 20 : px + 1]
        assert col[sec] == pytest.approx(ridge.min(), abs=1e-9)
        assert cy[sec] == 20 and 20 < cx[sec] < px
        keep = cull_peaks(s[ys, xs], col, 4.0)
        assert keep[main] and keep[sec] == expect_kept


def test_saturation_rule_culls_flat_topped_structure() -> None:
    peak = np.array([60.0])
    col = np.array([40.0])  # significant in S/N units
    assert cull_peaks(peak, col, 4.0)[0]
    keep = cull_peaks(
        peak,
        col,
        4.0,
        peak_flux=np.array([40000.0]),
        col_flux=np.array([39000.0]),
        saturation=60000.0,
    )
    assert not keep[0]  # within 5 % of saturation of the col near a saturated core


def test_finder_on_a_star_field() -> None:
    image, truth = make_star_field((128, 128), 30, fwhm=2.5, seed=21)
    res = PsphotFinder(smooth_fwhm=2.5, gain=1.0, read_noise=5.0).run(image)
    cat = res.catalog
    assert recovered_fraction(cat, truth, snr_min=20.0, radius=1.0) >= 0.95
    assert res.n_peaks >= len(cat)
    assert cat.meta["flux_unit"] == "electron"
    # matched-filter flux of bright isolated stars is close to the true flux
    from scipy.spatial import cKDTree

    d, i = cKDTree(np.column_stack([cat["x"], cat["y"]])).query(
        np.column_stack([truth["x"], truth["y"]])
    )
    bright = (truth["snr_true"] > 50) & (d < 1.0)
    ratio = np.asarray(cat["flux"])[i[bright]] / np.asarray(truth["flux"])[bright]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.1)


def test_finder_flags_saturated_and_masked_and_culls_wing_noise() -> None:
    rng = np.random.default_rng(5)
    img = add_gaussian_stars(
        np.full((80, 80), 100.0),
        np.array([40.0, 60.0]),
        np.array([40.0, 20.0]),
        np.array([4e6, 3000.0]),
        1.3,
    )
    img = np.minimum(img + rng.normal(0, 3.0, img.shape), 60000.0)
    mask = np.zeros(img.shape, bool)
    mask[20, 61] = True
    res = PsphotFinder(smooth_fwhm=3.0, saturation=60000.0, threshold=5.0).run(img, mask=mask)
    cat = res.catalog
    d_sat = np.hypot(cat["x"] - 40, cat["y"] - 40)
    d_star = np.hypot(cat["x"] - 60, cat["y"] - 20)
    assert (d_sat < 1.5).sum() == 1 and cat["flags"][np.argmin(d_sat)] & int(SourceFlag.SATURATED)
    assert (d_star < 1.5).sum() == 1 and cat["flags"][np.argmin(d_star)] & int(SourceFlag.MASKED)
    # the flat saturated core and its noisy wings give no extra detections
    assert (d_sat < 12).sum() == 1
    assert (res.mask[38:43, 38:43] & MaskBits.SAT).any()
