"""CPU inference engines compared on one frame: speed, memory and catalog identity.

Usage::

    python benchmarks/bench_engines.py [--size 1600] [--repeat 3] [--model default] [--json F]

One simulated ``--size``² paper-camera frame is prepared once; its network input planes go
through each engine with the automatic CPU tiling of
:class:`atd_dl.detect.inference.TiledPredictor`:

* ``torch-eager``: PyTorch, contiguous memory (the engine before ONNX Runtime);
* ``torch-channels-last``: PyTorch with channels-last memory (the torch engine now);
* ``onnxruntime``: ONNX Runtime, fp32, the model folder's ``model.onnx`` (the default);
* ``onnxruntime-int8`` (``--int8``): static QDQ int8 quantisation calibrated on the frame.

For each: best-of-``--repeat`` CPU seconds and wall seconds of the probability map, the
largest probability difference to ``torch-eager``, and the catalog after post-processing
compared with ``torch-eager``'s (share of detections at the same position within 0.01 px).
An engine may be the default only when that share is >= 99.5 % (issue 12).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def best_time(fn, repeat: int):
    best_cpu, best_wall, out = np.inf, np.inf, None
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        best_cpu = min(best_cpu, time.process_time() - c)
        best_wall = min(best_wall, time.perf_counter() - w)
    return best_cpu, best_wall, out


def same_positions(a, b, tol: float = 0.01) -> float:
    """Share of the larger catalog's detections found in the other within ``tol`` px."""
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return float(len(a) == len(b))
    pa = np.column_stack([a["x"], a["y"]])
    pb = np.column_stack([b["x"], b["y"]])
    d, _ = cKDTree(pb).query(pa, distance_upper_bound=tol)
    return float(np.count_nonzero(np.isfinite(d)) / max(len(a), len(b)))


def int8_network(folder: Path, planes: np.ndarray, work: Path):
    """An OnnxNetwork over a static int8 (QDQ, per-channel) copy of the folder's model."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from atd_dl.detect.onnx_engine import OnnxNetwork

    class Patches(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            ny, nx = planes.shape[-2:]
            self.items = iter(
                {"planes": planes[None, :, y : y + 256, x : x + 256].copy()}
                for y, x in zip(rng.integers(0, ny - 256, 8), rng.integers(0, nx - 256, 8))
            )

        def get_next(self):
            return next(self.items, None)

    pre, q8 = work / "pre.onnx", work / "int8.onnx"
    quant_pre_process(str(folder / "model.onnx"), str(pre))
    quantize_static(
        str(pre),
        str(q8),
        Patches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return OnnxNetwork(q8)


def contiguous_predictor_class():
    """TiledPredictor feeding contiguous (NCHW) tiles: the PyTorch engine before this work."""
    import torch

    from atd_dl.detect.inference import TiledPredictor
    from atd_dl.models.inference import predict_proba

    class ContiguousPredictor(TiledPredictor):
        def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(tiles))
                return predict_proba(self.model, x)[:, 0].float().numpy()

    return ContiguousPredictor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1600)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="default")
    ap.add_argument("--int8", action="store_true", help="also static int8 quantisation")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from atd_dl.detect.inference import TiledPredictor, load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector
    from atd_dl.sim import preset_config, simulate_field, write_field

    ContiguousPredictor = contiguous_predictor_class()
    with tempfile.TemporaryDirectory(prefix="atd_engines_") as tmp:
        work = Path(tmp)
        sim = simulate_field(preset_config("paper", size=args.size), seed=11)
        frame = write_field(sim, work)["frame"]
        torch_net, meta = load_detector(args.model, engine="torch", device="cpu")
        onnx_net, _ = load_detector(args.model, engine="onnx", device="cpu")
        det = Detector(torch_net, meta, DetectConfig(device="cpu"))
        prepared = det.prepare(frame)
        planes = det.input_planes(prepared)
        eager = ContiguousPredictor(copy.deepcopy(torch_net), tile=None, device="cpu")
        eager.model = eager.model.to(memory_format=torch.contiguous_format)  # old engine
        engines = {
            "torch-eager": eager,
            "torch-channels-last": TiledPredictor(torch_net, tile=None, device="cpu"),
            "onnxruntime": TiledPredictor(onnx_net, tile=None, device="cpu"),
        }
        if args.int8:
            net8 = int8_network(Path(meta["path"]), planes, work)
            engines["onnxruntime-int8"] = TiledPredictor(net8, tile=None, device="cpu")
        rows, ref_prob, ref_cat = {}, None, None
        for name, predictor in engines.items():
            predictor.predict(planes)  # warm-up
            cpu, wall, prob = best_time(lambda p=predictor: p.predict(planes), args.repeat)
            catalog = det.extract(prepared, prob).catalog
            if ref_prob is None:
                ref_prob, ref_cat = prob, catalog
            rows[name] = {
                "cpu_s": round(cpu, 3),
                "wall_s": round(wall, 3),
                "max_prob_diff": float(np.abs(prob - ref_prob).max()),
                "n_sources": len(catalog),
                "same_catalog": round(same_positions(catalog, ref_cat), 4),
            }
            print(name, rows[name], flush=True)
    result = {"frame": f"{args.size}x{args.size}", "model": args.model, "engines": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
