"""Catalog-anchored training labels (paper §2.2, Fig. 5).

Recipe, on the calibrated frame (ADU) with a background map ``B`` and rms map ``σ_B``:

1. candidate pixels ``data > B + f·σ_B`` (Eq. 7, ``f`` = 0.5), 8-connected components,
   components under ``min_area`` = 2 px discarded (:func:`~atd_dl.labels.segment.segment_threshold`);
2. blob SNR in a circle of radius ``R = max|P_i − c| + 1`` (Eqs. 8–11) of the matched
   components (``blob_snr="all"``: of every component; with ``f`` = 0.5 a 1600² frame has
   ~60 000 noise components, whose SNR nothing uses, so this is not the default);
3. each projected catalog source gets a fixed 3×3 aperture SNR (box on the nearest pixel,
   sky annulus 5–9 px); a source is *kept* when it is on the frame, at least ``edge`` px
   from the border, has no unusable pixel in its box and ``SNR >= 2``;
4. a component is *matched* when a kept source lies inside it (its nearest pixel belongs
   to it) or when one of its pixel centres lies within ``match_radius`` = 1.5 px of the
   source (the nearest such component wins);
5. mask = matched components (green in Fig. 5) + a ``blob_size × blob_size`` (3×3) square
   on the nearest pixel of each kept source without a component (blue). Components not
   matched to a kept source (noise, hot pixels, cosmics, trails, uncatalogued objects)
   are left unlabelled.

Footprint trimming (``trim="psf"``, the default; ``trim=None`` is the paper as written).
With ``f = 0.5`` about 31 % of pure-noise pixels pass Eq. 7, so a faint star's component
usually carries a tendril of noise pixels (median ≈ 35 px for 2 ≤ SNR < 3 on a simulated
frame with a 1.5 px FWHM). Such masks teach the network to paint noise and shift
centroids. With trimming, each matched component keeps only its pixels within the star's
expected footprint: the radius where a Gaussian PSF (FWHM fitted on bright isolated kept
stars, or ``psf_fwhm``) carrying the measured 3×3 flux drops to the same Eq. 7 level
``f·σ_B`` above the sky, ``r = σ_psf·√(2 ln(peak / (f·σ_B)))``, clipped to
``[trim_min_radius, trim_max_radius]`` = [1.5, 6] px (1.5 px = the 3×3 square). The pixel
nearest to each kept source is always labelled, so every kept source lies on its label
(a source matched to a component up to 1.5 px away would otherwise miss it).

Saturated stars are real sources the detector must find, so by default a source whose box
touches saturated pixels is kept (flag ``saturated``), and only non-saturated unusable
pixels (NaN, bad) drop it; ``drop_saturated=True`` drops them too.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table

from atd_dl.labels.segment import Segmentation, segment_threshold
from atd_dl.labels.snr import blob_snr, box_snr

__all__ = ["LabelConfig", "LabelResult", "make_labels", "REASONS"]

#: Status of a catalog source, in the order the tests are applied.
REASONS = ("off_frame", "edge", "masked", "saturated", "low_snr")


@dataclass(frozen=True)
class LabelConfig:
    """Parameters of the catalog-anchored labelling (defaults = paper where it says)."""

    f: float = 0.5  # Eq. 7 threshold, in σ_B above B
    min_area: int = 2  # px; smaller components are discarded
    connectivity: int = 8  # 8 or 4
    snr_min: float = 2.0  # keep catalog sources with 3×3 SNR >= this
    box: int = 3  # catalog aperture (odd square, px)
    annulus: tuple[float, float] = (5.0, 9.0)  # catalog sky annulus radii, px
    blob_annulus_gap: float = 2.0  # blob sky annulus starts at R + gap, px
    blob_annulus_width: float = 4.0  # ... and is this wide, px
    match_radius: float = 1.5  # px, source ↔ component pixel centre
    blob_size: int = 3  # label square for kept sources without a component (odd, px)
    edge: float = 3.0  # px; sources closer to the frame border are dropped
    drop_saturated: bool = False
    clip_sigma: float = 3.0  # sigma clipping of sky annuli
    blob_snr: str = "matched"  # blob SNR of "matched" components only, or of "all" (slower)
    trim: str | None = "psf"  # "psf": trim matched components to the star footprint; None: paper
    psf_fwhm: float | None = None  # px; None = fit on bright isolated kept stars
    fallback_fwhm: float = 2.0  # px, when the fit is impossible
    trim_min_radius: float = 1.5  # px (1.5 = the 3×3 square)
    trim_max_radius: float = 6.0  # px

    def __post_init__(self) -> None:
        if self.box % 2 != 1 or self.blob_size % 2 != 1:
            raise ValueError("box and blob_size must be odd")
        if self.blob_snr not in ("all", "matched"):
            raise ValueError(f"blob_snr must be 'all' or 'matched', got {self.blob_snr!r}")
        if self.trim not in (None, "psf"):
            raise ValueError(f"trim must be 'psf' or None, got {self.trim!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly)."""
        d = asdict(self)
        d["annulus"] = list(self.annulus)
        return d


