"""Threshold segmentation of candidate source pixels (paper Eq. 7) and blob geometry (Eq. 8).

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``, ``x`` = column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Segmentation", "segment_threshold"]

# 8-connectivity: diagonal neighbours join a component (as SExtractor does), so a faint
# star whose above-threshold pixels touch only by a corner stays one blob.
_STRUCTURE_8 = np.ones((3, 3), dtype=bool)
_STRUCTURE_4 = ndi.generate_binary_structure(2, 1)


@dataclass
class Segmentation:
    """Connected components of the candidate-pixel map.

    ``labels`` is an int32 map ``[ny, nx]``: 0 = background, ``1..n`` = component id.
    Per-component arrays are indexed by ``id - 1``.
    """

    labels: np.ndarray
    n: int
    area: np.ndarray  # int64 [n], pixels
    x: np.ndarray  # float64 [n], unweighted centroid column (Eq. 8 ``c``)
    y: np.ndarray  # float64 [n], unweighted centroid row
    radius: np.ndarray  # float64 [n], ``max_i |P_i - c| + 1`` (Eq. 8), pixels
    peak: np.ndarray  # float64 [n], maximum data value in the component
    n_discarded: int  # components removed for being smaller than ``min_area``

    @property
    def ids(self) -> np.ndarray:
        """Component ids ``1..n``."""
        return np.arange(1, self.n + 1, dtype=np.int32)


def segment_threshold(
    data: np.ndarray,
    background: np.ndarray,
    background_rms: np.ndarray,
    *,
    f: float = 0.5,
    min_area: int = 2,
    connectivity: int = 8,
    mask: np.ndarray | None = None,
) -> Segmentation:
    """Segment pixels above ``T = B + f·σ_B`` (Eq. 7) into connected components.

    Parameters
    ----------
    data : ndarray [ny, nx]
        Calibrated frame, ADU.
    background, background_rms : ndarray [ny, nx]
        Background level ``B`` and its rms ``σ_B`` (ADU), e.g. from
        :func:`atd_dl.prep.enhance.estimate_background`.
    f : float
        Threshold in units of ``σ_B`` above the background (paper: 0.5).
    min_area : int
        Components with fewer pixels are discarded (paper: 2, i.e. single pixels go).
    connectivity : {8, 4}
        Pixel connectivity of a component (default 8, diagonal neighbours join).
    mask : bool ndarray, optional
        True = unusable pixel; such pixels never become candidates (non-finite values
        never do either). Saturated pixels should *not* be passed here if saturated stars
        are to be segmented.
    """
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D, got shape {data.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    with np.errstate(invalid="ignore"):
        candidate = data > (background + f * background_rms)
    if mask is not None:
        candidate &= ~mask
    structure = _STRUCTURE_8 if connectivity == 8 else _STRUCTURE_4
    labels, n_raw = ndi.label(candidate, structure=structure)
    labels = labels.astype(np.int32, copy=False)

    flat = labels.ravel()
    pix = np.flatnonzero(flat)
    lab = flat[pix]
    area_raw = np.bincount(lab, minlength=n_raw + 1)
    keep = area_raw >= min_area
    keep[0] = False
    n = int(keep.sum())
    n_discarded = int(n_raw - n)
    # relabel 1..n in the original order, 0 for discarded components
    new_id = np.zeros(n_raw + 1, dtype=np.int32)
    new_id[keep] = np.arange(1, n + 1, dtype=np.int32)
    if n_discarded:
        labels = new_id[labels]
        sel = keep[lab]
        pix = pix[sel]
        lab = new_id[lab[sel]]
    nx = data.shape[1]
    ys, xs = np.divmod(pix, nx)
    area = np.bincount(lab, minlength=n + 1)[1:]
    safe = np.maximum(area, 1)
    cx = np.bincount(lab, weights=xs, minlength=n + 1)[1:] / safe
    cy = np.bincount(lab, weights=ys, minlength=n + 1)[1:] / safe
    d2 = (xs - cx[lab - 1]) ** 2 + (ys - cy[lab - 1]) ** 2
    rmax2 = np.zeros(n, dtype=np.float64)
    np.maximum.at(rmax2, lab - 1, d2)
    peak = np.full(n, -np.inf)
    np.maximum.at(peak, lab - 1, data.ravel()[pix].astype(np.float64))
    return Segmentation(
        labels=labels,
        n=n,
        area=area.astype(np.int64),
        x=cx,
        y=cy,
        radius=np.sqrt(rmax2) + 1.0,
        peak=peak,
        n_discarded=n_discarded,
    )
