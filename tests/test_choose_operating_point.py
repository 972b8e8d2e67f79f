"""The chooser's adoption rule for per-frame FDR rules (benchmarks/choose_operating_point.py)."""

from __future__ import annotations

import pytest
from _benchmarks import load_benchmark

from atd_dl.detect.adaptive_threshold import FdrRule

GRID = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module")
def chooser():
    return load_benchmark("choose_operating_point")


def _rule(fdr: float, low: float = 0.0) -> FdrRule:
    return FdrRule(fdr, GRID, (1e-4, 1e-5, 1e-6), 0.9, min_threshold=low)


def test_most_cautious_rule_within_tolerance(chooser) -> None:
    passing = [(_rule(0.3), 0.690), (_rule(0.2), 0.686), (_rule(0.15), 0.684), (_rule(0.05), 0.665)]
    assert chooser._most_cautious(passing, 0.005).fdr == 0.2
    assert chooser._most_cautious(passing, 0.0).fdr == 0.3
    assert chooser._most_cautious(passing, 0.1).fdr == 0.05
    assert chooser._most_cautious([], 0.005) is None
    # same target: the higher floor is the more cautious
    tie = [(_rule(0.1, 0.0), 0.70), (_rule(0.1, 0.2), 0.70)]
    assert chooser._most_cautious(tie, 0.005).min_threshold == 0.2
