"""Inference engines: ONNX Runtime and PyTorch give the same probabilities and catalogs;
tiles shaped to the frame; detection on the CPU engine never imports torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atd_dl.detect.inference import CPU_MAX_TILE, TiledPredictor, load_detector
from atd_dl.detect.onnx_engine import (
    ONNX_FILE,
    OnnxNetwork,
    logits_to_probability,
    usable_onnx,
)
from atd_dl.errors import InputError
from atd_dl.io.resume import file_sha256
from atd_dl.models.model_folder import shipped_models
from atd_dl.prep.network_input import SIGMA_INPUT_KIND
from atd_dl.prep.partition import Tiler, plan_tile_shape

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name", sorted(shipped_models("detector")))
def test_shipped_models_carry_a_current_onnx_copy(name: str) -> None:
    # a retrained model.safetensors without a re-export would silently lose the fast engine
    assert usable_onnx(shipped_models("detector")[name]) is not None, f"run: atd-dl export {name}"


@pytest.mark.parametrize("name", sorted(shipped_models("detector")))
def test_onnx_and_torch_probabilities_agree(name: str) -> None:
    onnx_net, meta = load_detector(name, engine="onnx", device="cpu")
    torch_net, _ = load_detector(name, engine="torch", device="cpu")
    assert isinstance(onnx_net, OnnxNetwork) and meta["engine"] == "onnxruntime"
    channels = int(meta["kwargs"]["in_channels"])
    rng = np.random.default_rng(1)
    planes = rng.normal(0.3, 0.5, (channels, 70, 300)).astype(np.float32)
    if meta["input"] == SIGMA_INPUT_KIND:  # significance plane + bad-pixel plane (none bad)
        planes = np.stack([rng.normal(0.0, 0.33, (70, 300)), np.zeros((70, 300))]).astype(
            np.float32
        )
    planes[0, 30:33, 100:103] += 4.0  # a bright source somewhere
    p_onnx = TiledPredictor(onnx_net, tile=None, device="cpu").predict(planes)
    p_torch = TiledPredictor(torch_net, tile=None, device="cpu").predict(planes)
    assert p_onnx.shape == (70, 300)
    assert np.abs(p_onnx - p_torch).max() < 1e-4
    assert p_onnx.max() > 0.5  # the source is seen at all


def test_auto_engine_is_onnx_on_cpu_and_torch_on_request() -> None:
    net, meta = load_detector("default", device="cpu")
    assert isinstance(net, OnnxNetwork) and meta["engine"] == "onnxruntime"
    net, meta = load_detector("default", device="cpu", engine="torch")
    assert not isinstance(net, OnnxNetwork) and meta["engine"] == "torch"
    with pytest.raises(InputError, match="unknown engine"):
        load_detector("default", engine="tensorrt")


def test_stale_or_missing_onnx_falls_back_to_torch(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(shipped_models("detector")["default"], folder)
    assert usable_onnx(folder) is not None
    # new weights without a re-export: the ONNX copy no longer matches and is not used
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same bytes: still current
    assert usable_onnx(folder) is not None
    cfg = json.loads((folder / "config.json").read_text())
    shutil.copy(shipped_models("detector")["paper_camera"] / "model.safetensors", weights)
    cfg["kwargs"] = json.loads(
        (shipped_models("detector")["paper_camera"] / "config.json").read_text()
    )["kwargs"]
    (folder / "config.json").write_text(json.dumps(cfg))
    assert usable_onnx(folder) is None
    net, meta = load_detector(folder, device="cpu")
    assert meta["engine"] == "torch"
    with pytest.raises(InputError, match="no usable ONNX model"):
        load_detector(folder, device="cpu", engine="onnx")
    (folder / ONNX_FILE).unlink()
    assert load_detector(folder, device="cpu")[1]["engine"] == "torch"


def test_export_writes_a_tagged_onnx_file(tmp_path: Path) -> None:
    from atd_dl.cli import main

    folder = tmp_path / "m"
    shutil.copytree(shipped_models("detector")["default"], folder)
    (folder / ONNX_FILE).unlink()
    assert main(["export", str(folder)]) == 0
    assert usable_onnx(folder) is not None
    assert file_sha256(folder / "model.safetensors") in (folder / ONNX_FILE).read_bytes().decode(
        "latin-1"
    )


def test_logits_to_probability_matches_softmax_and_sigmoid() -> None:
    z = np.random.default_rng(2).normal(0, 30, (2, 2, 5, 7)).astype(np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    soft = (e / e.sum(axis=1, keepdims=True))[:, 1]
    assert np.allclose(logits_to_probability(z), soft, atol=1e-6)
    one = z[:, :1]
    assert np.allclose(logits_to_probability(one), 1 / (1 + np.exp(-one[:, 0])), atol=1e-6)


@pytest.mark.parametrize(
    "shape", [(50, 4000), (1600, 1600), (5, 7), (2049, 100), (10000, 10000), (1024, 1025)]
)
def test_tiles_are_shaped_to_the_frame(shape: tuple[int, int]) -> None:
    ty, tx = plan_tile_shape(shape, CPU_MAX_TILE, 64)
    assert ty % 16 == 0 and tx % 16 == 0 and max(ty, tx) <= CPU_MAX_TILE
    tiler = Tiler(shape, tile=(ty, tx), overlap=64)
    cost = len(tiler) * ty * tx / (shape[0] * shape[1])
    if min(shape) >= 48:
        assert cost <= 1.5  # a 50 x 4000 strip costs about its own pixels, not 2048² tiles
    if shape[0] * shape[1] <= 5_000_000:
        img = np.random.default_rng(0).random((2, *shape)).astype(np.float32)
        assert np.array_equal(tiler.stitch(tiler.split(img)), img)


def test_tiled_onnx_prediction_matches_one_pass() -> None:
    net, _ = load_detector("default", engine="onnx", device="cpu")
    rng = np.random.default_rng(3)
    planes = rng.normal(0, 1, (2, 400, 1200)).astype(np.float32)
    planes[:, rng.integers(0, 400, 60), rng.integers(0, 1200, 60)] += 8.0  # sources
    whole = TiledPredictor(net, tile=None, device="cpu").predict(planes)
    tiled = TiledPredictor(net, tile=512, overlap=64, device="cpu").predict(planes)
    # same network, seam-free stitching: the detections (threshold 0.5) agree away from
    # the frame border, where tile padding differs
    inner = (slice(64, -64), slice(64, -64))
    agree = (whole[inner] > 0.5) == (tiled[inner] > 0.5)
    assert agree.mean() > 0.999 and (whole[inner] > 0.5).sum() > 20


def test_cpu_detection_does_not_import_torch(tmp_path: Path) -> None:
    from atd_dl.sim import preset_config, simulate_field, write_field

    frame = write_field(simulate_field(preset_config("paper", size=192), seed=4), tmp_path)["frame"]
    code = (
        "import sys\n"
        "from atd_dl.cli import main\n"
        f"rc = main(['detect', {str(frame)!r}, '--out', {str(tmp_path / 'det')!r}, '--quiet'])\n"
        "assert rc == 0, rc\n"
        "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "NOTORCH"
