"""Centroid and FWHM agreement with SExtractor (XWIN, matched filter) on real frames.

For every FITS frame in ``../shared/data/real`` (the LDAC catalog skipped; every image
extension of a multi-extension file on its own), run the detector and SExtractor on the
same calibrated pixels (the prepared frame's ``data``, overscan trimmed, bad pixels
masked), SExtractor with a Gaussian filter matched to the measured FWHM. Isolated bright
unsaturated stars: SExtractor SNR (FLUX_AUTO / FLUXERR_AUTO) > ``--min-snr``, FLAGS 0 and
FLAGS_WIN 0, our flags 0, no other source of either catalog within ``3 FWHM`` (our
detections with SNR < 10 not counted: on the crowded, nebulous 2MASS tile most of those are
noise or nebulosity peaks, and at 4 FWHM no star of that tile is left), at least ``3 FWHM``
from the edge, matched within 1 px. A second selection isolates against SExtractor's
catalog only (pairs that SExtractor merges and we split stay in: a deblending difference,
not a centroid one). Per frame: N, the total RMS
``sqrt(mean(dx² + dy²))``, the RMS after removing the mean offset, mean and median offset,
and our FWHM (catalog header) against SExtractor's median FWHM_IMAGE of its own bright
isolated stars (:func:`sextractor_fwhm`: not only the few matched ones).

Run: ``.venv/bin/python benchmarks/centroid_agreement.py [--data DIR] [--out JSON]``
(JSON default ``docs/results/real_frames/centroids.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "docs" / "results" / "real_frames" / "centroids.json"


@dataclass
class Agreement:
    """Centroid / FWHM agreement of one frame (or one extension of a mosaic)."""

    frame: str
    n: int  # isolated bright stars matched
    rms: float  # px, sqrt(mean(dx^2 + dy^2))
    rms_demeaned: float  # px, the same after removing the mean (dx, dy)
    mean_dx: float  # px, ours - SExtractor
    mean_dy: float
    median_offset: float  # px, median |(dx, dy)|
    fwhm_ours: float  # px, catalog header
    fwhm_sex: float  # px, SExtractor's median FWHM_IMAGE of its bright isolated stars
    n_ours: int
    n_sex: int
    seconds: float


def frame_parts(detector: Any, path: Path) -> list[tuple[str, Any]]:
    """``(label, PreparedFrame)`` of a file: one per image extension."""
    from atd_dl.detect.frame import PreparedMosaic

    prepared = detector.prepare(path)
    if isinstance(prepared, PreparedMosaic):
        return [(f"{path.name}[{p.frame.hdu}]", p) for p in prepared.parts]
    return [(path.name, prepared)]


def sextractor_table(prepared: Any, fwhm: float, threshold: float = 3.0) -> Any:
    """SExtractor's raw table on the prepared frame's calibrated pixels, matched filter of
    ``fwhm`` px; positions converted to 0-based pixels of the HDU (``x0``, ``y0``)."""
    from atd_dl.baselines.sextractor import SExtractorFinder

    frame = prepared.frame
    finder = SExtractorFinder(
        threshold=threshold,
        minarea=3,
        filter_fwhm=max(float(fwhm), 1.0),
        gain=prepared.gain,
        centroid="win",
    )
    bad = frame.mask | ~np.isfinite(frame.data)
    raw = finder.extract(np.asarray(frame.data, np.float32), mask=bad).raw
    raw["x0"] = np.asarray(raw["XWIN_IMAGE"], float) - 1.0 + frame.origin[0]
    raw["y0"] = np.asarray(raw["YWIN_IMAGE"], float) - 1.0 + frame.origin[1]
    raw["xi"] = np.asarray(raw["X_IMAGE"], float) - 1.0 + frame.origin[0]
    raw["yi"] = np.asarray(raw["Y_IMAGE"], float) - 1.0 + frame.origin[1]
    return raw


def auto_snr(raw: Any) -> np.ndarray:
    """SExtractor's SNR of each row: ``FLUX_AUTO / FLUXERR_AUTO`` (a zero error counts as
    1e-30)."""
    return np.asarray(raw["FLUX_AUTO"], float) / np.maximum(
        np.asarray(raw["FLUXERR_AUTO"], float), 1e-30
    )


def isolated_pairs(
    cat: Any,
    raw: Any,
    shape: tuple[int, int],
    origin: tuple[int, int],
    fwhm: float,
    *,
    min_snr: float = 50.0,
    isolation: float = 3.0,
    match_radius: float = 1.0,
    neighbour_snr: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i_ours, j_sex)`` of matched isolated bright unsaturated stars; our
    detections below ``neighbour_snr`` do not count as neighbours (noise peaks)."""
    xo = np.asarray(cat["x"], float)
    yo = np.asarray(cat["y"], float)
    real = np.asarray(cat["snr"], float) >= neighbour_snr
    xs = np.asarray(raw["x0"], float)
    ys = np.asarray(raw["y0"], float)
    if len(xo) == 0 or len(xs) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    snr_s = auto_snr(raw)
    r_iso = isolation * max(float(fwhm), 1.0)
    ny, nx = shape
    x0, y0 = origin
    edge = r_iso
    inside = (
        (xs - x0 >= edge)
        & (xs - x0 <= nx - 1 - edge)
        & (ys - y0 >= edge)
        & (ys - y0 <= ny - 1 - edge)
    )
    good_s = (
        (snr_s > min_snr)
        & (np.asarray(raw["FLAGS"]) == 0)
        & (np.asarray(raw["FLAGS_WIN"]) == 0)
        & np.isfinite(xs)
        & inside
    )
    tree_o = cKDTree(np.column_stack([xo, yo]))
    tree_n = cKDTree(np.column_stack([xo[real], yo[real]]))
    tree_s = cKDTree(np.column_stack([np.asarray(raw["xi"], float), np.asarray(raw["yi"], float)]))
    pairs_i, pairs_j = [], []
    flags_o = np.asarray(cat["flags"]).astype(np.int64)
    for j in np.flatnonzero(good_s):
        d, i = tree_o.query([xs[j], ys[j]])
        if not np.isfinite(d) or d > match_radius or flags_o[i] != 0:
            continue
        # isolation: exactly one source of each catalog within r_iso
        if len(tree_n.query_ball_point([xs[j], ys[j]], r_iso)) > 1:
            continue
        if len(tree_s.query_ball_point([xs[j], ys[j]], r_iso)) != 1:
            continue
        pairs_i.append(int(i))
        pairs_j.append(int(j))
    return np.asarray(pairs_i, int), np.asarray(pairs_j, int)


