"""Sky isolation of test frames from training frames (paper: 12 sky-isolated test frames).

Two frames *overlap* when their sky footprints (the quadrilaterals through the outer pixel
corners, from the WCS) intersect, or come closer than ``margin_deg``. The test projects
both footprints onto a common tangent plane (gnomonic, centred between the two frames)
and applies the separating-axis theorem to the two convex quadrilaterals, after a quick
bounding-circle rejection. Frames without a celestial WCS cannot be checked (reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atd_dl.errors import InputError

__all__ = ["SkyFootprint", "footprint_of", "footprints_overlap", "find_overlaps", "check_isolation"]


@dataclass(frozen=True)
class SkyFootprint:
    """Frame footprint: ``corners`` [4, 2] (ra, dec) deg in order, centre and radius (deg)."""

    name: str
    ra_center: float
    dec_center: float
    radius: float
    corners: np.ndarray

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "ra_center": self.ra_center,
            "dec_center": self.dec_center,
            "radius": self.radius,
            "corners": np.asarray(self.corners, dtype=float).tolist(),
        }

    @classmethod
    def from_dict(cls, name: str, d: dict) -> SkyFootprint:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name,
            float(d["ra_center"]),
            float(d["dec_center"]),
            float(d["radius"]),
            np.asarray(d["corners"], dtype=float),
        )


def footprint_of(name: str, wcs, shape: tuple[int, ...]) -> SkyFootprint:
    """Footprint of a frame of ``shape`` (ny, nx) through its celestial ``wcs``."""
    try:
        from atd_dl.io.catalogs import frame_footprint

        fp = frame_footprint(wcs, shape)
        return SkyFootprint(name, fp.ra_center, fp.dec_center, fp.radius, np.asarray(fp.corners))
    except ImportError:  # pragma: no cover - catalogs module always present in releases
        ny, nx = int(shape[-2]), int(shape[-1])
        xs = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5, (nx - 1) / 2.0])
        ys = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5, (ny - 1) / 2.0])
        sky = wcs.pixel_to_world(xs, ys)
        ra, dec = sky.ra.deg, sky.dec.deg
        rad = float(np.max(_sep(ra[4], dec[4], ra[:4], dec[:4])))
        return SkyFootprint(
            name, float(ra[4]) % 360, float(dec[4]), rad, np.column_stack([ra[:4], dec[:4]])
        )


def _sep(ra1, dec1, ra2, dec2) -> np.ndarray:
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _gnomonic(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Tangent-plane coordinates (deg-like units) of unit vectors about unit vector ``centre``."""
    z = centre / np.linalg.norm(centre)
    ref = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(ref, z)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(z, e1)
    w = points @ z
    return np.degrees(np.column_stack([(points @ e1) / w, (points @ e2) / w]))


def _separated(a: np.ndarray, b: np.ndarray, margin: float) -> bool:
    """True when convex polygons ``a`` and ``b`` ([n, 2]) are more than ``margin`` apart
    along one of their edge normals (separating-axis theorem)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.column_stack([-edges[:, 1], edges[:, 0]])
        norms = np.linalg.norm(normals, axis=1)
        normals = normals[norms > 0] / norms[norms > 0, None]
        pa = a @ normals.T
        pb = b @ normals.T
        gap = np.maximum(pb.min(axis=0) - pa.max(axis=0), pa.min(axis=0) - pb.max(axis=0))
        if np.any(gap > margin):
            return True
    return False


def footprints_overlap(a: SkyFootprint, b: SkyFootprint, margin_deg: float = 0.0) -> bool:
    """True when the two footprints share sky (or come within ``margin_deg``)."""
    centre_sep = float(_sep(a.ra_center, a.dec_center, b.ra_center, b.dec_center))
    if centre_sep > a.radius + b.radius + margin_deg:
        return False
    ua = _unit(a.corners[:, 0], a.corners[:, 1])
    ub = _unit(b.corners[:, 0], b.corners[:, 1])
    mid = (
        _unit(np.array([a.ra_center]), np.array([a.dec_center]))[0]
        + _unit(np.array([b.ra_center]), np.array([b.dec_center]))[0]
    )
    if np.linalg.norm(mid) < 1e-9:  # antipodal centres cannot overlap for real frames
        return False
    pa = _gnomonic(ua, mid)
    pb = _gnomonic(ub, mid)
    return not _separated(pa, pb, margin_deg)


def find_overlaps(
    test: list[SkyFootprint], train: list[SkyFootprint], margin_deg: float = 0.0
) -> list[tuple[str, str, float]]:
    """Pairs ``(test_name, train_name, centre_separation_deg)`` whose footprints overlap."""
    out = []
    for t in test:
        for r in train:
            if footprints_overlap(t, r, margin_deg):
                sep = float(_sep(t.ra_center, t.dec_center, r.ra_center, r.dec_center))
                out.append((t.name, r.name, sep))
    return out


def check_isolation(
    test: list[SkyFootprint],
    train: list[SkyFootprint],
    *,
    paths: dict[str, Path] | None = None,
    margin_deg: float = 0.0,
    force: bool = False,
) -> list[tuple[str, str, float]]:
    """Raise :class:`InputError` when a test frame overlaps a training frame on the sky.

    The message names both frames (the first conflict, and how many there are). With
    ``force=True`` the overlaps are returned instead (the caller logs them).
    """
    overlaps = find_overlaps(test, train, margin_deg)
    if overlaps and not force:
        t, r, sep = overlaps[0]
        more = f" ({len(overlaps) - 1} more overlapping pair(s))" if len(overlaps) > 1 else ""
        where = (paths or {}).get(t, t)
        raise InputError(
            where,
            f"test frame {t} overlaps training frame {r} on the sky (centres {sep:.3f} deg "
            f"apart){more}; test frames must be sky-isolated from training frames "
            "(use --force to accept)",
        )
    return overlaps
