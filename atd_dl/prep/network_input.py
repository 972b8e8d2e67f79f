"""The generalist network input: background-subtracted significance, asinh-compressed.

One function, :func:`significance_planes`, builds the input of ``sigma`` models for both
training (``atd_dl.sim.randomized``) and detection (``atd_dl.detect``), so the two cannot
drift apart. The paper's ZScale 8-bit input (``zscale8``) stays available for the paper
experiments; see ``docs/models.md`` "Input representations". Its noise-aware planes come
from :func:`normalised_rms` (used by ``atd-dl prep`` for the ``aux/`` files and by
detection) and :func:`zscale_planes`.

Why: a ZScale stretch maps whatever range a frame has onto 0-255, so pure noise fills the
range and noise peaks look like the faint stars of a crowded frame. Dividing by the local
background RMS gives pixel values that mean the same on every camera, exposure and star
density (units of sigma); ``asinh(z / SOFTENING)`` keeps the noise linear (|z| < ~3) and
compresses bright stars logarithmically so a 10^5 sigma core stays within ~11.

Planes ``[2, ny, nx]`` float32:

0. ``asinh(z / SIGMA_SOFTENING)`` with ``z = (data - background) / rms``; non-finite
   pixels are 0 (background). Saturated pixels keep their (high) value, so a saturated
   core is not a hole.
1. the bad-pixel plane: 1 where the pixel is masked, non-finite or saturated.

Pixel convention: arrays ``[y, x]``, 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atd_dl.prep.enhance import estimate_background

__all__ = [
    "SIGMA_SOFTENING",
    "SIGMA_INPUT_KIND",
    "SignificanceInput",
    "significance_planes",
    "frame_significance",
    "RMS_CLIP",
    "normalised_rms",
    "zscale_planes",
]

#: the normalised background RMS plane of noise-aware ZScale models is clipped to
#: ``[0, RMS_CLIP]``; unusable (non-finite or non-positive) RMS values read RMS_CLIP
RMS_CLIP = 5.0

#: z (sigma) where asinh compression starts to bend
SIGMA_SOFTENING = 3.0
#: ``config.json`` "input" value of models that take :func:`significance_planes`
SIGMA_INPUT_KIND = "sigma_asinh+bad"


def significance_planes(
    subtracted: np.ndarray,
    rms: np.ndarray,
    bad: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
) -> np.ndarray:
    """Network input planes ``[2, ny, nx]`` float32 (see the module docstring).

    ``subtracted``: background-subtracted frame; ``rms``: background RMS map in the same
    unit (non-positive or non-finite values are replaced by the median of the valid ones);
    ``bad``: True = unusable pixel; ``saturated``: True = at or above saturation (kept
    bright, flagged in plane 1).
    """
    sub = np.asarray(subtracted, dtype=np.float32)
    noise = np.asarray(rms, dtype=np.float32)
    ok = np.isfinite(noise) & (noise > 0)
    if not ok.all():
        fill = np.float32(np.median(noise[ok])) if ok.any() else np.float32(1.0)
        noise = np.where(ok, noise, fill)
    z = sub / noise
    finite = np.isfinite(z)
    masked = np.zeros(z.shape, bool) if bad is None else np.asarray(bad, dtype=bool)
    sat = np.zeros(z.shape, bool) if saturated is None else np.asarray(saturated, dtype=bool)
    # a saturated pixel is at least as bright as its unsaturated neighbours; other masked
    # pixels and non-finite ones carry no trusted signal (background, 0)
    z = np.where(sat, np.maximum(z, np.float32(0.0)), z)
    z = np.where(finite & (sat | ~masked), z, np.float32(0.0))
    bad_plane = ~finite | masked | sat
    planes = np.empty((2, *sub.shape), dtype=np.float32)
    planes[0] = np.arcsinh(z / np.float32(SIGMA_SOFTENING))
    planes[1] = bad_plane
    return planes


@dataclass
class SignificanceInput:
    """A frame's background, noise and network input (all ``[ny, nx]``, ADU)."""

    planes: np.ndarray
    background: np.ndarray
    rms: np.ndarray
    subtracted: np.ndarray
    notes: list[str] = field(default_factory=list)


