"""The per-frame (false-discovery-rate) threshold rule and its use by the Detector."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from atd_dl.detect.adaptive_threshold import (
    FdrRule,
    frame_threshold,
    noise_peaks_per_px,
    probability_peaks,
)

GRID = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))


def blob_map(shape: tuple[int, int], n: int, heights: np.ndarray, seed: int) -> np.ndarray:
    """A probability map with ``n`` isolated 3x3 bumps of the given peak heights."""
    rng = np.random.default_rng(seed)
    prob = np.zeros(shape, np.float32)
    ys = rng.integers(2, shape[0] - 2, n)
    xs = rng.integers(2, shape[1] - 2, n)
    for y, x, h in zip(ys, xs, heights, strict=True):
        prob[y - 1 : y + 2, x - 1 : x + 2] = np.maximum(prob[y - 1 : y + 2, x - 1 : x + 2], h / 2)
        prob[y, x] = max(prob[y, x], h)
    return prob


def noise_rule(fdr: float = 0.02, ceiling: float = 0.7) -> tuple[FdrRule, np.ndarray]:
    """A rule whose null is the peak rate of a 'noise' map: 400 maxima spread in [0.05, 0.8]."""
    heights = np.random.default_rng(0).uniform(0.05, 0.8, 400)
    noise = blob_map((1000, 1000), 400, heights, seed=1)
    null = noise_peaks_per_px([noise], GRID)
    return FdrRule(fdr, GRID, tuple(float(v) for v in null), ceiling), noise


def test_peaks_are_local_maxima_above_the_floor() -> None:
    prob = blob_map((50, 50), 3, np.array([0.9, 0.5, 0.01]), seed=3)
    peaks = np.sort(probability_peaks(prob))
    assert peaks.tolist() == pytest.approx([0.5, 0.9])


def test_null_rate_is_the_largest_over_noise_maps() -> None:
    low = blob_map((100, 100), 5, np.full(5, 0.5), seed=4)
    high = blob_map((100, 100), 20, np.full(20, 0.5), seed=5)
    rates = noise_peaks_per_px([low, high], [0.4, 0.6])
    assert rates[0] == pytest.approx(np.count_nonzero(probability_peaks(high) >= 0.4) / 1e4)
    assert rates[1] == 0.0


def test_noise_like_frame_keeps_the_ceiling() -> None:
    rule, noise = noise_rule()
    assert frame_threshold(noise, rule) == rule.ceiling
    other = blob_map((1000, 1000), 400, np.random.default_rng(7).uniform(0.05, 0.8, 400), 8)
    assert frame_threshold(other, rule) == rule.ceiling


def test_crowded_frame_lowers_the_threshold_and_sparse_does_not() -> None:
    rule, _ = noise_rule()
    rng = np.random.default_rng(9)
    # 20,000 sources per 10^6 px with a broad spread of probabilities, plus the noise
    crowded = blob_map((1000, 1000), 20_000, rng.uniform(0.05, 1.0, 20_000), seed=10)
    t = frame_threshold(crowded, rule)
    assert t < rule.ceiling - 0.2
    sparse = blob_map((1000, 1000), 30, rng.uniform(0.05, 1.0, 30), seed=11)
    assert frame_threshold(sparse, rule) == rule.ceiling
    # a stricter target lowers it less
    strict = FdrRule(0.001, rule.thresholds, rule.null_per_px, rule.ceiling)
    assert frame_threshold(crowded, strict) > t


def test_rule_round_trip_and_validation() -> None:
    rule, _ = noise_rule()
    again = FdrRule.from_dict(json.loads(json.dumps(rule.to_dict())), ceiling=rule.ceiling)
    assert again == rule
    with pytest.raises(ValueError, match="same"):
        FdrRule(0.02, (0.1, 0.2), (0.0,), 0.7)
    with pytest.raises(ValueError, match="fdr"):
        FdrRule(0.0, (0.1,), (0.0,), 0.7)
    with pytest.raises(ValueError, match="ascending"):
        FdrRule(0.02, (0.2, 0.1), (0.0, 0.0), 0.7)


def test_photon_counting_frames_use_their_own_regime_null() -> None:
    """A rule with a counting null: a crowded non-counting frame is cut by the (low) null of
    its regime, the same map on a photon-counting frame by the (high) counting null."""
    rule, noise = noise_rule(fdr=0.05)
    quiet = tuple(v / 20 for v in rule.null_per_px)
    regime = FdrRule(rule.fdr, GRID, quiet, rule.ceiling, null_counting_per_px=rule.null_per_px)
    rng = np.random.default_rng(12)
    crowded = blob_map((1000, 1000), 2_000, rng.uniform(0.05, 1.0, 2_000), seed=13)
    t_other = frame_threshold(crowded, regime.for_frame(False))
    t_counting = frame_threshold(crowded, regime.for_frame(True))
    assert t_other < t_counting
    assert t_counting == frame_threshold(crowded, rule)
    assert regime.for_frame(True).null_counting_per_px is None
    assert regime.for_frame(False) is regime and rule.for_frame(True) is rule
    # the counting null travels in thresholds.json, and must fit the grid
    again = FdrRule.from_dict(json.loads(json.dumps(regime.to_dict())), ceiling=rule.ceiling)
    assert again == regime
    with pytest.raises(ValueError, match="counting"):
        FdrRule(0.05, (0.1, 0.2), (0.0, 0.0), 0.7, null_counting_per_px=(0.0,))
    # a counting noise map keeps the ceiling under its own null
    assert frame_threshold(noise, regime.for_frame(True)) == rule.ceiling


def record_predict_calls(det: object) -> list[tuple[int, ...]]:
    """Wrap ``det.predictor.predict`` so each call's input shape is appended to the list."""
    calls: list[tuple[int, ...]] = []
    predictor = det.predictor  # type: ignore[attr-defined]
    predict = predictor.predict

    def counted(planes: np.ndarray) -> np.ndarray:
        calls.append(planes.shape)
        return predict(planes)

    predictor.predict = counted
    return calls


