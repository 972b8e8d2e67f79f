"""Classical baselines: common interface, SExtractor / sep / DAOFind / psphot behaviour, tuning, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _baselines_helpers import add_gaussian_stars, make_star_field, recovered_fraction
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from atd_dl.baselines import (
    CATALOG_COLUMNS,
    BaselineUnavailable,
    DAOFindFinder,
    Finder,
    SepFinder,
    SExtractorFinder,
    available_baselines,
    get_baseline,
)
from atd_dl.baselines.sextractor import find_sextractor
from atd_dl.baselines.tuning import score_catalogs, tune_baseline
from atd_dl.detect.flags import SourceFlag
from atd_dl.errors import InputError

HAVE_SEX = shutil.which("source-extractor") is not None or shutil.which("sex") is not None
needs_sex = pytest.mark.skipif(not HAVE_SEX, reason="SExtractor binary not installed")

FIELD_FWHM = 2.5
# twomass needs SKYSIG and the image FWHM; the test field has sky 200 e-, read noise 5 e-
TWOMASS_TEST = {"skysig": float(np.sqrt(225.0)), "fwhm_px": FIELD_FWHM, "edge_x": 5, "edge_y": 5}
FINDER_PARAMS = {
    "sextractor": {},
    "sep": {},
    "daofind": {"fwhm": FIELD_FWHM},
    "psphot": {"smooth_fwhm": FIELD_FWHM},
    "twomass": TWOMASS_TEST,
}


@pytest.fixture(scope="module")
def field() -> tuple[np.ndarray, Table]:
    return make_star_field((160, 160), 40, fwhm=FIELD_FWHM, seed=1)


def _finder(name: str):
    if name == "sextractor" and not HAVE_SEX:
        pytest.skip("SExtractor binary not installed")
    return get_baseline(name, **FINDER_PARAMS[name])


def _tan_wcs() -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [80.5, 80.5]
    w.wcs.cdelt = [-1.0 / 3600, 1.0 / 3600]
    return w


# ------------------------------------------------------------------------ interface


def test_registry_lists_all_and_rejects_unknown() -> None:
    assert available_baselines() == ["daofind", "psphot", "sep", "sextractor", "twomass"]
    with pytest.raises(KeyError, match="unknown baseline 'nope'; choose one of: daofind, psphot"):
        get_baseline("nope")
    with pytest.raises(TypeError):
        get_baseline("sep", not_a_parameter=1)


@pytest.mark.parametrize("name", ["sextractor", "sep", "daofind", "twomass", "psphot"])
def test_every_baseline_follows_the_protocol(name: str) -> None:
    finder = get_baseline(name)
    assert isinstance(finder, Finder)
    assert finder.name == name
    dense, paper = finder.sweep_values("dense"), finder.sweep_values("paper")
    assert dense.ndim == 1 and len(dense) >= 8 and np.all(np.diff(dense) > 0)
    assert paper.ndim == 1 and len(paper) >= 8
    with pytest.raises(ValueError, match="which must be 'dense' or 'paper'"):
        finder.sweep_values("sparse")


def test_paper_sweeps() -> None:
    sx = SExtractorFinder()
    np.testing.assert_allclose(sx.sweep_values("dense"), np.round(np.arange(0.5, 2.05, 0.1), 6))
    np.testing.assert_allclose(sx.sweep_values("paper"), np.round(np.arange(1, 11) / 10, 6))
    dao = DAOFindFinder()
    assert len(dao.sweep_values("dense")) == 41
    assert dao.sweep_values("dense")[0] == 4.0 and dao.sweep_values("dense")[-1] == 8.0
    np.testing.assert_allclose(
        dao.sweep_values("paper"), [3.0, 3.3, 3.5, 3.7, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5]
    )


@pytest.mark.parametrize("name", ["sextractor", "sep", "daofind", "twomass", "psphot"])
def test_recovers_bright_stars_within_one_pixel(name: str, field) -> None:
    image, truth = field
    cat = _finder(name)(image)
    assert list(cat.colnames[: len(CATALOG_COLUMNS) - 2]) == [
        c for c in CATALOG_COLUMNS if c not in ("ra", "dec")
    ]
    assert (truth["snr_true"] >= 20).sum() >= 15
    assert recovered_fraction(cat, truth, snr_min=20.0, radius=1.0) >= 0.95
    assert np.all(np.diff(cat["id"]) == 1) and cat["id"][0] == 1
    finite = np.isfinite(cat["snr"])
    assert np.all(np.diff(np.asarray(cat["snr"])[finite]) <= 1e-9)  # sorted by decreasing SNR
    assert cat.meta["flux_unit"] == "adu"


@pytest.mark.parametrize("name", ["sextractor", "sep", "daofind", "twomass", "psphot"])
def test_wcs_adds_ra_dec_and_nothing_found_is_empty(name: str, field) -> None:
    image, _ = field
    finder = _finder(name)
    wcs = _tan_wcs()
    cat = finder(image, wcs=wcs, threshold=finder.sweep_values("dense")[0])
    assert list(cat.colnames[: len(CATALOG_COLUMNS)]) == list(CATALOG_COLUMNS)
    ra, dec = wcs.all_pix2world(cat["x"], cat["y"], 0)
    np.testing.assert_allclose(cat["ra"], ra)
    np.testing.assert_allclose(cat["dec"], dec)
    flat = np.random.default_rng(3).normal(100.0, 1.0, (64, 64)).astype(np.float32)
    empty = finder(flat, threshold=1e6)
    assert len(empty) == 0 and "snr" in empty.colnames


@pytest.mark.parametrize("name", ["sep", "daofind", "psphot"])
def test_bad_input_raises_input_error(name: str) -> None:
    finder = get_baseline(name)
    with pytest.raises(InputError, match="expected a 2-D image, got shape"):
        finder(np.zeros((2, 8, 8)))
    with pytest.raises(InputError, match=r"mask shape \(4, 4\) differs from image \(8, 8\)"):
        finder(np.zeros((8, 8)), mask=np.zeros((4, 4), bool))
    with pytest.raises(InputError, match="no usable pixels"):
        finder(np.full((8, 8), np.nan))


@pytest.fixture(scope="module")
def sim_frame():
    """A small calibrated frame from the project's simulator (raw − bias − dark) and its stars."""
    sim_mod = pytest.importorskip("atd_dl.sim.simulate")
    from atd_dl.sim.config import preset_config

    sim = sim_mod.simulate_field(preset_config("paper", size=256, isolated=True), 4)
    image = (sim.image.astype(np.float32) - sim.bias - sim.dark).astype(np.float32)
    stars = sim.truth[(sim.truth["kind"] == "star") & ~np.asarray(sim.truth["saturated"], bool)]
    from scipy.spatial import cKDTree

    xy = np.column_stack([stars["x"], stars["y"]])
    d, _ = cKDTree(xy).query(xy, k=2)
    inside = (xy[:, 0] > 3) & (xy[:, 1] > 3) & (xy[:, 0] < 252) & (xy[:, 1] < 252)
    return image, sim.wcs, stars[(d[:, 1] > 5) & inside]


