"""DS9 region files for detections.

With a valid celestial WCS the circles are in sky coordinates (``fk5``, RA/Dec in degrees
from the catalog's ``ra``/``dec`` columns or the WCS, radius in arcsec); otherwise in image
pixels, 1-based as DS9 expects (``x + 1, y + 1``).

Colours follow the flags: green = clean, yellow = deblended child, red = trail,
magenta = saturated, orange = masked / edge, cyan = low SNR (first matching rule wins,
in that order of priority: trail, saturated, blended, masked/edge, low SNR).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from atd_dl.detect.flags import SourceFlag
from atd_dl.io.atomic import atomic_write_text

_COLOURS: tuple[tuple[SourceFlag, str], ...] = (
    (SourceFlag.TRAIL, "red"),
    (SourceFlag.SATURATED, "magenta"),
    (SourceFlag.BLENDED, "yellow"),
    (SourceFlag.MASKED | SourceFlag.NEAR_EDGE, "orange"),
    (SourceFlag.LOW_SNR, "cyan"),
)


def region_colour(flags: int) -> str:
    """DS9 colour of a source with bit mask ``flags`` (see the module docstring)."""
    for bits, colour in _COLOURS:
        if int(flags) & int(bits):
            return colour
    return "green"


def _sky_positions(table: Table, wcs: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """RA, Dec (deg) of every row: the ``ra``/``dec`` columns when finite, else ``x, y``
    (0-based) through ``wcs``; None without a usable celestial WCS."""
    if wcs is None or not getattr(wcs, "has_celestial", False):
        return None
    if len(table) == 0:
        return np.zeros(0), np.zeros(0)
    if {"ra", "dec"} <= set(table.colnames):
        ra, dec = np.asarray(table["ra"], float), np.asarray(table["dec"], float)
    else:
        x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
        ra, dec = (np.asarray(v, float) for v in wcs.all_pix2world(x, y, 0))
    ok = np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))
    return (np.mod(ra, 360.0), dec) if ok else None


def _pixel_scale_arcsec(wcs: Any) -> float:
    """Mean pixel scale of the celestial WCS in arcsec."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def regions_text(table: Table, *, radius: float = 3.0, label: bool = False, wcs: Any = None) -> str:
    """DS9 region text: one circle of ``radius`` px per source.

    With a celestial ``wcs`` (:class:`astropy.wcs.WCS`): ``fk5`` circles at the sources'
    RA/Dec in degrees, radius in arcsec; otherwise ``image`` circles at ``x + 1, y + 1``.
    """
    sky = _sky_positions(table, wcs)
    system = "fk5" if sky is not None else "image"
    note = (
        "RA/Dec (deg) from the frame WCS"
        if sky is not None
        else "x, y converted from 0-based to DS9 1-based image pixels"
    )
    lines = [
        "# Region file format: DS9 version 4.1",
        f"# ATD-DL detections; {note}",
        'global color=green width=1 font="helvetica 9 normal roman" select=1 '
        "edit=0 move=0 delete=1 include=1 source=1",
        system,
    ]
    ids = np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, len(table) + 1)
    flags = np.asarray(table["flags"]) if "flags" in table.colnames else np.zeros(len(table))
    if sky is not None:
        r_text = f'{radius * _pixel_scale_arcsec(wcs):.3f}"'
        pos = [f"{a:.8f},{d:+.8f}" for a, d in zip(*sky)]
    else:
        r_text = f"{radius:.2f}"
        pos = [f"{x + 1:.3f},{y + 1:.3f}" for x, y in zip(table["x"], table["y"])]
    for i, p, f in zip(ids, pos, flags):
        colour = region_colour(int(f))
        extra = f" color={colour}" if colour != "green" else ""
        text = f" text={{{int(i)}}}" if label else ""
        lines.append(f"circle({p},{r_text}) #{extra}{text}".rstrip(" #"))
    return "\n".join(lines) + "\n"


def write_ds9_regions(
    table: Table,
    path: str | Path,
    *,
    radius: float = 3.0,
    label: bool = False,
    wcs: Any = None,
) -> Path:
    """Write :func:`regions_text` to ``path`` atomically and return the path."""
    return atomic_write_text(path, regions_text(table, radius=radius, label=label, wcs=wcs))
