"""2MASS DAOFind pipeline (Liu et al. 2025): formulae, screening, saturation, de-duplication."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _baselines_helpers import FWHM_PER_SIGMA, add_gaussian_stars
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from atd_dl.baselines.twomass import (
    SATURATION_LEVEL,
    TwoMassFinder,
    calibrated_magnitude,
    central_sharpness,
    classify_known_new_fp,
    deduplicate,
    density_rule,
    false_positive_rate,
    fwhm_from_seesh,
    growth_rate,
    saturation_radius,
    sharpness_keep,
    snr_eq6,
    to_2mass_magnitude,
    twomass_metrics,
)

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
ATLAS = REAL / "aK_asky_990502s1350080.fits.gz"

FWHM = 2.5
SIGMA = FWHM / FWHM_PER_SIGMA


# ------------------------------------------------------------------------ formulae


def test_header_rules_and_eq6() -> None:
    assert fwhm_from_seesh(0.95) == pytest.approx(3.13 * 0.95 - 0.46)
    area = np.pi * 1.2**2
    # SNR = (f - A*S)/sqrt(A*S^2): a flux of A*S + 5*sqrt(A)*S gives exactly 5
    f = area * 2.0 + 5.0 * np.sqrt(area) * 2.0
    assert snr_eq6(np.array([f]), 1.2, 2.0)[0] == pytest.approx(5.0)
    surf, df = central_sharpness(np.array([30.0]), np.array([10.0]), 1.0)
    assert surf[0] == pytest.approx(20.0 / (2 * np.pi - 1))
    assert df[0] == pytest.approx(10.0 - 20.0 / (2 * np.pi - 1))


def test_saturation_radius_formula() -> None:
    v = np.array([1000.0, SATURATION_LEVEL, 8200.0, 20000.0, 60000.0])
    r = saturation_radius(v)
    assert r[0] == 0.0 and r[1] == 0.0  # only v > 2^13 counts
    np.testing.assert_allclose(r[2:], -2247.0 + 251.0 * np.log(v[2:]))
    assert r[3] == pytest.approx(238.78, abs=0.01)  # 20000 DN -> ~4 arcmin


def test_density_rules_boundaries() -> None:
    assert density_rule(5000) == (4.0, 0.5)
    assert density_rule(2001) == (4.0, 0.5)
    assert density_rule(2000) == (5.0, 0.6)
    assert density_rule(1000) == (5.0, 0.6)
    assert density_rule(999) == (6.0, 0.7)
    snr = np.array([2.5, 3.5, 4.5, 5.5, 7.0])
    sharp = np.full(5, 0.55)
    # dense: only 3 <= SNR <= 4 and sharpness < 0.5 is rejected -> nothing here
    assert sharpness_keep(snr, sharp, 3000).all()
    # sparse: 3 <= SNR <= 6 with sharpness < 0.7 rejected; SNR outside the range kept
    np.testing.assert_array_equal(sharpness_keep(snr, sharp, 10), [True, False, False, False, True])


def test_magnitudes_a1_a2() -> None:
    m = calibrated_magnitude(np.array([100.0, 0.0, -5.0]), 20.0)
    assert m[0] == pytest.approx(15.0) and np.isnan(m[1]) and np.isnan(m[2])
    mc = np.array([10.0, 11.0, 15.0, 18.0])
    expect = [
        -1.293 * 100 + 27.733 * 10 - 139.634,
        1.009 * 11 - 1.496,
        0.980 * 15 - 1.119,
        0.820 * 18 + 1.621,
    ]
    np.testing.assert_allclose(to_2mass_magnitude(mc), expect)
    # the pieces join smoothly at 12 and 17 mag (the fit is close to continuous there)
    for edge in (12.0, 17.0):
        lo, hi = to_2mass_magnitude(np.array([edge, edge + 1e-6]))
        assert abs(hi - lo) < 0.05


def test_growth_and_false_positive_rates() -> None:
    assert growth_rate(21, 100) == pytest.approx(21.0)
    assert false_positive_rate(5, 100) == pytest.approx(5.0)
    assert np.isnan(growth_rate(3, 0)) and np.isnan(false_positive_rate(0, 0))
    ref = SkyCoord([10.0, 10.01] * u.deg, [0.0, 0.0] * u.deg)
    deep = SkyCoord([10.0, 10.01, 10.02] * u.deg, [0.0, 0.0, 0.0] * u.deg)
    det = SkyCoord(
        [10.0 + 0.5 / 3600, 10.02 + 1.5 / 3600, 10.05] * u.deg, [0.0, 0.0, 0.0] * u.deg
    )  # known, new (1.5" from a deep source), false
    cls = classify_known_new_fp(det, ref, deep)
    np.testing.assert_array_equal(cls["known"], [True, False, False])
    np.testing.assert_array_equal(cls["new"], [False, True, False])
    np.testing.assert_array_equal(cls["fp"], [False, False, True])
    m = twomass_metrics(det, ref, deep)
    assert m["gr_percent"] == pytest.approx(50.0) and m["fp_percent"] == pytest.approx(100 / 3)


# ------------------------------------------------------------------------ screening on pixels


def _stamp(x0: float, y0: float, flux: float, sigma: float) -> np.ndarray:
    return add_gaussian_stars(
        np.zeros((31, 31)), np.array([x0]), np.array([y0]), np.array([flux]), sigma
    )


def _measure(img: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """(Eq. 6 SNR with SKYSIG=1, peak-normalised central sharpness) of a noiseless stamp."""
    from photutils.aperture import CircularAperture, aperture_photometry

    f_sigma = float(
        aperture_photometry(img, CircularAperture([(x, y)], r=SIGMA))["aperture_sum"][0]
    )
    f_center = float(img[int(round(y)), int(round(x))])
    _, df = central_sharpness(np.array([f_sigma]), np.array([f_center]), SIGMA)
    return float(snr_eq6(np.array([f_sigma]), SIGMA, 1.0)[0]), float(df[0] / f_center)


def test_sharpness_screen_keeps_a_star_and_rejects_a_diffuse_bump() -> None:
    snr_s, sharp_s = _measure(_stamp(15.0, 15.0, 35.0, SIGMA), 15.0, 15.0)
    snr_b, sharp_b = _measure(_stamp(15.0, 15.0, 160.0, 3.0), 15.0, 15.0)
    assert 3.0 < snr_s < 6.0 and 3.0 < snr_b < 6.0  # both in the sparse-field screening range
    assert sharp_s > 0.7 > sharp_b
    keep = sharpness_keep(np.array([snr_s, snr_b]), np.array([sharp_s, sharp_b]), n_detections=50)
    np.testing.assert_array_equal(keep, [True, False])
    # a dense field (N > 2000) applies h = 0.5 only below SNR 4: the bump survives there
    assert sharpness_keep(np.array([snr_b]), np.array([sharp_b]), n_detections=2500)[0]


def _pipeline_frame() -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    rng = np.random.default_rng(4)
    ny, nx = 200, 220
    img = np.full((ny, nx), 100.0)
    where = {
        "star": (110.0, 100.0),
        "edge_star": (20.0, 100.0),  # inside the 36-px left margin
        "near_sat": (160.0, 150.0),  # 15 px from the saturated star
        "far_sat": (160.0, 110.0),  # 45 px from it
        "hot": (60.0, 60.0),
    }
    for key in ("star", "edge_star", "near_sat", "far_sat"):
        x, y = where[key]
        add_gaussian_stars(img, np.array([x]), np.array([y]), np.array([3000.0]), SIGMA)
    add_gaussian_stars(img, np.array([175.0]), np.array([150.0]), np.array([1.0e5]), SIGMA)
    img += rng.normal(0.0, 2.0, img.shape)
    img[60, 60] += 400.0  # hot pixel
    return img.astype(np.float32), where


def test_pipeline_edges_saturation_and_hot_pixel() -> None:
    img, where = _pipeline_frame()
    assert img.max() > SATURATION_LEVEL
    finder = TwoMassFinder(skysig=2.0, fwhm_px=FWHM, pixel_scale=5.0, keep_rejected=True)
    res = finder.run(img)
    cat = res.catalog
    assert res.params["fwhm_det_px"] == pytest.approx(0.7 * FWHM)
    assert res.counts["saturated_regions"] == 1
    # exclusion radius of the saturated star, in px at 5"/px
    r_pix = float(res.saturated["r_pix"][0])
    assert 15.0 < r_pix < 45.0

    def reason(key: str) -> str | None:
        x, y = where[key]
        d = np.hypot(cat["x"] - x, cat["y"] - y)
        return None if d.min() > 1.5 else str(cat["reject"][np.argmin(d)])

    assert reason("star") == ""
    assert reason("far_sat") == ""
    assert reason("edge_star") == "edge"
    assert reason("near_sat") == "saturation"
    # DAOFind's sharpness bound (<= 1) already drops a single hot pixel
    assert reason("hot") is None
    kept = finder.with_params(keep_rejected=False)(img)
    assert len(kept) == int(np.sum(cat["reject"] == "")) == res.counts["final"]


def test_sharpness_norm_validation() -> None:
    with pytest.raises(ValueError, match="sharpness_norm must be"):
        TwoMassFinder(sharpness_norm="max")


# ------------------------------------------------------------------------ de-duplication


def _cat(ra: list[float], dec: list[float], snr: list[float]) -> Table:
    return Table({"id": np.arange(1, len(ra) + 1), "ra": ra, "dec": dec, "snr": snr})


def test_kdtree_deduplication_across_overlapping_frames() -> None:
    d = 1.0 / 3600.0
    a = _cat([10.0, 10.01, 10.02], [5.0, 5.0, 5.0], [50.0, 8.0, 12.0])
    b = _cat(
        [10.01 + 0.3 * d, 10.02 - 0.6 * d, 10.04, 10.0 + 1.5 * d],
        [5.0, 5.0 + 0.2 * d, 5.0, 5.0],
        [9.0, 11.0, 7.0, 6.0],
    )
    merged = deduplicate([a, b], radius_arcsec=1.0)
    assert len(merged) == 5  # 7 detections, two pairs within 1"; 1.5" apart stays separate
    assert sorted(merged["n_dup"].tolist()) == [1, 1, 1, 2, 2]
    pair = merged[np.isclose(merged["ra"], 10.01, atol=2 * d)]
    assert len(pair) == 1 and pair["snr"][0] == 9.0 and pair["frame"][0] == 1  # best SNR kept
    assert merged["id"].tolist() == [1, 2, 3, 4, 5]
    # two real sources 0.6" apart in one frame stay two; the other frame's copy joins the brighter
    c = _cat([20.0, 20.0 + 0.6 * d], [0.0, 0.0], [30.0, 10.0])
    e = _cat([20.0 + 0.3 * d], [0.0], [20.0])
    both = deduplicate([c, e])
    assert len(both) == 2 and both["n_dup"].tolist() == [2, 1]
    with pytest.raises(ValueError, match="no ra/dec columns"):
        deduplicate([Table({"x": [1.0]})])


# ------------------------------------------------------------------------ real Atlas frame


@pytest.fixture(scope="module")
def atlas():
    if not ATLAS.exists():
        pytest.skip(f"2MASS Atlas frame not available at {ATLAS}")
    from atd_dl.io.fits_io import read_frame

    return read_frame(ATLAS)


def test_real_atlas_frame(atlas) -> None:
    finder = TwoMassFinder.from_header(atlas.header, atlas.wcs)
    assert finder.skysig == pytest.approx(3.71759, rel=1e-4) and finder.seesh == 0.95
    assert finder.pixel_scale == pytest.approx(1.0, rel=1e-3)
    res = finder.run(atlas.data, mask=atlas.mask, wcs=atlas.wcs)
    c = res.counts
    assert c["daofind"] > c["after_edge"] > c["after_snr"] >= c["after_sharpness"] >= c["final"]
    assert 2000 < c["final"] < 6000  # dense field: N > 2000 rule
    assert res.params["h"] == 0.5 and res.params["snr_upper"] == 4.0
    assert c["saturated_regions"] >= 1 and c["after_sharpness"] > c["final"]
    cat = res.catalog
    ny, nx = atlas.data.shape
    assert cat["x"].min() >= 36 and cat["x"].max() <= nx - 37
    assert cat["y"].min() >= 26 and cat["y"].max() <= ny - 27
    assert np.all(cat["snr"] > 3)
    assert {"ra", "dec", "mag_cal", "mag_2mass"} <= set(cat.colnames)
    bright = cat["mag_2mass"][np.argmax(cat["snr"])]
    assert 4.0 < bright < 12.0


def test_real_atlas_measured_fallbacks(atlas) -> None:
    """Without SKYSIG / SEESH the pipeline measures them; close to the header values."""
    res = TwoMassFinder().run(atlas.data, mask=atlas.mask, wcs=atlas.wcs)
    assert res.params["sources"] == {
        "skysig": "measured",
        "pixel_scale": "header/wcs",
        "fwhm": "measured",
    }
    assert res.params["skysig"] == pytest.approx(3.71759, rel=0.25)
    assert res.params["fwhm_img_px"] == pytest.approx(3.13 * 0.95 - 0.46, rel=0.3)


def test_cli_twomass_on_real_frame(atlas, tmp_path: Path) -> None:
    from atd_dl.cli import main

    # the same frame under two names (one name given twice is read once)
    copy = tmp_path / "copy" / "second_exposure.fits.gz"
    copy.parent.mkdir()
    copy.write_bytes(ATLAS.read_bytes())
    out = tmp_path / "out"
    rc = main(["twomass", str(ATLAS), str(copy), "--out", str(out)])
    assert rc == 0
    single = Table.read(out / "aK_asky_990502s1350080.twomass.ecsv")
    merged = Table.read(out / "twomass_merged.ecsv")
    assert len(merged) == len(single)  # the same frame twice: every source is a duplicate
    assert np.all(merged["n_dup"] == 2)
