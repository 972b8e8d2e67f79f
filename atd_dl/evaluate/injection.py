"""Injection–recovery tests: add artificial PSF stars of known flux, see which are found.

Stars are rendered with the simulator's pixel-integrated Moffat PSF
(:func:`atd_dl.sim.psf.add_stars`), with photon noise, at random positions that avoid
existing sources and each other, into a real or simulated frame. Each detector is run on
the injected frame and the injected stars are matched one-to-one within ``radius``.
Completeness is reported per SNR bin and per magnitude bin.

The SNR of an injected star is the simulator's 3×3-box SNR,
``SNR = F3 / sqrt(F3 + 9·σ²)`` with ``F3`` the star's electrons in the 3×3 box on its
nearest pixel and ``σ`` the local background RMS in electrons (sky + dark + read noise).
Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from atd_dl.evaluate.matching import match_points
from atd_dl.evaluate.references import detections_xy

__all__ = [
    "INJECTION_MAG_STEP",
    "INJECTION_SNR_EDGES",
    "InjectionResult",
    "completeness_table",
    "flux_for_snr",
    "free_positions",
    "inject_moffat_stars",
    "injection_recovery",
    "level_at_completeness",
]

log = logging.getLogger(__name__)

#: SNR bins of the completeness table.
INJECTION_SNR_EDGES: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, np.inf)
#: Width (mag) of the magnitude bins.
INJECTION_MAG_STEP = 0.25
ZEROPOINT_KEYS = ("MAGZP", "MAGZPT", "ZEROPNT", "ZP", "PHOTZP")


@dataclass
class InjectionResult:
    """Injected stars and, per detector, which were recovered.

    Arrays have one entry per injected star: ``x, y`` (px), ``flux_e`` (total e-),
    ``f3_e`` (e- in the 3×3 box), ``snr`` (3×3 SNR), ``mag`` (``zeropoint − 2.5
    log10(flux_e / exptime)``; instrumental when no zeropoint is known), ``round``.
    ``found[name]`` bool per star; ``offsets[name]`` [n, 2] detection − truth (NaN if
    missed).
    """

    x: np.ndarray
    y: np.ndarray
    flux_e: np.ndarray
    f3_e: np.ndarray
    snr: np.ndarray
    mag: np.ndarray
    round: np.ndarray
    found: dict[str, np.ndarray] = field(default_factory=dict)
    offsets: dict[str, np.ndarray] = field(default_factory=dict)
    zeropoint: float | None = None
    failures: dict[str, list[str]] = field(default_factory=dict)

    def summary(
        self,
        *,
        snr_edges: Sequence[float] = INJECTION_SNR_EDGES,
        mag_step: float = INJECTION_MAG_STEP,
    ) -> dict[str, Any]:
        """JSON-ready dict: per detector completeness by SNR and magnitude, SNR/mag at 50 %/90 %."""
        mag_edges = _mag_edges(self.mag, mag_step)
        out: dict[str, Any] = {
            "n_injected": int(self.x.size),
            "zeropoint": self.zeropoint,
            "mag_system": "calibrated" if self.zeropoint is not None else "instrumental",
            "methods": {},
        }
        for name, found in self.found.items():
            by_snr = completeness_table(self.snr, found, snr_edges)
            by_mag = completeness_table(self.mag, found, mag_edges)
            out["methods"][name] = {
                "n_found": int(found.sum()),
                "completeness": float(found.mean()) if found.size else float("nan"),
                "snr50": level_at_completeness(by_snr, 0.5),
                "snr90": level_at_completeness(by_snr, 0.9),
                "mag50": level_at_completeness(by_mag, 0.5, decreasing=True),
                "by_snr": by_snr,
                "by_mag": by_mag,
                "failures": self.failures.get(name, []),
            }
        return out


def _mag_edges(mag: np.ndarray, step: float) -> np.ndarray:
    m = mag[np.isfinite(mag)]
    if m.size == 0:
        return np.array([0.0, 1.0])
    lo = np.floor(m.min() / step) * step
    hi = np.ceil(m.max() / step) * step + step
    return np.round(np.arange(lo, hi + 1e-9, step), 6)


def completeness_table(
    values: np.ndarray, found: np.ndarray, edges: Sequence[float] | np.ndarray
) -> list[dict[str, Any]]:
    """Rows ``{lo, hi, n, found, completeness}`` for bins ``[edges[i], edges[i+1])``; empty bins skipped."""
    values = np.asarray(values, float)
    found = np.asarray(found, bool)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (values >= lo) & (values < hi)
        n = int(sel.sum())
        if n == 0:
            continue
        k = int(found[sel].sum())
        rows.append({"lo": float(lo), "hi": float(hi), "n": n, "found": k, "completeness": k / n})
    return rows


def level_at_completeness(
    table: Sequence[Mapping[str, Any]], level: float = 0.5, *, decreasing: bool = False
) -> float | None:
    """Bin-centre value where completeness first crosses ``level`` (linear interpolation).

    Scans from faint to bright: increasing ``lo`` for SNR, decreasing for magnitudes
    (``decreasing=True``). None when the curve never crosses.
    """
    rows = [r for r in table if np.isfinite(r["hi"])]
    if not rows:
        return None
    c = np.array([0.5 * (r["lo"] + r["hi"]) for r in rows])
    v = np.array([r["completeness"] for r in rows])
    if decreasing:
        c, v = c[::-1], v[::-1]
    for i in range(1, len(c)):
        if v[i - 1] < level <= v[i]:
            t = (level - v[i - 1]) / (v[i] - v[i - 1])
            return float(c[i - 1] + t * (c[i] - c[i - 1]))
    if v[0] >= level:
        return float(c[0])
    return None


def flux_for_snr(snr: np.ndarray, sigma_e: np.ndarray, box_fraction: float) -> np.ndarray:
    """Total flux (e-) giving 3×3 SNR ``snr`` over per-pixel noise ``sigma_e`` (e-).

    Inverts ``S = F3 / sqrt(F3 + 9σ²)`` with ``F3 = box_fraction · F``.
    """
    s = np.asarray(snr, float)
    v = 9.0 * np.asarray(sigma_e, float) ** 2
    f3 = 0.5 * (s**2 + s * np.sqrt(s**2 + 4.0 * v))
    return f3 / box_fraction


def _source_mask(
    data: np.ndarray, background: np.ndarray, rms: np.ndarray, bad: np.ndarray
) -> np.ndarray:
    """Pixels belonging to existing sources: smoothed excess > 3σ (smoothed-noise corrected)."""
    sub = np.where(bad, 0.0, data - background).astype(np.float32)
    sm = ndimage.gaussian_filter(sub, 1.0)
    # a unit-sigma Gaussian smoothing reduces white noise by 1 / (2 sqrt(pi))
    return sm > 3.0 * rms / (2.0 * np.sqrt(np.pi))


def free_positions(
    shape: tuple[int, int],
    n: int,
    rng: np.random.Generator,
    *,
    forbidden: np.ndarray | None = None,
    existing_xy: np.ndarray | None = None,
    min_sep: float = 8.0,
    edge: int = 10,
) -> np.ndarray:
    """Up to ``n`` random sub-pixel positions [k, 2] at least ``min_sep`` px from each other,
    from ``existing_xy`` and from ``forbidden`` pixels (bool [ny, nx]), and ``edge`` px inside.
    """
    ny, nx = shape
    allowed = np.ones(shape, dtype=bool)
    if forbidden is not None:
        # distance to the nearest forbidden pixel must be >= min_sep
        allowed &= ndimage.distance_transform_edt(~forbidden) >= min_sep
    allowed[:edge, :] = allowed[-edge:, :] = False
    allowed[:, :edge] = allowed[:, -edge:] = False
    cand = np.flatnonzero(allowed)
    if cand.size == 0:
        return np.zeros((0, 2))
    m = min(cand.size, 20 * n + 100)
    pick = rng.choice(cand, size=m, replace=False)
    xy = np.column_stack([pick % nx, pick // nx]).astype(float) + rng.uniform(-0.5, 0.5, (m, 2))
    if existing_xy is not None and len(existing_xy):
        d, _ = cKDTree(np.asarray(existing_xy, float)).query(xy, k=1)
        xy = xy[d >= min_sep]
    kept: list[np.ndarray] = []
    tree_pts = np.zeros((0, 2))
    # greedy thinning (candidates are few hundred; loop over candidates, not pixels)
    for p in xy:
        if tree_pts.size and np.min(np.hypot(*(tree_pts - p).T)) < min_sep:
            continue
        kept.append(p)
        tree_pts = np.vstack([tree_pts, p])
        if len(kept) == n:
            break
    return np.asarray(kept).reshape(-1, 2)


def inject_moffat_stars(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux_e: np.ndarray,
    *,
    gain: float,
    fwhm: float,
    beta: float = 3.0,
    rng: np.random.Generator | None = None,
    poisson: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data + stars, f3_e)``: Moffat stars of total ``flux_e`` (e-) added in ADU.

    A uniform, round Moffat PSF of ``fwhm`` (px) and ``beta`` over the whole frame; the
    rendering and photon noise are :func:`atd_dl.sim.psf.inject_stars` (no saturation
    clip). ``data`` [ny, nx] in ADU is not modified. With ``poisson`` the stars' photon
    noise is drawn (``rng``). ``f3_e`` is each star's expected electrons in its 3×3 box.
    """
    from atd_dl.sim.psf import MoffatPSF, add_stars, inject_stars

    psf = MoffatPSF(
        tuple(data.shape),
        fwhm=fwhm,
        fwhm_corner=fwhm,
        beta=beta,
        ellip_center=0.0,
        ellip_corner=0.0,
    )
    xs, ys, fs = np.asarray(x, float), np.asarray(y, float), np.asarray(flux_e, float)
    if poisson:
        rng = rng or np.random.default_rng()
        return inject_stars(data, xs, ys, fs, psf, gain=gain, rng=rng, saturate=None)
    stars = np.zeros(data.shape, dtype=np.float32)
    f3 = add_stars(stars, xs, ys, fs, psf)
    out = np.asarray(data, dtype=np.float32) + stars / np.float32(gain)
    return out, f3


