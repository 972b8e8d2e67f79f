"""Tests for atd_dl.prep.calibration and the ``atd-dl masters`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from atd_dl.cli import main
from atd_dl.errors import InputError
from atd_dl.io.fits_io import Frame, read_frame, write_raw_uint16
from atd_dl.prep.calibration import CalibrationMasters, Master, calibrate, combine_masters

SHAPE = (40, 50)


def _frame(data: np.ndarray, exptime: float | None = 10.0) -> Frame:
    header = fits.Header()
    if exptime is not None:
        header["EXPTIME"] = exptime
    data = np.asarray(data, dtype=np.float32)
    return Frame(
        data=data,
        mask=~np.isfinite(data),
        saturated=np.zeros(data.shape, bool),
        header=header,
        wcs=None,
        path=Path("frame.fits"),
        hdu=0,
    )


@pytest.fixture
def truth() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    flat = rng.uniform(0.8, 1.2, SHAPE).astype(np.float32)
    flat /= np.median(flat)
    return {
        "sky": rng.uniform(100, 5000, SHAPE).astype(np.float32),
        "bias": rng.normal(1000, 3, SHAPE).astype(np.float32),
        "dark_rate": rng.uniform(0.0, 2.0, SHAPE).astype(np.float32),  # ADU / s
        "flat": flat,
    }


def test_calibrate_recovers_known_image(truth: dict[str, np.ndarray]) -> None:
    t_frame, t_dark = 10.0, 20.0
    raw = truth["sky"] * truth["flat"] + truth["bias"] + truth["dark_rate"] * t_frame
    masters = CalibrationMasters(
        bias=truth["bias"],
        dark=truth["dark_rate"] * t_dark,  # bias-subtracted, for 20 s
        flat=truth["flat"] * 3000.0,  # any scale: normalised to median 1
        dark_exptime=t_dark,
    )
    out = calibrate(_frame(raw, t_frame), masters)
    np.testing.assert_allclose(out.data, truth["sky"], rtol=1e-4)
    assert out.header["DARKSCAL"] == pytest.approx(0.5)
    assert out.header["ZEROCOR"] and out.header["DARKCOR"] and out.header["FLATCOR"]
    assert not out.mask.any()


def test_calibrate_bad_flat_pixels_masked(truth: dict[str, np.ndarray]) -> None:
    flat = truth["flat"].copy()
    flat[3, 4] = 0.0
    flat[5, 6] = np.nan
    flat[7, 8] = -1.0
    out = calibrate(_frame(truth["sky"] * truth["flat"]), CalibrationMasters(flat=flat))
    for y, x in [(3, 4), (5, 6), (7, 8)]:
        assert out.mask[y, x] and np.isnan(out.data[y, x])
    assert out.mask.sum() == 3
    assert np.all(np.isfinite(out.data[~out.mask]))


def test_calibrate_dark_without_exptime_unscaled(truth: dict[str, np.ndarray], caplog) -> None:
    dark = truth["dark_rate"] * 20
    out = calibrate(
        _frame(truth["bias"] + dark, exptime=None),
        CalibrationMasters(bias=truth["bias"], dark=dark),
    )
    np.testing.assert_allclose(out.data, 0.0, atol=1e-3)
    assert "subtracted without scaling" in caplog.text


def test_calibrate_shape_mismatch() -> None:
    with pytest.raises(
        InputError,
        match=r"frame\.fits: master bias shape \(10, 10\) does not match frame shape \(40, 50\)",
    ):
        calibrate(_frame(np.zeros(SHAPE)), CalibrationMasters(bias=np.zeros((10, 10))))


def test_combine_bias_rejects_outliers() -> None:
    rng = np.random.default_rng(1)
    level = rng.normal(1000, 2, SHAPE).astype(np.float32)
    frames = [level + rng.normal(0, 1, SHAPE).astype(np.float32) for _ in range(7)]
    frames[2][10, 10] += 5000  # cosmic ray
    master = combine_masters(frames, kind="bias")
    assert isinstance(master, Master) and master.n_frames == 7
    assert master.data.dtype == np.float32
    assert abs(master.data[10, 10] - level[10, 10]) < 3
    assert np.abs(master.data - level).std() < 1.0
    assert master.header["NCOMBINE"] == 7 and master.header["IMAGETYP"] == "MASTER BIAS"


def test_combine_dark_and_flat_with_bias(truth: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(2)
    darks = [
        _frame(truth["bias"] + truth["dark_rate"] * 30 + rng.normal(0, 0.5, SHAPE), 30.0)
        for _ in range(5)
    ]
    master_dark = combine_masters(darks, kind="dark", bias=truth["bias"])
    assert master_dark.exptime == 30.0 and master_dark.header["EXPTIME"] == 30.0
    np.testing.assert_allclose(master_dark.data, truth["dark_rate"] * 30, atol=1.0)
    # darks of different exposure times are scaled to the median one
    mixed = [_frame(truth["bias"] + truth["dark_rate"] * t, t) for t in (10.0, 20.0, 40.0)]
    scaled = combine_masters(mixed, kind="dark", bias=truth["bias"])
    assert scaled.exptime == 20.0
    np.testing.assert_allclose(scaled.data, truth["dark_rate"] * 20, atol=1e-3)
    flats = [
        _frame(truth["bias"] + truth["flat"] * level, 1.0) for level in (8000.0, 10000.0, 12000.0)
    ]
    master_flat = combine_masters(flats, kind="flat", bias=truth["bias"])
    assert np.median(master_flat.data) == pytest.approx(1.0)
    np.testing.assert_allclose(master_flat.data, truth["flat"], rtol=1e-4)


def test_combine_errors() -> None:
    with pytest.raises(InputError, match="no input frames for the master dark"):
        combine_masters([], kind="dark")
    with pytest.raises(InputError, match=r"shape \(3, 3\) differs from the first frame's \(4, 4\)"):
        combine_masters([np.zeros((4, 4)), np.zeros((3, 3))])
    with pytest.raises(ValueError, match="kind must be"):
        combine_masters([np.zeros((4, 4))], kind="sky")  # type: ignore[arg-type]


def test_masters_from_files_round_trip(tmp_path: Path, truth: dict[str, np.ndarray]) -> None:
    Master(truth["bias"], "bias", fits.Header(), 1).write(tmp_path / "bias.fits")
    dark_header = fits.Header({"EXPTIME": 20.0})
    Master(truth["dark_rate"] * 20, "dark", dark_header, 1, 20.0).write(tmp_path / "dark.fits")
    Master(truth["flat"], "flat", fits.Header(), 1).write(tmp_path / "flat.fits.fz")
    masters = CalibrationMasters.from_files(
        bias=tmp_path / "bias.fits", dark=tmp_path / "dark.fits", flat=tmp_path / "flat.fits.fz"
    )
    assert masters.dark_exptime == 20.0 and bool(masters)
    raw = truth["sky"] * truth["flat"] + truth["bias"] + truth["dark_rate"] * 5.0
    out = calibrate(_frame(raw, 5.0), masters)
    np.testing.assert_allclose(out.data, truth["sky"], rtol=1e-4)
    assert not CalibrationMasters()


def test_masters_cli(tmp_path: Path, truth: dict[str, np.ndarray], capsys) -> None:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        data = truth["bias"] + truth["dark_rate"] * 60 + rng.normal(0, 1, SHAPE)
        paths.append(
            write_raw_uint16(tmp_path / f"dark{i}.fits", data, fits.Header({"EXPTIME": 60.0}))
        )
    bias_path = Master(truth["bias"], "bias", fits.Header(), 1).write(tmp_path / "mbias.fits")
    bad = tmp_path / "bad.fits"
    bad.write_text("garbage")
    out = tmp_path / "master_dark.fits"
    code = main(
        [
            "masters",
            "--kind",
            "dark",
            "--bias",
            str(bias_path),
            "--out",
            str(out),
            *map(str, paths),
            str(bad),
        ]
    )
    assert code == 1  # written from the good frames, the bad one reported
    err = capsys.readouterr().err
    assert "1 input(s) skipped" in err and "bad.fits: not a FITS file" in err
    master = read_frame(out)
    assert master.exptime == 60.0
    assert fits.getheader(out)["NCOMBINE"] == 3
    # 1 ADU noise plus integer rounding per dark; median of 3 frames
    residual = master.data - truth["dark_rate"] * 60
    assert np.abs(residual).max() < 5.0 and abs(np.mean(residual)) < 0.2
    # refuses to overwrite, exit code 2 from the CLI's InputError handling
    assert main(["masters", "--kind", "dark", "--out", str(out), *map(str, paths)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["masters", "--kind", "bias", "--out", str(tmp_path / "b.fits"), str(bad)]) == 2


def test_bad_pixel_map_masks_its_pixels(tmp_path: Path) -> None:
    """A bad-pixel map (nonzero = bad) masks its pixels, records BPMCOR and must match the
    frame's shape; the detection CLI takes it as ``--bad-pixels``."""
    data = np.full(SHAPE, 100.0, np.float32)
    bpm = np.zeros(SHAPE, np.uint8)
    bpm[5, 7] = 1
    bpm[20, :] = 4  # a bad row
    fits.PrimaryHDU(bpm).writeto(tmp_path / "bpm.fits")
    masters = CalibrationMasters.from_files(bad_pixels=tmp_path / "bpm.fits")
    assert masters
    out = calibrate(_frame(data), masters)
    assert out.mask[5, 7] and out.mask[20].all() and out.mask.sum() == 1 + SHAPE[1]
    assert out.header["BPMCOR"] == 1 + SHAPE[1]
    np.testing.assert_array_equal(out.data, data)  # values kept, only masked
    with pytest.raises(InputError, match="bad-pixel map shape"):
        calibrate(_frame(np.zeros((10, 10), np.float32)), masters)
