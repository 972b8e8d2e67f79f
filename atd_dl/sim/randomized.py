"""Domain-randomised fields: many cameras, PSFs, densities and defects, with truth labels.

The ``paper`` simulator (:mod:`atd_dl.sim.simulate`) reproduces one camera. A detector that
must work on any camera learns from this generator instead: every field draws its own
PSF (FWHM 1-6 px, Moffat beta 2-5, ellipticity, a FWHM gradient), noise regime (sky from
0.05 to 10^4 e-/px, read noise 1-15 e-, gain 0.5-10 e-/ADU, quantisation; 8 % photon-counting
fields with ~no read noise), star density
(~40 to ~40,000 stars with optimal SNR >= 3 per 10^6 px, clusters, near-empty fields),
galaxies, nebulosity, gradients, amplifier glow, saturated stars with bleeds, halos and
diffraction spikes, hot pixels, bad columns, cosmic rays, row banding, correlated noise
(resampled images) and satellite trails. Choices and their reasons: ``docs/simulator.md``.

Labels come from the truth, not from a catalog rule: a source pixel is one within
:func:`label_radius` of a star or compact galaxy whose expected optimal (PSF-fitting)
SNR is at least :data:`LABEL_SNR`, or on a trail. Extended galaxies, nebulosity, halos,
spikes, bleeds, cosmic rays and defects are background, so the network learns to abstain.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy import ndimage

from atd_dl.sim.psf import add_stars, psf_stamps
from atd_dl.sim.starfield import bleed_columns

__all__ = [
    "LABEL_SNR",
    "FieldPSF",
    "RandomFieldParams",
    "RandomField",
    "draw_field_params",
    "render_random_field",
    "label_radius",
    "paint_disks",
    "patch_path",
    "write_patch",
    "effective_area",
    "DENSITY_CELLS",
]

#: expected optimal SNR from which a star is a labelled source
LABEL_SNR = 3.0
#: the label cut in photon-counting fields (read noise < 0.5 e-): with a background of a few
#: photons per aperture, Poisson clumps of ~10 photons are common and look like SNR-3 stars;
#: labelling them taught the network to fire 5-10 times per 10^5 px on Poisson noise of
#: 0.2-0.5 counts/px (measured 2026-12-02), so such fields label only stars above SNR 5
LABEL_SNR_COUNTING = 5.0


def label_snr(read_noise_e: float) -> float:
    """The optimal-SNR cut above which a star is labelled, for a field's read noise (e-)."""
    return LABEL_SNR_COUNTING if read_noise_e < 0.5 else LABEL_SNR


#: stars with optimal SNR >= 3 per 10^6 px, named cells of the evaluation matrix
DENSITY_CELLS = {"empty": 2.0, "sparse": 150.0, "paper": 3000.0, "crowded": 15000.0}


@dataclass(frozen=True)
class FieldPSF:
    """Elliptical Moffat PSF with a linear FWHM gradient over the field.

    ``fwhm`` (px) at the field centre; ``grad_x``/``grad_y`` fractional FWHM change from
    the centre to the right/bottom edge; constant ellipticity ``1 - b/a`` and angle.
    Duck-types :class:`atd_dl.sim.psf.MoffatPSF` for :func:`atd_dl.sim.psf.add_stars`.
    """

    shape: tuple[int, int]
    fwhm: float
    beta: float = 3.0
    ellip: float = 0.05
    theta: float = 0.0
    grad_x: float = 0.0
    grad_y: float = 0.0

    def params(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fwhm_px, ellipticity, theta_rad)`` at positions ``x, y``."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        ny, nx = self.shape
        u = 2.0 * x / max(nx - 1, 1) - 1.0
        v = 2.0 * y / max(ny - 1, 1) - 1.0
        fwhm = self.fwhm * np.clip(1.0 + self.grad_x * u + self.grad_y * v, 0.5, 2.0)
        return fwhm, np.full_like(x, self.ellip), np.full_like(x, self.theta)


def effective_area(fwhm: float, beta: float, ellip: float = 0.0) -> tuple[float, float]:
    """``(A_eff, peak_fraction)`` of a pixel-centred star: ``1 / sum(p^2)`` (px) and ``max p``."""
    r = int(min(max(3.0 * fwhm + 3, 6), 30))
    p = psf_stamps(
        np.zeros(1),
        np.zeros(1),
        np.array([fwhm]),
        np.array([ellip]),
        np.zeros(1),
        beta=beta,
        radius=r,
        oversample=5,
    )[0].astype(np.float64)
    p /= p.sum()
    return float(1.0 / np.sum(p**2)), float(p.max())


