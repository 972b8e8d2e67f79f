"""Automatic CPU tiling: tiles shaped to the frame (at most CPU_MAX_TILE a side), identical to
a plain forward pass."""

from __future__ import annotations

import numpy as np
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
