"""Shared fixtures for the model/training tests: a tiny dataset folder and Hydra composition."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "atd_dl" / "configs"


def _star_image(
    rng: np.random.Generator, size: int, n_stars: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy Gaussian stars on a flat sky: (uint8 image, uint8 0/255 mask, (x, y) points)."""
    yy, xx = np.mgrid[:size, :size]
    xy = rng.uniform(6, size - 7, size=(n_stars, 2))
    img = rng.normal(40.0, 6.0, size=(size, size))
    mask = np.zeros((size, size), dtype=np.uint8)
    for x, y in xy:
        r2 = (xx - x) ** 2 + (yy - y) ** 2
        img += rng.uniform(80, 160) * np.exp(-r2 / (2 * 1.2**2))
        mask[r2 <= 2.0**2] = 255
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask, xy


def make_tiny_dataset(
    root: Path,
    *,
    n_train: int = 4,
    n_val: int = 2,
    n_test: int = 2,
    size: int = 64,
    n_stars: int = 6,
    seed: int = 0,
    aux: bool = True,
) -> Path:
    """Write a dataset folder laid out as in docs/DESIGN.md ("Dataset folder") and return it."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks", "points", "aux"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    for k, split in enumerate(splits):
        frame, sub = f"frame{k // 9:02d}", k % 9 + 1
        stem = f"{frame}_s{sub}"
        img, mask, xy = _star_image(rng, size, n_stars)
        cv2.imwrite(str(root / "images" / f"{stem}.png"), img)
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask)
        with (root / "points" / f"{stem}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["x", "y", "snr", "source_id"])
            for i, (x, y) in enumerate(xy):
                w.writerow([f"{x:.3f}", f"{y:.3f}", "10.0", 1000 * k + i])
        if aux:
            rms = rng.uniform(0.8, 1.2, size=(size, size)).astype(np.float32)
            bad = np.zeros((size, size), dtype=bool)
            bad[0, :3] = True
            np.savez(root / "aux" / f"{stem}.npz", rms=rms, bad=bad)
        rows.append(
            {
                "stem": stem,
                "frame": frame,
                "subfield": sub,
                "split": split,
                "ra_center": 300.0,
                "dec_center": -5.9,
                "n_kept": n_stars,
                "n_dropped_snr": 0,
                "n_components": n_stars,
            }
        )
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (root / "fingerprint.json").write_text(
        json.dumps({"psf_fwhm_px": 2.8, "n_labels": len(rows) * n_stars})
    )
    return root


def compose_train(
    overrides: list[str], out_dir: Path | None = None, *, hydra_cfg: bool = False
) -> DictConfig:
    """Compose configs/train.yaml with ``overrides``; output (and log) folder under ``out_dir``."""
    GlobalHydra.instance().clear()
    extra = ["export.onnx=false"]  # the ONNX export has its own tests (test_engines.py)
    if out_dir is not None:
        extra += [
            f"paths.output_dir={out_dir}",
            f"paths.log_dir={out_dir}/logs",
            f"paths.work_dir={out_dir}",
        ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="test"):
        cfg = compose(config_name="train", overrides=[*overrides, *extra], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    if not hydra_cfg:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg
