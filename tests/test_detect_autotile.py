"""Automatic CPU tiling: one tile over the whole frame, identical to a plain forward pass."""

from __future__ import annotations

import numpy as np
import torch
from _detect_helpers import MatchedFilterNet

from atd_dl.detect.inference import CPU_MAX_TILE, TiledPredictor


def test_auto_tile_on_cpu_covers_frame_in_one_pass():
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
    assert CPU_MAX_TILE >= 1600  # a paper frame is one tile on CPU