def label_radius(fwhm: np.ndarray | float) -> np.ndarray:
    """Radius (px) of a labelled source disk: ``clip(0.4 FWHM, 1.0, 2.0)``."""
    return np.clip(0.4 * np.asarray(fwhm, dtype=np.float64), 1.0, 2.0)


@dataclass(frozen=True)
class RandomFieldParams:
    """Everything drawn for one randomised field (units in the names)."""

    shape: tuple[int, int]
    fwhm_px: float
    beta: float
    ellip: float
    theta_rad: float
    grad_x: float
    grad_y: float
    sky_e: float
    read_noise_e: float
    gain_e_per_adu: float
    bias_adu: float
    full_well_e: float
    density: float  # stars with optimal SNR >= LABEL_SNR per 10^6 px
    lf_alpha: float  # N(>F) ∝ F^-alpha
    n_bright: int  # extra bright (often saturated) stars
    cluster_frac: float  # extra cluster stars relative to the field count (0: none)
    cluster_core_px: float
    n_galaxies: int
    nebula_sigma: float  # nebulosity amplitude, background sigmas
    nebula_scale_px: float
    gradient_sigma: float
    glow_sigma: float
    hot_pixel_frac: float
    n_bad_columns: int
    cosmic_per_mpx: float
    n_trails: int
    halo_frac: float
    spikes: bool
    banding_sigma: float
    corr_sigma_px: float
    negative_frac: float = 0.0  # fraction of the star list added again as negative holes

    @property
    def noise_e(self) -> float:
        """Background noise per pixel (e-): sqrt(sky + read noise^2)."""
        return math.sqrt(self.sky_e + self.read_noise_e**2)


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_field_params(
    rng: np.random.Generator,
    shape: tuple[int, int] = (256, 256),
    *,
    fwhm: float | None = None,
    density: float | None = None,
    hard: bool | None = None,
) -> RandomFieldParams:
    """Draw a random field; ``fwhm`` / ``density`` fix those, ``hard`` forces (or forbids) defects.

    ``hard=None`` draws each defect with its own probability (the training mix).
    """
    u = rng.uniform
    fw = float(fwhm) if fwhm is not None else _loguniform(rng, 1.0, 6.0)
    if density is None:
        density = 1.0 if u() < 0.08 else _loguniform(rng, 30.0, 40_000.0)
    p = (lambda q: u() < q) if hard is None else (lambda q: bool(hard) and u() < max(q, 0.5))
    regime = u()
    if regime < 0.08:  # photon counting (EMCCD, counting detectors): ~no read noise
        sky = _loguniform(rng, 0.02, 5.0)
    elif regime < 0.25:  # read-noise limited (short exposures, fast cameras)
        sky = _loguniform(rng, 0.05, 5.0)
    elif regime < 0.75:
        sky = _loguniform(rng, 5.0, 500.0)
    else:  # deep sky-limited
        sky = _loguniform(rng, 500.0, 1.0e4)
    gain = _loguniform(rng, 0.5, 10.0)
    full_well = min(_loguniform(rng, 2.0e4, 2.0e5), 60000.0 * gain)
    # cameras digitise read noise at >= ~0.7 ADU; photon counting reads out whole photons
    read_noise = max(_loguniform(rng, 1.0, 15.0), 0.7 * gain)
    if regime < 0.08:
        gain, read_noise = 1.0, read_noise * 0.02
    return RandomFieldParams(
        shape=(int(shape[0]), int(shape[1])),
        fwhm_px=fw,
        beta=float(u(2.0, 5.0)),
        ellip=float(u(0.0, 0.25) if u() < 0.8 else u(0.25, 0.45)),
        theta_rad=float(u(0.0, np.pi)),
        grad_x=float(u(-0.2, 0.2)),
        grad_y=float(u(-0.2, 0.2)),
        sky_e=sky,
        read_noise_e=read_noise,
        gain_e_per_adu=gain,
        bias_adu=float(u(0.0, 1000.0)),
        full_well_e=full_well,
        density=float(density),
        lf_alpha=float(u(0.5, 1.0)),
        n_bright=int(rng.poisson(1.0)) if u() < 0.4 else 0,
        cluster_frac=float(u(0.5, 5.0)) if (density > 5 and u() < 0.15) else 0.0,
        cluster_core_px=_loguniform(rng, 4.0, 60.0),
        n_galaxies=int(rng.poisson(_loguniform(rng, 1.0, 20.0))) if u() < 0.35 else 0,
        nebula_sigma=_loguniform(rng, 1.0, 100.0) if p(0.25) else 0.0,
        nebula_scale_px=_loguniform(rng, 8.0, 80.0),
        gradient_sigma=float(u(0.0, 20.0)) if u() < 0.4 else 0.0,
        glow_sigma=_loguniform(rng, 3.0, 200.0) if p(0.08) else 0.0,
        hot_pixel_frac=_loguniform(rng, 1e-5, 1e-3) if p(0.4) else 0.0,
        n_bad_columns=int(rng.integers(1, 4)) if p(0.12) else 0,
        cosmic_per_mpx=_loguniform(rng, 5.0, 300.0) if p(0.4) else 0.0,
        n_trails=1 if p(0.08) else 0,
        halo_frac=float(u(0.01, 0.05)) if u() < 0.3 else 0.0,
        spikes=bool(u() < 0.3),
        banding_sigma=float(u(0.05, 0.4)) if p(0.15) else 0.0,
        # resampled / drizzled / mosaicked images (2MASS Atlas tiles: ~1.4 px)
        corr_sigma_px=float(u(0.35, 1.6)) if u() < 0.25 else 0.0,
        negative_frac=float(u(0.05, 0.5)) if p(0.15) else 0.0,
    )