@pytest.fixture()
def model_with_rule(tmp_path: Path) -> Path:
    """The shipped default model folder with a per-frame rule that lowers eagerly."""
    src = Path(__file__).resolve().parents[1] / "atd_dl" / "weights" / "default"
    folder = tmp_path / "model"
    shutil.copytree(src, folder)
    shipped = json.loads((folder / "thresholds.json").read_text())
    shipped["adaptive"] = {"fdr": 0.5, "thresholds": list(GRID), "null_per_px": [0.0] * len(GRID)}
    (folder / "thresholds.json").write_text(json.dumps(shipped))
    return folder


def test_detector_applies_the_shipped_rule(model_with_rule: Path, tmp_path: Path) -> None:
    from astropy.table import Table

    from atd_dl.detect.catalog_io import OutputConfig
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector
    from atd_dl.sim.randomized import write_random_frames

    write_random_frames(tmp_path / "sim", 1, seed=5, size=256, fwhm=2.5, density=8000.0,
                        hard=False, progress=False)  # fmt: skip
    frame = next((tmp_path / "sim" / "frames").glob("*.fits"))
    det = Detector(*load_detector(model_with_rule))
    assert det.fdr_rule is not None and "per frame" in det.threshold_source
    res = det.run(frame, write=OutputConfig(tmp_path / "out"), stem="f")
    # a null of zero: every grid value passes, the lowest is used
    assert res.threshold == pytest.approx(GRID[0])
    cat = Table.read(tmp_path / "out" / "f.cat.ecsv")
    assert cat.meta["threshold"] == pytest.approx(GRID[0])
    fixed = Detector(*load_detector(model_with_rule), DetectConfig(threshold=0.7))
    assert fixed.fdr_rule is None
    assert len(fixed.run(frame).catalog) < len(res.catalog)
    # an explicit threshold in extract wins over the rule (threshold sweeps)
    prepared = det.prepare(frame)
    prob = det.infer(prepared)
    ex = det.extract(prepared, prob, threshold=0.9)
    assert ex.threshold == pytest.approx(0.9)


def _toy_network(planes: np.ndarray) -> np.ndarray:
    """Fires (0.9) on pixels of significance above ~5 sigma, 0 elsewhere."""
    return np.where(planes[0] > np.arcsinh(5.0 / 3.0), np.float32(0.9), np.float32(0.0))


