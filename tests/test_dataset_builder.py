"""Dataset builder and ``atd-dl prep`` on small simulated frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from atd_dl.cli import main
from atd_dl.data.builder import (
    PrepConfig,
    assign_split,
    build_dataset,
    find_catalog,
    find_frames,
    frame_stem,
)
from atd_dl.data.isolation import SkyFootprint, footprints_overlap
from atd_dl.errors import InputError
from atd_dl.prep.calibration import CalibrationMasters

SIZE = 160  # subfield side: 512-px frames give the full 3×3 block


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Two 512² paper-preset frames (sky-isolated by the simulator) with catalogs + masters."""
    from atd_dl.sim import preset_config, simulate_run

    out = tmp_path_factory.mktemp("prep_sim")
    report = simulate_run(preset_config("paper", size=512), 21, out, 2, progress=False)
    assert len(report.written) == 2
    return out


def _masters(run: Path) -> CalibrationMasters:
    c = run / "calib"
    return CalibrationMasters.from_files(
        c / "master_bias.fits", c / "master_dark.fits", c / "master_flat.fits"
    )


@pytest.fixture(scope="module")
def dataset(run, tmp_path_factory) -> tuple[Path, int]:
    """The dataset built through the CLI (frame 1 = test)."""
    out = tmp_path_factory.mktemp("prep_ds") / "ds"
    c = run / "calib"
    rc = main(
        [
            "prep",
            str(run / "frames"),
            "--catalogs", str(run / "catalogs"),
            "--out", str(out),
            "--bias", str(c / "master_bias.fits"),
            "--dark", str(c / "master_dark.fits"),
            "--flat", str(c / "master_flat.fits"),
            "--test-frames", "sim_s21_0001",
            "--subfield-size", str(SIZE),
            "--quiet",
        ]
    )  # fmt: skip
    return out, rc