@dataclass
class RandomField:
    """A rendered field: raw ADU image, saturation mask, truth table and label mask."""

    image: np.ndarray  # float32 ADU (bias included), quantised, clipped at 65535
    saturated: np.ndarray  # bool
    truth: Table
    label: np.ndarray  # uint8 0/1
    params: RandomFieldParams
    saturate_adu: float

    def header_cards(self) -> dict[str, tuple[object, str]]:
        """FITS cards describing the camera of this field."""
        p = self.params
        return {
            "GAIN": (round(p.gain_e_per_adu, 4), "[e-/ADU]"),
            "RDNOISE": (round(p.read_noise_e, 3), "[e-] read noise"),
            "SATURATE": (round(self.saturate_adu, 1), "[ADU] saturation level"),
            "SIMFWHM": (round(p.fwhm_px, 4), "[px] PSF FWHM at the field centre"),
            "SIMBETA": (round(p.beta, 3), "Moffat beta"),
            "SIMSKY": (round(p.sky_e, 3), "[e-] sky per pixel"),
            "SIMDENS": (round(p.density, 2), "stars with SNR_opt>=3 per 1e6 px"),
            "SIMPRSET": ("random", "domain-randomised generator"),
        }


# ---------------------------------------------------------------------------- sources


def _star_fluxes(
    rng: np.random.Generator, n: int, f_lo: float, f_hi: float, alpha: float
) -> np.ndarray:
    """``n`` fluxes from ``N(>F) ∝ F^-alpha`` on ``[f_lo, f_hi]`` (inverse transform)."""
    a, b = f_lo ** (-alpha), f_hi ** (-alpha)
    return (a - rng.uniform(0.0, 1.0, n) * (a - b)) ** (-1.0 / alpha)


def _positions(
    rng: np.random.Generator, n: int, shape: tuple[int, int], margin: float
) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    return rng.uniform(-margin, nx - 1 + margin, n), rng.uniform(-margin, ny - 1 + margin, n)


def _cluster_positions(
    rng: np.random.Generator, n: int, shape: tuple[int, int], core: float
) -> tuple[np.ndarray, np.ndarray]:
    """Plummer-profile positions around a random centre in the field."""
    ny, nx = shape
    cx, cy = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
    q = rng.uniform(1e-3, 0.999, n)
    r = np.minimum(core / np.sqrt(q ** (-2.0 / 3.0) - 1.0), 10.0 * core)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    return cx + r * np.cos(phi), cy + r * np.sin(phi)


def _galaxy_stamp(
    rng: np.random.Generator, re: float, fwhm: float, n_sersic: float, ellip: float
) -> np.ndarray:
    """Unit-flux Sersic galaxy convolved with a Gaussian of ``fwhm`` (px), odd square stamp."""
    radius = int(min(max(4.0 * re + 2.0 * fwhm, 4.0), 48.0))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float64)
    th = rng.uniform(0.0, np.pi)
    u = xx * np.cos(th) + yy * np.sin(th)
    v = (yy * np.cos(th) - xx * np.sin(th)) / max(1.0 - ellip, 0.2)
    r = np.hypot(u, v)
    bn = 2.0 * n_sersic - 1.0 / 3.0
    img = np.exp(-bn * ((r / re) ** (1.0 / n_sersic) - 1.0))
    img = ndimage.gaussian_filter(img, fwhm / 2.3548)
    return (img / img.sum()).astype(np.float32)