def sextractor_fwhm(
    raw: Any, fwhm: float, *, min_snr: float = 50.0, isolation: float = 3.0
) -> float:
    """The frame's PSF width by SExtractor (px): the stellar locus
    (:func:`~atd_dl.prep.psf_width.stellar_locus`, the narrowest well-populated group) of
    FWHM_IMAGE over its bright (SNR > ``min_snr``), unflagged sources without another
    SExtractor source within ``isolation`` FWHM, whatever our catalog holds. Galaxies and
    saturated stars are among them, so a plain median would follow them. NaN without any."""
    from atd_dl.prep.psf_width import stellar_locus

    if len(raw) == 0:
        return float("nan")
    snr = auto_snr(raw)
    xy = np.column_stack([np.asarray(raw["xi"], float), np.asarray(raw["yi"], float)])
    near = cKDTree(xy).query_ball_point(xy, isolation * max(float(fwhm), 1.0))
    alone = np.array([len(n) == 1 for n in near])
    good = (snr > min_snr) & (np.asarray(raw["FLAGS"]) == 0) & alone
    widths = np.asarray(raw["FWHM_IMAGE"], float)[good]
    widths = widths[np.isfinite(widths) & (widths > 0)]
    return stellar_locus(widths) if len(widths) else float("nan")


def agreement(label: str, cat: Any, raw: Any, prepared: Any, **kw: Any) -> Agreement:
    """Per-frame statistics of the isolated bright stars (see the module docstring)."""
    fwhm = float(cat.meta.get("fwhm_px", cat.meta.get("FWHM_PX", np.nan)))
    i, j = isolated_pairs(cat, raw, prepared.frame.shape, prepared.frame.origin, fwhm, **kw)
    dx = np.asarray(cat["x"], float)[i] - np.asarray(raw["x0"], float)[j]
    dy = np.asarray(cat["y"], float)[i] - np.asarray(raw["y0"], float)[j]
    n = len(i)
    nan = float("nan")
    return Agreement(
        label,
        n,
        float(np.sqrt(np.mean(dx**2 + dy**2))) if n else nan,
        float(np.sqrt(np.mean((dx - dx.mean()) ** 2 + (dy - dy.mean()) ** 2))) if n else nan,
        float(dx.mean()) if n else nan,
        float(dy.mean()) if n else nan,
        float(np.median(np.hypot(dx, dy))) if n else nan,
        fwhm,
        sextractor_fwhm(raw, fwhm),
        len(cat),
        len(raw),
        0.0,
    )


