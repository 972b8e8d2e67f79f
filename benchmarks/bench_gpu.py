"""GPU inference benchmark: per-frame latency and throughput by precision / layout / compile,
and the share of pre- and post-processing in a whole-frame run.

Usage::

    python benchmarks/bench_gpu.py [--model default] [--size 1600] [--batch 1 8]
                                   [--variants fp32 bf16 channels_last compile]
                                   [--repeat 20] [--warmup 3] [--json out.json]

On a CUDA device (issue 12, item 6):

1. Network input planes of one simulated ``--size``² paper-camera frame (the model's own
   input kind), stacked into batches of ``--batch`` frames and run through the model as
   whole planes, for each variant:

   * ``fp32`` -- float32, contiguous memory;
   * ``bf16`` -- bf16 autocast, contiguous;
   * ``channels_last`` -- bf16 autocast + channels-last memory (what ``atd-dl detect``
     runs on CUDA);
   * ``compile`` -- as ``channels_last`` plus ``torch.compile`` (compile time reported
     separately, not in the rates).

   Reported: milliseconds per batch and per frame (best of ``--repeat`` after ``--warmup``
   calls, CUDA synchronised), frames per second, peak GPU memory.
2. One whole-frame ``Detector.run`` on the same frame file (CUDA, PyTorch engine, after a
   warm-up run): seconds per stage and the shares of pre-processing (read, calibration,
   background / enhancement, PSF width, input planes), inference and post-processing.

Without CUDA it runs a reduced version on the CPU (64² frame, fp32 only, one repeat, no
warm-up) so that tests/test_bench_gpu.py can check it end to end; the JSON then says
``"reduced": true`` and its numbers mean nothing for a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("fp32", "bf16", "channels_last", "compile")
PRE_STAGES = ("read", "calibrate", "enhance", "fwhm", "planes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="model folder or shipped model name")
    p.add_argument("--size", type=int, default=None, help="frame side, px (default 1600; CPU 64)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="frames per batch")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=None)
    p.add_argument("--repeat", type=int, default=None, help="timed calls (default 20; CPU 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls (default 3; CPU 0)")
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _simulated_frame(size: int, folder: Path) -> Path:
    from atd_dl.sim import preset_config, simulate_field, write_field

    sim = simulate_field(preset_config("paper", size=size), seed=0)
    return Path(write_field(sim, folder)["frame"])


def _variant_model(net: Any, variant: str, device: Any) -> tuple[Any, float]:
    """The network for ``variant`` (and the seconds ``torch.compile`` took to wrap it; the
    compilation itself happens in the warm-up calls)."""
    import copy

    import torch

    model = copy.deepcopy(net).to(device).eval()
    if variant in ("channels_last", "compile"):
        model = model.to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    if variant == "compile":
        model = torch.compile(model)
    return model, time.perf_counter() - t0


def bench_variant(
    net: Any,
    planes: np.ndarray,
    variant: str,
    batch: int,
    device: Any,
    *,
    repeat: int,
    warmup: int,
) -> dict[str, Any]:
    """Time whole-plane inference of ``batch`` frames with one variant."""
    import torch

    from atd_dl.models.inference import predict_proba

    row: dict[str, Any] = {"variant": variant, "batch": batch}
    if variant != "fp32" and device.type != "cuda":
        return {**row, "skipped": "CUDA only"}
    model, wrap_s = _variant_model(net, variant, device)
    x = torch.from_numpy(np.ascontiguousarray(np.stack([planes] * batch))).to(device)
    if variant in ("channels_last", "compile"):
        x = x.to(memory_format=torch.channels_last)
    amp = variant != "fp32"

    def call() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            predict_proba(model, x)
        _sync(device)

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        call()
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    best = min(times)
    row.update(
        batch_ms=round(1e3 * best, 3),
        median_batch_ms=round(1e3 * float(np.median(times)), 3),
        latency_ms_per_frame=round(1e3 * best / batch, 3),
        frames_per_s=round(batch / best, 3),
        warmup_s=round(warm_s, 3),
        peak_memory_mb=(
            round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda"
            else None
        ),
    )
    if variant == "compile":
        row["compile_wrap_s"] = round(wrap_s, 3)
    return row


def whole_frame(path: Path, detector: Any, device: Any, *, warmup: int) -> dict[str, Any]:
    """One run of ``detector`` on ``path``, stage by stage: seconds per stage and the
    shares of pre-processing, inference and post-processing in their total."""
    for _ in range(warmup):
        detector.run(path)
    prepared = detector.prepare(path)
    t0 = time.perf_counter()
    planes = detector.input_planes(prepared)
    t_planes = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob = detector.predictor.predict(planes)
    _sync(device)
    t_inf = time.perf_counter() - t0
    res = detector.run_on_prob(prepared, prob, inference_s=t_inf)
    stages = {k: float(v) for k, v in res.timings.items()}
    stages["planes"] = t_planes
    pre = sum(stages.get(k, 0.0) for k in PRE_STAGES)
    post = stages.get("postprocess", 0.0)
    total = pre + t_inf + post
    return {
        "stages_s": {k: round(v, 4) for k, v in stages.items()},
        "total_s": round(total, 4),
        "n_sources": len(res.catalog),
        "shares": {
            "pre": round(pre / total, 4),
            "inference": round(t_inf / total, 4),
            "post": round(post / total, 4),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from atd_dl.detect.inference import load_detector, resolve_device
    from atd_dl.detect.pipeline import DetectConfig, Detector, PreparedFrame

    device = resolve_device(args.device)
    reduced = device.type != "cuda"
    size = args.size or (64 if reduced else 1600)
    variants = args.variants or (["fp32"] if reduced else list(VARIANTS))
    repeat = args.repeat or (1 if reduced else 20)
    warmup = args.warmup if args.warmup is not None else (0 if reduced else 3)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        path = _simulated_frame(size, Path(tmp))
        net, meta = load_detector(args.model, device=str(device), engine="torch")
        detector = Detector(net, meta, DetectConfig(device=str(device)))
        prepared = detector.prepare(path)
        assert isinstance(prepared, PreparedFrame)  # one simulated image
        planes = detector.input_planes(prepared)
        # the variants first: the whole-frame run converts the network to channels-last
        rows = [
            bench_variant(net, planes, v, b, device, repeat=repeat, warmup=warmup)
            for v in variants
            for b in args.batch
        ]
        frame = whole_frame(path, detector, device, warmup=0 if reduced else 1)
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "model": str(meta.get("name")),
        "model_path": str(meta.get("path")),
        "input_planes": list(planes.shape),
        "frame_size": size,
        "reduced": reduced,
        "repeat": repeat,
        "warmup": warmup,
        "inference": rows,
        "whole_frame": frame,
    }


def _table(result: dict[str, Any]) -> str:
    lines = [
        f"device {result['device']} ({result['gpu'] or 'no GPU'}), {result['frame_size']}² "
        f"frame, model {result['model']}" + (" -- REDUCED CPU RUN" if result["reduced"] else ""),
        f"{'variant':<14}{'batch':>6}{'ms/frame':>11}{'frames/s':>10}{'peak MB':>9}",
    ]
    for r in result["inference"]:
        if "skipped" in r:
            lines.append(f"{r['variant']:<14}{r['batch']:>6}  skipped: {r['skipped']}")
            continue
        mem = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        lines.append(
            f"{r['variant']:<14}{r['batch']:>6}{r['latency_ms_per_frame']:>11.2f}"
            f"{r['frames_per_s']:>10.2f}{mem:>9}"
        )
    wf = result["whole_frame"]
    sh = wf["shares"]
    lines.append(
        f"whole frame {wf['total_s']:.3f} s: pre {100 * sh['pre']:.0f} %, inference "
        f"{100 * sh['inference']:.0f} %, post {100 * sh['post']:.0f} % "
        f"({wf['n_sources']} sources)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
