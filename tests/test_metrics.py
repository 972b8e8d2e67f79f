"""Tests for atd_dl.evaluate.metrics on hand-made catalogs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from atd_dl.evaluate.metrics import (
    SNR_BIN_EDGES,
    Counts,
    align_precision,
    astrometric_rms,
    astrometry_from_residuals,
    edge_keep,
    evaluate_frame,
    growth_and_false_positive,
    interpolate_at_precision,
    pool_frames,
    recall_by_snr,
    snr_bin_labels,
    top_k_mean,
)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 100×100 frame with five references and six candidates.

    r0 (SNR 8) found by d0 and d1 (double detection); r1 (SNR 3) found by d2;
    r2 (SNR 1, not in G) found by d3; r3 (SNR 12) missed; r4 (SNR 4) missed;
    d4 is 10 px from everything (FP); d5 sits on the 3-px border and is dropped.
    """
    ref = np.array([[20.0, 20.0], [50.0, 50.0], [70.0, 30.0], [80.0, 80.0], [30.0, 70.0]])
    snr = np.array([8.0, 3.0, 1.0, 12.0, 4.0])
    det = np.array(
        [[20.5, 20.0], [20.0, 22.0], [51.0, 51.0], [70.0, 31.0], [60.0, 40.0], [1.0, 50.0]]
    )
    return det, ref, snr


def test_paper_and_strict_rules_disagree_on_double_detection() -> None:
    det, ref, snr = _scene()
    fe = evaluate_frame(det, ref, snr, shape=(100, 100), radius=3.0, edge=3.0)
    assert fe.n_det_input == 6
    assert fe.det_index.tolist() == [0, 1, 2, 3, 4]
    # paper: d0, d1, d2, d3 TP (d1 shares r0), d4 FP; G = {r0, r1, r3, r4}; r3, r4 FN
    p = fe.paper
    assert (p.tp, p.fp, p.fn, p.n_ref, p.recovered) == (4, 1, 2, 4, 2)
    assert p.precision == pytest.approx(0.8)
    assert p.recall == pytest.approx(4 / 6)
    # strict: d1 loses r0 to d0 -> FP; recall = 2 / 4 recovered members of G
    s = fe.strict
    assert (s.tp, s.fp, s.fn, s.n_ref, s.recovered) == (3, 2, 2, 4, 2)
    assert s.precision == pytest.approx(0.6)
    assert s.recall == pytest.approx(0.5)
    assert s.f1 == pytest.approx(2 * 0.6 * 0.5 / 1.1)
    assert fe.det_tp_paper.tolist() == [True, True, True, True, False]
    assert fe.det_tp_strict.tolist() == [True, False, True, True, False]
    assert fe.det_ref.tolist() == [0, 0, 1, 2, -1]
    np.testing.assert_allclose(fe.g_snr, [8.0, 3.0, 12.0, 4.0])
    assert fe.g_found_paper.tolist() == [True, True, False, False]


def test_edge_cut_and_ref_target() -> None:
    xy = np.array([[3.0, 3.0], [2.99, 50.0], [96.0, 96.0], [96.01, 10.0]])
    assert edge_keep(xy, (100, 100), 3.0).tolist() == [True, False, True, False]
    assert edge_keep(xy, None, 3.0).all()
    det, ref, snr = _scene()
    # exclude r3 from G (e.g. a trail): one FN fewer
    target = np.array([True, True, True, False, True])
    fe = evaluate_frame(det, ref, snr, shape=(100, 100), ref_target=target)
    assert (fe.paper.fn, fe.paper.n_ref) == (1, 3)
    # no shape -> no edge cut, d5 becomes an FP
    fe2 = evaluate_frame(det, ref, snr)
    assert fe2.paper.fp == 2


def test_counts_addition_and_rule_mismatch() -> None:
    a = Counts("paper", 3, 1, 2, 4, 2)
    b = Counts("paper", 1, 1, 0, 1, 1)
    c = a + b
    assert (c.tp, c.fp, c.fn, c.n_ref, c.recovered) == (4, 2, 2, 5, 3)
    assert c.precision == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="cannot add"):
        a + Counts("strict", 0, 0, 0, 0, 0)


def test_snr_binning() -> None:
    assert snr_bin_labels() == ["2-3", "3-4", "4-5", "5-6", "6-7", "7-8", "8-9", "9-10", ">10"]
    snr = np.array([2.0, 2.9, 3.0, 9.99, 10.0, 50.0, 1.5])
    found = np.array([True, False, True, True, False, True, True])
    out = recall_by_snr(snr, found)
    assert out["2-3"] == {"n": 2, "found": 1, "recall": 0.5}
    assert out["3-4"]["n"] == 1 and out["3-4"]["recall"] == 1.0
    assert out["9-10"]["n"] == 1
    assert out[">10"] == {"n": 2, "found": 1, "recall": 0.5}
    assert np.isnan(out["5-6"]["recall"]) and out["5-6"]["n"] == 0
    assert sum(v["n"] for v in out.values()) == 6  # SNR 1.5 below the first edge
    assert len(SNR_BIN_EDGES) == 10


