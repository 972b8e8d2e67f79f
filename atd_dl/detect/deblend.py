"""Shape and peak analysis of detection components: circularity, distinct peaks, trails, splits.

The primitives come first; the deblending *stage* of :mod:`atd_dl.detect.postprocess`
(:func:`find_component_peaks`, :func:`deblend_components`, :func:`assign_sources`) is at the end.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``. Components are the
8-connected regions of a label image (``labels > 0``).

Definitions used throughout (documented in ``docs/detect.md``):

* **Circularity** ``C = 4 pi A / P^2`` (paper Eq. 15) of a pixel blob is evaluated on the
  blob's *outline polygon dilated by half a pixel*: the polygon through the centres of the
  boundary pixels (OpenCV ``findContours``, 8-connected chain) has area ``A_p`` and length
  ``P_p``; the blob is modelled as that polygon grown by a disc of radius 0.5 px, whose area
  is ``A = A_p + P_p / 2 + pi / 4`` and perimeter ``P = P_p + pi``. A single pixel is then a
  disc of radius 0.5 (C = 1), a 2-pixel domino gives 0.85, digitised discs of any radius
  give 0.76-1.0, and C never exceeds 1 for convex blobs (clipped to 1 otherwise).
* **Distinct peak**: a local maximum (3x3) of the lightly smoothed intensity inside a
  component whose dip towards the nearest higher peak of the same component is significant:
  ``S_peak - S_saddle >= nsigma * sigma_dip`` and ``>= contrast * S_peak``, with the saddle
  the minimum of the smoothed intensity along the straight line between the two peaks and
  ``sigma_dip`` from the background rms and the Poisson noise of the source (electrons).
  The brightest peak of each component is always distinct.
* **Trail**: elongation ``sqrt(l1/l2) >= trail_min_elongation`` (second moments of the
  component's pixels, each eigenvalue plus 1/12 for the pixel extent), major-axis length
  ``sqrt(12 l1) >= trail_min_length``, and a *plateau* profile (:func:`is_trail_profile`):
  the smoothed intensity summed across the track in 1-px bins along the major axis has a
  significant median level and no gap below it; stars sitting on a trail add peaks but no
  gaps. A chain of stars shows dips between its PSF-sized peaks and is deblended instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from scipy import ndimage

if TYPE_CHECKING:  # the stage records; no import at run time (components imports this module)
    from atd_dl.detect.components import ComponentProps, Components, Pixels
    from atd_dl.detect.config import PostprocessConfig
    from atd_dl.detect.measure import PsfReference

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=np.uint8)
_SQUARE = np.ones((3, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- circularity
def _contour_circularity(contours: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Circularity of each OpenCV contour (module docstring); also returns the first points.

    Vectorised over all contours: one concatenation, then segment lengths and the
    shoelace area by ``np.bincount``.
    """
    n = len(contours)
    if n == 0:
        return np.zeros(0), np.zeros((0, 2), dtype=np.int64)
    lens = np.fromiter((len(c) for c in contours), dtype=np.int64, count=n)
    pts = np.concatenate(contours).reshape(-1, 2).astype(np.float64)
    cid = np.repeat(np.arange(n), lens)
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    nxt = np.arange(len(pts)) + 1
    nxt[starts + lens - 1] = starts  # close every polygon
    d = pts[nxt] - pts
    seg = np.hypot(d[:, 0], d[:, 1])
    perim_poly = np.bincount(cid, weights=seg, minlength=n)
    cross = pts[:, 0] * pts[nxt, 1] - pts[nxt, 0] * pts[:, 1]
    area_poly = 0.5 * np.abs(np.bincount(cid, weights=cross, minlength=n))
    area = area_poly + 0.5 * perim_poly + np.pi / 4.0
    perim = perim_poly + np.pi
    circ = np.minimum(4.0 * np.pi * area / perim**2, 1.0)
    return circ, pts[starts].astype(np.int64)


def mask_circularity(mask: np.ndarray) -> float:
    """Circularity ``C = 4 pi A / P^2`` of the largest 8-connected blob of a boolean mask.

    See the module docstring for the half-pixel-dilated outline used for ``A`` and ``P``;
    an empty mask returns 0.
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 0.0
    c = max(contours, key=len) if len(contours) > 1 else contours[0]
    perim_poly = cv2.arcLength(c, True)
    area = cv2.contourArea(c) + 0.5 * perim_poly + np.pi / 4.0
    return float(min(4.0 * np.pi * area / (perim_poly + np.pi) ** 2, 1.0))


def label_circularity(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Circularity of every component of a label image (index 0 = background, unused).

    One ``findContours`` pass over the whole image (external outlines, so holes are
    ignored); each outline is attributed to the label under its first point. Components
    without an outline of their own (nested inside another's hole) get 1.
    """
    circ = np.ones(n_labels + 1, dtype=np.float64)
    if n_labels == 0:
        return circ
    binary = (labels > 0).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c, first = _contour_circularity(list(contours))
    if len(c):
        lab = labels[first[:, 1], first[:, 0]]
        circ[lab] = c
    return circ