def frame_files(data: Path) -> list[Path]:
    """FITS frames of ``data`` (the LDAC catalog left out)."""
    files = sorted(p for p in data.iterdir() if ".fits" in p.name)
    return [p for p in files if "ldac" not in p.name.lower()]


#: Star selections reported: keyword arguments of :func:`isolated_pairs`
SELECTIONS: dict[str, dict[str, float]] = {
    "isolated": {},
    "sextractor_isolated": {"neighbour_snr": float("inf")},
}


def measure_frames(
    paths: list[Path],
    detector: Any = None,
    selections: dict[str, dict[str, float]] | None = None,
    **kw: Any,
) -> dict[str, list[Agreement]]:
    """:class:`Agreement` of every frame / extension in ``paths``, per selection
    (default :data:`SELECTIONS`; ``kw`` is added to each)."""
    if detector is None:
        from atd_dl.detect.inference import load_detector
        from atd_dl.detect.pipeline import DetectConfig, Detector

        detector = Detector(*load_detector(None), DetectConfig())
    selections = SELECTIONS if selections is None else selections
    out: dict[str, list[Agreement]] = {name: [] for name in selections}
    for path in paths:
        for label, prepared in frame_parts(detector, path):
            t0 = time.perf_counter()
            cat = detector.run(prepared).catalog
            raw = sextractor_table(prepared, float(cat.meta.get("fwhm_px", 2.0)))
            seconds = time.perf_counter() - t0
            for name, sel in selections.items():
                res = agreement(label, cat, raw, prepared, **{**sel, **kw})
                res.seconds = seconds
                out[name].append(res)
    return out


def print_table(rows: list[Agreement]) -> None:
    """The per-frame table on stdout."""
    print(
        f"{'frame':34s} {'N':>4s} {'RMS':>6s} {'RMS-dm':>6s} {'<dx>':>7s} {'<dy>':>7s} "
        f"{'med|d|':>6s} {'FWHM':>5s} {'FWHMsx':>6s}"
    )
    for r in rows:
        print(
            f"{r.frame:34s} {r.n:4d} {r.rms:6.3f} {r.rms_demeaned:6.3f} {r.mean_dx:+7.3f} "
            f"{r.mean_dy:+7.3f} {r.median_offset:6.3f} {r.fwhm_ours:5.2f} {r.fwhm_sex:6.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--min-snr", type=float, default=50.0)
    ap.add_argument("--frames", nargs="*", help="file names to restrict to")
    ap.add_argument(
        "--window-scale", type=float, help="windowed-centroid window_scale (default: library's)"
    )
    ap.add_argument("--min-window-fwhm", type=float, help="windowed-centroid min_window_fwhm (px)")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    if args.window_scale is not None or args.min_window_fwhm is not None:
        # reproduce another window rule, e.g. the fixed 1.5 FWHM window of earlier versions:
        # --window-scale 1.5 --min-window-fwhm 0
        import functools

        from atd_dl.detect import centroid
        from atd_dl.detect import measure as measure_stage

        kw = {}
        if args.window_scale is not None:
            kw["window_scale"] = args.window_scale
        if args.min_window_fwhm is not None:
            kw["min_window_fwhm"] = args.min_window_fwhm
        measure_stage.windowed_centroids = functools.partial(centroid.windowed_centroids, **kw)  # type: ignore[assignment]
    paths = frame_files(args.data)
    if args.frames:
        paths = [p for p in paths if p.name in args.frames]
    results = measure_frames(paths, min_snr=args.min_snr)
    for name, rows in results.items():
        print(f"\n{name}: {SELECTIONS[name] or 'default selection'}")
        print_table(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "description": (
                "ATD-DL centroids vs SExtractor XWIN (matched filter) on isolated bright "
                f"unsaturated stars (SExtractor SNR > {args.min_snr:g}, flags 0 in both, "
                "no neighbour within 3 FWHM, matched within 1 px); px, 0-based, "
                "ours - SExtractor. 'isolated': neighbours from both catalogs (ours with "
                "SNR >= 10); 'sextractor_isolated': from SExtractor's only"
            ),
            "window": {
                "window_scale": args.window_scale,
                "min_window_fwhm": args.min_window_fwhm,
            },
            "selections": {name: [asdict(r) for r in rows] for name, rows in results.items()},
        }
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
