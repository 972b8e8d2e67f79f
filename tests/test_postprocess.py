"""Post-processing alone (probability map -> catalog) on simulated and synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest
from _detect_helpers import RMS_E, calibrated_sim, disc_map, moffat_image, noisy
from astropy import units as u

from atd_dl.detect import deblend
from atd_dl.detect.centroid import aperture_fluxes, aperture_weights
from atd_dl.detect.flags import SourceFlag, decode_flags, has_flag
from atd_dl.detect.postprocess import (
    CATALOG_COLUMNS,
    PostprocessConfig,
    extract_sources,
    segment_sources,
)
from atd_dl.evaluate.matching import match_points
from atd_dl.sim import preset_config, simulate_field


def _bright_truth(sim, size: int, edge: float = 3.0):
    t = sim.truth
    keep = (t["kind"] == "star") & (t["snr_true"] >= 10) & ~t["saturated"]
    keep &= (t["x"] >= edge) & (t["y"] >= edge)
    keep &= (t["x"] <= size - 1 - edge) & (t["y"] <= size - 1 - edge)
    return t[keep]


def _oracle_extraction(sim, size: int):
    image_e, rms_e, sat = calibrated_sim(sim)
    stars = sim.truth[(sim.truth["kind"] == "star") & (sim.truth["snr_true"] >= 3)]
    prob = disc_map((size, size), stars["x"], stars["y"], radius=1.6)
    return segment_sources(
        prob,
        0.5,
        image_e=image_e,
        mask=~np.isfinite(image_e),
        background_rms_e=rms_e,
        saturated=sat,
    )


@pytest.mark.parametrize("isolated, required", [(True, 0.95), (False, 0.93)])
def test_centroids_of_bright_simulated_stars_within_0p3_px(isolated: bool, required: float):
    size = 512
    sim = simulate_field(preset_config("paper", size=size, isolated=isolated), seed=1)
    ex = _oracle_extraction(sim, size)
    truth = _bright_truth(sim, size)
    assert len(truth) > 100
    det = np.column_stack([ex.catalog["x"], ex.catalog["y"]])
    m = match_points(det, np.column_stack([truth["x"], truth["y"]]), radius=0.3)
    assert m.tp / len(truth) >= required
    # the measured PSF FWHM is close to the simulated one (1.5 px on axis, 2.0 in corners)
    assert 1.3 < ex.fwhm < 2.4


def test_catalog_columns_units_and_segmentation_map():
    size = 400
    sim = simulate_field(preset_config("paper", size=size, isolated=True), seed=2)
    ex = _oracle_extraction(sim, size)
    cat = ex.catalog
    assert tuple(cat.colnames) == CATALOG_COLUMNS
    assert cat["x"].unit == u.pix and cat["flux"].unit == u.electron
    assert cat["area"].unit == u.pix**2
    assert np.array_equal(cat["id"], np.arange(1, len(cat) + 1))
    # segmentation map values are catalog ids and areas agree
    counts = np.bincount(ex.segmap.ravel(), minlength=len(cat) + 1)[1:]
    assert np.array_equal(counts, np.asarray(cat["area"]))
    assert np.all((cat["prob"] > 0.99) & (cat["prob"] <= 1.0))
    assert np.all(cat["x_err"] > 0) and np.all(cat["circularity"] <= 1.0)
    # SNR grows with the true SNR
    m = match_points(
        np.column_stack([cat["x"], cat["y"]]),
        np.column_stack([sim.truth["x"], sim.truth["y"]]),
        radius=0.5,
    )
    r = np.corrcoef(
        np.log(np.clip(cat["snr"][m.det_index], 0.1, None)),
        np.log(sim.truth["snr_true"][m.ref_index]),
    )[0, 1]
    assert r > 0.9


def test_empty_probability_map_gives_empty_table_with_all_columns():
    img = np.zeros((50, 60), np.float32)
    cat = extract_sources(np.zeros_like(img), 0.5, image_e=img, background_rms_e=1.0)
    assert len(cat) == 0 and tuple(cat.colnames) == CATALOG_COLUMNS


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        extract_sources(np.zeros((5, 5)), 0.5, image_e=np.zeros((5, 6)))


@pytest.mark.parametrize("sep", [2.0, 2.5, 3.0])
def test_close_pair_gives_two_detections(sep: float):
    rng = np.random.default_rng(int(sep * 10))
    for trial in range(5):
        ang = rng.uniform(0, np.pi)
        cx, cy = 20.3 + rng.uniform(-0.5, 0.5), 20.6 + rng.uniform(-0.5, 0.5)
        xs = np.array([cx - sep / 2 * np.cos(ang), cx + sep / 2 * np.cos(ang)])
        ys = np.array([cy - sep / 2 * np.sin(ang), cy + sep / 2 * np.sin(ang)])
        clean = moffat_image((41, 41), xs, ys, [3000.0, 1500.0])
        prob = disc_map((41, 41), xs, ys, radius=2.0)  # one merged component
        cat = extract_sources(prob, 0.5, image_e=noisy(clean, rng), background_rms_e=RMS_E)
        assert len(cat) == 2, f"separation {sep}, trial {trial}: {len(cat)} detections"
        d = np.hypot(cat["x"][:, None] - xs[None], cat["y"][:, None] - ys[None])
        assert d.min(axis=0).max() < 0.3
        assert np.all(has_flag(cat["flags"], SourceFlag.BLENDED))
        assert cat["parent"][0] == cat["parent"][1] > 0


def test_isolated_faint_and_bright_stars_are_not_split():
    rng = np.random.default_rng(7)
    n_split = 0
    for f in [150.0, 400.0, 1500.0, 20000.0] * 5:
        x, y = 15 + rng.uniform(-0.5, 0.5), 15 + rng.uniform(-0.5, 0.5)
        clean = moffat_image((31, 31), [x], [y], [f])
        prob = disc_map((31, 31), [x], [y], radius=2.0)
        cat = extract_sources(prob, 0.5, image_e=noisy(clean, rng), background_rms_e=RMS_E)
        n_split += len(cat) != 1
    assert n_split == 0


def _trail_image(rng, length=40.0, angle=0.5, flux=9000.0, stars=True):
    shape = (80, 100)
    t = np.linspace(-length / 2, length / 2, int(length * 4) + 1)
    xs = 50 + t * np.cos(angle)
    ys = 40 + t * np.sin(angle)
    clean = moffat_image(shape, xs, ys, np.full(t.size, flux / t.size))
    sx, sy = np.array([15.0, 85.0]), np.array([15.0, 70.0])
    if stars:
        clean += moffat_image(shape, sx, sy, [2000.0, 2000.0])
    prob = np.zeros(shape, np.float32)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            prob[np.rint(ys + dy).astype(int), np.rint(xs + dx).astype(int)] = 1
    if stars:
        prob = np.maximum(prob, disc_map(shape, sx, sy, 2.0))
    return noisy(clean, rng), prob, (50.0, 40.0)


def test_trail_gives_one_trail_flagged_detection():
    rng = np.random.default_rng(3)
    img, prob, (xm, ym) = _trail_image(rng)
    cat = extract_sources(prob, 0.5, image_e=img, background_rms_e=RMS_E)
    trails = cat[has_flag(cat["flags"], SourceFlag.TRAIL)]
    assert len(trails) == 1
    assert not has_flag(trails["flags"], SourceFlag.BLENDED)[0]
    assert abs(trails["x"][0] - xm) < 1.0 and abs(trails["y"][0] - ym) < 1.0
    assert trails["area"][0] > 100 and trails["circularity"][0] < 0.3
    assert len(cat) == 3  # trail + two stars, none split


def test_faint_trail_with_a_star_on_it_stays_one_trail():
    rng = np.random.default_rng(5)
    img, prob, _ = _trail_image(rng, length=60.0, angle=-0.3, flux=2500.0, stars=False)
    img = (
        img
        + noisy(moffat_image(img.shape, [50.0], [40.0], [3000.0]), rng)
        - noisy(np.zeros(img.shape), rng)
    )
    cat = extract_sources(prob, 0.5, image_e=img, background_rms_e=RMS_E * np.sqrt(2))
    assert len(cat) == 1
    assert decode_flags(int(cat["flags"][0])) == ["TRAIL"]


def test_chain_of_stars_is_not_a_trail():
    rng = np.random.default_rng(11)
    xs, ys = np.array([20.0, 25.3, 30.6, 35.9]), np.array([20.0, 20.4, 20.8, 21.2])
    clean = moffat_image((40, 56), xs, ys, [3000.0] * 4)
    prob = disc_map((40, 56), xs, ys, radius=3.0)
    cat = extract_sources(prob, 0.5, image_e=noisy(clean, rng), background_rms_e=RMS_E)
    assert len(cat) == 4
    assert not np.any(has_flag(cat["flags"], SourceFlag.TRAIL))
    d = np.hypot(cat["x"][:, None] - xs[None], cat["y"][:, None] - ys[None]).min(axis=0)
    assert d.max() < 0.2


def test_flags_saturated_masked_edge_low_snr():
    rng = np.random.default_rng(2)
    shape = (60, 60)
    xs, ys = np.array([10.0, 30.0, 1.2, 48.0]), np.array([10.0, 30.0, 30.0, 48.0])
    clean = moffat_image(shape, xs, ys, [4e6, 3000.0, 3000.0, 40.0])
    img = noisy(clean, rng)
    saturated = img > 60000.0
    img[saturated] = 60000.0
    mask = np.zeros(shape, bool)
    mask[31, 31] = True
    img[31, 31] = np.nan
    prob = disc_map(shape, xs, ys, radius=2.5)
    prob[saturated] = 1.0
    cat = extract_sources(
        prob, 0.5, image_e=img, mask=mask, background_rms_e=RMS_E, saturated=saturated, edge=3
    )
    near = lambda x, y: int(np.argmin(np.hypot(cat["x"] - x, cat["y"] - y)))  # noqa: E731
    assert has_flag(cat["flags"], SourceFlag.SATURATED)[near(10, 10)]
    assert np.sum(np.hypot(cat["x"] - 10, cat["y"] - 10) < 8) == 1  # saturated: not deblended
    assert has_flag(cat["flags"], SourceFlag.MASKED)[near(30, 30)]
    assert has_flag(cat["flags"], SourceFlag.NEAR_EDGE)[near(1.2, 30)]
    assert has_flag(cat["flags"], SourceFlag.LOW_SNR)[near(48, 48)]
    assert cat["flags"][near(30, 30)] == int(SourceFlag.MASKED)


def test_centroid_ignores_negative_pixels_and_nan():
    img = np.zeros((20, 20), np.float32)
    img[10, 10], img[10, 11] = 100.0, 100.0
    img[9, 10] = -1000.0  # clipped to zero weight
    img[11, 11] = np.nan
    prob = np.zeros_like(img)
    prob[9:12, 9:13] = 1
    cat = extract_sources(prob, 0.5, image_e=img, background_rms_e=1.0, poisson=False)
    assert len(cat) == 1
    assert cat["x"][0] == pytest.approx(10.5) and cat["y"][0] == pytest.approx(10.0)
    assert has_flag(cat["flags"], SourceFlag.MASKED)[0]


def test_circularity_definition():
    one = np.zeros((5, 5), bool)
    one[2, 2] = True
    assert deblend.mask_circularity(one) == pytest.approx(1.0)
    domino = one.copy()
    domino[2, 3] = True
    assert deblend.mask_circularity(domino) == pytest.approx(0.849, abs=0.01)
    yy, xx = np.mgrid[:31, :31]
    for r in (1.5, 2.5, 4.0, 8.0):
        assert deblend.mask_circularity((xx - 15.3) ** 2 + (yy - 14.8) ** 2 <= r * r) > 0.75
    line = np.zeros((5, 40), bool)
    line[2, 5:35] = True
    assert deblend.mask_circularity(line) < 0.3
    dumbbell = ((xx - 9) ** 2 + (yy - 15) ** 2 <= 9) | ((xx - 21) ** 2 + (yy - 15) ** 2 <= 9)
    dumbbell[15, 9:22] = True
    assert deblend.mask_circularity(dumbbell) < 0.7
    # the vectorised whole-image version agrees with the per-mask one
    labels = np.zeros((31, 80), np.int32)
    labels[:, :31][dumbbell] = 1
    labels[12:17, 40:75][line[:, 5:40]] = 2
    c = deblend.label_circularity(labels, 2)
    assert c[1] == pytest.approx(deblend.mask_circularity(dumbbell))
    assert c[2] == pytest.approx(deblend.mask_circularity(labels == 2))


def test_region_growing_splits_a_dumbbell_into_two_round_parts():
    yy, xx = np.mgrid[:31, :31]
    a = (xx - 9) ** 2 + (yy - 15) ** 2 <= 9
    b = (xx - 21) ** 2 + (yy - 15) ** 2 <= 9
    comp = a | b
    comp[15, 9:22] = True
    child = deblend.split_by_growth(comp, threshold=0.7)
    assert child.max() == 2
    assert deblend.mask_circularity(child == 1) >= 0.7  # grown while round
    centres = sorted(np.mean(np.nonzero(child == k)[1]) for k in (1, 2))
    assert abs(centres[0] - 9) < 1.5 and abs(centres[1] - 21) < 1.5
    assert np.all(child[a & ~b] == child[15, 9]) and np.all(child[b & ~a] == child[15, 21])
    assert np.array_equal(child > 0, comp)


def test_round_blob_is_not_grown_apart():
    yy, xx = np.mgrid[:21, :21]
    disc = (xx - 10) ** 2 + (yy - 10) ** 2 <= 16
    assert deblend.split_by_growth(disc).max() == 1


def test_fast_aperture_matches_photutils_exact():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(8, 52, 30), rng.uniform(8, 52, 30)
    img = (moffat_image((60, 60), x, y, np.full(30, 1000.0), oversample=3) + 10.0).astype(
        np.float32
    )
    for r in (1.5, 2.7, 4.0):
        f1, e1 = aperture_fluxes(img, x, y, r, 2.0, method="fast")
        f2, e2 = aperture_fluxes(img, x, y, r, 2.0, method="exact")
        assert np.allclose(f1, f2, rtol=0.015)
        assert np.allclose(e1, e2, rtol=0.015)
    w = aperture_weights(*np.meshgrid(np.arange(-6, 7) - 0.3, np.arange(-6, 7) + 0.2), 3.0)
    assert w.sum() == pytest.approx(np.pi * 9.0, rel=0.003)


def test_unknown_gain_adu_units_and_no_poisson():
    rng = np.random.default_rng(4)
    clean = moffat_image((30, 30), [15.0], [14.0], [2000.0])
    prob = disc_map((30, 30), [15.0], [14.0], 2.0)
    img = noisy(clean, rng)
    a = extract_sources(prob, 0.5, image_e=img, background_rms_e=RMS_E, poisson=False, unit="adu")
    b = extract_sources(prob, 0.5, image_e=img, background_rms_e=RMS_E)
    assert a["flux"].unit == u.adu
    assert a["flux"][0] == pytest.approx(b["flux"][0])
    assert a["flux_err"][0] < b["flux_err"][0]  # no shot noise without the gain


def test_no_deblend_option_keeps_components_whole():
    rng = np.random.default_rng(1)
    xs, ys = np.array([18.0, 21.0]), np.array([20.0, 20.0])
    clean = moffat_image((41, 41), xs, ys, [3000.0, 3000.0])
    prob = disc_map((41, 41), xs, ys, 2.0)
    cat = extract_sources(
        prob,
        0.5,
        image_e=noisy(clean, rng),
        background_rms_e=RMS_E,
        config=PostprocessConfig(deblend=False),
    )
    assert len(cat) == 1 and cat["flags"][0] == 0


def test_degenerate_map_everything_above_threshold_splits_into_its_stars():
    """One component over the whole frame (larger than ``max_deblend_area``) is split into
    the basins of its distinct intensity peaks, as a crowded field of broad stars cut low
    is: not one source for 150 stars."""
    rng = np.random.default_rng(9)
    shape = (200, 200)
    xs, ys = rng.uniform(5, 195, 150), rng.uniform(5, 195, 150)
    img = noisy(moffat_image(shape, xs, ys, np.full(150, 2000.0), oversample=1), rng)
    ex = segment_sources(np.full(shape, 0.9), 0.5, image_e=img, background_rms_e=RMS_E)
    assert ex.n_components == 1
    assert 100 <= len(ex.catalog) <= 160
    det = np.column_stack([ex.catalog["x"], ex.catalog["y"]])
    assert match_points(det, np.column_stack([xs, ys]), radius=1.5).tp >= 100
    whole = segment_sources(
        np.full(shape, 0.9),
        0.5,
        image_e=img,
        background_rms_e=RMS_E,
        config=PostprocessConfig(deblend=False),
    )
    assert len(whole.catalog) == 1


def _gauss_map(shape, xs, ys, peaks, sigma=2.0) -> np.ndarray:
    """A smooth probability map: one Gaussian bump of height ``peaks[i]`` per (x, y)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    prob = np.zeros(shape)
    for x, y, p in zip(xs, ys, peaks, strict=True):
        prob = np.maximum(prob, p * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)))
    return prob.astype(np.float32)