@pytest.mark.parametrize("name", ["sextractor", "sep", "daofind", "twomass", "psphot"])
def test_baselines_on_a_simulated_frame(name: str, sim_frame) -> None:
    """Undersampled Moffat PSF (FWHM ~1.5 px) with the simulator's noise and sky."""
    image, wcs, stars = sim_frame
    params = {
        "daofind": {"fwhm": 1.6},
        "psphot": {"smooth_fwhm": 1.6},
        "twomass": {"edge_x": 3, "edge_y": 3, "saturation_level": None},
    }.get(name, {})
    if name == "sextractor" and not HAVE_SEX:
        pytest.skip("SExtractor binary not installed")
    cat = get_baseline(name, **params)(image, wcs=wcs)
    assert (stars["snr_true"] >= 20).sum() >= 10
    assert recovered_fraction(cat, stars, snr_min=20.0, radius=1.0) >= 0.9


# ------------------------------------------------------------------------ SExtractor


def _single_star(x0: float, y0: float, flux: float = 50000.0, shape=(64, 80)) -> np.ndarray:
    rng = np.random.default_rng(7)
    img = add_gaussian_stars(
        np.full(shape, 100.0), np.array([x0]), np.array([y0]), np.array([flux]), 1.2
    )
    return (img + rng.normal(0, 1.0, shape)).astype(np.float32)


