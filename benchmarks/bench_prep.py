"""Time the preprocessing chain per frame: read + background + stretch + partition.

Usage::

    python benchmarks/bench_prep.py                 # synthetic 1600x1600 uint16 frame
    python benchmarks/bench_prep.py --frame F.fits  # a real frame
    python benchmarks/bench_prep.py --size 4096 --repeat 3

Prints the median seconds per step over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from atd_dl.io.fits_io import read_frame, write_raw_uint16
from atd_dl.prep.enhance import estimate_background, zscale_stretch
from atd_dl.prep.partition import Tiler, subfield_grid


def synthetic_frame(path: Path, size: int, seed: int = 0) -> Path:
    """A 16-bit star field with a sky gradient, noise and a few saturated stars."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    sky = 800.0 + 200.0 * xx / size + 100.0 * ((yy - size / 2) / size) ** 2
    img = sky + rng.normal(0, 8, sky.shape).astype(np.float32)
    n = size * size // 500
    xs, ys = rng.uniform(0, size, n), rng.uniform(0, size, n)
    flux = 10 ** rng.uniform(2.0, 6.0, n)
    iy, ix = ys.astype(int), xs.astype(int)
    np.add.at(img, (iy, ix), flux.astype(np.float32))  # point sources, then blurred
    from scipy.ndimage import gaussian_filter

    img = gaussian_filter(img - sky, 1.2) + sky
    return write_raw_uint16(path, np.clip(img, 0, 65535))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frame", type=Path, help="FITS frame to time (default: synthetic)")
    parser.add_argument(
        "--size", type=int, default=1600, help="synthetic frame size (default 1600)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.frame or synthetic_frame(Path(tmp) / "bench.fits", args.size)
        steps: dict[str, list[float]] = {
            "read_frame": [],
            "background": [],
            "zscale": [],
            "partition": [],
            "total": [],
        }
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            frame = read_frame(path)
            t1 = time.perf_counter()
            bkg, _ = estimate_background(frame.data, frame.mask, 50, 3)
            t2 = time.perf_counter()
            img8, _, _ = zscale_stretch(frame.data - bkg, frame.mask)
            t3 = time.perf_counter()
            try:
                subs = [img8[s.slices] for s in subfield_grid(img8.shape)]
            except ValueError:
                subs = []
            tiles = Tiler(img8.shape, 512, 64).split(img8)
            t4 = time.perf_counter()
            for key, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                steps[key].append(dt)

    print(
        f"frame: {path if args.frame else f'synthetic {args.size}x{args.size} uint16'}  shape {frame.shape}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(f"subfields: {len(subs)}, inference tiles: {len(tiles)}, repeats: {args.repeat}")
    print(f"{'step':<12}{'median s':>10}{'min s':>10}")
    for key, values in steps.items():
        print(f"{key:<12}{statistics.median(values):>10.3f}{min(values):>10.3f}")


if __name__ == "__main__":
    main()
