"""Tests for atd_dl.io.fits_io: reading 16-bit / MEF / compressed frames, errors, writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from atd_dl.errors import InputError
from atd_dl.io.fits_io import (
    Frame,
    image_hdus,
    parse_date_obs,
    parse_section,
    provenance_cards,
    read_frame,
    write_fits_image,
    write_raw_uint16,
)

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"


def _tan_header(nx: int = 40, ny: int = 30, sip: bool = False) -> fits.Header:
    h = fits.Header()
    h["CTYPE1"] = "RA---TAN-SIP" if sip else "RA---TAN"
    h["CTYPE2"] = "DEC--TAN-SIP" if sip else "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = nx / 2 + 0.5, ny / 2 + 0.5
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -1e-3, 0.0, 0.0, 1e-3
    h["CUNIT1"] = h["CUNIT2"] = "deg"
    if sip:
        h["A_ORDER"] = h["B_ORDER"] = 2
        h["A_2_0"], h["B_0_2"] = 2e-5, -3e-5
    return h


# ------------------------------------------------------------------------------ 16-bit data


def test_raw_int16_with_bzero_reads_as_unsigned(tmp_path: Path) -> None:
    unsigned = np.array([[0, 1, 500], [32767, 32768, 65535]], dtype=np.int64)
    path = tmp_path / "raw.fits"
    # on-disk int16 plus a BZERO card added afterwards, exactly as cameras write them
    fits.PrimaryHDU((unsigned - 32768).astype(np.int16)).writeto(path)
    fits.setval(path, "BZERO", value=32768)
    fits.setval(path, "SATURATE", value=60000)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[0].data.dtype.kind == "i" and hdul[0].data.min() == -32768
    frame = read_frame(path)
    assert frame.data.dtype == np.float32
    np.testing.assert_array_equal(frame.data, unsigned.astype(np.float32))
    # SATURATE from the header
    np.testing.assert_array_equal(frame.saturated, unsigned >= 60000)
    assert frame.saturation_level == 60000
    # the argument wins over the header
    frame = read_frame(path, saturation=400)
    np.testing.assert_array_equal(frame.saturated, unsigned >= 400)
    np.testing.assert_array_equal(frame.mask, frame.saturated)


def test_bscale_honoured(tmp_path: Path) -> None:
    physical = np.arange(12, dtype=np.float64).reshape(3, 4) * 2.0 + 10.0
    hdu = fits.PrimaryHDU(physical.copy())  # scale() works in place
    hdu.scale("int16", bscale=2.0, bzero=10.0)
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)
    frame = read_frame(path)
    np.testing.assert_allclose(frame.data, physical)
    assert not frame.saturated.any()  # scaled storage: no implicit saturation level


def test_write_raw_uint16_round_trip_and_default_saturation(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 65536, size=(17, 23)).astype(np.uint16)
    data[3, 4] = 65535
    path = write_raw_uint16(tmp_path / "sim.fits", data, _tan_header(23, 17))
    raw = fits.getheader(path)
    assert raw["BITPIX"] == 16 and raw["BZERO"] == 32768
    frame = read_frame(path)
    np.testing.assert_array_equal(frame.data, data.astype(np.float32))
    # no SATURATE card: unsigned 16-bit storage saturates at 65535
    assert frame.saturation_level == 65535
    assert frame.saturated[3, 4] and frame.mask[3, 4]
    assert frame.saturated.sum() == int((data == 65535).sum())
    assert frame.wcs is not None and frame.wcs.has_celestial
    # float input is rounded and clipped
    path2 = write_raw_uint16(tmp_path / "f.fits", np.array([[-5.0, 1.4, 70000.0]]))
    np.testing.assert_array_equal(read_frame(path2).data, [[0, 1, 65535]])


def test_nan_pixels_masked_and_all_nan_not_an_error(tmp_path: Path) -> None:
    data = np.ones((5, 6), dtype=np.float32)
    data[1, 2] = np.nan
    data[4, 0] = np.inf
    fits.PrimaryHDU(data).writeto(tmp_path / "nan.fits")
    frame = read_frame(tmp_path / "nan.fits")
    assert frame.mask.sum() == 2 and frame.mask[1, 2] and frame.mask[4, 0]
    assert not frame.saturated.any()
    fits.PrimaryHDU(np.full((4, 4), np.nan, dtype=np.float32)).writeto(tmp_path / "allnan.fits")
    frame = read_frame(tmp_path / "allnan.fits")
    assert frame.mask.all()


# ------------------------------------------------------------------------------ HDU choice


def _synthetic_mef(path: Path) -> None:
    primary = fits.PrimaryHDU(header=_tan_header(40, 30))
    primary.header["EXPTIME"] = 30.0
    primary.header["GAIN"] = 0.0  # invalid, like raw LCO primaries
    primary.header["SATURATE"] = 1000.0
    primary.header["DATE-OBS"] = "2021-10-08T01:55:17.144"
    table = fits.BinTableHDU(Table({"a": [1, 2]}), name="EVENTS")
    sci1 = fits.ImageHDU(np.full((30, 40), 7, dtype=np.uint16), name="SCI", ver=1)
    sci1.header["GAIN"] = 1.5
    sci2 = fits.ImageHDU(np.full((30, 40), 2000, dtype=np.uint16), name="SCI", ver=2)
    sci2.header["GAIN"] = 2.5
    fits.HDUList([primary, table, sci1, sci2]).writeto(path)


def test_mef_first_image_inherits_primary(tmp_path: Path) -> None:
    path = tmp_path / "mef.fits"
    _synthetic_mef(path)
    frame = read_frame(path)
    assert frame.hdu == 2
    assert frame.shape == (30, 40)
    np.testing.assert_array_equal(frame.data, 7)
    assert frame.gain == 1.5  # extension wins over the primary's invalid 0.0
    assert frame.exptime == 30.0  # inherited from the primary
    assert frame.date_obs is not None and frame.date_obs.isot.startswith("2021-10-08T01:55:17")
    # no WCS in the extension: the primary's is used
    assert frame.wcs is not None
    x, y = frame.wcs.all_world2pix(150.0, 2.0, 0)
    assert x == pytest.approx(19.5) and y == pytest.approx(14.5)
    assert frame.wcs.pixel_shape == (40, 30)


def test_mef_choose_by_index_and_name(tmp_path: Path) -> None:
    path = tmp_path / "mef.fits"
    _synthetic_mef(path)
    frame = read_frame(path, hdu=3)
    assert frame.hdu == 3 and frame.gain == 2.5
    assert frame.saturated.all()  # 2000 >= SATURATE 1000 from the primary
    assert read_frame(path, hdu="SCI").hdu == 2
    assert read_frame(path, hdu="3").hdu == 3
    with pytest.raises(InputError, match=r"HDU 0 \(PRIMARY\) is empty: no image data"):
        read_frame(path, hdu=0)
    with pytest.raises(InputError, match=r"HDU 1 \(EVENTS\) is a binary table, not an image"):
        read_frame(path, hdu=1)
    with pytest.raises(InputError, match=r"no HDU named 'FOO' \(HDUs: 0 PRIMARY \(empty\)"):
        read_frame(path, hdu="FOO")
    with pytest.raises(InputError, match=r"no HDU 9: the file has 4"):
        read_frame(path, hdu=9)


def test_real_lco_mef_frame() -> None:
    path = REAL / "mef_raw_test_frame.fits"
    if not path.exists():
        pytest.skip("real frames not available")
    frame = read_frame(path)
    assert frame.hdu == 1
    assert frame.shape == (512, 512) and frame.origin == (0, 0)  # DATASEC: overscan trimmed
    assert read_frame(path, trim=False).shape == (522, 544)
    assert image_hdus(path) == [1, 2, 3, 4]
    assert frame.gain == pytest.approx(6.42)
    assert frame.exptime == pytest.approx(94.975)
    assert 39990 < frame.saturation_level <= 40000  # SATURATE less 5 read-noise sigmas
    assert frame.data.min() >= 0 and frame.data.max() > 32768  # unsigned values
    assert frame.wcs is not None and list(frame.wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    assert frame.date_obs is not None and frame.date_obs.isot == "2021-10-08T01:55:17.144"
    assert read_frame(path, hdu=4).gain == pytest.approx(6.26)
    # each amplifier's WCS comes from the primary through DETSEC: neighbours meet on the sky
    f1, f2 = read_frame(path, hdu=1), read_frame(path, hdu=2)
    assert f1.wcs is not None and f2.wcs is not None
    # DETSEC runs backwards in y for amplifier 1: both amplifiers' last rows meet
    ra1, dec1 = f1.wcs.all_pix2world(255.5, 511.0, 0)
    ra2, dec2 = f2.wcs.all_pix2world(255.5, 511.0, 0)
    scale = 3600 * abs(float(f1.wcs.pixel_scale_matrix[1, 1]))
    assert abs(dec1 - dec2) * 3600 < 2.5 * scale and abs(ra1 - ra2) * 3600 < 2.5 * scale


def test_data_section_trims_prescan_and_sets_origin(tmp_path: Path) -> None:
    data = np.zeros((20, 30), np.float32)
    data[:, :4] = 500.0  # prescan
    hdr = fits.Header({"DATASEC": "[5:30,1:18]"})
    fits.PrimaryHDU(data, hdr).writeto(tmp_path / "a.fits")
    frame = read_frame(tmp_path / "a.fits")
    assert frame.shape == (18, 26) and frame.origin == (4, 0) and frame.data.max() == 0.0
    assert parse_section("[5:30,1:18]") == (5, 30, 1, 18) and parse_section("junk") is None


def test_real_frames_read() -> None:
    if not REAL.exists():
        pytest.skip("real frames not available")
    m13 = read_frame(REAL / "M13_blue_0001.fits")
    assert m13.shape == (1040, 1392) and m13.wcs is None and m13.exptime == 5.0
    assert m13.data.min() >= 0  # BZERO applied
    twomass = read_frame(REAL / "aK_asky_990502s1350080.fits.gz")
    assert twomass.shape == (1024, 512)
    assert list(twomass.wcs.wcs.ctype) == ["RA---SIN", "DEC--SIN"]
    assert twomass.mask.sum() == int((~np.isfinite(twomass.data)).sum()) > 0
    ntt = read_frame(REAL / "ntt_emmi_sep_image.fits")
    assert ntt.wcs is None and ntt.exptime == 1200.0
    assert ntt.date_obs is not None and ntt.date_obs.mjd == pytest.approx(48921.62787)


# ------------------------------------------------------------------------------ compression, WCS


def test_fz_round_trip_float_and_int(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = rng.normal(100, 5, (33, 21)).astype(np.float32)
    wcs = WCS(_tan_header(21, 33))
    path = write_fits_image(tmp_path / "img.fits.fz", data, wcs=wcs)
    with fits.open(path) as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU)
    frame = read_frame(path)
    assert frame.hdu == 1
    np.testing.assert_array_equal(frame.data, data)  # lossless
    np.testing.assert_allclose(frame.wcs.wcs.crval, [150.0, 2.0])
    ints = rng.integers(0, 65536, (12, 9)).astype(np.uint16)
    frame = read_frame(write_raw_uint16(tmp_path / "raw.fits.fz", ints))
    np.testing.assert_array_equal(frame.data, ints)


def test_gz_output_and_sip_kept(tmp_path: Path) -> None:
    header = _tan_header(40, 30, sip=True)
    path = tmp_path / "sip.fits"
    fits.PrimaryHDU(np.zeros((30, 40), dtype=np.float32), header).writeto(path)
    frame = read_frame(path)
    assert frame.wcs.sip is not None
    out = write_fits_image(
        tmp_path / "copy.fits.gz", frame.data, header=frame.header, wcs=frame.wcs
    )
    back = read_frame(out)
    assert back.wcs.sip is not None
    pix = np.array([[0.0, 0.0], [39.0, 29.0], [10.3, 20.7]])
    np.testing.assert_allclose(
        back.wcs.all_pix2world(pix, 0), frame.wcs.all_pix2world(pix, 0), atol=1e-10
    )


def test_write_provenance_and_clean_header(tmp_path: Path) -> None:
    header = fits.Header({"BZERO": 32768, "BSCALE": 1, "EXPTIME": 5.0, "ORIGIN": "CAMERA"})
    path = write_fits_image(
        tmp_path / "p.fits",
        np.ones((3, 4), dtype=np.float32),
        header=header,
        provenance={"source": "/data/raw/frame_0001.fits", "box": 50, "background_box": 50},
    )
    h = fits.getheader(path)
    assert h["ORIGIN"] == "ATD-DL" and h["ATDVERS"]
    assert h["ATDSRC"] == "/data/raw/frame_0001.fits"
    assert h["BOX"] == 50 and h["HIERARCH ATD BACKGROUND_BOX"] == 50
    assert h["EXPTIME"] == 5.0 and "BZERO" not in h  # float data, no stale scaling
    np.testing.assert_array_equal(read_frame(path).data, 1.0)


def test_provenance_cards() -> None:
    cards = {
        c.keyword: c.value
        for c in provenance_cards(source="a.fits", step="calibrate", n_frames=3, ncombine_total=4)
    }
    assert cards["ORIGIN"] == "ATD-DL"
    assert cards["ATDSRC"] == "a.fits"
    assert cards["STEP"] == "calibrate"
    assert cards["N_FRAMES"] == 3  # up to 8 characters: a plain keyword
    assert cards["ATD NCOMBINE_TOTAL"] == 4  # longer: HIERARCH ATD ...
    assert len(cards["DATE"]) == 19


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    with pytest.raises(Exception):  # noqa: B017 - astropy rejects object arrays
        write_fits_image(tmp_path / "bad.fits", np.array([[object()]], dtype=object))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ errors


def test_missing_and_not_fits(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.fits: file not found"):
        read_frame(tmp_path / "nope.fits")
    text = tmp_path / "notes.fits"
    text.write_text("this is not a FITS file\n" * 10)
    with pytest.raises(InputError, match=r"notes\.fits: not a FITS file"):
        read_frame(text)
    with pytest.raises(InputError, match="is a directory"):
        read_frame(tmp_path)
    (tmp_path / "empty.fits").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.fits: not a FITS file \(Empty or corrupt"):
        read_frame(tmp_path / "empty.fits")


def test_truncated_file(tmp_path: Path) -> None:
    fits.PrimaryHDU(np.ones((100, 100), np.float32)).writeto(tmp_path / "full.fits")
    raw = (tmp_path / "full.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(
        InputError, match=r"cut\.fits: cannot read the image data of HDU 0 \(PRIMARY\)"
    ):
        read_frame(tmp_path / "cut.fits")


def test_no_image_lists_hdus(tmp_path: Path) -> None:
    path = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"x": [1.0]}), name="CAT")]).writeto(
        path
    )
    with pytest.raises(
        InputError,
        match=r"table\.fits: no 2-D image data in this file \(HDUs: 0 PRIMARY \(empty\), 1 CAT \(binary table\)\)",
    ):
        read_frame(path)


def test_cube_needs_plane(tmp_path: Path) -> None:
    cube = np.arange(3 * 8 * 9, dtype=np.float32).reshape(3, 8, 9)
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube).writeto(path)
    with pytest.raises(
        InputError,
        match=r"has a 3-D cube of shape \(3, 8, 9\); choose a plane with plane=N / --plane N",
    ):
        read_frame(path)
    np.testing.assert_array_equal(read_frame(path, plane=1).data, cube[1])
    with pytest.raises(InputError, match="plane 5 out of range: the cube has 3 planes"):
        read_frame(path, plane=5)
    # a length-1 leading axis is dropped silently
    fits.PrimaryHDU(cube[:1]).writeto(tmp_path / "one.fits")
    assert read_frame(tmp_path / "one.fits").shape == (8, 9)


def test_one_d_data_is_not_an_image(tmp_path: Path) -> None:
    fits.PrimaryHDU(np.arange(10.0)).writeto(tmp_path / "spec.fits")
    with pytest.raises(InputError, match="no 2-D image data"):
        read_frame(tmp_path / "spec.fits")
    with pytest.raises(InputError, match=r"has 1-D data of shape \(10,\), not an image"):
        read_frame(tmp_path / "spec.fits", hdu=0)


def test_date_obs_variants() -> None:
    h = fits.Header({"DATE-OBS": "2020-01-02T03:04:05"})
    assert parse_date_obs(h).isot == "2020-01-02T03:04:05.000"
    h = fits.Header({"DATE-OBS": "2020-01-02", "TIME-OBS": "10:00:00"})
    assert parse_date_obs(h).isot == "2020-01-02T10:00:00.000"
    h = fits.Header({"DATE-OBS": "26/10/92", "MJD-OBS": 48921.5})
    assert parse_date_obs(h).mjd == 48921.5
    h = fits.Header({"DATE-OBS": "26/10/92"})
    assert parse_date_obs(h).isot.startswith("1992-10-26")
    assert parse_date_obs(fits.Header()) is None
    assert parse_date_obs(fits.Header({"DATE-OBS": "garbage"})) is None


def test_frame_properties_ignore_bad_values() -> None:
    header = fits.Header({"GAIN": "n/a", "EGAIN": 1.7, "EXPOSURE": 0.1})
    frame = Frame(
        data=np.zeros((2, 2), np.float32),
        mask=np.zeros((2, 2), bool),
        saturated=np.zeros((2, 2), bool),
        header=header,
        wcs=None,
        path=None,
        hdu=0,
    )
    assert frame.gain == 1.7 and frame.exptime == 0.1 and frame.shape == (2, 2)
    assert frame.date_obs is None


def test_saturation_inferred_from_a_float_plateau(tmp_path: Path) -> None:
    from atd_dl.io.fits_io import infer_saturation

    data = np.random.default_rng(0).normal(1000, 10, (50, 50)).astype(np.float32)
    assert infer_saturation(data) is None
    data[10:14, 10:14] = 63900.0 + np.arange(16).reshape(4, 4)  # flat-fielded clipped core
    level = infer_saturation(data)
    assert level is not None and 62000 < level < 63900
    fits.PrimaryHDU(data).writeto(tmp_path / "f.fits")
    frame = read_frame(tmp_path / "f.fits")
    assert frame.saturated.sum() == 16 and frame.saturation_level == pytest.approx(level)


def test_a_saturated_plateau_under_saturate_by_read_noise_is_saturated(tmp_path: Path) -> None:
    """Read noise is added after the full well clips: a saturated core scatters around and
    below SATURATE. With RDNOISE and GAIN known, 5 read-noise sigmas under it still count."""
    rng = np.random.default_rng(1)
    data = rng.normal(600.0, 4.0, (40, 40))
    core = (slice(18, 22), slice(18, 22))
    data[core] = 10523.0 - np.abs(rng.normal(0.0, 4.0, (4, 4)))  # plateau, 4 ADU read noise
    data[5, 5] = 10400.0  # a bright unsaturated pixel, 30 read-noise sigmas under
    header = fits.Header({"SATURATE": 10523.4, "GAIN": 3.0, "RDNOISE": 12.0})
    fits.PrimaryHDU(np.round(data).astype(np.float32), header).writeto(tmp_path / "s.fits")
    frame = read_frame(tmp_path / "s.fits")
    assert frame.saturated[core].all() and frame.saturated.sum() == 16
    assert frame.saturation_level == pytest.approx(10523.4 - 5 * 12.0 / 3.0)
    del header["RDNOISE"]  # no read noise known: the nominal level, as before
    fits.PrimaryHDU(np.round(data).astype(np.float32), header).writeto(tmp_path / "n.fits")
    assert read_frame(tmp_path / "n.fits").saturated.sum() == 0
