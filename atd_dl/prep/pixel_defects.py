"""Sharp pixel defects: hot and cold pixels (and cosmic-ray hits) that no PSF can make.

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
  median leaves (a star's core does; a one- or two-pixel defect does not);
* **hot** where the pixel is a local maximum (3 x 3; that keeps the rims of bright stars,
  where the 3 x 3 median falls below a pixel on a curved slope), ``S > SHARP_SIGMA`` and
  its edge neighbours do not hold it up as a star's would: the peak pixel ``z`` of a star
  of image FWHM ``w`` has two edge neighbours of at least ``exp(-4 ln 2 / w^2) z``
  (:func:`neighbour_support`: 0.53 at ``w = 2.1``, 0.34 at ``w = 1.6``), less a noise
  allowance (:data:`SUPPORT_NOISE`); a hot pixel's second brightest edge neighbour is sky
  (a pair of hot pixels: the first is the pair's other pixel, the second is sky). Stars sharper than
  ``MIN_FWHM_HOT`` cannot be told from hot pixels on one frame, so hot pixels are left
  alone there, and where the FWHM is unknown (a frame without a measurable star: it may be
  undersampled) unless the frame is :func:`defect_dominated`: thousands of sharp faint
  peaks without the brighter ones a star population would have (the CMOS frame above's
  mirror) — then every sharp local maximum on the sky is cleaned. L.A.Cosmic's fine-structure test does the same job but fails for faint
  stars, whose 3 x 3 median noise can pull down (and for stars centred on a pixel corner);
* **cold**, the mirror image: a local minimum with ``-S > SHARP_SIGMA`` and
  ``-S > SHARP_OBJLIM * (-F)``. No source is negative, so there is no FWHM condition; the
  shape test leaves broad dips (over-subtracted halos) alone.

Two passes (:data:`SHARP_PASSES`): the second finds the fainter pixel of a neighbouring
pair, no longer hidden behind the brighter one.

Only pixels whose 3 x 3 median lies within ``SHARP_SIGMA`` of the sky are tested: a
defect on a star (or in its hole on a mirrored frame) is left alone, and so is every pixel
of a bright or saturated core, whatever its shape. Flagged pixels take the value of their
3 x 3 median (in the caller's unit), as L.A.Cosmic cleans; pixels that are masked or touch a masked pixel (saturated cores and bleeds,
non-finite pixels) are never flagged. Photon-counting frames (a few counts per pixel) are
left alone: there a single-pixel excess of 2 photons is ``S > 5`` and the noise is not
Gaussian; :mod:`atd_dl.detect.segment` handles them with its counting SNR floor.

Pixel convention: arrays ``[y, x]``, 0-based.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from atd_dl.prep.morphology import grow_mask, max_filter

__all__ = [
    "SHARP_SIGMA",
    "SHARP_OBJLIM",
    "MIN_FWHM_HOT",
    "neighbour_support",
    "defect_dominated",
    "SharpPixels",
    "find_sharp_pixels",
    "clean_sharp_pixels",
]

#: sharpness (sigma of the background) above which a pixel is a defect candidate
SHARP_SIGMA = 5.0
#: sharpness over fine structure above which a dark pixel is cold (L.A.Cosmic's objlim)
SHARP_OBJLIM = 5.0
#: image FWHM (px) below which stars are too sharp for the hot-pixel test
MIN_FWHM_HOT = 1.5
#: a frame without a measured PSF is defect-dominated (every sharp bright pixel on the sky
#: is cleaned) with at least this many sharp local maxima, and this share of its pixels,
DEFECT_MIN_COUNT = 50
DEFECT_MIN_SHARE = 1e-4
#: ... and fewer than this many times as many local maxima above BRIGHT_SIGMA (sigma; the
#: brightness at which the PSF width is measured, :func:`atd_dl.prep.psf_width.bright_peaks`)
DEFECT_BRIGHT_RATIO = 0.01
BRIGHT_SIGMA = 15.0
#: relative error allowed on the measured FWHM by the hot-pixel test
FWHM_MARGIN = 0.1
#: noise allowance of the hot-pixel test, sigma: a star's peak pixel may read up to 3 sigma
#: high and its second brightest edge neighbour 2 sigma low
SUPPORT_NOISE = (3.0, 2.0)
#: passes (the second finds the fainter pixel of a pair of neighbouring defects)
SHARP_PASSES = 2


@dataclass(frozen=True)
class SharpPixels:
    """Defect masks (bool ``[ny, nx]``) and the cleaned frame in sigma units (``z``: each
    defect replaced by its 3 x 3 median, other pixels unchanged, masked pixels 0)."""

    hot: np.ndarray
    cold: np.ndarray
    z: np.ndarray
    defect_dominated: bool = False  # :func:`defect_dominated` decided the hot-pixel test

    @property
    def any(self) -> np.ndarray:
        return self.hot | self.cold


def find_sharp_pixels(
    subtracted: np.ndarray,
    rms: np.ndarray,
    bad: np.ndarray | None = None,
    *,
    fwhm: float | None = None,
) -> SharpPixels:
    """Hot and cold pixels of a background-subtracted frame (see the module docstring).

    ``subtracted``, ``rms``: the frame minus its background and the background RMS, in one
    unit; ``bad``: True = unusable pixel; ``fwhm``: the frame's image FWHM (px), None or
    non-finite when unmeasured (then hot pixels are flagged only on a
    :func:`defect_dominated` frame).
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
    measured = fwhm is not None and bool(np.isfinite(fwhm))
    if measured and fwhm is not None and fwhm >= MIN_FWHM_HOT:
        support = neighbour_support(float(fwhm))
    elif not measured and defect_dominated(z, allowed):
        support = math.inf  # every sharp local maximum on the sky is a defect
    else:
        support = 0.0
    hot = np.zeros(sub.shape, bool)
    cold = np.zeros(sub.shape, bool)
    for _ in range(SHARP_PASSES):
        new_hot, new_cold, median3 = _one_pass(z, allowed, support)
        if not (new_hot.any() or new_cold.any()):
            break
        hot |= new_hot
        cold |= new_cold
        flagged = new_hot | new_cold
        z[flagged] = median3[flagged]
    return SharpPixels(hot, cold, z, math.isinf(support))