def _header_zeropoint(frame: Any) -> float | None:
    header = getattr(frame, "header", None)
    if header is None:
        return None
    for key in ZEROPOINT_KEYS:
        v = header.get(key)
        if isinstance(v, (int, float)) and np.isfinite(v):
            return float(v)
    return None


def injection_recovery(
    frame: Any,
    detectors: Mapping[str, Callable[[Any], Any]],
    *,
    n_per_round: int = 200,
    rounds: int = 1,
    snr_range: tuple[float, float] = (1.0, 20.0),
    fwhm: float | None = None,
    gain: float | None = None,
    zeropoint: float | None = None,
    existing_xy: np.ndarray | None = None,
    radius: float = 2.0,
    min_sep: float = 10.0,
    seed: int = 0,
    progress: bool = False,
) -> InjectionResult:
    """Inject stars into ``frame`` (an :class:`atd_dl.io.fits_io.Frame`) and run ``detectors``.

    Each round injects ``n_per_round`` stars with 3×3 SNR drawn log-uniformly in
    ``snr_range`` at free positions (away from sources found in the frame, from
    ``existing_xy`` and from each other) and calls every ``detectors[name](frame)``
    (returning a table with ``x, y``). ``fwhm`` (px) defaults to an estimate from the
    frame; ``gain`` to the header GAIN (1 if absent); ``zeropoint`` to the header
    MAGZP-like keyword (instrumental magnitudes otherwise). A detector that fails on a
    round is recorded in ``failures``; its stars of that round count as missed.
    """
    from atd_dl.prep.enhance import estimate_background

    rng = np.random.default_rng(seed)
    data = np.asarray(frame.data, dtype=np.float32)
    bad = np.asarray(getattr(frame, "mask", np.zeros(data.shape, bool)), bool)
    gain = float(gain or getattr(frame, "gain", None) or 1.0)
    background, rms = estimate_background(data, bad)
    if fwhm is None:
        fwhm = _estimate_fwhm(data, background, rms, bad)
    zeropoint = zeropoint if zeropoint is not None else _header_zeropoint(frame)
    exptime = float(getattr(frame, "exptime", None) or 1.0)
    sources = _source_mask(data, background, rms, bad) | bad
    box_fraction = _box_fraction(fwhm)

    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("x", "y", "flux_e", "f3_e", "snr", "round")
    }
    found: dict[str, list[np.ndarray]] = {k: [] for k in detectors}
    offsets: dict[str, list[np.ndarray]] = {k: [] for k in detectors}
    failures: dict[str, list[str]] = {k: [] for k in detectors}
    it = range(rounds)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="injection", unit="round")
    for r in it:
        xy = free_positions(
            data.shape,
            n_per_round,
            rng,
            forbidden=sources,
            existing_xy=existing_xy,
            min_sep=min_sep,
        )
        if len(xy) == 0:
            log.warning("injection: no free position left in round %d", r)
            break
        ix = np.clip(np.round(xy[:, 0]).astype(int), 0, data.shape[1] - 1)
        iy = np.clip(np.round(xy[:, 1]).astype(int), 0, data.shape[0] - 1)
        sigma_e = rms[iy, ix].astype(float) * gain
        target = np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]), len(xy)))
        flux = flux_for_snr(target, sigma_e, box_fraction)
        injected, f3 = inject_moffat_stars(
            data, xy[:, 0], xy[:, 1], flux, gain=gain, fwhm=fwhm, rng=rng
        )
        snr = f3 / np.sqrt(f3 + 9.0 * sigma_e**2)
        new_frame = _with_data(frame, injected)
        for k, v in (
            ("x", xy[:, 0]),
            ("y", xy[:, 1]),
            ("flux_e", flux),
            ("f3_e", f3),
            ("snr", snr),
            ("round", np.full(len(xy), r)),
        ):
            cols[k].append(np.asarray(v))
        for name, det in detectors.items():
            ok = np.zeros(len(xy), bool)
            off = np.full((len(xy), 2), np.nan)
            try:
                table = det(new_frame)
                dxy = detections_xy(table) if len(table) else np.zeros((0, 2))
                m = match_points(dxy, xy, radius, one_to_one=True)
                ok[m.ref_index] = True
                off[m.ref_index] = dxy[m.det_index] - xy[m.ref_index]
            except Exception as err:  # one failing detector must not stop the others
                log.error("injection: %s failed in round %d: %s", name, r, err)
                failures[name].append(f"round {r}: {err}")
            found[name].append(ok)
            offsets[name].append(off)
        # also keep later rounds away from this round's stars? they are removed again
        # (each round starts from the original frame), so no exclusion is needed.

    def cat(lst: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(lst) if lst else np.zeros(0)

    flux_all = cat(cols["flux_e"])
    with np.errstate(divide="ignore"):
        mag = (zeropoint or 0.0) - 2.5 * np.log10(flux_all / exptime)
    return InjectionResult(
        x=cat(cols["x"]),
        y=cat(cols["y"]),
        flux_e=flux_all,
        f3_e=cat(cols["f3_e"]),
        snr=cat(cols["snr"]),
        mag=mag,
        round=cat(cols["round"]).astype(int),
        found={k: cat(v).astype(bool) for k, v in found.items()},
        offsets={k: (np.concatenate(v) if v else np.zeros((0, 2))) for k, v in offsets.items()},
        zeropoint=zeropoint,
        failures=failures,
    )


def _with_data(frame: Any, data: np.ndarray) -> Any:
    """Shallow copy of ``frame`` with ``data`` replaced (dataclass or plain object)."""
    if dataclasses.is_dataclass(frame) and not isinstance(frame, type):
        return dataclasses.replace(frame, data=data)
    import copy

    new = copy.copy(frame)
    new.data = data
    return new


def _box_fraction(fwhm: float, beta: float = 3.0) -> float:
    """Fraction of a centred Moffat star's flux inside the 3×3 box (mean over sub-pixel offsets)."""
    from atd_dl.sim.psf import MoffatPSF, render_psf_stamp

    psf = MoffatPSF(
        (101, 101), fwhm=fwhm, fwhm_corner=fwhm, beta=beta, ellip_center=0.0, ellip_corner=0.0
    )
    fr = []
    for dx, dy in ((0.0, 0.0), (0.25, 0.25), (0.45, -0.3)):
        st = render_psf_stamp(psf, 50 + dx, 50 + dy, radius=7)
        fr.append(st[6:9, 6:9].sum())
    return float(np.mean(fr))


def _estimate_fwhm(
    data: np.ndarray, background: np.ndarray, rms: np.ndarray, bad: np.ndarray
) -> float:
    """PSF FWHM (px) from second moments of bright unsaturated peaks; 2 px if none found."""
    from atd_dl.detect.centroid import median_moment_fwhm

    sub = np.where(bad, 0.0, data - background).astype(np.float32)
    peaks = (sub == ndimage.maximum_filter(sub, size=9)) & (sub > 20.0 * rms)
    peaks &= ~ndimage.binary_dilation(bad, iterations=4)
    iy, ix = np.nonzero(peaks)
    order = np.argsort(-sub[iy, ix])
    if order.size < 5:
        log.warning("injection: too few bright stars to measure the FWHM; assuming 2.0 px")
        return 2.0
    return float(median_moment_fwhm(sub, ix[order], iy[order]))