def _add_stamp(image: np.ndarray, stamp: np.ndarray, x: float, y: float) -> None:
    ny, nx = image.shape
    r = stamp.shape[0] // 2
    ix, iy = int(round(x)), int(round(y))
    x0, x1 = max(ix - r, 0), min(ix + r + 1, nx)
    y0, y1 = max(iy - r, 0), min(iy + r + 1, ny)
    if x0 >= x1 or y0 >= y1:
        return
    image[y0:y1, x0:x1] += stamp[y0 - iy + r : y1 - iy + r, x0 - ix + r : x1 - ix + r]


def _segment_distance(
    shape: tuple[int, int], x0: float, y0: float, x1: float, y1: float
) -> np.ndarray:
    """Distance (px) of every pixel centre from the segment (x0, y0)-(x1, y1)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    return np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Positive smooth random field (lognormal of a Gaussian random field), mean ~1."""
    ny, nx = shape
    lo = (max(int(ny / scale) + 3, 3), max(int(nx / scale) + 3, 3))
    g = ndimage.zoom(rng.normal(0.0, 1.0, lo), (ny / (lo[0] - 2), nx / (lo[1] - 2)), order=3)
    g = g[:ny, :nx]
    field = np.exp(1.2 * g)
    return (field / field.mean()).astype(np.float32)


# ---------------------------------------------------------------------------- render