def frame_significance(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    *,
    box: int = 50,
    filter_size: int = 3,
    source: str | Path | None = None,
) -> SignificanceInput:
    """Background (robust chain of :func:`estimate_background`) then :func:`significance_planes`.

    ``data`` in ADU ``[ny, nx]``; ``mask`` True = unusable (saturated pixels may be in it:
    they are excluded from the background but stay bright in the input); ``saturated``
    True = at or above the saturation level.
    """
    data = np.asarray(data, dtype=np.float32)
    notes: list[str] = []
    background, rms = estimate_background(data, mask, box, filter_size, source=source, notes=notes)
    subtracted = data - background
    bad = None if mask is None else np.asarray(mask, dtype=bool)
    planes = significance_planes(subtracted, rms, bad, saturated)
    return SignificanceInput(planes, background, rms, subtracted, notes)


def normalised_rms(rms: np.ndarray, bad: np.ndarray | None = None) -> np.ndarray:
    """Background RMS divided by its median over usable pixels, float32 ``[ny, nx]``.

    ``rms`` in any unit (ADU); ``bad`` True = unusable pixel (left out of the median).
    Non-finite or non-positive RMS values read :data:`RMS_CLIP`; the result is clipped
    to ``[0, RMS_CLIP]`` (dimensionless). The second plane of noise-aware ZScale models,
    written by ``atd-dl prep`` to ``aux/<stem>.npz`` and rebuilt by detection.
    """
    noise = np.asarray(rms, dtype=np.float32)
    b = np.zeros(noise.shape, bool) if bad is None else np.asarray(bad, dtype=bool)
    ok = np.isfinite(noise) & (noise > 0)
    ref = ok & ~b
    med = np.float32(np.median(noise[ref])) if ref.any() else np.float32(1.0)
    norm = np.where(ok, noise / med, np.float32(RMS_CLIP))
    return np.clip(norm, 0.0, RMS_CLIP).astype(np.float32)


def zscale_planes(
    image8: np.ndarray,
    *,
    channels: int = 1,
    norm_rms: np.ndarray | None = None,
    bad: np.ndarray | None = None,
) -> np.ndarray:
    """Network input ``[C, ny, nx]`` float32 of ZScale (paper) models.

    Plane 0 is the ZScale-stretched frame scaled to ``[0, 1]``: ``image8 / 255`` for
    uint8 (``/ 65535`` for uint16; a float image is taken as already scaled); ``channels=3`` (the
    noise-aware input) adds ``norm_rms`` (from :func:`normalised_rms`; non-finite values
    read :data:`RMS_CLIP`, clipped to ``[0, RMS_CLIP]``) and the bad-pixel plane
    (1 = unusable). Training (``StarFieldDataset``) and detection both call this.
    """
    img = np.asarray(image8)
    if np.issubdtype(img.dtype, np.integer):
        scale = np.float32(65535.0 if img.dtype == np.uint16 else 255.0)
        planes = [img.astype(np.float32) / scale]
    else:
        planes = [img.astype(np.float32, copy=False)]
    if channels >= 3:
        if norm_rms is None:
            raise ValueError("a noise-aware model needs the normalised background rms map")
        rms = np.nan_to_num(np.asarray(norm_rms, dtype=np.float32), nan=RMS_CLIP)
        b = np.zeros(rms.shape, bool) if bad is None else np.asarray(bad, dtype=bool)
        planes += [np.clip(rms, 0.0, RMS_CLIP).astype(np.float32), b.astype(np.float32)]
    if len(planes) != channels:
        raise ValueError(f"cannot build a {channels}-channel input (known: 1 or 3)")
    return np.stack(planes)
