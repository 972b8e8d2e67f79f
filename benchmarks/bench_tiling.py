"""CPU tiling of the default model: cost, memory and catalog identity per tile plan.

Usage::

    python benchmarks/bench_tiling.py [--size 1600] [--plans auto,640:64,832:32,1024:32]

A simulated paper-like ``--size``² frame is detected with one tile covering the whole frame
(the reference: no seams) and with each ``TILE:OVERLAP`` plan (``auto`` = the shipped plan,
:data:`atd_dl.detect.inference.CPU_MAX_TILE` and the default overlap). Per plan: inference
CPU seconds (in-process, model loaded once), the share of reference detections found again
within 0.01 px (issue 12 asks >= 99.5 %), and the peak resident memory of a fresh
``atd-dl detect --tile T --overlap O`` process (GNU time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def identical_share(ref: np.ndarray, other: np.ndarray, tol: float = 0.01) -> float:
    """Share of ``ref`` positions ``[N, 2]`` with an ``other`` position within ``tol`` px."""
    from scipy.spatial import cKDTree

    if len(ref) == 0:
        return 1.0
    if len(other) == 0:
        return 0.0
    dist, _ = cKDTree(other).query(ref, k=1)
    return float(np.mean(dist <= tol))


def peak_rss_mb(frame: Path, out: Path, tile: int | None, overlap: int | None) -> float:
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "atd_dl.cli", "detect", str(frame),
           "--out", str(out), "--quiet", "--overwrite"]  # fmt: skip
    if tile:
        cmd += ["--tile", str(tile)]
    if overlap is not None:
        cmd += ["--overlap", str(overlap)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(proc.stderr.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1600)
    ap.add_argument("--plans", default="auto,640:64,832:32,1024:32")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from atd_dl.detect.inference import CPU_MAX_TILE, load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector
    from atd_dl.prep.partition import DETECT_OVERLAP
    from atd_dl.sim import preset_config, simulate_field, write_field

    rows = []
    with tempfile.TemporaryDirectory(prefix="atd_tiling_") as tmp:
        work = Path(tmp)
        field = simulate_field(preset_config("paper", size=args.size), seed=11)
        frame = write_field(field, work)["frame"]
        model, meta = load_detector(None)

        def run(tile: int | None, overlap: int | None) -> tuple[np.ndarray, float]:
            kw = {} if overlap is None else {"overlap": overlap}
            det = Detector(model, meta, DetectConfig(tile=tile, **kw))
            prepared = det.prepare(frame)
            det.infer(prepared)  # warm-up
            c0 = time.process_time()
            prob = det.infer(prepared)
            cpu = time.process_time() - c0
            cat = det.extract(prepared, prob).catalog
            return np.column_stack([np.asarray(cat["x"]), np.asarray(cat["y"])]), cpu

        ref, ref_cpu = run(-(-args.size // 16) * 16, 0)
        for plan in args.plans.split(","):
            tile, overlap = (None, None) if plan == "auto" else (int(v) for v in plan.split(":"))
            xy, cpu = run(tile, overlap)
            rows.append({
                "plan": plan if plan != "auto" else f"auto ({CPU_MAX_TILE}:{DETECT_OVERLAP})",
                "inference_cpu_s": round(cpu, 3),
                "identical_share": round(identical_share(ref, xy), 5),
                "n_detections": len(xy),
                "peak_mb": round(peak_rss_mb(frame, work / plan.replace(":", "_"), tile, overlap)),
            })  # fmt: skip
        rows.append({"plan": f"one tile {args.size}", "inference_cpu_s": round(ref_cpu, 3),
                     "identical_share": 1.0, "n_detections": len(ref),
                     "peak_mb": round(peak_rss_mb(frame, work / "one", -(-args.size // 16) * 16, 0))})  # fmt: skip
    print("| plan | inference CPU s | identical to one tile | detections | peak MB |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['plan']} | {r['inference_cpu_s']:.2f} | {100 * r['identical_share']:.2f} % "
              f"| {r['n_detections']} | {r['peak_mb']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