def render_random_field(params: RandomFieldParams, rng: np.random.Generator) -> RandomField:
    """Render a randomised field; see the module docstring for what it contains."""
    p = params
    shape = p.shape
    ny, nx = shape
    psf = FieldPSF(shape, p.fwhm_px, p.beta, p.ellip, p.theta_rad, p.grad_x, p.grad_y)
    a_eff, peak_frac = effective_area(p.fwhm_px, p.beta, p.ellip)
    sigma_e = p.noise_e
    f3 = LABEL_SNR * sigma_e * math.sqrt(a_eff)  # flux at optimal SNR ~3 (sky-limited)
    f_lo = 0.5 / LABEL_SNR * f3
    f_sat = p.full_well_e / peak_frac
    f_hi = max(f_sat * 30.0, 100.0 * f3)
    area = (nx + 8.0) * (ny + 8.0)
    n3 = rng.poisson(p.density * area / 1e6)
    n_all = int(n3 * (f_lo / f3) ** (-p.lf_alpha))
    xs, ys = _positions(rng, n_all, shape, 4.0)
    flux = _star_fluxes(rng, n_all, f_lo, f_hi, p.lf_alpha)
    if p.cluster_frac > 0 and n_all > 0:
        nc = int(n_all * p.cluster_frac)
        cx, cy = _cluster_positions(rng, nc, shape, p.cluster_core_px)
        xs, ys = np.concatenate([xs, cx]), np.concatenate([ys, cy])
        flux = np.concatenate([flux, _star_fluxes(rng, nc, f_lo, f_hi, p.lf_alpha)])
    if p.n_bright:
        bx, by = _positions(rng, p.n_bright, shape, 0.0)
        bf = np.exp(rng.uniform(np.log(0.3 * f_sat), np.log(100.0 * f_sat), p.n_bright))
        xs, ys, flux = (
            np.concatenate([xs, bx]),
            np.concatenate([ys, by]),
            np.concatenate([flux, bf]),
        )

    sky = np.full(shape, p.sky_e, dtype=np.float32)
    if p.gradient_sigma:
        phi = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
        ramp = (xx / max(nx - 1, 1) - 0.5) * np.cos(phi) + (yy / max(ny - 1, 1) - 0.5) * np.sin(phi)
        sky += np.float32(p.gradient_sigma * sigma_e) * ramp
    if p.glow_sigma:
        yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
        gx, gy = rng.choice([0.0, nx - 1.0]), rng.choice([0.0, ny - 1.0])
        scale = rng.uniform(10.0, 80.0)
        sky += np.float32(p.glow_sigma * sigma_e) * np.exp(-np.hypot(xx - gx, yy - gy) / scale)
    if p.nebula_sigma:
        sky += np.float32(p.nebula_sigma * sigma_e) * _smooth_field(rng, shape, p.nebula_scale_px)
    sky = np.maximum(sky, 0.0)
    expected = sky.copy()

    f3box = add_stars(expected, xs, ys, flux, psf)
    fwhm_at, _, _ = psf.params(xs, ys)
    bright = flux > f_sat / 3.0
    if p.halo_frac and bright.any():
        _add_halos(expected, xs[bright], ys[bright], flux[bright] * p.halo_frac, 3.0 * p.fwhm_px)
    if p.spikes and bright.any():
        _add_spikes(expected, rng, xs[bright], ys[bright], flux[bright], f_sat, p.fwhm_px)

    gal_rows, gal_label = _add_galaxies(expected, rng, p, sigma_e, a_eff)
    trail_rows, trail_label = _add_trails(expected, rng, p, sigma_e)

    # noise, detector
    charge = rng.poisson(np.maximum(expected, 0.0)).astype(np.float32)
    _add_cosmics(charge, rng, p, sigma_e)
    bleed_columns(charge, p.full_well_e)
    charge += rng.normal(0.0, p.read_noise_e, shape).astype(np.float32)
    if p.banding_sigma:
        charge += rng.normal(0.0, p.banding_sigma * sigma_e, (ny, 1)).astype(np.float32)
    _add_defects(charge, rng, p, sigma_e)
    if p.negative_frac:  # over-subtracted residuals: negative stars and blobs, not sources
        neg = np.zeros(shape, dtype=np.float32)
        k = rng.random(len(flux)) < p.negative_frac
        nx_, ny_ = _positions(rng, int(k.sum()), shape, 4.0)
        add_stars(neg, nx_, ny_, flux[k], psf)
        charge -= neg
    adu = p.bias_adu + charge / np.float32(p.gain_e_per_adu)
    if p.corr_sigma_px:
        adu = ndimage.gaussian_filter(adu, p.corr_sigma_px)
    saturate_adu = min(65535.0, p.bias_adu + p.full_well_e / p.gain_e_per_adu)
    image = np.clip(np.round(adu), 0, 65535).astype(np.float32)
    saturated = image >= np.float32(saturate_adu - 0.5)
    image[saturated] = np.float32(round(saturate_adu))

    snr_opt = flux / np.sqrt(flux + a_eff * sigma_e**2)
    snr_box = f3box / np.sqrt(f3box + 9.0 * sigma_e**2)
    on = (xs >= -0.5) & (xs < nx - 0.5) & (ys >= -0.5) & (ys < ny - 0.5)
    core = _saturated_core_radius(flux, fwhm_at, p.beta, peak_frac, p.full_well_e)
    r_lab = np.maximum(label_radius(fwhm_at), core + 0.5 * (core > 0))
    lab = snr_opt >= label_snr(p.read_noise_e)
    label = np.zeros(shape, dtype=bool)
    paint_disks(label, xs[lab], ys[lab], r_lab[lab])
    label |= gal_label | trail_label

    truth = _truth_table(
        xs[on],
        ys[on],
        flux[on],
        snr_box[on],
        snr_opt[on],
        lab[on],
        core[on] > 0,
        gal_rows,
        trail_rows,
        label_snr(p.read_noise_e),
    )
    truth.meta.update({"generator": "random", "pixel": "0-based", **_meta(p)})
    return RandomField(image, saturated, truth, label.astype(np.uint8), p, saturate_adu)


def _meta(p: RandomFieldParams) -> dict:
    d = asdict(p)
    d["shape"] = list(p.shape)
    return d


