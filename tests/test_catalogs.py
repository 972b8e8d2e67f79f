"""Tests for atd_dl.io.catalogs: reading Gaia-like catalogs, proper motion, projection."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from atd_dl.errors import InputError
from atd_dl.io.catalogs import (
    frame_footprint,
    project_catalog,
    propagate_proper_motion,
    read_reference_catalog,
)

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
ARCSEC = 1.0 / 3600.0


def tan_wcs(crval=(10.0, 20.0), crpix=(51.0, 41.0), scale_arcsec=1.0, sip: bool = False) -> WCS:
    """A north-up, east-left TAN WCS with ``scale_arcsec`` pixels; crpix is 1-based FITS."""
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"], h["NAXIS2"] = 100, 80
    h["CTYPE1"] = "RA---TAN-SIP" if sip else "RA---TAN"
    h["CTYPE2"] = "DEC--TAN-SIP" if sip else "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = crval
    h["CRPIX1"], h["CRPIX2"] = crpix
    h["CD1_1"], h["CD1_2"] = -scale_arcsec * ARCSEC, 0.0
    h["CD2_1"], h["CD2_2"] = 0.0, scale_arcsec * ARCSEC
    if sip:
        h["A_ORDER"] = h["B_ORDER"] = 2
        h["A_2_0"], h["A_0_2"], h["B_1_1"] = 1e-4, -5e-5, 8e-5
    return WCS(h)


def gaia_table(n: int = 50, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    return Table(
        {
            "source_id": np.arange(n, dtype=np.int64) + 4_295_806_720_000_000_000,
            "ra": 10.0 + rng.uniform(-0.01, 0.01, n),
            "dec": 20.0 + rng.uniform(-0.01, 0.01, n),
            "phot_g_mean_mag": rng.uniform(12, 20, n),
            "pmra": rng.normal(0, 10, n),
            "pmdec": rng.normal(0, 10, n),
            "ref_epoch": np.full(n, 2016.0),
        }
    )


# ------------------------------------------------------------------------------ reading


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("cat.csv", "ascii.csv"),
        ("cat.ecsv", "ascii.ecsv"),
        ("cat.fits", "fits"),
        ("cat.vot", "votable"),
        ("cat.xml", "votable"),
        ("cat.csv.gz", "ascii.csv"),
    ],
)
def test_each_format_reads_the_same(tmp_path: Path, name: str, fmt: str) -> None:
    table = gaia_table()
    path = tmp_path / name
    if name.endswith(".gz"):
        plain = tmp_path / name[:-3]
        table.write(plain, format=fmt)
        with open(plain, "rb") as src, gzip.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        table.write(path, format=fmt)
    cat = read_reference_catalog(path)
    assert cat.colnames == ["source_id", "ra", "dec", "mag", "pmra", "pmdec", "ref_epoch"]
    np.testing.assert_array_equal(cat["source_id"], table["source_id"])  # 64-bit ids intact
    np.testing.assert_allclose(cat["ra"], table["ra"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(cat["dec"], table["dec"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(cat["mag"], table["phot_g_mean_mag"])
    assert cat["source_id"].dtype.isnative
    assert cat.meta["columns"]["mag"] == "phot_g_mean_mag"


def test_vizier_aliases_and_j2000_epoch(tmp_path: Path) -> None:
    t = Table(
        {
            "Source": [1, 2],
            "RA_ICRS": [10.0, 10.001],
            "DE_ICRS": [20.0, 20.001],
            "Gmag": [15.0, np.nan],
        }
    )
    t.write(tmp_path / "viz.ecsv")
    cat = read_reference_catalog(tmp_path / "viz.ecsv")
    assert list(cat["source_id"]) == [1, 2]
    assert np.isnan(cat["mag"][1])
    assert "pmra" not in cat.colnames
    t = Table(
        {"RAJ2000": [10.0], "DEJ2000": [20.0], "pmRA": [100.0], "pmDE": [0.0], "Epoch": [2016.0]}
    )
    t.write(tmp_path / "j2000.csv")
    cat = read_reference_catalog(tmp_path / "j2000.csv")
    assert cat["ref_epoch"][0] == 2000.0  # J2000 positions are at epoch 2000, not the Epoch column
    assert cat["source_id"][0] == 0 and np.isnan(cat["mag"][0])


def test_columns_mapping_case_insensitive(tmp_path: Path) -> None:
    t = Table({"ID": [7], "ALPHA": [10.0], "DELTA": [20.0], "BRIGHT": [11.0]})
    t.write(tmp_path / "own.csv")
    cat = read_reference_catalog(
        tmp_path / "own.csv",
        columns={"ra": "alpha", "dec": "Delta", "mag": "bright", "source_id": "id"},
    )
    assert (cat["source_id"][0], cat["ra"][0], cat["dec"][0], cat["mag"][0]) == (
        7,
        10.0,
        20.0,
        11.0,
    )
    with pytest.raises(
        InputError,
        match=r"column 'RAdeg' given for ra not found; columns present: ID, ALPHA, DELTA, BRIGHT",
    ):
        read_reference_catalog(tmp_path / "own.csv", columns={"ra": "RAdeg"})


def test_missing_required_columns(tmp_path: Path) -> None:
    Table({"ra": [1.0], "phot_g_mean_mag": [12.0]}).write(tmp_path / "nodec.csv")
    with pytest.raises(
        InputError,
        match=r"nodec\.csv: missing required column\(s\) dec; columns present: ra, phot_g_mean_mag",
    ):
        read_reference_catalog(tmp_path / "nodec.csv")


def test_bad_catalog_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_reference_catalog(tmp_path / "none.csv")
    (tmp_path / "cat.parquet").write_bytes(b"x")
    with pytest.raises(InputError, match=r"unknown catalog format \(expected one of"):
        read_reference_catalog(tmp_path / "cat.parquet")
    (tmp_path / "broken.fits").write_text("not fits at all")
    with pytest.raises(InputError, match="cannot read catalog as fits"):
        read_reference_catalog(tmp_path / "broken.fits")


def test_sexagesimal_and_masked_values(tmp_path: Path) -> None:
    (tmp_path / "sex.csv").write_text(
        "ra,dec,mag\n00:40:00.0,+20:00:00,12.5\n00:40:00.0,-20:30:00,\n"
    )
    cat = read_reference_catalog(tmp_path / "sex.csv")
    np.testing.assert_allclose(cat["ra"], [10.0, 10.0])
    np.testing.assert_allclose(cat["dec"], [20.0, -20.5])
    assert cat["mag"][0] == 12.5 and np.isnan(cat["mag"][1])


# ------------------------------------------------------------------------------ proper motion


def test_proper_motion_barnards_star() -> None:
    # Barnard's star, Gaia DR3-like values
    t = Table(
        {
            "source_id": [1, 2],
            "ra": [269.44850252, 269.44850252],
            "dec": [4.73942042, 4.73942042],
            "mag": [8.2, 8.2],
            "pmra": [-801.551, np.nan],
            "pmdec": [10362.394, np.nan],
            "ref_epoch": [2016.0, 2016.0],
        }
    )
    moved = propagate_proper_motion(t, Time(2026.0, format="jyear"))
    ddec = (moved["dec"][0] - t["dec"][0]) * 3600
    dra = (moved["ra"][0] - t["ra"][0]) * 3600 * np.cos(np.radians(t["dec"][0]))
    assert ddec == pytest.approx(103.624, abs=0.01)  # 10 yr x 10.362 arcsec/yr
    assert dra == pytest.approx(-8.016, abs=0.01)
    assert moved["ra"][1] == t["ra"][1] and moved["dec"][1] == t["dec"][1]  # NaN pm unchanged
    assert t["dec"][0] == 4.73942042  # input untouched
    assert moved.meta["epoch"] == pytest.approx(2026.0)


def test_projection_applies_proper_motion() -> None:
    wcs = tan_wcs(scale_arcsec=1.0)
    t = Table(
        {
            "source_id": [1],
            "ra": [10.0],
            "dec": [20.0],
            "mag": [10.0],
            "pmra": [0.0],
            "pmdec": [500.0],
            "ref_epoch": [2016.0],
        }
    )
    at_ref = project_catalog(t, wcs, (80, 100))
    later = project_catalog(t, wcs, (80, 100), epoch=Time(2020.0, format="jyear"))
    assert later["y"][0] - at_ref["y"][0] == pytest.approx(2.0, abs=1e-3)  # 4 yr x 0.5"/yr, 1"/px
    assert later["x"][0] == pytest.approx(at_ref["x"][0], abs=1e-6)


# ------------------------------------------------------------------------------ projection


def test_projection_hand_computed_tan() -> None:
    wcs = tan_wcs(crval=(10.0, 20.0), crpix=(51.0, 41.0), scale_arcsec=1.0)
    cos_dec = np.cos(np.radians(20.0))
    t = Table(
        {
            "source_id": [1, 2, 3, 4, 5],
            "ra": [10.0, 10.0 + ARCSEC / cos_dec, 10.0, 10.0 + 60 * ARCSEC / cos_dec, np.nan],
            "dec": [20.0, 20.0, 20.0 + ARCSEC, 20.0, 20.0],
            "mag": [10.0, 11.0, 12.0, 13.0, 14.0],
        }
    )
    out = project_catalog(t, wcs, (80, 100))
    assert list(out["source_id"]) == [1, 2, 3]  # 60" east is off the frame, NaN dropped
    np.testing.assert_allclose(out["x"][0], 50.0, atol=1e-9)  # CRPIX - 1 (0-based)
    np.testing.assert_allclose(out["y"][0], 40.0, atol=1e-9)
    np.testing.assert_allclose(
        [out["x"][1], out["y"][1]], [49.0, 40.0], atol=1e-4
    )  # 1 px east = -x
    np.testing.assert_allclose(
        [out["x"][2], out["y"][2]], [50.0, 41.0], atol=1e-4
    )  # 1 px north = +y


def test_projection_edges_and_margin() -> None:
    wcs = tan_wcs(crval=(10.0, 20.0), crpix=(1.0, 1.0), scale_arcsec=1.0)  # pixel (0,0) at CRVAL
    cos_dec = np.cos(np.radians(20.0))
    # x = -0.4 (on the frame, left half of pixel 0) and x = -2 (off by 1.5 px)
    t = Table(
        {
            "ra": [10.0 + 0.4 * ARCSEC / cos_dec, 10.0 + 2 * ARCSEC / cos_dec],
            "dec": [20.0, 20.0],
            "mag": [1.0, 2.0],
        }
    )
    assert len(project_catalog(t, wcs, (80, 100))) == 1
    assert len(project_catalog(t, wcs, (80, 100), margin=2)) == 2
    with pytest.raises(InputError, match="does not overlap"):
        project_catalog(t, wcs, (80, 100), margin=-1)


def test_projection_with_sip_matches_all_world2pix() -> None:
    wcs = tan_wcs(sip=True)
    pix = np.array([[3.2, 5.7], [50.0, 40.0], [95.1, 77.3]])
    world = wcs.all_pix2world(pix, 0)
    t = Table({"ra": world[:, 0], "dec": world[:, 1], "mag": [1.0, 2.0, 3.0]})
    out = project_catalog(t, wcs, (80, 100))
    np.testing.assert_allclose(np.column_stack([out["x"], out["y"]]), pix, atol=1e-4)
    # without SIP the corner positions would differ by far more than that
    plain = wcs.deepcopy()
    plain.sip = None
    assert np.abs(plain.wcs_world2pix(world, 0) - pix).max() > 0.1


def test_no_overlap_message_and_no_wcs() -> None:
    wcs = tan_wcs(crpix=(50.5, 40.5))
    t = Table(
        {"ra": [200.0, 201.0], "dec": [-5.0, -4.0], "mag": [1.0, 2.0]}, meta={"path": "gaia.csv"}
    )
    with pytest.raises(
        InputError,
        match=r"gaia\.csv: catalog does not overlap the frame \(frame centre RA 10\.0000 Dec \+20\.0000, "
        r"radius 0\.0178 deg; catalog covers RA 200\.0000\.\.201\.0000 Dec -5\.0000\.\.-4\.0000\)",
    ):
        project_catalog(t, wcs, (80, 100))
    with pytest.raises(InputError, match="has no celestial WCS"):
        project_catalog(t, None, (80, 100))
    with pytest.raises(InputError, match="catalog is empty"):
        project_catalog(t[:0], wcs, (80, 100))


def test_projection_across_ra_zero() -> None:
    wcs = tan_wcs(crval=(0.0, 0.0), crpix=(50.5, 40.5), scale_arcsec=10.0)
    t = Table({"ra": [359.99, 0.01, 180.0], "dec": [0.0, 0.0, 0.0], "mag": [1.0, 2.0, 3.0]})
    out = project_catalog(t, wcs, (80, 100))
    assert len(out) == 2
    np.testing.assert_allclose(sorted(out["x"]), [49.5 - 3.6, 49.5 + 3.6], atol=1e-3)


def test_frame_footprint_and_overlap() -> None:
    wcs = tan_wcs(crval=(10.0, 20.0), crpix=(50.5, 40.5), scale_arcsec=1.0)
    fp = frame_footprint(wcs, (80, 100))
    assert fp.ra_center == pytest.approx(10.0) and fp.dec_center == pytest.approx(20.0)
    half_diag = np.hypot(50, 40) * ARCSEC
    assert fp.radius == pytest.approx(half_diag, rel=1e-4)
    assert fp.corners.shape == (4, 2)
    near = frame_footprint(tan_wcs(crval=(10.0, 20.0 + 60 * ARCSEC), crpix=(50.5, 40.5)), (80, 100))
    far = frame_footprint(tan_wcs(crval=(10.5, 20.0), crpix=(50.5, 40.5)), (80, 100))
    assert fp.overlaps(near) and not fp.overlaps(far)


def test_real_2mass_frame_projection() -> None:
    path = REAL / "aK_asky_990502s1350080.fits.gz"
    if not path.exists():
        pytest.skip("real frames not available")
    from atd_dl.io.fits_io import read_frame

    frame = read_frame(path)
    pix = np.array([[0.0, 0.0], [511.0, 1023.0], [256.3, 600.2]])
    world = frame.wcs.all_pix2world(pix, 0)
    t = Table({"ra": world[:, 0], "dec": world[:, 1], "mag": [1.0, 2.0, 3.0]})
    out = project_catalog(t, frame.wcs, frame.shape)
    np.testing.assert_allclose(np.column_stack([out["x"], out["y"]]), pix, atol=1e-6)
    fp = frame_footprint(frame.wcs, frame.shape)
    assert fp.radius == pytest.approx(np.hypot(256, 512) / 3600, rel=1e-3)  # 1"/px SIN