@needs_sex
def test_sextractor_positions_are_zero_based() -> None:
    x0, y0 = 40.3, 25.7
    res = SExtractorFinder(threshold=3.0).extract(_single_star(x0, y0))
    cat, raw = res.catalog, res.raw
    assert len(cat) == 1
    assert abs(cat["x"][0] - x0) < 0.1 and abs(cat["y"][0] - y0) < 0.1
    # the raw SExtractor value is FITS 1-based
    assert abs(raw["XWIN_IMAGE"][0] - 1.0 - cat["x"][0]) < 1e-9
    assert abs(cat["x_iso"][0] - x0) < 0.1 and abs(cat["y_iso"][0] - y0) < 0.1
    iso = SExtractorFinder(threshold=3.0, centroid="iso")(_single_star(x0, y0))
    assert abs(iso["x"][0] - x0) < 0.1


@needs_sex
def test_sextractor_segmentation_centroids(field) -> None:
    image, truth = field
    res = SExtractorFinder(centroid="segmentation", seg_weights="subtracted").extract(image)
    assert res.segmentation is not None and res.segmentation.shape == image.shape
    assert set(np.unique(res.segmentation)) - {0} == set(res.raw["NUMBER"])
    cat = res.catalog
    assert recovered_fraction(cat, truth, snr_min=20.0, radius=1.0) >= 0.95
    assert np.all((cat["circularity"] > 0) & (cat["circularity"] <= 1))
    # segment areas are the pixel counts of the segmentation map
    counts = np.bincount(res.segmentation.ravel())
    np.testing.assert_array_equal(cat["area"], counts[cat["se_number"]])
    # bright, isolated stars: segment centroid agrees with the windowed one
    win = SExtractorFinder()(image)
    bright = cat[cat["snr"] > 50]
    from scipy.spatial import cKDTree

    d, _ = cKDTree(np.column_stack([win["x"], win["y"]])).query(
        np.column_stack([bright["x"], bright["y"]])
    )
    assert np.median(d) < 0.05
    assert np.all(np.isfinite(cat["x_err"])) and np.all(cat["x_err"] > 0)
    # raw-image weights (sky included) pull centroids towards each segment's geometric centre
    raw_w = SExtractorFinder(centroid="segmentation", seg_weights="image")(image)
    assert len(raw_w) == len(cat)


@needs_sex
def test_sextractor_gain_mask_and_saturation_flags() -> None:
    img = _single_star(40.0, 30.0)
    base = SExtractorFinder(threshold=3.0)(img)
    with_gain = SExtractorFinder(threshold=3.0, gain=2.0)(img)
    assert with_gain.meta["flux_unit"] == "electron"
    assert with_gain["flux"][0] == pytest.approx(2.0 * base["flux"][0], rel=1e-4)
    mask = np.zeros(img.shape, bool)
    mask[30, 41] = True
    masked = SExtractorFinder(threshold=3.0)(img, mask=mask)
    assert masked["flags"][0] & int(SourceFlag.MASKED)
    sat = SExtractorFinder(threshold=3.0, saturation=float(img.max()) - 1.0)(img)
    assert sat["flags"][0] & int(SourceFlag.SATURATED)


def test_missing_sextractor_names_the_package() -> None:
    with pytest.raises(BaselineUnavailable, match="apt-get install source-extractor"):
        find_sextractor("/nonexistent/path/source-extractor")
    finder = SExtractorFinder(binary="/nonexistent/path/source-extractor")
    with pytest.raises(BaselineUnavailable, match="astromatic-source-extractor"):
        finder(np.zeros((16, 16), np.float32))


@needs_sex
def test_sextractor_and_sep_agree(field) -> None:
    image, _ = field
    a = SExtractorFinder()(image)
    b = SepFinder()(image)
    assert abs(len(a) - len(b)) <= 2
    from scipy.spatial import cKDTree

    d, i = cKDTree(np.column_stack([b["x"], b["y"]])).query(np.column_stack([a["x"], a["y"]]))
    bright = a["snr"] > 20
    assert np.median(d[bright]) < 0.05
    np.testing.assert_allclose(a["flux"][bright], b["flux"][i[bright]], rtol=0.02)


# ------------------------------------------------------------------------ DAOFind


def test_daofind_min_separation_is_explicit() -> None:
    """min_separation=0 (photutils <= 2 behaviour) keeps a pair 4 px apart."""
    rng = np.random.default_rng(2)
    img = add_gaussian_stars(
        np.full((48, 48), 50.0),
        np.array([20.0, 24.0]),
        np.array([24.0, 24.0]),
        np.array([4000.0, 3000.0]),
        0.85,
    )
    img = (img + rng.normal(0, 1.0, img.shape)).astype(np.float32)
    both = DAOFindFinder(fwhm=2.0, threshold=5.0)(img)
    assert len(both) == 2
    assert both.meta["min_separation"] == 0.0
    import photutils

    if int(photutils.__version__.split(".")[0]) >= 3:
        merged = DAOFindFinder(fwhm=2.0, threshold=5.0, min_separation=None)(img)
        assert len(merged) == 1


