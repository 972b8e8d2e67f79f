"""``atd-dl tune-baselines``: pick each classical baseline's best parameters on validation frames.

The benchmark compares the model with baselines at their best: this verb grid-searches
each baseline's threshold and its main shape parameter (SExtractor/sep detection filter,
DAOFind FWHM, 2MASS n1, psphot smoothing) on validation frames with truth tables, by
one-to-one F1 (3 px, G = SNR ≥ 2), and prints the ``--baseline-param`` options to pass to
``atd-dl benchmark``. Validation frames must be sky-isolated from the test frames.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from atd_dl.commands._validate import (
    check_sextractor_env,
    int_at_least,
    nonneg_float,
    uses_sextractor,
    writable_out_dir,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tune-baselines`` sub-command."""
    p = subparsers.add_parser(
        "tune-baselines",
        help="grid-search baseline parameters on validation frames",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "val_set", type=Path, help="validation folder (atd-dl simulate layout: frames/, truth/)"
    )
    p.add_argument("--baselines", default="sextractor,sep,daofind", help="comma-separated names")
    p.add_argument(
        "--limit", type=int_at_least(1), default=2, help="use the first N frames (default 2)"
    )
    p.add_argument(
        "--sweep", choices=["dense", "paper", "both"], default="both", help="thresholds tried"
    )
    p.add_argument("--snr-min", type=nonneg_float, default=2.0, help="SNR defining G (default 2)")
    p.add_argument(
        "--out", type=writable_out_dir, default=None, help="write tuned.json (+ grid tables) here"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Tune every requested baseline; prints the winning parameters."""
    from atd_dl.baselines.tuning import DEFAULT_GRIDS, tune_baseline
    from atd_dl.evaluate.benchmark import frame_loader
    from atd_dl.evaluate.references import load_test_set, read_table
    from atd_dl.io.atomic import atomic_output, atomic_write_text

    if uses_sextractor(args.baselines):
        check_sextractor_env()
    test_frames = load_test_set(args.val_set, limit=args.limit)
    load = frame_loader(args.val_set, reference="truth")
    frames, refs = [], []
    for tf in test_frames:
        _, frame, _ = load(tf)
        frames.append(frame)
        truth = read_table(tf.truth)
        refs.append(truth[truth["kind"] == "star"] if "kind" in truth.colnames else truth)

    tuned: dict[str, dict[str, object]] = {}
    flags: list[str] = []
    for name in [b.strip() for b in args.baselines.split(",") if b.strip()]:
        res = tune_baseline(name, frames, refs, thresholds=args.sweep, min_snr=args.snr_min)
        tuned[name] = {"params": res.params, "best": res.best}
        best = res.best
        shown = {k: res.params[k] for k in ["threshold", *DEFAULT_GRIDS.get(name, {})]}
        print(
            f"{name:<11} F1 {best['f1']:.4f} (P {best['precision']:.4f}, R {best['recall']:.4f}) "
            f"with {shown}"
        )
        flags += [
            f"--baseline-param {name}.{k}={v}" for k, v in res.params.items() if k != "threshold"
        ]
        if args.out is not None:
            with atomic_output(args.out / f"tune_{name}.ecsv") as tmp:
                res.table.write(tmp, format="ascii.ecsv")
    if args.out is not None:
        atomic_write_text(args.out / "tuned.json", json.dumps(tuned, indent=2, default=str))
    print("benchmark options: " + " ".join(flags))
    return 0
