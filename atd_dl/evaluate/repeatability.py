"""Repeatability: do detections come back in other exposures of the same field?

A catalog-free quality measure for a user's own frames. For overlapping exposures of one
field, each detection is looked for in every other exposure within ``radius`` (px, on the
sky through each frame's WCS when both catalogs have finite RA/Dec, else in pixel
coordinates for frames on the same grid). Real sources come back, noise peaks do not:
the fraction found again, by SNR bin of the detection, measures both completeness
stability and false alarms; detections found in no other exposure are listed as singles.

Pixel convention: catalog ``x, y`` 0-based; ``snr`` the catalog's aperture SNR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

__all__ = ["SNR_EDGES", "RepeatabilityResult", "repeatability"]

#: SNR bins of the report (lower edges; the last bin is open)
SNR_EDGES = (0.0, 3.0, 5.0, 10.0, 20.0, 50.0)


@dataclass
class RepeatabilityResult:
    """Per exposure: detections, found again in at least one other exposure, singles;
    and pooled over exposures, the fraction found again per SNR bin."""

    names: list[str]
    n_detections: list[int]
    n_found_again: list[int]
    n_single: list[int]
    bins: list[str]
    bin_counts: list[int]
    bin_fraction: list[float]
    matched_by: str
    radius_px: float
    pairs: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "names": self.names,
            "n_detections": self.n_detections,
            "n_found_again": self.n_found_again,
            "n_single": self.n_single,
            "fraction_found_again": [
                (a / n if n else float("nan"))
                for a, n in zip(self.n_found_again, self.n_detections, strict=True)
            ],
            "snr_bins": self.bins,
            "snr_bin_counts": self.bin_counts,
            "snr_bin_fraction_found_again": self.bin_fraction,
            "matched_by": self.matched_by,
            "radius_px": self.radius_px,
            "pairs": self.pairs,
        }


def _sky_xyz(cat: Table) -> np.ndarray | None:
    if "ra" not in cat.colnames or "dec" not in cat.colnames or len(cat) == 0:
        return None
    ra = np.radians(np.asarray(cat["ra"], dtype=float))
    dec = np.radians(np.asarray(cat["dec"], dtype=float))
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        return None
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _pixel_scale_rad(cat: Table) -> float | None:
    """Typical pixel size (rad) from neighbouring rows' sky vs pixel separations."""
    xyz = _sky_xyz(cat)
    if xyz is None or len(cat) < 2:
        return None
    xy = np.column_stack([np.asarray(cat["x"], float), np.asarray(cat["y"], float)])
    d_pix = np.hypot(*(xy[1:] - xy[:-1]).T)
    d_sky = np.linalg.norm(xyz[1:] - xyz[:-1], axis=1)
    ok = d_pix > 5
    return float(np.median(d_sky[ok] / d_pix[ok])) if ok.any() else None


def repeatability(
    catalogs: Sequence[Table],
    names: Sequence[str] | None = None,
    *,
    radius_px: float = 1.5,
    snr_edges: Sequence[float] = SNR_EDGES,
) -> RepeatabilityResult:
    """Repeatability of detections across ``catalogs`` (two or more exposures of one field)."""
    if len(catalogs) < 2:
        raise ValueError("repeatability needs at least two catalogs of the same field")
    names = list(names) if names is not None else [f"exp{k}" for k in range(len(catalogs))]
    sky = [_sky_xyz(c) for c in catalogs]
    scale = _pixel_scale_rad(catalogs[0]) if all(s is not None for s in sky) else None
    if scale is not None:
        points: list[np.ndarray] = [s for s in sky if s is not None]
        radius = radius_px * scale
        matched_by = "sky (WCS)"
    else:
        points = [
            np.column_stack([np.asarray(c["x"], float), np.asarray(c["y"], float)])
            for c in catalogs
        ]
        radius = radius_px
        matched_by = "pixels (no usable WCS: frames must share one pixel grid)"
    trees = [cKDTree(p) if len(p) else None for p in points]
    found_any = []
    pairs: dict[str, float] = {}
    for i, p in enumerate(points):
        found = np.zeros(len(p), dtype=bool)
        for j, tree in enumerate(trees):
            if i == j or tree is None or not len(p):
                continue
            d, _ = tree.query(p, distance_upper_bound=radius)
            hit = np.isfinite(d)
            pairs[f"{names[i]}->{names[j]}"] = float(hit.mean())
            found |= hit
        found_any.append(found)
    edges = list(snr_edges) + [np.inf]
    labels = [
        f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">{lo:g}"
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    counts, fractions = [], []
    snr_all = np.concatenate(
        [np.asarray(c["snr"], float) if len(c) else np.zeros(0) for c in catalogs]
    )
    hit_all = np.concatenate(found_any) if found_any else np.zeros(0, bool)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (snr_all >= lo) & (snr_all < hi)
        counts.append(int(sel.sum()))
        fractions.append(float(hit_all[sel].mean()) if sel.any() else float("nan"))
    return RepeatabilityResult(
        names=names,
        n_detections=[len(p) for p in points],
        n_found_again=[int(f.sum()) for f in found_any],
        n_single=[int((~f).sum()) for f in found_any],
        bins=labels,
        bin_counts=counts,
        bin_fraction=fractions,
        matched_by=matched_by,
        radius_px=float(radius_px),
        pairs=pairs,
    )
