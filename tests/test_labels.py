"""Catalog-anchored labels: segmentation, blob / 3×3 SNR (Eqs. 7–11), masks, overlay."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from astropy.stats import SigmaClip
from astropy.table import Table
from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

from atd_dl.labels import (
    LabelConfig,
    aperture_snr,
    blob_snr,
    box_snr,
    make_labels,
    segment_threshold,
    snr_from_counts,
)
from atd_dl.labels.overlay import render_overlay, write_overlay

# ----------------------------------------------------------------------------- helpers


def gaussian_star(shape, x, y, flux, fwhm=1.6):
    """Pixel-sampled Gaussian star of total ``flux`` centred on ``(x, y)``."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    s = fwhm / 2.3548
    return flux * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) / (2 * np.pi * s * s)


def flat_maps(shape, level, rms):
    return np.full(shape, level, np.float32), np.full(shape, rms, np.float32)


@pytest.fixture(scope="module")
def sim_field(tmp_path_factory):
    """A 512² paper-preset simulated frame read back like real data (bias-only calibrated
    copy for the hot-pixel test, full calibration for the rest)."""
    from atd_dl.io.catalogs import project_catalog, read_reference_catalog
    from atd_dl.io.fits_io import read_frame
    from atd_dl.prep.calibration import CalibrationMasters, calibrate
    from atd_dl.prep.enhance import enhance_frame
    from atd_dl.sim import preset_config, simulate_field, write_field
    from atd_dl.sim.instrument import make_camera

    cfg = preset_config("paper", size=512)
    sim = simulate_field(cfg, 5, 0)
    out = tmp_path_factory.mktemp("labels_sim")
    paths = write_field(sim, out)
    raw = read_frame(paths["frame"])
    full = calibrate(raw, CalibrationMasters(bias=sim.bias, dark=sim.dark, flat=sim.flat))
    bias_only = calibrate(raw, CalibrationMasters(bias=sim.bias))
    cat = read_reference_catalog(paths["catalog"])
    proj = project_catalog(cat, full.wcs, full.shape, epoch=full.date_obs)
    cam = make_camera(cfg, 5)
    return {
        "sim": sim,
        "full": full,
        "bias_only": bias_only,
        "enh_full": enhance_frame(full.data, full.mask),
        "enh_bias": enhance_frame(bias_only.data, bias_only.mask),
        "cat": cat,
        "proj": proj,
        "hot": (cam.hot_x, cam.hot_y),
        "out": out,
    }


def _labels(d, which="full", **cfg):
    frame = d[which]
    enh = d["enh_full" if which == "full" else "enh_bias"]
    return make_labels(
        frame.data,
        enh.background,
        enh.background_rms,
        d["proj"],
        gain=frame.gain,
        mask=frame.mask,
        saturated=frame.saturated,
        n_catalog=len(d["cat"]),
        config=LabelConfig(**cfg) if cfg else None,
    )


# ----------------------------------------------------------------------------- SNR formulas


def test_snr_from_counts_hand_case():
    # F_ADU = 1000 over A = 10 px, sky 50 ± 4 ADU, G = 2 e-/ADU
    fe, sbg, snr = snr_from_counts(1000.0, 10, 50.0, 4.0, 2.0)
    assert fe == pytest.approx(1000.0)  # (1000 - 10*50) * 2
    assert sbg == pytest.approx(math.sqrt(10) * 4 * 2)
    assert snr == pytest.approx(1000.0 / math.sqrt(1000.0 + 640.0))
    # negative net flux: no shot noise term, negative SNR
    fe, sbg, snr = snr_from_counts(400.0, 10, 50.0, 4.0, 2.0)
    assert snr == pytest.approx(-200.0 / math.sqrt(640.0))
    with pytest.raises(ValueError, match="gain"):
        snr_from_counts(1.0, 1, 0.0, 1.0, 0.0)


