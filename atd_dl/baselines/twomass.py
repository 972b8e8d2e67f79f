"""The tuned 2MASS DAOFind pipeline of Liu et al. (2025), as a baseline.

Steps (paper §2, equation numbers from that paper):

1. Background2D subtraction (64-px boxes, 3×3 filter — the paper names the tool only).
2. DAOStarFinder with ``threshold = n2·SKYSIG`` (Eq. 5, n2 = 1.0) and kernel
   ``FWHM_det = n1·FWHM_img`` (Eq. 4, n1 = 0.7), ``FWHM_img = 3.13·SEESH − 0.46``
   arcsec (Eq. 3), converted to pixels with the frame's pixel scale.
3. Edge cut: drop detections within 26 px of the top/bottom and 36 px of the left/right
   borders (2MASS Atlas geometry, configurable).
4. SNR (Eq. 6) in a circular aperture of radius σ = FWHM_img/2.355 on the
   background-subtracted image: ``(f_σ − πσ²·SKYSIG) / sqrt(πσ²·SKYSIG²)``; keep SNR > 3.
5. Central-sharpness screening (Eqs. 7–8): ``Σ = (f_σ − f_center)/(2πσ² − 1)``,
   ``Δf = f_center − Σ``; a detection with SNR in [3, s_max] and sharpness below h is
   rejected, where (s_max, h) depend on the number N of detections in the frame:
   N > 2000 → (4, 0.5); 1000 ≤ N ≤ 2000 → (5, 0.6); N < 1000 → (6, 0.7).
6. Saturation (Eq. 9): around every connected region of pixels above 2¹³ (raw image
   values) with peak value v, drop detections within ``r = −2247 + 251·ln v`` arcsec.
7. Across overlapping frames: KD-tree de-duplication at 1″ (:func:`deduplicate`).

Sharpness normalisation. The paper compares Δf with thresholds h ∈ (0, 1] and plots
detections on a 0–1 sharpness axis, but Δf as written has image units (DN). We use the
dimensionless ``Δf / f_center = 1 − Σ/f_center`` by default (``sharpness_norm="peak"``):
1 for all light in the central pixel, 0 when the centre is no brighter than its
surroundings, which puts stars near 0.5–0.7 and diffuse noise bumps lower, matching the
paper's h range. ``"none"`` compares raw Δf (image units) with h, ``"skysig"`` uses
Δf/SKYSIG.

Also here: growth-rate / false-positive metrics (Eqs. 1–2), aperture magnitudes
``M = MAGZP − 2.5 log10 f_σ`` (A1) and the piecewise transform to 2MASS magnitudes (A2).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy import ndimage
from scipy.spatial import cKDTree

from atd_dl.baselines.base import (
    BaseFinder,
    background_maps,
    make_catalog,
    position_error,
    prepare_image,
    sweep,
)
from atd_dl.baselines.daofind import dao_centroids, dao_star_finder, run_dao_finder

__all__ = [
    "DENSITY_RULES",
    "SATURATION_LEVEL",
    "TwoMassFinder",
    "TwoMassResult",
    "calibrated_magnitude",
    "central_sharpness",
    "classify_known_new_fp",
    "deduplicate",
    "density_rule",
    "false_positive_rate",
    "fwhm_from_seesh",
    "growth_rate",
    "twomass_fwhm",
    "saturated_sources",
    "saturation_exclusion",
    "saturation_radius",
    "sharpness_keep",
    "snr_eq6",
    "to_2mass_magnitude",
    "twomass_metrics",
]

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548
SATURATION_LEVEL = 2.0**13  #: pixel value above which Eq. 9 applies (DN)

#: (minimum N exclusive, SNR upper limit, sharpness threshold h), densest first (§2.2.2)
DENSITY_RULES: tuple[tuple[int, float, float], ...] = (
    (2000, 4.0, 0.5),
    (999, 5.0, 0.6),
    (-1, 6.0, 0.7),
)


# ---------------------------------------------------------------------------- formulae


def fwhm_from_seesh(seesh: float) -> float:
    """Image FWHM in arcsec from the Atlas header's SEESH (Eq. 3: 3.13·SEESH − 0.46)."""
    return 3.13 * float(seesh) - 0.46


