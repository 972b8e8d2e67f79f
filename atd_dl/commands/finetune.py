"""``atd-dl finetune``: a model for your camera from a few of your frames and their catalogs.

The work is :func:`atd_dl.lit.finetune.run_finetune`; this module only parses options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from atd_dl.commands._validate import float_in, int_at_least, int_in, positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` sub-command."""
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a shipped model (or model folder) on your labelled frames",
        description=(
            "Prepare FRAMES with labels from your reference catalogs (Gaia-like exports with "
            "ra/dec; atd-dl prep in the base model's input representation), hold out "
            "subfields of every frame for validation, fine-tune the base model "
            "(experiment=finetune, weights loaded weights-only), tune the probability "
            "threshold with the full detection pipeline on the held-out subfields and write "
            "the model folder --out: weights, config.json, thresholds.json, fingerprint.json, "
            "metrics.json and MODEL_CARD.md naming the base model and its SHA-256, the frames "
            "and the validation scores. Working files stay in OUT/.finetune; a rerun skips "
            "finished stages and resumes training from its last checkpoint. See "
            "docs/finetune.md for how many frames it takes."
        ),
    )
    p.add_argument("frames", nargs="+", metavar="FRAMES", help="FITS files, folders or globs")
    p.add_argument(
        "--catalogs",
        required=True,
        nargs="+",
        type=Path,
        metavar="CATALOGS",
        help="one catalog folder (<frame>.{ecsv,csv,fits,vot,xml} per frame) or one catalog "
        "file covering every frame",
    )
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument(
        "--base",
        default="default",
        help="model to start from: a shipped name (default, paper_camera), a model folder or "
        "a .ckpt (default: default)",
    )
    p.add_argument("--epochs", type=int_in(1, 1000), default=8, help="training epochs (default 8)")
    p.add_argument(
        "--samples-per-epoch",
        type=int_at_least(1),
        default=200,
        help="random crops per epoch (default 200)",
    )
    p.add_argument(
        "--val-fraction",
        type=float_in(0.05, 0.95),
        default=1.0 / 3.0,
        help="share of each frame's 3x3 subfields held out for validation and threshold "
        "tuning (default 1/3: subfields 2, 5, 8)",
    )
    p.add_argument("--lr", type=positive_float, help="learning rate (default 3e-4)")
    p.add_argument("--freeze-encoder", action="store_true", help="train the decoder and head only")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="random weights with the base model's architecture and input (for comparison)",
    )
    p.add_argument(
        "--subfield-size",
        type=int_in(64, 8192),
        help="subfield side in px (default: a third of the frame side, at most 512)",
    )
    p.add_argument("--bias", type=Path, help="master bias FITS")
    p.add_argument("--dark", type=Path, help="master dark FITS (bias-subtracted)")
    p.add_argument("--flat", type=Path, help="master flat FITS")
    p.add_argument("--gain", type=positive_float, help="gain in e-/ADU (overrides GAIN)")
    p.add_argument("--seed", type=int_at_least(0), default=1234, help="training seed")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override of the training run, e.g. --set trainer.max_time=00:00:20:00",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard a previous run in --out and start again (default: resume it)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the fine-tuning path; print where the model went and its validation scores."""
    from atd_dl.errors import InputError
    from atd_dl.lit.finetune import FinetuneOptions, run_finetune

    if len(args.catalogs) != 1:
        raise InputError(None, "--catalogs: give one folder (one catalog per frame) or one file")
    masters = None
    if args.bias or args.dark or args.flat:
        from atd_dl.prep.calibration import CalibrationMasters

        masters = CalibrationMasters.from_files(args.bias, args.dark, args.flat)
    opts = FinetuneOptions(
        base=args.base,
        epochs=args.epochs,
        val_fraction=args.val_fraction,
        from_scratch=args.from_scratch,
        freeze_encoder=args.freeze_encoder,
        lr=args.lr,
        samples_per_epoch=args.samples_per_epoch,
        subfield_size=args.subfield_size,
        seed=args.seed,
        device=args.device,
        overrides=tuple(args.overrides),
        progress=not args.quiet,
    )
    prep = {"gain": args.gain} if args.gain else {}
    res = run_finetune(
        args.frames,
        args.catalogs[0],
        args.out,
        opts,
        masters=masters,
        prep_overrides=prep,
        overwrite=args.overwrite,
    )
    v = res.val
    print(
        f"finetune: model -> {res.out_dir} (threshold {res.threshold:.2f}; held-out F1 "
        f"{v['f1']:.4f}, precision {v['precision']:.4f}, recall {v['recall']:.4f}; "
        f"{res.cpu_seconds / 60:.1f} CPU-min)"
    )
    if res.base_val is not None:
        b = res.base_val
        print(
            f"finetune: base '{args.base}' on the same subfields: F1 {b['f1']:.4f}, "
            f"precision {b['precision']:.4f}, recall {b['recall']:.4f}"
        )
    return 0
