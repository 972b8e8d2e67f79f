"""Time the field simulator: seconds per frame for each preset (and star counts).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_simulate.py [--size 1600] [--frames 3] [--write]

``--write`` also times writing the frame, catalog and truth files to a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from atd_dl.sim import preset_config, simulate_field, write_field


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1600)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--presets", nargs="+", default=["sparse", "paper", "dense"])
    parser.add_argument("--write", action="store_true", help="include writing the files")
    args = parser.parse_args()

    print(f"frame {args.size}x{args.size}, {args.frames} frames per preset")
    print(f"{'preset':8s} {'s/frame':>8s} {'min':>6s} {'stars':>8s} {'SNR>=2':>8s} {'SNR>=5':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            cfg = preset_config(preset, size=args.size)
            times, n_all, n2, n5 = [], [], [], []
            for index in range(args.frames):
                t0 = time.perf_counter()
                sim = simulate_field(cfg, args.seed, index)
                if args.write:
                    write_field(sim, tmp)
                times.append(time.perf_counter() - t0)
                st = sim.truth[sim.truth["kind"] == "star"]
                n_all.append(len(st))
                n2.append(int(np.sum(st["snr_true"] >= 2)))
                n5.append(int(np.sum(st["snr_true"] >= 5)))
            print(
                f"{preset:8s} {np.mean(times):8.2f} {np.min(times):6.2f} {np.mean(n_all):8.0f} "
                f"{np.mean(n2):8.0f} {np.mean(n5):8.0f}"
            )


if __name__ == "__main__":
    main()
