"""Stage 1 of the post-processing: probability map -> connected components and their pixels.

The records built here are what the later stages (:mod:`~atd_dl.detect.trails`,
:mod:`~atd_dl.detect.deblend`, :mod:`~atd_dl.detect.measure`) work on:

* :class:`FrameImage` -- the calibrated, background-subtracted frame with its bad and
  saturated pixels and the background noise;
* :class:`Components` -- 8-connected components of ``prob >= threshold`` after the size cut;
* :class:`Pixels` -- the components' pixels as flat arrays (vectorised work over the frame);
* :class:`ComponentProps` -- shape and pixel-quality properties of each component.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``. Intensities are in
the frame's flux unit (electrons when the gain is known, else ADU); variances in its square.
Per-component arrays are indexed by label (index 0 = background, unused).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
from astropy.stats import mad_std

from atd_dl.detect import deblend

_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class FrameImage:
    """The frame as the stages see it (all arrays ``[ny, nx]``)."""

    image: np.ndarray  # float32 background-subtracted intensity, bad pixels set to 0
    bad: np.ndarray  # bool: masked or non-finite pixel
    any_bad: bool
    saturated: np.ndarray | None  # bool: saturated pixel (None: none known)
    any_saturated: bool
    poisson: bool  # add the sources' shot noise (intensities in electrons)
    rms: np.ndarray | float = 1.0  # background rms (map or scalar), flux unit
    counting: bool = False  # photon counts: residual background levels are means

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.image.shape  # type: ignore[return-value]

    @property
    def rms_median(self) -> float:
        """Median background rms (on a 1-in-4 subsample of a map)."""
        rms = self.rms
        return float(np.median(rms[::4, ::4])) if isinstance(rms, np.ndarray) else float(rms)

    def variance(self) -> np.ndarray | float:
        """Per-pixel variance ``rms^2`` (+ the clipped intensity when ``poisson``), float64."""
        rms = self.rms
        var = rms.astype(np.float64) ** 2 if isinstance(rms, np.ndarray) else rms**2
        if self.poisson:
            var = var + np.clip(self.image, 0.0, None)
        return var

    def bad_or_none(self) -> np.ndarray | None:
        """The bad-pixel mask, or None when no pixel is bad."""
        return self.bad if self.any_bad else None


def frame_image(
    prob: np.ndarray,
    image_e: np.ndarray,
    *,
    mask: np.ndarray | None,
    saturated: np.ndarray | None,
    poisson: bool,
    counting: bool = False,
) -> FrameImage:
    """Check the inputs and build the :class:`FrameImage` (noise not yet set).

    ``prob`` and ``image_e`` must be 2-D arrays of the same shape; non-finite pixels of
    ``image_e`` and ``mask`` (True = unusable) become bad pixels, set to 0 in ``image``.
    """
    img = np.asarray(image_e, dtype=np.float32)
    if prob.ndim != 2 or prob.shape != img.shape:
        raise ValueError(
            f"prob {prob.shape} and image_e {img.shape} must be 2-D arrays of the same shape"
        )
    bad = ~np.isfinite(img)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    any_bad = bool(bad.any())
    img0 = np.where(bad, np.float32(0), img) if any_bad else img
    sat = None if saturated is None else np.asarray(saturated, dtype=bool)
    any_sat = sat is not None and bool(sat.any())
    return FrameImage(img0, bad, any_bad, sat, any_sat, poisson, counting=counting)


def background_rms(img: np.ndarray, exclude: np.ndarray) -> float:
    """Robust (MAD) rms of the pixels outside ``exclude``, on a 1-in-4 subsample."""
    vals = img[::2, ::2][~exclude[::2, ::2]]
    if vals.size < 10:
        vals = img[~exclude]
    if vals.size < 10:
        return 1.0
    rms = float(mad_std(vals))
    return rms if np.isfinite(rms) and rms > 0 else 1.0


def with_noise(
    frame: FrameImage, background_rms_e: np.ndarray | float | None, detected: np.ndarray
) -> FrameImage:
    """``frame`` with its background rms: ``background_rms_e`` (map or scalar; non-finite
    map values replaced by the map's median) or, when None, :func:`background_rms` of the
    good pixels outside ``detected`` (bool ``[ny, nx]``)."""
    if background_rms_e is None:
        rms: np.ndarray | float = background_rms(frame.image, frame.bad | detected)
    else:
        rms = np.asarray(background_rms_e, dtype=np.float32)
        if rms.ndim == 0:
            rms = float(rms)
        elif not np.all(np.isfinite(rms)):
            rms = np.where(np.isfinite(rms), rms, np.float32(np.nanmedian(rms)))
    return dataclasses.replace(frame, rms=rms)


@dataclass(frozen=True)
class Components:
    """8-connected components of the thresholded probability map after the size cut."""

    labels: np.ndarray  # int32 [ny, nx]: 0 = background, 1..n = component
    stats: np.ndarray  # OpenCV stats (x0, y0, w, h, area) of components 1..n (row = label - 1)
    n: int  # number of components
    binary: np.ndarray  # uint8 [ny, nx]: prob >= threshold, before the size cut

    def bbox(self, lab: int | np.integer) -> tuple[slice, slice]:
        """``(rows, columns)`` slices of the bounding box of component ``lab``."""
        x0, y0, w, h = (int(v) for v in self.stats[lab - 1, :4])
        return slice(y0, y0 + h), slice(x0, x0 + w)


def find_components(
    prob: np.ndarray, threshold: float, *, min_area: int, small_peak_prob: float
) -> Components:
    """Components of ``prob >= threshold`` (8-connected, OpenCV; NaN counts as below).

    Components smaller than ``min_area`` px are dropped unless their peak probability
    reaches ``small_peak_prob`` (> 1: never); the kept ones are renumbered 1..n in the
    raster order of their first pixel.
    """
    binary = np.ascontiguousarray((prob >= threshold).view(np.uint8))  # NaN compares False
    n_raw, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary, connectivity=8, ltype=cv2.CV_32S
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    if small_peak_prob <= 1.0:  # undersampled stars: a confident single pixel counts
        small = ~keep
        small[0] = False
        if small.any():
            peak_p = np.zeros(n_raw)
            pv = np.nan_to_num(np.asarray(prob, dtype=np.float64).ravel(), nan=0.0)
            np.maximum.at(peak_p, np.asarray(labels, dtype=np.int64).ravel(), pv)
            keep |= small & (peak_p >= small_peak_prob)
    keep[0] = False
    n = int(keep.sum())
    if n < n_raw - 1:
        remap = np.zeros(n_raw, dtype=np.int32)
        remap[keep] = np.arange(1, n + 1, dtype=np.int32)
        labels = remap[labels]
    return Components(labels, stats[keep], n, binary)


def split_by_probability(
    prob: np.ndarray,
    comps: Components,
    prominence: float,
    keep_whole: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
) -> Components:
    """Split components holding several probability maxima of ``prominence`` or more.

    A component of ``prob >= threshold`` merges neighbouring stars once the threshold falls
    below the probability between them (crowded fields, broad PSFs); the network's map still
    shows one maximum per star. Each maximum whose height over the saddle towards any higher
    maximum of its component is at least ``prominence`` (an h-maximum, Soille 2003, §6.3.4)
    seeds one part; the component's pixels go to the part they climb to (watershed of
    ``-prob``). The intensity-based deblending then works inside each part. Components with
    ``keep_whole`` (bool per label, index 0 unused: trails) are left as they are. Maxima
    near a ``saturated`` star (:func:`_join_saturated`) seed one part with it: its map may
    ring, and its own stage comes later. ``prominence`` <= 0 returns ``comps`` unchanged.
    Parts are renumbered in the raster order of their first pixel, as
    :func:`find_components` numbers components.
    """
    if prominence <= 0 or comps.n == 0:
        return comps
    from scipy import ndimage
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    from atd_dl.detect.adaptive_threshold import peak_positions

    p = np.where(comps.labels > 0, np.nan_to_num(np.asarray(prob, np.float64)), 0.0)
    ys, xs, _ = peak_positions(p, comps.labels > 0)
    candidate = np.bincount(comps.labels[ys, xs], minlength=comps.n + 1) >= 2
    if keep_whole is not None:
        candidate &= ~np.asarray(keep_whole, bool)
    labels = comps.labels.astype(np.int64)
    next_label = comps.n + 1
    for lab in np.flatnonzero(candidate):
        box = comps.bbox(lab)
        inside = labels[box] == lab
        crop = np.where(inside, p[box], 0.0)
        markers, n_parts = ndimage.label(h_maxima(crop, prominence) > 0, structure=_KERNEL)
        if saturated is not None and n_parts >= 2:
            markers, n_parts = _join_saturated(markers, saturated[box] & inside)
        if n_parts < 2:
            continue
        parts = watershed(-crop, markers, mask=inside, connectivity=2)
        labels[box][inside] = parts[inside] + next_label - 1
        next_label += n_parts
    if next_label == comps.n + 1:
        return comps
    return _renumbered(labels, comps.binary)


def _join_saturated(markers: np.ndarray, saturated: np.ndarray) -> tuple[np.ndarray, int]:
    """Markers (labels 1..n) within ``max(6, 3 r_sat)`` px of the ``saturated`` pixels
    (``r_sat`` their equivalent radius: a brighter star rings farther out) become one
    marker; returns the markers renumbered 1..m and m."""
    n_sat = int(np.count_nonzero(saturated))
    if n_sat:
        from scipy import ndimage

        reach = max(6.0, 3.0 * float(np.sqrt(n_sat / np.pi)))
        near = ndimage.distance_transform_edt(~saturated) <= reach
        joined = np.unique(markers[near & (markers > 0)])
        if joined.size > 1:
            markers = np.where(np.isin(markers, joined), joined[0], markers)
    present = np.unique(markers[markers > 0])
    remap = np.zeros(int(markers.max()) + 1, markers.dtype)
    remap[present] = np.arange(1, present.size + 1)
    return remap[markers], int(present.size)


def _renumbered(labels: np.ndarray, binary: np.ndarray) -> Components:
    """Components 1..n in the raster order of their first pixel, with OpenCV-style stats."""
    from scipy import ndimage

    flat = labels.ravel()
    fg = np.flatnonzero(flat)
    present, first = np.unique(flat[fg], return_index=True)
    remap = np.zeros(int(flat.max()) + 1, np.int32)
    remap[present[np.argsort(fg[first])]] = np.arange(1, present.size + 1, dtype=np.int32)
    new = remap[labels]
    area = np.bincount(new.ravel(), minlength=present.size + 1)
    stats = np.zeros((present.size, 5), np.int32)
    for i, (rows, cols) in enumerate(ndimage.find_objects(new)):
        stats[i] = (
            cols.start,
            rows.start,
            cols.stop - cols.start,
            rows.stop - rows.start,
            area[i + 1],
        )
    return Components(new, stats, int(present.size), binary)


@dataclass(frozen=True)
class Pixels:
    """The components' pixels (``labels > 0``) as flat arrays, in raster order."""

    index: np.ndarray  # flat index into the frame
    label: np.ndarray  # component of the pixel
    value: np.ndarray  # float32 intensity (bad pixels 0)
    x: np.ndarray  # column (int)
    y: np.ndarray  # row (int)
    var: np.ndarray  # float64 variance: rms^2 (+ clipped intensity when Poisson)
    saturated: np.ndarray  # bool: a saturated pixel in the 3x3 neighbourhood
    bad: np.ndarray  # bool: a bad pixel in the 3x3 neighbourhood