def test_blob_snr_on_hand_made_blob():
    """Eq. 8 radius and Eqs. 9–11 on a plus-shaped blob over a known sky pattern."""
    rng = np.random.default_rng(1)
    img = (100.0 + rng.choice([-2.0, 2.0], size=(60, 60))).astype(np.float32)
    blob = [(30, 20), (29, 20), (31, 20), (30, 19), (30, 21)]  # (y, x): centre + 4 neighbours
    for yy, xx in blob:
        img[yy, xx] += 50.0
    bkg, rms = flat_maps(img.shape, 100.0, 2.0)
    seg = segment_threshold(img, bkg, rms, f=10.0)  # only the blob passes 100 + 20
    assert seg.n == 1
    assert (seg.x[0], seg.y[0]) == pytest.approx((20.0, 30.0))
    assert seg.radius[0] == pytest.approx(2.0)  # max |P_i - c| = 1, + 1
    gain = 1.5
    m = blob_snr(img, seg.x, seg.y, seg.radius, gain=gain, annulus_gap=2.0, annulus_width=4.0)
    # independent computation from the definitions
    yy, xx = np.mgrid[0:60, 0:60]
    d = np.hypot(xx - 20.0, yy - 30.0)
    ap = d <= 2.0
    ring = (d >= 4.0) & (d < 8.0)
    mu, sd = img[ring].mean(), img[ring].std()  # ±2 pattern: nothing to clip
    area = ap.sum()
    fe = (img[ap].sum() - area * mu) * gain
    sbg = math.sqrt(area) * sd * gain
    assert m.area[0] == area == 13
    assert m.flux_adu[0] == pytest.approx(img[ap].sum())
    assert m.sky_mean[0] == pytest.approx(mu, rel=1e-6)
    assert m.sky_std[0] == pytest.approx(sd, rel=1e-5)
    assert m.flux_e[0] == pytest.approx(fe, rel=1e-5)
    assert m.snr[0] == pytest.approx(fe / math.sqrt(fe + sbg**2), rel=1e-5)


def test_aperture_stats_agree_with_photutils():
    rng = np.random.default_rng(3)
    img = rng.normal(100, 5, (200, 200)).astype(np.float32)
    img[50:53, 60:63] += 40
    img[80, 125] += 500  # an outlier in an annulus: clipped by both
    x = np.array([61.3, 120.0, 30.7])
    y = np.array([51.2, 80.0, 150.4])
    ours = aperture_snr(img, x, y, gain=2.0, radius=2.5, r_in=5.0, r_out=9.0, iters=20)
    ap = ApertureStats(img, CircularAperture(np.column_stack([x, y]), r=2.5), sum_method="center")
    clip = SigmaClip(sigma=3.0, maxiters=20, cenfunc="mean", stdfunc="std")
    # our annulus is centred on the nearest pixel centre
    ann = CircularAnnulus(np.column_stack([np.rint(x), np.rint(y)]), 5.0, 9.0)
    sky = ApertureStats(img, ann, sum_method="center", sigma_clip=clip)
    np.testing.assert_allclose(ours.flux_adu, ap.sum, rtol=1e-6)
    np.testing.assert_allclose(ours.area, ap.sum_aper_area.value)
    np.testing.assert_allclose(ours.sky_mean, sky.mean, rtol=1e-6)
    np.testing.assert_allclose(ours.sky_std, sky.std, rtol=1e-5)


def test_box_snr_star_versus_empty_position():
    shape, gain, sky = (80, 80), 2.0, 100.0
    star = gaussian_star(shape, 40.2, 30.7, 3000.0)
    # noiseless: sky std 0, so SNR = sqrt(F_e) exactly
    img = (sky + star).astype(np.float64)
    m = box_snr(img, [40.2, 60.0], [30.7, 60.0], gain=gain)
    f3 = star[30:33, 39:42].sum()  # box on the nearest pixel (40, 31)
    assert m.area.tolist() == [9, 9]
    assert m.flux_e[0] == pytest.approx((f3 + 9 * sky - 9 * m.sky_mean[0]) * gain, rel=1e-6)
    assert m.sky_mean[1] == pytest.approx(sky)
    assert m.snr[0] == pytest.approx(math.sqrt(m.flux_e[0]), rel=1e-3)
    assert m.snr[1] == pytest.approx(0.0, abs=1e-9) or np.isnan(m.snr[1])
    # with noise: the star stands out, an empty place does not
    rng = np.random.default_rng(0)
    noisy = img + rng.normal(0, 5.0, shape)
    n = box_snr(noisy, [40.2, 60.0, 15.0], [30.7, 60.0, 18.0], gain=gain)
    assert n.snr[0] > 20
    assert abs(n.snr[1]) < 3 and abs(n.snr[2]) < 3
    # bad and saturated pixels are counted, not summed silently
    bad = np.zeros(shape, bool)
    bad[31, 41] = True
    sat = np.zeros(shape, bool)
    sat[31, 40] = True
    c = box_snr(noisy, [40.2], [30.7], gain=gain, bad=bad, saturated=sat)
    assert (c.n_bad[0], c.n_saturated[0], c.area[0]) == (1, 1, 8)


# ----------------------------------------------------------------------------- segmentation


def test_segmentation_connectivity_and_min_area():
    img = np.zeros((20, 20), np.float32)
    img[5, 5] = img[6, 6] = 10  # diagonal pair
    img[12, 3] = 10  # single pixel
    img[15:17, 10:13] = 10  # 2x3 block
    bkg, rms = flat_maps(img.shape, 0.0, 1.0)
    s8 = segment_threshold(img, bkg, rms, f=0.5)
    assert s8.n == 2 and sorted(s8.area.tolist()) == [2, 6]
    assert s8.n_discarded == 1
    s4 = segment_threshold(img, bkg, rms, f=0.5, connectivity=4)
    assert s4.n == 1 and s4.area.tolist() == [6]  # the pair splits into two singles
    masked = segment_threshold(img, bkg, rms, f=0.5, mask=img > 5)
    assert masked.n == 0


