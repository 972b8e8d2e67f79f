"""File-name conventions shared by every command: which files are FITS frames, and a
frame's name (its *stem*) used for output files, dataset rows and reference look-ups.

This module is the one owner of both; ``atd-dl detect``, ``atd-dl prep``,
``atd-dl baseline`` and the evaluation reference loader import them from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["FITS_SUFFIXES", "frame_stem", "is_fits_name"]

#: File-name endings recognised as FITS images (matched case-insensitively): plain,
#: gzipped and tile-compressed (``.fz``) files.
FITS_SUFFIXES: tuple[str, ...] = (
    ".fits",
    ".fit",
    ".fts",
    ".fits.gz",
    ".fit.gz",
    ".fts.gz",
    ".fits.fz",
    ".fz",
)


def is_fits_name(path: str | Path) -> bool:
    """True when the file name ends with one of :data:`FITS_SUFFIXES` (any case)."""
    return Path(path).name.lower().endswith(FITS_SUFFIXES)


def frame_stem(path: str | Path, suffixes: Iterable[str] = FITS_SUFFIXES) -> str:
    """Frame name: the file name without its FITS suffix (``a/b.fits.fz`` -> ``b``).

    The longest matching suffix of ``suffixes`` (case-insensitive; default
    :data:`FITS_SUFFIXES`) is removed; other names lose only their last extension.
    """
    name = Path(path).name
    low = name.lower()
    for suffix in sorted(suffixes, key=len, reverse=True):
        if low.endswith(suffix.lower()):
            return name[: -len(suffix)]
    return Path(name).stem