def _saturated_core_radius(
    flux: np.ndarray, fwhm: np.ndarray, beta: float, peak_frac: float, full_well: float
) -> np.ndarray:
    """Radius (px) inside which a Moffat star exceeds the full well (0 when it does not)."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    ratio = flux * peak_frac / full_well
    return np.where(ratio > 1.0, alpha * np.sqrt(np.maximum(ratio, 1.0) ** (1.0 / beta) - 1.0), 0.0)


def paint_disks(label: np.ndarray, x: np.ndarray, y: np.ndarray, r: np.ndarray) -> None:
    """Set pixels whose centre lies within ``r`` of ``(x, y)`` (vectorised by radius)."""
    if len(x) == 0:
        return
    ny, nx = label.shape
    rmax = int(np.ceil(r.max()))
    off = np.arange(-rmax, rmax + 1)
    step = 20000
    flat = label.reshape(-1)
    for s in range(0, len(x), step):
        xx, yy, rr = x[s : s + step], y[s : s + step], r[s : s + step]
        ix, iy = np.round(xx).astype(np.int64), np.round(yy).astype(np.int64)
        px = ix[:, None, None] + off[None, None, :]
        py = iy[:, None, None] + off[None, :, None]
        d2 = (px - xx[:, None, None]) ** 2 + (py - yy[:, None, None]) ** 2
        inside = (d2 <= (rr**2)[:, None, None]) & (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
        flat[np.broadcast_to(py * nx + px, d2.shape)[inside]] = True


def _add_halos(
    expected: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, core_px: float
) -> None:
    """Wide scattered-light halos ``(1 + (r/core)^2)^-1.5`` tapered smoothly to 0 at 60 px."""
    ny, nx = expected.shape
    rmax = 60
    yy, xx = np.mgrid[-rmax : rmax + 1, -rmax : rmax + 1].astype(np.float32)
    for xi, yi, fi in zip(x, y, flux, strict=True):
        ix, iy = int(round(xi)), int(round(yi))
        r = np.hypot(xx - (xi - ix), yy - (yi - iy))
        prof = (1.0 + (r / core_px) ** 2) ** -1.5 * np.cos(np.clip(r / rmax, 0, 1) * np.pi / 2) ** 2
        _add_stamp(expected, (prof * (fi / prof.sum())).astype(np.float32), xi, yi)


def _add_spikes(
    expected: np.ndarray,
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    f_sat: float,
    fwhm: float,
) -> None:
    """Four diffraction spikes per bright star (thin lines, intensity falling as 1/r)."""
    ny, nx = expected.shape
    angle = rng.uniform(0.0, np.pi / 2)
    for xi, yi, fi in zip(x, y, flux, strict=True):
        length = min(8.0 * fwhm * math.sqrt(fi / f_sat), 0.6 * max(nx, ny))
        if length < 3:
            continue
        t = np.arange(1.0, length, 0.5)
        amp = 0.002 * fi / t
        for k in range(4):
            a = angle + k * np.pi / 2
            px = np.round(xi + t * np.cos(a)).astype(int)
            py = np.round(yi + t * np.sin(a)).astype(int)
            ok = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
            np.add.at(expected, (py[ok], px[ok]), amp[ok].astype(np.float32))


def _add_galaxies(
    expected: np.ndarray,
    rng: np.random.Generator,
    p: RandomFieldParams,
    sigma_e: float,
    a_eff: float,
) -> tuple[list[tuple], np.ndarray]:
    """Sersic galaxies; compact ones (r_e < 0.5 FWHM) are labelled sources, others not."""
    label = np.zeros(p.shape, dtype=bool)
    rows: list[tuple] = []
    ny, nx = p.shape
    for _ in range(p.n_galaxies):
        re = _loguniform(rng, 0.3, 15.0)
        n_s = float(rng.choice([1.0, 4.0])) if rng.uniform() < 0.7 else float(rng.uniform(0.5, 4))
        stamp = _galaxy_stamp(rng, re, p.fwhm_px, n_s, float(rng.uniform(0.0, 0.7)))
        area = max(a_eff, math.pi * (re + p.fwhm_px) ** 2)
        snr = _loguniform(rng, 3.0, 3000.0)
        flux = snr * sigma_e * math.sqrt(area) + snr**2
        x, y = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        _add_stamp(expected, stamp * np.float32(flux), x, y)
        compact = re < 0.5 * p.fwhm_px
        snr_opt = flux / math.sqrt(flux + area * sigma_e**2)
        if compact and snr_opt >= label_snr(p.read_noise_e):
            paint_disks(label, np.array([x]), np.array([y]), label_radius(np.array([p.fwhm_px])))
        rows.append((x, y, flux, snr_opt, "galaxy" if not compact else "compact", re))
    return rows, label


def _add_trails(
    expected: np.ndarray, rng: np.random.Generator, p: RandomFieldParams, sigma_e: float
) -> tuple[list[tuple], np.ndarray]:
    """Satellite / meteor trails: PSF-wide lines, labelled as sources (flagged later as trails)."""
    label = np.zeros(p.shape, dtype=bool)
    rows: list[tuple] = []
    ny, nx = p.shape
    for _ in range(p.n_trails):
        x0, y0 = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        length = rng.uniform(20.0, 1.5 * max(nx, ny))
        ang = rng.uniform(0, np.pi)
        x1, y1 = x0 + length * np.cos(ang), y0 + length * np.sin(ang)
        d = _segment_distance(p.shape, x0, y0, x1, y1)
        s = p.fwhm_px / 2.3548
        peak = _loguniform(rng, 1.5, 50.0) * sigma_e
        expected += (peak * np.exp(-0.5 * (d / s) ** 2)).astype(np.float32)
        label |= d <= label_radius(p.fwhm_px)
        xm, ym = np.clip((x0 + x1) / 2, 0, nx - 1), np.clip((y0 + y1) / 2, 0, ny - 1)
        rows.append(
            (float(xm), float(ym), peak * length * s * 2.5, peak / sigma_e, "trail", length)
        )
    return rows, label


def _add_cosmics(
    charge: np.ndarray, rng: np.random.Generator, p: RandomFieldParams, sigma_e: float
) -> None:
    """Sharp (not PSF-convolved) hits and short tracks."""
    ny, nx = charge.shape
    n = rng.poisson(p.cosmic_per_mpx * nx * ny / 1e6)
    for _ in range(n):
        x0, y0 = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        length = 0.0 if rng.uniform() < 0.5 else rng.uniform(1.0, 12.0)
        ang = rng.uniform(0, 2 * np.pi)
        t = np.linspace(0.0, 1.0, max(int(length * 2), 1) + 1)
        px = np.clip(np.round(x0 + t * length * np.cos(ang)), 0, nx - 1).astype(int)
        py = np.clip(np.round(y0 + t * length * np.sin(ang)), 0, ny - 1).astype(int)
        pix = np.unique(py * nx + px)
        dep = sigma_e * np.exp(rng.uniform(np.log(5.0), np.log(500.0), len(pix)))
        charge.reshape(-1)[pix] += dep.astype(np.float32)


def _add_defects(
    charge: np.ndarray, rng: np.random.Generator, p: RandomFieldParams, sigma_e: float
) -> None:
    """Hot pixels and bad (dead or hot) columns."""
    ny, nx = charge.shape
    if p.hot_pixel_frac:
        n = rng.poisson(p.hot_pixel_frac * nx * ny)
        idx = rng.integers(0, nx * ny, n)
        charge.reshape(-1)[idx] += (
            sigma_e * np.exp(rng.uniform(np.log(3), np.log(1000), n))
        ).astype(np.float32)
    for _ in range(p.n_bad_columns):
        col = int(rng.integers(0, nx))
        y0 = int(rng.integers(0, ny)) if rng.uniform() < 0.5 else 0
        if rng.uniform() < 0.5:
            charge[y0:, col] = rng.normal(0.0, p.read_noise_e, ny - y0)  # dead
        else:
            charge[y0:, col] += np.float32(rng.uniform(3.0, 50.0) * sigma_e)


def _truth_table(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    snr_box: np.ndarray,
    snr_opt: np.ndarray,
    labelled: np.ndarray,
    saturated: np.ndarray,
    galaxies: list[tuple],
    trails: list[tuple],
    label_cut: float = LABEL_SNR,
) -> Table:
    """Truth: stars, then galaxies and trails (``kind``); ``snr_true`` = 3x3-box SNR;
    compact galaxies and trails are labelled above ``label_cut`` (optimal SNR)."""
    extra = galaxies + trails
    ex = np.array([r[:4] for r in extra], dtype=np.float64).reshape(-1, 4)
    kinds = np.array(["star"] * len(x) + [r[4] for r in extra], dtype="U7")
    t = Table()
    t["id"] = np.arange(len(kinds), dtype=np.int64)
    t["x"] = np.round(np.concatenate([x, ex[:, 0]]), 5)
    t["y"] = np.round(np.concatenate([y, ex[:, 1]]), 5)
    t["flux_e"] = np.round(np.concatenate([flux, ex[:, 2]]), 3)
    t["snr_true"] = np.round(np.concatenate([snr_box, np.full(len(ex), np.nan)]), 5)
    t["snr_opt"] = np.round(np.concatenate([snr_opt, ex[:, 3]]), 5)
    t["kind"] = kinds
    lab_extra = np.array([r[4] in ("compact", "trail") and r[3] >= label_cut for r in extra], bool)
    t["labelled"] = np.concatenate([labelled, lab_extra])
    t["saturated"] = np.concatenate([saturated, np.zeros(len(ex), bool)])
    t["x"].unit = t["y"].unit = "pix"
    t["flux_e"].unit = "electron"
    t["snr_true"].description = "expected 3x3-box SNR (stars; NaN for galaxies and trails)"
    t["snr_opt"].description = "expected optimal (PSF-weighted) SNR"
    return t


# ---------------------------------------------------------------------------- samples


def training_sample(
    seed: int, index: int, size: int = 256, **draw: object
) -> dict[str, np.ndarray]:
    """One training patch: ``planes`` [2, size, size] float16 (the detector's input),
    ``label`` [size, size] uint8, ``points`` [N, 2] float32 (x, y of labelled sources).

    Fully determined by ``(seed, index)``; ``draw`` goes to :func:`draw_field_params`.
    """
    from atd_dl.prep.network_input import frame_significance

    rng = np.random.default_rng([int(seed), int(index), 7919])
    params = draw_field_params(rng, (size, size), **draw)  # type: ignore[arg-type]
    field = render_random_field(params, rng)
    inp = frame_significance(field.image, field.saturated, field.saturated)
    t = field.truth
    lab = np.asarray(t["labelled"], bool) & np.isin(np.asarray(t["kind"]), ["star", "compact"])
    points = np.stack([np.asarray(t["x"])[lab], np.asarray(t["y"])[lab]], axis=1)
    return {
        "planes": inp.planes.astype(np.float16),
        "label": field.label,
        "points": points.astype(np.float32).reshape(-1, 2),
    }


def patch_path(folder: str | os.PathLike, seed: int, index: int) -> Path:
    """The file of training patch ``index`` of run ``seed``: ``<folder>/patch_<seed>_<index>.npz``
    (the name every patch writer uses and :mod:`atd_dl.lit.random_data` reads)."""
    return Path(folder) / f"patch_{seed}_{index:06d}.npz"


def write_patch(path: str | os.PathLike, sample: dict[str, np.ndarray]) -> None:
    """Write one training patch (``planes``, ``label``, ``points`` of ``sample``, as
    :func:`training_sample` returns them) to ``path``, atomically, compressed."""
    from atd_dl.io.atomic import atomic_output

    with atomic_output(Path(path)) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, planes=sample["planes"], label=sample["label"], points=sample["points"]
        )


def write_training_set(
    out: str | os.PathLike,
    n: int,
    *,
    seed: int,
    size: int = 256,
    start: int = 0,
    progress: bool = True,
) -> int:
    """Write ``n`` patches ``<out>/patch_<seed>_<index>.npz`` (existing ones are kept).

    Returns the number written. Each file is written atomically.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    it: Iterable[int] = range(start, start + n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"patches {folder.name}", unit="patch")
    for index in it:
        path = patch_path(folder, seed, index)
        if path.exists():
            continue
        write_patch(path, training_sample(seed, index, size))
        written += 1
    return written


# ---------------------------------------------------------------------------- frames


def random_frame_name(seed: int, index: int) -> str:
    """File stem of randomised frame ``index`` of run ``seed``."""
    return f"rnd_s{seed}_{index:04d}"


def write_random_frames(
    out: str | os.PathLike,
    n: int,
    *,
    seed: int,
    size: int = 1600,
    start: int = 0,
    fwhm: float | None = None,
    density: float | None = None,
    hard: bool | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write randomised frames ``<out>/frames/<name>.fits`` (uint16, header with GAIN,
    RDNOISE, SATURATE) and their truth ``<out>/truth/<name>.ecsv``; existing frames are kept.

    ``fwhm``, ``density`` (stars with optimal SNR >= 3 per 10^6 px, see
    :data:`DENSITY_CELLS`) and ``hard`` fix those draws (:func:`draw_field_params`).
    Frame ``k`` depends only on ``(seed, k)`` and the fixed values.
    """
    from astropy.io import fits

    from atd_dl.sim.simulate import write_raw_fits, write_table

    folder = Path(out)
    written = []
    it: Iterable[int] = range(start, start + n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="simulate random", unit="frame")
    for index in it:
        name = random_frame_name(seed, index)
        fpath = folder / "frames" / f"{name}.fits"
        if fpath.exists():
            continue
        rng = np.random.default_rng([int(seed), int(index), 104729])
        params = draw_field_params(rng, (size, size), fwhm=fwhm, density=density, hard=hard)
        field = render_random_field(params, rng)
        header = fits.Header()
        header["OBJECT"] = (name, "domain-randomised simulated field")
        header["EXPTIME"] = (1.0, "[s] nominal")
        header["BUNIT"] = ("ADU", "raw counts, bias included")
        for key, (value, comment) in field.header_cards().items():
            header[key] = (value, comment)
        header["SIMSEED"] = (seed, "simulation run seed")
        header["SIMINDX"] = (index, "frame index within the run")
        write_table(folder / "truth" / f"{name}.ecsv", field.truth)
        write_raw_fits(fpath, field.image.astype(np.uint16), header)
        written.append(fpath)
    return written
