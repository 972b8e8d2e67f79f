"""Detection for any camera: mosaics, shipped models by name, domain warnings, operating point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _detect_helpers import MATCHED_META, MatchedFilterNet, moffat_image
from astropy.io import fits
from astropy.table import Table

from atd_dl.detect.domain import domain_warnings, training_domain
from atd_dl.detect.pipeline import Detector, OutputConfig
from atd_dl.errors import InputError
from atd_dl.evaluate.operating_point import SweepRow, array_frame, choose_threshold, noise_frame
from atd_dl.models.model_folder import resolve_model_dir, shipped_models

REPO = Path(__file__).resolve().parents[1]


def _mef(path: Path) -> None:
    """Two amplifier extensions (20 px overscan each), different stars and gains."""
    rng = np.random.default_rng(0)
    hdus: list = [fits.PrimaryHDU(header=fits.Header({"EXPTIME": 10.0}))]
    for k, xs in enumerate(([20.0, 40.0, 60.0], [25.0, 50.0])):
        img = moffat_image((80, 80), xs, [30.0] * len(xs), [3e4] * len(xs), fwhm=2.0)
        data = np.full((80, 100), 300.0)
        data[:, :80] += img / 2.0 + rng.normal(0, 3.0, (80, 80))
        hdr = fits.Header({"EXTNAME": "SCI", "DATASEC": "[1:80,1:80]", "GAIN": 2.0 + k})
        hdus.append(fits.ImageHDU(np.round(data).astype(np.float32), hdr))
    fits.HDUList(hdus).writeto(path)


def test_mosaic_gives_one_catalog_with_an_extension_column(tmp_path: Path) -> None:
    _mef(tmp_path / "m.fits")
    det = Detector(MatchedFilterNet(level=0.6), dict(MATCHED_META))
    res = det.run(tmp_path / "m.fits", write=OutputConfig(tmp_path / "out", overlay=True))
    cat = Table.read(tmp_path / "out" / "m.cat.ecsv")
    assert sorted(set(cat["ext"])) == [1, 2]
    assert (cat["ext"] == 1).sum() == 3 and (cat["ext"] == 2).sum() == 2
    assert np.all(np.asarray(cat["x"]) < 80)  # overscan trimmed, never detected
    assert list(cat["id"]) == list(range(1, len(cat) + 1))
    assert any("overlay not written" in w for w in res.warnings)
    single = Detector(MatchedFilterNet(level=0.6), dict(MATCHED_META))
    single.config.hdu = 2
    assert len(single.run(tmp_path / "m.fits").catalog) == 2


def test_shipped_models_by_name() -> None:
    models = shipped_models()
    assert list(models)[0] == "default" and "paper_camera" in models
    assert "binary_default" in shipped_models("binary") and "binary_default" not in models
    assert resolve_model_dir("paper_camera") == models["paper_camera"]
    assert resolve_model_dir(None) == models["default"]
    with pytest.raises(InputError, match="shipped model .*default.*paper_camera"):
        resolve_model_dir("no_such_model")


def test_models_cli_lists_shipped_models() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "atd_dl.cli", "models", "--shipped", "--json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    names = [x["name"] for x in rows]
    assert names[0] == "default" and "paper_camera" in names
    assert {x["input"] for x in rows if x["name"] == "paper_camera"} == {"zscale8"}


def test_domain_warnings_from_fingerprint_and_config() -> None:
    from atd_dl.models.model_folder import load_model_folder

    _, meta = load_model_folder(shipped_models()["paper_camera"])
    dom = training_domain(meta)
    assert dom is not None and dom["fwhm_px"][0] < 1.6 < dom["fwhm_px"][1]
    assert domain_warnings(meta, 1.6, "measured", 5000, (1000, 1000)) == []
    w = domain_warnings(meta, 5.0, "measured", 5000, (1000, 1000), "f.fits")
    assert len(w) == 1 and w[0].startswith("f.fits: FWHM 5.00 px is outside")
    assert domain_warnings(meta, 5.0, "default", 5000, (1000, 1000)) == []  # not measured
    custom = {"name": "m", "config": {"domain": {"fwhm_px": [1.0, 6.0], "max_per_mpx": 100}}}
    w = domain_warnings(custom, 2.0, "measured", 500, (1000, 1000))
    assert len(w) == 1 and "exceeds" in w[0]


def test_noise_frames_and_threshold_choice() -> None:
    rng = np.random.default_rng(0)
    g = noise_frame((100, 120), "gaussian", 5.0, rng, bias=50.0)
    assert g.shape == (100, 120) and abs(float(g.mean()) - 50) < 0.5 and 4.5 < g.std() < 5.5
    p = noise_frame((100, 100), "poisson", 3.0, rng, bias=0.0)
    assert np.all(p == np.round(p)) and abs(float(p.mean()) - 3.0) < 0.2
    with pytest.raises(ValueError):
        noise_frame((5, 5), "uniform", 1.0, rng)
    frame = array_frame(np.where(g > 60, 70000.0, g), gain=2.0, saturation=65000.0)
    assert frame.gain == 2.0 and frame.saturated.sum() == (g > 60).sum()
    rows = [
        SweepRow(0.3, 0, 0, 0, 0.8, 0.9, 0.85, 0.86, 5.0),
        SweepRow(0.5, 0, 0, 0, 0.9, 0.8, 0.85, 0.84, 0.2),
        SweepRow(0.7, 0, 0, 0, 0.95, 0.6, 0.74, 0.70, 0.0),
    ]
    assert choose_threshold(rows, 0.3).threshold == 0.5  # best F1 under the limit
    assert choose_threshold(rows, 0.01).threshold == 0.7
    assert choose_threshold(rows[:1], 0.01).threshold == 0.3  # none under: least false


def test_trimmed_frame_reports_positions_in_the_hdu_grid(tmp_path: Path) -> None:
    img = moffat_image((60, 60), [30.0], [25.0], [5e4], fwhm=2.0)
    data = np.full((60, 70), 200.0)
    data[:, 10:] += img + np.random.default_rng(1).normal(0, 3.0, (60, 60))
    fits.PrimaryHDU(data.astype(np.float32), fits.Header({"DATASEC": "[11:70,1:60]"})).writeto(
        tmp_path / "t.fits"
    )
    det = Detector(MatchedFilterNet(level=0.6), dict(MATCHED_META))
    cat = det.run(tmp_path / "t.fits").catalog
    assert len(cat) == 1
    assert cat["x"][0] == pytest.approx(40.0, abs=0.2) and cat["y"][0] == pytest.approx(
        25.0, abs=0.2
    )


def test_saturated_star_fragments_merge_into_one_detection() -> None:
    from atd_dl.detect.pipeline import merge_saturated_fragments
    from atd_dl.detect.postprocess import Extraction

    seg = np.zeros((40, 40), np.int32)
    seg[10:16, 10:16] = 1  # the star's main segment
    seg[16:18, 12:14] = 2  # a fragment on the saturated core's rim
    seg[30:33, 30:33] = 3  # an unrelated star
    sat = np.zeros((40, 40), bool)
    sat[13:17, 11:15] = True
    cat = Table({"id": [1, 2, 3], "area": [36, 4, 9], "x": [12.5, 12.5, 31.0]})
    ex = Extraction(cat, seg, 2.0, 3.0, 3, 1.0)
    out = merge_saturated_fragments(ex, sat)
    assert list(out.catalog["id"]) == [1, 2] and list(out.catalog["x"]) == [12.5, 31.0]
    assert set(np.unique(out.segmap)) == {0, 1, 2} and (out.segmap[16:18, 12:14] == 1).all()
    untouched = merge_saturated_fragments(ex, np.zeros((40, 40), bool))
    assert len(untouched.catalog) == 3


def test_confident_single_pixel_components_survive_when_the_model_asks() -> None:
    from atd_dl.detect.postprocess import PostprocessConfig, segment_sources

    prob = np.zeros((30, 30), np.float32)
    prob[10, 10] = 0.99  # an undersampled bright star: one pixel above threshold
    prob[20, 20] = 0.75  # a marginal single pixel
    img = np.zeros((30, 30), np.float32)
    img[10, 10], img[20, 20] = 500.0, 20.0
    kw = {"image_e": img, "background_rms_e": np.ones((30, 30), np.float32)}
    assert len(segment_sources(prob, 0.7, **kw).catalog) == 0  # paper default: >= 2 px
    cfg = PostprocessConfig(small_peak_prob=0.95)
    cat = segment_sources(prob, 0.7, config=cfg, **kw).catalog
    assert len(cat) == 1 and cat["x"][0] == pytest.approx(10.0)
    from atd_dl.models.model_folder import load_model_folder

    _, meta = load_model_folder(shipped_models()["default"])
    assert Detector(None, meta).config.postprocess.small_peak_prob == 0.95
