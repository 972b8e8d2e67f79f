"""Cut frames of a simulated camera (``atd-dl simulate --preset paper|sparse|dense``) into
training patches for the significance-input models, labelled from the simulation truth.

The randomised generator draws every field from its own camera; a camera the detector is
known to meet (the paper's) can join the training mix as its real frames would be seen at
detection: calibrated with the run's master bias, dark and flat, background-subtracted,
converted by the detector's own input function (:func:`significance_planes`, as in
:meth:`Detector.input_planes`). Labels follow the randomised generator's rule on the
truth: disks of :func:`label_radius` (FWHM from the run's camera, the corner's) on stars
whose expected 3x3-box SNR is at least ``--label-snr`` (2, the evaluation's G set: an
optimal SNR of ~3 at this camera's FWHM of 1.25-1.8 px, the randomised fields' cut).
Patches are ``patch_<seed>_<index>.npz`` like ``atd-dl simulate --patches`` writes them.

    atd-dl simulate --preset paper --n-frames 40 --seed 11 --out data/paper_train
    python scripts/paper_patches.py data/paper_train --out data/random/train --seed 211
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from atd_dl.detect.pipeline import prepare_frame
from atd_dl.prep.calibration import CalibrationMasters
from atd_dl.prep.network_input import significance_planes
from atd_dl.sim.randomized import label_radius, paint_disks, patch_path, write_patch

PATCH = 256


def frame_patches(
    frame_path: Path, truth_path: Path, masters: CalibrationMasters, fwhm: float, label_snr: float
):
    """(planes [2, 256, 256] float16, label [256, 256] uint8, points [N, 2]) per patch."""
    prepared = prepare_frame(frame_path, masters=masters, checksum=False, stretch=False)
    assert prepared.subtracted_adu is not None and prepared.background_rms_adu is not None
    planes = significance_planes(
        prepared.subtracted_adu,
        prepared.background_rms_adu,
        bad=prepared.frame.mask,
        saturated=prepared.frame.saturated,
    )
    truth = Table.read(truth_path, format="ascii.ecsv")
    star = np.asarray(truth["kind"]).astype(str) == "star"
    keep = star & (np.nan_to_num(np.asarray(truth["snr_true"], float), nan=-1.0) >= label_snr)
    x, y = np.asarray(truth["x"], float)[keep], np.asarray(truth["y"], float)[keep]
    label = np.zeros(planes.shape[1:], np.uint8)
    paint_disks(label, x, y, np.full(len(x), float(label_radius(fwhm))))
    ny, nx = label.shape
    for y0 in range(0, ny - PATCH + 1, PATCH):
        for x0 in range(0, nx - PATCH + 1, PATCH):
            inside = (
                (x >= x0 - 0.5) & (x < x0 + PATCH - 0.5) & (y >= y0 - 0.5) & (y < y0 + PATCH - 0.5)
            )
            points = np.stack([x[inside] - x0, y[inside] - y0], axis=1).astype(np.float32)
            yield (
                planes[:, y0 : y0 + PATCH, x0 : x0 + PATCH].astype(np.float16),
                label[y0 : y0 + PATCH, x0 : x0 + PATCH].copy(),
                points.reshape(-1, 2),
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="an atd-dl simulate output folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, required=True, help="number in the patch file names")
    ap.add_argument("--label-snr", type=float, default=2.0)
    args = ap.parse_args(argv)
    cfg = json.loads((args.run / "sim_config.json").read_text())["config"]
    fwhm = float(cfg.get("fwhm_corner_px") or cfg["fwhm_px"])
    calib = args.run / "calib"
    masters = CalibrationMasters.from_files(
        calib / "master_bias.fits", calib / "master_dark.fits", calib / "master_flat.fits"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    index = 0
    for frame_path in sorted((args.run / "frames").glob("*.fits")):
        truth_path = args.run / "truth" / f"{frame_path.stem}.ecsv"
        for planes, label, points in frame_patches(
            frame_path, truth_path, masters, fwhm, args.label_snr
        ):
            sample = {"planes": planes, "label": label, "points": points}
            write_patch(patch_path(args.out, args.seed, index), sample)
            index += 1
    print(f"{index} patches in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
