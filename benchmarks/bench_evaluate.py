"""Timing of the evaluation hot paths: matching and per-frame scoring on large catalogs.

python benchmarks/bench_evaluate.py [--n 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from atd_dl.evaluate.matching import match_points
from atd_dl.evaluate.metrics import evaluate_frame


def _field(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    side = np.sqrt(n / 0.01)  # one source per 100 px^2, a dense field
    ref = rng.uniform(0, side, (n, 2))
    det = np.vstack(
        [
            ref[: int(0.7 * n)] + rng.normal(0, 0.4, (int(0.7 * n), 2)),
            rng.uniform(0, side, (n // 10, 2)),
        ]
    )
    snr = 10 ** rng.uniform(0, 2, n)
    return det, ref, snr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="reference sources")
    args = ap.parse_args()
    det, ref, snr = _field(args.n)
    for strict in (True, False):
        t = time.perf_counter()
        r = match_points(det, ref, 3.0, one_to_one=strict)
        dt = time.perf_counter() - t
        print(
            f"match_points one_to_one={strict}: {len(det)} x {len(ref)} in {dt * 1e3:.1f} ms (tp={r.tp})"
        )
    side = int(np.ceil(ref.max()))
    t = time.perf_counter()
    evaluate_frame(det, ref, snr, shape=(side, side))
    print(f"evaluate_frame (both rules + astrometry): {(time.perf_counter() - t) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
