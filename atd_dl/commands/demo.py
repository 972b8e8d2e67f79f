"""``atd-dl demo``: the main job end to end on a freshly simulated frame.

simulate (paper camera, one 1600² frame) → prepare a labelled dataset from it →
detect with the shipped default model → evaluate the catalog against the truth,
then print where every output is. Everything runs offline on the CPU in a few minutes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from atd_dl.commands._validate import int_at_least, int_in, writable_out_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser(
        "demo",
        help="simulate a frame, prepare it, detect with the shipped model and evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=writable_out_dir, default="demo_output", help="output folder")
    p.add_argument(
        "--preset",
        choices=["sparse", "paper", "dense"],
        default="paper",
        help="simulated field density (default paper)",
    )
    p.add_argument(
        "--size",
        type=int_in(512, 20000),
        default=1600,
        help="frame size in px, 512-20000 (default 1600)",
    )
    p.add_argument("--seed", type=int_at_least(0), default=2026, help="simulation seed")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo chain; returns a non-zero code when a step fails."""
    from atd_dl.cli import main

    out: Path = args.out
    sim_dir, data_dir, det_dir, eval_dir = (
        out / "simulated",
        out / "dataset",
        out / "detections",
        out / "evaluation",
    )
    name = f"sim_s{args.seed}_0000"
    frame = sim_dir / "frames" / f"{name}.fits"
    calib = sim_dir / "calib"

    steps: list[tuple[str, list[str]]] = [
        (
            "simulate",
            [
                "simulate",
                "--out",
                str(sim_dir),
                "--n-frames",
                "1",
                "--preset",
                args.preset,
                "--seed",
                str(args.seed),
                "--size",
                str(args.size),
            ],
        ),
        (
            "prepare",
            [
                "prep",
                str(frame),
                "--catalogs",
                str(sim_dir / "catalogs"),
                "--out",
                str(data_dir),
                "--bias",
                str(calib / "master_bias.fits"),
                "--dark",
                str(calib / "master_dark.fits"),
                "--flat",
                str(calib / "master_flat.fits"),
            ],
        ),
        (
            "detect",
            [
                "detect",
                str(frame),
                "--out",
                str(det_dir),
                "--bias",
                str(calib / "master_bias.fits"),
                "--dark",
                str(calib / "master_dark.fits"),
                "--flat",
                str(calib / "master_flat.fits"),
                "--regions",
                "--overlay",
                *(["--model", str(args.model)] if args.model else []),
            ],
        ),
        (
            "evaluate",
            [
                "evaluate",
                str(det_dir / f"{name}.cat.ecsv"),
                "--reference",
                str(sim_dir / "truth" / f"{name}.ecsv"),
                "--frame",
                str(frame),
                "--out",
                str(eval_dir),
            ],
        ),
    ]
    for label, argv in steps:
        print(f"\n=== {label}: atd-dl {' '.join(argv)}", flush=True)
        code = main(argv)
        if code != 0:
            print(f"demo: step '{label}' failed with exit code {code}")
            return code

    print("\nATD-DL demo finished. Outputs:")
    rows = [
        ("raw frame", frame),
        ("truth table", sim_dir / "truth" / f"{name}.ecsv"),
        ("prepared dataset", data_dir),
        ("  PNG patches", data_dir / "images"),
        ("  label masks", data_dir / "masks"),
        ("  label overlay", data_dir / "overlays" / f"{name}.png"),
        ("  Table-1 metrics", data_dir / "table1.csv"),
        ("catalog (ECSV)", det_dir / f"{name}.cat.ecsv"),
        ("catalog (FITS)", det_dir / f"{name}.cat.fits"),
        ("DS9 regions", det_dir / f"{name}.reg"),
        ("detection overlay", det_dir / f"{name}.overlay.png"),
        ("metrics vs truth", eval_dir / "metrics.json"),
    ]
    for what, path in rows:
        mark = "" if path.exists() else "  (missing)"
        print(f"  {what:<20} {path}{mark}")
    return 0
