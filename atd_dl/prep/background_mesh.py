"""Low-resolution background and rms meshes, vectorised over all boxes at once.

The estimator of photutils ``Background2D`` (3.x) with ``MedianBackground``,
``MADStdBackgroundRMS`` and ``SigmaClip(sigma=3, maxiters=10)``, computed on one padded
``[n_box_y, n_box_x, box_pixels]`` array instead of per-box calls, without importing
photutils (whose import alone costs ~0.45 CPU-s per process):

1. the frame is cut into ``box`` boxes; the last row/column of boxes may be partial
   (the padding counts as masked);
2. each box is sigma-clipped about its median at ±3 standard deviations, iterating until
   no box loses a pixel (at most 10 passes);
3. background = median and rms = MAD · 1.4826 of the clipped pixels;
4. a box keeping no more than ``(1 - exclude_percentile / 100)`` of a full box's pixels
   (masked and clipped pixels both count) is excluded and refilled by inverse-distance
   weighting of its 10 nearest kept boxes (power 1), as photutils does;
5. a ``filter_size`` median filter over the mesh, ignoring positions outside it.

``tests/test_background_mesh.py`` checks the meshes against photutils itself. Units are
those of the data (ADU); mesh index ``[j, i]`` is the box starting at pixel
``(y, x) = (j · box_y, i · box_x)``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "box_meshes",
    "fill_excluded_boxes",
    "median_filter_mesh",
    "nanmean",
    "nanmedian",
    "MAD_TO_STD",
]

#: the normal distribution's standard deviation over its median absolute deviation
MAD_TO_STD = 1.482602218505602


def _nan_reduce(name: str, x: np.ndarray, axis: int) -> np.ndarray:
    """numpy's ``name`` (nanmedian, nanmean, nanstd) along ``axis``, by bottleneck: the
    same values, several times cheaper."""
    try:
        import bottleneck

        return np.asarray(getattr(bottleneck, name)(x, axis=axis))
    except ImportError:  # pragma: no cover - bottleneck is a declared dependency
        return np.asarray(getattr(np, name)(x, axis=axis))


def nanmedian(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``np.nanmedian`` along ``axis`` (bottleneck)."""
    return _nan_reduce("nanmedian", x, axis)