# ----------------------------------------------------------------------------- labels


def test_labels_keep_bright_simulated_stars(sim_field):
    res = _labels(sim_field)
    truth = sim_field["sim"].truth
    n = sim_field["full"].shape[0]
    star = np.asarray(truth["kind"]) == "star"
    x, y = np.asarray(truth["x"]), np.asarray(truth["y"])
    inner = (x > 4) & (x < n - 5) & (y > 4) & (y < n - 5)
    bright = star & inner & (np.asarray(truth["snr_true"]) >= 5)
    assert bright.sum() > 100
    kept_ids = set(np.asarray(res.kept["source_id"]).tolist())
    found = np.array([sid in kept_ids for sid in np.asarray(truth["source_id"])[bright]])
    assert found.mean() >= 0.95
    # and the mask covers their positions
    on = res.mask[np.rint(y[bright]).astype(int), np.rint(x[bright]).astype(int)]
    assert on.mean() >= 0.95
    # counts add up
    c = res.counts
    dropped = sum(c[k] for k in c if k.startswith("n_dropped_"))
    assert c["n_kept"] + dropped == c["n_catalog"] == len(sim_field["cat"])
    assert c["n_kept"] == c["n_kept_component"] + c["n_kept_blob"] == len(res.kept)
    assert c["n_components"] == c["n_components_matched"] + c["n_components_unmatched"]
    assert c["n_mask_pixels"] == int(res.mask.sum())
    assert res.mask.dtype == np.uint8 and set(np.unique(res.mask)) <= {0, 1}
    assert (np.asarray(res.kept["snr"])[~np.asarray(res.kept["saturated"])] >= 2.0).all()
    assert 1.0 < res.psf_fwhm < 2.5


def test_labels_reject_hot_pixels(sim_field):
    """Without the dark, hot pixels stay in the frame: they must not be labelled."""
    res = _labels(sim_field, which="bias_only")
    hx, hy = sim_field["hot"]
    px = np.asarray(sim_field["proj"]["x"])
    py = np.asarray(sim_field["proj"]["y"])
    # hot pixels with no catalog source (however faint) within 2.5 px
    d2 = (hx[:, None] - px[None, :]) ** 2 + (hy[:, None] - py[None, :]) ** 2
    lonely = d2.min(axis=1) > 2.5**2
    assert lonely.sum() >= 5
    assert sim_field["bias_only"].data[hy[lonely], hx[lonely]].mean() > 100  # they are hot
    assert res.mask[hy[lonely], hx[lonely]].sum() == 0
    # ... although most of them do form (unmatched) components
    assert (res.segmentation[hy[lonely], hx[lonely]] > 0).mean() > 0.5


def test_trimmed_masks_are_compact_and_inside_components(sim_field):
    trimmed = _labels(sim_field)
    paper = _labels(sim_field, trim=None)
    assert paper.counts["n_kept"] == trimmed.counts["n_kept"]
    # paper mode labels whole matched components; trimming keeps a subset of them
    assert trimmed.mask.sum() < 0.6 * paper.mask.sum()
    comp = trimmed.kind == 1
    # label pixels come from components, or are the nearest pixel of a kept source
    own = np.zeros_like(comp)
    own[np.rint(trimmed.kept["y"]).astype(int), np.rint(trimmed.kept["x"]).astype(int)] = True
    assert ((trimmed.segmentation[comp] > 0) | own[comp]).all()
    assert (own[comp] & (trimmed.segmentation[comp] == 0)).sum() < 0.15 * len(trimmed.kept)
    assert (paper.mask[comp & ~own] == 1).all()
    # every kept source lies on its label
    assert trimmed.mask[own].all()
    r = np.asarray(trimmed.kept["radius"])
    assert np.nanmin(r) >= 1.5 and np.nanmax(r) <= 6.0


