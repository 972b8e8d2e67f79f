"""Automatic CPU tiling: tiles shaped to the frame (at most CPU_MAX_TILE a side), identical to
a plain forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _detect_helpers import MatchedFilterNet

from atd_dl.detect.inference import CPU_MAX_TILE, TiledPredictor


def test_auto_tile_on_cpu_matches_one_pass():
    rng = np.random.default_rng(0)
    planes = rng.random((1, 200, 330)).astype(np.float32)
    net = MatchedFilterNet()
    pred = TiledPredictor(net, tile=None, device="cpu")
    prob = pred.predict(planes)
    assert prob.shape == (200, 330)
    tiled = TiledPredictor(net, tile=128, overlap=32, device="cpu").predict(planes)
    # away from the frame border both agree (same network, seam-free stitching)
    assert np.allclose(prob[20:-20, 20:-20], tiled[20:-20, 20:-20], atol=1e-5)
    with torch.no_grad():
        full = torch.sigmoid(net(torch.from_numpy(planes)[None]).diff(dim=1))[0, 0].numpy()
    assert np.allclose(prob[20:-20, 20:-20], full[20:-20, 20:-20], atol=1e-5)
    # a paper frame: a few tiles of at most CPU_MAX_TILE (bounded memory) that cost little
    # more than the frame's own pixels; a small frame is one tile
    tiler = pred.tiler((1600, 1600))
    assert max(tiler.tile_shape) <= CPU_MAX_TILE and len(tiler) > 1
    assert len(tiler) * tiler.tile_shape[0] * tiler.tile_shape[1] <= 1.2 * 1600**2
    assert len(pred.tiler((200, 330))) == 1


def test_flip_averaging_makes_the_map_flip_equivariant():
    """symmetries=4: the map of a flipped frame is the flipped map (the shipped network
    is not equivariant by itself), and the map is the mean of the four flipped passes."""
    from atd_dl.detect.inference import load_detector

    model, _meta = load_detector("default", device="cpu")
    rng = np.random.default_rng(1)
    planes = np.arcsinh(rng.normal(0.0, 1.0, (2, 96, 112)) / 3.0).astype(np.float32)
    planes[1] = 0.0
    planes[0, 40:43, 50:53] += 2.0  # a faint source
    plain = TiledPredictor(model, tile=None, device="cpu")
    four = TiledPredictor(model, tile=None, device="cpu", symmetries=4)
    flipped = np.ascontiguousarray(planes[:, :, ::-1])
    p1, p1f = plain.predict(planes), plain.predict(flipped)
    p4, p4f = four.predict(planes), four.predict(flipped)
    assert not np.allclose(p1f[:, ::-1], p1, atol=1e-4)
    assert np.allclose(p4f[:, ::-1], p4, atol=1e-5)
    mean = np.mean(
        [
            np.flip(
                plain.predict(np.ascontiguousarray(np.flip(planes, axis=[a + 1 for a in ax]))), ax
            )
            for ax in ((), (1,), (0,), (0, 1))
        ],
        axis=0,
    )
    assert np.allclose(p4, mean, atol=1e-6)
    with pytest.raises(ValueError, match="symmetries"):
        TiledPredictor(model, tile=None, device="cpu", symmetries=3)


def test_detector_takes_the_model_folders_symmetries_unless_told():
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector

    model, meta = load_detector("default", device="cpu")
    meta = dict(meta, config=dict(meta["config"], inference={"symmetries": 4}))
    assert Detector(model, meta, DetectConfig(device="cpu")).predictor.symmetries == 4
    told = Detector(model, meta, DetectConfig(device="cpu", symmetries=1))
    assert told.predictor.symmetries == 1
    bare = dict(meta, config={k: v for k, v in meta["config"].items() if k != "inference"})
    assert Detector(model, bare, DetectConfig(device="cpu")).predictor.symmetries == 1