@dataclass
class LabelResult:
    """Output of :func:`make_labels`.

    ``mask`` is uint8 ``[ny, nx]`` with 1 = source pixel, 0 = background (the dataset PNG
    stores 0 / 255). ``kept`` holds the kept catalog sources (``x, y, snr, source_id, mag,
    flux_e, component, snr_blob, saturated, radius``; ``component`` 0 = blob label,
    ``radius`` = footprint radius in px); ``sources`` every input source with its
    ``status`` (``kept`` or a drop reason from :data:`REASONS`); ``components`` every
    component (``id, x, y, area, radius, peak, flux_e, snr, matched, n_sources``).
    ``kind`` tells the overlay which label pixels come from components (1) or blobs (2).
    """

    mask: np.ndarray
    kept: Table
    sources: Table
    components: Table
    segmentation: np.ndarray
    counts: dict[str, int]
    config: LabelConfig = field(default_factory=LabelConfig)
    kind: np.ndarray | None = None  # uint8 map: 1 = component label, 2 = blob label
    psf_fwhm: float = float("nan")  # px, used for trimming (NaN when not needed)

    @property
    def blob_only(self) -> np.ndarray:
        """Bool [len(kept)]: kept sources labelled by a blob (no component)."""
        return np.asarray(self.kept["component"]) == 0


