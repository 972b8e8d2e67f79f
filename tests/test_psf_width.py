"""PSF-width estimator: the stellar locus among fitted widths."""

from __future__ import annotations

import numpy as np
import pytest

from atd_dl.prep.psf_width import stellar_locus


def test_stellar_locus_prefers_the_tight_group_of_a_mixed_field() -> None:
    rng = np.random.default_rng(5)
    stars = rng.normal(2.5, 0.05, 10)
    knots = rng.uniform(3.5, 11.0, 18)  # extended sources of a galaxy: widths spread out
    assert abs(stellar_locus(np.concatenate([stars, knots])) - 2.5) < 0.1
    # stars dominate: the plain median, even with a few wide blends
    field = np.concatenate([rng.normal(3.0, 0.2, 20), [6.0, 8.0, 9.0]])
    assert stellar_locus(field) == pytest.approx(float(np.median(field)))