def test_mirror_null_sees_holes_not_stars() -> None:
    from atd_dl.detect.adaptive_threshold import mirror_null_per_px

    rng = np.random.default_rng(2)
    sub = rng.normal(0.0, 1.0, (300, 300)).astype(np.float32)
    rms = np.ones_like(sub)
    bad = np.zeros(sub.shape, bool)
    rule = FdrRule(0.05, GRID, (0.0,) * len(GRID), 0.7, mirror_px=200 * 200)
    stars = sub.copy()
    stars[50:250:20, 50:250:20] += 30.0  # bright positive sources: holes on the mirror
    clean = mirror_null_per_px(stars, rms, bad, _toy_network, rule)
    assert clean is not None and clean.max() == 0.0
    holes = sub.copy()
    holes[50:250:20, 50:250:20] -= 8.0  # noise-like negative features: bumps on the mirror
    null = mirror_null_per_px(holes, rms, bad, _toy_network, rule)
    assert null is not None and null[GRID.index(0.7)] > 0
    # deep holes (box sums ~10 sigma: over-subtracted stars) are real features, not noise
    deep = sub.copy()
    deep[50:250:20, 50:250:20] -= 30.0
    assert mirror_null_per_px(deep, rms, bad, _toy_network, rule).max() == 0.0
    # with that own null, a frame full of peaks keeps the ceiling
    crowded = blob_map((300, 300), 20, np.full(20, 0.9), seed=12)
    assert frame_threshold(crowded, rule, own_null=np.full(len(GRID), 1e-3)) == 0.7
    assert frame_threshold(crowded, rule) < 0.7
    assert (
        mirror_null_per_px(
            stars, rms, bad, _toy_network, FdrRule(0.05, GRID, rule.null_per_px, 0.7)
        )
        is None
    )


def test_detector_measures_the_frame_own_null(model_with_rule: Path, tmp_path: Path) -> None:
    """With ``mirror_px`` the Detector runs the network on the mirrored crop: a frame whose
    mirror fires (here: one made of negative 'stars') is not cut below the ceiling."""
    from astropy.io import fits

    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import Detector
    from atd_dl.sim.randomized import write_random_frames

    shipped = json.loads((model_with_rule / "thresholds.json").read_text())
    shipped["adaptive"]["fdr"] = 0.02
    shipped["adaptive"]["mirror_px"] = 256 * 256
    (model_with_rule / "thresholds.json").write_text(json.dumps(shipped))
    write_random_frames(tmp_path / "sim", 1, seed=6, size=256, fwhm=2.5, density=8000.0,
                        hard=False, progress=False)  # fmt: skip
    path = next((tmp_path / "sim" / "frames").glob("*.fits"))
    det = Detector(*load_detector(model_with_rule))
    assert det.fdr_rule is not None and det.fdr_rule.mirror_px == 256 * 256
    calls = record_predict_calls(det)
    assert det.run(path).threshold < det.threshold  # real stars: the cut goes down
    assert len(calls) == 2  # the frame, then its mirrored crop
    data = fits.getdata(path).astype(np.float32)
    inverted = tmp_path / "inverted.fits"
    fits.writeto(inverted, (2 * np.median(data) - data).astype(np.float32))
    calls.clear()
    assert det.run(inverted).threshold == pytest.approx(det.threshold)
    assert len(calls) == 2  # the shipped null alone would cut it: the mirror is measured


def test_mirror_is_skipped_when_the_shipped_null_keeps_the_ceiling(tmp_path: Path) -> None:
    """The own null can only raise the threshold: on pure noise, which the shipped rule
    already leaves at the ceiling, the network runs on the frame only."""
    from astropy.io import fits

    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import Detector

    det = Detector(*load_detector("default"))
    assert det.fdr_rule is not None and det.fdr_rule.mirror_px > 0
    calls = record_predict_calls(det)
    noise = tmp_path / "noise.fits"
    rng = np.random.default_rng(3)
    fits.writeto(noise, rng.normal(1000.0, 10.0, (512, 512)).astype(np.float32))
    assert det.run(noise).threshold == pytest.approx(det.threshold)
    assert calls == [(2, 512, 512)]


