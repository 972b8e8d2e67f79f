"""Quality flags of detected sources: a bit mask stored in the catalog column ``flags``.

The low bits follow SExtractor's ``FLAGS`` where the meaning overlaps, so tools and habits
built for SExtractor catalogs carry over; ATD-DL's own flags use bits 256 and up (SExtractor
bits 16-128 are never set). The bits are fixed and written into every catalog (FITS
``FLAGBITn`` cards and ``FLAGVERS``; ECSV ``flag_bits`` and ``flag_version``):

=====  ===============  =========================  =======================================
bit    name             SExtractor FLAGS           meaning
=====  ===============  =========================  =======================================
1      MASKED           1 (bad pixels bias the     a masked / NaN pixel lies in the
                        photometry)                source's segment or next to it
2      BLENDED          2 (deblended)              deblended child: split out of a larger
                                                   component
4      SATURATED        4 (saturated)              a saturated pixel lies in the segment
                                                   or next to it (or in its component)
8      NEAR_EDGE        8 (truncated at the        centroid within ``edge`` px of the
                        image edge)                frame border
256    TRAIL            --                         elongated component without a distinct
                                                   peak (moving object); not deblended
512    LOW_SNR          --                         aperture SNR below ``low_snr``
1024   BINARY           --                         visual-binary candidate (optional stamp
                                                   classifier, ``detect --binaries``)
=====  ===============  =========================  =======================================

Catalogs before flag version 2 used 1 BLENDED, 2 TRAIL, 4 SATURATED, 8 MASKED,
16 NEAR_EDGE, 32 LOW_SNR, 64 BINARY (:data:`LEGACY_BITS`).
"""

from __future__ import annotations

import enum

import numpy as np

#: Version of the bit assignment written with every catalog (FITS ``FLAGVERS``).
FLAG_VERSION = 2


class SourceFlag(enum.IntFlag):
    """Bit mask of per-source quality flags (see the module docstring)."""

    NONE = 0
    MASKED = 1
    BLENDED = 2
    SATURATED = 4
    NEAR_EDGE = 8
    TRAIL = 256
    LOW_SNR = 512
    BINARY = 1024


#: Bits of flag version 1 (catalogs without ``FLAGVERS``), for :func:`from_legacy`.
LEGACY_BITS: dict[SourceFlag, int] = {
    SourceFlag.BLENDED: 1,
    SourceFlag.TRAIL: 2,
    SourceFlag.SATURATED: 4,
    SourceFlag.MASKED: 8,
    SourceFlag.NEAR_EDGE: 16,
    SourceFlag.LOW_SNR: 32,
    SourceFlag.BINARY: 64,
}

FLAG_DESCRIPTIONS: dict[SourceFlag, str] = {
    SourceFlag.MASKED: "masked/NaN pixels in/next to source",
    SourceFlag.BLENDED: "deblended child of a blend",
    SourceFlag.SATURATED: "saturated pixels in/next to source",
    SourceFlag.NEAR_EDGE: "centroid near the frame edge",
    SourceFlag.TRAIL: "trail (moving object), not deblended",
    SourceFlag.LOW_SNR: "aperture SNR below low_snr",
    SourceFlag.BINARY: "visual-binary candidate (optional stamp classifier, detect --binaries)",
}


def flag_header_cards() -> list[tuple[str, int, str]]:
    """FITS cards ``(FLAGBITn, value, description)`` documenting every flag bit."""
    cards = []
    for i, (flag, text) in enumerate(FLAG_DESCRIPTIONS.items(), start=1):
        cards.append((f"FLAGBIT{i}", int(flag), f"{flag.name}: {text}"[:47]))
    return cards


def decode_flags(value: int) -> list[str]:
    """Names of the bits set in ``value`` (e.g. ``[\"BLENDED\", \"NEAR_EDGE\"]``)."""
    return [f.name for f in FLAG_DESCRIPTIONS if int(value) & int(f)]  # type: ignore[misc]


def has_flag(flags: np.ndarray, flag: SourceFlag) -> np.ndarray:
    """Boolean array: which entries of an integer flag column have ``flag`` set."""
    return (np.asarray(flags).astype(np.int64) & int(flag)) != 0


def from_legacy(flags: np.ndarray) -> np.ndarray:
    """Flag column of a version-1 catalog (no ``FLAGVERS``) in the current bits."""
    old = np.asarray(flags).astype(np.int64)
    out = np.zeros(old.shape, dtype=np.int64)
    for flag, bit in LEGACY_BITS.items():
        out[(old & bit) != 0] |= int(flag)
    return out.astype(np.asarray(flags).dtype)


def source_flags(
    *,
    blended: np.ndarray,
    trail: np.ndarray,
    saturated: np.ndarray,
    masked: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    shape: tuple[int, int],
    edge: float,
    snr: np.ndarray,
    low_snr: float,
) -> np.ndarray:
    """Stage 5 of the post-processing: the int32 flag column of ``n`` sources.

    Boolean inputs (length ``n``) set BLENDED, TRAIL, SATURATED and MASKED; NEAR_EDGE when
    the 0-based centroid ``x, y`` (px, pixel centre = integer) lies within ``edge`` px of
    the border of a frame of ``shape = (ny, nx)``, i.e. ``x < edge`` or
    ``x > nx - 1 - edge`` (same in y); LOW_SNR when ``snr < low_snr``.
    """
    ny, nx = shape
    flags = np.zeros(len(x), dtype=np.int32)
    flags[np.asarray(blended, bool)] |= int(SourceFlag.BLENDED)
    flags[np.asarray(trail, bool)] |= int(SourceFlag.TRAIL)
    flags[np.asarray(saturated, bool)] |= int(SourceFlag.SATURATED)
    flags[np.asarray(masked, bool)] |= int(SourceFlag.MASKED)
    near = (x < edge) | (y < edge) | (x > nx - 1 - edge) | (y > ny - 1 - edge)
    flags[near] |= int(SourceFlag.NEAR_EDGE)
    flags[snr < low_snr] |= int(SourceFlag.LOW_SNR)
    return flags
