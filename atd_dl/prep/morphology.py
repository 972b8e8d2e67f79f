"""Grey and binary dilations by OpenCV, equal to scipy.ndimage's and ~6x cheaper.

``cv2.dilate`` runs separable, vectorised max filters; outside the frame it uses the
smallest value, so a window only sees in-frame pixels. That is what scipy's
``maximum_filter`` (``mode="reflect"``: the reflected pixels lie inside the window anyway)
and ``binary_dilation`` (``border_value=0``) compute; ``tests/test_morphology.py`` checks
the equality against scipy itself.
"""

from __future__ import annotations

import numpy as np

__all__ = ["grow_mask", "max_filter"]


def max_filter(image: np.ndarray, size: int) -> np.ndarray:
    """Maximum over the ``size`` x ``size`` window centred on each pixel (float32 in and
    out; = ``scipy.ndimage.maximum_filter(image, size=size)`` for odd ``size``)."""
    import cv2

    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be odd and >= 1, got {size}")
    img = np.ascontiguousarray(image, dtype=np.float32)
    return cv2.dilate(img, np.ones((size, size), np.uint8))


def grow_mask(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``mask`` grown by ``iterations`` steps of the 4-connected cross (=
    ``scipy.ndimage.binary_dilation(mask, iterations=iterations)``), bool."""
    import cv2

    m = np.ascontiguousarray(mask, dtype=bool)
    if iterations <= 0 or m.size == 0:
        return m.copy()
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    return cv2.dilate(m.view(np.uint8), cross, iterations=int(iterations)).astype(bool)
