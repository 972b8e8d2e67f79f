"""Time catalog-anchored labelling and dataset preparation on a paper-like simulated frame.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_labels.py [--preset paper] [--repeat 3]
                                                        [--work DIR] [--size 1600]

Simulates one 1600² frame (``atd_dl.sim``, cached in ``--work``), then times each stage
of ``atd-dl prep`` for that frame: read, calibrate, enhance (background + ZScale),
catalog read + projection, labels (segmentation, 3×3 SNR, matching, blob SNR, PSF fit,
mask), and the per-frame writes. Prints wall-clock and CPU seconds (best of
``--repeat``) and the label counts (kept / dropped by reason).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from _common import best_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--size", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "atd_bench")
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args(argv)

    from atd_dl.data.builder import PrepConfig, prepare_training_frame
    from atd_dl.io.catalogs import project_catalog, read_reference_catalog
    from atd_dl.io.fits_io import read_frame
    from atd_dl.labels import LabelConfig, make_labels
    from atd_dl.labels.overlay import write_overlay
    from atd_dl.labels.segment import segment_threshold
    from atd_dl.labels.snr import blob_snr, box_snr
    from atd_dl.prep.calibration import CalibrationMasters, calibrate
    from atd_dl.prep.enhance import enhance_frame
    from atd_dl.sim import preset_config, simulate_field, write_calibration, write_field

    run = args.work / f"{args.preset}_{args.size}_s{args.seed}"
    name = f"sim_s{args.seed}_0000"
    frame_path = run / "frames" / f"{name}.fits"
    if not frame_path.exists():
        print(f"simulating {args.preset} {args.size}² frame into {run} ...")
        cfg = preset_config(args.preset, size=args.size)
        write_field(simulate_field(cfg, args.seed, 0), run)
        write_calibration(cfg, args.seed, run)
    calib = run / "calib"
    masters = CalibrationMasters.from_files(
        calib / "master_bias.fits", calib / "master_dark.fits", calib / "master_flat.fits"
    )
    cat_path = run / "catalogs" / f"{name}.ecsv"
    r = args.repeat
    t: dict[str, tuple[float, float]] = {}

    raw, *t["read"] = best_of(lambda: read_frame(frame_path), r)
    cal, *t["calibrate"] = best_of(lambda: calibrate(raw, masters), r)
    enh, *t["enhance"] = best_of(lambda: enhance_frame(cal.data, cal.mask), r)
    cat, *t["catalog_read"] = best_of(lambda: read_reference_catalog(cat_path), r)
    proj, *t["catalog_project"] = best_of(
        lambda: project_catalog(cat, cal.wcs, cal.shape, epoch=cal.date_obs), r
    )
    gain = float(cal.gain)
    bad = cal.mask & ~cal.saturated
    seg, *t["l_segment"] = best_of(
        lambda: segment_threshold(cal.data, enh.background, enh.background_rms, mask=bad), r
    )
    x, y = np.asarray(proj["x"], float), np.asarray(proj["y"], float)
    _, *t["l_box_snr"] = best_of(
        lambda: box_snr(
            cal.data,
            x,
            y,
            gain=gain,
            bad=cal.mask,
            saturated=cal.saturated,
            background=enh.background,
            background_rms=enh.background_rms,
        ),
        r,
    )
    _, *t["l_blob_snr_all"] = best_of(
        lambda: blob_snr(
            cal.data,
            seg.x,
            seg.y,
            seg.radius,
            gain=gain,
            bad=cal.mask,
            saturated=cal.saturated,
            background=enh.background,
            background_rms=enh.background_rms,
        ),
        r,
    )

    def labels(cfg: LabelConfig):
        return make_labels(
            cal.data,
            enh.background,
            enh.background_rms,
            proj,
            gain=gain,
            mask=cal.mask,
            saturated=cal.saturated,
            n_catalog=len(cat),
            config=cfg,
        )

    res, *t["labels_default"] = best_of(lambda: labels(LabelConfig()), r)
    _, *t["labels_fixed_fwhm"] = best_of(lambda: labels(LabelConfig(psf_fwhm=res.psf_fwhm)), r)
    _, *t["labels_all_blob_snr"] = best_of(lambda: labels(LabelConfig(blob_snr="all")), r)
    _, *t["labels_paper_untrimmed"] = best_of(lambda: labels(LabelConfig(trim=None)), r)
    out = args.work / "bench_out"
    _, *t["overlay_png"] = best_of(lambda: write_overlay(out / "overlay.png", enh.image8, res), r)
    cfgp = PrepConfig()
    _, *t["prep_frame_end_to_end"] = best_of(
        lambda: prepare_training_frame(
            frame_path, run / "catalogs", out, test=False, config=cfgp, masters=masters
        ),
        r,
    )

    prep_core = sum(t[k][0] for k in ("read", "calibrate", "enhance"))
    print(
        f"\nframe {name} ({args.preset}, {args.size}²): {len(cat)} catalog rows, "
        f"{seg.n} components, PSF FWHM {res.psf_fwhm:.2f} px"
    )
    print(f"{'stage':28s} {'wall s':>8s} {'cpu s':>8s}")
    for k, (wall, cpu) in t.items():
        print(f"{k:28s} {wall:8.3f} {cpu:8.3f}")
    print(f"{'prep (read+cal+enhance)':28s} {prep_core:8.3f}")
    print(f"{'prep + labels (default)':28s} {prep_core + t['labels_default'][0]:8.3f}")
    print("\nlabel counts:")
    for k, v in res.counts.items():
        print(f"  {k:26s} {v}")
    if args.json:
        args.json.write_text(
            json.dumps({"timings": t, "counts": res.counts, "psf_fwhm": res.psf_fwhm}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