# ------------------------------------------------------------------------ tuning


def test_tuning_picks_a_sensible_operating_point() -> None:
    frames, refs = [], []
    for seed in (11, 12):
        img, truth = make_star_field(
            (96, 96), 18, fwhm=FIELD_FWHM, seed=seed, flux_range=(300, 20000)
        )
        frames.append(img)
        refs.append(truth)
    res = tune_baseline(
        "daofind", frames, refs, grid={"fwhm": [2.5, 6.0]}, thresholds=[3.0, 5.0, 500.0], radius=1.5
    )
    assert len(res.table) == 6
    assert res.params["threshold"] != 500.0
    assert res.params["fwhm"] == res.table["fwhm"][0] and set(res.table["fwhm"]) == {2.5, 6.0}
    assert res.best["f1"] == pytest.approx(res.table["f1"][0])
    assert res.best["f1"] > 0.8
    assert np.all(np.diff(res.table["f1"]) <= 0)
    tuned = res.finder()
    assert isinstance(tuned, DAOFindFinder) and tuned.threshold == res.params["threshold"]
    # scoring with the paper rule: recall counts only references above min_snr
    cats = [tuned(f) for f in frames]
    loose = score_catalogs(cats, refs, [f.shape for f in frames], radius=1.5, min_snr=None)
    strict = score_catalogs(cats, refs, [f.shape for f in frames], radius=1.5, min_snr=10.0)
    assert strict["tp"] == loose["tp"] and strict["fn"] <= loose["fn"]
    assert strict["recall"] >= loose["recall"]


def test_tuning_mixed_grid_values_and_validation() -> None:
    img, truth = make_star_field((80, 80), 10, fwhm=FIELD_FWHM, seed=5)
    res = tune_baseline(
        SepFinder(), [img], [truth], grid={"filter_fwhm": ["default", None]}, thresholds="paper"
    )
    assert len(res.table) == 20
    assert set(res.table["filter_fwhm"]) == {"default", "None"}
    with pytest.raises(ValueError, match="1 frames but 2 reference tables"):
        tune_baseline("sep", [img], [truth, truth])


# ------------------------------------------------------------------------ CLI


def _write_frame(path: Path, image: np.ndarray) -> Path:
    hdr = _tan_wcs().to_header()
    fits.PrimaryHDU(image.astype(np.float32), header=hdr).writeto(path)
    return path


def test_cli_baseline_writes_catalogs_and_reports_bad_frames(tmp_path: Path, field, capsys) -> None:
    from atd_dl.cli import main

    image, truth = field
    good = _write_frame(tmp_path / "good.fits", image)
    out = tmp_path / "out"
    rc = main(
        [
            "baseline",
            "sep",
            str(good),
            str(tmp_path / "missing.fits"),
            "--out",
            str(out),
            "--threshold",
            "3",
        ]
    )
    assert rc == 1
    assert "missing.fits: file not found" in capsys.readouterr().err
    cat = Table.read(out / "good.sep_t3.ecsv")
    assert recovered_fraction(cat, truth) >= 0.95
    assert "ra" in cat.colnames and cat.meta["threshold"] == 3.0
    rc = main(
        [
            "baseline",
            "daofind",
            str(good),
            "--out",
            str(out),
            "--sweep",
            "paper",
            "--param",
            "fwhm=2.5",
            "--overwrite",  # the folder holds the sep run: writing into it is explicit
        ]
    )
    assert rc == 0
    assert len(list(out.glob("good.daofind_t*.ecsv"))) == 10
    assert main(["baseline", "nosuch", str(good)]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_invalid_sextractor_env_is_reported_not_replaced(monkeypatch, tmp_path) -> None:
    from atd_dl.baselines.base import BaselineUnavailable
    from atd_dl.baselines.sextractor import find_sextractor

    monkeypatch.setenv("ATD_DL_SEXTRACTOR", str(tmp_path / "no_such_sex"))
    with pytest.raises(BaselineUnavailable, match=r"\$ATD_DL_SEXTRACTOR=.*no_such_sex"):
        find_sextractor()
