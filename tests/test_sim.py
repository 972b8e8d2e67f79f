"""Field simulator: reproducibility, file format, pixel/WCS conventions, truth consistency."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from scipy import ndimage

from atd_dl.cli import main
from atd_dl.errors import InputError
from atd_dl.sim import (
    MoffatPSF,
    add_stars,
    inject_stars,
    preset_config,
    render_psf_stamp,
    simulate_field,
    simulate_run,
    snr3,
)
from atd_dl.sim.instrument import half_diagonal_deg, isolated_pointings, make_wcs


@pytest.fixture(scope="module")
def field256():
    return simulate_field(preset_config("paper", size=256), seed=11, index=1)


@pytest.fixture(scope="module")
def isolated256():
    # a bright-star field (zeropoint raised, catalog cut at mag 11) so many stars have high SNR
    cfg = preset_config(
        "dense", size=400, isolated=True, zeropoint_mag=21.5, mag_faint=11.0, min_separation_px=10.0
    )
    return simulate_field(cfg, seed=5, index=0)


def _local_centroid(img: np.ndarray, x: float, y: float, r: int = 3) -> tuple[float, float]:
    ix, iy = int(round(x)), int(round(y))
    box = img[iy - r : iy + r + 1, ix - r : ix + r + 1].astype(np.float64)
    yy, xx = np.mgrid[iy - r : iy + r + 1, ix - r : ix + r + 1]
    return float((box * xx).sum() / box.sum()), float((box * yy).sum() / box.sum())


# ------------------------------------------------------------------- reproducibility


def test_same_seed_same_pixels_different_seed_differs(field256) -> None:
    again = simulate_field(preset_config("paper", size=256), seed=11, index=1)
    assert np.array_equal(again.image, field256.image)
    assert np.array_equal(again.truth["x"], field256.truth["x"])
    other_seed = simulate_field(preset_config("paper", size=256), seed=12, index=1)
    other_index = simulate_field(preset_config("paper", size=256), seed=11, index=2)
    assert not np.array_equal(other_seed.image, field256.image)
    assert not np.array_equal(other_index.image, field256.image)
    # the camera (bias structure, hot pixels) is shared by all frames of a run
    assert np.array_equal(other_index.dark, field256.dark)
    assert not np.array_equal(other_seed.dark, field256.dark)


def test_raw_file_is_int16_bzero_and_reads_back(tmp_path, field256) -> None:
    cfg = preset_config("paper", size=256)
    report = simulate_run(cfg, 11, tmp_path, 2, start_index=1, progress=False)
    assert report.written == ["sim_s11_0001", "sim_s11_0002"]
    path = tmp_path / "frames" / "sim_s11_0001.fits"
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        assert hdul[0].header["BZERO"] == 32768
        assert hdul[0].data.dtype.kind == "i"
    with fits.open(path) as hdul:
        data = hdul[0].data
        hdr = hdul[0].header
        assert data.dtype == np.uint16
        assert np.array_equal(data, field256.image)
    for key in ("DATE-OBS", "EXPTIME", "GAIN", "RDNOISE", "SATURATE", "OBJECT", "CD1_1"):
        assert key in hdr, key
    assert hdr["SATURATE"] == 65535
    assert hdr["EXPTIME"] == pytest.approx(0.1)
    truth = Table.read(tmp_path / "truth" / "sim_s11_0001.ecsv")
    assert np.allclose(truth["x"], field256.truth["x"])
    cat = Table.read(tmp_path / "catalogs" / "sim_s11_0001.ecsv")
    for col in ("source_id", "ra", "dec", "phot_g_mean_mag", "pmra", "pmdec", "ref_epoch"):
        assert col in cat.colnames
    assert np.all(cat["ref_epoch"] == 2016.0)
    bias = fits.getdata(tmp_path / "calib" / "master_bias.fits")
    dark_hdr = fits.getheader(tmp_path / "calib" / "master_dark.fits")
    assert np.allclose(bias, field256.bias)
    assert dark_hdr["EXPTIME"] == pytest.approx(0.1)
    # a rerun skips finished frames
    again = simulate_run(cfg, 11, tmp_path, 3, start_index=1, progress=False)
    assert again.skipped == ["sim_s11_0001", "sim_s11_0002"]
    assert again.written == ["sim_s11_0003"]


# ------------------------------------------------------------- pixel / WCS conventions


def test_add_stars_centroid_is_unbiased_noiseless() -> None:
    psf = MoffatPSF(shape=(64, 64), fwhm=1.5, fwhm_corner=2.0, ellip_center=0.05)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.uniform(20, 44, 2)
        img = np.zeros((64, 64), dtype=np.float64)
        add_stars(img, np.array([x]), np.array([y]), np.array([1e4]), psf)
        cx, cy = _local_centroid(img, x, y, r=7)
        assert abs(cx - x) < 0.01 and abs(cy - y) < 0.01
        assert img.sum() == pytest.approx(1e4, rel=0.01)


def test_inject_stars_adds_noisy_flux_in_adu(field256) -> None:
    sim = field256
    psf = MoffatPSF(shape=sim.image.shape)
    xs, ys = np.array([60.3, 150.7]), np.array([80.2, 190.6])
    out, f3 = inject_stars(
        sim.image, xs, ys, np.array([5e3, 5e3]), psf, gain=1.1, rng=np.random.default_rng(1)
    )
    added = (out - sim.image.astype(np.float32)) * 1.1
    for x, y in zip(xs, ys):
        ix, iy = int(round(x)), int(round(y))
        assert added[iy - 7 : iy + 8, ix - 7 : ix + 8].sum() == pytest.approx(5e3, rel=0.05)
    assert np.all(f3 > 0.5 * 5e3) and np.all(f3 < 5e3)
    assert out.dtype == np.float32 and out.max() <= 65535


def test_render_psf_stamp_unit_flux_and_fwhm() -> None:
    psf = MoffatPSF(shape=(1600, 1600))
    stamp = render_psf_stamp(psf, 799.5 + 0.5, 799.5 + 0.5, radius=20, oversample=5)
    assert stamp.shape == (41, 41)
    assert stamp.sum() == pytest.approx(1.0, abs=0.002)
    corner = render_psf_stamp(psf, 5.0, 5.0, radius=20, oversample=5)
    # wider PSF in the corner: lower peak
    assert corner.max() < 0.8 * stamp.max()


def test_truth_matches_centroid_of_isolated_bright_stars(isolated256) -> None:
    sim = isolated256
    g = sim.config.gain_e_per_adu
    img_e = (sim.image.astype(np.float64) - sim.bias - sim.dark) * g
    tr = sim.truth
    hot_near = ndimage.maximum_filter(sim.dark, size=9) > 30.0
    ix, iy = np.round(tr["x"]).astype(int).clip(0, 399), np.round(tr["y"]).astype(int).clip(0, 399)
    sel = (tr["kind"] == "star") & (tr["flux_e"] > 8000) & ~tr["saturated"] & ~hot_near[iy, ix]
    sel &= (tr["x"] > 10) & (tr["x"] < 389) & (tr["y"] > 10) & (tr["y"] < 389)
    assert sel.sum() >= 20
    errs = []
    for row in tr[sel]:
        ix, iy = int(round(row["x"])), int(round(row["y"]))
        ring = img_e[iy - 8 : iy + 9, ix - 8 : ix + 9].copy()
        ring[4:13, 4:13] = np.nan
        sky = np.nanmedian(ring)
        cx, cy = _local_centroid(img_e - sky, row["x"], row["y"], r=3)
        errs.append(np.hypot(cx - row["x"], cy - row["y"]))
    assert max(errs) < 0.1, errs


@pytest.mark.parametrize("sip", [0.0, 1.5])
def test_header_wcs_maps_propagated_catalog_to_truth(sip: float) -> None:
    cfg = preset_config("paper", size=256, sip_corner_px=sip, n_high_pm=20)
    sim = simulate_field(cfg, seed=4, index=3)
    wcs = WCS(sim.header)
    assert wcs.has_distortion == (sip != 0.0)
    cat = sim.catalog
    date_obs = Time(sim.header["DATE-OBS"], scale="utc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no distances: astropy warns, motion is still applied
        coord = SkyCoord(
            ra=np.asarray(cat["ra"]) * u.deg,
            dec=np.asarray(cat["dec"]) * u.deg,
            pm_ra_cosdec=np.asarray(cat["pmra"], dtype=float) * u.mas / u.yr,
            pm_dec=np.asarray(cat["pmdec"], dtype=float) * u.mas / u.yr,
            obstime=Time(2016.0, format="jyear"),
        ).apply_space_motion(new_obstime=date_obs)
    x, y = wcs.world_to_pixel(coord)
    stars = sim.truth[sim.truth["kind"] == "star"]
    pos = {sid: i for i, sid in enumerate(cat["source_id"])}
    k = np.array([pos[s] for s in stars["source_id"]])
    d = np.hypot(x[k] - stars["x"], y[k] - stars["y"])
    assert np.max(d) < 0.05
    # the test is sensitive: ignoring proper motion moves the fast stars by more than that
    fast = np.hypot(cat["pmra"], cat["pmdec"])[k] > 300
    assert fast.any()
    x0, y0 = wcs.world_to_pixel(
        SkyCoord(np.asarray(cat["ra"]) * u.deg, np.asarray(cat["dec"]) * u.deg)
    )
    assert np.max(np.hypot(x0[k] - stars["x"], y0[k] - stars["y"])[fast]) > 0.1


# ------------------------------------------------------------------ detector effects


def test_hot_pixels_coincide_with_master_dark(field256) -> None:
    sim = field256
    g = sim.config.gain_e_per_adu
    resid = sim.image.astype(np.float64) - sim.bias
    hot = sim.dark > 300.0  # ADU in the exposure
    assert hot.sum() >= 5
    sigma = np.sqrt(sim.dark[hot] * g + 40.0) / g
    # raw frame shows them; subtracting the master dark removes them
    assert np.median(resid[hot] / sigma) > 10
    after = resid[hot] - sim.dark[hot]
    assert np.mean(np.abs(after) < 5 * sigma) > 0.9
    # conversely, the strongest single-pixel spikes of the raw frame are hot pixels
    spikes = np.argsort(resid.ravel())[::-1][:200]
    assert np.mean(hot.ravel()[spikes]) > 0.3


def test_saturation_bleeds_along_columns() -> None:
    cfg = preset_config("sparse", size=256, n_bright_extra=4.0)
    sim = simulate_field(cfg, seed=2, index=0)
    sat = sim.image >= 65535
    assert sat.any()
    labels, n_comp = ndimage.label(sat)
    sizes = ndimage.sum(sat, labels, np.arange(1, n_comp + 1))
    ys, xs = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    assert np.ptp(ys) > np.ptp(xs)  # bleeding runs along the columns
    assert sim.truth["saturated"].any()
    assert sim.header["NBLEED"] >= 1


def test_trails_are_in_truth_but_not_in_catalog() -> None:
    cfg = preset_config("sparse", size=256, trail_rate=4.0)
    sim = simulate_field(cfg, seed=8, index=0)
    trails = sim.truth[sim.truth["kind"] == "trail"]
    assert len(trails) >= 1
    assert not trails["in_catalog"].any()
    assert np.all(trails["source_id"] == -1)
    stars = sim.truth[sim.truth["kind"] == "star"]
    assert set(stars["source_id"]) <= set(sim.catalog["source_id"])
    assert len(sim.catalog) >= len(stars)
    # the trail is really in the image: its midpoint is well above the local sky
    for row in trails:
        assert row["snr_true"] > 0
        assert row["length_px"] >= cfg.trail_length_px[0]


def test_snr_true_follows_formula_and_increases_with_flux(field256) -> None:
    sim = field256
    cfg = sim.config
    st = sim.truth[sim.truth["kind"] == "star"]
    c = (cfg.size - 1) / 2
    central = (np.hypot(st["x"] - c, st["y"] - c) < 30) & ~st["companion"]
    ix, iy = np.round(st["x"]).astype(int), np.round(st["y"]).astype(int)
    hot_near = ndimage.maximum_filter(sim.dark, size=3)[iy.clip(0, 255), ix.clip(0, 255)] > 30.0
    central &= ~hot_near
    rows = st[central]
    assert len(rows) > 10
    order = np.argsort(rows["flux_e"])
    snr_sorted = np.asarray(rows["snr_true"])[order]
    # monotonic apart from sub-pixel phase / local-sky scatter
    rank = np.corrcoef(
        np.argsort(np.argsort(rows["flux_e"])), np.argsort(np.argsort(rows["snr_true"]))
    )
    assert rank[0, 1] > 0.95
    assert snr_sorted[-1] > snr_sorted[0]
    # the formula: F3 / sqrt(F3 + 9 (sky + dark) + 9 rn^2), sky on axis
    f3 = np.asarray(rows["f3_e"])
    approx = snr3(f3, 9 * (cfg.sky_e + cfg.dark_rate_e_s * cfg.exptime_s), cfg.read_noise_e)
    assert np.allclose(rows["snr_true"], approx, rtol=0.03)
    assert np.all(np.diff(snr3(np.array([1.0, 10.0, 100.0, 1e4]), 200.0, 3.5)) > 0)


def test_preset_star_counts_are_ordered() -> None:
    counts = []
    for preset in ("sparse", "paper", "dense"):
        sim = simulate_field(preset_config(preset, size=400), seed=3, index=0)
        st = sim.truth[sim.truth["kind"] == "star"]
        counts.append(int(np.sum(st["snr_true"] >= 2.0)))
    assert counts[0] < counts[1] < counts[2], counts
    # most catalog stars are undetectable, as with Gaia
    assert np.mean(st["snr_true"] < 2.0) > 0.6


def test_isolated_mode_has_min_separation(isolated256) -> None:
    from scipy.spatial import cKDTree

    tr = isolated256.truth
    assert np.all(tr["kind"] == "star")
    d, _ = cKDTree(np.column_stack([tr["x"], tr["y"]])).query(
        np.column_stack([tr["x"], tr["y"]]), k=2
    )
    assert d[:, 1].min() >= isolated256.config.min_separation_px


# ----------------------------------------------------------------------- sky isolation


def _boundary(n: int, k: int = 60) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(-0.5, n - 0.5, k)
    e0, e1 = np.full(k, -0.5), np.full(k, n - 0.5)
    return np.concatenate([t, t, e0, e1]), np.concatenate([e0, e1, t, t])


def test_frames_of_a_run_do_not_overlap_on_the_sky() -> None:
    cfg = preset_config("paper", sip_corner_px=2.0)
    centres = isolated_pointings(cfg, seed=1)
    assert len(centres) > 100
    first = centres[:25]
    wcss = [make_wcs(cfg, ra, dec, 1.0) for ra, dec in first]
    n = cfg.size
    bx, by = _boundary(n)
    checked = 0
    for i, wa in enumerate(wcss):
        for j, wb in enumerate(wcss):
            if i == j:
                continue
            sep = SkyCoord(*first[i], unit="deg").separation(SkyCoord(*first[j], unit="deg"))
            assert sep.deg > 2 * half_diagonal_deg(cfg)
            if sep.deg > 40:  # far apart: projecting through TAN is meaningless
                continue
            ra, dec = wb.all_pix2world(bx, by, 0)
            # linear TAN inverse with a margin for the (<= 2 px) SIP distortion
            x, y = wa.wcs_world2pix(ra, dec, 0)
            inside = (x > -3) & (x < n + 2) & (y > -3) & (y < n + 2)
            assert not inside.any(), (i, j)
            checked += 1
    assert checked > 10
    # simulated frames use these pointings, in order
    sim = simulate_field(preset_config("sparse", size=64), seed=1, index=2)
    small = isolated_pointings(preset_config("sparse", size=64), seed=1)
    assert sim.header["RA"] == pytest.approx(small[2, 0])
    assert sim.header["DEC"] == pytest.approx(small[2, 1])


# ------------------------------------------------------------------------------- CLI


def test_cli_simulate_writes_and_skips(tmp_path, capsys) -> None:
    args = ["simulate", "--out", str(tmp_path), "--n-frames", "2", "--preset", "sparse"]
    args += ["--seed", "9", "--size", "128", "--no-progress", "--set", "trail_rate=2"]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "sim_s9_0000.fits",
        "sim_s9_0001.fits",
    ]
    assert (tmp_path / "calib" / "master_dark.fits").exists()
    assert main(args) == 0
    assert "0 written, 2 skipped" in capsys.readouterr().out
    # another seed (another camera) in the same folder is refused, saying what changed
    other = args.copy()
    other[other.index("9")] = "10"
    assert main(other) == 2
    assert "other settings (--seed changed)" in capsys.readouterr().err


def test_cli_rejects_unknown_field(tmp_path) -> None:
    from atd_dl.commands.simulate import _parse_overrides

    with pytest.raises(InputError, match="expected FIELD=VALUE"):
        _parse_overrides(["no_such_knob=3"])
    assert _parse_overrides(["sky_mag_arcsec2=19", "isolated=true", "pair_sep_px=1,2"]) == {
        "sky_mag_arcsec2": 19.0,
        "isolated": True,
        "pair_sep_px": (1.0, 2.0),
    }
    with pytest.raises(KeyError, match="valid: sparse, paper, dense"):
        preset_config("crowded")
