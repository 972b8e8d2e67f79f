"""Simulate a paper-like observing run and prepare it as a training dataset.

Usage::

    python data_prep/simulate_and_prepare.py --out data/sim_paper \
        [--preset paper] [--n-frames 20] [--n-test 12] [--seed 2026] [--size 1600]

Writes the simulated run to ``<out>/run`` (frames, catalogs, truth, calib masters) and the
dataset to ``<out>/dataset``. As in the paper, the first ``n_frames - n_test`` frames give
the training (subfields 1,3,4,6,7,9) and validation (2,5,8) sets and the last ``n_test``
frames, sky-isolated by the simulator, the test set. Both steps skip work already done,
so an interrupted run can simply be started again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="paper", choices=("sparse", "paper", "dense"))
    parser.add_argument("--n-frames", type=int, default=20)
    parser.add_argument("--n-test", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--size", type=int, default=1600)
    parser.add_argument("--subfield-size", type=int, default=512)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not 0 <= args.n_test < args.n_frames:
        parser.error("need 0 <= --n-test < --n-frames")

    from atd_dl.data.builder import PrepConfig, build_dataset
    from atd_dl.prep.calibration import CalibrationMasters
    from atd_dl.sim import frame_name, preset_config, simulate_run

    run = args.out / "run"
    cfg = preset_config(args.preset, size=args.size)
    sim = simulate_run(cfg, args.seed, run, args.n_frames, progress=not args.quiet)
    if sim.failed:
        for name, msg in sim.failed.items():
            print(f"simulation failed for {name}: {msg}", file=sys.stderr)
    test = [frame_name(args.seed, i) for i in range(args.n_frames - args.n_test, args.n_frames)]
    calib = run / "calib"
    masters = CalibrationMasters.from_files(
        calib / "master_bias.fits", calib / "master_dark.fits", calib / "master_flat.fits"
    )
    report = build_dataset(
        run / "frames",
        run / "catalogs",
        args.out / "dataset",
        masters=masters,
        test_frames=test,
        config=PrepConfig(subfield_size=args.subfield_size),
        progress=not args.quiet,
    )
    print(report.summary())
    return 0 if report.ok and not sim.failed else 1


if __name__ == "__main__":
    sys.exit(main())
