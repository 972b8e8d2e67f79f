"""``atd-dl classify-binaries``: classify stamps as single or visual binary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atd_dl.commands._validate import (
    DEVICE_HELP,
    device_choice,
    int_at_least,
    out_file_problem,
    probability,
    writable_out_dir,
    writable_out_file,
)
from atd_dl.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``classify-binaries`` sub-command."""
    p = subparsers.add_parser(
        "classify-binaries",
        help="classify stamps as single or visual binary",
        description=(
            "Run the visual-binary classifier on a stamp folder: a file,label CSV, a folder "
            "with labels.csv, a folder of .npy/.fits/.png stamps, or a stamp set from "
            "`atd-dl binary-stamps`. Writes stamp,label,p_binary,binary per stamp (stamp = file name, or the row index of a stamp set); with "
            "--report and known labels also the classification report and confusion matrix."
        ),
    )
    p.add_argument("stamps", type=Path, help="stamp folder or CSV (columns file[,label])")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: shipped)")
    p.add_argument(
        "--out",
        type=writable_out_file,
        default=None,
        help="output CSV (default <stamps>_binaries.csv)",
    )
    p.add_argument(
        "--report",
        type=writable_out_dir,
        default=None,
        help="folder for report.md/json + confusion.png",
    )
    p.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="p_binary cut in (0, 1) (default: model's)",
    )
    p.add_argument(
        "--split",
        default=None,
        help="only stamps of this split (stamp sets with a split column: train/val/test)",
    )
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=256, help="stamps per batch (default 256)"
    )
    p.add_argument(
        "--device",
        type=device_choice,
        default="auto",
        help=f"torch device: {DEVICE_HELP} (default auto: cuda if present, else cpu)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Classify; exit code 1 when some stamp files could not be read (others are still written)."""
    import csv

    import numpy as np

    from atd_dl.binaries.classify import predict_binary_proba
    from atd_dl.binaries.model import load_binary_model
    from atd_dl.binaries.report import format_report, write_classification_report
    from atd_dl.binaries.stamps import StampGeometry, read_stamps
    from atd_dl.detect.inference import resolve_device
    from atd_dl.io.atomic import atomic_output

    src = args.stamps
    out = args.out or src.with_name(f"{src.stem if src.is_file() else src.name}_binaries.csv")
    problem = out_file_problem(out)
    if problem:
        raise InputError(None, f"--out {problem}")
    device = str(resolve_device(args.device))
    net, meta = load_binary_model(args.model, device=device)
    geo = StampGeometry.from_dict(meta.get("input", {}))
    stamps, failures = read_stamps(args.stamps, geo)
    if stamps.geometry != geo:
        raise InputError(
            args.stamps, f"stamp geometry {stamps.geometry} differs from the model's {geo}"
        )
    if args.split is not None:
        if "split" not in stamps.table:
            raise InputError(args.stamps, "no split column to select from")
        stamps = stamps.subset(np.flatnonzero(stamps.table["split"] == args.split))
    if len(stamps) == 0:
        raise InputError(args.stamps, "no readable stamps")
    thr = float(meta.get("threshold", 0.5) if args.threshold is None else args.threshold)
    p = predict_binary_proba(net, stamps.images, batch_size=args.batch_size, device=device)
    # file names (CSV / folders) or row numbers of a stamp set (stamps.csv "index")
    names = stamps.table.get("file", stamps.table.get("index", np.arange(len(stamps))))
    with atomic_output(out) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["stamp", "label", "p_binary", "binary"])
            for name, lab, pb in zip(names, stamps.labels, p):
                w.writerow([name, "" if lab < 0 else int(lab), f"{pb:.4f}", int(pb >= thr)])
    n_bin = int((p >= thr).sum())
    print(f"classify-binaries: {len(p)} stamps, {n_bin} binary (p >= {thr:.2f}) -> {out}")
    if args.report is not None:
        if (stamps.labels >= 0).sum() == 0:
            print("classify-binaries: no labels, no report", file=sys.stderr)
        else:
            rep = write_classification_report(
                args.report, stamps.labels, p, threshold=thr, table=stamps.table
            )
            print(format_report(rep), end="")
            print(f"report: {args.report / 'report.md'}, {args.report / 'confusion.png'}")
    for f in failures:
        print(f"  failed {f}", file=sys.stderr)
    return 1 if failures else 0
