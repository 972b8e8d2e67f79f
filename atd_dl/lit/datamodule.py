"""Dataset folder → PyTorch datasets → Lightning data module.

Reads the folder written by ``atd-dl prep`` (``docs/DESIGN.md`` "Dataset folder"):
``images/<stem>.png`` (uint8 stretched image), ``masks/<stem>.png`` (0/255),
``points/<stem>.csv`` (kept catalog sources, x/y in patch pixels, 0-based),
optional ``aux/<stem>.npz`` (``rms`` normalised background RMS, ``bad`` mask) and
``manifest.csv`` (``stem`` and ``split`` ∈ {train, val, test}).

A sample is a dict: ``image`` float32 [C, H, W] (C = 1 for ``input_mode="image"``,
3 for ``"noise_aware"``: image/255, clipped normalised RMS, bad-pixel mask; 2 for
``"sigma"``: the significance planes of ``sigma/<stem>.npz``),
``mask`` float32 [1, H, W] (0/1), ``points`` float32 [N, 2] (x, y) and ``stem``.

Augmentation respects the sky: only the eight symmetries of the pixel grid
(horizontal flip × four 90° rotations) and random crops, applied identically to
image, mask, auxiliary planes and points. No interpolation, no intensity change,
so PSF shape and noise statistics are untouched.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from atd_dl.data.manifest import read_manifest_rows
from atd_dl.errors import InputError
from atd_dl.prep.network_input import zscale_planes

__all__ = [
    "StarFieldDataset",
    "StarFieldDataModule",
    "read_points",
    "read_image",
    "transform_points",
    "collate_samples",
    "sample_loader",
    "INPUT_MODES",
]

# image / noise_aware: the ZScale PNG (+ aux/ planes); sigma: sigma/<stem>.npz, the
# significance planes of atd_dl.prep.network_input (atd-dl prep --input-kind sigma_asinh+bad)
INPUT_MODES = {"image": 1, "noise_aware": 3, "sigma": 2}
SPLITS = ("train", "val", "test")


def read_image(path: Path) -> np.ndarray:
    """Grey PNG as float32 [H, W] in [0, 1] (uint8 / 255, uint16 / 65535)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(path, "missing or unreadable image")
    if img.ndim != 2:
        raise InputError(path, f"expected a single-channel image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    raise InputError(path, f"unsupported PNG dtype {img.dtype}")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete PNG (no signature, no final IEND chunk: truncated),
    or None; reads 20 bytes, so every patch of a dataset is checked before training."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            size = fh.seek(0, 2)
            fh.seek(max(size - 12, 0))
            tail = fh.read(12)
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    if head != _PNG_SIGNATURE:
        return "not a PNG file"
    if size < 8 + 12 or tail[4:8] != b"IEND":
        return f"truncated PNG ({size} bytes, no final IEND chunk)"
    return None


def read_points(path: Path) -> np.ndarray:
    """(x, y) float32 [N, 2] from a points CSV (header ``x,y,...``); missing file → InputError."""
    if not path.is_file():
        raise InputError(path, "points file not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"x", "y"} <= set(reader.fieldnames or []):
            raise InputError(path, "points CSV needs columns x and y")
        xy = [(float(r["x"]), float(r["y"])) for r in reader]
    return np.asarray(xy, dtype=np.float32).reshape(-1, 2)


def transform_points(xy: np.ndarray, shape: tuple[int, int], k: int, flip: bool) -> np.ndarray:
    """Map (x, y) points through ``np.flip(a, -1)`` (if ``flip``) then ``np.rot90(a, k)``.

    ``shape`` = (H, W) of the array before the transform. Pixel centres are integers,
    so a point on a pixel centre stays on the centre of the moved pixel.
    """
    h, w = shape
    x, y = xy[:, 0].copy(), xy[:, 1].copy()
    if flip:
        x = (w - 1) - x
    for _ in range(k % 4):
        # np.rot90 (counter-clockwise): new[r, c] = old[c, W-1-r]
        x, y = y, (w - 1) - x
        h, w = w, h
    return np.stack([x, y], axis=1).astype(np.float32)


def _grid_symmetry(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        arr = np.flip(arr, axis=-1)
    return np.rot90(arr, k, axes=(-2, -1))


class StarFieldDataset(Dataset):
    """Patches of one split of a dataset folder."""

    def __init__(
        self,
        data_dir: str | Path,
        stems: list[str],
        *,
        input_mode: str = "image",
        augment: bool = False,
        crop_size: int | None = None,
        samples_per_epoch: int | None = None,
    ) -> None:
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {sorted(INPUT_MODES)}, got {input_mode!r}")
        self.root = Path(data_dir)
        self.stems = list(stems)
        self.input_mode = input_mode
        self.augment = augment
        self.crop_size = crop_size
        self.samples_per_epoch = samples_per_epoch
        for stem in self.stems:  # fail early, before hours of training
            for sub, ext in (("images", "png"), ("masks", "png"), ("points", "csv")):
                p = self.root / sub / f"{stem}.{ext}"
                if not p.is_file():
                    raise InputError(p, f"missing (listed in manifest.csv as {stem!r})")
                if ext == "png" and (problem := png_problem(p)):
                    raise InputError(p, problem)
            if input_mode == "noise_aware" and not (self.root / "aux" / f"{stem}.npz").is_file():
                raise InputError(
                    self.root / "aux" / f"{stem}.npz", "missing (needed for noise_aware input)"
                )
            if input_mode == "sigma" and not (self.root / "sigma" / f"{stem}.npz").is_file():
                raise InputError(
                    self.root / "sigma" / f"{stem}.npz",
                    "missing: the sigma input needs a dataset prepared with "
                    "`atd-dl prep --input-kind sigma_asinh+bad`",
                )

    def __len__(self) -> int:
        return max(len(self.stems), int(self.samples_per_epoch or 0))

    def _planes(self, stem: str) -> np.ndarray:
        if self.input_mode == "sigma":
            path = self.root / "sigma" / f"{stem}.npz"
            try:
                with np.load(path, allow_pickle=False) as z:
                    return np.asarray(z["planes"], dtype=np.float32)
            except (KeyError, ValueError, OSError, EOFError) as err:
                raise InputError(path, f"cannot read the sigma planes ({err})") from None
        image = read_image(self.root / "images" / f"{stem}.png")
        rms = bad = None
        if self.input_mode == "noise_aware":
            path = self.root / "aux" / f"{stem}.npz"
            try:
                with np.load(path, allow_pickle=False) as aux:
                    rms = np.asarray(aux["rms"], dtype=np.float32)
                    bad = np.asarray(aux["bad"], dtype=bool)
            except (KeyError, ValueError, OSError) as err:
                raise InputError(path, f"cannot read rms/bad planes ({err})") from None
            if rms.shape != image.shape or bad.shape != image.shape:
                raise InputError(path, f"aux planes {rms.shape} do not match image {image.shape}")
        channels = INPUT_MODES[self.input_mode]
        return zscale_planes(image, channels=channels, norm_rms=rms, bad=bad)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        stem = self.stems[idx % len(self.stems)]
        image = self._planes(stem)
        mpath = self.root / "masks" / f"{stem}.png"
        mask = cv2.imread(str(mpath), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2:
            raise InputError(mpath, "missing, unreadable or not single-channel mask")
        if mask.shape != image.shape[1:]:
            raise InputError(mpath, f"mask shape {mask.shape} differs from image {image.shape[1:]}")
        mask = (mask > 0).astype(np.float32)[None]
        points = read_points(self.root / "points" / f"{stem}.csv")

        if self.crop_size is not None:
            image, mask, points = self._random_crop(image, mask, points, stem)
        if self.augment:
            k = int(torch.randint(0, 4, ()).item())
            flip = bool(torch.randint(0, 2, ()).item())
            shape = image.shape[1:]
            image = _grid_symmetry(image, k, flip)
            mask = _grid_symmetry(mask, k, flip)
            points = transform_points(points, shape, k, flip)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "points": torch.from_numpy(points),
            "stem": stem,
        }

    def _random_crop(
        self, image: np.ndarray, mask: np.ndarray, points: np.ndarray, stem: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = int(self.crop_size)  # type: ignore[arg-type]
        h, w = image.shape[1:]
        if c > h or c > w:
            raise InputError(
                self.root / "images" / f"{stem}.png", f"crop_size {c} exceeds image {h}×{w}"
            )
        y0 = int(torch.randint(0, h - c + 1, ()).item())
        x0 = int(torch.randint(0, w - c + 1, ()).item())
        image = image[:, y0 : y0 + c, x0 : x0 + c]
        mask = mask[:, y0 : y0 + c, x0 : x0 + c]
        shifted = points - np.array([x0, y0], dtype=np.float32)
        inside = (
            (shifted[:, 0] > -0.5)
            & (shifted[:, 0] < c - 0.5)
            & (shifted[:, 1] > -0.5)
            & (shifted[:, 1] < c - 0.5)
        )
        return image, mask, shifted[inside]


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and masks; keep the variable-length point lists as lists."""
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "points": [s["points"] for s in samples],
        "stem": [s["stem"] for s in samples],
    }


def sample_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, pin_memory: bool
) -> DataLoader:
    """The DataLoader of every segmentation data module: :func:`collate_samples`, pinned
    memory only with CUDA, persistent workers when there are workers."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_samples,
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        drop_last=False,
    )


class StarFieldDataModule(L.LightningDataModule):
    """Train/val/test loaders over an ``atd-dl prep`` dataset folder.

    ``crop_size`` crops training patches at random positions (validation and
    test always use full patches); ``augment`` applies grid symmetries to training
    patches only. ``samples_per_epoch`` makes a training epoch at least that many
    samples (patches drawn again, each with its own crop and symmetry), so a dataset of a
    few frames still gives enough optimiser steps per epoch.
    """

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 4,
        num_workers: int = 2,
        crop_size: int | None = None,
        input_mode: str = "image",
        augment: bool = True,
        pin_memory: bool = True,
        val_batch_size: int | None = None,
        samples_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {sorted(INPUT_MODES)}, got {input_mode!r}")
        self.save_hyperparameters(logger=False)
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.crop_size = crop_size
        self.input_mode = input_mode
        self.augment = augment
        self.pin_memory = pin_memory
        self.samples_per_epoch = samples_per_epoch
        self.datasets: dict[str, StarFieldDataset] = {}

    @property
    def num_channels(self) -> int:
        """Input channels the network must accept (1, 2 or 3)."""
        return INPUT_MODES[self.input_mode]

    def stems(self, split: str) -> list[str]:
        """Stems of ``split`` in manifest order."""
        return [r["stem"] for r in read_manifest_rows(self.data_dir) if r["split"] == split]

    def _dataset(self, split: str) -> StarFieldDataset:
        if split not in self.datasets:
            stems = self.stems(split)
            if not stems:
                raise InputError(
                    Path(self.data_dir) / "manifest.csv", f"no rows with split '{split}'"
                )
            train = split == "train"
            self.datasets[split] = StarFieldDataset(
                self.data_dir,
                stems,
                input_mode=self.input_mode,
                augment=self.augment and train,
                crop_size=self.crop_size if train else None,
                samples_per_epoch=self.samples_per_epoch if train else None,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
            self._dataset("val")
        if stage == "validate":
            self._dataset("val")
        if stage == "test":
            self._dataset("test")

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        return sample_loader(
            self._dataset(split), batch_size, shuffle, self.num_workers, self.pin_memory
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.val_batch_size)
