"""The generalist pipeline: significance input, randomised generator, patches, FWHM, photometry."""

from __future__ import annotations

import dataclasses
import glob
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from atd_dl.detect.centroid import aperture_fluxes, local_background
from atd_dl.prep.network_input import SIGMA_SOFTENING, frame_significance, significance_planes
from atd_dl.prep.psf_width import header_fwhm, measure_fwhm
from atd_dl.sim.randomized import (
    LABEL_SNR,
    draw_field_params,
    render_random_field,
    training_sample,
    write_random_frames,
    write_training_set,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def _gauss_stars(shape, xs, ys, fwhm, flux, bkg=100.0, noise=2.0, seed=0):
    """Pixel-integrated circular Gaussian stars (FWHM px) on a flat background with noise."""
    from scipy.special import erf

    rng = np.random.default_rng(seed)
    s = fwhm / 2.3548 * np.sqrt(2.0)
    img = np.full(shape, bkg, np.float64)
    ex = np.arange(shape[1] + 1) - 0.5
    ey = np.arange(shape[0] + 1) - 0.5
    for x, y in zip(xs, ys, strict=True):
        fx = np.diff(0.5 * erf((ex - x) / s))
        fy = np.diff(0.5 * erf((ey - y) / s))
        img += flux * fy[:, None] * fx[None, :]
    return (img + rng.normal(0, noise, shape)).astype(np.float32)


# ---------------------------------------------------------------- significance input


def test_significance_of_pure_noise_is_the_same_whatever_the_noise_level() -> None:
    rng = np.random.default_rng(1)
    stats = []
    for sigma in (0.5, 30.0, 3000.0):
        data = (1000.0 + rng.normal(0, sigma, (256, 256))).astype(np.float32)
        planes = frame_significance(data).planes
        assert planes.shape == (2, 256, 256) and planes.dtype == np.float32
        stats.append((float(np.median(planes[0])), float(np.std(planes[0]))))
        assert not planes[1].any()
    # asinh(z / 3) of unit-variance noise: std ~ 0.32 at every noise level
    for med, std in stats:
        assert abs(med) < 0.02 and 0.29 < std < 0.35


def test_significance_planes_flag_bad_and_keep_saturated_cores_bright() -> None:
    sub = np.zeros((20, 20), np.float32)
    sub[5, 5] = np.nan
    sub[10, 10] = 6000.0
    rms = np.full((20, 20), 10.0, np.float32)
    sat = np.zeros((20, 20), bool)
    sat[10, 10] = True
    planes = significance_planes(sub, rms, bad=sat | ~np.isfinite(sub), saturated=sat)
    assert planes[0, 5, 5] == 0.0 and planes[1, 5, 5] == 1.0
    assert planes[1, 10, 10] == 1.0
    assert planes[0, 10, 10] == pytest.approx(np.arcsinh(600.0 / SIGMA_SOFTENING), rel=1e-5)


def test_detect_and_training_build_identical_inputs(tmp_path: Path) -> None:
    """One function computes the network input for the generator and for detection."""
    from atd_dl.detect.pipeline import Detector
    from atd_dl.io.fits_io import read_frame
    from atd_dl.prep.network_input import SIGMA_INPUT_KIND

    write_random_frames(tmp_path, 1, seed=5, size=160, fwhm=2.0, density=3000.0, progress=False)
    path = next((tmp_path / "frames").glob("*.fits"))
    frame = read_frame(path)
    detector = Detector(
        None, {"name": "x", "input": SIGMA_INPUT_KIND, "kwargs": {"in_channels": 2}}
    )
    planes = detector.input_planes(detector.prepare(frame))
    ref = frame_significance(frame.data, frame.saturated, frame.saturated).planes
    np.testing.assert_array_equal(planes, ref)


# ---------------------------------------------------------------- generator


def test_random_fields_span_the_conditions() -> None:
    rng = np.random.default_rng(0)
    params = [draw_field_params(rng) for _ in range(300)]
    fwhm = np.array([p.fwhm_px for p in params])
    dens = np.array([p.density for p in params])
    assert fwhm.min() < 1.3 and fwhm.max() > 5.0
    assert (dens < 5).mean() > 0.03 and dens.max() > 10_000
    assert np.mean([p.n_galaxies > 0 for p in params]) > 0.2
    assert np.mean([p.nebula_sigma > 0 for p in params]) > 0.1
    counting = [p for p in params if p.read_noise_e < 0.5]  # photon-counting fields
    assert 0.03 < len(counting) / len(params) < 0.15
    assert all(p.gain_e_per_adu == 1.0 and p.sky_e <= 5.0 for p in counting)
    # cameras with read noise digitise it at >= 0.7 ADU
    others = [p for p in params if p.read_noise_e >= 0.5]
    assert min(p.read_noise_e / p.gain_e_per_adu for p in others) >= 0.69


def test_labels_cover_significant_stars_only() -> None:
    rng = np.random.default_rng(3)
    p = draw_field_params(rng, (200, 200), fwhm=2.5, density=2000.0, hard=False)
    field = render_random_field(p, rng)
    t = field.truth
    stars = np.asarray(t["kind"]) == "star"
    x = np.rint(np.asarray(t["x"])).astype(int)
    y = np.rint(np.asarray(t["y"])).astype(int)
    inside = stars & (x >= 0) & (x < 200) & (y >= 0) & (y < 200)
    lab = inside & (np.asarray(t["snr_opt"]) >= LABEL_SNR)
    assert lab.sum() > 20
    assert field.label[y[lab], x[lab]].all()
    # most faint stars far from any labelled one stay background
    faint = inside & (np.asarray(t["snr_opt"]) < 1.0)
    assert field.label[y[faint], x[faint]].mean() < 0.5


def test_training_sample_is_deterministic_and_consistent(tmp_path: Path) -> None:
    a = training_sample(7, 3, size=96)
    b = training_sample(7, 3, size=96)
    for key in ("planes", "label", "points"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["planes"].shape == (2, 96, 96) and a["label"].shape == (96, 96)
    n = write_training_set(tmp_path, 3, seed=7, size=96, progress=False)
    assert n == 3 and write_training_set(tmp_path, 3, seed=7, size=96, progress=False) == 0


def test_random_patch_datamodule_crops_and_moves_points_with_labels(tmp_path: Path) -> None:
    from atd_dl.lit.random_data import RandomPatchDataModule

    write_training_set(tmp_path / "train", 2, seed=1, size=96, progress=False)
    write_training_set(tmp_path / "val", 1, seed=2, size=96, progress=False)
    dm = RandomPatchDataModule(str(tmp_path), batch_size=2, num_workers=0, crop_size=64)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 2, 64, 64) and batch["mask"].shape == (2, 1, 64, 64)
    for mask, pts in zip(batch["mask"], batch["points"], strict=True):
        xy = np.rint(pts.numpy()).astype(int)
        assert mask[0, xy[:, 1], xy[:, 0]].all()
    assert dm.stems("val") == ["patch_2_000000"]


@pytest.mark.slow
def test_simulate_random_cli_writes_frames_truth_and_patches(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "atd_dl.cli"]
    r = subprocess.run(
        [
            *exe,
            "simulate",
            "--preset",
            "random",
            "--out",
            str(tmp_path / "f"),
            "--size",
            "128",
            "--density",
            "sparse",
            "--fwhm",
            "3",
            "--seed",
            "4",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    frame = next((tmp_path / "f" / "frames").glob("*.fits"))
    hdr = fits.getheader(frame)
    assert hdr["SIMFWHM"] == 3.0 and "GAIN" in hdr and "SATURATE" in hdr
    assert (tmp_path / "f" / "truth" / frame.name.replace(".fits", ".ecsv")).is_file()
    r = subprocess.run(
        [
            *exe,
            "simulate",
            "--preset",
            "random",
            "--patches",
            "2",
            "--size",
            "64",
            "--out",
            str(tmp_path / "p"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and len(list((tmp_path / "p").glob("*.npz"))) == 2
    r = subprocess.run(
        [*exe, "simulate", "--preset", "random", "--density", "lots", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "--density" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [*exe, "simulate", "--preset", "paper", "--fwhm", "2", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "need --preset random" in r.stderr


# ---------------------------------------------------------------- FWHM


@pytest.mark.parametrize("fwhm", [1.0, 3.0, 5.5])
def test_measured_fwhm_matches_the_stars(fwhm: float) -> None:
    rng = np.random.default_rng(2)
    xs, ys = rng.uniform(20, 280, 40), rng.uniform(20, 280, 40)
    data = _gauss_stars((300, 300), xs, ys, fwhm, 2e4)
    m = measure_fwhm(data - 100.0, np.full(data.shape, 2.0, np.float32))
    assert m.source == "measured" and m.n_stars >= 8
    assert m.fwhm == pytest.approx(fwhm, rel=0.1)


def test_fwhm_falls_back_to_header_then_default_with_a_note() -> None:
    noise = np.random.default_rng(0).normal(0, 1, (100, 100)).astype(np.float32)
    rms = np.ones_like(noise)
    hdr = fits.Header({"SEEING": 2.0, "PIXSCALE": 0.5})
    m = measure_fwhm(noise, rms, header=hdr, source="f.fits")
    assert m.fwhm == pytest.approx(4.0) and m.source.startswith("header SEEING")
    assert m.notes and m.notes[0].startswith("f.fits: FWHM from header SEEING")
    m = measure_fwhm(noise, rms, default=2.5, source="f.fits")
    assert m.fwhm == 2.5 and m.source == "default" and "using 2.50 px" in m.notes[0]
    assert header_fwhm(fits.Header({"FWHM": 3.3})) == (
        3.3,
        "header FWHM (assumed px: no pixel scale)",
    )


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real frames absent")
@pytest.mark.parametrize(
    "name", ["aK_asky_990502s1350080.fits.gz", "mro_test_frame.fits", "reprojected_sdss_r.fits"]
)
def test_measured_fwhm_agrees_with_photutils_on_real_frames(name: str) -> None:
    from photutils.psf import fit_fwhm

    from atd_dl.io.fits_io import read_frame
    from atd_dl.prep.enhance import estimate_background
    from atd_dl.prep.psf_width import bright_peaks

    path = REAL / name
    if not path.is_file():
        pytest.skip(f"{name} absent")
    fr = read_frame(path)
    bkg, rms = estimate_background(fr.data, fr.mask)
    sub = fr.data - bkg
    m = measure_fwhm(sub, rms, fr.mask, header=fr.header)
    x, y, _ = bright_peaks(sub, rms, fr.mask)
    img = np.where(np.isfinite(sub), sub, 0.0)
    ref = np.median(fit_fwhm(img, xypos=np.column_stack([x, y])[25:75], fit_shape=11))
    assert m.source == "measured" and m.fwhm == pytest.approx(float(ref), rel=0.15)


# ---------------------------------------------------------------- photometry


def test_local_background_corrects_an_offset_and_keeps_snr_positive() -> None:
    data = _gauss_stars((80, 80), [40.0], [40.0], 3.0, 5000.0, bkg=0.0, noise=1.0)
    offset = data - 5.0  # the frame background was over-estimated by 5 ADU
    seg = np.hypot(*np.meshgrid(np.arange(80) - 40.0, np.arange(80) - 40.0)) < 6
    level, count = local_background(offset, np.array([40.0]), np.array([40.0]), 20, exclude=seg)
    assert level[0] == pytest.approx(-5.0, abs=0.3) and count[0] > 100
    flux, _ = aperture_fluxes(offset, np.array([40.0]), np.array([40.0]), 4.5, 1.0, poisson=False)
    area = np.pi * 4.5**2
    assert flux[0] < 5000 * 0.96  # biased low without the correction
    assert flux[0] - area * level[0] == pytest.approx(5000.0 * 0.995, rel=0.03)


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real frames absent")
def test_real_frames_have_a_measured_fwhm_in_the_detection_path() -> None:
    from atd_dl.detect.pipeline import prepare_frame

    paths = [p for p in glob.glob(str(REAL / "*sdss_g.fits"))]
    if not paths:
        pytest.skip("SDSS frame absent")
    prepared = prepare_frame(paths[0])
    assert prepared.fwhm is not None and prepared.fwhm.source == "measured"
    assert 0.7 < prepared.fwhm.fwhm < 1.5  # undersampled SDSS: FWHM ~ 1 px


def test_photon_counting_fields_label_only_clear_stars() -> None:
    from atd_dl.sim.randomized import LABEL_SNR_COUNTING, label_snr

    assert label_snr(0.1) == LABEL_SNR_COUNTING > label_snr(3.0) == LABEL_SNR
    rng = np.random.default_rng(8)
    p = draw_field_params(rng, (200, 200), fwhm=2.0, density=3000.0, hard=False)
    counting = dataclasses.replace(p, read_noise_e=0.05, gain_e_per_adu=1.0, sky_e=0.3)
    field = render_random_field(counting, rng)
    t = field.truth
    stars = (np.asarray(t["kind"]) == "star") & np.asarray(t["labelled"], bool)
    assert stars.any() and np.asarray(t["snr_opt"])[stars].min() >= LABEL_SNR_COUNTING
