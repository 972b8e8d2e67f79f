"""Simulated labelled stamps for the visual-binary classifier.

No labelled survey stamps can be downloaded, so training sets are simulated. Each
*system* is a target star that is either single (label 0) or has a companion within the
binary radius (label 1, geometric truth: it does not matter whether the pair is
resolved). A system is observed in ``views_per_source`` survey-like *views* (pixel
scale, seeing, PSF shape, sky and noise drawn per view), like one catalogue source seen
by several surveys in Gezer et al.; all views of a system share its ``group`` id so that
splits never put one system in two subsets.

Per view the scene is rendered at the survey's native pixel scale with the project's
pixel-integrated Moffat renderer (:func:`atd_dl.sim.psf.psf_stamps`), Poisson + read
noise is added, and the network stamp is cut with :func:`~atd_dl.binaries.stamps.cut_stamps`
on the common angular grid — the same path real frames take. Nuisances: unrelated
neighbours outside the radius (a gap of ``neighbour_gap`` x radius keeps them off the
boundary), PSF ellipticity up to ``ellip_max``, centring jitter, per-band colours.

Units: angles in arcsec, fluxes in electrons, pixel positions 0-based (centre = integer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from atd_dl.binaries.stamps import StampGeometry, StampSet, cut_stamps, normalize_stamps
from atd_dl.sim.psf import psf_stamps


@dataclass(frozen=True)
class SurveyProfile:
    """Survey-like observing conditions: native pixel scale (arcsec/px), seeing FWHM range
    (arcsec), sky level range (e-/px) and read noise (e-)."""

    name: str
    pixel_scale: float
    fwhm_arcsec: tuple[float, float]
    sky_e: tuple[float, float] = (50.0, 1500.0)
    read_noise_e: float = 5.0


DEFAULT_PROFILES: tuple[SurveyProfile, ...] = (
    SurveyProfile("ps1_like", 0.25, (0.8, 1.8)),
    SurveyProfile("sdss_like", 0.396, (1.0, 2.0)),
    SurveyProfile("decam_like", 0.263, (0.7, 1.3)),
    SurveyProfile("hst_like", 0.1, (0.08, 0.2), sky_e=(5.0, 100.0), read_noise_e=3.0),
    # ordinary ground-based seeing on 1-m class telescopes, binned cameras
    SurveyProfile("lco_like", 0.389, (1.2, 2.6)),
    SurveyProfile("poor_seeing", 0.6, (1.8, 3.5)),
)
PROFILE_PRESETS: dict[str, SurveyProfile] = {p.name: p for p in DEFAULT_PROFILES} | {
    "twomass_like": SurveyProfile("twomass_like", 1.0, (2.2, 3.0), sky_e=(200.0, 3000.0)),
    "ztf_like": SurveyProfile("ztf_like", 1.0, (1.6, 2.6)),
}


@dataclass(frozen=True)
class SynthConfig:
    """Settings of :func:`simulate_binary_stamps` (ranges are ``(low, high)``).

    ``sep_arcsec``: companion separation range; ``None`` high end = the binary radius
    (reduced by a hair so every pair is strictly inside). ``flux_ratio``: companion /
    primary flux, log-uniform, with its low end raised to ``companion_snr_min / snr`` so
    the companion's own SNR (about ``q * snr``) stays above ``companion_snr_min`` (a
    companion no survey could see is not simulated as a binary). ``snr``: primary
    signal-to-noise, log-uniform.
    ``neighbour_prob``: chance of 1..``max_neighbours`` unrelated sources placed between
    ``(1 + neighbour_gap)`` x radius and the stamp corner.
    """

    n_sources: int = 3000
    binary_fraction: float = 0.5
    views_per_source: int = 2
    profiles: tuple[SurveyProfile, ...] = DEFAULT_PROFILES
    geometry: StampGeometry = field(default_factory=StampGeometry)
    sep_arcsec: tuple[float, float | None] = (0.3, None)
    flux_ratio: tuple[float, float] = (0.1, 1.0)
    snr: tuple[float, float] = (20.0, 500.0)
    companion_snr_min: float = 5.0
    neighbour_prob: float = 0.5
    max_neighbours: int = 3
    neighbour_gap: float = 0.15
    neighbour_flux: tuple[float, float] = (0.05, 2.0)
    beta: tuple[float, float] = (2.5, 4.5)
    ellip_max: float = 0.1
    jitter_px: float = 0.3
    colour_mag: float = 0.3
    seed: int = 0


def _flux_for_snr(snr: float, fwhm_px: float, bg_var: float) -> float:
    """Total flux (e-) giving ``snr`` for a PSF of ``fwhm_px`` on background variance ``bg_var``."""
    npix = 4.0 * math.pi * (fwhm_px / 2.3548) ** 2
    s2 = snr * snr
    return 0.5 * (s2 + math.sqrt(s2 * s2 + 4.0 * s2 * npix * bg_var))


def _add_star(
    img: np.ndarray,
    x: float,
    y: float,
    flux: float,
    fwhm: float,
    ellip: float,
    theta: float,
    beta: float,
) -> None:
    """Add one Moffat star (pixel-integrated) to ``img`` in place; positions in px."""
    ny, nx = img.shape
    r = int(min(max(6, math.ceil(4.0 * fwhm)), max(ny, nx)))
    ix, iy = int(round(x)), int(round(y))
    if ix + r < 0 or iy + r < 0 or ix - r >= nx or iy - r >= ny:
        return
    os_ = 5 if fwhm < 2.0 else 3
    st = psf_stamps(
        np.array([x - ix]),
        np.array([y - iy]),
        np.array([fwhm]),
        np.array([ellip]),
        np.array([theta]),
        beta=beta,
        radius=r,
        oversample=os_,
    )[0]
    y0, x0 = iy - r, ix - r
    ya, xa = max(0, y0), max(0, x0)
    yb, xb = min(ny, y0 + 2 * r + 1), min(nx, x0 + 2 * r + 1)
    img[ya:yb, xa:xb] += flux * st[ya - y0 : yb - y0, xa - x0 : xb - x0]


def simulate_binary_stamps(
    config: SynthConfig | None = None, *, progress: bool = False
) -> StampSet:
    """Simulate a labelled, normalised stamp set (see the module docstring).

    Returns a :class:`StampSet` with ``n_sources * views_per_source`` stamps; ``table``
    holds the truth per stamp: ``survey, pixel_scale, fwhm_arcsec, sep_arcsec`` (NaN for
    singles), ``sep_fwhm, flux_ratio, snr, n_neighbours, nearest_neighbour_arcsec,
    view, edge``.
    """
    cfg = config or SynthConfig()
    geo = cfg.geometry
    rng = np.random.default_rng(cfg.seed)
    radius = geo.radius_arcsec
    sep_lo, sep_hi = cfg.sep_arcsec
    sep_hi = radius * 0.999 if sep_hi is None else min(sep_hi, radius * 0.999)
    if not 0 < sep_lo < sep_hi:
        raise ValueError(f"separation range ({sep_lo}, {sep_hi}) is empty")
    half_diag = geo.stamp_arcsec / math.sqrt(2.0)
    nb_lo = radius * (1.0 + cfg.neighbour_gap)
    n_total = cfg.n_sources * cfg.views_per_source
    nc = geo.channels
    raw = np.zeros((n_total, nc, geo.size, geo.size), dtype=np.float32)
    labels = np.zeros(n_total, dtype=np.int64)
    groups = np.zeros(n_total, dtype=np.int64)
    cols: dict[str, list] = {
        k: []
        for k in (
            "survey",
            "pixel_scale",
            "fwhm_arcsec",
            "sep_arcsec",
            "sep_fwhm",
            "flux_ratio",
            "snr",
            "n_neighbours",
            "nearest_neighbour_arcsec",
            "view",
            "edge",
        )
    }
    it = range(cfg.n_sources)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="simulating systems", unit="sys")
    k = 0
    for sys_id in it:
        is_bin = rng.random() < cfg.binary_fraction
        snr = float(np.exp(rng.uniform(*np.log(cfg.snr))))
        sep = float(rng.uniform(sep_lo, sep_hi)) if is_bin else math.nan
        # companions fainter than companion_snr_min would be invisible in any survey
        q_lo = min(max(cfg.flux_ratio[0], cfg.companion_snr_min / snr), cfg.flux_ratio[1])
        q = (
            float(np.exp(rng.uniform(np.log(q_lo), np.log(cfg.flux_ratio[1]))))
            if is_bin
            else math.nan
        )
        pa = rng.uniform(0, 2 * math.pi)
        colour = rng.normal(0.0, cfg.colour_mag, size=nc) if is_bin else np.zeros(nc)
        colour -= colour[0]
        # unrelated neighbours: (dx, dy) arcsec from the primary, flux relative to primary
        n_nb = (
            int(rng.integers(1, cfg.max_neighbours + 1)) if rng.random() < cfg.neighbour_prob else 0
        )
        if nb_lo >= half_diag:
            n_nb = 0
        nb_r = np.sqrt(rng.uniform(nb_lo**2, half_diag**2, n_nb))
        nb_a = rng.uniform(0, 2 * math.pi, n_nb)
        lf0, lf1 = np.log(cfg.neighbour_flux)
        nb_f = np.exp(rng.uniform(lf0, lf1, n_nb))
        for view in range(cfg.views_per_source):
            prof = cfg.profiles[int(rng.integers(len(cfg.profiles)))]
            scale = prof.pixel_scale
            fwhm_as = float(rng.uniform(*prof.fwhm_arcsec))
            beta = float(rng.uniform(*cfg.beta))
            ellip = float(rng.uniform(0.0, cfg.ellip_max))
            theta = float(rng.uniform(0, math.pi))
            sky = float(rng.uniform(*prof.sky_e))
            npx = int(math.ceil(geo.stamp_arcsec / scale * 1.25)) + 8
            c0 = (npx - 1) / 2.0
            px = c0 + rng.uniform(-0.5, 0.5)
            py = c0 + rng.uniform(-0.5, 0.5)
            cube = np.zeros((nc, npx, npx), dtype=np.float32)
            for b in range(nc):
                fw = fwhm_as / scale * (1.0 + 0.05 * (b - (nc - 1) / 2.0))
                f1 = _flux_for_snr(snr, fw, sky + prof.read_noise_e**2)
                img = cube[b]
                _add_star(img, px, py, f1, fw, ellip, theta, beta)
                if is_bin:
                    fq = q * 10 ** (-0.4 * colour[b])
                    sx = px + sep / scale * math.cos(pa)
                    sy = py + sep / scale * math.sin(pa)
                    _add_star(img, sx, sy, f1 * fq, fw, ellip, theta, beta)
                for r, a, f in zip(nb_r, nb_a, nb_f):
                    nx_ = px + r / scale * math.cos(a)
                    ny_ = py + r / scale * math.sin(a)
                    _add_star(img, nx_, ny_, f1 * f, fw, ellip, theta, beta)
                img += sky
                noisy = rng.poisson(np.clip(img, 0, None)).astype(np.float32)
                noisy += rng.normal(0.0, prof.read_noise_e, img.shape).astype(np.float32)
                cube[b] = noisy
            # the catalogue position: the primary, or the light centroid of an unresolved pair
            cx, cy = px, py
            if is_bin and sep < fwhm_as:
                cx += sep / scale * math.cos(pa) * q / (1 + q)
                cy += sep / scale * math.sin(pa) * q / (1 + q)
            cx += rng.normal(0.0, cfg.jitter_px)
            cy += rng.normal(0.0, cfg.jitter_px)
            st, edge = cut_stamps(cube, [cx], [cy], geo.size, zoom=geo.zoom(scale))
            raw[k] = st[0]
            labels[k] = int(is_bin)
            groups[k] = sys_id
            cols["survey"].append(prof.name)
            cols["pixel_scale"].append(scale)
            cols["fwhm_arcsec"].append(fwhm_as)
            cols["sep_arcsec"].append(sep)
            cols["sep_fwhm"].append(sep / fwhm_as if is_bin else math.nan)
            cols["flux_ratio"].append(q)
            cols["snr"].append(snr)
            cols["n_neighbours"].append(n_nb)
            cols["nearest_neighbour_arcsec"].append(float(nb_r.min()) if n_nb else math.nan)
            cols["view"].append(view)
            cols["edge"].append(bool(edge[0]))
            k += 1
    table = {key: np.asarray(v) for key, v in cols.items()}
    info = {"generator": "atd_dl.binaries.synth", "config": _config_summary(cfg)}
    return StampSet(normalize_stamps(raw, geo.normalize), labels, groups, geo, table, info)


def _config_summary(cfg: SynthConfig) -> dict:
    out = {
        k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k not in ("profiles", "geometry")
    }
    out["profiles"] = [p.__dict__ for p in cfg.profiles]
    return out


def profiles_from_names(names: Sequence[str]) -> tuple[SurveyProfile, ...]:
    """Look up survey presets by name (see :data:`PROFILE_PRESETS`); KeyError lists valid names."""
    out = []
    for n in names:
        if n not in PROFILE_PRESETS:
            raise KeyError(
                f"unknown survey profile {n!r}; valid: {', '.join(sorted(PROFILE_PRESETS))}"
            )
        out.append(PROFILE_PRESETS[n])
    return tuple(out)
