"""Tests for atd_dl.prep.partition: spiral subfields and the seam-free tiler."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atd_dl.errors import InputError
from atd_dl.prep.partition import Subfield, Tiler, subfield_grid


def _layout(subfields: list[Subfield]) -> np.ndarray:
    ys = sorted({s.y0 for s in subfields})
    xs = sorted({s.x0 for s in subfields})
    grid = np.zeros((len(ys), len(xs)), dtype=int)
    for s in subfields:
        grid[ys.index(s.y0), xs.index(s.x0)] = s.number
    return grid


def test_paper_numbering_1600() -> None:
    subfields = subfield_grid((1600, 1600))
    assert [s.number for s in subfields] == list(range(1, 10))
    np.testing.assert_array_equal(_layout(subfields), [[9, 2, 3], [8, 1, 4], [7, 6, 5]])
    # centred block: 32-pixel leftover on every side, non-overlapping 512x512
    assert {s.y0 for s in subfields} == {32, 544, 1056}
    assert {s.x0 for s in subfields} == {32, 544, 1056}
    assert all(s.size == 512 for s in subfields)
    centre = subfields[0]
    assert centre.center == (799.5, 799.5)
    img = np.arange(1600 * 1600).reshape(1600, 1600)
    assert img[centre.slices].shape == (512, 512)


def test_rectangular_and_large_frames() -> None:
    np.testing.assert_array_equal(
        _layout(subfield_grid((1040, 1392), size=256)), [[9, 2, 3], [8, 1, 4], [7, 6, 5]]
    )
    big = subfield_grid((4096, 4096))
    assert len(big) == 9 and big[0].y0 == (4096 - 1536) // 2 + 512


def test_small_frames_give_what_fits() -> None:
    np.testing.assert_array_equal(_layout(subfield_grid((1100, 1100))), [[4, 1], [3, 2]])
    np.testing.assert_array_equal(_layout(subfield_grid((600, 1600))), [[3, 1, 2]])
    column = subfield_grid((1600, 600))
    assert [s.number for s in sorted(column, key=lambda s: s.y0)] == [2, 1, 3]
    assert len(subfield_grid((512, 512))) == 1
    with pytest.raises(
        InputError, match=r"frame of shape \(300, 2000\) is smaller than one 512x512 subfield"
    ):
        subfield_grid((300, 2000))


@pytest.mark.parametrize(
    "shape", [(1001, 777), (300, 200), (1600, 1600), (512, 512), (513, 1), (1, 1)]
)
def test_tiler_round_trip(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    tiler = Tiler(shape, tile=512, overlap=64)
    image = rng.random(shape).astype(np.float32)
    tiles = tiler.split(image)
    assert tiles.shape == (len(tiler), 512, 512)
    np.testing.assert_array_equal(tiler.stitch(tiles), image)
    if shape[0] * shape[1] < 1_000_000:  # keep the stack check cheap
        stack = rng.random((3, *shape)).astype(np.float32)
        tiles = tiler.split(stack)
        assert tiles.shape == (len(tiler), 3, 512, 512)
        np.testing.assert_array_equal(tiler.stitch(tiles), stack)


def test_tiler_layout_and_overlap() -> None:
    tiler = Tiler((1600, 1600), tile=512, overlap=64)
    starts = sorted({y for y, _ in tiler.boxes})
    assert starts[0] == 0 and starts[-1] == 1600 - 512
    assert min(np.diff(starts)) <= 512 - 64  # neighbours share at least the overlap
    assert len(tiler) == 16
    assert Tiler((512, 1024), 512, 0).boxes == [(0, 0), (0, 512)]


def test_tiler_small_frame_padding_modes() -> None:
    image = np.arange(6, dtype=float).reshape(2, 3)
    reflect = Tiler(image.shape, tile=4, overlap=1).split(image)[0]
    np.testing.assert_array_equal(reflect[:2, :3], image)
    np.testing.assert_array_equal(reflect[2, :3], image[0])  # mirror about the last row
    constant = Tiler(image.shape, tile=4, overlap=1, pad_mode="constant", pad_value=-1).split(
        image
    )[0]
    assert (constant[2:, :] == -1).all() and (constant[:, 3:] == -1).all()


def test_stitch_takes_pixel_farthest_from_tile_edges() -> None:
    shape, tile = (70, 45), 32
    tiler = Tiler(shape, tile=tile, overlap=10)
    ramp = np.arange(tile)
    edge_dist_1d = np.minimum(ramp, tile - 1 - ramp)
    edge_dist = np.minimum.outer(edge_dist_1d, edge_dist_1d)
    tiles = np.stack([np.full((tile, tile), i) * 1000 + edge_dist for i in range(len(tiler))])
    stitched = tiler.stitch(tiles)
    # brute force: the largest edge distance over all tiles holding the pixel
    best = np.full(shape, -1)
    for y0, x0 in tiler.boxes:
        ys, xs = slice(y0, min(y0 + tile, shape[0])), slice(x0, min(x0 + tile, shape[1]))
        patch = edge_dist[: ys.stop - y0, : xs.stop - x0]
        best[ys, xs] = np.maximum(best[ys, xs], patch)
    np.testing.assert_array_equal(stitched % 1000, best)


def test_tiler_rejects_bad_input() -> None:
    tiler = Tiler((100, 80), tile=64, overlap=8)
    with pytest.raises(ValueError, match="does not match tiler shape"):
        tiler.split(np.zeros((80, 100)))
    with pytest.raises(ValueError, match="expected 4 tiles"):
        tiler.stitch(np.zeros((3, 64, 64)))
    with pytest.raises(ValueError, match="overlap must be in"):
        Tiler((100, 80), tile=64, overlap=64)


@settings(max_examples=60, deadline=None)
@given(
    ny=st.integers(1, 150),
    nx=st.integers(1, 150),
    tile=st.integers(4, 48),
    overlap_frac=st.floats(0.0, 0.9),
    channels=st.sampled_from([None, 2]),
)
def test_tiler_round_trip_property(
    ny: int, nx: int, tile: int, overlap_frac: float, channels: int | None
) -> None:
    overlap = min(tile - 1, int(tile * overlap_frac))
    tiler = Tiler((ny, nx), tile=tile, overlap=overlap)
    shape = (ny, nx) if channels is None else (channels, ny, nx)
    image = np.random.default_rng(ny * 1000 + nx).integers(0, 255, shape).astype(np.uint8)
    tiles = tiler.split(image)
    assert tiles.shape[-2:] == (tile, tile) and tiles.dtype == np.uint8
    np.testing.assert_array_equal(tiler.stitch(tiles), image)
    for y0, x0 in tiler.boxes:  # tiles lie inside the (padded) frame
        assert 0 <= y0 <= tiler.padded_shape[0] - tile and 0 <= x0 <= tiler.padded_shape[1] - tile
