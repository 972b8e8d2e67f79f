"""Catalog-free repeatability across exposures of one field (``atd-dl repeatability``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _detect_helpers import moffat_image
from astropy.io import fits
from astropy.table import Table

from atd_dl.evaluate.repeatability import repeatability


def _cat(xy: np.ndarray, snr: np.ndarray) -> Table:
    return Table({"x": xy[:, 0], "y": xy[:, 1], "snr": snr})


def test_repeatability_counts_returning_sources_and_singles() -> None:
    rng = np.random.default_rng(0)
    stars = rng.uniform(10, 190, (50, 2))
    a = _cat(
        np.vstack([stars, rng.uniform(0, 200, (10, 2))]), np.r_[np.full(50, 30.0), np.full(10, 2.0)]
    )
    b = _cat(stars + rng.normal(0, 0.2, stars.shape), np.full(50, 30.0))
    res = repeatability([a, b], ["a", "b"], radius_px=1.5)
    assert res.matched_by.startswith("pixels")
    assert res.n_detections == [60, 50] and res.n_found_again[1] == 50
    assert 50 <= res.n_found_again[0] <= 52 and res.n_single[0] == 60 - res.n_found_again[0]
    low = res.bins.index("0-3")
    assert res.bin_fraction[low] < 0.3 and res.bin_fraction[res.bins.index("20-50")] == 1.0
    with pytest.raises(ValueError):
        repeatability([a])


def test_repeatability_cli_on_two_exposures(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    xs, ys = rng.uniform(15, 113, 25), rng.uniform(15, 113, 25)
    img = moffat_image((128, 128), xs, ys, np.full(25, 4000.0), fwhm=2.5)
    for k in range(2):
        noisy = img + 100.0 + rng.normal(0, 3.0, img.shape)
        fits.PrimaryHDU(noisy.astype(np.float32)).writeto(tmp_path / f"e{k}.fits")
    out = tmp_path / "rep.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "atd_dl.cli",
            "repeatability",
            str(tmp_path / "e0.fits"),
            str(tmp_path / "e1.fits"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert min(doc["n_detections"]) >= 20 and min(doc["fraction_found_again"]) > 0.9
    r = subprocess.run(
        [sys.executable, "-m", "atd_dl.cli", "repeatability", str(tmp_path / "e0.fits")],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "at least two frames" in r.stderr and "Traceback" not in r.stderr