def saturation_radius(v: np.ndarray | float) -> np.ndarray:
    """Exclusion radius (arcsec) around a saturated source of peak value ``v`` (Eq. 9).

    ``r = −2247 + 251·ln v`` for ``v > 2¹³``; 0 for smaller values (and never negative).
    """
    v = np.asarray(v, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = -2247.0 + 251.0 * np.log(v)
    return np.where(v > SATURATION_LEVEL, np.clip(r, 0.0, None), 0.0)


def snr_eq6(f_sigma: np.ndarray, sigma: float, skysig: float) -> np.ndarray:
    """Eq. 6: ``(f_σ − πσ²·SKYSIG) / sqrt(πσ²·SKYSIG²)`` with σ the aperture radius (px)."""
    area = np.pi * sigma**2
    return (np.asarray(f_sigma, float) - area * skysig) / np.sqrt(area * skysig**2)


def central_sharpness(
    f_sigma: np.ndarray, f_center: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. 7–8: surrounding surface density Σ and central sharpness Δf (image units).

    ``Σ = (f_σ − f_center) / (2πσ² − 1)``, ``Δf = f_center − Σ``. Returns ``(Σ, Δf)``.
    """
    surf = (np.asarray(f_sigma, float) - np.asarray(f_center, float)) / (
        2.0 * np.pi * sigma**2 - 1.0
    )
    return surf, np.asarray(f_center, float) - surf


def density_rule(
    n_detections: int, rules: Sequence[tuple[int, float, float]] = DENSITY_RULES
) -> tuple[float, float]:
    """``(snr_upper, h)`` of the screening rule for a frame with ``n_detections`` sources."""
    for n_min, snr_hi, h in rules:
        if n_detections > n_min:
            return snr_hi, h
    return rules[-1][1], rules[-1][2]


def sharpness_keep(
    snr: np.ndarray,
    sharpness: np.ndarray,
    n_detections: int | None = None,
    *,
    snr_low: float = 3.0,
    rules: Sequence[tuple[int, float, float]] = DENSITY_RULES,
) -> np.ndarray:
    """Bool mask of detections that survive the density-dependent sharpness screening.

    Rejected: ``snr_low ≤ SNR ≤ snr_upper`` and ``sharpness < h`` with (snr_upper, h)
    from :func:`density_rule` for ``n_detections`` (default: ``len(snr)``).
    """
    snr = np.asarray(snr, float)
    n = len(snr) if n_detections is None else int(n_detections)
    snr_hi, h = density_rule(n, rules)
    in_range = (snr >= snr_low) & (snr <= snr_hi)
    return ~(in_range & (np.asarray(sharpness, float) < h))


def saturated_sources(
    image: np.ndarray, level: float = SATURATION_LEVEL, *, mask: np.ndarray | None = None
) -> Table:
    """Connected regions of pixels above ``level``: peak position (0-based) and value.

    Returns a table ``x, y, peak, npix`` (one row per region, 8-connected).
    """
    hot = np.asarray(image) > level
    if mask is not None:
        hot &= ~mask
    labels, n = ndimage.label(hot, structure=np.ones((3, 3), bool))
    if n == 0:
        return Table(names=("x", "y", "peak", "npix"), dtype=(float, float, float, int))
    idx = np.arange(1, n + 1)
    peaks = ndimage.maximum(image, labels, idx)
    pos = np.array(ndimage.maximum_position(image, labels, idx), dtype=float).reshape(-1, 2)
    npix = ndimage.sum_labels(np.ones_like(hot, dtype=float), labels, idx)
    return Table(
        [pos[:, 1], pos[:, 0], np.asarray(peaks, float), npix.astype(int)],
        names=("x", "y", "peak", "npix"),
    )


def saturation_exclusion(
    x: np.ndarray,
    y: np.ndarray,
    image: np.ndarray,
    pixel_scale: float,
    *,
    level: float = SATURATION_LEVEL,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Table]:
    """Keep-mask for detections outside every Eq. 9 exclusion circle.

    ``pixel_scale`` arcsec/px. Returns ``(keep, regions)`` where ``regions`` lists the
    saturated sources with their exclusion radius ``r_arcsec`` and ``r_pix``.
    """
    regions = saturated_sources(image, level, mask=mask)
    r_arcsec = saturation_radius(np.asarray(regions["peak"], float))
    regions["r_arcsec"] = r_arcsec
    regions["r_pix"] = r_arcsec / pixel_scale
    keep = np.ones(len(x), dtype=bool)
    if len(x) == 0 or len(regions) == 0:
        return keep, regions
    tree = cKDTree(np.column_stack([x, y]))
    for cx, cy, rp in zip(regions["x"], regions["y"], regions["r_pix"]):
        if rp > 0:
            keep[tree.query_ball_point([cx, cy], float(rp))] = False
    return keep, regions


def calibrated_magnitude(flux: np.ndarray, magzp: float) -> np.ndarray:
    """Eq. A1: ``M_cal = MAGZP − 2.5·log10(f)``; NaN for non-positive flux."""
    f = np.asarray(flux, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, magzp - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)


def to_2mass_magnitude(m_cal: np.ndarray) -> np.ndarray:
    """Eq. A2: the paper's piecewise fit from aperture magnitude to 2MASS magnitude."""
    m = np.asarray(m_cal, float)
    return np.select(
        [m <= 10.3, m <= 12.0, m <= 17.0, m > 17.0],
        [
            -1.293 * m**2 + 27.733 * m - 139.634,
            1.009 * m - 1.496,
            0.980 * m - 1.119,
            0.820 * m + 1.621,
        ],
        default=np.nan,
    )


def growth_rate(n_new: int, n_ref: int) -> float:
    """Eq. 1: growth rate in percent, ``100·N_new / N_2MASS`` (NaN when N_2MASS = 0)."""
    return 100.0 * n_new / n_ref if n_ref > 0 else float("nan")


def false_positive_rate(n_fp: int, n_det: int) -> float:
    """Eq. 2: false-positive rate in percent, ``100·N_FP / N_det`` (NaN when N_det = 0)."""
    return 100.0 * n_fp / n_det if n_det > 0 else float("nan")


def _within(det: SkyCoord, ref: SkyCoord | None, radius_arcsec: float) -> np.ndarray:
    if ref is None or len(ref) == 0 or len(det) == 0:
        return np.zeros(len(det), dtype=bool)
    _, sep2d, _ = det.match_to_catalog_sky(ref)
    return np.asarray(sep2d.arcsec <= radius_arcsec)


def classify_known_new_fp(
    det: SkyCoord,
    reference: SkyCoord,
    deep: SkyCoord | None = None,
    *,
    r_ref: float = 1.0,
    r_deep: float = 2.0,
) -> dict[str, np.ndarray]:
    """Label detections as the paper does (§2.2): known, new confirmed, or false positive.

    ``known``: a ``reference`` (2MASS PSC) source within ``r_ref`` arcsec; ``new``: not
    known but a ``deep`` (e.g. VHS) source within ``r_deep``; ``fp``: neither.
    """
    known = _within(det, reference, r_ref)
    deep_hit = _within(det, deep, r_deep)
    new = ~known & deep_hit
    return {"known": known, "new": new, "fp": ~known & ~deep_hit}


def twomass_metrics(
    det: SkyCoord,
    reference: SkyCoord,
    deep: SkyCoord | None = None,
    *,
    r_ref: float = 1.0,
    r_deep: float = 2.0,
) -> dict[str, float]:
    """Growth rate and false-positive rate (Eqs. 1–2) of detections against two catalogs.

    ``reference`` must already be restricted to the detection area (its length is
    N_2MASS). Returns counts and ``gr_percent``, ``fp_percent``.
    """
    cls = classify_known_new_fp(det, reference, deep, r_ref=r_ref, r_deep=r_deep)
    n_new, n_fp, n_det = int(cls["new"].sum()), int(cls["fp"].sum()), len(det)
    return {
        "n_det": n_det,
        "n_ref": len(reference),
        "n_known": int(cls["known"].sum()),
        "n_new": n_new,
        "n_fp": n_fp,
        "gr_percent": growth_rate(n_new, len(reference)),
        "fp_percent": false_positive_rate(n_fp, n_det),
    }


def deduplicate(catalogs: Sequence[Table], radius_arcsec: float = 1.0) -> Table:
    """Merge per-frame catalogs (with ``ra``, ``dec`` deg) and drop repeated sources.

    Pairs of detections from *different* frames closer than ``radius_arcsec`` are found
    with a KD-tree on unit vectors. Detections are then visited in decreasing SNR: each
    one not yet absorbed is kept and absorbs, per other frame, its nearest unclaimed
    neighbour within the radius. So two distinct sources closer than the radius in one
    frame stay distinct. Adds ``frame`` (index into ``catalogs``, unless present) and
    ``n_dup`` (1 + absorbed detections); the kept rows come back in input order.
    """
    tables = []
    for i, cat in enumerate(catalogs):
        if "ra" not in cat.colnames or "dec" not in cat.colnames:
            raise ValueError(f"catalog {i} has no ra/dec columns (run the finder with a WCS)")
        t = cat.copy(copy_data=True)
        if "frame" not in t.colnames:
            t["frame"] = np.full(len(t), i, dtype=np.int32)
        tables.append(t)
    if not tables:
        return Table()
    merged = vstack(tables, metadata_conflicts="silent") if len(tables) > 1 else tables[0]
    n = len(merged)
    n_dup = np.ones(n, dtype=np.int32)
    keep = np.ones(n, dtype=bool)
    frame = np.asarray(merged["frame"])
    if n:
        ra = np.radians(np.asarray(merged["ra"], float))
        dec = np.radians(np.asarray(merged["dec"], float))
        xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
        chord = 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)
        pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
        pairs = pairs[frame[pairs[:, 0]] != frame[pairs[:, 1]]] if len(pairs) else pairs
        if len(pairs):
            both = np.concatenate([pairs, pairs[:, ::-1]])
            dist = np.linalg.norm(xyz[both[:, 0]] - xyz[both[:, 1]], axis=1)
            srt = np.lexsort((dist, both[:, 0]))
            both = both[srt]
            start = np.searchsorted(both[:, 0], np.arange(n + 1))
            snr = np.asarray(merged["snr"], float) if "snr" in merged.colnames else np.zeros(n)
            snr = np.where(np.isfinite(snr), snr, -np.inf)
            absorbed = np.zeros(n, dtype=bool)
            visited = np.zeros(n, dtype=bool)
            # loop over detections with cross-frame neighbours only (never over pixels)
            for i in np.argsort(-snr, kind="stable"):
                if absorbed[i] or start[i] == start[i + 1]:
                    continue
                visited[i] = True
                claimed: set[int] = set()
                for j in both[start[i] : start[i + 1], 1]:  # nearest first
                    if absorbed[j] or visited[j] or int(frame[j]) in claimed:
                        continue
                    absorbed[j] = True
                    claimed.add(int(frame[j]))
                    n_dup[i] += 1
            keep = ~absorbed
    out = merged[keep]
    out["n_dup"] = n_dup[keep]
    if "id" in out.colnames:
        out["id"] = np.arange(1, len(out) + 1, dtype=np.int64)
    out.meta["dedup_radius_arcsec"] = radius_arcsec
    return out


def twomass_fwhm(
    sub: np.ndarray, rms: float, mask: np.ndarray | None = None, *, max_stars: int = 50
) -> float:
    """Median FWHM (px) of bright, isolated, unsaturated stars (Gaussian fits), NaN if none."""
    from photutils.psf import fit_fwhm

    finder = dao_star_finder(20.0 * rms, 3.0, min_separation=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = finder(sub, mask=mask)
    if found is None or len(found) == 0:
        return float("nan")
    xy = np.column_stack(dao_centroids(found))
    ny, nx = sub.shape
    inside = (xy[:, 0] > 8) & (xy[:, 0] < nx - 9) & (xy[:, 1] > 8) & (xy[:, 1] < ny - 9)
    if len(xy) > 1:
        d, _ = cKDTree(xy).query(xy, k=2)
        inside &= d[:, 1] > 10
    peak = np.asarray(found["peak"], float)
    idx = np.flatnonzero(inside & (peak < np.percentile(peak, 90) if len(peak) > 10 else inside))
    idx = idx[np.argsort(-peak[idx])][:max_stars]
    if len(idx) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fw = np.asarray(fit_fwhm(sub, xypos=xy[idx], fit_shape=7, mask=mask), float)
    fw = fw[np.isfinite(fw) & (fw > 0.5) & (fw < 20)]
    return float(np.median(fw)) if len(fw) else float("nan")


# ---------------------------------------------------------------------------- finder


def _pixel_scale(wcs: WCS | None, header: fits.Header | None) -> float | None:
    if wcs is not None and wcs.has_celestial:
        return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)
    if header is not None:
        for key in ("CDELT2", "CDELT1"):
            if key in header and header[key]:
                return abs(float(header[key])) * 3600.0
        if "PIXSCALE" in header:
            return float(header["PIXSCALE"])
    return None


@dataclass
class TwoMassResult:
    """Output of :meth:`TwoMassFinder.run`: catalog, per-stage counts, parameters used."""

    catalog: Table
    counts: dict[str, int]
    params: dict[str, Any]
    saturated: Table


@dataclass
class TwoMassFinder(BaseFinder):
    """The 2MASS DAOFind pipeline; ``threshold`` is n2 (detection threshold = n2·SKYSIG).

    ``skysig`` (image units), ``seesh`` and ``pixel_scale`` (arcsec/px) normally come
    from the Atlas header (:meth:`from_header`, or ``header=`` in :meth:`run`). Missing
    values fall back to measurements: SKYSIG = median Background2D RMS; FWHM_img from
    Gaussian fits to bright isolated stars (``fwhm_px`` overrides both SEESH and the
    measurement); pixel scale from the WCS, else CDELT, else 1″/px with a warning.
    ``edge_y``/``edge_x``: margins (px) at top/bottom and left/right. ``magzp`` adds
    ``mag_cal`` (A1) and ``mag_2mass`` (A2) columns. ``keep_rejected=True`` returns every
    DAOFind detection with a ``reject`` column instead of only the survivors.
    """

    name: ClassVar[str] = "twomass"
    SWEEP_DENSE: ClassVar[tuple[float, ...]] = tuple(sweep(0.5, 2.0, 0.1))
    SWEEP_PAPER: ClassVar[tuple[float, ...]] = tuple(sweep(0.5, 1.2, 0.1))

    threshold: float = 1.0
    n1: float = 0.7
    skysig: float | None = None
    seesh: float | None = None
    pixel_scale: float | None = None
    fwhm_px: float | None = None
    magzp: float | None = None
    edge_y: int = 26
    edge_x: int = 36
    snr_min: float = 3.0
    rules: tuple[tuple[int, float, float], ...] = DENSITY_RULES
    sharpness_norm: str = "peak"
    saturation_level: float | None = SATURATION_LEVEL
    back_size: int = 64
    back_filtersize: int = 3
    min_separation: float | None = 0.0
    sharpness_range: tuple[float, float] | None = (0.2, 1.0)
    roundness_range: tuple[float, float] | None = (-1.0, 1.0)
    keep_rejected: bool = False

    def __post_init__(self) -> None:
        if self.sharpness_norm not in ("peak", "none", "skysig"):
            raise ValueError(
                f"sharpness_norm must be 'peak', 'none' or 'skysig', got {self.sharpness_norm!r}"
            )

    @classmethod
    def from_header(
        cls, header: fits.Header, wcs: WCS | None = None, **params: Any
    ) -> TwoMassFinder:
        """Finder with SKYSIG, SEESH, MAGZP and pixel scale taken from an Atlas header."""
        values: dict[str, Any] = {}
        for key, name in (("SKYSIG", "skysig"), ("SEESH", "seesh"), ("MAGZP", "magzp")):
            if key in header and header[key] not in (None, ""):
                values[name] = float(header[key])
        scale = _pixel_scale(wcs, header)
        if scale is not None:
            values["pixel_scale"] = scale
        values.update(params)
        return cls(**values)

    def __call__(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
        header: fits.Header | None = None,
    ) -> Table:
        """Run the pipeline; returns the standard catalog of surviving detections."""
        return self.run(data, mask=mask, wcs=wcs, threshold=threshold, header=header).catalog

    def run(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
        header: fits.Header | None = None,
    ) -> TwoMassResult:
        """Run every step and report the number of detections left after each."""
        n2 = self._threshold(threshold)
        finder = self if header is None else self._merge_header(header, wcs)
        img, bad = prepare_image(data, mask, name="twomass input")
        bkg, rms_map = background_maps(
            img, bad, box_size=finder.back_size, filter_size=finder.back_filtersize
        )
        sub = img - bkg
        sources: dict[str, str] = {}
        skysig = finder.skysig
        sources["skysig"] = "header"
        if skysig is None or not skysig > 0:
            skysig = float(np.median(rms_map[~bad]))
            sources["skysig"] = "measured"
        scale = finder.pixel_scale or _pixel_scale(wcs, header)
        sources["pixel_scale"] = "header/wcs"
        if scale is None:
            scale = 1.0
            sources["pixel_scale"] = "assumed"
            log.warning("twomass: no pixel scale in WCS or header, assuming 1 arcsec/px")
        if finder.fwhm_px:
            fwhm_img = float(finder.fwhm_px)
            sources["fwhm"] = "given"
        elif finder.seesh is not None:
            fwhm_img = fwhm_from_seesh(finder.seesh) / scale
            sources["fwhm"] = "SEESH"
        else:
            fwhm_img = twomass_fwhm(sub, skysig, bad if bad.any() else None)
            sources["fwhm"] = "measured"
            if not np.isfinite(fwhm_img):
                raise ValueError(
                    "twomass: no SEESH and no bright isolated star to measure the FWHM; pass fwhm_px"
                )
        fwhm_det = finder.n1 * fwhm_img
        sigma = fwhm_img / FWHM_PER_SIGMA
        dao = dao_star_finder(
            n2 * skysig,
            fwhm_det,
            sharpness_range=finder.sharpness_range,
            roundness_range=finder.roundness_range,
            min_separation=finder.min_separation,
        )
        found = run_dao_finder(dao, sub, bad)
        n_dao = 0 if found is None else len(found)
        x, y = dao_centroids(found)
        dao_sharp = np.zeros(0) if found is None else np.asarray(found["sharpness"], float)
        ny, nx = img.shape
        reject = np.zeros(n_dao, dtype="U10")
        # 3. edge margins
        inside = (
            (y >= finder.edge_y)
            & (y <= ny - 1 - finder.edge_y)
            & (x >= finder.edge_x)
            & (x <= nx - 1 - finder.edge_x)
        )
        reject[~inside] = "edge"
        # 4. Eq. 6 SNR in an aperture of radius sigma
        f_sigma = _aperture_sum(sub, x, y, sigma, bad)
        xi = np.clip(np.rint(x).astype(np.intp), 0, nx - 1)
        yi = np.clip(np.rint(y).astype(np.intp), 0, ny - 1)
        f_center = sub[yi, xi].astype(float) if n_dao else np.zeros(0)
        snr = snr_eq6(f_sigma, sigma, skysig)
        low = (snr <= finder.snr_min) & (reject == "")
        reject[low] = "snr"
        # 5. density-dependent central sharpness screening
        surf, delta_f = central_sharpness(f_sigma, f_center, sigma)
        if finder.sharpness_norm == "peak":
            with np.errstate(divide="ignore", invalid="ignore"):
                sharp = np.where(
                    f_center > 0, delta_f / np.where(f_center > 0, f_center, 1.0), -np.inf
                )
        elif finder.sharpness_norm == "skysig":
            sharp = delta_f / skysig
        else:
            sharp = delta_f
        alive = reject == ""
        n_screen = int(alive.sum())
        snr_hi, h = density_rule(n_screen, finder.rules)
        keep_sharp = sharpness_keep(
            snr, sharp, n_screen, snr_low=finder.snr_min, rules=finder.rules
        )
        reject[alive & ~keep_sharp] = "sharpness"
        # 6. saturation exclusion circles
        if finder.saturation_level is not None:
            keep_sat, regions = saturation_exclusion(
                x, y, img, scale, level=finder.saturation_level, mask=bad
            )
        else:
            keep_sat, regions = np.ones(n_dao, bool), saturated_sources(img, np.inf)
        reject[(reject == "") & ~keep_sat] = "saturation"
        counts = {
            "daofind": n_dao,
            "after_edge": int(np.sum(reject != "edge")),
            "after_snr": n_screen,
            "after_sharpness": int(np.sum((reject == "") | (reject == "saturation"))),
            "final": int(np.sum(reject == "")),
            "saturated_regions": len(regions),
        }
        sel = np.ones(n_dao, bool) if finder.keep_rejected else reject == ""
        area = np.pi * sigma**2
        extra: dict[str, Any] = {
            "f_center": f_center[sel],
            "surface_density": surf[sel],
            "delta_f": delta_f[sel],
            "sharp_central": sharp[sel],
            "dao_sharpness": dao_sharp[sel],
        }
        if finder.magzp is not None:
            m_cal = calibrated_magnitude(f_sigma[sel], finder.magzp)
            extra["mag_cal"] = m_cal
            extra["mag_2mass"] = to_2mass_magnitude(m_cal)
        if finder.keep_rejected:
            extra["reject"] = reject
        pos_err = position_error(sigma, snr[sel])
        params = {
            "n1": finder.n1,
            "n2": n2,
            "skysig": skysig,
            "fwhm_img_px": fwhm_img,
            "fwhm_det_px": fwhm_det,
            "aperture_sigma_px": sigma,
            "pixel_scale": scale,
            "snr_upper": snr_hi,
            "h": h,
            "sharpness_norm": finder.sharpness_norm,
            "sources": sources,
        }
        catalog = make_catalog(
            x[sel],
            y[sel],
            flux=f_sigma[sel],
            flux_err=np.full(int(sel.sum()), np.sqrt(area) * skysig),
            snr=snr[sel],
            x_err=pos_err,
            y_err=pos_err,
            area=np.full(int(sel.sum()), area),
            peak=f_center[sel],
            shape=img.shape,
            mask=bad,
            wcs=wcs,
            extra=extra,
            meta={
                "finder": self.name,
                "threshold": n2,
                **{k: v for k, v in params.items() if k != "sources"},
            },
        )
        return TwoMassResult(catalog=catalog, counts=counts, params=params, saturated=regions)

    def _merge_header(self, header: fits.Header, wcs: WCS | None) -> TwoMassFinder:
        """Fill parameters left as None from the header (explicit values win)."""
        from_hdr = TwoMassFinder.from_header(header, wcs)
        updates = {
            name: getattr(from_hdr, name)
            for name in ("skysig", "seesh", "magzp", "pixel_scale")
            if getattr(self, name) is None and getattr(from_hdr, name) is not None
        }
        return self.with_params(**updates) if updates else self  # type: ignore[return-value]


def _aperture_sum(
    sub: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float, bad: np.ndarray
) -> np.ndarray:
    """Exact-overlap circular aperture sums (image units)."""
    if len(x) == 0:
        return np.zeros(0)
    from photutils.aperture import CircularAperture, aperture_photometry

    phot = aperture_photometry(
        sub, CircularAperture(np.column_stack([x, y]), r=radius), mask=bad if bad.any() else None
    )
    return np.asarray(phot["aperture_sum"], float)
