"""Label overlay PNG in the style of the paper's Fig. 5.

Green = label pixels from matched connected components, blue = blob labels of kept
sources without a component, red dots = every projected catalog position on the frame
(kept or dropped). The background is the 8-bit ZScale image, at full resolution
(one image pixel = one frame pixel, ``[y, x]``, row 0 at the top as in the array).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from atd_dl.io.atomic import atomic_output
from atd_dl.labels.anchor import LabelResult

__all__ = ["render_overlay", "write_overlay", "write_png"]

# BGR (OpenCV order)
_GREEN = np.array([0, 200, 0], dtype=np.float32)
_BLUE = np.array([255, 90, 0], dtype=np.float32)
_RED = (0, 0, 255)


def render_overlay(
    image8: np.ndarray, result: LabelResult, *, alpha: float = 0.6, legend: bool = True
) -> np.ndarray:
    """Return the overlay as a BGR uint8 array ``[ny, nx, 3]`` (OpenCV channel order).

    ``image8`` is the uint8 ZScale image of the frame; ``result`` the labels of that frame.
    ``alpha`` is the opacity of the green / blue label colours.
    """
    image8 = np.asarray(image8)
    if image8.dtype != np.uint8 or image8.ndim != 2:
        raise ValueError(f"image8 must be a 2-D uint8 image, got {image8.dtype} {image8.shape}")
    if image8.shape != result.mask.shape:
        raise ValueError(f"image shape {image8.shape} != label shape {result.mask.shape}")
    bgr = cv2.cvtColor(image8, cv2.COLOR_GRAY2BGR)
    kind = result.kind if result.kind is not None else result.mask
    for code, colour in ((1, _GREEN), (2, _BLUE)):
        sel = kind == code
        grey = image8[sel].astype(np.float32)[:, None]
        bgr[sel] = np.clip(np.rint((1.0 - alpha) * grey + alpha * colour), 0, 255).astype(np.uint8)
    src = result.sources
    on = np.asarray(src["status"]) != "off_frame"
    ny, nx = image8.shape
    xs = np.rint(np.asarray(src["x"], dtype=np.float64)[on]).astype(np.int64)
    ys = np.rint(np.asarray(src["y"], dtype=np.float64)[on]).astype(np.int64)
    ok = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
    bgr[ys[ok], xs[ok]] = _RED
    if legend:
        c = result.counts
        lines = [
            (f"components matched: {c['n_components_matched']}", (0, 200, 0)),
            (f"blob labels: {c['n_kept_blob']}", (255, 90, 0)),
            (
                f"catalog on frame: {int(on.sum())}  kept (SNR>={result.config.snr_min:g}): "
                f"{c['n_kept']}",
                _RED,
            ),
        ]
        scale = max(0.35, min(ny, nx) / 2400.0)
        font = cv2.FONT_HERSHEY_SIMPLEX
        sizes = [cv2.getTextSize(t, font, scale, 1) for t, _ in lines]
        step = max(h + base for (_, h), base in sizes) + 4
        width = max(w for (w, _), _ in sizes) + 10
        cv2.rectangle(bgr, (0, 0), (min(width, nx - 1), min(step * len(lines) + 6, ny - 1)), 0, -1)
        for i, (text, bgr_colour) in enumerate(lines):
            cv2.putText(bgr, text, (5, step * (i + 1)), font, scale, bgr_colour, 1, cv2.LINE_AA)
    return bgr


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 grey ``[y, x]`` or BGR ``[y, x, 3]`` image as PNG, atomically."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG image must be uint8, got {image.dtype}")
    # fast zlib level: star fields are noisy and barely compress at higher levels
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV failure
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_output(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)


def write_overlay(
    path: str | Path, image8: np.ndarray, result: LabelResult, *, alpha: float = 0.6
) -> Path:
    """Render the Fig. 5-style overlay (:func:`render_overlay`) and write it as PNG."""
    return write_png(path, render_overlay(image8, result, alpha=alpha))
