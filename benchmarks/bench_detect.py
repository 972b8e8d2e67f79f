"""Detection speed: seconds per frame by stage, post-processing on a dense field, GPU rate.

Usage::

    python benchmarks/bench_detect.py [--size 1600] [--repeat 3] [--e2e-repeat 1] [--model M]
                                      [--device cpu|cuda] [--json out.json]

1. End to end on one simulated ``--size``² frame (``paper`` preset), split into
   read + prepare (read, calibrate, enhance), inference, post-processing and writing
   (catalogs + region file). Model: ``--model``, else the shipped model folder when it
   exists, else an untrained full-width ATD U-Net (same cost; its flat probability map
   makes the post-processing number meaningless there, hence 2.).
2. Post-processing alone (:func:`segment_sources`) on a dense simulated frame with an
   oracle probability map (discs at the true positions of stars with SNR >= ``--oracle-snr``),
   tuned to ~8,000 sources; wall and CPU seconds (CPU time is robust to a loaded machine).
3. When CUDA is present: frames per second of tiled bf16 inference and of the whole
   pipeline.

Prints a table and optionally writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timeit(fn, repeat: int) -> tuple[float, float, object]:
    best_wall, best_cpu, out = np.inf, np.inf, None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def _model(path: str | None, device: str | None):
    from atd_dl.detect.inference import load_detector
    from atd_dl.models.model_folder import default_model_dir
    from atd_dl.models.registry import build_model

    if path:
        return (*load_detector(path, device=device), str(path))
    if (default_model_dir() / "model.safetensors").is_file():
        return (*load_detector(None, device=device), "shipped model")
    model = build_model("atd_unet").eval()
    meta = {"name": "atd_unet", "kwargs": model.model_spec["kwargs"], "threshold": 0.5}
    return model, meta, "untrained atd_unet (default width)"


def bench_end_to_end(args, work: Path) -> dict:
    from atd_dl.detect.pipeline import DetectConfig, Detector, OutputConfig
    from atd_dl.sim import preset_config, simulate_field, write_field

    sim = simulate_field(preset_config("paper", size=args.size), seed=11)
    frame = write_field(sim, work / "sim")["frame"]
    model, meta, label = _model(args.model, args.device)
    det = Detector(model, meta, DetectConfig(device=args.device, batch_size=args.batch_size))
    out = OutputConfig(work / "det", regions=True, overwrite=True)
    det.run(frame, write=out)  # warm-up (threads, allocator, lazy imports)
    stages: dict[str, list[float]] = {}
    cpu_total = []
    for _ in range(args.e2e_repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        res = det.run(frame, write=out)
        total = time.perf_counter() - t0
        cpu_total.append(time.process_time() - c0)
        t = res.timings
        row = {
            "read+prepare": t.get("read", 0) + t.get("calibrate", 0) + t.get("enhance", 0),
            "inference": t.get("inference", 0.0),
            "postprocess": t.get("postprocess", 0.0),
            "write": t.get("write", 0.0),
            "total": total,
        }
        for k, v in row.items():
            stages.setdefault(k, []).append(v)
    return {
        "frame": f"{args.size}x{args.size}",
        "model": label,
        "device": det.device,
        "threads": __import__("torch").get_num_threads(),
        "n_sources": len(res.catalog),
        "seconds_median": {k: round(float(np.median(v)), 3) for k, v in stages.items()},
        "cpu_seconds_total_median": round(float(np.median(cpu_total)), 3),
    }


def bench_postprocess(args) -> dict:
    from atd_dl.detect.flags import SourceFlag
    from atd_dl.detect.postprocess import segment_sources
    from atd_dl.prep.enhance import enhance_frame
    from atd_dl.sim import preset_config, simulate_field

    size = 1600
    sim = simulate_field(preset_config("dense", size=size), seed=3)
    raw = sim.image.astype(np.float32)
    sat = raw >= sim.config.saturate_adu
    enh = enhance_frame((raw - sim.bias - sim.dark) / sim.flat, sat)
    g = np.float32(sim.config.gain_e_per_adu)
    img, rms = enh.subtracted * g, enh.background_rms * g
    stars = sim.truth[(sim.truth["kind"] == "star") & (sim.truth["snr_true"] >= args.oracle_snr)]
    prob = np.zeros((size, size), np.float32)
    off = np.arange(-2, 3)
    xi, yi = np.rint(stars["x"]).astype(int), np.rint(stars["y"]).astype(int)
    for dy in off:
        for dx in off:
            X, Y = xi + dx, yi + dy
            ok = (X >= 0) & (X < size) & (Y >= 0) & (Y < size)
            ok &= (X - stars["x"]) ** 2 + (Y - stars["y"]) ** 2 <= 1.6**2
            prob[Y[ok], X[ok]] = 1.0
    bad = ~np.isfinite(img)

    def run():
        return segment_sources(
            prob, 0.5, image_e=img, mask=bad, background_rms_e=rms, saturated=sat
        )

    run()
    wall, cpu, ex = _timeit(run, args.repeat)
    flags = np.asarray(ex.catalog["flags"])
    return {
        "frame": f"{size}x{size} dense, oracle SNR>={args.oracle_snr}",
        "n_sources": len(ex.catalog),
        "n_components": ex.n_components,
        "n_deblended_children": int(np.count_nonzero(flags & int(SourceFlag.BLENDED))),
        "wall_s_best": round(wall, 3),
        "cpu_s_best": round(cpu, 3),
    }


def bench_gpu(args, work: Path) -> dict | None:
    import torch

    if not torch.cuda.is_available():
        return None
    from atd_dl.detect.inference import TiledPredictor, model_input
    from atd_dl.detect.pipeline import DetectConfig, Detector
    from atd_dl.sim import preset_config, simulate_field, write_field

    sim = simulate_field(preset_config("paper", size=args.size), seed=12)
    frame = write_field(sim, work / "gpu")["frame"]
    model, meta, label = _model(args.model, "cuda")
    det = Detector(model, meta, DetectConfig(device="cuda", compile=args.compile))
    prep = det.prepare(frame)
    planes = model_input(prep.image8, channels=det.channels, background_rms=prep.background_rms_adu)
    pred: TiledPredictor = det.predictor
    for _ in range(3):
        pred.predict(planes)
    torch.cuda.synchronize()
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        pred.predict(planes)
    torch.cuda.synchronize()
    infer_fps = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(5):
        det.run(frame)
    e2e_fps = 5 / (time.perf_counter() - t0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "model": label,
        "batch_size": pred.batch_size(det.channels),
        "inference_frames_per_s": round(infer_fps, 2),
        "end_to_end_frames_per_s": round(e2e_fps, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=1600)
    ap.add_argument("--repeat", type=int, default=3, help="post-processing runs (best taken)")
    ap.add_argument("--e2e-repeat", type=int, default=1, help="end-to-end runs after warm-up")
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--oracle-snr", type=float, default=6.0)
    ap.add_argument("--skip-e2e", action="store_true", help="post-processing benchmark only")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["postprocess"] = bench_postprocess(args)
        print("post-processing:", json.dumps(results["postprocess"]))
        if not args.skip_e2e:
            results["end_to_end"] = bench_end_to_end(args, work)
            print("end to end:", json.dumps(results["end_to_end"]))
        results["gpu"] = bench_gpu(args, work)
        print("gpu:", json.dumps(results["gpu"]) if results["gpu"] else "no CUDA device")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    budget = results["postprocess"]["cpu_s_best"]
    n = results["postprocess"]["n_sources"]
    print(f"post-processing: {budget:.3f} CPU s for {n} sources (target <= 0.5 s at ~8,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
