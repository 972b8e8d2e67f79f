"""Whole-frame simulation: :func:`simulate_field` (in memory) and :func:`simulate_run` (files).

A frame is fully determined by ``(config, seed, index)``: the camera (bias structure, hot
pixels) comes from ``seed`` alone, the pointing from the seed's list of sky-isolated
centres, and the stars/noise from ``(seed, index)``, so frames can be built independently
and a rerun reproduces them bit for bit.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS

from atd_dl import __version__
from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_output
from atd_dl.sim.config import SimConfig
from atd_dl.sim.instrument import (
    STREAM_FRAME,
    Camera,
    isolated_pointings,
    make_camera,
    make_wcs,
    stream,
    vignetting,
)
from atd_dl.sim.psf import MoffatPSF, add_stars, render_psf_stamp
from atd_dl.sim.starfield import (
    add_cosmic_rays,
    bleed_columns,
    draw_stars,
    draw_trails,
    flux_e_to_mag,
    mag_to_flux_e,
)

log = logging.getLogger(__name__)

MAS_PER_DEG = 3.6e6
# truth values are rounded far below any measurement precision (smaller, faster files)
TRUTH_DECIMALS = {
    "x": 6,
    "y": 6,
    "flux_e": 4,
    "mag": 6,
    "f3_e": 4,
    "snr_true": 6,
    "length_px": 4,
    "angle_deg": 4,
}


@dataclass
class SimulatedField:
    """One simulated raw frame with everything known about it.

    ``image``: raw uint16 ``[y, x]`` (ADU, bias included); ``header``: FITS header with WCS;
    ``truth``: stars on the frame and trails (id, source_id, x, y, flux_e, mag, snr_true,
    f3_e, in_catalog, kind, saturated, length_px, angle_deg); ``catalog``: Gaia-like
    reference catalog at ``ref_epoch``; ``bias``/``dark``: master bias (ADU) and
    bias-subtracted master dark (ADU for EXPTIME); ``flat``: normalised vignetting;
    ``expected_e``: noiseless electron image (sky + dark + sources); ``cosmics``: cosmic-ray
    events (not in truth).
    """

    name: str
    image: np.ndarray
    header: fits.Header
    wcs: WCS
    truth: Table
    catalog: Table
    bias: np.ndarray
    dark: np.ndarray
    flat: np.ndarray
    expected_e: np.ndarray
    cosmics: Table
    config: SimConfig
    seed: int
    index: int
    meta: dict = field(default_factory=dict)


def frame_name(seed: int, index: int) -> str:
    """File stem of frame ``index`` of the run with ``seed``."""
    return f"sim_s{seed}_{index:04d}"


def psf_model(cfg: SimConfig) -> MoffatPSF:
    """The field-dependent PSF of the simulated optics."""
    return MoffatPSF(
        shape=(cfg.size, cfg.size),
        fwhm=cfg.fwhm_px,
        fwhm_corner=cfg.fwhm_corner_px,
        beta=cfg.moffat_beta,
        ellip_center=cfg.ellip_center,
        ellip_corner=cfg.ellip_corner,
    )


def background_per_pixel_e(cfg: SimConfig) -> float:
    """On-axis noise variance per pixel (e^2) from sky, base dark current and read noise."""
    return cfg.sky_e + cfg.dark_rate_e_s * cfg.exptime_s + cfg.read_noise_e**2


def snr3(f3_e: np.ndarray, background_sum_e: np.ndarray | float, read_noise_e: float) -> np.ndarray:
    """Expected 3x3-aperture SNR: ``F3 / sqrt(F3 + B9 + 9 rn^2)``.

    ``f3_e``: the source's electrons in the box; ``background_sum_e``: expected sky + dark
    electrons summed over the 9 pixels.
    """
    f3 = np.asarray(f3_e, dtype=np.float64)
    var = f3 + np.asarray(background_sum_e, dtype=np.float64) + 9.0 * read_noise_e**2
    return f3 / np.sqrt(np.maximum(var, 1e-12))


def detection_limit_mag(cfg: SimConfig, snr: float = 2.0) -> float:
    """Magnitude of an on-axis, pixel-centred star with 3x3-aperture SNR = ``snr``."""
    psf = psf_model(cfg)
    c = (cfg.size - 1) / 2.0
    frac = float(render_psf_stamp(psf, c, c, radius=1, oversample=5).sum())
    var9 = 9.0 * background_per_pixel_e(cfg)
    # F^2 = snr^2 (F + var9)
    f3 = 0.5 * (snr**2 + np.sqrt(snr**4 + 4.0 * snr**2 * var9))
    return float(flux_e_to_mag(f3 / frac, cfg))


def faint_limit_mag(cfg: SimConfig) -> float:
    """Faintest simulated magnitude (``mag_faint`` or SNR-2 limit + ``faint_depth_mag``)."""
    if cfg.mag_faint is not None:
        return float(cfg.mag_faint)
    return detection_limit_mag(cfg) + cfg.faint_depth_mag


def _box_sum(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sum of ``img`` over the 3x3 box centred on pixel ``(round(x), round(y))`` (clipped)."""
    ny, nx = img.shape
    ix = np.round(x).astype(np.int64)
    iy = np.round(y).astype(np.int64)
    total = np.zeros(len(ix), dtype=np.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            xx = np.clip(ix + dx, 0, nx - 1)
            yy = np.clip(iy + dy, 0, ny - 1)
            total += img[yy, xx]
    return total


def _box_max(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ny, nx = img.shape
    ix = np.round(x).astype(np.int64)
    iy = np.round(y).astype(np.int64)
    out = np.full(len(ix), -np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out = np.maximum(out, img[np.clip(iy + dy, 0, ny - 1), np.clip(ix + dx, 0, nx - 1)])
    return out


def sky_map_e(cfg: SimConfig, rng: np.random.Generator, vig: np.ndarray) -> np.ndarray:
    """Expected sky electrons per pixel: level x (1 + linear ramp) x vignetting."""
    n = cfg.size
    phi = rng.uniform(0.0, 2.0 * np.pi)
    c = (n - 1) / 2.0
    coord = (np.arange(n, dtype=np.float32) - c) / max(n - 1, 1)
    ramp = coord[None, :] * np.float32(np.cos(phi)) + coord[:, None] * np.float32(np.sin(phi))
    return (cfg.sky_e * (1.0 + cfg.sky_gradient * ramp) * vig).astype(np.float32)


def wcs_header(wcs: WCS) -> fits.Header:
    """FITS cards of ``wcs`` with a CD matrix (astropy writes PC + CDELT by default)."""
    hdr = wcs.to_header(relax=True)
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        hdr.remove(key, ignore_missing=True)
    cd = wcs.wcs.cd if wcs.wcs.has_cd() else wcs.pixel_scale_matrix
    pos = "CUNIT1" if "CUNIT1" in hdr else None
    for i in range(2):
        for j in range(2):
            card = (f"CD{i + 1}_{j + 1}", float(cd[i, j]), "[deg/px] linear transformation matrix")
            if pos is not None:
                hdr.insert(pos, card)
            else:
                hdr.append(card)
    return hdr


def _header(
    cfg: SimConfig,
    wcs: WCS,
    name: str,
    seed: int,
    index: int,
    date_obs: Time,
    extra: dict,
) -> fits.Header:
    hdr = fits.Header()
    hdr["OBJECT"] = (name, "simulated field")
    hdr["IMAGETYP"] = ("LIGHT", "frame type")
    hdr["TELESCOP"] = ("ATD-DL sim", "150 mm f/1.15 lens, wide-field array unit")
    hdr["INSTRUME"] = ("QHY4040 (simulated)", "camera")
    hdr["DATE-OBS"] = (date_obs.isot, "UTC start of exposure")
    hdr["MJD-OBS"] = (date_obs.mjd, "MJD of exposure start")
    hdr["EXPTIME"] = (cfg.exptime_s, "[s] exposure time")
    hdr["GAIN"] = (cfg.gain_e_per_adu, "[e-/ADU]")
    hdr["RDNOISE"] = (cfg.read_noise_e, "[e-] read noise")
    hdr["SATURATE"] = (cfg.saturate_adu, "[ADU] saturation level")
    hdr["BUNIT"] = ("ADU", "raw counts, bias included")
    hdr["PIXSCALE"] = (cfg.pixel_scale_arcsec, "[arcsec/px]")
    hdr["XPIXSZ"] = (9.0, "[um] pixel size")
    hdr["FOCALLEN"] = (124.9, "[mm] focal length")
    ra0, dec0 = wcs.wcs.crval
    hdr["RA"] = (float(ra0), "[deg] field centre")
    hdr["DEC"] = (float(dec0), "[deg] field centre")
    hdr.update(wcs_header(wcs))
    hdr["SIMVER"] = (__version__, "atd-dl version that simulated this frame")
    hdr["SIMSEED"] = (seed, "simulation run seed")
    hdr["SIMINDX"] = (index, "frame index within the run")
    hdr["SIMPRSET"] = (cfg.preset, "star-density preset")
    for key, (value, comment) in extra.items():
        hdr[key] = (value, comment)
    return hdr


def simulate_field(config: SimConfig, seed: int, index: int = 0) -> SimulatedField:
    """Simulate frame ``index`` of the run ``seed`` with ``config``; see module docstring."""
    cfg = config
    if cfg.size < 16:
        raise InputError(None, f"frame size {cfg.size} too small (min 16 px)")
    if index < 0:
        raise InputError(None, f"frame index must be >= 0, got {index}")
    pointings = isolated_pointings(cfg, seed)
    if index >= len(pointings):
        raise InputError(
            None, f"frame index {index}: only {len(pointings)} sky-isolated fields fit on the sky"
        )
    ra0, dec0 = pointings[index]
    camera: Camera = make_camera(cfg, seed)
    rng = stream(seed, STREAM_FRAME, index)
    name = frame_name(seed, index)
    n = cfg.size
    rotation = rng.uniform(-cfg.rotation_max_deg, cfg.rotation_max_deg)
    wcs = make_wcs(cfg, float(ra0), float(dec0), float(rotation))
    date_obs = Time(cfg.date_obs, scale="utc") + TimeDelta(index * cfg.cadence_s, format="sec")
    psf = psf_model(cfg)
    vig = vignetting(cfg)

    # expected electrons: sky + dark + stars + trails
    m_limit = detection_limit_mag(cfg)
    m_faint = faint_limit_mag(cfg)
    stars = draw_stars(cfg, rng, m_faint, m_limit)
    background = sky_map_e(cfg, rng, vig)
    background += camera.dark_rate_e_s * np.float32(cfg.exptime_s)
    expected = background.copy()
    vig_at = vig[
        np.clip(np.round(stars.y).astype(int), 0, n - 1),
        np.clip(np.round(stars.x).astype(int), 0, n - 1),
    ]
    flux_e = mag_to_flux_e(stars.mag, cfg) * vig_at
    f3 = add_stars(expected, stars.x, stars.y, flux_e, psf)

    trails = draw_trails(cfg, rng)
    trail_rows = []
    for tr in trails:
        tx, ty = tr.points()
        xm, ym = (tr.x0 + tr.x1) / 2.0, (tr.y0 + tr.y1) / 2.0
        vm = float(vig[int(np.clip(round(ym), 0, n - 1)), int(np.clip(round(xm), 0, n - 1))])
        t_flux = float(mag_to_flux_e(tr.mag, cfg)) * vm
        layer = np.zeros((n, n), dtype=np.float32)
        add_stars(layer, tx, ty, np.full(len(tx), t_flux / len(tx)), psf)
        t_f3 = float(_box_sum(layer, np.array([xm]), np.array([ym]))[0])
        expected += layer
        trail_rows.append((xm, ym, t_flux, tr.mag, t_f3, tr.length, tr.angle_deg))

    # noise and detector effects
    charge = rng.poisson(np.maximum(expected, 0.0)).astype(np.float32)
    cosmic_events = add_cosmic_rays(charge, cfg, rng)
    n_bleed = bleed_columns(charge, cfg.full_well_e)
    charge += rng.normal(0.0, cfg.read_noise_e, charge.shape).astype(np.float32)
    if cfg.row_noise_e > 0:
        charge += rng.normal(0.0, cfg.row_noise_e, (n, 1)).astype(np.float32)
    adu = camera.bias_adu + charge / np.float32(cfg.gain_e_per_adu)
    image = np.clip(np.round(adu), 0, cfg.saturate_adu).astype(np.uint16)

    # truth table: stars whose centre is on the frame, then trails
    on = (stars.x >= -0.5) & (stars.x < n - 0.5) & (stars.y >= -0.5) & (stars.y < n - 0.5)
    idx_on = np.flatnonzero(on)
    bsum = _box_sum(background, stars.x[idx_on], stars.y[idx_on])
    sat = _box_max(image, stars.x[idx_on], stars.y[idx_on]) >= cfg.saturate_adu
    source_ids = _source_ids(seed, index, len(stars))
    truth = Table()
    n_tr = len(trail_rows)
    tr_arr = np.array(trail_rows, dtype=np.float64).reshape(n_tr, 7)
    truth["id"] = np.arange(len(idx_on) + n_tr, dtype=np.int64)
    truth["source_id"] = np.concatenate([source_ids[idx_on], np.full(n_tr, -1, dtype=np.int64)])
    truth["x"] = np.concatenate([stars.x[idx_on], tr_arr[:, 0]])
    truth["y"] = np.concatenate([stars.y[idx_on], tr_arr[:, 1]])
    truth["flux_e"] = np.concatenate([flux_e[idx_on], tr_arr[:, 2]])
    truth["mag"] = np.concatenate([stars.mag[idx_on], tr_arr[:, 3]])
    tr_bsum = _box_sum(background, tr_arr[:, 0], tr_arr[:, 1])
    truth["f3_e"] = np.concatenate([f3[idx_on], tr_arr[:, 4]])
    truth["snr_true"] = snr3(
        truth["f3_e"], np.concatenate([bsum, tr_bsum]), cfg.read_noise_e
    ).astype(np.float64)
    truth["in_catalog"] = np.concatenate([np.ones(len(idx_on), bool), np.zeros(n_tr, bool)])
    truth["kind"] = np.array(["star"] * len(idx_on) + ["trail"] * n_tr, dtype="U5")
    tr_sat = _box_max(image, tr_arr[:, 0], tr_arr[:, 1]) >= cfg.saturate_adu
    truth["saturated"] = np.concatenate([sat, tr_sat])
    truth["companion"] = np.concatenate([stars.companion[idx_on], np.zeros(n_tr, bool)])
    truth["length_px"] = np.concatenate([np.zeros(len(idx_on)), tr_arr[:, 5]])
    truth["angle_deg"] = np.concatenate([np.zeros(len(idx_on)), tr_arr[:, 6]])
    for col, decimals in TRUTH_DECIMALS.items():
        truth[col] = np.round(np.asarray(truth[col], dtype=np.float64), decimals)
    _units(truth)

    catalog = _catalog(cfg, rng, wcs, stars, source_ids, date_obs)
    cosmics = Table(
        rows=cosmic_events or None,
        names=("x", "y", "length_px", "charge_e"),
        dtype=(float, float, float, float),
    )

    extra = {
        "SIMSKY": (round(cfg.sky_e, 3), "[e-] sky per pixel on axis"),
        "SIMFWHM": (cfg.fwhm_px, "[px] PSF FWHM on axis"),
        "SIMFWHMC": (cfg.fwhm_corner_px, "[px] PSF FWHM in the corners"),
        "SIMBETA": (cfg.moffat_beta, "Moffat beta"),
        "SIMZP": (cfg.zeropoint_mag, "magnitude giving 1 e-/s"),
        "SIMMLIM": (round(m_limit, 3), "SNR=2 (3x3 box) magnitude on axis"),
        "SIMMFNT": (round(m_faint, 3), "faintest simulated magnitude"),
        "SIMNSTAR": (len(idx_on), "stars with centre on the frame"),
        "SIMNDET": (int(np.sum(truth["snr_true"][: len(idx_on)] >= 2.0)), "stars with SNR3>=2"),
        "NTRAIL": (n_tr, "moving-object trails"),
        "NCOSMIC": (len(cosmic_events), "cosmic-ray events"),
        "NBLEED": (n_bleed, "columns with bleeding"),
        "SIMROT": (round(float(rotation), 5), "[deg] field rotation"),
        "SIMISOL": (bool(cfg.isolated), "isolated-star mode"),
    }
    header = _header(cfg, wcs, name, seed, index, date_obs, extra)
    meta = {"seed": seed, "index": index, "m_limit": m_limit, "m_faint": m_faint}
    truth.meta.update({"frame": name, **meta, "gain": cfg.gain_e_per_adu, "pixel": "0-based"})
    catalog.meta.update({"frame": name, "ref_epoch": cfg.ref_epoch})
    flat = (vig / np.median(vig)).astype(np.float32)
    return SimulatedField(
        name=name,
        image=image,
        header=header,
        wcs=wcs,
        truth=truth,
        catalog=catalog,
        bias=camera.master_bias,
        dark=camera.master_dark,
        flat=flat,
        expected_e=expected,
        cosmics=cosmics,
        config=cfg,
        seed=seed,
        index=index,
        meta=meta,
    )


def _source_ids(seed: int, index: int, count: int) -> np.ndarray:
    """Gaia-like 64-bit source ids, unique within a run (frame index in the high digits)."""
    base = (int(index) + 1) * 10**9 + (int(seed) % 1000) * 10**12
    return base + np.arange(count, dtype=np.int64)


def _catalog(
    cfg: SimConfig,
    rng: np.random.Generator,
    wcs: WCS,
    stars,
    source_ids: np.ndarray,
    date_obs: Time,
) -> Table:
    """Gaia-like catalog of all rendered stars, positions moved back to ``ref_epoch``.

    Linear propagation: ``dec_obs = dec_ref + pmdec·dt``, ``ra_obs = ra_ref + pmra·dt/cos(dec)``
    (pmra includes cos dec, as in Gaia), dt = epoch(DATE-OBS) − ref_epoch in Julian years.
    """
    ra_obs, dec_obs = wcs.all_pix2world(stars.x, stars.y, 0)
    dt = float(date_obs.jyear) - cfg.ref_epoch
    dec_ref = dec_obs - stars.pmdec * dt / MAS_PER_DEG
    ra_ref = ra_obs - stars.pmra * dt / MAS_PER_DEG / np.cos(np.radians(dec_obs))
    if cfg.catalog_pos_sigma_mas > 0:
        e = cfg.catalog_pos_sigma_mas / MAS_PER_DEG
        dec_ref = dec_ref + rng.normal(0.0, e, len(dec_ref))
        ra_ref = ra_ref + rng.normal(0.0, e, len(ra_ref)) / np.cos(np.radians(dec_obs))
    mag = stars.mag + rng.normal(0.0, cfg.catalog_mag_sigma, len(stars))
    cat = Table()
    cat["source_id"] = source_ids
    cat["ra"] = np.mod(ra_ref, 360.0)
    cat["dec"] = dec_ref
    cat["phot_g_mean_mag"] = mag.astype(np.float32)
    cat["pmra"] = stars.pmra.astype(np.float32)
    cat["pmdec"] = stars.pmdec.astype(np.float32)
    cat["ref_epoch"] = np.full(len(stars), cfg.ref_epoch)
    cat["ra"].unit = "deg"
    cat["dec"].unit = "deg"
    cat["phot_g_mean_mag"].unit = "mag"
    cat["pmra"].unit = "mas / yr"
    cat["pmdec"].unit = "mas / yr"
    cat["ref_epoch"].unit = "yr"
    return cat


def _units(truth: Table) -> None:
    truth["x"].unit = "pix"
    truth["y"].unit = "pix"
    truth["flux_e"].unit = "electron"
    truth["f3_e"].unit = "electron"
    truth["mag"].unit = "mag"
    truth["length_px"].unit = "pix"
    truth["angle_deg"].unit = "deg"
    truth["x"].description = "0-based column of the true centre (pixel centre = integer)"
    truth["y"].description = "0-based row of the true centre"
    truth["flux_e"].description = "total electrons recorded (vignetting included)"
    truth["f3_e"].description = "source electrons inside the 3x3 box on the nearest pixel"
    truth["snr_true"].description = "F3 / sqrt(F3 + box sky+dark + 9 rn^2)"


# ---------------------------------------------------------------------------- files


def write_raw_fits(path: str | Path, image: np.ndarray, header: fits.Header) -> Path:
    """Write a raw uint16 frame as int16 + BZERO=32768 (atomic)."""
    try:  # the project's writer (atd_dl.io.fits_io), when available
        from atd_dl.io import fits_io
    except ImportError:  # pragma: no cover
        fits_io = None  # type: ignore[assignment]
    if fits_io is not None and hasattr(fits_io, "write_raw_uint16"):
        return Path(fits_io.write_raw_uint16(path, image, header=header))
    hdu = fits.PrimaryHDU(data=np.asarray(image, dtype=np.uint16), header=header, uint=True)
    with atomic_output(path) as tmp:
        hdu.writeto(tmp, output_verify="exception")
    return Path(path)


def write_float_fits(path: str | Path, data: np.ndarray, header: fits.Header) -> Path:
    """Write a float32 image atomically."""
    hdu = fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32), header=header)
    with atomic_output(path) as tmp:
        hdu.writeto(tmp, output_verify="exception")
    return Path(path)


def write_table(path: str | Path, table: Table) -> Path:
    """Write an astropy table as ECSV atomically.

    The header comes from astropy; for plain 1-D numeric/bool/simple-string columns the
    body is written by pandas (several times faster than astropy's pure-Python writer for
    the ~10^5-row truth tables, identical on reading back).
    """
    simple = all(
        table[c].ndim == 1
        and (
            table[c].dtype.kind in "iufb"
            or (table[c].dtype.kind == "U" and not any(" " in v or not v for v in table[c]))
        )
        for c in table.colnames
    )
    with atomic_output(path) as tmp:
        if not simple or len(table) == 0 or getattr(table, "masked", False):
            table.write(tmp, format="ascii.ecsv")
        else:
            buf = io.StringIO()
            table[:0].write(buf, format="ascii.ecsv")
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(buf.getvalue())
                table.to_pandas().to_csv(
                    fh, sep=" ", header=False, index=False, lineterminator="\n", na_rep="nan"
                )
    return Path(path)


def frame_paths(out: str | Path, name: str) -> dict[str, Path]:
    """Paths of a frame's outputs under the run folder ``out``."""
    out = Path(out)
    return {
        "frame": out / "frames" / f"{name}.fits",
        "catalog": out / "catalogs" / f"{name}.ecsv",
        "truth": out / "truth" / f"{name}.ecsv",
    }


def write_field(sim: SimulatedField, out: str | Path) -> dict[str, Path]:
    """Write truth, catalog and the raw frame (last, so it marks a finished frame)."""
    paths = frame_paths(out, sim.name)
    write_table(paths["truth"], sim.truth)
    write_table(paths["catalog"], sim.catalog)
    write_raw_fits(paths["frame"], sim.image, sim.header)
    return paths


def write_calibration(cfg: SimConfig, seed: int, out: str | Path) -> dict[str, Path]:
    """Write ``calib/master_bias.fits``, ``master_dark.fits`` and ``master_flat.fits``.

    The dark is bias-subtracted, in ADU for an exposure of EXPTIME seconds. Existing masters
    of the same camera (seed and size) are kept; masters of another camera raise
    :class:`InputError` (mixing cameras in one run folder would silently corrupt it).
    """
    calib = Path(out) / "calib"
    paths = {k: calib / f"master_{k}.fits" for k in ("bias", "dark", "flat")}
    if all(p.exists() for p in paths.values()):
        hdr = fits.getheader(paths["bias"])
        if hdr.get("SIMSEED") != seed or hdr.get("NAXIS1") != cfg.size:
            raise InputError(
                paths["bias"],
                f"masters of another camera (seed {hdr.get('SIMSEED')}, "
                f"size {hdr.get('NAXIS1')}); use a new --out folder",
            )
        return paths
    camera = make_camera(cfg, seed)
    base = fits.Header()
    base["SIMSEED"] = (seed, "simulation run seed (camera)")
    base["SIMVER"] = (__version__, "atd-dl version")
    base["INSTRUME"] = ("QHY4040 (simulated)", "camera")
    base["GAIN"] = (cfg.gain_e_per_adu, "[e-/ADU]")
    base["RDNOISE"] = (cfg.read_noise_e, "[e-] read noise")
    base["NCOMBINE"] = (cfg.master_n_combined, "frames averaged")
    h = base.copy()
    h["IMAGETYP"] = ("BIAS", "master bias")
    h["BUNIT"] = ("ADU", "")
    write_float_fits(paths["bias"], camera.master_bias, h)
    h = base.copy()
    h["IMAGETYP"] = ("DARK", "master dark, bias subtracted")
    h["EXPTIME"] = (cfg.exptime_s, "[s] exposure the dark is scaled to")
    h["BUNIT"] = ("ADU", "dark current for EXPTIME, bias removed")
    write_float_fits(paths["dark"], camera.master_dark, h)
    h = base.copy()
    h["IMAGETYP"] = ("FLAT", "master flat (vignetting), median 1")
    vig = vignetting(cfg)
    write_float_fits(paths["flat"], vig / np.median(vig), h)
    return paths


@dataclass
class RunReport:
    """Outcome of :func:`simulate_run`."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def simulate_run(
    cfg: SimConfig,
    seed: int,
    out: str | Path,
    n_frames: int,
    *,
    start_index: int = 0,
    progress: bool = True,
    on_frame: Callable[[SimulatedField], None] | None = None,
) -> RunReport:
    """Simulate frames ``start_index .. start_index+n_frames-1`` into ``out``.

    Frames whose three files already exist are skipped; a failing frame is recorded in
    the report and the run goes on.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_calibration(cfg, seed, out)
    _write_run_config(cfg, seed, out)
    report = RunReport()
    indices = range(start_index, start_index + n_frames)
    try:
        from tqdm import tqdm

        it = tqdm(indices, desc="simulate", unit="frame", disable=not progress)
    except ImportError:  # pragma: no cover
        it = indices
    for index in it:
        name = frame_name(seed, index)
        if all(p.exists() for p in frame_paths(out, name).values()):
            report.skipped.append(name)
            continue
        try:
            sim = simulate_field(cfg, seed, index)
            write_field(sim, out)
            if on_frame is not None:
                on_frame(sim)
        except (InputError, OSError, ValueError) as err:
            log.error("%s: %s", name, err)
            report.failed[name] = str(err)
            continue
        report.written.append(name)
    return report


def _write_run_config(cfg: SimConfig, seed: int, out: Path) -> None:
    import json

    from atd_dl.io.atomic import atomic_write_text

    doc = {"seed": seed, "atd_dl_version": __version__, "config": asdict(cfg)}
    atomic_write_text(out / "sim_config.json", json.dumps(doc, indent=2) + "\n")