def defect_dominated(z: np.ndarray, allowed: np.ndarray) -> bool:
    """Whether the sharp bright pixels of a frame without a measured PSF are a defect
    population: at least :data:`DEFECT_MIN_COUNT` (and :data:`DEFECT_MIN_SHARE` of the
    tested pixels) local maxima more than ``SHARP_SIGMA`` over their 3 x 3 median on the sky,
    and fewer than :data:`DEFECT_BRIGHT_RATIO` times as many local maxima above
    :data:`BRIGHT_SIGMA`. Stars come with a luminosity function: among thousands of faint
    sharp ones, a fifth (Euclidean counts, N(>S) ~ S^-1.5) to a thirtieth (counts three
    times steeper) are three times brighter; hot pixels need not be."""
    import cv2

    median3 = cv2.medianBlur(z, 3)
    is_max = z >= max_filter(z, 3)
    sharp = allowed & is_max & (z - median3 > SHARP_SIGMA) & (np.abs(median3) < SHARP_SIGMA)
    n_sharp = int(np.count_nonzero(sharp))
    if n_sharp < max(DEFECT_MIN_COUNT, DEFECT_MIN_SHARE * np.count_nonzero(allowed)):
        return False
    n_bright = int(np.count_nonzero(allowed & is_max & (z > BRIGHT_SIGMA)))
    return n_bright < DEFECT_BRIGHT_RATIO * n_sharp


def neighbour_support(fwhm: float) -> float:
    """The least ratio of a star's second brightest edge neighbour to its peak pixel
    (background 0): ``exp(-4 ln 2 / fwhm^2)`` for a Gaussian of image FWHM ``fwhm`` px (less
    :data:`FWHM_MARGIN`) centred on the pixel; a star centred off the pixel centre by
    ``(dx, dy)`` has edge neighbours ``exp(-a (1 - 2|dx|))`` and ``exp(-a (1 - 2|dy|))`` of
    its peak pixel towards its centre, more."""
    w = max(float(fwhm) * (1.0 - FWHM_MARGIN), 1e-3)
    return float(np.exp(-4.0 * np.log(2.0) / (w * w)))


def _one_pass(
    z: np.ndarray, allowed: np.ndarray, support: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hot and cold pixels of one pass over ``z`` (sigma units), and its 3 x 3 median;
    ``support``: :func:`neighbour_support` of the frame's PSF, 0 = no hot-pixel test,
    infinite = every sharp local maximum on the sky is hot (:func:`defect_dominated`)."""
    import cv2

    median3 = cv2.medianBlur(z, 3)
    sharp = z - median3
    # a defect sits on the sky: a 3 x 3 median near 0 (not on a star, saturated or not)
    candidates = allowed & (np.abs(sharp) > SHARP_SIGMA) & (np.abs(median3) < SHARP_SIGMA)
    if not candidates.any():
        return candidates, candidates.copy(), median3
    fine = median3 - cv2.medianBlur(median3, 5)
    hot = np.zeros(z.shape, bool)
    if math.isinf(support):
        hot = candidates & (sharp > 0) & (z >= max_filter(z, 3))
    elif support > 0:
        hot = candidates & (sharp > 0) & (z >= max_filter(z, 3))
        ys, xs = np.nonzero(hot)
        # a star's peak has two edge neighbours of at least ``support`` times it (the two
        # towards its centre); a hot pixel's (or a pair's brighter one's) second neighbour
        # is sky
        star_floor = support * (z[ys, xs] - SUPPORT_NOISE[0]) - SUPPORT_NOISE[1]
        hot[ys, xs] = _second_edge_neighbour(z, ys, xs) < star_floor
    cold = candidates & (-sharp > SHARP_OBJLIM * np.maximum(-fine, 0.0))
    cold &= -z >= max_filter(-z, 3)
    return hot, cold, median3


def _second_edge_neighbour(z: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The second largest of the 4 edge neighbours of pixels ``(ys, xs)`` (not on the edge)."""
    around = np.stack([z[ys - 1, xs], z[ys + 1, xs], z[ys, xs - 1], z[ys, xs + 1]])
    return np.sort(around, axis=0)[-2]


def clean_sharp_pixels(
    subtracted: np.ndarray,
    rms: np.ndarray,
    bad: np.ndarray | None = None,
    *,
    fwhm: float | None = None,
) -> tuple[np.ndarray, SharpPixels]:
    """``subtracted`` (float32 copy) with its hot and cold pixels replaced by their 3 x 3
    median, and the :class:`SharpPixels` found (:func:`find_sharp_pixels`)."""
    found = find_sharp_pixels(subtracted, rms, bad, fwhm=fwhm)
    cleaned = np.array(subtracted, dtype=np.float32, copy=True)
    flagged = found.any
    if flagged.any():
        cleaned[flagged] = found.z[flagged] * np.asarray(rms, np.float32)[flagged]
    return cleaned, found
