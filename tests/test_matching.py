"""Tests for atd_dl.evaluate.matching."""

from __future__ import annotations

import numpy as np
import pytest

from atd_dl.evaluate.matching import MatchResult, match_points, prf


def test_perfect_match_counts() -> None:
    ref = np.array([[10.0, 10.0], [50.0, 20.0], [30.0, 80.0]])
    det = ref + np.array([[0.5, -0.2], [-1.0, 1.0], [0.0, 2.9]])
    for strict in (True, False):
        res = match_points(det, ref, 3.0, one_to_one=strict)
        assert (res.tp, res.fp, res.fn) == (3, 0, 0)
        assert res.precision == res.recall == res.f1 == 1.0
        np.testing.assert_array_equal(res.det_index, [0, 1, 2])
        np.testing.assert_array_equal(res.ref_index, [0, 1, 2])
        np.testing.assert_allclose(res.distances, [np.hypot(0.5, 0.2), np.sqrt(2), 2.9])


def test_radius_is_inclusive_and_outside_is_fp_fn() -> None:
    ref = np.array([[0.0, 0.0], [100.0, 100.0]])
    det = np.array([[3.0, 0.0], [100.0, 103.01]])
    for strict in (True, False):
        res = match_points(det, ref, 3.0, one_to_one=strict)
        assert (res.tp, res.fp, res.fn) == (1, 1, 1)
        assert res.det_matched.tolist() == [True, False]
        assert res.ref_matched.tolist() == [True, False]


def test_two_detections_near_one_reference_rules_disagree() -> None:
    ref = np.array([[20.0, 20.0]])
    det = np.array([[21.0, 20.0], [20.0, 22.0]])
    strict = match_points(det, ref, 3.0, one_to_one=True)
    assert (strict.tp, strict.fp, strict.fn) == (1, 1, 0)
    assert strict.det_index.tolist() == [0]  # the nearer one wins
    assert strict.precision == pytest.approx(0.5)
    paper = match_points(det, ref, 3.0, one_to_one=False)
    assert (paper.tp, paper.fp, paper.fn) == (2, 0, 0)
    assert paper.ref_index.tolist() == [0, 0]
    assert paper.precision == 1.0


def test_strict_is_greedy_nearest_first() -> None:
    # d0 is 1 px from r0 and 2 px from r1; d1 is 2.5 px from r0 and 5.5 px from r1.
    # Nearest pairs first: (d0, r0) is taken, so d1 finds r0 used -> FP, r1 -> FN.
    # (A maximum-cardinality assignment would pair d0-r1, d1-r0; that is not the rule.)
    ref = np.array([[0.0, 0.0], [3.0, 0.0]])
    det = np.array([[1.0, 0.0], [-2.5, 0.0]])
    res = match_points(det, ref, 3.0)
    assert (res.tp, res.fp, res.fn) == (1, 1, 1)
    assert res.det_index.tolist() == [0] and res.ref_index.tolist() == [0]
    assert res.distances.tolist() == [1.0]


def test_empty_inputs() -> None:
    empty = np.zeros((0, 2))
    pts = np.array([[1.0, 2.0], [3.0, 4.0]])
    r = match_points(empty, pts)
    assert (r.tp, r.fp, r.fn, r.precision, r.recall, r.f1) == (0, 0, 2, 0.0, 0.0, 0.0)
    r = match_points(pts, empty, one_to_one=False)
    assert (r.tp, r.fp, r.fn, r.precision, r.recall) == (0, 2, 0, 0.0, 0.0)
    r = match_points([], [])
    assert isinstance(r, MatchResult) and r.tp == r.fp == r.fn == 0


def test_bad_shapes_and_radius() -> None:
    with pytest.raises(ValueError, match=r"det_xy must have shape \(N, 2\)"):
        match_points(np.zeros((3, 3)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="radius must be positive"):
        match_points(np.zeros((1, 2)), np.zeros((1, 2)), radius=0)
    with pytest.raises(ValueError, match="ref_xy contains non-finite"):
        match_points(np.zeros((1, 2)), np.array([[np.nan, 1.0]]))


def test_prf_undefined_is_zero() -> None:
    assert prf(0, 0, 0) == (0.0, 0.0, 0.0)
    assert prf(3, 1, 2) == pytest.approx((0.75, 0.6, 2 * 0.75 * 0.6 / 1.35))


def test_random_fields_strict_never_double_uses_and_bounds() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        ref = rng.uniform(0, 100, (60, 2))
        det = np.concatenate([ref[:40] + rng.normal(0, 1.0, (40, 2)), rng.uniform(0, 100, (30, 2))])
        s = match_points(det, ref, 3.0)
        p = match_points(det, ref, 3.0, one_to_one=False)
        assert len(set(s.ref_index.tolist())) == s.tp
        assert len(set(s.det_index.tolist())) == s.tp
        assert np.all(s.distances <= 3.0)
        assert s.tp + s.fp == len(det) and p.tp + p.fp == len(det)
        # the paper rule can only count more detections as TP
        assert p.tp >= s.tp
        d = np.hypot(*(det[s.det_index] - ref[s.ref_index]).T)
        np.testing.assert_allclose(d, s.distances)