def test_pool_frames_sums_and_faint_recall() -> None:
    det, ref, snr = _scene()
    fe = evaluate_frame(det, ref, snr, shape=(100, 100), name="a")
    fe2 = evaluate_frame(det[:1], ref, snr, shape=(100, 100), name="b")
    pooled = pool_frames([fe, fe2])
    assert pooled.paper.tp == 5 and pooled.paper.fn == 2 + 3
    assert [r["frame"] for r in pooled.per_frame] == ["a", "b"]
    assert pooled.per_frame[1]["strict_recall"] == pytest.approx(0.25)
    # faint (2 < SNR < 5): r1 (3) and r4 (4) in each frame; r1 found in frame a only
    assert pooled.faint["paper"] == {"n": 4, "found": 1, "recall": 0.25}
    assert pooled.snr_recall["strict"]["8-9"] == {"n": 2, "found": 2, "recall": 1.0}
    d = pooled.to_dict(residual_sample=2)
    assert len(d["residuals"]["dx"]) == 2
    assert d["paper"]["precision"] == pytest.approx(pooled.paper.precision)


def test_rms_removes_known_offset() -> None:
    rng = np.random.default_rng(3)
    ref = rng.uniform(10, 490, (400, 2))
    noise = rng.normal(0, [0.15, 0.25], (400, 2))
    det = ref + np.array([0.4, -0.3]) + noise
    res = astrometric_rms(det, ref, 2.0)
    assert res.n == 400
    assert res.mean_dx == pytest.approx(0.4, abs=0.03)
    assert res.mean_dy == pytest.approx(-0.3, abs=0.03)
    assert res.rms_x == pytest.approx(noise[:, 0].std(), rel=1e-6)
    assert res.rms_y == pytest.approx(noise[:, 1].std(), rel=1e-6)
    assert res.rms_total == pytest.approx(np.hypot(res.rms_x, res.rms_y))
    # bright subset only
    snr = np.where(np.arange(400) < 100, 20.0, 5.0)
    assert astrometric_rms(det, ref, 2.0, ref_snr=snr, snr_min=10).n == 100
    # pure offset -> zero RMS; fewer than two pairs -> NaN
    exact = astrometry_from_residuals(np.full(5, 0.3), np.full(5, -0.1))
    assert exact.rms_total == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(astrometry_from_residuals(np.array([0.1]), np.array([0.2])).rms_x)


def test_growth_and_false_positive_rates() -> None:
    base = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0]])
    confirm = np.vstack([base, [[60.0, 60.0], [70.0, 70.0]]])
    det = np.array([[10.5, 10.0], [20.0, 21.0], [60.0, 60.5], [70.0, 69.0], [90.0, 5.0]])
    g = growth_and_false_positive(det, base, confirm, 3.0)
    assert (g.n_det, g.n_base, g.n_base_matched, g.n_new, g.n_fp) == (5, 4, 2, 2, 1)
    assert g.growth_rate == pytest.approx(0.5)
    assert g.fp_rate == pytest.approx(0.2)


def test_align_precision_picks_the_right_point() -> None:
    prec = [0.70, 0.84, 0.893, 0.912, 0.95, 0.99]
    assert align_precision(prec, 0.90) == 2  # 0.893 is 0.007 away, 0.912 is 0.012
    assert align_precision(prec, 0.90, mode="at_least") == 3
    assert align_precision([0.88, 0.92], 0.90) == 1  # tie -> above the target
    assert align_precision([0.5, 0.6], 0.90, mode="at_least") == 1
    with pytest.raises(ValueError, match="unknown mode"):
        align_precision(prec, mode="nearest")
    rec = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    assert interpolate_at_precision(prec, rec, 0.90) == pytest.approx(
        0.7 + (0.90 - 0.893) / (0.912 - 0.893) * (0.6 - 0.7)
    )
    assert interpolate_at_precision(prec, rec, 0.995) is None


def test_top_k_mean() -> None:
    p = [0.5, 0.9, 0.8, 0.7, 0.95]
    r = [0.9, 0.6, 0.7, 0.75, 0.3]
    f = [0.6, 0.72, 0.75, 0.73, 0.45]
    out = top_k_mean(p, r, f, k=3)
    assert out["indices"] == [2, 3, 1]
    assert out["f1"] == pytest.approx((0.75 + 0.73 + 0.72) / 3)
    assert out["precision"] == pytest.approx((0.8 + 0.7 + 0.9) / 3)
    assert out["recall_std"] == pytest.approx(np.std([0.7, 0.75, 0.6]))