def nanmean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``np.nanmean`` along ``axis`` (bottleneck)."""
    return _nan_reduce("nanmean", x, axis)


def _nanstd(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return _nan_reduce("nanstd", x, axis)


def _boxes(data: np.ndarray, bad: np.ndarray, box_shape: tuple[int, int]) -> np.ndarray:
    """``[n_box_y, n_box_x, by · bx]`` float32 copy with NaN at bad and padded pixels."""
    by, bx = box_shape
    ny, nx = data.shape
    nby, nbx = -(-ny // by), -(-nx // bx)
    padded = np.full((nby * by, nbx * bx), np.nan, dtype=np.float32)
    padded[:ny, :nx] = data
    padded[:ny, :nx][bad] = np.nan
    return padded.reshape(nby, by, nbx, bx).transpose(0, 2, 1, 3).reshape(nby, nbx, by * bx)


def _sigma_clip(
    boxes: np.ndarray, sigma: float = 3.0, maxiters: int = 10, centre_of: str = "median"
) -> np.ndarray:
    """Clip (set to NaN) pixels outside centre ± ``sigma`` · std of their box (centre: the
    median, or the mean with ``centre_of="mean"``), iterating each box until it loses no
    pixel (``maxiters`` at most): astropy's ``SigmaClip`` along the last axis, computed again
    only for the boxes still changing."""
    centre_fn = nanmedian if centre_of == "median" else nanmean
    flat = boxes.reshape(-1, boxes.shape[-1])
    active = np.arange(len(flat))
    for _ in range(maxiters):
        sub = flat[active]
        with np.errstate(invalid="ignore"):
            centre = centre_fn(sub)[:, None]
            spread = _nanstd(sub)[:, None]
            out = (sub < centre - sigma * spread) | (sub > centre + sigma * spread)
        changed = out.any(axis=1)
        if not changed.any():
            break
        sub[out] = np.nan
        flat[active[changed]] = sub[changed]
        active = active[changed]
    return boxes


def box_meshes(
    data: np.ndarray,
    bad: np.ndarray,
    box_shape: tuple[int, int],
    *,
    exclude_percentile: float = 10.0,
    clip: bool = True,
    statistic: str = "median",
) -> tuple[np.ndarray, np.ndarray]:
    """Background and rms meshes (float32, NaN for excluded boxes) of ``data`` ``[ny, nx]``.

    ``statistic="median"``: 3-sigma-clipped median and MAD rms (photutils' defaults).
    ``statistic="mean"``: 5-sigma-clipped (about the mean) mean and standard deviation, for
    photon-counting frames, whose median and MAD are whole counts (a sky of 0.5 photon/px
    has median 0 and MAD 0); the wide clip removes stars but barely the Poisson tail.
    ``bad`` True = pixel left out. Raises ``ValueError`` when every box is excluded.
    """
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    boxes = _boxes(np.asarray(data, dtype=np.float32), np.asarray(bad, dtype=bool), box_shape)
    if clip:
        boxes = (
            _sigma_clip(boxes, sigma=5.0, centre_of="mean")
            if statistic == "mean"
            else _sigma_clip(boxes)
        )
    n_good = np.count_nonzero(~np.isnan(boxes), axis=-1)
    excluded = n_good <= (1.0 - exclude_percentile / 100.0) * boxes.shape[-1]
    if excluded.all():
        raise ValueError(
            f"every {box_shape[0]}x{box_shape[1]} box has more than "
            f"{exclude_percentile:g}% masked or clipped pixels"
        )
    with np.errstate(invalid="ignore"):
        if statistic == "mean":
            background = nanmean(boxes).astype(np.float32)
            rms = _nanstd(boxes).astype(np.float32)
        else:
            background = nanmedian(boxes).astype(np.float32)
            rms = (MAD_TO_STD * nanmedian(np.abs(boxes - background[..., None]))).astype(np.float32)
    background[excluded] = np.nan
    rms[excluded] = np.nan
    return background, rms


def fill_excluded_boxes(mesh: np.ndarray, neighbours: int = 10) -> np.ndarray:
    """``mesh`` with NaN entries replaced by the inverse-distance (power 1) weighted mean
    of the ``neighbours`` nearest finite entries (distances in mesh steps)."""
    missing = np.isnan(mesh)
    if not missing.any():
        return mesh
    from scipy.spatial import cKDTree  # only when a box was excluded

    known = np.column_stack(np.nonzero(~missing))
    values = mesh[~missing].astype(np.float64)
    k = min(int(neighbours), len(values))
    dist, idx = cKDTree(known, leafsize=10).query(np.column_stack(np.nonzero(missing)), k=k)
    dist, idx = dist.reshape(len(dist), k), idx.reshape(len(idx), k)
    with np.errstate(divide="ignore"):
        weights = 1.0 / dist
    out = mesh.copy()
    out[missing] = (weights * values[idx]).sum(axis=1) / weights.sum(axis=1)
    return out


def median_filter_mesh(mesh: np.ndarray, size: int = 3) -> np.ndarray:
    """``size`` x ``size`` median filter of ``mesh``; positions outside the mesh are
    ignored (the window shrinks at the borders). NaN entries are ignored too."""
    if size <= 1:
        return mesh
    half = size // 2
    ny, nx = mesh.shape
    padded = np.full((ny + 2 * half, nx + 2 * half), np.nan, dtype=np.float64)
    padded[half : half + ny, half : half + nx] = mesh
    stack = np.stack(
        [padded[dy : dy + ny, dx : dx + nx] for dy in range(size) for dx in range(size)], axis=-1
    )
    return nanmedian(stack).astype(mesh.dtype)
