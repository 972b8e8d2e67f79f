"""Injection–recovery on a synthetic noise frame with the real sep finder."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from atd_dl.evaluate.injection import (
    completeness_table,
    flux_for_snr,
    free_positions,
    inject_moffat_stars,
    injection_recovery,
    level_at_completeness,
)
from atd_dl.io.fits_io import Frame


def _frame(seed: int = 0, n: int = 256) -> Frame:
    rng = np.random.default_rng(seed)
    data = (1000.0 + rng.normal(0, 10.0, (n, n))).astype(np.float32)
    hdr = fits.Header({"GAIN": 2.0, "EXPTIME": 1.0, "MAGZP": 20.0})
    zeros = np.zeros((n, n), bool)
    return Frame(
        data=data, mask=zeros, saturated=zeros.copy(), header=hdr, wcs=None, path=None, hdu=0
    )


def test_flux_for_snr_inverts_the_snr_formula() -> None:
    sigma = np.array([5.0, 20.0])
    f = flux_for_snr(np.array([3.0, 10.0]), sigma, box_fraction=0.5)
    f3 = 0.5 * f
    np.testing.assert_allclose(f3 / np.sqrt(f3 + 9 * sigma**2), [3.0, 10.0])


def test_inject_stars_adds_the_flux_in_adu() -> None:
    data = np.zeros((64, 64), np.float32)
    out, f3 = inject_moffat_stars(
        data,
        np.array([20.3]),
        np.array([30.8]),
        np.array([5000.0]),
        gain=2.0,
        fwhm=2.0,
        poisson=False,
    )
    assert out.sum() == pytest.approx(2500.0, rel=0.02)  # e- / gain, nearly all light in the stamp
    assert np.unravel_index(np.argmax(out), out.shape) == (31, 20)
    assert 0.3 * 5000 < f3[0] < 0.9 * 5000
    assert data.sum() == 0  # input untouched


def test_free_positions_respect_separation_and_forbidden() -> None:
    rng = np.random.default_rng(1)
    forbidden = np.zeros((100, 100), bool)
    forbidden[40:60, 40:60] = True
    xy = free_positions(
        (100, 100), 30, rng, forbidden=forbidden, existing_xy=np.array([[20.0, 20.0]]), min_sep=8
    )
    assert 0 < len(xy) <= 30
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(xy), 1)].min() >= 8
    assert np.all(np.hypot(xy[:, 0] - 20, xy[:, 1] - 20) >= 8)
    assert not np.any((xy[:, 0] > 33) & (xy[:, 0] < 67) & (xy[:, 1] > 33) & (xy[:, 1] < 67))
    assert np.all((xy >= 9.5) & (xy <= 89.5))


def test_completeness_table_and_levels() -> None:
    v = np.array([1.5, 1.7, 2.5, 2.6, 3.5, 3.6])
    found = np.array([False, False, True, False, True, True])
    tab = completeness_table(v, found, [1, 2, 3, 4])
    assert [r["completeness"] for r in tab] == [0.0, 0.5, 1.0]
    assert level_at_completeness(tab, 0.5) == pytest.approx(2.5)
    assert level_at_completeness(tab, 0.75) == pytest.approx(3.0)
    assert level_at_completeness(tab, 1.1) is None


def test_injection_recovery_with_sep() -> None:
    from atd_dl.baselines import get_baseline

    sep = get_baseline("sep")

    def detect(frame: Frame):
        return sep(frame.data, mask=frame.mask, threshold=1.5)

    res = injection_recovery(
        _frame(), {"sep": detect}, n_per_round=60, rounds=2, snr_range=(1.5, 40.0), fwhm=2.0, seed=3
    )
    assert res.x.size >= 100
    assert res.zeropoint == 20.0
    # SNR measured on the injected stars follows the requested range
    assert 1.0 < np.median(res.snr) < 20.0
    found = res.found["sep"]
    assert found[res.snr > 15].mean() > 0.9
    assert found[res.snr < 2.5].mean() < found[res.snr > 15].mean()
    # recovered positions are accurate for bright stars
    off = res.offsets["sep"][found & (res.snr > 15)]
    assert np.sqrt(np.mean(off**2)) < 0.3
    s = res.summary()
    assert s["methods"]["sep"]["snr50"] is not None and s["methods"]["sep"]["snr50"] < 10
    assert s["mag_system"] == "calibrated" and s["methods"]["sep"]["by_mag"]
    # a failing detector is recorded, not raised
    bad = injection_recovery(_frame(), {"bad": lambda f: 1 / 0}, n_per_round=10, fwhm=2.0)
    assert not bad.found["bad"].any() and "division by zero" in bad.failures["bad"][0]
