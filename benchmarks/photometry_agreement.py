"""Aperture photometry agreement with photutils on real frames.

For every FITS frame in ``../shared/data/real`` (the LDAC catalog skipped; every image
extension of a multi-extension file on its own), run the detector and re-measure the
catalog positions with photutils on the same calibrated, background-subtracted image
(:func:`atd_dl.evaluate.photometry.photutils_agreement`: ``CircularAperture`` of the
catalog's ``aper_rad``, exact overlap, minus a sigma-clipped annulus median,
``r_in = aper_rad + 2 FWHM``, ``r_out = r_in + 3 FWHM``). Isolated (no other detection
with ``snr >= 5`` within ``r_in``), unsaturated, ``flags == 0`` sources with
``snr > --min-snr``. Per frame: N, median flux ratio ours / photutils and its robust
scatter (1.4826 MAD), the same for the SNR, the ratio of the bare aperture sums (no local
background on either side), the number of detections with ``snr < 0`` (of those: a 3x3
box above the annulus median by > 3 sigma, and photutils SNR > 3), and ``LOW_SNR`` flags
inconsistent with the catalog ``snr``.

Run: ``.venv/bin/python benchmarks/photometry_agreement.py [--data DIR] [--out JSON]``
(JSON default ``docs/results/real_frames/photometry.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "docs" / "results" / "real_frames" / "photometry.json"


#: What the numbers showed (2026-12, written with the JSON)
NOTES = (
    "Bare aperture sums agree to < 0.1 % on every frame (fast weights vs exact overlap); "
    "flux ratios differ from 1 by the local background only. pix_m51_B (1.031, scatter "
    "0.065): its 17 sources lie on the galaxy, where our background (median of source-free "
    "pixels in cells of max(16, 8 FWHM) px, 3x3-cell median filter) is smoother than a "
    "3.5-6.5 FWHM annulus; on empty positions of that frame both are unbiased (median "
    "-0.10 / -0.09 aperture sigma) and the annulus scatters less (MAD 2.0 vs 2.7 sigma), on "
    "mro_test_frame ours scatters less (2.2 vs 2.6): a choice of background scale on "
    "nebulosity, not a bug. Negative-SNR detections are noise, cosmic-ray or nebula peaks "
    "whose aperture flux is <= 0 against either background (photutils SNR > 3 for 13 of "
    "1839 on the 2MASS tile, 4 of 388 on M51, none elsewhere). SNR ratios of 0.98 / 1.03 "
    "come from the background-error term's pixel count (cell vs annulus)."
)


def frame_files(data: Path) -> list[Path]:
    """FITS frames of ``data`` (the LDAC catalog left out)."""
    files = sorted(p for p in data.iterdir() if ".fits" in p.name)
    return [p for p in files if "ldac" not in p.name.lower()]


def measure_file(detector: Any, path: Path, min_snr: float = 20.0) -> list[dict[str, Any]]:
    """One row per frame / extension of ``path`` (see the module docstring)."""
    from atd_dl.detect.frame import PreparedMosaic
    from atd_dl.evaluate.photometry import photutils_agreement

    prepared = detector.prepare(path)
    parts = (
        [(f"{path.name}[{p.frame.hdu}]", p) for p in prepared.parts]
        if isinstance(prepared, PreparedMosaic)
        else [(path.name, prepared)]
    )
    rows = []
    for label, part in parts:
        t0 = time.perf_counter()
        res = detector.run(part)
        row = photutils_agreement(
            part,
            res.catalog,
            label=label,
            min_snr=min_snr,
            low_snr=detector.config.postprocess.low_snr,
        ).to_dict()
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the per-frame rows."""
    head = (
        "| frame | unit | N | flux ratio | scatter | SNR ratio | SNR scatter | bare aperture "
        "ratio | N snr<0 | snr<0 with 3x3 peak | snr<0, photutils SNR>3 | LOW_SNR inconsistent |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    body = "".join(
        f"| {r['frame']} | {r['unit']} | {r['n']} | {r['median_ratio']:.4f} | "
        f"{r['scatter']:.4f} | {r['median_snr_ratio']:.3f} | {r['snr_scatter']:.3f} | "
        f"{r['median_raw_ratio']:.4f} | {r['n_negative_snr']} | "
        f"{r['n_negative_snr_with_peak']} | {r['n_negative_snr_photutils_positive']} | "
        f"{r['n_low_snr_inconsistent']} |\n"
        for r in rows
    )
    return head + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--min-snr", type=float, default=20.0)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"no real frames in {args.data}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.ERROR)
    import warnings

    warnings.simplefilter("ignore")
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector

    detector = Detector(*load_detector(None), DetectConfig())
    rows: list[dict[str, Any]] = []
    for path in frame_files(args.data):
        rows.extend(measure_file(detector, path, args.min_snr))
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "description": (
            "ATD-DL aperture photometry vs photutils aperture_photometry (CircularAperture "
            "r = catalog aper_rad, exact overlap, minus a sigma-clipped CircularAnnulus median, "
            "r_in = aper_rad + 2 FWHM, r_out = r_in + 3 FWHM) at the catalog positions on the "
            "same calibrated background-subtracted image; isolated (no detection with snr >= 5 "
            "within r_in), "
            f"flags == 0 sources with snr > {args.min_snr:g}. Ratios ours / photutils, median "
            "and 1.4826 MAD; SNR of photutils with our error model; bare aperture ratio: both "
            "without local background; snr<0 with peak: 3x3 box sum above the annulus median by "
            "> 3 sigma; snr<0, photutils SNR>3: measured positive by photutils"
        ),
        "min_snr": args.min_snr,
        "notes": NOTES,
        "frames": rows,
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