def test_split_by_probability_separates_merged_neighbours_only():
    from atd_dl.detect.components import find_components, split_by_probability

    # two stars 6 px apart (saddle ~0.1), one faint bump riding on a bright star's flank
    # (prominence ~0.03), one isolated star
    prob = _gauss_map((60, 80), [20, 26, 60, 63.5], [30, 30, 30, 30], [0.9, 0.8, 0.95, 0.12])
    comps = find_components(prob, 0.05, min_area=2, small_peak_prob=1.01)
    assert comps.n == 2  # the pair merges, and the bump is part of the isolated star
    split = split_by_probability(prob, comps, 0.1)
    assert split.n == 3
    assert split_by_probability(prob, comps, 0.0) is comps
    assert split_by_probability(prob, comps, 0.95).n == 2  # nothing that prominent
    # every pixel keeps a label, numbered 1..n in raster order, with OpenCV-style stats
    assert np.array_equal(split.labels > 0, comps.labels > 0)
    assert sorted(np.unique(split.labels[split.labels > 0])) == [1, 2, 3]
    first = [np.flatnonzero(split.labels.ravel() == lab)[0] for lab in (1, 2, 3)]
    assert first == sorted(first)
    for lab in (1, 2, 3):
        rows, cols = np.nonzero(split.labels == lab)
        x0, y0, w, h, area = split.stats[lab - 1]
        assert (x0, y0, w, h, area) == (
            cols.min(),
            rows.min(),
            np.ptp(cols) + 1,
            np.ptp(rows) + 1,
            rows.size,
        )
    # the pair's parts each hold one of its stars
    assert split.labels[30, 20] != split.labels[30, 26]
    # components marked whole (trails, saturated stars: their stages come later) stay whole
    whole = np.zeros(comps.n + 1, bool)
    whole[comps.labels[30, 20]] = True
    assert split_by_probability(prob, comps, 0.1, whole).n == 2


