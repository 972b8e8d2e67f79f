"""``atd-dl prep``: build a training dataset from FITS frames and reference catalogs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atd_dl.commands._validate import int_in, nonneg_float, positive_float, writable_out_dir


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 or v > 9 for v in values):
        raise argparse.ArgumentTypeError(f"subfield numbers are 1..9, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prep`` sub-command."""
    parser = subparsers.add_parser(
        "prep",
        help="prepare a training dataset (images, catalog-anchored masks, splits)",
        description=(
            "For each frame: calibrate (optional masters), subtract the whole-frame "
            "background and ZScale-stretch to 8 bits, build catalog-anchored labels "
            "(threshold components matched to catalog sources with 3x3 SNR >= 2), cut the "
            "central 3x3 block of 512x512 subfields (numbered 9 2 3 / 8 1 4 / 7 6 5) and "
            "write images/, masks/, aux/, points/, overlays/, manifest.csv, labels.csv, "
            "table1.csv and fingerprint.json. Subfields 1,3,4,6,7,9 go to train and 2,5,8 to "
            "val; every subfield of a --test-frames frame goes to test. Test frames must not "
            "overlap training frames on the sky. A rerun skips a finished frame only when its "
            "resume key (frame and catalog SHA-256, masters, settings) is unchanged and says "
            "why it redoes the others; a failing frame is reported, leaves the dataset, and "
            "the others go on (exit code 1)."
        ),
    )
    parser.add_argument(
        "frames", nargs="+", metavar="FRAMES", help="FITS files, folders of them, or globs"
    )
    parser.add_argument(
        "--catalogs",
        required=True,
        type=Path,
        help="folder with <frame>.{ecsv,csv,fits,vot,xml} per frame, or one catalog file",
    )
    parser.add_argument(
        "--out", required=True, type=writable_out_dir, help="dataset folder to write"
    )
    parser.add_argument("--bias", type=Path, help="master bias FITS")
    parser.add_argument("--dark", type=Path, help="master dark FITS (bias-subtracted)")
    parser.add_argument("--flat", type=Path, help="master flat FITS")
    parser.add_argument(
        "--test-frames",
        metavar="NAMES",
        help="comma-separated frame names or globs whose subfields all go to test",
    )
    parser.add_argument(
        "--val-subfields",
        type=_int_list,
        default=(2, 5, 8),
        metavar="LIST",
        help="subfields used for validation (default 2,5,8)",
    )
    parser.add_argument(
        "--train-subfields",
        type=_int_list,
        default=None,
        metavar="LIST",
        help="subfields used for training (default: all others)",
    )
    parser.add_argument(
        "--gain", type=positive_float, help="gain in e-/ADU (overrides the header GAIN)"
    )
    parser.add_argument(
        "--saturation", type=positive_float, help="saturation level in ADU (overrides SATURATE)"
    )
    parser.add_argument("--hdu", help="HDU index or EXTNAME (default: first 2-D image)")
    parser.add_argument(
        "--catalog-pattern",
        default="{stem}",
        help="catalog file name for frame {stem}, without suffix (default '{stem}')",
    )
    parser.add_argument(
        "--subfield-size",
        type=int_in(16, 8192),
        default=512,
        help="subfield side in pixels, 16-8192 (default 512)",
    )
    parser.add_argument(
        "--snr-min",
        type=nonneg_float,
        default=2.0,
        help="keep catalog sources with 3x3 SNR >= this",
    )
    parser.add_argument(
        "--threshold-f",
        type=nonneg_float,
        default=0.5,
        help="candidate pixels above background + f * rms (Eq. 7; default 0.5)",
    )
    parser.add_argument(
        "--no-trim",
        action="store_true",
        help="label whole matched components (paper as written) instead of the star footprint",
    )
    parser.add_argument(
        "--psf-fwhm",
        type=positive_float,
        help="PSF FWHM in px for footprint trimming (default: fitted)",
    )
    parser.add_argument(
        "--isolation-margin",
        type=nonneg_float,
        default=0.0,
        metavar="DEG",
        help="extra sky gap required between test and training frames (deg)",
    )
    parser.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    parser.add_argument("--no-aux", action="store_true", help="skip aux/<stem>.npz")
    parser.add_argument(
        "--input-kind",
        default="zscale8",
        metavar="KIND|MODEL",
        help="network input to write: zscale8 (images/ + aux/, the paper models) or "
        "sigma_asinh+bad (also sigma/<stem>.npz, the generalist models such as 'default'); "
        "a model folder or shipped model name takes the kind from its config.json",
    )
    parser.add_argument(
        "--force", action="store_true", help="accept test frames that overlap training frames"
    )
    parser.add_argument(
        "--overwrite",
        "--redo",
        dest="redo",
        action="store_true",
        help="prepare every frame again even when its resume key is unchanged "
        "(--redo: deprecated alias)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="warnings and errors only, no progress bar"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the dataset; return 0 when every frame succeeded, 1 otherwise."""
    from atd_dl.data.builder import PrepConfig, build_dataset
    from atd_dl.labels.anchor import LabelConfig
    from atd_dl.lit.finetune import dataset_input_kind

    hdu = args.hdu
    if isinstance(hdu, str) and hdu.lstrip("-").isdigit():
        hdu = int(hdu)
    labels = LabelConfig(
        f=args.threshold_f,
        snr_min=args.snr_min,
        trim=None if args.no_trim else "psf",
        psf_fwhm=args.psf_fwhm,
    )
    config = PrepConfig(
        subfield_size=args.subfield_size,
        train_subfields=args.train_subfields,
        val_subfields=args.val_subfields,
        catalog_pattern=args.catalog_pattern,
        gain=args.gain,
        saturation=args.saturation,
        hdu=hdu,
        isolation_margin_deg=args.isolation_margin,
        write_aux=not args.no_aux,
        input_kind=dataset_input_kind(args.input_kind),
        write_overlays=not args.no_overlays,
        labels=labels,
    )
    masters = None
    if args.bias or args.dark or args.flat:
        from atd_dl.prep.calibration import CalibrationMasters

        masters = CalibrationMasters.from_files(args.bias, args.dark, args.flat)
    report = build_dataset(
        args.frames,
        args.catalogs,
        args.out,
        masters=masters,
        test_frames=args.test_frames,
        config=config,
        force=args.force,
        redo=args.redo,
        progress=not args.quiet,
    )
    print(report.summary(), file=sys.stderr if report.failed else sys.stdout)
    return 0 if report.ok else 1
