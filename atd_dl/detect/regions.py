"""DS9 region files for detections (image coordinates, 1-based as DS9 expects).

Colours follow the flags: green = clean, yellow = deblended child, red = trail,
magenta = saturated, orange = masked / edge, cyan = low SNR (first matching rule wins,
in that order of priority: trail, saturated, blended, masked/edge, low SNR).
"""

from __future__ import annotations

from pathlib import Path

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


def regions_text(table: Table, *, radius: float = 3.0, label: bool = False) -> str:
    """DS9 region text: one circle of ``radius`` px per source at ``x + 1, y + 1``."""
    lines = [
        "# Region file format: DS9 version 4.1",
        "# ATD-DL detections; x, y converted from 0-based to DS9 1-based image pixels",
        'global color=green width=1 font="helvetica 9 normal roman" select=1 '
        "edit=0 move=0 delete=1 include=1 source=1",
        "image",
    ]
    ids = np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, len(table) + 1)
    flags = np.asarray(table["flags"]) if "flags" in table.colnames else np.zeros(len(table))
    for i, x, y, f in zip(ids, np.asarray(table["x"]), np.asarray(table["y"]), flags):
        extra = f" color={region_colour(int(f))}" if region_colour(int(f)) != "green" else ""
        text = f" text={{{int(i)}}}" if label else ""
        lines.append(f"circle({x + 1:.3f},{y + 1:.3f},{radius:.2f}) #{extra}{text}".rstrip(" #"))
    return "\n".join(lines) + "\n"


def write_ds9_regions(
    table: Table, path: str | Path, *, radius: float = 3.0, label: bool = False
) -> Path:
    """Write :func:`regions_text` to ``path`` atomically and return the path."""
    return atomic_write_text(path, regions_text(table, radius=radius, label=label))
