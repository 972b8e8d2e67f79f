"""Random star fields, moving-object trails and cosmic rays for the simulator.

Positions are 0-based pixel coordinates (pixel centre = integer). Magnitudes are catalog
(G-like) magnitudes; fluxes in electrons follow from the zeropoint and exposure time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from atd_dl.sim.config import SimConfig


@dataclass
class Stars:
    """Star list: pixel positions, magnitudes, proper motions (mas/yr), pair flags."""

    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    pmra: np.ndarray
    pmdec: np.ndarray
    companion: np.ndarray  # bool: star was placed as the close companion of another

    def __len__(self) -> int:
        return len(self.x)

    def select(self, keep: np.ndarray) -> Stars:
        """Return the subset ``keep`` (boolean mask or index array)."""
        return Stars(*(getattr(self, f)[keep] for f in Stars.__dataclass_fields__))


def mag_to_flux_e(mag: np.ndarray | float, cfg: SimConfig) -> np.ndarray:
    """Electrons collected in one exposure (before vignetting) from magnitude ``mag``."""
    return cfg.exptime_s * 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - cfg.zeropoint_mag))


def flux_e_to_mag(flux_e: np.ndarray | float, cfg: SimConfig) -> np.ndarray:
    """Inverse of :func:`mag_to_flux_e`."""
    return cfg.zeropoint_mag - 2.5 * np.log10(np.asarray(flux_e, dtype=np.float64) / cfg.exptime_s)


def sample_magnitudes(
    rng: np.random.Generator, n: int, m_bright: float, m_faint: float, slope: float
) -> np.ndarray:
    """Draw ``n`` magnitudes from ``N(<m) ∝ 10^(slope·m)`` on ``[m_bright, m_faint]``."""
    lo, hi = 10.0 ** (slope * m_bright), 10.0 ** (slope * m_faint)
    return np.log10(lo + rng.uniform(0.0, 1.0, n) * (hi - lo)) / slope


def expected_star_count(cfg: SimConfig, m_faint: float, area_deg2: float) -> float:
    """Mean number of stars in ``[mag_bright, m_faint]`` over ``area_deg2``."""
    a = cfg.lf_slope
    frac = 10.0 ** (a * (m_faint - cfg.density_ref_mag)) - 10.0 ** (
        a * (cfg.mag_bright - cfg.density_ref_mag)
    )
    return cfg.density * area_deg2 * max(frac, 0.0)


def _uniform_positions(
    rng: np.random.Generator, n: int, lo: float, hi: float, gradient: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions on the square ``[lo, hi)^2`` with a linear density ramp (rejection)."""
    phi = rng.uniform(0.0, 2.0 * np.pi)
    c = (lo + hi) / 2.0
    half = (hi - lo) / 2.0
    xs, ys = [np.zeros(0)], [np.zeros(0)]
    got = 0
    while got < n:
        m = int((n - got) * (1.0 + gradient) + 16)
        x = rng.uniform(lo, hi, m)
        y = rng.uniform(lo, hi, m)
        ramp = ((x - c) * np.cos(phi) + (y - c) * np.sin(phi)) / (2.0 * half * np.sqrt(2.0))
        keep = rng.uniform(0.0, 1.0 + gradient / 2.0, m) < 1.0 + gradient * ramp
        xs.append(x[keep])
        ys.append(y[keep])
        got += int(keep.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def draw_stars(cfg: SimConfig, rng: np.random.Generator, m_faint: float, m_limit: float) -> Stars:
    """Random stars over the frame plus ``margin_px`` (luminosity function, pairs, pm).

    ``m_limit`` (the SNR-2 magnitude) is used to give the high-proper-motion stars
    detectable magnitudes.
    """
    n = cfg.size
    lo, hi = -0.5 - cfg.margin_px, n - 0.5 + cfg.margin_px
    area = ((hi - lo) * cfg.pixel_scale_arcsec / 3600.0) ** 2
    count = int(rng.poisson(expected_star_count(cfg, m_faint, area)))
    mag = sample_magnitudes(rng, count, cfg.mag_bright, m_faint, cfg.lf_slope)
    x, y = _uniform_positions(rng, count, lo, hi, cfg.density_gradient)
    companion = np.zeros(count, dtype=bool)
    if not cfg.isolated:
        n_extra = int(rng.poisson(cfg.n_bright_extra))
        xe, ye = _uniform_positions(rng, n_extra, lo, hi, 0.0)
        x = np.concatenate([x, xe])
        y = np.concatenate([y, ye])
        mag = np.concatenate([mag, rng.uniform(1.5, 4.0, n_extra)])
        companion = np.concatenate([companion, np.zeros(n_extra, dtype=bool)])
        n_pair = int(rng.binomial(len(x), cfg.pair_fraction))
        prim = rng.choice(len(x), size=n_pair, replace=False)
        sep = rng.uniform(*cfg.pair_sep_px, n_pair)
        ang = rng.uniform(0.0, 2.0 * np.pi, n_pair)
        x = np.concatenate([x, x[prim] + sep * np.cos(ang)])
        y = np.concatenate([y, y[prim] + sep * np.sin(ang)])
        mag = np.concatenate([mag, mag[prim] + rng.uniform(0.0, cfg.pair_dmag_max, n_pair)])
        companion = np.concatenate([companion, np.ones(n_pair, dtype=bool)])
    total = len(x)
    pmra = rng.normal(0.0, cfg.pm_sigma_mas_yr, total)
    pmdec = rng.normal(0.0, cfg.pm_sigma_mas_yr, total)
    candidates = np.flatnonzero(mag < m_limit - 0.5)
    n_high = min(cfg.n_high_pm, len(candidates))
    if n_high:
        hp = rng.choice(candidates, size=n_high, replace=False)
        speed = 10.0 ** rng.uniform(2.0, 3.0, n_high)
        pa = rng.uniform(0.0, 2.0 * np.pi, n_high)
        pmra[hp] = speed * np.sin(pa)
        pmdec[hp] = speed * np.cos(pa)
    stars = Stars(x, y, mag, pmra, pmdec, companion)
    if cfg.isolated:
        stars = stars.select(isolate(stars.x, stars.y, stars.mag, cfg.min_separation_px))
    return stars


def isolate(x: np.ndarray, y: np.ndarray, mag: np.ndarray, min_sep: float) -> np.ndarray:
    """Indices of stars kept so that no two lie closer than ``min_sep`` px (brightest win)."""
    if len(x) == 0 or min_sep <= 0:
        return np.arange(len(x))
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(min_sep, output_type="ndarray")
    if len(pairs) == 0:
        return np.arange(len(x))
    # neighbour lists in CSR form
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    starts = np.searchsorted(both[:, 0], np.arange(len(x) + 1))
    keep = np.ones(len(x), dtype=bool)
    for i in np.argsort(mag, kind="stable"):
        if keep[i]:
            keep[both[starts[i] : starts[i + 1], 1]] = False
            keep[i] = True
    return np.flatnonzero(keep)


@dataclass
class Trail:
    """A moving-object streak from ``(x0, y0)`` to ``(x1, y1)`` with total flux ``flux_e``."""

    x0: float
    y0: float
    x1: float
    y1: float
    mag: float

    @property
    def length(self) -> float:
        return float(np.hypot(self.x1 - self.x0, self.y1 - self.y0))

    @property
    def angle_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.y1 - self.y0, self.x1 - self.x0)))

    def points(self, step: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
        """Points along the streak every ``step`` px (for rendering as a PSF line)."""
        k = max(int(np.ceil(self.length / step)), 1) + 1
        t = np.linspace(0.0, 1.0, k)
        return self.x0 + t * (self.x1 - self.x0), self.y0 + t * (self.y1 - self.y0)


def draw_trails(cfg: SimConfig, rng: np.random.Generator) -> list[Trail]:
    """Random satellite / asteroid trails (uniform over the frame, any direction)."""
    if cfg.isolated:
        return []
    n = cfg.size
    out = []
    for _ in range(int(rng.poisson(cfg.trail_rate))):
        length = rng.uniform(*cfg.trail_length_px)
        ang = rng.uniform(0.0, np.pi)
        xm, ym = rng.uniform(0.1 * n, 0.9 * n, 2)
        dx, dy = 0.5 * length * np.cos(ang), 0.5 * length * np.sin(ang)
        out.append(Trail(xm - dx, ym - dy, xm + dx, ym + dy, float(rng.uniform(*cfg.trail_mag))))
    return out


def add_cosmic_rays(
    charge: np.ndarray, cfg: SimConfig, rng: np.random.Generator
) -> list[tuple[float, float, float, float]]:
    """Deposit cosmic-ray hits/tracks (sharp, not PSF-convolved) into ``charge`` (e-).

    Returns ``(x0, y0, length_px, total_e)`` per event.
    """
    if cfg.isolated:
        return []
    ny, nx = charge.shape
    events = []
    for _ in range(int(rng.poisson(cfg.cosmic_rate))):
        x0, y0 = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        length = 0.0 if rng.uniform() < 0.5 else rng.uniform(1.0, 15.0)
        ang = rng.uniform(0.0, 2.0 * np.pi)
        k = max(int(np.ceil(length / 0.5)), 1) + 1
        t = np.linspace(0.0, 1.0, k)
        px = np.clip(np.round(x0 + t * length * np.cos(ang)), 0, nx - 1).astype(int)
        py = np.clip(np.round(y0 + t * length * np.sin(ang)), 0, ny - 1).astype(int)
        pix = np.unique(py * nx + px)
        dep = rng.uniform(300.0, 5000.0, len(pix))
        charge.reshape(-1)[pix] += dep.astype(charge.dtype)
        events.append((float(x0), float(y0), float(length), float(dep.sum())))
    return events


def bleed_columns(charge: np.ndarray, full_well: float) -> int:
    """Move charge above ``full_well`` along its column (half up, half down), in place.

    Returns the number of columns that bled. Loops only over the few saturated columns.
    """
    cols = np.unique(np.nonzero(charge > full_well)[1])
    ny = charge.shape[0]
    for col in cols:
        c = charge[:, col].astype(np.float64)
        over = np.flatnonzero(c > full_well)
        excess = float((c[over] - full_well).sum())
        c[over] = full_well
        for direction, start, amount in (
            (-1, over.min() - 1, excess / 2.0),
            (1, over.max() + 1, excess / 2.0),
        ):
            j = start
            while amount > 0 and 0 <= j < ny:
                room = max(full_well - c[j], 0.0)
                take = min(room, amount)
                c[j] += take
                amount -= take
                j += direction
        charge[:, col] = c.astype(charge.dtype)
    return len(cols)
