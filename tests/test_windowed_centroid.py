"""Windowed (XWIN-like) centroid refinement of detections."""

from __future__ import annotations

import numpy as np
from _detect_helpers import moffat_image

from atd_dl.detect.centroid import windowed_centroids
from atd_dl.detect.postprocess import PostprocessConfig, extract_sources


def _star(x: float, y: float, shape=(40, 40), flux=5000.0) -> np.ndarray:
    return moffat_image(shape, np.array([x]), np.array([y]), np.array([flux]))


def test_windowed_centroid_recovers_true_position_from_offset_start():
    img = _star(20.3, 15.7)
    x, y, xe, ye, ok = windowed_centroids(img, np.array([19.6]), np.array([16.2]), 1.6)
    assert ok[0]
    assert abs(x[0] - 20.3) < 0.02 and abs(y[0] - 15.7) < 0.02
    assert np.isnan(xe[0]) and np.isnan(ye[0])  # no variance given


def test_windowed_centroid_keeps_start_without_signal():
    x, y, _, _, ok = windowed_centroids(np.zeros((30, 30)), np.array([10.0]), np.array([12.0]), 2)
    assert not ok[0] and x[0] == 10.0 and y[0] == 12.0


def test_windowed_beats_segment_centroid_with_a_lopsided_mask():
    img = _star(20.3, 15.7)
    prob = np.zeros_like(img)
    prob[14:18, 20:23] = 1.0  # mask covers only the star's right half: Eq. 16 is biased
    seg = extract_sources(
        prob, 0.5, image_e=img, background_rms_e=1.0, config=PostprocessConfig(centroid="segment")
    )
    win = extract_sources(prob, 0.5, image_e=img, background_rms_e=1.0, fwhm=1.6)
    err_seg = np.hypot(seg["x"][0] - 20.3, seg["y"][0] - 15.7)
    err_win = np.hypot(win["x"][0] - 20.3, win["y"][0] - 15.7)
    assert err_seg > 0.2
    assert err_win < 0.05
