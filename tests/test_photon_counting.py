"""Photon-counting frames: mean background, mean residual background, an SNR floor."""

from __future__ import annotations

import numpy as np
import pytest

from atd_dl.detect.inference import load_detector
from atd_dl.detect.pipeline import COUNTING_MIN_SNR, DetectConfig, Detector
from atd_dl.evaluate.operating_point import array_frame


def counting_frame(sky: float, stars: list[tuple[float, float, float]], seed: int) -> np.ndarray:
    """Poisson counts (gain 1, bias 100) of a ``sky`` photons/px field with Gaussian stars
    ``(x, y, photons)`` of sigma 1.2 px, 384 x 384."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:384, 0:384]
    rate = np.full(xx.shape, sky)
    for x, y, n in stars:
        rate += n / (2 * np.pi * 1.44) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.44))
    return (rng.poisson(rate) + 100).astype(np.float32)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(*load_detector("default"))


@pytest.mark.parametrize("sky", [0.1, 0.5])
def test_photon_noise_gives_no_detection(detector: Detector, sky: float) -> None:
    frame = counting_frame(sky, [], seed=int(sky * 10))
    prepared = detector.prepare(array_frame(frame, gain=1.0))
    assert prepared.counting
    assert len(detector.run(prepared).catalog) == 0
    # without the floor the network's few-photon clumps come out at 0.5 photon/px (what it
    # guards against; at 0.1 the shipped network with flip averaging stays silent itself)
    if sky >= 0.5:
        loose = Detector(detector.model, detector.meta, DetectConfig(min_snr=0.0))
        assert len(loose.run(array_frame(frame, gain=1.0)).catalog) > 0


def test_counting_stars_are_found_with_unbiased_fluxes(detector: Detector) -> None:
    stars = [(60.0 + 70 * i, 80.0 + 55 * (i % 4), 300.0) for i in range(5)]
    frame = counting_frame(0.5, stars, seed=3)
    res = detector.run(array_frame(frame, gain=1.0))
    cat = res.catalog
    assert len(cat) >= len(stars)
    for x, y, n in stars:
        d = np.hypot(np.asarray(cat["x"]) - x, np.asarray(cat["y"]) - y)
        row = cat[int(np.argmin(d))]
        assert d.min() < 0.5 and row["snr"] >= COUNTING_MIN_SNR
        # the aperture holds most of the star; the 0.5 photon/px sky is removed, not a
        # whole-count median (which left +0.5 per aperture pixel, ~+15 photons)
        assert 0.8 * n < float(row["flux"]) < 1.05 * n
