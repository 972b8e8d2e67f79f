"""Detection pipeline: tiled inference + stitching, WCS, outputs, batches, edge cases."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from _detect_helpers import (
    MATCHED_META,
    RMS_E,
    MatchedFilterNet,
    disc_map,
    moffat_image,
    noisy,
    tiny_model_folder,
)
from astropy.io import fits
from astropy.wcs import WCS

from atd_dl.detect.batch import detect_files, expand_inputs, unique_stems
from atd_dl.detect.catalog_io import OutputConfig, file_sha256, read_catalog
from atd_dl.detect.flags import FLAG_VERSION, SourceFlag
from atd_dl.detect.inference import TiledPredictor, load_detector, model_input
from atd_dl.detect.pipeline import DetectConfig, Detector, add_sky_coordinates, detect_frame
from atd_dl.detect.postprocess import extract_sources
from atd_dl.errors import InputError
from atd_dl.evaluate.matching import match_points
from atd_dl.io.paths import frame_stem
from atd_dl.prep.partition import Tiler
from atd_dl.sim import preset_config, simulate_field, write_field


def _wcs(shape, sip: bool = False) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip else ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 30.0]
    w.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    w.wcs.cd = np.array([[-14.86, 0.3], [0.2, 14.86]]) / 3600.0
    if sip:
        from astropy.wcs import Sip

        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        a[2, 0], a[0, 2], b[1, 1], a[3, 0] = 2e-5, -1e-5, 1.5e-5, 3e-8
        w.sip = Sip(a, b, None, None, w.wcs.crpix)
    w.pixel_shape = (shape[1], shape[0])
    return w


def _write_frame(path, data, *, wcs=None, gain=1.2, extra=None):
    hdr = fits.Header()
    if wcs is not None:
        hdr.update(wcs.to_header(relax=True))
    if gain is not None:
        hdr["GAIN"] = gain
    hdr["EXPTIME"] = 0.1
    for k, v in (extra or {}).items():
        hdr[k] = v
    fits.PrimaryHDU(np.asarray(data, np.float32), hdr).writeto(path)
    return path


def _star_frame(shape=(300, 300), seed=0, n=60, extra=()):
    rng = np.random.default_rng(seed)
    ex = np.asarray(extra, float).reshape(-1, 2)
    xs = np.r_[rng.uniform(6, shape[1] - 7, n), ex[:, 0]]
    ys = np.r_[rng.uniform(6, shape[0] - 7, n), ex[:, 1]]
    fl = np.r_[rng.uniform(2000, 20000, n), np.full(len(ex), 8000.0)]
    clean = moffat_image(shape, xs, ys, fl, oversample=3)
    return (noisy(clean, rng) / 1.2 + 500.0), xs, ys  # ADU with a 500 ADU pedestal


def test_tiled_prediction_is_seam_free_and_a_border_star_is_found_once():
    shape = (600, 600)
    tiler = Tiler(shape, tile=256, overlap=64)
    # stars on a tile edge, on the owner cut between two tiles, and right next to it
    cut = tiler._x_owned[0][1]  # first column owned by the second tile column
    border = [(255.5, 150.3), (cut - 0.5, 300.3), (cut + 0.2, 450.6)]
    data, xs, ys = _star_frame(shape, seed=1, n=40, extra=border)
    from atd_dl.prep.enhance import enhance_frame

    enh = enhance_frame(data)
    net = MatchedFilterNet()
    pred = TiledPredictor(net, tile=256, overlap=64, batch_size=3, device="cpu")
    prob = pred.predict(model_input(enh.image8))
    with torch.no_grad():
        full = torch.sigmoid(net(torch.from_numpy(model_input(enh.image8))[None]).diff(dim=1))
    assert np.allclose(prob, full[0, 0].numpy(), atol=1e-5)  # no seams anywhere
    cat = extract_sources(prob, 0.5, image_e=enh.subtracted * 1.2, background_rms_e=RMS_E)
    for bx, by in border:
        d = np.hypot(cat["x"] - bx, cat["y"] - by)
        assert np.sum(d < 3.0) == 1, f"star at x={bx}"
        assert d.min() < 0.3


def test_stitch_of_an_oracle_map_cut_into_tiles_reports_border_star_once():
    shape = (400, 500)
    tiler = Tiler(shape, tile=256, overlap=64)
    x_cut = tiler._x_owned[0][1] - 0.5
    y_cut = tiler._y_owned[0][1] - 0.5
    clean = moffat_image(shape, [x_cut], [y_cut], [5000.0], oversample=3)
    img = noisy(clean, np.random.default_rng(0))
    tiles = tiler.split(disc_map(shape, [x_cut], [y_cut], 2.0))
    prob = tiler.stitch(tiles)
    cat = extract_sources(prob, 0.5, image_e=img, background_rms_e=RMS_E)
    assert len(cat) == 1
    assert abs(cat["x"][0] - x_cut) < 0.2 and abs(cat["y"][0] - y_cut) < 0.2


def test_radec_follow_the_wcs_with_origin_0_and_sip():
    from astropy.table import Table

    w = _wcs((200, 300), sip=True)
    t = Table({"x": [0.0, 10.25, 299.0], "y": [0.0, 50.5, 199.0], "y_err": [0.1, 0.1, 0.1]})
    add_sky_coordinates(t, w)
    assert t.colnames == ["x", "y", "y_err", "ra", "dec"] and t["ra"].unit == "deg"
    x, y = w.all_world2pix(t["ra"], t["dec"], 0)
    assert np.allclose(x, t["x"], atol=1e-5) and np.allclose(y, t["y"], atol=1e-5)
    # FITS CRPIX is 1-based: the pixel at 0-based (crpix - 1) is CRVAL
    t2 = Table({"x": [w.wcs.crpix[0] - 1], "y": [w.wcs.crpix[1] - 1], "y_err": [0.0]})
    add_sky_coordinates(t2, w)
    assert t2["ra"][0] == pytest.approx(150.0) and t2["dec"][0] == pytest.approx(30.0)
    t3 = Table({"x": [1.0], "y": [2.0], "y_err": [0.0]})
    add_sky_coordinates(t3, None)
    assert np.isnan(t3["ra"][0])


def test_detect_frame_on_a_simulated_frame_end_to_end(tmp_path):
    sim = simulate_field(preset_config("paper", size=384), seed=4)
    paths = write_field(sim, tmp_path / "sim")
    out = OutputConfig(tmp_path / "det", regions=True, segmap=True, probmap=True, overlay=True)
    res = detect_frame(
        paths["frame"],
        MatchedFilterNet(),
        dict(MATCHED_META),
        tile=256,
        overlap=64,
        device="cpu",
        write=out,
    )
    cat = res.catalog
    assert {"ra", "dec"} <= set(cat.colnames) and np.all(np.isfinite(cat["ra"]))
    # a matched filter on the stretched image finds the bright stars at the right places
    t = sim.truth[(sim.truth["kind"] == "star") & (sim.truth["snr_true"] >= 15)]
    t = t[(t["x"] > 4) & (t["x"] < 379) & (t["y"] > 4) & (t["y"] < 379) & ~t["saturated"]]
    m = match_points(np.column_stack([cat["x"], cat["y"]]), np.column_stack([t["x"], t["y"]]), 1.0)
    assert m.recall > 0.9
    # ra/dec of matched detections agree with the truth positions through the frame WCS
    ra_t, dec_t = sim.wcs.all_pix2world(t["x"][m.ref_index], t["y"][m.ref_index], 0)
    sep = (
        np.hypot(
            (cat["ra"][m.det_index] - ra_t) * np.cos(np.radians(dec_t)),
            cat["dec"][m.det_index] - dec_t,
        )
        * 3600
        / 14.86
    )
    assert np.median(sep) < 0.3
    # outputs
    for key in ("fits", "ecsv", "regions", "segmap", "probmap", "overlay"):
        assert res.outputs[key].is_file(), key
    back = read_catalog(res.outputs["fits"])
    assert len(back) == len(cat) and back["x"].unit == "pix"
    hdr = fits.getheader(res.outputs["fits"], "CATALOG")
    assert hdr["INSHA256"] == file_sha256(paths["frame"])
    assert hdr["MODEL"] == "matched_filter" and hdr["THRESH"] == 0.5
    bits = {hdr.comments[k].split(":")[0]: hdr[k] for k in hdr if k.startswith("FLAGBIT")}
    assert bits["TRAIL"] == int(SourceFlag.TRAIL) == 256 and bits["BLENDED"] == 2
    assert hdr["FLAGVERS"] == FLAG_VERSION and hdr["TUNIT8"] == "electron"  # flux
    assert back["flux"].unit == "electron" and "centroid" in hdr.comments["TTYPE2"]
    assert json.loads(hdr["CONFIG"])["tile"] == 256
    ecsv = read_catalog(res.outputs["ecsv"])
    assert ecsv.meta["input_sha256"] == hdr["INSHA256"] and ecsv["flux"].unit == "electron"
    seg = fits.getdata(res.outputs["segmap"])
    assert seg.max() == len(cat) and WCS(fits.getheader(res.outputs["probmap"])).has_celestial
    reg = res.outputs["regions"].read_text().splitlines()
    assert reg[0].startswith("# Region file format: DS9") and len(reg) == len(cat) + 4
    # the frame has a WCS: DS9 circles in fk5 degrees, radius in arcsec
    assert reg[3] == "fk5"
    a1, d1 = (float(v) for v in reg[4].split("(")[1].split(",")[:2])
    assert a1 == pytest.approx(cat["ra"][0], abs=1e-7) and d1 == pytest.approx(
        cat["dec"][0], abs=1e-7
    )
    r_px = max(3.0, float(cat.meta["aper_rad"]))
    r_arcsec = float(reg[4].split(",")[2].split('"')[0])
    assert r_arcsec == pytest.approx(r_px * 14.86, rel=2e-3)  # 14.86"/px
    assert set(res.timings) >= {"read", "enhance", "inference", "postprocess", "write"}


def test_frame_smaller_than_a_tile_is_padded(tmp_path):
    data, xs, ys = _star_frame((90, 130), seed=3, n=8)
    path = _write_frame(tmp_path / "small.fits", data, wcs=_wcs((90, 130)))
    res = detect_frame(
        path, MatchedFilterNet(), dict(MATCHED_META), tile=128, overlap=32, device="cpu"
    )
    assert res.prob.shape == (90, 130)
    m = match_points(
        np.column_stack([res.catalog["x"], res.catalog["y"]]), np.column_stack([xs, ys]), 0.5
    )
    assert m.recall >= 0.85


def test_frame_without_wcs_and_gain_gives_pixel_only_adu_catalog(tmp_path, caplog):
    data, _, _ = _star_frame((128, 128), seed=5, n=10)
    path = _write_frame(tmp_path / "nowcs.fits", data, gain=None)
    with caplog.at_level(logging.WARNING):
        res = detect_frame(path, MatchedFilterNet(), dict(MATCHED_META), tile=128, device="cpu")
    assert len(res.catalog) >= 8 and np.all(np.isnan(res.catalog["ra"]))
    assert res.catalog["flux"].unit == "adu"
    assert any("no celestial WCS" in w for w in res.warnings)
    assert "no celestial WCS" in caplog.text


def test_all_nan_frame_gives_empty_catalog_and_warning(tmp_path):
    path = _write_frame(tmp_path / "nan.fits", np.full((64, 64), np.nan), wcs=_wcs((64, 64)))
    res = detect_frame(
        path, MatchedFilterNet(), dict(MATCHED_META), tile=64, device="cpu", write=tmp_path / "out"
    )
    assert len(res.catalog) == 0 and "ra" in res.catalog.colnames
    assert any("no finite unmasked pixel" in w for w in res.warnings)
    assert len(read_catalog(tmp_path / "out" / "nan.cat.fits")) == 0


def test_calibration_masters_are_applied(tmp_path):
    from atd_dl.prep.calibration import CalibrationMasters

    data, xs, ys = _star_frame((128, 128), seed=6, n=12)
    bias = np.tile(np.linspace(0, 300, 128, dtype=np.float32), (128, 1))  # strong column ramp
    path = _write_frame(tmp_path / "raw.fits", data + bias, wcs=_wcs((128, 128)))
    det = Detector(MatchedFilterNet(), dict(MATCHED_META), DetectConfig(tile=128, device="cpu"))
    res = det.run(path, masters=CalibrationMasters(bias=bias))
    m = match_points(
        np.column_stack([res.catalog["x"], res.catalog["y"]]), np.column_stack([xs, ys]), 0.5
    )
    assert m.recall >= 0.9 and res.prepared.calibration == "bias"


def test_noise_aware_input_planes():
    img8 = np.full((20, 30), 51, np.uint8)
    rms = np.full((20, 30), 2.0, np.float32)
    rms[0, 0] = np.nan
    rms[1, 1] = 100.0
    bad = np.zeros((20, 30), bool)
    bad[5, 5] = True
    planes = model_input(img8, channels=3, background_rms=rms, bad=bad)
    assert planes.shape == (3, 20, 30) and planes.dtype == np.float32
    assert planes[0, 3, 3] == pytest.approx(0.2) and planes[1, 3, 3] == pytest.approx(1.0)
    assert planes[1, 0, 0] == 5.0 and planes[1, 1, 1] == 5.0 and planes[2, 5, 5] == 1.0


def test_load_detector_from_folder_and_checkpoint(tmp_path):
    folder = tiny_model_folder(tmp_path / "m", threshold=0.37)
    model, meta = load_detector(folder, device="cpu", engine="torch")
    assert meta["threshold"] == pytest.approx(0.37) and meta["name"] == "atd_unet"
    ckpt = {
        "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"model_spec": {"name": meta["name"], "kwargs": meta["kwargs"]}},
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    model2, meta2 = load_detector(tmp_path / "last.ckpt", device="cpu")
    assert meta2["threshold"] == 0.5 and "checkpoint" in meta2["threshold_source"]
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model2(x))
    with pytest.raises(InputError, match="model not found"):
        load_detector(tmp_path / "nope")


def test_expand_inputs_stems_and_resume(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data, _, _ = _star_frame((96, 96), seed=7, n=6)
    p1 = _write_frame(tmp_path / "a" / "f1.fits", data, wcs=_wcs((96, 96)))
    p2 = _write_frame(tmp_path / "b" / "f1.fits", data, wcs=_wcs((96, 96)))
    paths, problems = expand_inputs(
        [tmp_path / "a", str(tmp_path / "b" / "*.fits"), p1, tmp_path / "missing.fits"]
    )
    assert paths == [p1, p2] and len(problems) == 1 and "file not found" in problems[0][1]
    assert unique_stems(paths) == ["a_f1", "b_f1"] and frame_stem("x.fits.fz") == "x"
    det = Detector(MatchedFilterNet(), dict(MATCHED_META), DetectConfig(tile=96, device="cpu"))
    out = OutputConfig(tmp_path / "out", regions=True)
    s1 = detect_files([p1, p2], det, out, progress=False)
    assert s1.n_ok == 2 and s1.n_failed == 0
    s2 = detect_files([p1, p2], det, out, progress=False)
    assert s2.n_skipped == 2 and s2.n_ok == 0
    (tmp_path / "out" / "b_f1.reg").unlink()  # incomplete frame is redone
    s3 = detect_files([p1, p2], det, out, progress=False)
    assert s3.n_ok == 1 and s3.n_skipped == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_ok"] == 1 and "postprocess" in summary["timings_s"]
