"""``atd-dl masters``: combine raw bias / dark / flat frames into a master calibration frame."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from atd_dl.commands._validate import positive_float, writable_out_file

if TYPE_CHECKING:
    from atd_dl.io.fits_io import Frame

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``masters`` sub-command."""
    parser = subparsers.add_parser(
        "masters",
        help="combine raw calibration frames into a master bias, dark or flat",
        description=(
            "Median-combine (sigma-clipped, per pixel) raw calibration frames into a master. "
            "Darks are made bias-subtracted when --bias is given (the form `calibrate` "
            "expects); flats are normalised to median 1. Unreadable or mismatched inputs are "
            "skipped and listed at the end (exit code 1)."
        ),
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="raw FITS frames")
    parser.add_argument(
        "--kind", required=True, choices=("bias", "dark", "flat"), help="which master to make"
    )
    parser.add_argument(
        "--out", required=True, type=writable_out_file, help="output master FITS file"
    )
    parser.add_argument("--bias", type=Path, help="master bias to subtract (darks, flats)")
    parser.add_argument("--dark", type=Path, help="bias-subtracted master dark (flats)")
    parser.add_argument("--hdu", help="HDU index or EXTNAME (default: first 2-D image)")
    parser.add_argument("--plane", type=int, help="plane of a 3-D cube (negative: from the end)")
    parser.add_argument(
        "--sigma", type=positive_float, default=3.0, help="clipping threshold, > 0 (default 3)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the inputs (skipping bad ones), combine, write; return the exit code."""
    from tqdm import tqdm

    from atd_dl.errors import InputError
    from atd_dl.io.fits_io import read_frame
    from atd_dl.prep.calibration import combine_masters

    if args.out.exists() and not args.overwrite:
        raise InputError(args.out, "output exists; use --overwrite to replace it")
    hdu = args.hdu
    if isinstance(hdu, str) and hdu.lstrip("-").isdigit():
        hdu = int(hdu)
    frames: list[Frame] = []
    failures: list[str] = []
    for path in tqdm(args.files, desc=f"reading {args.kind} frames", unit="frame", disable=None):
        try:
            frame = read_frame(path, hdu=hdu, plane=args.plane)
        except InputError as err:
            failures.append(str(err))
            continue
        if frames and frame.shape != frames[0].shape:
            failures.append(
                f"{path}: shape {frame.shape} differs from {frames[0].shape} of {frames[0].path}"
            )
            continue
        frames.append(frame)
    if not frames:
        for line in failures[:-1]:
            print(f"error: {line}", file=sys.stderr)
        # the last problem is the error line (one line per bad file, none repeated)
        last = failures[-1] if failures else f"no usable {args.kind} frames"
        raise InputError(None, f"{last} (no usable {args.kind} frame out of {len(args.files)})")
    master = combine_masters(
        frames,
        kind=args.kind,
        bias=args.bias,
        dark=args.dark,
        sigma=args.sigma,
        hdu=hdu,
    )
    names = [p.name for p in args.files]
    sources = ",".join(names[:10]) + (f",... (+{len(names) - 10} more)" if len(names) > 10 else "")
    master.write(args.out, provenance={"source": sources})
    print(f"wrote master {args.kind} from {master.n_frames} frame(s): {args.out}")
    if failures:
        print(f"{len(failures)} input(s) skipped:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0
