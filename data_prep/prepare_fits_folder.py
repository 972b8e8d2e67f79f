"""Prepare a training dataset from an observing folder laid out as::

    <root>/frames/*.fits          raw frames with a celestial WCS and GAIN
    <root>/catalogs/<frame>.ecsv  reference catalog per frame (or csv / fits / vot)
    <root>/calib/master_bias.fits, master_dark.fits, master_flat.fits   (optional)

Usage::

    python data_prep/prepare_fits_folder.py ROOT --out DATASET [--test-frames 'night2_*']
                                            [any other `atd-dl prep` option]

This is `atd-dl prep` with the paths filled in from the layout; see `atd-dl prep --help`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atd_dl.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=True)
    parser.add_argument("root", type=Path, help="folder with frames/, catalogs/ and calib/")
    args, rest = parser.parse_known_args(argv)
    root: Path = args.root
    cmd = ["prep", str(root / "frames"), "--catalogs", str(root / "catalogs")]
    for kind in ("bias", "dark", "flat"):
        master = root / "calib" / f"master_{kind}.fits"
        if master.exists() and f"--{kind}" not in rest:
            cmd += [f"--{kind}", str(master)]
    return cli_main(cmd + rest)


if __name__ == "__main__":
    sys.exit(main())
