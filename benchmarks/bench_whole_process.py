"""Whole-process cost of ``atd-dl detect`` against SExtractor on the same frame, same run.

Usage::

    python benchmarks/bench_whole_process.py [--size 1600] [--repeat 3] [--engine auto]
                                             [--big 10000] [--json out.json]

1. A simulated ``--size``² paper-camera frame; ``atd-dl detect FRAME`` (a fresh process:
   start-up, model load, read, background, PSF, inference, post-processing, catalog
   writing) and ``source-extractor`` (1σ, 3×3 pyramid filter, the configuration of
   :class:`atd_dl.baselines.sextractor.SExtractorFinder` written by its ``keep_dir``) run
   alternately ``--repeat`` times, each under GNU ``time``: wall seconds, CPU seconds
   (user + sys) and peak resident memory. Medians and the ATD-DL / SExtractor ratios.
2. Shape: a 50 x 4000 strip cut from the same sky, detected in-process with one loaded
   model; seconds per megapixel (prepare + inference + post-processing, no start-up)
   against the square frame's: a strip should cost about its pixel share.
3. ``--big N``: peak memory of ``atd-dl detect`` on an N x N frame (memory must stay
   bounded for any frame size; off by default).

The numbers go into docs/performance.md. Machine load changes wall time; CPU seconds and
the ratios (both tools measured in the same run, alternately) are the robust figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(cmd: list[str], cwd: Path | None = None) -> dict[str, float]:
    """Run ``cmd`` under GNU time; wall s, CPU s (user + sys) and peak RSS MB."""
    fmt = "%e %U %S %M"
    proc = subprocess.run(
        ["/usr/bin/time", "-f", fmt, *cmd], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.strip()[-800:]}")
    wall, user, system, rss_kb = proc.stderr.strip().splitlines()[-1].split()
    return {
        "wall_s": float(wall),
        "cpu_s": float(user) + float(system),
        "peak_mb": float(rss_kb) / 1024,
    }


def sextractor_command(frame: Path, work: Path) -> tuple[list[str], Path]:
    """SExtractor's command line (and working folder) for ``frame``: 1σ, 3×3 filter."""
    from astropy.io import fits

    from atd_dl.baselines.sextractor import SExtractorFinder

    data = fits.getdata(frame).astype(np.float32)
    keep = work / "sex"
    SExtractorFinder(threshold=1.0, filter_fwhm="default").extract(data, keep_dir=keep)
    args = (keep / "command.txt").read_text().split()
    args[1] = str(frame)  # the user's frame itself, not the float copy
    return args, keep


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.median([r[k] for r in rows])), 3) for k in rows[0]}


def bench_ratio(frame: Path, work: Path, repeat: int, engine: str) -> dict:
    sex_cmd, sex_dir = sextractor_command(frame, work)
    atd_cmd = [
        sys.executable, "-m", "atd_dl.cli", "detect", str(frame), "--out", str(work / "det"),
        "--engine", engine, "--quiet", "--overwrite",
    ]  # fmt: skip
    timed(atd_cmd)  # warm the page cache and Python's bytecode cache
    ours, theirs = [], []
    for _ in range(repeat):
        theirs.append(timed(sex_cmd, cwd=sex_dir))
        ours.append(timed(atd_cmd))
    a, s = median_row(ours), median_row(theirs)
    return {
        "atd_dl": a,
        "sextractor": s,
        "ratio": {k: round(a[k] / max(s[k], 1e-3), 2) for k in a},
    }


def make_strip(frame: Path, out: Path, shape: tuple[int, int] = (50, 4000)) -> Path:
    """A ``shape`` strip of real sky: rows of ``frame`` laid side by side."""
    from astropy.io import fits

    with fits.open(frame) as hdul:
        data, header = hdul[0].data, hdul[0].header.copy()
    ny, nx = shape
    pieces, row = [], 0
    while sum(p.shape[1] for p in pieces) < nx:
        pieces.append(data[row : row + ny])
        row += ny
    strip = np.hstack(pieces)[:, :nx]
    for key in [k for k in header if k.startswith(("CRPIX", "CRVAL", "CD", "CTYPE", "PC"))]:
        del header[key]  # the strip has no single WCS
    fits.PrimaryHDU(strip, header).writeto(out, overwrite=True)
    return out


def bench_shape(frame: Path, work: Path, engine: str, repeat: int) -> dict:
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector

    strip = make_strip(frame, work / "strip.fits")
    det = Detector(*load_detector(None, engine=engine), DetectConfig())
    out = {}
    for name, path in (("square", frame), ("strip", strip)):
        det.run(path)  # warm-up
        best = np.inf
        for _ in range(repeat):
            c0 = time.process_time()
            res = det.run(path)
            best = min(best, time.process_time() - c0)
        px = res.prob.size if getattr(res, "prob", None) is not None else None
        ny, nx = res.frame.data.shape if px is None else res.prob.shape
        out[name] = {
            "shape": f"{ny}x{nx}",
            "cpu_s": round(best, 3),
            "cpu_s_per_mpx": round(best / (ny * nx / 1e6), 3),
        }
    out["strip_cost_vs_pixel_share"] = round(
        out["strip"]["cpu_s_per_mpx"] / out["square"]["cpu_s_per_mpx"], 2
    )
    return out


def bench_big(size: int, work: Path, engine: str) -> dict:
    from atd_dl.sim import preset_config, simulate_field, write_field

    frame = write_field(simulate_field(preset_config("sparse", size=size), seed=5), work / "big")[
        "frame"
    ]
    cmd = [
        sys.executable, "-m", "atd_dl.cli", "detect", str(frame), "--out", str(work / "bigdet"),
        "--engine", engine, "--quiet", "--overwrite",
    ]  # fmt: skip
    return {"frame": f"{size}x{size}", **timed(cmd)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1600)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine", default="auto", choices=("auto", "onnx", "torch"))
    ap.add_argument("--big", type=int, default=0, help="also an N x N frame (memory)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if shutil.which("source-extractor") is None and shutil.which("sex") is None:
        print("source-extractor not installed (make system-deps)", file=sys.stderr)
        return 2
    from atd_dl.sim import preset_config, simulate_field, write_field

    with tempfile.TemporaryDirectory(prefix="atd_bench_") as tmp:
        work = Path(tmp)
        frame = write_field(simulate_field(preset_config("paper", size=args.size), seed=11), work)[
            "frame"
        ]
        result = {
            "cpus": len(os.sched_getaffinity(0)),
            "engine": args.engine,
            "whole_process": bench_ratio(frame, work, args.repeat, args.engine),
            "shape": bench_shape(frame, work, args.engine, args.repeat),
        }
        if args.big:
            result["big"] = bench_big(args.big, work, args.engine)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
