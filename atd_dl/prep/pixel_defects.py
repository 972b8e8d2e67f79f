"""Sharp pixel defects: cold pixels, and hot pixels on frames where they outnumber stars.

Real detectors have single pixels far above (hot, warm, random-telegraph, cosmic-ray hits)
or far below (cold, dead, low-response) their neighbours. On some cameras they are
everywhere: the shared 5-s CMOS frame ``M13_blue_0001.fits`` has ~1 % of its pixels 5-10
sigma *below* the sky, isolated; its mirror (the frame reflected about its background, the
false-alarm test of docs/evaluation.md) has as many hot pixels, and pairs of neighbouring
ones look like faint stars to the network.

The tests follow L.A.Cosmic (van Dokkum 2001, PASP 113, 1420), in units of the background
RMS (``z``), without its Laplacian:

* sharpness ``S = z - med3(z)``: a pixel against the median of its 3 x 3 window;
* fine structure ``F = med3(z) - med5(med3(z))``: what a source that survives the 3 x 3
  median leaves (a broad dip does; a one- or two-pixel defect does not);
* **cold**: a local minimum (3 x 3) with ``-S > SHARP_SIGMA`` and
  ``-S > SHARP_OBJLIM * (-F)``. No source is negative, so no PSF condition is needed; the
  shape test leaves broad dips (over-subtracted halos) alone;
* **hot**: a local maximum with ``S > SHARP_SIGMA`` — only on a :func:`defect_dominated`
  frame: thousands of sharp faint peaks without the brighter ones a star population would
  have (the CMOS frame's mirror). A star sharper than ~1.5 px cannot be told from a hot pixel
  on one frame, and the measured FWHM cannot vouch for the stars: it came out 4.6 px on a
  sparse 1.3-px test frame and 2.4 px on a crowded one (galaxies, blends), where a hot-pixel
  test trusting it cleaned the peaks of real stars of SNR 6-16. The population test does not
  depend on it.

Two passes (:data:`SHARP_PASSES`): the second finds the fainter pixel of a neighbouring
pair, no longer hidden behind the brighter one.

Only pixels whose 3 x 3 median lies within ``SHARP_SIGMA`` of the sky are tested: a
defect on a star (or in its hole on a mirrored frame) is left alone, and so is every pixel
of a bright or saturated core, whatever its shape. Flagged pixels take the value of their
3 x 3 median (in the caller's unit), as L.A.Cosmic cleans; pixels that are masked or touch
a masked pixel (saturated cores and bleeds, non-finite pixels) and the frame edge are never
flagged. Photon-counting frames (a few counts per pixel) are left alone by the caller: there
a single-pixel excess of 2 photons is ``S > 5`` and the noise is not Gaussian.

Pixel convention: arrays ``[y, x]``, 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atd_dl.prep.morphology import grow_mask, max_filter

__all__ = [
    "SHARP_SIGMA",
    "SHARP_OBJLIM",
    "defect_dominated",
    "SharpPixels",
    "find_sharp_pixels",
    "clean_sharp_pixels",
]

#: sharpness (sigma of the background) above which a pixel is a defect candidate
SHARP_SIGMA = 5.0
#: sharpness over fine structure above which a dark pixel is cold (L.A.Cosmic's objlim)
SHARP_OBJLIM = 5.0
#: a frame is defect-dominated (every sharp bright pixel on the sky is cleaned) with at
#: least this many sharp local maxima on the sky, and this share of its pixels,
DEFECT_MIN_COUNT = 50
DEFECT_MIN_SHARE = 1e-4
#: ... and fewer than this many times as many local maxima above BRIGHT_SIGMA (sigma; the
#: brightness at which the PSF width is measured, :func:`atd_dl.prep.psf_width.bright_peaks`)
DEFECT_BRIGHT_RATIO = 0.01
BRIGHT_SIGMA = 15.0
#: passes (the second finds the fainter pixel of a pair of neighbouring defects)
SHARP_PASSES = 2


@dataclass(frozen=True)
class SharpPixels:
    """Defect masks (bool ``[ny, nx]``) and the cleaned frame in sigma units (``z``: each
    defect replaced by its 3 x 3 median, other pixels unchanged, masked pixels 0)."""

    hot: np.ndarray
    cold: np.ndarray
    z: np.ndarray
    defect_dominated: bool = False  # hot pixels were looked for (:func:`defect_dominated`)

    @property
    def any(self) -> np.ndarray:
        return self.hot | self.cold


def find_sharp_pixels(
    subtracted: np.ndarray, rms: np.ndarray, bad: np.ndarray | None = None
) -> SharpPixels:
    """Cold pixels, and hot ones on a :func:`defect_dominated` frame, of a
    background-subtracted frame (see the module docstring).

    ``subtracted``, ``rms``: the frame minus its background and the background RMS, in one
    unit; ``bad``: True = unusable pixel.
    """
    sub = np.asarray(subtracted, dtype=np.float32)
    noise = np.asarray(rms, dtype=np.float32)
    masked = np.zeros(sub.shape, bool) if bad is None else np.asarray(bad, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = sub / noise
    usable = np.isfinite(z) & ~masked
    z = np.ascontiguousarray(np.where(usable, z, np.float32(0.0)), dtype=np.float32)
    allowed = usable & ~grow_mask(~usable, 1)
    allowed[[0, -1], :] = False  # the 3 x 3 median repeats edge pixels: no test there
    allowed[:, [0, -1]] = False
    median3 = _median3(z)
    find_hot = defect_dominated(z, allowed, median3)
    hot = np.zeros(sub.shape, bool)
    cold = np.zeros(sub.shape, bool)
    for i in range(SHARP_PASSES):
        new_hot, new_cold = _one_pass(z, median3, allowed, find_hot)
        if not (new_hot.any() or new_cold.any()):
            break
        hot |= new_hot
        cold |= new_cold
        flagged = new_hot | new_cold
        z[flagged] = median3[flagged]
        if i + 1 < SHARP_PASSES:
            median3 = _median3(z)
    return SharpPixels(hot, cold, z, find_hot)


def _median3(z: np.ndarray) -> np.ndarray:
    """The 3 x 3 median of ``z`` (float32, C-contiguous; edges repeated)."""
    import cv2

    return cv2.medianBlur(z, 3)


def defect_dominated(z: np.ndarray, allowed: np.ndarray, median3: np.ndarray | None = None) -> bool:
    """Whether the sharp bright pixels of a frame (``z``: sigma units; ``allowed``: pixels
    that may be tested) are a defect population: at least :data:`DEFECT_MIN_COUNT` (and
    :data:`DEFECT_MIN_SHARE` of the tested pixels) local maxima more than ``SHARP_SIGMA``
    over their 3 x 3 median on the sky, and fewer than :data:`DEFECT_BRIGHT_RATIO` times as
    many local maxima above :data:`BRIGHT_SIGMA`. Stars come with a luminosity function:
    among thousands of faint sharp ones, a fifth (Euclidean counts, N(>S) ~ S^-1.5) to a
    thirtieth (counts three times steeper) are three times brighter; hot pixels need not
    be. ``median3``: the 3 x 3 median of ``z`` when already at hand."""
    if median3 is None:
        median3 = _median3(z)
    is_max = z >= max_filter(z, 3)
    sharp = allowed & is_max & (z - median3 > SHARP_SIGMA) & (np.abs(median3) < SHARP_SIGMA)
    n_sharp = int(np.count_nonzero(sharp))
    if n_sharp < max(DEFECT_MIN_COUNT, DEFECT_MIN_SHARE * np.count_nonzero(allowed)):
        return False
    n_bright = int(np.count_nonzero(allowed & is_max & (z > BRIGHT_SIGMA)))
    return n_bright < DEFECT_BRIGHT_RATIO * n_sharp


def _one_pass(
    z: np.ndarray, median3: np.ndarray, allowed: np.ndarray, find_hot: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Hot (when ``find_hot``) and cold pixels of one pass over ``z`` (sigma units) with its
    3 x 3 median ``median3``."""
    import cv2

    sharp = z - median3
    # a defect sits on the sky: a 3 x 3 median near 0 (not on a star, saturated or not)
    candidates = allowed & (np.abs(sharp) > SHARP_SIGMA) & (np.abs(median3) < SHARP_SIGMA)
    if not candidates.any():
        return candidates, candidates.copy()
    hot = np.zeros(z.shape, bool)
    if find_hot:
        hot = candidates & (sharp > 0) & (z >= max_filter(z, 3))
    fine = median3 - cv2.medianBlur(median3, 5)
    cold = candidates & (-sharp > SHARP_OBJLIM * np.maximum(-fine, 0.0))
    cold &= -z >= max_filter(-z, 3)
    return hot, cold


def clean_sharp_pixels(
    subtracted: np.ndarray, rms: np.ndarray, bad: np.ndarray | None = None
) -> tuple[np.ndarray, SharpPixels]:
    """``subtracted`` (float32 copy) with its defects (:func:`find_sharp_pixels`) replaced
    by their 3 x 3 median, and the :class:`SharpPixels` found."""
    found = find_sharp_pixels(subtracted, rms, bad)
    cleaned = np.array(subtracted, dtype=np.float32, copy=True)
    flagged = found.any
    if flagged.any():
        cleaned[flagged] = found.z[flagged] * np.asarray(rms, np.float32)[flagged]
    return cleaned, found
