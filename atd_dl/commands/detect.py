"""``atd-dl detect``: find sources in FITS frames with a trained network."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from atd_dl.commands._validate import (
    DEVICE_HELP,
    MAX_WORKERS,
    device_choice,
    int_at_least,
    int_in,
    multiple_of16,
    nonneg_float,
    positive_float,
    probability,
    writable_out_dir,
)

if TYPE_CHECKING:
    from atd_dl.detect.pipeline import DetectConfig

log = logging.getLogger(__name__)


def _hdu(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value


#: options that set a DetectConfig field of the same name; their argparse default is None
#: (not given), so the default is the dataclass's: one source shared with infer.yaml
DETECT_OPTIONS = (
    "threshold",
    "min_snr",
    "tile",
    "overlap",
    "batch_size",
    "device",
    "compile",
    "edge",
    "hdu",
    "plane",
    "gain",
    "symmetries",
)


def detect_config(args: argparse.Namespace) -> DetectConfig:
    """The :class:`DetectConfig` of the options given; the others keep its defaults."""
    from atd_dl.detect.pipeline import DetectConfig

    given = {k: getattr(args, k, None) for k in DETECT_OPTIONS}
    return DetectConfig(**{k: v for k, v in given.items() if v is not None})


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``detect`` sub-command."""
    p = subparsers.add_parser(
        "detect",
        help="detect sources in FITS frames (catalogs, regions, maps)",
        description=(
            "Detect point sources in FITS frames: read, calibrate (optional masters), "
            "enhance like the training data, run the network over overlapping tiles, "
            "threshold, deblend, measure (Eq. 16 centroids, aperture flux, SNR, flags) and "
            "write a catalog per frame (<stem>.cat.fits + <stem>.cat.ecsv, x/y 0-based "
            "pixels, RA/Dec from the WCS). A rerun skips a frame only when its outputs exist "
            "and its resume key (<stem>.key.json: input SHA-256, model, threshold, options, "
            "calibration) is unchanged, and says why it redoes the others; --overwrite "
            "redoes every frame. Bad frames are reported and the batch goes on (exit code 1)."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="FITS files, folders or glob patterns")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model folder, Lightning .ckpt or shipped model name (default: 'default', the "
        "generalist model; 'paper_camera' = the paper's camera; list: atd-dl models)",
    )
    p.add_argument("--out", type=writable_out_dir, default="detections", help="output folder")
    p.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="probability threshold in (0, 1) (default: the model's)",
    )
    p.add_argument(
        "--min-snr",
        type=nonneg_float,
        default=None,
        help="drop detections with aperture SNR below this (default: the model folder's "
        "config.json postprocess.min_snr, else 0 = keep all)",
    )
    p.add_argument("--bias", type=Path, default=None, help="master bias FITS")
    p.add_argument("--dark", type=Path, default=None, help="master dark FITS (bias-subtracted)")
    p.add_argument("--flat", type=Path, default=None, help="master flat FITS")
    p.add_argument(
        "--bad-pixels",
        type=Path,
        default=None,
        help="bad-pixel map FITS, the frame's shape: nonzero = bad (hot, dead, RTS pixels); "
        "those pixels are masked",
    )
    p.add_argument("--regions", action="store_true", help="also write a DS9 region file")
    p.add_argument("--segmap", action="store_true", help="also write the segmentation map")
    p.add_argument("--probmap", action="store_true", help="also write the probability map")
    p.add_argument("--overlay", action="store_true", help="also write an overlay PNG")
    p.add_argument(
        "--device",
        type=device_choice,
        default=None,
        help=f"{DEVICE_HELP} (default: cuda if present)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "onnx", "torch"),
        default="auto",
        help="inference engine: onnx = ONNX Runtime (CPU; same catalog, faster), torch = "
        "PyTorch; auto (default) = onnx on the CPU when the model folder has a current "
        "model.onnx, else torch",
    )
    p.add_argument(
        "--workers",
        type=int_in(1, MAX_WORKERS),
        default=1,
        help=f"frames prepared ahead in background threads (1-{MAX_WORKERS})",
    )
    p.add_argument(
        "--jobs",
        type=int_in(1, MAX_WORKERS),
        default=1,
        help="worker processes sharing the frames (1-"
        f"{MAX_WORKERS}; default 1): each loads the model once and infers with cores/JOBS "
        "threads; same catalogs, resume keys and summary.json as one process",
    )
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=None, help="tiles per batch (default: auto)"
    )
    p.add_argument(
        "--symmetries",
        type=int_in(1, 4),
        choices=(1, 2, 4),
        default=None,
        help="average the probability map over this many flips of the frame (default: the "
        "model's, 4 for the shipped default; 1 is the fastest but its operating point was not "
        "chosen for it)",
    )
    p.add_argument(
        "--tile",
        type=multiple_of16,
        default=None,
        help="tile size in px, a multiple of 16 in [16, 8192] (default: on CPU tiles shaped to "
        "the frame, at most CPU_MAX_TILE px a side; 1024 on CUDA)",
    )
    p.add_argument(
        "--overlap", type=int_at_least(0), default=None, help="tile overlap in px (default 32)"
    )
    p.add_argument("--hdu", type=_hdu, default=None, help="HDU index or EXTNAME to read")
    p.add_argument(
        "--plane", type=int, default=None, help="plane of a 3-D cube (negative: from the end)"
    )
    p.add_argument(
        "--gain", type=positive_float, default=None, help="gain e-/ADU (overrides the header)"
    )
    p.add_argument(
        "--edge",
        type=nonneg_float,
        default=None,
        help="sources this close to the border, px, get the NEAR_EDGE flag (default 3)",
    )
    p.add_argument(
        "--binaries",
        nargs="?",
        const="default",
        default=None,
        metavar="MODEL_DIR",
        help="classify each detection with the visual-binary stamp classifier (shipped one "
        "unless MODEL_DIR is given): adds p_binary/binary columns and flag BINARY (1024)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo every frame even when its outputs and resume key are unchanged",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run detection over all inputs; 0 when every frame succeeded, 1 otherwise."""
    from atd_dl.process_tuning import pause_gc, settle_gc

    pause_gc()  # the start-up imports create no garbage worth collecting
    from atd_dl.detect.batch import detect_files, load_masters
    from atd_dl.detect.catalog_io import OutputConfig
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import Detector

    config = detect_config(args)
    model, meta = load_detector(args.model, device=args.device, engine=args.engine)
    detector = Detector(model, meta, config)
    if args.binaries is not None:
        from atd_dl.binaries.model import load_binary_model

        detector.binary_model = load_binary_model(
            None if args.binaries == "default" else args.binaries
        )
    masters = load_masters(args.bias, args.dark, args.flat, args.bad_pixels)
    output = OutputConfig(
        args.out,
        regions=args.regions,
        segmap=args.segmap,
        probmap=args.probmap,
        overlay=args.overlay,
        overwrite=args.overwrite,
    )

    settle_gc()

    def report(msg: str) -> None:
        print(f"error: {msg}", file=sys.stderr)

    def status(path: Path, text: str) -> None:
        if not getattr(args, "quiet", False):
            print(f"{path}: {text}")

    summary = detect_files(
        args.paths,
        detector,
        output,
        masters=masters,
        workers=args.workers,
        jobs=getattr(args, "jobs", 1),
        progress=not (args.no_progress or getattr(args, "quiet", False)),
        on_failure=report,
        on_status=status,
    )
    print(
        f"{summary.n_ok} frame(s) processed, {summary.n_skipped} skipped (unchanged), "
        f"{summary.n_failed} failed; {summary.n_detections} sources; "
        f"threshold {detector.threshold:.3f}; device {detector.device}; "
        f"{summary.frames_per_minute:.1f} frames/min ({summary.jobs} process(es)); "
        f"summary: {Path(args.out) / 'summary.json'}"
    )
    if summary.failures:  # each was printed as it happened (one line per frame)
        # summary.json is kept even when every frame failed: it records the failures
        total = summary.n_ok + summary.n_skipped + summary.n_failed
        every = " (every frame failed, no catalog written)" if total == summary.n_failed else ""
        print(
            f"{summary.n_failed} failure(s) of {total} frame(s){every}; listed in "
            f"{Path(args.out) / 'summary.json'}",
            file=sys.stderr,
        )
        return 1
    return 0