def test_own_null_mode_replaces_a_pessimistic_shipped_null() -> None:
    """A shipped null from the worst noise kind keeps a crowded frame high; in own-null mode
    the frame's own (small) null lets the cut go down, and a noisy own null keeps it up."""
    from atd_dl.detect.adaptive_threshold import poisson_upper, rule_null

    pessimistic = (2e-4,) * len(GRID)  # 200 expected noise maxima per 10^6 px at every t
    floor = (1e-6,) * len(GRID)
    classic = FdrRule(0.1, GRID, pessimistic, 0.9, mirror_px=512 * 512)
    own_mode = FdrRule(0.1, GRID, pessimistic, 0.9, mirror_px=512 * 512, null_floor_per_px=floor)
    crowded = blob_map((1000, 1000), 1500, np.linspace(0.06, 0.99, 1500), seed=21)
    quiet = np.full(len(GRID), 2e-6)
    assert frame_threshold(crowded, classic, own_null=quiet) == 0.9
    assert frame_threshold(crowded, own_mode, own_null=quiet) < 0.3
    assert frame_threshold(crowded, own_mode, own_null=np.full(len(GRID), 2e-4)) == 0.9
    # without a measured own null: the shipped null, or the floor for the cheap pre-check
    np.testing.assert_array_equal(rule_null(own_mode), pessimistic)
    np.testing.assert_array_equal(rule_null(own_mode, optimistic=True), floor)
    np.testing.assert_array_equal(rule_null(own_mode, quiet), quiet)
    assert poisson_upper(np.array([0.0]))[0] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="mirror_px"):
        FdrRule(0.1, GRID, pessimistic, 0.9, null_floor_per_px=floor)
    with pytest.raises(ValueError, match="one value per threshold"):
        FdrRule(0.1, GRID, pessimistic, 0.9, mirror_px=1, null_floor_per_px=(0.0,))
    back = FdrRule.from_dict(own_mode.to_dict(), ceiling=0.9)
    assert back == own_mode


def test_own_null_is_an_upper_bound_in_own_null_mode() -> None:
    from atd_dl.detect.adaptive_threshold import mirror_null_per_px

    sub = np.random.default_rng(4).normal(0.0, 1.0, (300, 300)).astype(np.float32)
    rms, bad = np.ones_like(sub), np.zeros(sub.shape, bool)
    floor = (0.0,) * len(GRID)
    rule = FdrRule(0.1, GRID, floor, 0.7, mirror_px=200 * 200, null_floor_per_px=floor)
    null = mirror_null_per_px(sub, rms, bad, _toy_network, rule)
    assert null is not None
    assert np.all(null > 0)  # no maximum seen, yet an upper bound of ~3 per crop


def test_self_scaled_box_sums_follow_correlated_noise() -> None:
    """Box sums in units of their own scatter: white or correlated noise seldom reaches
    :data:`NOISE_PEAK_MAX_SIGMA`, though in pixel-rms units correlated noise often does."""
    from scipy.ndimage import gaussian_filter

    from atd_dl.detect.adaptive_threshold import NOISE_PEAK_MAX_SIGMA, self_scaled_box_sums

    rng = np.random.default_rng(8)
    usable = np.ones((400, 400), bool)
    for corr in (0.0, 1.5):
        noise = rng.normal(0.0, 1.0, usable.shape)
        if corr:
            noise = gaussian_filter(noise, corr)
            noise /= noise.std()  # pixel rms 1, as the background rms would say
            # in pixel-rms units (a box sum of white noise scatters by 3) it is no rare event
            assert np.mean(np.abs(_box(noise)) / 3.0 > NOISE_PEAK_MAX_SIGMA) > 1e-3
        sig = self_scaled_box_sums(noise, np.ones_like(noise), usable)
        assert np.std(sig[2:-2, 2:-2]) == pytest.approx(1.0, abs=0.1)
        assert np.mean(np.abs(sig) > NOISE_PEAK_MAX_SIGMA) < 1e-4
    blob = np.zeros(usable.shape)
    blob[200, 200] = 30.0
    noise = rng.normal(0.0, 1.0, usable.shape) + blob
    assert self_scaled_box_sums(noise, np.ones_like(noise), usable)[200, 200] > 8


def _box(image: np.ndarray) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return 9.0 * uniform_filter(image, size=3, mode="constant")
