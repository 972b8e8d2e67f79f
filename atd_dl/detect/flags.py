"""Quality flags of detected sources: a bit mask stored in the catalog column ``flags``.

The bits are fixed (they are written to the FITS header of every catalog as ``FLAGBIT*``
cards) so catalogs from different versions stay comparable:

====  ===============  ==================================================================
bit   name             meaning
====  ===============  ==================================================================
1     BLENDED          deblended child: the source was split out of a larger component
2     TRAIL            elongated component without a distinct peak (moving object); not
                       deblended
4     SATURATED        the source's pixels (or their 8-neighbours) include saturated pixels
8     MASKED           the source's pixels (or their 8-neighbours) include masked / NaN pixels
16    NEAR_EDGE        centroid within ``edge`` pixels of the frame border
32    LOW_SNR          aperture SNR below the ``low_snr`` limit
====  ===============  ==================================================================
"""

from __future__ import annotations

import enum

import numpy as np


class SourceFlag(enum.IntFlag):
    """Bit mask of per-source quality flags (see the module docstring)."""

    NONE = 0
    BLENDED = 1
    TRAIL = 2
    SATURATED = 4
    MASKED = 8
    NEAR_EDGE = 16
    LOW_SNR = 32
    BINARY = 64


FLAG_DESCRIPTIONS: dict[SourceFlag, str] = {
    SourceFlag.BLENDED: "deblended child of a blend",
    SourceFlag.TRAIL: "trail (moving object), not deblended",
    SourceFlag.SATURATED: "saturated pixels in/next to source",
    SourceFlag.MASKED: "masked/NaN pixels in/next to source",
    SourceFlag.NEAR_EDGE: "centroid near the frame edge",
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
