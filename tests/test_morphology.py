"""OpenCV dilations equal scipy.ndimage's on every shape and border case."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from atd_dl.prep.morphology import grow_mask, max_filter


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (13, 7), (50, 400), (257, 300)])
@pytest.mark.parametrize("size", [1, 3, 13])
def test_max_filter_is_scipy_maximum_filter(shape: tuple[int, int], size: int) -> None:
    rng = np.random.default_rng(size)
    img = rng.normal(size=shape).astype(np.float32)
    img[0, 0], img[-1, -1] = 40.0, -40.0  # extremes at the corners (border handling)
    expected = ndimage.maximum_filter(img, size=size)
    assert np.array_equal(max_filter(img, size), expected)


def test_max_filter_refuses_even_windows() -> None:
    with pytest.raises(ValueError, match="odd"):
        max_filter(np.zeros((4, 4), np.float32), 4)


@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_grow_mask_is_scipy_binary_dilation(iterations: int) -> None:
    rng = np.random.default_rng(iterations)
    mask = rng.random((120, 97)) > 0.995
    mask[0, :3] = mask[-1, -1] = True
    expected = ndimage.binary_dilation(mask, iterations=iterations) if iterations else mask
    assert np.array_equal(grow_mask(mask, iterations), expected)
