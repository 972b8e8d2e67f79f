"""The mirrored-frame (negative) test: ``atd_dl.evaluate.negative`` and ``atd-dl evaluate --negative``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from atd_dl.cli import main
from atd_dl.evaluate.negative import (
    MODEL_ROW,
    SEX_MATCHED_ROW,
    SEX_REFERENCE_ROW,
    NegativeCounts,
    choose_matched,
    mirror_frame,
    negative_test,
    sextractor_false_at,
)
from atd_dl.io.fits_io import Frame

HAVE_SEX = shutil.which("source-extractor") is not None or shutil.which("sex") is not None
needs_sex = pytest.mark.skipif(not HAVE_SEX, reason="SExtractor binary not installed")

SKY = 1000.0  # ADU
NOISE = 10.0  # ADU rms


def synthetic_frame(
    n_stars: int, *, size: int = 256, peak: float = 400.0, seed: int = 3
) -> tuple[Frame, np.ndarray]:
    """Gaussian noise on a flat 1000 ADU sky plus ``n_stars`` Gaussian stars (sigma 1.3 px)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    # stars on a jittered grid: well separated, away from the border
    side = int(np.ceil(np.sqrt(n_stars)))
    step = (size - 40) / side
    cells = rng.permutation(side * side)[:n_stars]
    xy = np.column_stack(
        [20 + step * (cells % side + 0.5), 20 + step * (cells // side + 0.5)]
    ) + rng.uniform(-3, 3, (n_stars, 2))
    data = SKY + rng.normal(0.0, NOISE, (size, size))
    for x, y in xy:
        data += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.3**2))
    data = data.astype(np.float32)
    zeros = np.zeros(data.shape, bool)
    frame = Frame(data, zeros, zeros.copy(), fits.Header(), None, None, 0)
    return frame, xy


def test_mirror_has_holes_same_noise_and_background() -> None:
    frame, xy = synthetic_frame(6)
    # a saturated core: masked in the frame, NaN and masked (not saturated) in the mirror
    frame.saturated[100:102, 30:32] = True
    frame.mask |= frame.saturated
    frame.header["SATURATE"] = 60000.0
    frame.saturation_level = 60000.0
    mirror = mirror_frame(frame)

    assert mirror.data.dtype == np.float32 and mirror.shape == frame.shape
    for x, y in xy:
        i, j = int(round(y)), int(round(x))
        assert frame.data[i, j] > SKY + 200
        assert mirror.data[i, j] < SKY - 200  # a hole where the star was
    assert np.isnan(mirror.data[100:102, 30:32]).all()
    assert mirror.mask[100:102, 30:32].all() and not mirror.saturated.any()
    assert np.count_nonzero(mirror.mask) == 4
    assert "SATURATE" not in mirror.header and mirror.saturation_level is None

    # star-free pixels: same sky level and same noise rms
    yy, xx = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    far = np.ones(frame.shape, bool)
    for x, y in xy:
        far &= (xx - x) ** 2 + (yy - y) ** 2 > 10**2
    far &= ~frame.mask
    assert abs(np.median(mirror.data[far]) - SKY) < 0.1 * NOISE
    assert abs(np.median(mirror.data[far]) - np.median(frame.data[far])) < 0.1 * NOISE
    rms_f, rms_m = np.std(frame.data[far]), np.std(mirror.data[far])
    assert abs(rms_m / rms_f - 1) < 0.05
    assert abs(rms_m / NOISE - 1) < 0.05


def test_choose_matched_prefers_closest_then_fewer_false() -> None:
    scan = [
        NegativeCounts("sextractor", 1.0, "sigma", 50, 20),  # n_real 30
        NegativeCounts("sextractor", 1.5, "sigma", 32, 4),  # n_real 28
        NegativeCounts("sextractor", 2.0, "sigma", 28, 0),  # n_real 28
        NegativeCounts("sextractor", 3.0, "sigma", 10, 0),  # n_real 10
    ]
    assert choose_matched(scan, 30) == 0
    assert choose_matched(scan, 27) == 2  # tie on |gap| with 1.5σ: fewer mirror detections
    assert choose_matched(scan, 0) == 3
    c = NegativeCounts("x", 0.5, "probability", 0, 0)
    assert np.isnan(c.false_fraction) and c.n_real == 0
    with pytest.raises(ValueError):
        choose_matched([], 3)


