"""Hot and cold pixel cleaning (atd_dl.prep.pixel_defects) and its place in preparation."""

from __future__ import annotations

import numpy as np
import pytest

from atd_dl.prep.pixel_defects import clean_sharp_pixels, find_sharp_pixels

SHAPE = (128, 128)


def gaussian_star(image: np.ndarray, x: float, y: float, peak: float, fwhm: float) -> np.ndarray:
    """Adds a circular Gaussian (peak in the image's unit) centred at pixel (x, y)."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    s = fwhm / 2.3548
    image += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return image


@pytest.fixture
def noise() -> np.ndarray:
    return np.random.default_rng(5).normal(0.0, 1.0, SHAPE).astype(np.float32)


def test_isolated_cold_pixels_are_cleaned_and_lone_hot_pixels_kept(noise: np.ndarray) -> None:
    img = noise.copy()
    img[40, 40] += 12.0  # one hot pixel: on one frame, maybe a very sharp star
    img[80, 20] -= 9.0  # no source is negative
    cleaned, found = clean_sharp_pixels(img, np.ones(SHAPE, np.float32))
    assert not found.defect_dominated and not found.hot.any()
    assert found.cold[80, 20] and found.cold.sum() == 1
    assert abs(cleaned[80, 20]) < 3.0
    untouched = ~found.any
    np.testing.assert_array_equal(cleaned[untouched], img[untouched])


@pytest.mark.parametrize("fwhm", [1.0, 1.6, 4.0])
@pytest.mark.parametrize("peak", [8.0, 40.0, 5000.0])
def test_stars_are_never_flagged(noise: np.ndarray, fwhm: float, peak: float) -> None:
    img = noise.copy()
    for x, y in ((30.0, 30.0), (90.3, 40.6), (50.5, 100.5)):  # centred and off-centre
        gaussian_star(img, x, y, peak, fwhm)
    found = find_sharp_pixels(img, np.ones(SHAPE, np.float32))
    assert not found.hot.any()
    assert not found.cold.any()


def test_broad_dips_masked_neighbours_and_edges_are_left_alone(noise: np.ndarray) -> None:
    img = noise.copy()
    gaussian_star(img, 64.0, 64.0, -30.0, 6.0)  # an over-subtracted halo
    img[10, 90] -= 12.0
    bad = np.zeros(SHAPE, bool)
    bad[10, 91] = True  # next to a masked pixel: not tested
    img[0, 50] -= 12.0  # on the frame edge: not tested
    found = find_sharp_pixels(img, np.ones(SHAPE, np.float32), bad)
    assert not found.cold.any()


def test_pure_noise_is_almost_never_touched() -> None:
    rng = np.random.default_rng(11)
    img = rng.normal(0.0, 3.0, (512, 512)).astype(np.float32)
    found = find_sharp_pixels(img, np.full(img.shape, 3.0, np.float32))
    assert int(found.hot.sum() + found.cold.sum()) <= 3


def test_preparation_cleans_defects_but_not_photon_counting_frames() -> None:
    """Cold pixels are cleaned before the network; photon-counting frames are left alone."""
    from atd_dl.detect.pipeline import prepare_frame
    from atd_dl.evaluate.operating_point import array_frame

    rng = np.random.default_rng(3)
    sky = rng.normal(1000.0, 10.0, (256, 256)).astype(np.float32)
    for i, (x, y) in enumerate((x, y) for x in range(40, 240, 50) for y in range(60, 240, 60)):
        gaussian_star(sky, x + 0.3, y - 0.2, 3000.0 + 200 * i, 2.8)  # the FWHM is measured
    sky[128, 30] -= 200.0  # a cold pixel, 20 sigma
    prepared = prepare_frame(array_frame(sky), checksum=False, stretch=False)
    assert prepared.subtracted_adu is not None
    assert abs(float(prepared.subtracted_adu[128, 30])) < 50.0
    assert prepared.subtracted_adu[60, 40] > 2000.0  # stars keep their peaks

    counts = rng.poisson(0.3, (256, 256)).astype(np.float32)
    counts[128, 30] = 9.0
    counting = prepare_frame(array_frame(counts, gain=1.0), checksum=False, stretch=False)
    assert counting.counting
    assert counting.subtracted_adu is not None and counting.subtracted_adu[128, 30] > 5.0


def hot_pixel_frame(rng: np.random.Generator, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    """Unit Gaussian noise with 1 % of its pixels hot by 5-9 sigma (an RTS-riddled CMOS)."""
    img = rng.normal(0.0, 1.0, shape).astype(np.float32)
    hot = rng.random(shape) < 0.01
    img[hot] += rng.uniform(5.0, 9.0, int(hot.sum())).astype(np.float32)
    return img


def test_a_hot_pixel_population_without_bright_stars_is_defect_dominated() -> None:
    from atd_dl.prep.pixel_defects import defect_dominated

    rng = np.random.default_rng(8)
    img = hot_pixel_frame(rng)
    img[100, 100], img[100, 101] = 15.0, 9.0  # a pair: the second pass finds the fainter
    found = find_sharp_pixels(img, np.ones(img.shape, np.float32))
    assert found.defect_dominated
    assert found.hot.sum() > 300
    assert found.hot[100, 100] and found.hot[100, 101]
    allowed = np.ones(img.shape, bool)
    assert not defect_dominated(rng.normal(0, 1, img.shape).astype(np.float32), allowed)


def test_undersampled_star_fields_are_not_defect_dominated() -> None:
    """Many sharp faint stars come with bright ones (a luminosity function): no hot-pixel
    cleaning, however sharp the stars are."""
    rng = np.random.default_rng(9)
    img = rng.normal(0.0, 1.0, (256, 256)).astype(np.float32)
    n = 600
    peaks = 6.0 * rng.random(n) ** (-1 / 1.5)  # N(>S) ~ S^-1.5 above 6 sigma
    xs, ys = rng.uniform(3, 253, n), rng.uniform(3, 253, n)
    for x, y, p in zip(xs, ys, peaks, strict=True):
        gaussian_star(img, float(np.round(x)), float(np.round(y)), float(p), 1.0)
    found = find_sharp_pixels(img, np.ones(img.shape, np.float32))
    assert not found.defect_dominated
    assert not found.hot.any()


def test_defect_dominated_frames_drop_low_snr_detections() -> None:
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DEFECT_MIN_SNR, DetectConfig, Detector
    from atd_dl.evaluate.operating_point import array_frame

    rng = np.random.default_rng(10)
    data = 500.0 + 20.0 * hot_pixel_frame(rng, (384, 384))
    detector = Detector(*load_detector("default", device="cpu"), DetectConfig(device="cpu"))
    prepared = detector.prepare(array_frame(np.round(data)))
    assert prepared.defect_dominated
    assert any("defect-dominated" in w for w in prepared.warnings)
    prob = detector.infer(prepared)
    catalog = detector.extract(prepared, prob).catalog
    assert np.all(np.asarray(catalog["snr"]) >= DEFECT_MIN_SNR)
    # below the noise-safe threshold too (where a per-frame rule may cut such a frame)
    low = detector.extract(prepared, prob, threshold=0.2).catalog
    assert np.all(np.asarray(low["snr"]) >= DEFECT_MIN_SNR)
    # the floor is the defect-dominated one: an explicit min_snr replaces it
    loose = Detector(*load_detector("default", device="cpu"), DetectConfig(min_snr=0.0))
    assert len(loose.extract(prepared, loose.infer(prepared)).catalog) >= len(catalog)