def near_pixels(mask: np.ndarray | None, index: np.ndarray) -> np.ndarray:
    """Bool at the flat ``index``: ``mask`` (None = all False) true in the 3x3 neighbourhood."""
    if mask is None:
        return np.zeros(index.size, dtype=bool)
    return cv2.dilate(mask.view(np.uint8), _KERNEL).ravel()[index] > 0


def component_pixels(comps: Components, frame: FrameImage) -> Pixels:
    """Gather the foreground pixels of ``comps`` with their intensity, variance and quality."""
    nx = frame.shape[1]
    fg = np.flatnonzero(comps.labels)
    img_fg = frame.image.ravel()[fg]
    fy, fx = np.divmod(fg, nx)
    rms = frame.rms
    rms_fg = rms.ravel()[fg] if isinstance(rms, np.ndarray) else np.full(fg.size, rms)
    var_fg = rms_fg.astype(np.float64) ** 2
    if frame.poisson:
        var_fg += np.clip(img_fg, 0.0, None)
    sat = frame.saturated if frame.any_saturated else None
    return Pixels(
        fg,
        comps.labels.ravel()[fg],
        img_fg,
        fx,
        fy,
        var_fg,
        near_pixels(sat, fg),
        near_pixels(frame.bad_or_none(), fg),
    )


