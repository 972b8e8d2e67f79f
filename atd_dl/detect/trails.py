"""Stage 2 of the post-processing: which components are trails (moving objects).

A component is a trail candidate when its pixel second moments are elongated
(``sqrt(l1/l2) >= trail_min_elongation``) and long (``sqrt(12 l1) >= trail_min_length``
px) and it has no saturated pixel; a candidate is a trail when the smoothed intensity
along its major axis is a plateau rather than a chain of peaks
(:func:`atd_dl.detect.deblend.is_trail_profile`, criteria in ``docs/detect.md``).
Trails are flagged ``TRAIL`` and never deblended.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``.
"""

from __future__ import annotations

import numpy as np

from atd_dl.detect import deblend
from atd_dl.detect.components import ComponentProps, Components, FrameImage
from atd_dl.detect.config import PostprocessConfig


def trail_candidates(
    props: ComponentProps, *, min_elongation: float, min_length: float
) -> np.ndarray:
    """Labels of the elongated, long components without saturated pixels."""
    mom = props.moments
    cand = np.flatnonzero(
        (mom["elongation"] >= min_elongation) & (mom["length"] >= min_length) & ~props.saturated
    )
    return cand[cand > 0]


def find_trails(
    comps: Components,
    props: ComponentProps,
    frame: FrameImage,
    smooth: np.ndarray,
    noise_factor: float,
    cfg: PostprocessConfig,
) -> np.ndarray:
    """Bool per label (index 0 unused): the component is a trail.

    ``smooth`` is the frame smoothed for peak finding (same unit as ``frame.image``) and
    ``noise_factor`` the rms reduction of that smoothing; each candidate's profile noise is
    ``(rms^2 [+ intensity when Poisson]) * noise_factor^2`` per pixel.
    """
    trail = np.zeros(comps.n + 1, dtype=bool)
    rms = frame.rms
    cand = trail_candidates(
        props, min_elongation=cfg.trail_min_elongation, min_length=cfg.trail_min_length
    )
    for lab in cand:
        sl = comps.bbox(lab)
        cut = comps.labels[sl] == lab
        ys, xs = np.nonzero(cut)
        sig2 = np.asarray(rms[sl][cut] if isinstance(rms, np.ndarray) else rms) ** 2
        shot = np.clip(frame.image[sl][cut], 0.0, None) if frame.poisson else 0.0
        vvar = (sig2 + shot) * noise_factor**2
        trail[lab] = deblend.is_trail_profile(
            ys.astype(np.float64),
            xs.astype(np.float64),
            smooth[sl][cut],
            np.broadcast_to(vvar, ys.shape),
            float(props.moments["theta"][lab]),
            plateau_nsigma=cfg.trail_plateau_nsigma,
            gap_fraction=cfg.trail_gap_fraction,
        )
    return trail
