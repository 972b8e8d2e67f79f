"""Each post-processing stage alone: components, trails, deblend, measure, flags, catalog;
and the catalog conventions (SExtractor-compatible flag bits, FITS units, DS9 regions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from atd_dl.detect.catalog import CATALOG_COLUMNS, COLUMN_SPECS, empty_catalog
from atd_dl.detect.catalog_io import read_catalog, write_catalog
from atd_dl.detect.components import (
    component_pixels,
    component_properties,
    find_components,
    frame_image,
    with_noise,
)
from atd_dl.detect.config import PostprocessConfig
from atd_dl.detect.flags import (
    FLAG_VERSION,
    SourceFlag,
    decode_flags,
    from_legacy,
    source_flags,
)
from atd_dl.detect.measure import measure_sources
from atd_dl.detect.postprocess import deblended_sources, segment_sources
from atd_dl.detect.regions import regions_text

DOCS = Path(__file__).resolve().parents[1] / "docs" / "detect.md"


def _gauss(shape, x0, y0, flux, sigma=1.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (
        flux / (2 * np.pi * sigma**2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    )


def _stages(img, prob, cfg=None, fwhm=2.3548):
    """Run the chain up to the deblending; returns the intermediate records."""
    cfg = cfg or PostprocessConfig()
    frame = frame_image(prob, img, mask=None, saturated=None, poisson=False)
    comps = find_components(prob, 0.5, min_area=cfg.min_area, small_peak_prob=cfg.small_peak_prob)
    frame = with_noise(frame, 1.0, comps.binary > 0)
    d = deblended_sources(frame, comps, fwhm, cfg)
    pix, props, trail, split, sources, psf = d.pix, d.props, d.trail, d.split, d.sources, d.psf
    return frame, comps, pix, props, trail, split, sources, psf, cfg


# ------------------------------------------------------------------------- components
def test_components_drop_small_but_keep_confident_single_pixels():
    prob = np.zeros((20, 20), np.float32)
    prob[2:5, 2:5] = 0.9  # 9 px
    prob[10, 10] = 0.99  # single confident pixel
    prob[15, 15] = 0.6  # single weak pixel
    comps = find_components(prob, 0.5, min_area=2, small_peak_prob=1.01)
    assert comps.n == 1 and comps.labels[3, 3] == 1 and comps.labels[10, 10] == 0
    comps = find_components(prob, 0.5, min_area=2, small_peak_prob=0.95)
    assert comps.n == 2 and comps.labels[10, 10] == 2 and comps.labels[15, 15] == 0
    assert comps.bbox(1) == (slice(2, 5), slice(2, 5))


def test_component_properties_see_saturated_and_bad_neighbours():
    img = np.zeros((20, 20), np.float32)
    prob = np.zeros((20, 20), np.float32)
    prob[2:5, 2:5] = prob[12:15, 12:15] = 0.9
    sat = np.zeros((20, 20), bool)
    sat[5, 5] = True  # diagonal neighbour of component 1
    mask = np.zeros((20, 20), bool)
    mask[11, 15] = True  # diagonal neighbour of component 2
    frame = frame_image(prob, img, mask=mask, saturated=sat, poisson=False)
    comps = find_components(prob, 0.5, min_area=2, small_peak_prob=1.01)
    frame = with_noise(frame, None, comps.binary > 0)
    pix = component_pixels(comps, frame)
    props = component_properties(comps, pix, frame)
    assert props.saturated.tolist() == [False, True, False]
    assert props.bad.tolist() == [False, False, True]


# ------------------------------------------------------------------------- trails
def test_long_thin_uniform_component_is_a_trail_and_a_star_is_not():
    rng = np.random.default_rng(1)
    img = rng.normal(0, 1.0, (60, 80)).astype(np.float32)
    img += _gauss(img.shape, 60, 45, 400.0)
    img[20:22, 10:50] += 40.0  # a 40 x 2 px plateau
    prob = np.zeros(img.shape, np.float32)
    prob[20:22, 10:50] = 0.9
    prob[43:48, 58:63] = 0.9
    _, comps, *_rest = _stages(img, prob)
    trail = _rest[2]
    lab_trail, lab_star = comps.labels[21, 30], comps.labels[45, 60]
    assert trail[lab_trail] and not trail[lab_star]


# ------------------------------------------------------------------------- deblend
def test_two_touching_peaks_are_deblended_into_two_children():
    img = _gauss((40, 40), 17.0, 20.0, 5000.0, 1.2) + _gauss((40, 40), 22.5, 20.0, 4000.0, 1.2)
    prob = (img > 20.0).astype(np.float32)
    frame, comps, pix, props, trail, split, sources, psf, cfg = _stages(img, prob)
    assert comps.n == 1 and split.counts[1] == 2 and sources.n == 2
    assert sources.blended[1:].all() and (sources.parent[1:] == 1).all()
    assert set(np.unique(sources.segmap)) == {0, 1, 2}
    meas = measure_sources(frame, prob, pix, props, sources, split, psf.fwhm, cfg)
    xs = sorted(meas.x)
    assert xs[0] == pytest.approx(17.0, abs=0.3) and xs[1] == pytest.approx(22.5, abs=0.3)


def test_a_single_star_is_not_split():
    img = _gauss((40, 40), 20.0, 20.0, 5000.0, 1.2)
    prob = (img > 20.0).astype(np.float32)
    _, comps, _, _, _, split, sources, _, _ = _stages(img, prob)
    assert comps.n == 1 and split.counts[1] == 1 and sources.n == 1
    assert not sources.blended[1] and sources.parent[1] == 0


# ------------------------------------------------------------------------- measure
def test_measure_centroid_flux_and_peak_of_an_isolated_star():
    img = _gauss((41, 41), 20.3, 15.7, 10000.0, 1.0)
    prob = (img > 5.0).astype(np.float32) * 0.8
    frame, comps, pix, props, trail, split, sources, psf, cfg = _stages(img, prob)
    meas = measure_sources(frame, prob, pix, props, sources, split, psf.fwhm, cfg)
    assert meas.x[0] == pytest.approx(20.3, abs=0.02) and meas.y[0] == pytest.approx(15.7, abs=0.02)
    assert meas.flux[0] == pytest.approx(
        10000.0 * (1 - np.exp(-((1.5 * 2.3548) ** 2) / 2)), rel=0.03
    )
    assert meas.peak[0] == pytest.approx(img.max()) and meas.prob[0] == pytest.approx(0.8)
    assert meas.snr[0] == pytest.approx(meas.flux[0] / meas.flux_err[0])
    assert not meas.saturated[0] and not meas.masked[0]


# ------------------------------------------------------------------------- flags
def test_flag_bits_are_sextractor_compatible():
    # SExtractor FLAGS: 1 bad pixels / neighbours, 2 deblended, 4 saturated, 8 truncated
    assert int(SourceFlag.MASKED) == 1 and int(SourceFlag.BLENDED) == 2
    assert int(SourceFlag.SATURATED) == 4 and int(SourceFlag.NEAR_EDGE) == 8
    own = [SourceFlag.TRAIL, SourceFlag.LOW_SNR, SourceFlag.BINARY]
    assert all(int(f) >= 256 and bin(int(f)).count("1") == 1 for f in own)
    assert decode_flags(2 | 256) == ["BLENDED", "TRAIL"]
    # version-1 catalogs: 1 blended, 2 trail, 8 masked, 16 edge, 32 low SNR
    assert from_legacy(np.array([1, 2, 8 | 16, 32 | 64])).tolist() == [2, 256, 1 | 8, 512 | 1024]


def test_source_flags_sets_each_bit_from_its_cause():
    n = 6
    x = np.array([10.0, 10.0, 10.0, 10.0, 2.9, 10.0])
    y = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 16.5])
    one = np.eye(n, dtype=bool)
    flags = source_flags(
        blended=one[0],
        trail=one[1],
        saturated=one[2],
        masked=one[3],
        x=x,
        y=y,
        shape=(20, 20),
        edge=3.0,
        snr=np.array([10, 10, 10, 10, 10, 2.0]),
        low_snr=3.0,
    )
    # row 5: y = 16.5 > 20 - 1 - 3 = 16 -> near the edge too
    assert flags.tolist() == [2, 256, 4, 1, 8, 512 | 8] and flags.dtype == np.int32


def test_segment_sources_flags_use_the_new_bits():
    img = _gauss((40, 40), 20.0, 20.0, 5000.0, 1.2) + _gauss((40, 40), 1.5, 20.0, 5000.0, 1.2)
    prob = (img > 20.0).astype(np.float32)
    mask = np.zeros(img.shape, bool)
    mask[20, 23] = True
    cat = segment_sources(prob, 0.5, image_e=img, mask=mask, background_rms_e=1.0).catalog
    by_x = {round(float(x)): int(f) for x, f in zip(cat["x"], cat["flags"])}
    assert by_x[20] == int(SourceFlag.MASKED) and by_x[2] & int(SourceFlag.NEAR_EDGE)


# ------------------------------------------------------------------------- catalog
def test_catalog_table_follows_the_column_specs():
    img = _gauss((40, 40), 20.0, 20.0, 5000.0, 1.2)
    prob = (img > 20.0).astype(np.float32)
    cat = segment_sources(prob, 0.5, image_e=img, unit="adu").catalog
    assert tuple(cat.colnames) == CATALOG_COLUMNS
    specs = {c.name: c for c in COLUMN_SPECS}
    for name in cat.colnames:
        assert cat[name].description == specs[name].description
        assert cat[name].dtype == np.dtype(specs[name].dtype)
    assert cat["flux"].unit == "adu" and cat["x"].unit == "pix" and cat["snr"].unit is None
    empty = empty_catalog("electron")
    assert len(empty) == 0 and tuple(empty.colnames) == CATALOG_COLUMNS
    assert empty["peak"].unit == "electron"


def test_every_column_is_documented_with_its_equivalents():
    text = DOCS.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for spec in COLUMN_SPECS:
        assert any(f"`{spec.name}`" in r.split("|")[1] for r in rows), spec.name


def test_fits_catalog_keeps_units_and_flag_version(tmp_path):
    img = _gauss((40, 40), 20.0, 20.0, 5000.0, 1.2)
    prob = (img > 20.0).astype(np.float32)
    cat = segment_sources(prob, 0.5, image_e=img).catalog
    fits_path, ecsv_path = tmp_path / "c.cat.fits", tmp_path / "c.cat.ecsv"
    write_catalog(cat, fits_path, ecsv_path)
    hdr = fits.getheader(fits_path, "CATALOG")
    units = {hdr[f"TTYPE{i}"]: hdr.get(f"TUNIT{i}") for i in range(1, hdr["TFIELDS"] + 1)}
    assert units["flux"] == units["flux_err"] == units["peak"] == "electron"
    assert units["x"] == "pix" and units["area"] == "pix2" and units["snr"] is None
    assert hdr["FLAGVERS"] == FLAG_VERSION
    assert hdr.comments["TTYPE1"].startswith("source number")
    back = read_catalog(fits_path)
    assert back["flux"].unit == "electron" and back["peak"].unit == "electron"
    assert read_catalog(ecsv_path).meta["flag_version"] == FLAG_VERSION


# ------------------------------------------------------------------------- regions
def _wcs():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, -30.0]
    w.wcs.crpix = [20.0, 20.0]
    w.wcs.cdelt = [-2.0 / 3600, 2.0 / 3600]
    return w


def test_regions_in_fk5_with_a_wcs_and_in_image_pixels_without():
    t = Table({"id": [1], "x": [9.0], "y": [4.0], "flags": [int(SourceFlag.TRAIL)]})
    pix = regions_text(t, radius=3.0).splitlines()
    assert pix[3] == "image" and pix[4] == "circle(10.000,5.000,3.00) # color=red"
    w = _wcs()
    sky = regions_text(t, radius=3.0, wcs=w).splitlines()
    ra, dec = w.all_pix2world([9.0], [4.0], 0)
    assert sky[3] == "fk5"
    a, d, r = sky[4].split("(")[1].split(")")[0].split(",")
    assert float(a) == pytest.approx(ra[0], abs=1e-8) and float(d) == pytest.approx(
        dec[0], abs=1e-8
    )
    assert r == '6.000"' and sky[4].endswith("color=red")