@dataclass(frozen=True)
class ComponentProps:
    """Per-component properties (arrays indexed by label, 0 unused)."""

    moments: dict[str, np.ndarray]  # unweighted pixel moments (deblend.label_moments)
    circularity: np.ndarray  # 4 pi A / P^2 (Eq. 15)
    saturated: np.ndarray  # bool: a pixel next to a saturated one
    bad: np.ndarray  # bool: a pixel next to a bad one


def component_properties(comps: Components, pix: Pixels, frame: FrameImage) -> ComponentProps:
    """Moments, circularity and saturated / bad-pixel contact of every component."""
    n = comps.n

    def touches(hit: np.ndarray, any_hit: bool) -> np.ndarray:
        if not any_hit:
            return np.zeros(n + 1, dtype=bool)
        return np.bincount(pix.label, weights=hit, minlength=n + 1) > 0

    return ComponentProps(
        deblend.label_moments(comps.labels, n, pix.index),
        deblend.label_circularity(comps.labels, n),
        touches(pix.saturated, frame.any_saturated),
        touches(pix.bad, frame.any_bad),
    )


def label_max(lab: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-label maximum of ``values`` (labels 1..n, every label present) by one sort."""
    order = np.argsort(lab, kind="stable")
    ls = lab[order]
    vs = values[order]
    starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
    out = np.full(n + 1, -np.inf)
    out[ls[starts]] = np.maximum.reduceat(vs, starts)
    return out[1:]