def test_split_leaves_trails_and_saturated_stars_whole():
    rng = np.random.default_rng(5)
    image, flat_prob, _ = _trail_image(rng, stars=False)
    # the network's map wiggles along a track: maxima of prominence ~0.5 every 4 px
    xs = np.arange(31.0, 69.0, 4.0)
    ys = 40 + (xs - 50) * np.tan(0.5)
    prob = np.minimum(flat_prob, _gauss_map(flat_prob.shape, xs, ys, np.full(xs.size, 0.9), 1.5))
    prob = np.where(flat_prob > 0, np.maximum(prob, 0.06), 0.0).astype(np.float32)
    cfg = PostprocessConfig(split_prominence=0.1)
    cat = extract_sources(prob, 0.05, image_e=image, background_rms_e=RMS_E, config=cfg)
    assert len(cat) == 1 and has_flag(cat["flags"], SourceFlag.TRAIL)[0]
    # a saturated star whose map has a ring of maxima stays one detection
    clean = moffat_image((41, 41), [20.0], [20.0], [4e6])
    sat = clean > 60000
    ring = _gauss_map((41, 41), [20, 26, 14, 20, 20], [20, 20, 20, 26, 14], [1, 0.6, 0.6, 0.6, 0.6])
    cat = extract_sources(
        ring,
        0.05,
        image_e=np.where(sat, 60000.0, noisy(clean, rng)).astype(np.float32),
        background_rms_e=RMS_E,
        saturated=sat,
        config=cfg,
    )
    assert len(cat) == 1 and has_flag(cat["flags"], SourceFlag.SATURATED)[0]


def test_low_threshold_keeps_crowded_neighbours_apart_with_the_split():
    rng = np.random.default_rng(3)
    xs, ys = np.array([20.0, 26.0, 32.0]), np.array([20.0, 21.0, 20.0])
    clean = moffat_image((41, 52), xs, ys, [900.0, 700.0, 900.0], fwhm=4.5)
    prob = _gauss_map((41, 52), xs, ys, [0.9, 0.7, 0.9])
    image = noisy(clean, rng)
    merged = extract_sources(prob, 0.05, image_e=image, background_rms_e=RMS_E)
    cfg = PostprocessConfig(split_prominence=0.1)
    apart = extract_sources(prob, 0.05, image_e=image, background_rms_e=RMS_E, config=cfg)
    assert len(apart) == 3 > len(merged)
    d = np.hypot(apart["x"][:, None] - xs[None], apart["y"][:, None] - ys[None])
    assert d.min(axis=0).max() < 1.0
