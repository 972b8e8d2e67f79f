"""Windowed centroids against SExtractor XWIN on isolated bright stars of real frames.

Skips when ``../shared/data/real`` or the SExtractor binary is absent. The measurement is
``benchmarks/centroid_agreement.py`` (matched-filter SExtractor on the same calibrated
pixels; stars with SExtractor SNR > 50, flags 0, no neighbour within 3 FWHM).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _benchmarks import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real"
#: the two frames that were above 0.1 px RMS with the fixed 1.5 FWHM window
FRAMES = ("aK_asky_990502s1350080.fits.gz", "ntt_emmi_sep_image.fits")

pytestmark = [
    pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/real is absent"),
    pytest.mark.skipif(
        shutil.which("source-extractor") is None and shutil.which("sex") is None,
        reason="SExtractor (source-extractor) is not installed",
    ),
]


@pytest.fixture(scope="module")
def agreement():
    centroid_agreement = load_benchmark("centroid_agreement")
    paths = [DATA / name for name in FRAMES if (DATA / name).is_file()]
    if not paths:
        pytest.skip("problem frames absent")
    return centroid_agreement.measure_frames(
        paths, selections={"isolated": centroid_agreement.SELECTIONS["isolated"]}
    )["isolated"]


def test_centroids_agree_with_sextractor_xwin_on_problem_frames(agreement):
    for row in agreement:
        assert row.n >= 3, row
        assert row.rms <= 0.1, row
        assert np.hypot(row.mean_dx, row.mean_dy) <= 0.05, row


def test_measured_fwhm_agrees_with_sextractor(agreement):
    for row in agreement:
        assert abs(row.fwhm_ours / row.fwhm_sex - 1.0) <= 0.15, row


@pytest.mark.slow
def test_no_readout_direction_offset_on_mosaic_extensions():
    # with a 1.5 FWHM window the charge-trail tails of the four amplifiers moved the
    # centroids by -0.05 / +0.04 px in x against XWIN; with the XWIN-like window < 0.01 px
    path = DATA / "mef_raw_test_frame.fits"
    if not path.is_file():
        pytest.skip("mosaic frame absent")
    centroid_agreement = load_benchmark("centroid_agreement")
    rows = centroid_agreement.measure_frames(
        [path], selections={"isolated": centroid_agreement.SELECTIONS["isolated"]}
    )["isolated"]
    assert len(rows) == 4
    for row in rows:
        assert row.n >= 10, row
        assert row.rms <= 0.1, row
        assert np.hypot(row.mean_dx, row.mean_dy) <= 0.02, row