def test_prep_cli_writes_the_dataset(dataset):
    out, rc = dataset
    assert rc == 0
    for folder, n in (("images", 18), ("masks", 18), ("aux", 18), ("points", 18), ("overlays", 2)):
        assert len(list((out / folder).iterdir())) == n, folder
    img = cv2.imread(str(out / "images" / "sim_s21_0000_s1.png"), cv2.IMREAD_UNCHANGED)
    msk = cv2.imread(str(out / "masks" / "sim_s21_0000_s1.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == msk.shape == (SIZE, SIZE) and img.dtype == np.uint8
    assert set(np.unique(msk)) == {0, 255}
    ov = cv2.imread(str(out / "overlays" / "sim_s21_0000.png"))
    assert ov.shape == (512, 512, 3)
    aux = np.load(out / "aux" / "sim_s21_0000_s1.npz")
    assert aux["rms"].dtype == np.float32 and aux["bad"].dtype == bool
    assert aux["rms"].shape == (SIZE, SIZE) and 0.5 < float(np.median(aux["rms"])) < 2.0
    assert not list(out.rglob("*.tmp"))


def test_manifest_splits_and_points(dataset):
    out, _ = dataset
    man = Table.read(out / "manifest.csv", format="ascii.csv")
    assert len(man) == 18
    f0 = man[man["frame"] == "sim_s21_0000"]
    split = dict(zip(f0["subfield"].tolist(), f0["split"].tolist()))
    assert split == {1: "train", 2: "val", 3: "train", 4: "train", 5: "val", 6: "train",
                     7: "train", 8: "val", 9: "train"}  # fmt: skip
    assert set(man[man["frame"] == "sim_s21_0001"]["split"]) == {"test"}
    # numbering 9 2 3 / 8 1 4 / 7 6 5 on a 3x3 block centred on the 512 frame (16 px border)
    row = {int(r["subfield"]): (int(r["y0"]), int(r["x0"])) for r in f0}
    assert row[9] == (16, 16) and row[1] == (176, 176) and row[4] == (176, 336)
    assert np.isfinite(man["ra_center"]).all() and np.isfinite(man["dec_center"]).all()
    # points: subfield pixel coordinates, one per kept source in the subfield
    r1 = f0[f0["subfield"] == 1][0]
    pts = Table.read(out / r1["points"], format="ascii.csv")
    assert list(pts.colnames[:4]) == ["x", "y", "snr", "source_id"]
    assert len(pts) == r1["n_kept"] > 10
    assert (pts["x"] >= -0.5).all() and (pts["x"] < SIZE - 0.5).all()
    msk = cv2.imread(str(out / r1["mask"]), cv2.IMREAD_UNCHANGED)
    on = msk[np.rint(pts["y"]).astype(int), np.rint(pts["x"]).astype(int)]
    assert (on == 255).mean() > 0.95
    labels = Table.read(out / "labels.csv", format="ascii.csv")
    assert len(labels) == 2 and (labels["n_kept"] > 0).all()
    for c in ("n_dropped_snr", "n_dropped_edge", "n_dropped_off_frame", "n_components_unmatched"):
        assert c in labels.colnames
    t1 = Table.read(out / "table1.csv", format="ascii.csv")
    assert len(t1) == 6 and set(t1["method"]) == {"original", "zscale", "background_zscale"}


def test_prep_and_detect_build_identical_zscale_inputs(run, dataset):
    """The paper (ZScale, noise-aware) input: the planes training reads from a prepared
    dataset equal the planes detection builds for the same frame (one owner:
    atd_dl.prep.network_input.normalised_rms / zscale_planes)."""
    from atd_dl.data.manifest import read_manifest
    from atd_dl.detect.pipeline import Detector
    from atd_dl.lit.datamodule import StarFieldDataset

    out, _ = dataset
    man = read_manifest(out)
    rows = man[man["frame"] == "sim_s21_0000"]
    stems = [str(s) for s in rows["stem"]]
    ds = StarFieldDataset(out, stems, input_mode="noise_aware")
    detector = Detector(
        None, {"name": "x", "input": "zscale8+rms+bad", "kwargs": {"in_channels": 3}}
    )
    path = next((run / "frames").glob("sim_s21_0000*"))
    planes = detector.input_planes(detector.prepare(path, masters=_masters(run)))
    assert planes.shape[0] == 3
    for i in range(len(stems)):
        y0, x0, n = int(rows["y0"][i]), int(rows["x0"][i]), int(rows["size"][i])
        want = planes[:, y0 : y0 + n, x0 : x0 + n]
        got = ds[i]["image"].numpy()
        np.testing.assert_array_equal(got[0], want[0])  # ZScale image / 255
        np.testing.assert_allclose(got[1], want[1], rtol=1e-3, atol=1e-3)  # float16 on disk
        np.testing.assert_array_equal(got[2], want[2])  # bad pixels


def test_fingerprint(dataset):
    out, _ = dataset
    fp = json.loads((out / "fingerprint.json").read_text())
    for key in ("pixel_stats", "psf_fwhm_px", "label_counts", "frames", "split_rule", "versions",
                "mask_fraction", "n_subfields", "prep", "labels"):  # fmt: skip
        assert key in fp
    assert fp["n_subfields"] == {"train": 6, "val": 3, "test": 9}
    assert fp["split_rule"]["test_frames"] == ["sim_s21_0001"]
    assert 1.0 < fp["psf_fwhm_px"]["median"] < 2.5
    assert 30 < fp["pixel_stats"]["all"]["mean"] < 200
    assert sum(fp["histogram"]) == 18 * SIZE * SIZE
    assert fp["label_counts"]["n_kept"] > 0
    assert {f["name"] for f in fp["frames"]} == {"sim_s21_0000", "sim_s21_0001"}


def test_rerun_skips_finished_frames(run, dataset):
    out, _ = dataset
    img = out / "images" / "sim_s21_0000_s1.png"
    before = img.stat().st_mtime_ns
    rep = build_dataset(
        run / "frames", run / "catalogs", out, masters=_masters(run),
        test_frames=["sim_s21_0001"], config=PrepConfig(subfield_size=SIZE), progress=False,
    )  # fmt: skip
    assert sorted(rep.skipped) == ["sim_s21_0000", "sim_s21_0001"] and rep.done == []
    assert img.stat().st_mtime_ns == before
    assert rep.n_subfields == {"train": 6, "val": 3, "test": 9}


def _shifted_copy(run: Path, folder: Path, name: str, dx_px: float) -> Path:
    """Copy frame 0 (and its catalog) with the WCS moved by ``dx_px`` pixels."""
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    (folder / "catalogs").mkdir(parents=True, exist_ok=True)
    with fits.open(run / "frames" / "sim_s21_0000.fits") as hdul:
        hdul[0].header["CRPIX1"] += dx_px
        hdul.writeto(folder / "frames" / f"{name}.fits")
    shutil.copy(run / "catalogs" / "sim_s21_0000.ecsv", folder / "catalogs" / f"{name}.ecsv")
    shutil.copy(run / "frames" / "sim_s21_0000.fits", folder / "frames" / "sim_s21_0000.fits")
    shutil.copy(run / "catalogs" / "sim_s21_0000.ecsv", folder / "catalogs")
    return folder


def test_overlapping_test_frame_refused_unless_forced(run, tmp_path):
    src = _shifted_copy(run, tmp_path / "in", "shifted", 40.0)
    cfg = PrepConfig(subfield_size=SIZE, write_overlays=False)
    with pytest.raises(
        InputError, match="test frame shifted overlaps training frame sim_s21_0000 on the sky"
    ):
        build_dataset(src / "frames", src / "catalogs", tmp_path / "ds", test_frames="shifted",
                      config=cfg, progress=False)  # fmt: skip
    assert not (tmp_path / "ds" / "manifest.csv").exists()
    rep = build_dataset(src / "frames", src / "catalogs", tmp_path / "ds", test_frames="shifted",
                        config=cfg, force=True, progress=False)  # fmt: skip
    assert rep.ok and [o[:2] for o in rep.overlaps] == [("shifted", "sim_s21_0000")]
    assert "overlap" in rep.summary()


def test_bad_frames_reported_and_batch_goes_on(run, tmp_path, capsys, caplog):
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(run / "frames" / "sim_s21_0000.fits", frames)
    (frames / "broken.fits").write_bytes(b"this is not a FITS file" * 40)
    shutil.copy(run / "frames" / "sim_s21_0001.fits", frames / "nocat.fits")
    out = tmp_path / "ds"
    rc = main(["prep", str(frames), "--catalogs", str(run / "catalogs"), "--out", str(out),
               "--subfield-size", str(SIZE), "--no-overlays", "--quiet"])  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    # the cause is logged once (ERROR: <file>: cause); the summary lists the failed frames
    assert "failed frames: broken" in err and "not a FITS file" in caplog.text
    assert "nocat" in err and "no reference catalog found" in caplog.text
    man = Table.read(out / "manifest.csv", format="ascii.csv")
    assert set(man["frame"]) == {"sim_s21_0000"} and len(man) == 9
    assert len(list((out / "images").iterdir())) == 9
    assert not (out / ".state" / "broken.json").exists()


def test_gain_required(run, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    with fits.open(run / "frames" / "sim_s21_0000.fits") as hdul:
        del hdul[0].header["GAIN"]
        hdul.writeto(frames / "sim_s21_0000.fits")
    cfg = PrepConfig(subfield_size=SIZE, write_overlays=False, write_aux=False)
    rep = build_dataset(frames, run / "catalogs", tmp_path / "ds", config=cfg, progress=False)
    assert "gain unknown" in rep.failed["sim_s21_0000"]


def test_input_helpers(run, tmp_path):
    assert frame_stem("a/b/frame_01.fits.gz") == "frame_01" and frame_stem("x.fz") == "x"
    frames = find_frames(run / "frames")
    assert [p.name for p in frames] == ["sim_s21_0000.fits", "sim_s21_0001.fits"]
    assert find_frames(str(run / "frames" / "*_0001.fits")) == [frames[1]]
    assert find_catalog(frames[0], run / "catalogs").name == "sim_s21_0000.ecsv"
    one = run / "catalogs" / "sim_s21_0001.ecsv"
    assert find_catalog(frames[0], one) == one  # a single catalog file for every frame
    with pytest.raises(InputError, match=r"no reference catalog found: looked for .*nope\.\{ecsv"):
        find_catalog(frames[0], run / "catalogs", pattern="nope")
    with pytest.raises(InputError, match="matches none of the input frames"):
        build_dataset(run / "frames", run / "catalogs", tmp_path / "ds", test_frames="typo*")
    cfg = PrepConfig()
    assert [assign_split(n, test=False, config=cfg) for n in range(1, 10)] == [
        "train", "val", "train", "train", "val", "train", "train", "val", "train"
    ]  # fmt: skip
    assert assign_split(4, test=True, config=cfg) == "test"
    only = PrepConfig(train_subfields=(1,), val_subfields=(2,))
    assert [assign_split(n, test=False, config=only) for n in (1, 2, 3)] == ["train", "val", None]


def test_footprint_overlap_geometry():
    def square(name, ra, dec, half):
        c = np.array([[ra - half, dec - half], [ra + half, dec - half],
                      [ra + half, dec + half], [ra - half, dec + half]])  # fmt: skip
        return SkyFootprint(name, ra, dec, half * np.sqrt(2), c)

    a = square("a", 10.0, 0.0, 1.0)
    # side by side: bounding circles overlap, the squares do not
    assert not footprints_overlap(a, square("b", 12.1, 0.0, 1.0))
    assert footprints_overlap(a, square("c", 11.9, 0.0, 1.0))
    assert footprints_overlap(a, square("d", 12.1, 0.0, 1.0), margin_deg=0.2)
    assert not footprints_overlap(a, square("e", 40.0, 0.0, 1.0))
    # RA wrap
    assert footprints_overlap(square("f", 359.5, 0.0, 1.0), square("g", 0.5, 0.0, 1.0))
