"""``atd-dl repeatability``: detections found again in other exposures of the same field."""

from __future__ import annotations

import argparse
import json
import logging

from atd_dl.commands._validate import (
    DEVICE_HELP,
    device_choice,
    positive_float,
    probability,
    writable_out_file,
)
from atd_dl.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``repeatability`` sub-command."""
    p = subparsers.add_parser(
        "repeatability",
        help="catalog-free check: detections found again in other exposures of one field",
        description=(
            "Detect sources in two or more exposures of the same field and report, per "
            "exposure and per SNR bin, the fraction of detections found again in another "
            "exposure within --radius px (matched on the sky through each frame's WCS, or in "
            "pixels when the frames share a grid and have no WCS), and the detections seen "
            "in one exposure only. Real sources come back; noise peaks do not."
        ),
    )
    p.add_argument("frames", nargs="+", metavar="FRAME", help="FITS files, folders or globs")
    p.add_argument("--model", default=None, help="model folder, .ckpt or shipped name")
    p.add_argument("--threshold", type=probability, default=None, help="probability threshold")
    p.add_argument("--radius", type=positive_float, default=1.5, help="match radius px (1.5)")
    p.add_argument("--hdu", default=None, help="HDU index or name in each file")
    p.add_argument("--device", type=device_choice, default=None, help=DEVICE_HELP)
    p.add_argument("--out", type=writable_out_file, default=None, help="JSON file for the result")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Detect on every frame, then :func:`atd_dl.evaluate.repeatability.repeatability`."""
    from atd_dl.detect.batch import expand_inputs
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector
    from atd_dl.evaluate.repeatability import repeatability
    from atd_dl.io.atomic import atomic_write_text
    from atd_dl.io.paths import frame_stem

    paths, problems = expand_inputs(args.frames)
    for item, msg in problems:
        logging.getLogger(__name__).error("%s: %s", item, msg)
    if len(paths) < 2:
        raise InputError(None, f"repeatability needs at least two frames, got {len(paths)}")
    model, meta = load_detector(args.model, device=args.device)
    det = Detector(model, meta, DetectConfig(threshold=args.threshold, hdu=args.hdu))
    catalogs, names = [], []
    for path in paths:
        catalogs.append(det.run(path).catalog)
        names.append(frame_stem(path))
    res = repeatability(catalogs, names, radius_px=args.radius)
    print(f"matched by {res.matched_by}, radius {res.radius_px:g} px")
    for name, n, a, s in zip(
        res.names, res.n_detections, res.n_found_again, res.n_single, strict=True
    ):
        frac = a / n if n else float("nan")
        print(f"  {name:32s} {n:6d} detections, {frac:6.1%} found again, {s:5d} single")
    print("  SNR bin     detections  found again")
    for label, count, frac in zip(res.bins, res.bin_counts, res.bin_fraction, strict=True):
        print(f"  {label:10s} {count:11d}  {frac:10.1%}")
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(res.as_dict(), indent=2) + "\n")
        print(f"wrote {args.out}")
    return 1 if problems else 0
