"""Centroid offsets of ATD-DL against the MRO pipeline's SExtractor catalog (FITS-LDAC).

``../shared/data/real/mro_test_ldac.fits`` is the observatory pipeline's catalog of
``mro_test_frame.fits``; its ``ALPHA_J2000``/``DELTA_J2000`` are all 0 (the frame has no
sky WCS), so it serves as a pixel reference: ``XWIN_IMAGE``/``YWIN_IMAGE`` (1-based, read
by :func:`atd_dl.evaluate.references.references_from_truth`). Its pixel grid is shifted
against the shared frame (the pipeline measured a differently trimmed/registered copy),
so the translation is found first (peak of all pairwise offsets, refined by the median of
pairs within ``--radius``), then pairs are matched one-to-one within ``--radius`` after the
shift. Reported for our ``snr > --min-snr`` with ``flags == 0`` in both catalogs: the
mean offset (the translation), the median offset and the RMS after removing the mean;
arcsec only when the frame has a sky WCS (this one has none).

Run: ``.venv/bin/python benchmarks/reference_offsets.py [--out JSON]``
(default ``docs/results/real_frames/reference_offsets.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "docs" / "results" / "real_frames" / "reference_offsets.json"


def find_shift(det: np.ndarray, ref: np.ndarray, radius: float, span: float = 100.0) -> np.ndarray:
    """Translation ``det - ref`` (px): the peak of the 1-px histogram of all pairwise
    offsets within ``span`` px, refined twice by the median offset of pairs within
    ``radius`` px."""
    from scipy.spatial import cKDTree

    d = (det[:, None, :] - ref[None, :, :]).reshape(-1, 2)
    nb = int(2 * span)
    hist, xe, ye = np.histogram2d(d[:, 0], d[:, 1], bins=nb, range=[[-span, span]] * 2)
    i, j = np.unravel_index(int(hist.argmax()), hist.shape)
    shift = np.array([xe[i] + 0.5, ye[j] + 0.5])
    tree = cKDTree(det)
    for _ in range(2):
        dist, k = tree.query(ref + shift, distance_upper_bound=radius)
        ok = np.isfinite(dist)
        shift = np.median(det[k[ok]] - ref[ok], axis=0)
    return shift


def offsets(det_path: Path, ldac: Path, frame: Path, *, radius: float, min_snr: float) -> Any:
    from astropy.table import Table

    from atd_dl.evaluate.matching import match_points
    from atd_dl.evaluate.references import read_table, references_from_truth
    from atd_dl.io.fits_io import read_frame

    cat = Table.read(det_path)
    raw = read_table(ldac)
    refs = references_from_truth(raw, path=ldac)
    det = np.column_stack([np.asarray(cat["x"], float), np.asarray(cat["y"], float)])
    shift = find_shift(det, refs.xy, radius)
    m = match_points(det, refs.xy + shift, radius, one_to_one=True)
    d = det[m.det_index] - refs.xy[m.ref_index]
    good = (
        (np.asarray(cat["snr"], float)[m.det_index] > min_snr)
        & (np.asarray(cat["flags"]).astype(int)[m.det_index] == 0)
        & (np.asarray(raw["FLAGS"]).astype(int)[m.ref_index] == 0)
    )
    dg = d[good]
    mean = dg.mean(axis=0)
    res = dg - mean
    scale = None
    wcs = read_frame(frame).wcs
    if wcs is not None:
        from astropy.wcs.utils import proj_plane_pixel_scales

        scale = float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)
    rms = float(np.sqrt(np.mean(np.sum(res**2, axis=1))))
    med = float(np.median(np.hypot(res[:, 0], res[:, 1])))
    return {
        "frame": frame.name,
        "reference": ldac.name,
        "reference_kind": "SExtractor FITS-LDAC, XWIN_IMAGE/YWIN_IMAGE (ALPHA/DELTA all 0)",
        "n_detections": len(cat),
        "n_reference": len(refs),
        "match_radius_px": radius,
        "shift_px": [float(shift[0]), float(shift[1])],
        "n_matched": int(m.det_index.size),
        "min_snr": min_snr,
        "n": int(good.sum()),
        "mean_dx_px": float(mean[0]),
        "mean_dy_px": float(mean[1]),
        "median_offset_px": med,
        "rms_demeaned_px": rms,
        "rms_x_px": float(np.sqrt(np.mean(res[:, 0] ** 2))),
        "rms_y_px": float(np.sqrt(np.mean(res[:, 1] ** 2))),
        "pixel_scale_arcsec": scale,
        "median_offset_arcsec": med * scale if scale else None,
        "rms_demeaned_arcsec": rms * scale if scale else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--radius", type=float, default=3.0)
    ap.add_argument("--min-snr", type=float, default=20.0)
    args = ap.parse_args(argv)
    frame, ldac = args.data / "mro_test_frame.fits", args.data / "mro_test_ldac.fits"
    if not (frame.is_file() and ldac.is_file()):
        print(f"no {frame.name} / {ldac.name} in {args.data}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    import tempfile

    from atd_dl.detect.catalog_io import OutputConfig
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector

    det = Detector(*load_detector(None), DetectConfig())
    with tempfile.TemporaryDirectory() as tmp:
        det.run(frame, write=OutputConfig(Path(tmp)))
        row = offsets(
            Path(tmp) / "mro_test_frame.cat.ecsv",
            ldac,
            frame,
            radius=args.radius,
            min_snr=args.min_snr,
        )
    row["description"] = __doc__.split("\n\n")[1].replace("\n", " ")
    print(json.dumps(row, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