# --------------------------------------------------------------------------- moments
def label_moments(
    labels: np.ndarray, n_labels: int, fg: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Unweighted second moments of each component's pixels.

    Returns arrays indexed by label (index 0 unused): ``area``, ``xc``, ``yc``, ``l1``,
    ``l2`` (eigenvalues of the pixel covariance, px^2, each plus 1/12 for the pixel's own
    extent), ``theta`` (major-axis angle from +x towards +y, rad), ``elongation``
    ``sqrt(l1/l2)`` and ``length`` ``sqrt(12 l1)`` (px; the length of a uniform track).
    ``fg`` may pass the precomputed flat indices of ``labels > 0``.
    """
    if fg is None:
        fg = np.flatnonzero(labels)
    lab = labels.ravel()[fg]
    ny, nx = labels.shape
    y, x = np.divmod(fg, nx)
    m = n_labels + 1
    area = np.bincount(lab, minlength=m).astype(np.float64)
    safe = np.maximum(area, 1.0)
    xc = np.bincount(lab, weights=x, minlength=m) / safe
    yc = np.bincount(lab, weights=y, minlength=m) / safe
    dx = x - xc[lab]
    dy = y - yc[lab]
    sxx = np.bincount(lab, weights=dx * dx, minlength=m) / safe + 1.0 / 12.0
    syy = np.bincount(lab, weights=dy * dy, minlength=m) / safe + 1.0 / 12.0
    sxy = np.bincount(lab, weights=dx * dy, minlength=m) / safe
    half_tr = 0.5 * (sxx + syy)
    disc = np.sqrt(np.maximum(0.25 * (sxx - syy) ** 2 + sxy**2, 0.0))
    l1 = half_tr + disc
    l2 = np.maximum(half_tr - disc, 1e-12)
    theta = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)
    return {
        "area": area,
        "xc": xc,
        "yc": yc,
        "l1": l1,
        "l2": l2,
        "theta": theta,
        "elongation": np.sqrt(l1 / l2),
        "length": np.sqrt(12.0 * l1),
    }


def intensity_moments(
    labels_fg: np.ndarray,
    fg: np.ndarray,
    width: int,
    n: int,
    intensity_fg: np.ndarray,
    variance_fg: np.ndarray,
) -> dict[str, np.ndarray]:
    """Intensity-weighted second moments of each component and their elongation noise.

    Weights are the intensities clipped at 0. Returns arrays indexed by label (0 unused):
    ``flux`` (sum of weights), ``xc``, ``yc``, ``l1 >= l2`` (principal second moments,
    px^2), ``theta`` (major axis from +x towards +y, rad), ``delta = l1 - l2`` and
    ``delta_err``, its 1-sigma noise from ``variance_fg`` by linear propagation:
    ``d(delta)/dI_i = (u_i^2 - v_i^2 - delta) / flux`` with ``(u, v)`` the pixel offsets
    along the principal axes.
    """
    lab = labels_fg
    y, x = np.divmod(fg, width)
    w = np.clip(intensity_fg.astype(np.float64), 0.0, None)
    m = n + 1
    f = np.bincount(lab, weights=w, minlength=m)
    safe = np.where(f > 0, f, 1.0)
    xc = np.bincount(lab, weights=w * x, minlength=m) / safe
    yc = np.bincount(lab, weights=w * y, minlength=m) / safe
    dx = x - xc[lab]
    dy = y - yc[lab]
    sxx = np.bincount(lab, weights=w * dx * dx, minlength=m) / safe
    syy = np.bincount(lab, weights=w * dy * dy, minlength=m) / safe
    sxy = np.bincount(lab, weights=w * dx * dy, minlength=m) / safe
    half = 0.5 * (sxx + syy)
    delta = 2.0 * np.sqrt(0.25 * (sxx - syy) ** 2 + sxy**2)
    theta = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)
    c, s = np.cos(theta)[lab], np.sin(theta)[lab]
    uu = dx * c + dy * s
    vv = dy * c - dx * s
    g = uu * uu - vv * vv - delta[lab]
    var = np.bincount(lab, weights=variance_fg.astype(np.float64) * g * g, minlength=m)
    return {
        "flux": f,
        "xc": xc,
        "yc": yc,
        "l1": half + 0.5 * delta,
        "l2": half - 0.5 * delta,
        "theta": theta,
        "delta": delta,
        "delta_err": np.sqrt(var) / safe,
    }


@dataclass
class Mixture:
    """Result of :func:`mixture_deblend` (arrays over all mixture components)."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray  # sum of the intensity assigned to the component (clipped at 0)
    x_err: np.ndarray
    y_err: np.ndarray
    owner: np.ndarray  # per input pixel: index of the component with the largest share


def mixture_deblend(
    group: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    intensity: np.ndarray,
    variance: np.ndarray,
    k: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    f0: np.ndarray,
    sigma: float,
    *,
    iterations: int = 25,
) -> Mixture:
    """Flux-conserving deblending of several blends at once by a Gaussian mixture (EM).

    Pixel ``i`` (coordinates ``xs, ys``, intensity, variance) belongs to blend
    ``group[i]``; blend ``b`` is modelled by ``k[b]`` circular Gaussians of the PSF width
    ``sigma`` (px) whose initial positions / fluxes are consecutive entries of ``x0, y0,
    f0`` (blend 0 first). Each EM iteration shares every pixel's clipped intensity among
    its blend's components in proportion to the model (E-step), then moves each component
    to the intensity-weighted centroid (paper Eq. 16) of its share and sets its flux to
    the share's sum (M-step). The positions are therefore Eq. 16 centroids of the
    deblended light; ``x_err, y_err`` propagate ``variance`` through them.
    Fully vectorised over blends (``np.bincount``).
    """
    k = np.asarray(k, dtype=np.int64)
    start = np.cumsum(k) - k
    npix = len(group)
    kp = k[group]
    P = np.repeat(np.arange(npix), kp)
    first = np.cumsum(kp) - kp
    K = start[group][P] + (np.arange(P.size) - np.repeat(first, kp))
    px, py = xs[P].astype(np.float64), ys[P].astype(np.float64)
    w = np.clip(intensity.astype(np.float64), 0.0, None)[P]
    x = np.asarray(x0, dtype=np.float64).copy()
    y = np.asarray(y0, dtype=np.float64).copy()
    f = np.maximum(np.asarray(f0, dtype=np.float64), 1e-12)
    ncomp = x.size
    inv2s2 = 0.5 / float(sigma) ** 2
    r = np.ones(P.size)
    for _ in range(max(int(iterations), 1)):
        d2 = (px - x[K]) ** 2 + (py - y[K]) ** 2
        d2min = np.minimum.reduceat(d2, first) if npix else d2
        num = f[K] * np.exp(-(d2 - d2min[P]) * inv2s2)
        den = np.bincount(P, weights=num, minlength=npix)
        r = num / np.where(den > 0, den, 1.0)[P]
        wr = w * r
        sw = np.bincount(K, weights=wr, minlength=ncomp)
        ok = sw > 0
        safe = np.where(ok, sw, 1.0)
        x = np.where(ok, np.bincount(K, weights=wr * px, minlength=ncomp) / safe, x)
        y = np.where(ok, np.bincount(K, weights=wr * py, minlength=ncomp) / safe, y)
        f = np.where(ok, sw, 1e-12)
    var = np.asarray(variance, dtype=np.float64)[P] * r * r
    safe = np.where(f > 1e-12, f, 1.0)
    x_err = np.sqrt(np.bincount(K, weights=var * (px - x[K]) ** 2, minlength=ncomp)) / safe
    y_err = np.sqrt(np.bincount(K, weights=var * (py - y[K]) ** 2, minlength=ncomp)) / safe
    order = np.lexsort((-r, P))
    best = order[np.r_[0, np.cumsum(kp)[:-1]]] if npix else order[:0]
    owner = K[best]
    return Mixture(x, y, np.where(f > 1e-12, f, 0.0), x_err, y_err, owner)


# --------------------------------------------------------------------------- peaks
def gaussian_smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (OpenCV, kernel truncated at 4 sigma, reflected borders)."""
    if sigma <= 0:
        return np.asarray(image, dtype=np.float32)
    k = 2 * int(np.ceil(4.0 * sigma)) + 1
    return cv2.GaussianBlur(
        np.asarray(image, dtype=np.float32), (k, k), sigma, borderType=cv2.BORDER_REFLECT
    )


def smoothing_noise_factor(sigma: float) -> float:
    """Factor by which :func:`gaussian_smooth` with ``sigma`` px scales white-noise rms."""
    if sigma <= 0:
        return 1.0
    k = 2 * int(np.ceil(4.0 * sigma)) + 1
    g = cv2.getGaussianKernel(k, sigma).ravel()
    return float(np.sum(g * g))  # 2-D kernel = outer(g, g): sqrt(sum k^2) = sum g^2


_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def hill_climb(smooth: np.ndarray, labels: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Steepest-ascent roots of the foreground pixels, vectorised over the frame.

    ``fg`` are the flat indices of ``labels > 0``. Each pixel points to its brightest
    8-neighbour *of the same component* when that is brighter than itself (else to
    itself); following the pointers (pointer jumping, log2 of the path length passes)
    leads every pixel to a local maximum. Returns, for each entry of ``fg``, the index
    into ``fg`` of its local maximum (roots point to themselves). This is a watershed by
    steepest ascent: the basins are the regions grown from each peak.
    """
    ny, nx = labels.shape
    w = nx + 2
    lab_p = cv2.copyMakeBorder(
        labels.astype(np.int32, copy=False), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0
    ).ravel()
    s_p = cv2.copyMakeBorder(
        np.asarray(smooth, dtype=np.float32), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=-np.inf
    ).ravel()
    fy, fx = np.divmod(fg, nx)
    fgp = ((fy + 1) * w + fx + 1).astype(np.int64)
    lab = lab_p[fgp]
    best = s_p[fgp].copy()
    target = fgp.copy()
    for dy, dx in _OFFSETS:
        nb = fgp + (dy * w + dx)
        v = s_p[nb]
        better = (v > best) & (lab_p[nb] == lab)
        best = np.where(better, v, best)
        target = np.where(better, nb, target)
    inv = np.empty(lab_p.size, dtype=np.int32)  # only read at foreground positions
    inv[fgp] = np.arange(fg.size, dtype=np.int32)
    ptr = inv[target]
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            return ptr
        ptr = nxt


def _nearest_higher_large(
    py: np.ndarray,
    px: np.ndarray,
    lab: np.ndarray,
    rank: np.ndarray,
    gstart: np.ndarray,
    which: np.ndarray,
    k: int = 16,
) -> np.ndarray:
    """Nearest higher-ranked maximum for maxima of components with many maxima.

    A KD-tree over all maxima (components kept apart by a large offset) gives each
    maximum its ``k`` nearest neighbours; the closest one of the same component with a
    lower rank (brighter) is taken, else the component's brightest maximum.
    """
    from scipy.spatial import cKDTree

    pts = np.column_stack([px, py, lab.astype(np.float64) * 1.0e7]).astype(np.float64)
    kk = min(k + 1, len(pts))
    _, nb = cKDTree(pts).query(pts[which], k=kk)
    nb = np.atleast_2d(nb)
    valid = (lab[nb] == lab[which][:, None]) & (rank[nb] < rank[which][:, None])
    first = np.argmax(valid, axis=1)
    found = valid[np.arange(len(which)), first]
    return np.where(found, nb[np.arange(len(which)), first], gstart[which])


def distinct_peaks(
    smooth: np.ndarray,
    labels: np.ndarray,
    fg: np.ndarray,
    variance_fg: np.ndarray,
    *,
    nsigma: float = 3.0,
    contrast: float = 0.05,
    noise_factor: float = 1.0,
    max_group: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct intensity peaks of every component and the basin of each pixel.

    ``smooth`` is the smoothed background-subtracted intensity, ``fg`` the flat indices of
    ``labels > 0``, ``variance_fg`` the per-pixel variance of the *unsmoothed* image at
    ``fg`` (background rms^2 + Poisson term) and ``noise_factor`` the rms reduction of the
    smoothing. Local maxima come from :func:`hill_climb`; a secondary maximum is distinct
    when its dip towards the nearest higher maximum of the same component is significant
    (module docstring); the basin of a non-distinct maximum joins that higher maximum's.

    Returns ``(py, px, plabel, owner)``: coordinates and component label of the distinct
    peaks, sorted by label and then by decreasing intensity (so each component's peaks are
    contiguous, brightest first), and for every ``fg`` pixel the index of its peak.
    """
    nfg = fg.size
    if nfg == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e
    ptr = hill_climb(smooth, labels, fg)
    roots = np.flatnonzero(ptr == np.arange(nfg))
    idx = fg[roots]
    lab = labels.ravel()[idx]
    val = smooth.ravel()[idx].astype(np.float64)
    order = np.lexsort((-val, lab))
    roots, idx, lab, val = roots[order], idx[order], lab[order], val[order]
    n = idx.size
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    counts = np.diff(np.r_[starts, n])
    gstart = np.repeat(starts, counts)
    rank = np.arange(n) - gstart
    py, px = np.divmod(idx, smooth.shape[1])
    parent = np.arange(n)
    sec = np.flatnonzero(rank > 0)
    if sec.size:
        # nearest higher-ranked maximum of the same component
        nearest = np.empty(sec.size, dtype=np.int64)
        small = counts[np.searchsorted(starts, gstart[sec])] <= max_group
        if np.any(small):
            s = sec[small]
            slots = np.minimum(gstart[s][:, None] + np.arange(max_group)[None, :], n - 1)
            valid = np.arange(max_group)[None, :] < rank[s][:, None]
            d2 = (py[slots] - py[s][:, None]) ** 2 + (px[slots] - px[s][:, None]) ** 2
            d2 = np.where(valid, d2, np.iinfo(np.int64).max)
            nearest[small] = slots[np.arange(s.size), np.argmin(d2, axis=1)]
        big = np.flatnonzero(~small)
        if big.size:
            nearest[big] = _nearest_higher_large(py, px, lab, rank, gstart, sec[big])
        y0, x0 = py[sec].astype(np.float64), px[sec].astype(np.float64)
        y1, x1 = py[nearest].astype(np.float64), px[nearest].astype(np.float64)
        dist = np.hypot(y1 - y0, x1 - x0)
        nsamp = int(np.clip(np.ceil(dist.max()) * 2 + 1, 3, 49))
        t = np.linspace(0.0, 1.0, nsamp)[None, :]
        ys = y0[:, None] + (y1 - y0)[:, None] * t
        xs = x0[:, None] + (x1 - x0)[:, None] * t
        line = ndimage.map_coordinates(smooth, [ys.ravel(), xs.ravel()], order=1, mode="nearest")
        saddle = line.reshape(ys.shape).min(axis=1)
        s_pk = val[sec]
        var_pk = np.maximum(variance_fg[roots[sec]].astype(np.float64), 0.0)
        sig_pk = noise_factor * np.sqrt(var_pk)
        sig_dip = noise_factor * np.sqrt(
            np.maximum(2.0 * var_pk - np.maximum(s_pk, 0.0) + np.maximum(saddle, 0.0), 0.0)
        )
        dip = s_pk - saddle
        ok = (
            (dip >= nsigma * sig_dip) & (dip >= contrast * np.abs(s_pk)) & (s_pk >= nsigma * sig_pk)
        )
        parent[sec[~ok]] = nearest[~ok]
        while True:  # resolve chains of non-distinct maxima to a distinct one
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
    keep = parent == np.arange(n)
    peak_id = np.cumsum(keep) - 1
    pos = np.empty(nfg, dtype=np.int64)
    pos[roots] = np.arange(n)
    owner = peak_id[parent[pos[ptr]]]
    sel = np.flatnonzero(keep)
    return py[sel], px[sel], lab[sel], owner


# --------------------------------------------------------------------------- trails
def is_trail_profile(
    ys: np.ndarray,
    xs: np.ndarray,
    values: np.ndarray,
    variances: np.ndarray,
    theta: float,
    *,
    plateau_nsigma: float = 3.0,
    gap_fraction: float = 0.7,
    end_trim: int = 3,
    profile_sigma: float = 1.0,
) -> bool:
    """Plateau test along the major axis ``theta`` (rad) for one component's pixels.

    ``values`` are the smoothed intensities at ``(ys, xs)`` and ``variances`` their
    variances. The profile is the sum of ``values`` across the track in 1-px bins along
    the major axis, smoothed by a Gaussian of ``profile_sigma`` bins; ``end_trim`` bins at
    each end (where the track's light rises) are ignored. With ``level`` the median of the
    remaining bins and ``sigma`` their median noise, the component is a trail when

    * the plateau is significant: ``level >= plateau_nsigma * sigma``, and
    * it has no gap: no bin falls below ``level - max(gap_fraction * level, 3 sigma)``.

    Stars on a trail add peaks but no gaps, so a trail crossing stars stays a trail; a
    chain of stars concentrates its light in PSF-sized peaks with dips between them.
    """
    xc, yc = xs.mean(), ys.mean()
    t = (xs - xc) * np.cos(theta) + (ys - yc) * np.sin(theta)
    bins = np.floor(t - t.min()).astype(np.int64)
    prof = np.bincount(bins, weights=values.astype(np.float64)).astype(np.float64)
    var = np.bincount(bins, weights=variances.astype(np.float64), minlength=prof.size).astype(
        np.float64
    )
    if prof.size < 2 * end_trim + 3:
        return False
    if profile_sigma > 0:
        prof = ndimage.gaussian_filter1d(prof, profile_sigma, mode="nearest")
        k = ndimage.gaussian_filter1d(np.eye(1, 9, 4).ravel(), profile_sigma)
        var = var * float(np.sum(k * k))
    inner = slice(end_trim, prof.size - end_trim)
    prof, sigma = prof[inner], np.sqrt(np.maximum(var[inner], 0.0))
    level = float(np.median(prof))
    noise = float(np.median(sigma))
    if level <= 0 or level < plateau_nsigma * noise:
        return False
    return bool(prof.min() >= level - max(gap_fraction * level, 3.0 * noise))


# --------------------------------------------------------------------------- splitting
def _grow_round_region(rest8: np.ndarray, threshold: float) -> np.ndarray:
    """Grow a region from the distance-transform maximum while it stays round.

    ``rest8`` is a uint8 0/1 mask with a zero border. The seed is the pixel farthest from
    the background; the region grows by one geodesic step at a time inside ``rest8``
    (alternating 4- and 8-neighbour steps, so the front is octagonal), and circularity is
    recomputed after each step; growth stops before the step that would take C below
    ``threshold`` or when nothing is left to add. Returns the region as uint8 0/1.
    """
    dt = cv2.distanceTransform(rest8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    _, _, _, (sx, sy) = cv2.minMaxLoc(dt)
    region = np.zeros_like(rest8)
    region[sy, sx] = 1
    size = 1
    step = 0
    while True:
        grown = np.bitwise_and(cv2.dilate(region, _CROSS if step % 2 == 0 else _SQUARE), rest8)
        step += 1
        new_size = int(cv2.countNonZero(grown))
        if new_size == size or mask_circularity(grown) < threshold:
            break
        region, size = grown, new_size
    return region


def split_by_growth(
    comp: np.ndarray,
    *,
    circularity: float | None = None,
    threshold: float = 0.7,
    min_child_area: int = 2,
    min_blend_area: int = 6,
    max_children: int = 4,
) -> np.ndarray:
    """Paper §3.3 shape deblending of a non-round component without two distinct peaks.

    The first sub-target is grown from the distance-transform maximum while it stays
    round (:func:`_grow_round_region`); the largest 8-connected piece of the remaining
    pixels that has a core (a pixel at least sqrt(2) px from the background) is the next
    sub-target; the other leftover pieces (slivers, thin necks) join the first. The remainder is split again while it is itself
    non-round, up to ``max_children``. ``circularity`` may pass the component's known C.
    Returns an int32 child map (1..k, 0 outside); a single child (all ones) when no valid
    split exists.
    """
    rest = cv2.copyMakeBorder(
        np.ascontiguousarray(comp, dtype=np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0
    )
    child = np.zeros(rest.shape, dtype=np.int32)
    k = 0
    circ = mask_circularity(rest) if circularity is None else circularity
    while k < max_children - 1:
        if cv2.countNonZero(rest) < min_blend_area or circ >= threshold:
            break
        first = _grow_round_region(rest, threshold)
        remainder = rest & (1 - first)
        nlab, lab, stats, _ = cv2.connectedComponentsWithStats(remainder, connectivity=8)
        if nlab <= 1:
            break
        # a sub-target needs a core: a pixel >= sqrt(2) px from the background (slivers
        # and 1-2 px wide necks left along the first sub-target join it instead)
        dt = cv2.distanceTransform(remainder, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        core = np.zeros(nlab, dtype=np.float64)
        np.maximum.at(core, lab.ravel(), dt.ravel())
        area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
        ok = (area >= min_child_area) & (core >= 1.4)
        ok[0] = False
        if not ok.any() or cv2.countNonZero(first) < min_child_area:
            break
        big = int(np.argmax(np.where(ok, area, -1.0)))
        k += 1
        child[(first > 0) | ((lab > 0) & (lab != big))] = k
        rest = (lab == big).astype(np.uint8)
        circ = mask_circularity(rest)
    child[rest > 0] = k + 1
    return child[1:-1, 1:-1]


# --------------------------------------------------------------------------- the stage
# Stage 3 of the post-processing (:mod:`atd_dl.detect.postprocess`): the primitives above
# applied to every component of a frame. Per-label arrays are indexed by component label
# (0 = background, unused); per-pixel arrays follow ``Pixels`` (flat raster order).


@dataclass(frozen=True)
class Peaks:
    """Distinct intensity peaks of all components (:func:`distinct_peaks`)."""

    y: np.ndarray  # row of each peak (0-based)
    x: np.ndarray  # column of each peak
    label: np.ndarray  # component of each peak (ascending)
    owner: np.ndarray  # per foreground pixel: index of the peak whose basin holds it
    count: np.ndarray  # per label: number of distinct peaks
    first: np.ndarray  # per label: index of its first peak


def find_component_peaks(
    smooth: np.ndarray,
    comps: Components,
    pix: Pixels,
    noise_factor: float,
    cfg: PostprocessConfig,
) -> Peaks:
    """Distinct peaks of the smoothed intensity ``smooth`` in every component.

    ``noise_factor`` is the rms reduction of the smoothing (:func:`smoothing_noise_factor`);
    the dip criterion uses ``cfg.deblend_nsigma`` and ``cfg.deblend_contrast``.
    """
    py, px, pl, owner = distinct_peaks(
        smooth,
        comps.labels,
        pix.index,
        pix.var,
        nsigma=cfg.deblend_nsigma,
        contrast=cfg.deblend_contrast,
        noise_factor=noise_factor,
    )
    count = np.bincount(pl, minlength=comps.n + 1)
    first = np.searchsorted(pl, np.arange(comps.n + 1))
    return Peaks(py, px, pl, owner, count, first)


@dataclass
class Split:
    """How the components are divided into sources (filled by :func:`deblend_components`)."""

    counts: np.ndarray  # int64 per label: sources made from it (1 = not split; [0] = 0)
    rank: np.ndarray  # int64 per foreground pixel: child index within its component
    grown: dict[int, np.ndarray] = field(default_factory=dict)  # label -> child map (bbox)
    # mixture children: component, rank, and fitted x, y, x_err, y_err (px)
    mixture: dict[str, np.ndarray] = field(default_factory=dict)


def deblend_components(
    comps: Components,
    pix: Pixels,
    props: ComponentProps,
    peaks: Peaks,
    imom: dict[str, np.ndarray],
    psf: PsfReference,
    trail: np.ndarray,
    smooth: np.ndarray,
    cfg: PostprocessConfig,
) -> Split:
    """Split blended components into children (``docs/detect.md``, deblending).

    Trails and components with saturated pixels are never split. In order: components
    with more than ``cfg.max_mixture_peaks`` distinct peaks, or larger than
    ``cfg.max_deblend_area`` px with 2+ (crowded fields of broad stars cut low join into such
    components) -> steepest-ascent basins; 2+ distinct peaks or
    an unresolved pair (intensity elongation ``imom["delta"]`` significantly above the
    PSF's ``psf.delta``) -> Gaussian-mixture flux sharing (:func:`mixture_deblend`, PSF
    sigma ``psf.sigma`` px); other non-round components (circularity below
    ``cfg.circularity_threshold``) -> :func:`split_by_growth`.
    """
    n = comps.n
    splittable = ~trail & ~props.saturated
    splittable[0] = False
    large = props.moments["area"] > cfg.max_deblend_area
    eligible = splittable & ~large
    counts = np.ones(n + 1, dtype=np.int64)
    counts[0] = 0
    split = Split(counts, np.zeros(pix.index.size, dtype=np.int64))
    if not cfg.deblend:
        return split
    basins = splittable & ((peaks.count > cfg.max_mixture_peaks) | (large & (peaks.count >= 2)))
    _split_crowded(split, basins, peaks, pix)
    multi = np.flatnonzero(eligible & (peaks.count >= 2) & (peaks.count <= cfg.max_mixture_peaks))
    excess = imom["delta"] - psf.delta
    pair = np.flatnonzero(
        eligible
        & (peaks.count == 1)
        & (props.moments["area"] >= cfg.min_blend_area)
        & (excess >= cfg.pair_nsigma * imom["delta_err"])
        & (excess >= cfg.pair_min_excess * psf.sigma**2)
    )
    if multi.size + pair.size:
        _split_mixture(split, multi, pair, excess, pix, peaks, imom, psf, smooth, cfg)
    _split_by_shape(split, eligible, comps, props, peaks, cfg)
    return split


def _split_crowded(split: Split, basins: np.ndarray, peaks: Peaks, pix: Pixels) -> None:
    """Components marked in ``basins`` (bool per component): one child per distinct peak's
    steepest-ascent basin."""
    many = np.flatnonzero(basins)
    if not many.size:
        return
    in_many = np.zeros(split.counts.size, dtype=bool)
    in_many[many] = True
    sel = in_many[pix.label]
    split.rank[sel] = peaks.owner[sel] - peaks.first[pix.label[sel]]
    split.counts[many] = peaks.count[many]


def _mixture_start(
    multi: np.ndarray,
    pair: np.ndarray,
    excess: np.ndarray,
    peaks: Peaks,
    imom: dict[str, np.ndarray],
    smooth: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial mixture ``x0, y0, f0``: the distinct peaks (``multi``, at the smoothed peak
    value) or two equal halves at +-d/2 along the major axis (``pair``, ``d^2/4 = excess``)."""
    nx = smooth.shape[1]
    pk_idx = (
        np.concatenate([np.arange(peaks.first[b], peaks.first[b] + peaks.count[b]) for b in multi])
        if multi.size
        else np.zeros(0, np.int64)
    )
    half = np.sqrt(np.maximum(excess[pair], 0.0))  # equal fluxes: d^2 / 4 = excess
    ax, ay = np.cos(imom["theta"][pair]), np.sin(imom["theta"][pair])
    xc, yc = imom["xc"][pair], imom["yc"][pair]
    px, py = peaks.x[pk_idx], peaks.y[pk_idx]
    x0 = np.r_[px, np.column_stack([xc - half * ax, xc + half * ax]).ravel()]
    y0 = np.r_[py, np.column_stack([yc - half * ay, yc + half * ay]).ravel()]
    f0 = np.r_[
        np.maximum(smooth.ravel()[py * nx + px], 1e-6),
        np.repeat(imom["flux"][pair] / 2.0 + 1e-6, 2),
    ]
    return x0, y0, f0


def _mixture_accepted(
    mix: Mixture, k: np.ndarray, n_multi: int, cfg: PostprocessConfig
) -> np.ndarray:
    """Bool per blend: every child owns a pixel and, for pairs, the two fitted positions are
    ``>= cfg.pair_min_separation`` px apart with ``>= cfg.pair_min_fraction`` of the light
    in the fainter one."""
    nb = k.size
    start = np.cumsum(k) - k
    owned = np.bincount(mix.owner, minlength=int(k.sum()))
    blend_idx = np.repeat(np.arange(nb), k)
    ok = np.bincount(blend_idx, weights=owned == 0, minlength=nb) == 0
    if nb > n_multi:
        a_, b_ = start[n_multi:], start[n_multi:] + 1
        sep = np.hypot(mix.x[a_] - mix.x[b_], mix.y[a_] - mix.y[b_])
        frac = np.minimum(mix.flux[a_], mix.flux[b_]) / np.maximum(
            mix.flux[a_] + mix.flux[b_], 1e-12
        )
        ok[n_multi:] &= (sep >= cfg.pair_min_separation) & (frac >= cfg.pair_min_fraction)
    return ok


def _split_mixture(
    split: Split,
    multi: np.ndarray,
    pair: np.ndarray,
    excess: np.ndarray,
    pix: Pixels,
    peaks: Peaks,
    imom: dict[str, np.ndarray],
    psf: PsfReference,
    smooth: np.ndarray,
    cfg: PostprocessConfig,
) -> None:
    """Share the light of multi-peak blends and unresolved pairs by a Gaussian mixture.

    Accepted blends get one child per mixture component (pixels to the dominant one,
    positions from the fit); rejected multi-peak blends fall back to the peak basins;
    rejected pairs stay single.
    """
    blends = np.r_[multi, pair]
    k = np.r_[peaks.count[multi], np.full(pair.size, 2)]
    x0, y0, f0 = _mixture_start(multi, pair, excess, peaks, imom, smooth)
    blend_of = np.full(split.counts.size, -1, dtype=np.int64)
    blend_of[blends] = np.arange(blends.size)
    sel = np.flatnonzero(blend_of[pix.label] >= 0)
    group = blend_of[pix.label[sel]]
    mix = mixture_deblend(
        group,
        pix.x[sel],
        pix.y[sel],
        pix.value[sel],
        pix.var[sel],
        k,
        x0,
        y0,
        f0,
        psf.sigma,
        iterations=cfg.mixture_iterations,
    )
    start = np.cumsum(k) - k
    ok = _mixture_accepted(mix, k, multi.size, cfg)
    use = ok[group]
    split.rank[sel[use]] = mix.owner[use] - start[group[use]]
    fb = ~use & (peaks.count[pix.label[sel]] >= 2)  # failed multi-peak: steepest ascent
    split.rank[sel[fb]] = peaks.owner[sel[fb]] - peaks.first[pix.label[sel[fb]]]
    done = ok | (np.arange(blends.size) < multi.size)
    split.counts[blends[done]] = k[done]
    blend_idx = np.repeat(np.arange(blends.size), k)
    mix_ids = np.flatnonzero(np.repeat(ok, k))
    split.mixture = {
        "comp": blends[blend_idx[mix_ids]],
        "rank": mix_ids - start[blend_idx[mix_ids]],
        "x": mix.x[mix_ids],
        "y": mix.y[mix_ids],
        "x_err": mix.x_err[mix_ids],
        "y_err": mix.y_err[mix_ids],
    }


def _split_by_shape(
    split: Split,
    eligible: np.ndarray,
    comps: Components,
    props: ComponentProps,
    peaks: Peaks,
    cfg: PostprocessConfig,
) -> None:
    """Unsplit, single-peak components with circularity below the threshold (Eq. 15):
    :func:`split_by_growth` of their pixel mask."""
    circ = props.circularity
    shaped = np.flatnonzero(
        eligible
        & (split.counts == 1)
        & (peaks.count < 2)
        & (circ < cfg.circularity_threshold)
        & (props.moments["area"] >= cfg.min_blend_area)
    )
    for lab in shaped:
        cm = split_by_growth(
            comps.labels[comps.bbox(lab)] == lab,
            circularity=float(circ[lab]),
            threshold=cfg.circularity_threshold,
            min_child_area=cfg.min_child_area,
            min_blend_area=cfg.min_blend_area,
            max_children=cfg.max_children,
        )
        nk = int(cm.max())
        if nk >= 2:
            split.grown[int(lab)] = cm
            split.counts[lab] = nk


@dataclass(frozen=True)
class Sources:
    """The final sources: segmentation map and per-source records (index = source id,
    0 unused; children of one component get consecutive ids)."""

    n: int  # number of sources
    segmap: np.ndarray  # int32 [ny, nx]: source id of each pixel, 0 = background
    seg_fg: np.ndarray  # int32 per foreground pixel: its source id
    first_id: np.ndarray  # per label: id of the component's first source
    component: np.ndarray  # per id: component label
    blended: np.ndarray  # per id: a deblended child
    parent: np.ndarray  # per id: component label of a deblended child, else 0
    circularity: np.ndarray  # per id: circularity of the source's segment
    trail: np.ndarray  # per id: the component is a trail


def assign_sources(
    comps: Components, pix: Pixels, props: ComponentProps, split: Split, trail: np.ndarray
) -> Sources:
    """Number the sources and build the segmentation map from the ``split``."""
    counts = split.counts
    first_id = np.cumsum(counts) - counts + 1
    n_src = int(counts.sum())
    seg_fg = (first_id[pix.label] + split.rank).astype(np.int32)
    flat = np.zeros(comps.labels.size, dtype=np.int32)
    flat[pix.index] = seg_fg
    seg: np.ndarray = flat.reshape(comps.labels.shape)
    for lab, cm in split.grown.items():
        inside = cm > 0
        seg[comps.bbox(lab)][inside] = first_id[lab] + cm[inside] - 1
    if split.grown:
        seg_fg = seg.ravel()[pix.index]
    comp_of = np.r_[0, np.repeat(np.arange(comps.n + 1), counts)]  # component of each id
    is_split = counts > 1
    blended = is_split[comp_of]
    circ = props.circularity[comp_of].copy()
    if is_split.any():
        boxes = ndimage.find_objects(seg)
        for i in np.flatnonzero(blended):
            box = boxes[i - 1]
            circ[i] = mask_circularity(seg[box] == i) if box is not None else 1.0
    parent = np.where(blended, comp_of, 0)
    return Sources(n_src, seg, seg_fg, first_id, comp_of, blended, parent, circ, trail[comp_of])