def test_status_reasons_and_blob_labels():
    shape, gain = (64, 64), 1.0
    rng = np.random.default_rng(2)
    sky, noise = 200.0, 3.0
    img = sky + rng.normal(0, noise, shape)
    for x, y in ((20.0, 20.0), (40.3, 41.6), (30.0, 50.0)):
        img += gaussian_star(shape, x, y, 2000.0)
    img[10, 50] = np.nan
    sat = np.zeros(shape, bool)
    img += gaussian_star(shape, 50.0, 30.0, 2e5)
    sat[29:32, 49:52] = True
    img = img.astype(np.float32)
    mask = ~np.isfinite(img) | sat
    src = Table(
        {
            "x": [20.0, 40.3, 30.0, 50.2, 1.0, -3.0, 10.0, 50.0],
            "y": [20.0, 41.6, 50.0, 10.1, 30.0, 10.0, 40.0, 30.0],
            "source_id": [1, 2, 3, 4, 5, 6, 7, 8],
        }
    )
    bkg, rms = flat_maps(shape, sky, noise)
    res = make_labels(
        img,
        bkg,
        rms,
        src,
        gain=gain,
        mask=mask,
        saturated=sat,
        n_catalog=10,
        config=LabelConfig(psf_fwhm=1.6),
    )
    status = dict(zip(res.sources["source_id"].tolist(), res.sources["status"].tolist()))
    assert status == {
        1: "kept",
        2: "kept",
        3: "kept",
        4: "masked",
        5: "edge",
        6: "off_frame",
        7: "low_snr",
        8: "kept",
    }
    c = res.counts
    assert c["n_dropped_off_frame"] == 1 + 2  # one in the table, two never projected
    assert (c["n_kept"], c["n_kept_saturated"], c["n_dropped_snr"]) == (4, 1, 1)
    assert res.kept["saturated"].tolist() == [False, False, False, True]
    dropped = make_labels(
        img,
        bkg,
        rms,
        src,
        gain=gain,
        mask=mask,
        saturated=sat,
        config=LabelConfig(psf_fwhm=1.6, drop_saturated=True),
    )
    assert dropped.counts["n_dropped_saturated"] == 1 and dropped.counts["n_kept"] == 3
    # no component anywhere (huge f): every kept source gets a 3×3 blob label
    blobs = make_labels(img, bkg, rms, src[:3], gain=gain, config=LabelConfig(f=1e6))
    assert blobs.counts["n_components"] == 0 and blobs.counts["n_kept_blob"] == 3
    assert blobs.mask.sum() == 27
    assert blobs.mask[19:22, 19:22].all() and blobs.mask[41:44, 39:42].all()
    assert (blobs.kind[blobs.mask == 1] == 2).all()
    # unmatched components are never labelled: no source, no label
    none = make_labels(img, bkg, rms, src[6:7], gain=gain)
    assert none.counts["n_components"] >= 3 and none.mask.sum() == 0


def test_overlay_png(sim_field, tmp_path):
    from atd_dl.prep.enhance import enhance_frame

    res = _labels(sim_field)
    image8 = enhance_frame(sim_field["full"].data, sim_field["full"].mask).image8
    path = write_overlay(tmp_path / "ov" / "frame.png", image8, res)
    img = cv2.imread(str(path))
    assert img.shape == (*image8.shape, 3)
    assert not list(path.parent.glob("*.tmp"))
    bgr = render_overlay(image8, res, legend=False)
    comp = res.kind == 1
    g = bgr[comp].astype(int)
    g = g[~(g == (0, 0, 255)).all(axis=1)]  # red catalog dots are drawn on top
    assert (g[:, 1] > g[:, 0]).mean() > 0.95 and (g[:, 1] > g[:, 2]).mean() > 0.95
    # red dots at projected catalog positions away from labels
    src = res.sources[res.sources["status"] == "low_snr"]
    xs, ys = np.rint(src["x"]).astype(int), np.rint(src["y"]).astype(int)
    free = res.mask[ys, xs] == 0
    assert (bgr[ys[free], xs[free]] == (0, 0, 255)).all()
    with pytest.raises(ValueError, match="shape"):
        render_overlay(image8[:10], res)


def test_label_config_validation():
    with pytest.raises(ValueError, match="odd"):
        LabelConfig(box=4)
    with pytest.raises(ValueError, match="trim"):
        LabelConfig(trim="disk")
    assert LabelConfig().to_dict()["annulus"] == [5.0, 9.0]


def test_real_frame_labels_run(real_data_dir: Path):
    """A real 2MASS frame with a catalog built from its own bright pixels: runs, sane counts."""
    from atd_dl.io.fits_io import read_frame
    from atd_dl.prep.enhance import enhance_frame

    frame = read_frame(real_data_dir / "aK_asky_990502s1350080.fits.gz")
    enh = enhance_frame(frame.data, frame.mask)
    from photutils.detection import find_peaks

    peaks = find_peaks(enh.subtracted, threshold=10 * float(np.median(enh.background_rms)))
    src = Table({"x": peaks["x_peak"].astype(float), "y": peaks["y_peak"].astype(float)})
    res = make_labels(
        frame.data,
        enh.background,
        enh.background_rms,
        src,
        gain=10.0,
        mask=frame.mask,
        saturated=frame.saturated,
    )
    assert res.counts["n_kept"] >= 0.8 * len(src) > 10
    assert res.mask.sum() > 0
