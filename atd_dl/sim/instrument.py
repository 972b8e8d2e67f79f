"""Simulated camera and optics: bias, dark current with hot pixels, vignetting, WCS, pointings.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``. Fixed-pattern
structures (bias columns, hot pixels) depend only on the run seed, so every frame of a run
shares one camera, as the master bias/dark written beside the frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS, Sip

from atd_dl.sim.config import SimConfig

# spawn keys of the independent random streams derived from the run seed
STREAM_CAMERA = 0
STREAM_FRAME = 1
STREAM_POINTING = 2


def stream(seed: int, *key: int) -> np.random.Generator:
    """Independent random generator for ``(seed, key...)`` (NumPy ``SeedSequence`` spawn key)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(key)))


@dataclass(frozen=True)
class Camera:
    """Fixed per-camera maps and the masters an observer would have built from them.

    ``bias_adu``: true bias level per pixel; ``dark_rate_e_s``: dark current per pixel
    (hot pixels included); ``master_bias`` (ADU) and ``master_dark`` (ADU, bias-subtracted,
    for an exposure of ``exptime_s``) are averages of ``master_n_combined`` noisy frames.
    """

    bias_adu: np.ndarray
    dark_rate_e_s: np.ndarray
    hot_y: np.ndarray
    hot_x: np.ndarray
    master_bias: np.ndarray
    master_dark: np.ndarray
    exptime_s: float


def make_camera(cfg: SimConfig, seed: int) -> Camera:
    """Build the run's camera (bias structure, dark current, hot pixels) and its masters."""
    rng = stream(seed, STREAM_CAMERA)
    n = cfg.size
    cols = rng.normal(0.0, cfg.bias_column_sigma_adu, n)
    ramp = cfg.bias_gradient_adu * (np.arange(n) / max(n - 1, 1) - 0.5)
    bias = np.broadcast_to((cfg.bias_level_adu + cols + ramp)[None, :], (n, n)).astype(np.float32)
    dark = np.full((n, n), cfg.dark_rate_e_s, dtype=np.float32)
    n_hot = min(cfg.n_hot_pixels, n * n)
    flat_idx = rng.choice(n * n, size=n_hot, replace=False)
    hot_y, hot_x = np.divmod(flat_idx, n)
    lo, hi = np.log10(cfg.hot_rate_min_e_s), np.log10(cfg.hot_rate_max_e_s)
    dark[hot_y, hot_x] = 10.0 ** rng.uniform(lo, hi, n_hot)
    t = cfg.exptime_s
    g = cfg.gain_e_per_adu
    master_bias = bias.copy()
    master_dark = (dark * t / g).astype(np.float32)
    if cfg.master_n_combined > 0:
        k = np.sqrt(cfg.master_n_combined)
        master_bias += rng.normal(0.0, cfg.read_noise_e / g / k, (n, n)).astype(np.float32)
        sigma_dark = np.sqrt(dark * t + 2.0 * cfg.read_noise_e**2) / g / k
        master_dark += (rng.standard_normal((n, n)) * sigma_dark).astype(np.float32)
    return Camera(bias, dark, hot_y, hot_x, master_bias, master_dark, t)


def vignetting(cfg: SimConfig) -> np.ndarray:
    """Relative throughput map ``[y, x]`` (1 on axis), cos^4 of an effective field angle.

    The effective focal length is chosen so the corner value equals ``vignetting_corner``
    (a fast lens vignettes much more than the pure cos^4 law of its true field angle).
    """
    n = cfg.size
    c = (n - 1) / 2.0
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    r = np.hypot(xx - c, yy - c)
    v_c = float(np.clip(cfg.vignetting_corner, 1e-3, 1.0))
    if v_c >= 1.0:
        return np.ones((n, n), dtype=np.float32)
    phi_c = np.arccos(v_c**0.25)
    f_eff = np.hypot(c, c) / np.tan(phi_c)
    return (np.cos(np.arctan(r / f_eff)) ** 4).astype(np.float32)


def half_diagonal_deg(cfg: SimConfig) -> float:
    """Angular distance (deg) from the field centre to a corner, distortion included."""
    r_px = np.hypot(cfg.size, cfg.size) / 2.0 + abs(cfg.sip_corner_px) + 1.0
    return float(np.degrees(np.arctan(np.radians(r_px * cfg.pixel_scale_arcsec / 3600.0))))


def isolated_pointings(cfg: SimConfig, seed: int) -> np.ndarray:
    """Field centres ``[N, 2]`` (ra, dec deg) whose frames can never overlap on the sky.

    Centres lie on declination bands spaced by more than a frame diagonal and, within a
    band, at RA steps giving the same great-circle separation, so any two frames are
    separated by more than the sum of their half-diagonals. The RA phase of each band and
    the order of the list come from the run seed: frame ``k`` of a run uses row ``k``.
    """
    rng = stream(seed, STREAM_POINTING)
    sep = 2.0 * half_diagonal_deg(cfg) + 0.2
    kmax = int(np.floor(cfg.dec_limit_deg / sep))
    centres = []
    for k in range(-kmax, kmax + 1):
        dec = k * sep
        cd, sd = np.cos(np.radians(dec)), np.sin(np.radians(dec))
        cos_dra = (np.cos(np.radians(sep)) - sd**2) / cd**2
        if cos_dra <= -1.0:
            n_ra = 1
        else:
            n_ra = int(np.floor(360.0 / np.degrees(np.arccos(np.clip(cos_dra, -1.0, 1.0)))))
            n_ra = max(n_ra, 1)
        phase = rng.uniform(0.0, 360.0)
        ra = (phase + np.arange(n_ra) * 360.0 / n_ra) % 360.0
        centres.append(np.column_stack([ra, np.full(n_ra, dec)]))
    out = np.concatenate(centres)
    return out[rng.permutation(len(out))]


def make_wcs(cfg: SimConfig, ra0: float, dec0: float, rotation_deg: float) -> WCS:
    """TAN (or TAN-SIP) WCS with a CD matrix: east left, north up, rotated by ``rotation_deg``.

    The reference pixel is the frame centre; ``sip_corner_px`` adds a radial (barrel
    for > 0) distortion of that many pixels at the corner.
    """
    n = cfg.size
    w = WCS(naxis=2)
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.crval = [ra0, dec0]
    s = cfg.pixel_scale_arcsec / 3600.0
    t = np.radians(rotation_deg)
    w.wcs.cd = s * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.wcs.cunit = ["deg", "deg"]
    if cfg.sip_corner_px:
        r_c = np.hypot(n, n) / 2.0
        k = cfg.sip_corner_px / r_c**3
        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        a[3, 0] = a[1, 2] = k  # dx = k u (u^2 + v^2)
        b[2, 1] = b[0, 3] = k  # dy = k v (u^2 + v^2)
        w.sip = Sip(a, b, -a, -b, w.wcs.crpix)
        w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.set()
    return w
