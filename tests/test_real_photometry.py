"""Photometry against photutils on real frames; FITS-LDAC references; proper motion.

The real-frame tests skip when ``../shared/data/real/`` (or photutils) is absent.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from atd_dl.errors import InputError
from atd_dl.evaluate.references import read_table, references_from_truth
from atd_dl.io.catalogs import propagate_proper_motion, read_reference_catalog

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


# ------------------------------------------------------------------ photutils, real frames


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("photutils")
    if not REAL.is_dir():
        pytest.skip(f"no real frames in {REAL}")
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector

    return Detector(*load_detector(None), DetectConfig())


@pytest.mark.parametrize("name", ["mro_test_frame.fits", "ntt_emmi_sep_image.fits"])
def test_flux_agrees_with_photutils(detector, name: str) -> None:
    from atd_dl.evaluate.photometry import photutils_agreement

    path = REAL / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("atd_dl").setLevel(logging.ERROR)
        prepared = detector.prepare(path)
        res = detector.run(prepared)
    low = detector.config.postprocess.low_snr
    a = photutils_agreement(prepared, res.catalog, low_snr=low)
    assert a.n >= 5  # isolated flags==0 sources with snr > 20
    assert abs(a.median_ratio - 1.0) < 0.02, a
    assert abs(a.median_raw_ratio - 1.0) < 0.005, a  # the apertures themselves
    assert abs(a.median_snr_ratio - 1.0) < 0.1, a
    # a negative SNR never hides a source photutils sees clearly (local annulus background)
    assert a.n_negative_snr_photutils_positive == 0, a
    assert a.n_low_snr_inconsistent == 0, a


# ------------------------------------------------------------------ FITS-LDAC references


def _write_ldac(path: Path, ra: list[float], dec: list[float]) -> None:
    """A minimal SExtractor FITS_LDAC file: primary, LDAC_IMHEAD, LDAC_OBJECTS."""
    head = fits.Header({"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 80}).tostring()
    imhead = fits.BinTableHDU.from_columns(
        [fits.Column(name="Field Header Card", format=f"{len(head)}A", array=[head])],
        name="LDAC_IMHEAD",
    )
    n = len(ra)
    objects = fits.BinTableHDU(
        Table(
            {
                "NUMBER": np.arange(1, n + 1),
                "XWIN_IMAGE": np.linspace(11.0, 51.0, n),
                "YWIN_IMAGE": np.linspace(21.0, 41.0, n),
                "ALPHA_J2000": np.asarray(ra, float),
                "DELTA_J2000": np.asarray(dec, float),
                "FLUX_AUTO": np.full(n, 1000.0),
                "FLUXERR_AUTO": np.full(n, 20.0),
                "FLAGS": np.zeros(n, np.int16),
            }
        ),
        name="LDAC_OBJECTS",
    )
    fits.HDUList([fits.PrimaryHDU(), imhead, objects]).writeto(path)


def test_ldac_is_a_pixel_reference(tmp_path: Path) -> None:
    path = tmp_path / "cat_ldac.fits"
    _write_ldac(path, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    table = read_table(path)
    assert "XWIN_IMAGE" in table.colnames  # LDAC_OBJECTS, not LDAC_IMHEAD
    refs = references_from_truth(table, path=path)
    np.testing.assert_allclose(refs.xy[:, 0], [10.0, 30.0, 50.0])  # 1-based -> 0-based
    np.testing.assert_allclose(refs.xy[:, 1], [20.0, 30.0, 40.0])
    np.testing.assert_allclose(refs.snr, 50.0)  # FLUX_AUTO / FLUXERR_AUTO
    # sky positions all 0 (frame without WCS): a clear error, not "no overlap"
    with pytest.raises(InputError, match="without a sky WCS"):
        read_reference_catalog(path)


def test_ldac_sky_positions_read(tmp_path: Path) -> None:
    path = tmp_path / "cat_ldac.fits"
    _write_ldac(path, [10.0, 10.001], [20.0, 20.002])
    cat = read_reference_catalog(path)
    np.testing.assert_allclose(cat["ra"], [10.0, 10.001])
    np.testing.assert_allclose(cat["dec"], [20.0, 20.002])
    assert cat.meta["columns"]["ra"] == "ALPHA_J2000"


def test_evaluate_auto_reads_ldac_as_pixel_reference(tmp_path: Path) -> None:
    from atd_dl.cli import main

    ldac = tmp_path / "ref_ldac.fits"
    _write_ldac(ldac, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    det = tmp_path / "det.ecsv"
    Table({"x": [10.1, 30.0, 49.9], "y": [20.0, 30.2, 40.0]}).write(det)
    out = tmp_path / "eval"
    rc = main(
        ["evaluate", str(det), "--reference", str(ldac), "--shape", "80", "100", "--out", str(out)]
    )
    assert rc in (0, None)
    import json

    m = json.loads((out / "metrics.json").read_text())
    assert m["reference_kind"] == "truth" and m["strict"]["tp"] == 3


# ------------------------------------------------------------------ proper motion


def test_proper_motion_1000_mas_per_year_over_10_years() -> None:
    t = Table(
        {
            "source_id": [1],
            "ra": [150.0],
            "dec": [60.0],
            "mag": [12.0],
            "pmra": [1000.0],  # mas/yr, includes cos(dec) as in Gaia
            "pmdec": [0.0],
            "ref_epoch": [2016.0],
        }
    )
    moved = propagate_proper_motion(t, Time(2026.0, format="jyear"))
    dra = (moved["ra"][0] - 150.0) * 3600.0 * np.cos(np.radians(60.0))
    assert dra == pytest.approx(10.0, abs=1e-3)  # arcsec
    assert (moved["dec"][0] - 60.0) * 3600.0 == pytest.approx(0.0, abs=2e-3)  # curvature only


def test_reference_catalog_moves_to_frame_mjd_obs(tmp_path: Path) -> None:
    """references_from_catalog propagates Gaia DR3 positions (ref_epoch 2016.0 by default)
    to the frame's MJD-OBS: 1000 mas/yr in Dec over 10 yr = 10 px at 1 arcsec/px."""
    from atd_dl.evaluate.references import references_from_catalog
    from atd_dl.io.fits_io import read_frame

    hdr = fits.Header()
    hdr.update(
        {
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CRVAL1": 10.0,
            "CRVAL2": 20.0,
            "CRPIX1": 50.5,
            "CRPIX2": 40.5,
            "CDELT1": -1.0 / 3600,
            "CDELT2": 1.0 / 3600,
            "GAIN": 2.0,
            "MJD-OBS": Time(2026.0, format="jyear").mjd,
        }
    )
    rng = np.random.default_rng(0)
    fits.writeto(tmp_path / "f.fits", rng.normal(100, 5, (80, 100)).astype(np.float32), hdr)
    frame = read_frame(tmp_path / "f.fits")
    csv = tmp_path / "gaia.csv"
    Table(
        {"ra": [10.0], "dec": [20.0], "phot_g_mean_mag": [15.0], "pmra": [0.0], "pmdec": [1000.0]}
    ).write(csv)
    refs = references_from_catalog(read_reference_catalog(csv), frame)
    assert refs.xy[0, 0] == pytest.approx(49.5, abs=1e-3)  # CRPIX 50.5, 1-based
    assert refs.xy[0, 1] == pytest.approx(39.5 + 10.0, abs=2e-3)
