"""Run the binary classifier on stamps or on a detection catalog.

``classify_detections`` is the hook for the detection pipeline: it cuts stamps around each
detection on the network's angular grid, and adds ``p_binary`` (probability that another
source lies within the model's radius, default 2.5 arcsec) and ``binary`` (``p_binary >=``
the model threshold) to the catalog.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from atd_dl.binaries.stamps import StampGeometry, cut_stamps, normalize_stamps
from atd_dl.errors import InputError

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_binary_proba(
    net: torch.nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Binary-class probability for normalised stamps ``[N, C, S, S]`` → float32 ``[N]``."""
    net = net.to(device).eval()
    out = np.zeros(len(images), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
        prob = torch.softmax(net(x.float()), dim=1)[:, 1]
        out[start : start + len(x)] = prob.cpu().numpy()
    return out


def pixel_scale_from_wcs(wcs: Any) -> float:
    """Mean pixel scale (arcsec/px) of a celestial WCS."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def classify_detections(
    image: np.ndarray,
    catalog: Table,
    model: torch.nn.Module,
    meta: dict[str, Any],
    *,
    stamp_size: int | None = None,
    pixel_scale: float | None = None,
    wcs: Any = None,
    mask: np.ndarray | None = None,
    threshold: float | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> Table:
    """Return a copy of ``catalog`` with columns ``p_binary`` (float32) and ``binary`` (bool).

    ``image``: frame ``[ny, nx]`` or band cube ``[C, ny, nx]`` (C must equal the model's
    channels; a 2-D frame is repeated for a multi-band model), ideally background-subtracted
    or raw (each stamp's median is removed anyway). ``catalog`` needs ``x, y`` (0-based px).
    ``model, meta`` come from :func:`atd_dl.binaries.model.load_binary_model`.
    ``pixel_scale`` (arcsec/px) or ``wcs`` sets the resampling to the network grid; if both
    are missing the frame is assumed to have the network's scale (a warning is logged).
    ``stamp_size`` must match the model (``meta['input']['size']``) when given.
    ``threshold`` defaults to ``meta['threshold']``. Stamps that touch the frame edge or
    masked pixels are still classified (filled with the local median); the pipeline's
    edge flag tells which.
    """
    geo = StampGeometry.from_dict(meta.get("input", {}))
    if stamp_size is not None and stamp_size != geo.size:
        raise ValueError(f"stamp_size {stamp_size} does not match the model's {geo.size} px")
    if "x" not in catalog.colnames or "y" not in catalog.colnames:
        raise InputError(None, "catalog needs x and y columns for binary classification")
    cube = np.asarray(image, dtype=np.float32)
    if cube.ndim == 2:
        cube = np.repeat(cube[None], geo.channels, axis=0) if geo.channels > 1 else cube[None]
    if cube.ndim != 3 or cube.shape[0] != geo.channels:
        raise ValueError(
            f"image has shape {np.shape(image)}, the model expects {geo.channels} band(s)"
        )
    if pixel_scale is None and wcs is not None and getattr(wcs, "has_celestial", False):
        pixel_scale = pixel_scale_from_wcs(wcs)
    if pixel_scale is None:
        log.warning(
            "no pixel scale given: assuming the network scale %.3f arcsec/px", geo.out_scale
        )
        pixel_scale = geo.out_scale
    if pixel_scale > geo.radius_arcsec / 2.0:
        log.warning(
            "pixel scale %.2f arcsec/px: the %.1f arcsec binary radius spans < 2 px, "
            "p_binary carries little information on such frames",
            pixel_scale,
            geo.radius_arcsec,
        )
    thr = float(meta.get("threshold", 0.5) if threshold is None else threshold)
    out = catalog.copy(copy_data=True)
    x = np.asarray(catalog["x"], dtype=np.float64)
    y = np.asarray(catalog["y"], dtype=np.float64)
    prob = np.zeros(len(x), dtype=np.float32)
    for start in range(0, len(x), 4096):  # bound memory for huge catalogs
        sl = slice(start, start + 4096)
        raw, _ = cut_stamps(cube, x[sl], y[sl], geo.size, zoom=geo.zoom(pixel_scale), mask=mask)
        stamps = normalize_stamps(raw, geo.normalize)
        prob[sl] = predict_binary_proba(model, stamps, batch_size=batch_size, device=device)
    out["p_binary"] = prob
    out[
        "p_binary"
    ].description = f"probability of a second source within {geo.radius_arcsec} arcsec"
    out["binary"] = prob >= thr
    out["binary"].description = f"p_binary >= {thr:.3f}"
    return out
