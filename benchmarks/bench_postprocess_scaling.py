"""Post-processing cost versus source count: CPU seconds per 10,000 sources.

Usage::

    python benchmarks/bench_postprocess_scaling.py [--quick] [--sizes 720 1600 2800]
                                                   [--scenario dense wide] [--repeat 3]
                                                   [--oracle-snr 6] [--json out.json]

Times :func:`atd_dl.detect.postprocess.segment_sources` (CPU seconds from
``time.process_time``, best of ``--repeat``; robust to a loaded machine) on simulated frames
of growing size with an oracle probability map (discs at the true positions of stars with
SNR >= ``--oracle-snr``, as in ``bench_detect.py``), and separately the CPU time spent in
the windowed-centroid refinement. Scenarios:

``dense``
    ``preset_config("dense", size=...)`` (FWHM ~1.3-1.8 px); the default sizes give
    ~2k, ~10k and ~30k sources.
``wide``
    the same field with a wide PSF (FWHM 6-7.5 px, so the centroid window reaches its cap)
    and large saturated discs painted into the frame and the map (huge components), the
    case that used to blow up.

Cost per source should not grow with the number of sources: the summary prints the
per-10k cost of each frame and the log-log slope of CPU time against source count
(1 = linear). Target: <= 0.5 CPU s per 10,000 sources. ``--quick`` uses small frames
(a few seconds in all). Importing the module has no side effects.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SIZES = (720, 1600, 2800)  # ~2k, ~10k, ~30k sources in the dense preset
QUICK_SIZES = (256, 400, 560)
TARGET_CPU_PER_10K = 0.5


def oracle_frame(
    size: int,
    *,
    scenario: str = "dense",
    seed: int = 3,
    oracle_snr: float = 6.0,
    n_blobs: int = 12,
) -> dict[str, Any]:
    """A simulated frame ready for ``segment_sources``: ``prob, image_e, rms_e, saturated,
    mask`` plus ``n_oracle`` (stars painted into the map)."""
    from atd_dl.prep.enhance import enhance_frame
    from atd_dl.sim import preset_config, simulate_field

    cfg = preset_config("dense", size=size)
    disc = 1.6
    if scenario == "wide":
        cfg = dataclasses.replace(cfg, fwhm_px=6.0, fwhm_corner_px=7.5)
        disc = 2.5
    elif scenario != "dense":
        raise ValueError(f"unknown scenario {scenario!r}; use 'dense' or 'wide'")
    sim = simulate_field(cfg, seed=seed)
    raw = sim.image.astype(np.float32)
    sat = raw >= sim.config.saturate_adu
    enh = enhance_frame((raw - sim.bias - sim.dark) / sim.flat, sat)
    g = np.float32(sim.config.gain_e_per_adu)
    img, rms = enh.subtracted * g, enh.background_rms * g
    stars = sim.truth[(sim.truth["kind"] == "star") & (sim.truth["snr_true"] >= oracle_snr)]
    sx, sy = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    prob = np.zeros((size, size), np.float32)
    r = int(np.ceil(disc))
    xi, yi = np.rint(sx).astype(int), np.rint(sy).astype(int)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            px, py = xi + dx, yi + dy
            ok = (px >= 0) & (px < size) & (py >= 0) & (py < size)
            ok &= (px - sx) ** 2 + (py - sy) ** 2 <= disc**2
            prob[py[ok], px[ok]] = 1.0
    if scenario == "wide" and n_blobs > 0:  # large saturated regions: huge components
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size]
        level = np.float32(np.nanmax(img))
        for _ in range(n_blobs):
            bx, by = rng.uniform(0, size, 2)
            rad = rng.uniform(0.02, 0.05) * size
            d2 = (xx - bx) ** 2 + (yy - by) ** 2
            img = np.where(d2 <= rad**2, level, img + level * np.exp(-0.5 * d2 / rad**2))
            sat |= d2 <= rad**2
            prob[d2 <= (1.2 * rad) ** 2] = 1.0
        img = img.astype(np.float32)
    return {
        "prob": prob,
        "image_e": img,
        "rms_e": rms,
        "saturated": sat,
        "mask": ~np.isfinite(img),
        "n_oracle": len(stars),
    }


@contextlib.contextmanager
def _centroid_clock() -> Iterator[list[float]]:
    """Accumulate the CPU seconds spent in ``windowed_centroids`` as called by
    ``segment_sources`` (the module attribute is wrapped for the duration only)."""
    from atd_dl.detect import measure

    inner = measure.windowed_centroids
    spent = [0.0]

    def timed(*args: Any, **kwargs: Any) -> Any:
        c0 = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - c0

    measure.windowed_centroids = timed  # type: ignore[assignment]
    try:
        yield spent
    finally:
        measure.windowed_centroids = inner  # type: ignore[assignment]


def time_postprocess(frame: dict[str, Any], repeat: int = 3) -> dict[str, Any]:
    """Best-of-``repeat`` CPU seconds of ``segment_sources`` on ``frame`` (after a warm-up
    run) and the CPU seconds of its windowed-centroid step in that run."""
    from atd_dl.detect.postprocess import segment_sources

    def run() -> Any:
        return segment_sources(
            frame["prob"],
            0.5,
            image_e=frame["image_e"],
            mask=frame["mask"],
            background_rms_e=frame["rms_e"],
            saturated=frame["saturated"],
        )

    ex = run()
    best = (np.inf, np.inf)
    for _ in range(max(1, repeat)):
        with _centroid_clock() as spent:
            c0 = time.process_time()
            ex = run()
            cpu = time.process_time() - c0
        best = min(best, (cpu, spent[0]))
    n = len(ex.catalog)
    per10k = 1e4 / max(n, 1)
    return {
        "n_sources": n,
        "fwhm_px": round(float(ex.fwhm), 2),
        "cpu_s": round(best[0], 4),
        "cpu_s_per_10k": round(best[0] * per10k, 4),
        "centroid_cpu_s": round(best[1], 4),
        "centroid_cpu_s_per_10k": round(best[1] * per10k, 4),
    }


def loglog_slope(n: list[int], cpu: list[float]) -> float:
    """Least-squares slope of ``log cpu`` against ``log n`` (1 = linear); NaN if < 2 frames."""
    ok = [(a, b) for a, b in zip(n, cpu, strict=True) if a > 0 and b > 0]
    if len(ok) < 2:
        return float("nan")
    x, y = np.log([a for a, _ in ok]), np.log([b for _, b in ok])
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="frame sizes (px)")
    ap.add_argument("--quick", action="store_true", help=f"small frames {QUICK_SIZES}, 1 run")
    ap.add_argument("--scenario", nargs="+", default=["dense", "wide"], choices=["dense", "wide"])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per frame (best taken)")
    ap.add_argument("--oracle-snr", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeat = 1 if args.quick else args.repeat
    results: dict[str, list[dict[str, Any]]] = {}
    print(
        f"{'scenario':8s} {'size':>5s} {'sources':>8s} {'fwhm':>5s} {'cpu_s':>8s} "
        f"{'s/10k':>7s} {'centroid_s':>10s} {'cen s/10k':>9s}"
    )
    for scen in args.scenario:
        rows = []
        for size in sizes:
            frame = oracle_frame(size, scenario=scen, seed=args.seed, oracle_snr=args.oracle_snr)
            row = {"size": size, **time_postprocess(frame, repeat)}
            rows.append(row)
            print(
                f"{scen:8s} {size:5d} {row['n_sources']:8d} {row['fwhm_px']:5.2f} "
                f"{row['cpu_s']:8.3f} {row['cpu_s_per_10k']:7.3f} "
                f"{row['centroid_cpu_s']:10.3f} {row['centroid_cpu_s_per_10k']:9.3f}",
                flush=True,
            )
        results[scen] = rows
    print()
    for scen, rows in results.items():
        n = [r["n_sources"] for r in rows]
        slope = loglog_slope(n, [r["cpu_s"] for r in rows])
        worst = max(r["cpu_s_per_10k"] for r in rows)
        verdict = "ok" if worst <= TARGET_CPU_PER_10K else "over target"
        print(
            f"{scen}: log-log slope of CPU s vs sources {slope:.2f} (1 = linear); "
            f"worst {worst:.3f} CPU s per 10k sources (target <= {TARGET_CPU_PER_10K}): {verdict}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
