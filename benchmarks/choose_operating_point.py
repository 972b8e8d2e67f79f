"""Choose a model's one default threshold on validation frames that span the generator.

Usage::

    python benchmarks/choose_operating_point.py --model atd_dl/weights/default \
        [--size 768] [--seed 777] [--max-false 0.3] [--json out.json] [--write]

Validation set (never the test seeds of ``benchmarks/eval_matrix.py``): randomised frames
(``atd_dl.sim.randomized``) at FWHM {1.3, 2.5, 4.5} px x density {sparse, paper, crowded},
one hard frame and one near-empty frame, plus source-free frames (Gaussian sigma 3 and
30 ADU, Poisson mean 0.2, 0.5, 2, 50 and 1000 counts; 512²-1024², and one 600 x 1400). For each
threshold: strict one-to-one P/R/F1 pooled and per frame (3 px, 3 px edge cut, G = true
stars with 3x3 SNR >= 2) and detections per 10^5 px on the source-free frames. The
chosen threshold maximises the mean per-frame F1 (frames with >= 20 reference stars)
with at most ``--max-false`` detections per 10^5 px on noise. ``--write`` stores it in the model's thresholds.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

CELLS = [(fw, dens) for fw in (1.3, 2.5, 4.5) for dens in ("sparse", "paper", "crowded")] + [
    (2.5, "hard"),
    (2.5, "empty"),
]


def _validation_frames(size: int, seed: int, folder: Path) -> tuple[list, list, list]:
    from astropy.table import Table

    from atd_dl.evaluate.operating_point import array_frame, noise_frame
    from atd_dl.evaluate.references import references_from_truth
    from atd_dl.io.fits_io import read_frame
    from atd_dl.sim.randomized import DENSITY_CELLS, write_random_frames

    frames, refs = [], []
    for i, (fw, dens) in enumerate(CELLS):
        d = DENSITY_CELLS["paper" if dens == "hard" else dens]
        out = folder / f"cell{i}"
        write_random_frames(
            out,
            1,
            seed=seed + i,
            size=size,
            fwhm=fw,
            density=d,
            hard=True if dens == "hard" else False,
            progress=False,
        )
        fpath = next((out / "frames").glob("*.fits"))
        frames.append(read_frame(fpath))
        truth = Table.read(out / "truth" / f"{fpath.name[:-5]}.ecsv", format="ascii.ecsv")
        refs.append(references_from_truth(truth))
    rng = np.random.default_rng(seed)
    noise = [
        array_frame(noise_frame((1024, 1024), "gaussian", 3.0, rng)),
        array_frame(noise_frame((1024, 1024), "gaussian", 30.0, rng)),
        array_frame(noise_frame((1024, 1024), "poisson", 2.0, rng), gain=1.0),
        array_frame(noise_frame((512, 512), "poisson", 0.5, rng), gain=1.0),
        array_frame(noise_frame((1024, 1024), "poisson", 0.2, rng), gain=1.0),
        array_frame(noise_frame((1024, 1024), "poisson", 50.0, rng), gain=1.0),
        array_frame(noise_frame((600, 1400), "poisson", 1000.0, rng), gain=1.0),
    ]
    return frames, refs, noise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--max-false", type=float, default=0.3, help="per 10^5 px on noise frames")
    ap.add_argument("--thresholds", default="0.2:0.95:0.05", help="START:STOP:STEP")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write", action="store_true", help="write thresholds.json of --model")
    args = ap.parse_args(argv)

    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import Detector
    from atd_dl.evaluate.operating_point import choose_threshold, sweep_thresholds
    from atd_dl.io.atomic import atomic_write_text

    model, meta = load_detector(args.model, device="cpu")
    detector = Detector(model, meta)
    start, stop, step = (float(v) for v in args.thresholds.split(":"))
    grid = [round(t, 4) for t in np.arange(start, stop + 1e-9, step)]
    with tempfile.TemporaryDirectory() as tmp:
        frames, refs, noise = _validation_frames(args.size, args.seed, Path(tmp))
        rows = sweep_thresholds(detector, frames, refs, noise, grid)
    best = choose_threshold(rows, args.max_false)
    print(f"{'thr':>5} {'P':>6} {'R':>6} {'F1':>6} {'meanF1':>7} {'false/1e5px':>11}")
    for r in rows:
        mark = " <-" if r is best else ""
        print(
            f"{r.threshold:5.2f} {r.precision:6.3f} {r.recall:6.3f} {r.f1:6.3f} "
            f"{r.mean_frame_f1:7.3f} {r.false_per_1e5px:11.3f}{mark}"
        )
    print(f"chosen threshold {best.threshold:.3f} (max {args.max_false} false per 1e5 px)")
    doc = {
        "model": str(meta.get("path")),
        "cells": CELLS,
        "size": args.size,
        "seed": args.seed,
        "max_false_per_1e5px": args.max_false,
        "chosen": dataclasses.asdict(best),
        "rows": [dataclasses.asdict(r) for r in rows],
    }
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
    if args.write:
        folder = Path(meta["path"])
        atomic_write_text(
            folder / "thresholds.json",
            json.dumps({"prob_threshold": best.threshold, "chosen_by": doc["chosen"]}, indent=2)
            + "\n",
        )
        print(f"wrote {folder / 'thresholds.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