def test_sextractor_false_at_reads_the_scan_as_a_curve() -> None:
    scan = [
        NegativeCounts("sextractor", 1.0, "sigma", 60, 40),  # n_real 20: fewer, more false
        NegativeCounts("sextractor", 1.5, "sigma", 40, 10),  # n_real 30
        NegativeCounts("sextractor", 2.0, "sigma", 22, 2),  # n_real 20
        NegativeCounts("sextractor", 3.0, "sigma", 10, 0),  # n_real 10
    ]
    assert sextractor_false_at(scan, 10) == 0.0
    assert sextractor_false_at(scan, 20) == 2.0
    assert sextractor_false_at(scan, 25) == pytest.approx(6.0)  # halfway from 2.0σ to 1.5σ
    assert sextractor_false_at(scan, 31) is None  # never as many real detections


def test_negative_test_model_finds_real_stars() -> None:
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector

    frame, _ = synthetic_frame(20, peak=300.0)
    model, meta = load_detector(None, device="cpu")
    det = Detector(model, meta, DetectConfig(device="cpu"))
    res = negative_test(frame, det, sextractor=False)
    row = res.row(MODEL_ROW)
    assert row is not None
    # the frame's own threshold: the per-frame rule's, at most the noise-safe one
    prepared = det.prepare(frame)
    assert row.threshold == det.frame_threshold(prepared, det.infer(prepared))
    assert row.threshold <= det.threshold and row.threshold_unit == "probability"
    assert row.n_frame >= 10
    assert row.n_frame - row.n_mirror > 0 and row.n_real == row.n_frame - row.n_mirror
    assert res.shape == (256, 256) and res.sextractor_note
    d = res.to_dict()
    assert d["rows"][0]["detector"] == MODEL_ROW and d["sextractor_scan"] == []


def test_cli_missing_file_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_frame.fits"
    rc = main(["evaluate", "--negative", str(missing), "--out", str(tmp_path / "n.json")])
    assert rc != 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no_such_frame.fits" in lines[0] and "not found" in lines[0]
    assert "Traceback" not in err


def test_cli_still_needs_reference_without_negative(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "det.ecsv")])
    assert exc.value.code == 2


@needs_sex
def test_cli_negative_real_frame(real_data_dir: Path, tmp_path: Path) -> None:
    frame = real_data_dir / "ntt_emmi_sep_image.fits"
    if not frame.is_file():
        pytest.skip(f"{frame} not available")
    out = tmp_path / "X.json"
    rc = main(["evaluate", "--negative", str(frame), "--out", str(out), "--device", "cpu"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["failures"] == [] and len(report["frames"]) == 1
    fr = report["frames"][0]
    rows = {r["detector"]: r for r in fr["rows"]}
    assert {MODEL_ROW, SEX_MATCHED_ROW, SEX_REFERENCE_ROW} <= set(rows)
    for r in rows.values():
        assert r["n_frame"] >= 0 and r["n_mirror"] >= 0
        assert r["n_real"] == r["n_frame"] - r["n_mirror"]
    assert rows[SEX_REFERENCE_ROW]["threshold"] == 3.0
    scan = fr["sextractor_scan"]
    assert len(scan) == len(report["sextractor_scan_sigma"])
    gaps = [abs(s["n_real"] - rows[MODEL_ROW]["n_real"]) for s in scan]
    assert abs(rows[SEX_MATCHED_ROW]["n_real"] - rows[MODEL_ROW]["n_real"]) == min(gaps)
    # the frame's own threshold: the model's, or lower under its per-frame rule
    assert rows[MODEL_ROW]["threshold"] <= report["model"]["threshold"]