def _source_columns(sources: Table | Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(sources["x"], dtype=np.float64)
    y = np.asarray(sources["y"], dtype=np.float64)
    names = sources.colnames if hasattr(sources, "colnames") else list(sources.keys())
    sid = (
        np.asarray(sources["source_id"])
        if "source_id" in names
        else np.arange(len(x), dtype=np.int64)
    )
    mag = (
        np.asarray(sources["mag"], dtype=np.float64) if "mag" in names else np.full(len(x), np.nan)
    )
    return x, y, sid, mag


def _match(seg_labels: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Component id (0 = none) of the labelled pixel nearest to each position within ``radius``."""
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    ny, nx = seg_labels.shape
    h = int(np.ceil(radius)) + 1
    off = np.arange(-h, h + 1)
    ody, odx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    bx = np.rint(x).astype(np.int64)
    by = np.rint(y).astype(np.int64)
    px = bx[:, None] + odx[None, :]
    py = by[:, None] + ody[None, :]
    inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    lab = seg_labels[np.clip(py, 0, ny - 1), np.clip(px, 0, nx - 1)]
    d2 = (px - x[:, None]) ** 2 + (py - y[:, None]) ** 2
    ok = inside & (lab > 0) & (d2 <= radius**2)
    # the nearest pixel (d <= 0.71 px) always wins, so "contains the position" comes first
    d2 = np.where(ok, d2, np.inf)
    best = np.argmin(d2, axis=1)
    rows = np.arange(n)
    return np.where(np.isfinite(d2[rows, best]), lab[rows, best], 0).astype(np.int32)


def make_labels(
    data: np.ndarray,
    background: np.ndarray,
    background_rms: np.ndarray,
    sources: Table,
    *,
    gain: float,
    mask: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    n_catalog: int | None = None,
    config: LabelConfig | None = None,
) -> LabelResult:
    """Build the catalog-anchored label mask of one frame.

    Parameters
    ----------
    data : ndarray [ny, nx]
        Calibrated frame, ADU (bias/dark subtracted, flat divided; *not* sky subtracted).
    background, background_rms : ndarray [ny, nx]
        Background ``B`` and rms ``σ_B`` maps (ADU), from
        :func:`atd_dl.prep.enhance.estimate_background`.
    sources : Table
        Projected catalog with columns ``x, y`` (0-based pixels) and optionally
        ``source_id`` and ``mag``. Positions off the frame are allowed (counted ``off_frame``).
    gain : float
        e⁻/ADU (``Frame.gain`` or configured).
    mask : bool ndarray, optional
        True = unusable pixel (``Frame.mask``: non-finite or saturated).
    saturated : bool ndarray, optional
        True = saturated pixel (``Frame.saturated``).
    n_catalog : int, optional
        Size of the catalog before projection; sources missing from ``sources`` are counted
        as ``off_frame`` (``project_catalog`` drops them).
    """
    cfg = config or LabelConfig()
    data = np.asarray(data)
    ny, nx = data.shape
    finite = np.isfinite(data)
    sat = np.zeros(data.shape, bool) if saturated is None else np.asarray(saturated, bool)
    bad = ~finite if mask is None else (np.asarray(mask, bool) | ~finite)
    bad &= ~sat

    # 1. candidate components (Eq. 7)
    seg: Segmentation = segment_threshold(
        data,
        background,
        background_rms,
        f=cfg.f,
        min_area=cfg.min_area,
        connectivity=cfg.connectivity,
        mask=bad,
    )

    # 2. catalog sources: status and 3×3 SNR
    x, y, sid, mag = _source_columns(sources)
    n_src = len(x)
    status = np.full(n_src, "kept", dtype="<U9")
    fin = np.isfinite(x) & np.isfinite(y)
    on = fin & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    status[~on] = "off_frame"
    edge = on & (
        (x < cfg.edge) | (x > nx - 1 - cfg.edge) | (y < cfg.edge) | (y > ny - 1 - cfg.edge)
    )
    status[edge] = "edge"
    meas_idx = np.flatnonzero(on & ~edge)
    snr = np.full(n_src, np.nan)
    flux_e = np.full(n_src, np.nan)
    n_sat = np.zeros(n_src, dtype=np.int64)
    if len(meas_idx):
        m = box_snr(
            data,
            x[meas_idx],
            y[meas_idx],
            gain=gain,
            box=cfg.box,
            r_in=cfg.annulus[0],
            r_out=cfg.annulus[1],
            bad=bad,
            saturated=sat,
            background=background,
            background_rms=background_rms,
            sigma=cfg.clip_sigma,
        )
        snr[meas_idx] = m.snr
        flux_e[meas_idx] = m.flux_e
        n_sat[meas_idx] = m.n_saturated
        sub = status[meas_idx]
        sub[m.n_bad > 0] = "masked"
        if cfg.drop_saturated:
            sub[(sub == "kept") & (m.n_saturated > 0)] = "saturated"
        low = (sub == "kept") & ~(m.snr >= cfg.snr_min) & (m.n_saturated == 0)
        sub[low] = "low_snr"
        status[meas_idx] = sub
    keep = status == "kept"
    kidx = np.flatnonzero(keep)

    # 3. match kept sources to components
    comp_of = _match(seg.labels, x[kidx], y[kidx], cfg.match_radius)
    n_sources = np.bincount(comp_of, minlength=seg.n + 1)[1:]
    matched = n_sources > 0

    # 4. blob SNR (Eqs. 8–11)
    csnr = np.full(seg.n, np.nan)
    cflux = np.full(seg.n, np.nan)
    which = np.arange(seg.n) if cfg.blob_snr == "all" else np.flatnonzero(matched)
    if len(which):
        b = blob_snr(
            data,
            seg.x[which],
            seg.y[which],
            seg.radius[which],
            gain=gain,
            annulus_gap=cfg.blob_annulus_gap,
            annulus_width=cfg.blob_annulus_width,
            bad=bad,
            saturated=sat,
            background=background,
            background_rms=background_rms,
            sigma=cfg.clip_sigma,
        )
        csnr[which] = b.snr
        cflux[which] = b.flux_e

    # 5. mask: matched components (optionally trimmed) + blobs for kept sources without one
    sky_std = np.full(n_src, np.nan)
    if len(meas_idx):
        sky_std[meas_idx] = m.sky_std
    radius = np.full(len(kidx), np.nan)
    psf_fwhm = float("nan")
    kind = np.zeros(data.shape, dtype=np.uint8)
    if cfg.trim is None:
        sel = np.zeros(seg.n + 1, dtype=bool)
        sel[1:] = matched
        kind[sel[seg.labels]] = 1
    elif (comp_of > 0).any():
        psf_fwhm = _psf_fwhm(cfg, data, background, x, y, snr, kidx, sat | bad, n_sat)
        radius = _footprint_radius(
            flux_e[kidx], sky_std[kidx] * gain, psf_fwhm, cfg, n_sat[kidx] > 0
        )
        has = comp_of > 0
        _paint_footprints(kind, seg.labels, x[kidx][has], y[kidx][has], comp_of[has], radius[has])
        # a source matched within match_radius (not inside its component) keeps its own pixel
        iy = np.clip(np.rint(y[kidx][has]).astype(np.int64), 0, ny - 1)
        ix = np.clip(np.rint(x[kidx][has]).astype(np.int64), 0, nx - 1)
        kind[iy, ix] = 1
    lone = kidx[comp_of == 0]
    if len(lone):
        hb = cfg.blob_size // 2
        off = np.arange(-hb, hb + 1)
        oy, ox = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
        px = np.rint(x[lone]).astype(np.int64)[:, None] + ox[None, :]
        py = np.rint(y[lone]).astype(np.int64)[:, None] + oy[None, :]
        ok = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
        py, px = py[ok], px[ok]
        kind[py, px] = np.where(kind[py, px] == 1, 1, 2)
    kind[bad] = 0
    label_mask = (kind > 0).astype(np.uint8)

    kept = Table(
        {
            "x": x[kidx],
            "y": y[kidx],
            "snr": snr[kidx],
            "source_id": sid[kidx],
            "mag": mag[kidx],
            "flux_e": flux_e[kidx],
            "component": comp_of,
            "snr_blob": np.where(comp_of > 0, csnr[np.maximum(comp_of, 1) - 1], np.nan)
            if seg.n
            else np.full(len(kidx), np.nan),
            "saturated": n_sat[kidx] > 0,
            "radius": radius,
        }
    )
    all_sources = Table(
        {"x": x, "y": y, "source_id": sid, "mag": mag, "snr": snr, "status": status}
    )
    components = Table(
        {
            "id": seg.ids,
            "x": seg.x,
            "y": seg.y,
            "area": seg.area,
            "radius": seg.radius,
            "peak": seg.peak,
            "flux_e": cflux,
            "snr": csnr,
            "matched": matched,
            "n_sources": n_sources,
        }
    )
    n_extra_off = 0 if n_catalog is None else max(int(n_catalog) - n_src, 0)
    counts = {
        "n_catalog": n_src + n_extra_off,
        "n_kept": int(keep.sum()),
        "n_kept_component": int((comp_of > 0).sum()),
        "n_kept_blob": int((comp_of == 0).sum()),
        "n_kept_saturated": int((n_sat[kidx] > 0).sum()),
        "n_dropped_off_frame": int((status == "off_frame").sum()) + n_extra_off,
        "n_dropped_edge": int((status == "edge").sum()),
        "n_dropped_masked": int((status == "masked").sum()),
        "n_dropped_saturated": int((status == "saturated").sum()),
        "n_dropped_snr": int((status == "low_snr").sum()),
        "n_components": int(seg.n),
        "n_components_matched": int(matched.sum()),
        "n_components_unmatched": int(seg.n - matched.sum()),
        "n_components_small": int(seg.n_discarded),
        "n_mask_pixels": int(label_mask.sum()),
    }
    return LabelResult(
        mask=label_mask,
        kept=kept,
        sources=all_sources,
        components=components,
        segmentation=seg.labels,
        counts=counts,
        config=cfg,
        kind=kind,
        psf_fwhm=psf_fwhm,
    )


def _psf_fwhm(
    cfg: LabelConfig,
    data: np.ndarray,
    background: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    snr: np.ndarray,
    kidx: np.ndarray,
    unusable: np.ndarray,
    n_sat: np.ndarray,
) -> float:
    """PSF FWHM for trimming: configured, else fitted on bright isolated kept stars."""
    if cfg.psf_fwhm is not None:
        return float(cfg.psf_fwhm)
    from atd_dl.labels.psf import median_prf_fwhm, select_psf_stars

    ok = kidx[n_sat[kidx] == 0]
    pick = select_psf_stars(
        x[ok],
        y[ok],
        snr[ok],
        data.shape,
        all_x=x[kidx],
        all_y=y[kidx],
        bad=unusable,
        max_stars=12,
    )  # isolated from every detectable (kept) source; undetectable neighbours do not matter
    fwhm = float("nan")
    if len(pick) >= 3:
        fwhm = median_prf_fwhm(data - background, x[ok][pick], y[ok][pick])
    return fwhm if np.isfinite(fwhm) else float(cfg.fallback_fwhm)


def _footprint_radius(
    flux_e: np.ndarray,
    sky_std_e: np.ndarray,
    fwhm: float,
    cfg: LabelConfig,
    saturated: np.ndarray,
) -> np.ndarray:
    """Radius (px) where a Gaussian PSF with ``flux_e`` falls to ``f·σ_B`` above the sky."""
    s2 = (fwhm / 2.3548) ** 2
    peak = np.asarray(flux_e, dtype=np.float64) / (2 * np.pi * s2)
    thr = cfg.f * np.asarray(sky_std_e, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where((thr > 0) & (peak > thr), peak / thr, 1.0)
    r = np.sqrt(2.0 * s2 * np.log(np.maximum(ratio, 1.0)))
    r = np.where(saturated, cfg.trim_max_radius, r)
    return np.clip(
        np.nan_to_num(r, nan=cfg.trim_min_radius), cfg.trim_min_radius, cfg.trim_max_radius
    )


def _paint_footprints(
    kind: np.ndarray,
    seg_labels: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    comp: np.ndarray,
    radius: np.ndarray,
) -> None:
    """Set ``kind = 1`` on pixels of component ``comp`` within ``radius`` of ``(x, y)``."""
    if len(x) == 0:
        return
    ny, nx = seg_labels.shape
    half = np.ceil(radius + 0.5).astype(int)
    for h in np.unique(half):
        grp = np.flatnonzero(half == h)
        off = np.arange(-h, h + 1)
        ody, odx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
        chunk = max(1, 2_000_000 // len(odx))
        for s in range(0, len(grp), chunk):
            g = grp[s : s + chunk]
            px = np.rint(x[g]).astype(np.int64)[:, None] + odx[None, :]
            py = np.rint(y[g]).astype(np.int64)[:, None] + ody[None, :]
            inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
            pxc = np.clip(px, 0, nx - 1)
            pyc = np.clip(py, 0, ny - 1)
            d2 = (px - x[g, None]) ** 2 + (py - y[g, None]) ** 2
            ok = inside & (seg_labels[pyc, pxc] == comp[g, None]) & (d2 <= radius[g, None] ** 2)
            kind[pyc[ok], pxc[ok]] = 1
