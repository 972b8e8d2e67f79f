"""Lightning data module over domain-randomised patches (``atd-dl simulate --preset random --patches``).

A patch file ``*.npz`` holds ``planes`` [2, S, S] (float16, the input of
:func:`atd_dl.prep.network_input.significance_planes`), ``label`` [S, S] (uint8 0/1) and
``points`` [N, 2] (x, y of labelled sources, 0-based). ``data_dir`` has ``train/`` and
``val/`` folders of such files. Training patches are randomly cropped to ``crop_size``
and moved by the eight grid symmetries (no interpolation, no intensity change);
validation patches are used whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from atd_dl.errors import InputError
from atd_dl.lit.datamodule import _grid_symmetry, sample_loader, transform_points

__all__ = ["RandomPatchDataset", "RandomPatchDataModule"]


def _patch_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(folder, "patch folder not found (make it with atd-dl simulate --patches)")
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise InputError(folder, "no *.npz patches in the folder")
    return files


class RandomPatchDataset(Dataset):
    """Patches of one folder; see the module docstring."""

    def __init__(self, files: list[Path], *, crop_size: int | None = None, augment: bool = False):
        self.files = list(files)
        self.crop_size = crop_size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as z:
                planes = np.asarray(z["planes"], dtype=np.float32)
                label = np.asarray(z["label"], dtype=np.float32)[None]
                points = np.asarray(z["points"], dtype=np.float32).reshape(-1, 2)
        except (KeyError, ValueError, OSError, EOFError) as err:
            raise InputError(path, f"not a readable patch ({err})") from None
        if planes.ndim != 3 or planes.shape[1:] != label.shape[1:]:
            raise InputError(path, f"planes {planes.shape} do not fit label {label.shape}")
        return planes, label, points

    def __getitem__(self, idx: int) -> dict[str, Any]:
        path = self.files[idx]
        planes, label, points = self._load(path)
        if self.crop_size is not None and self.crop_size < planes.shape[-1]:
            c = int(self.crop_size)
            h, w = planes.shape[1:]
            y0 = int(torch.randint(0, h - c + 1, ()).item())
            x0 = int(torch.randint(0, w - c + 1, ()).item())
            planes = planes[:, y0 : y0 + c, x0 : x0 + c]
            label = label[:, y0 : y0 + c, x0 : x0 + c]
            points = points - np.array([x0, y0], dtype=np.float32)
            inside = (points > -0.5).all(axis=1) & (points < c - 0.5).all(axis=1)
            points = points[inside]
        if self.augment:
            k = int(torch.randint(0, 4, ()).item())
            flip = bool(torch.randint(0, 2, ()).item())
            shape = planes.shape[1:]
            planes = _grid_symmetry(planes, k, flip)
            label = _grid_symmetry(label, k, flip)
            points = transform_points(points, shape, k, flip)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(planes)),
            "mask": torch.from_numpy(np.ascontiguousarray(label)),
            "points": torch.from_numpy(np.ascontiguousarray(points)),
            "stem": path.stem,
        }


class RandomPatchDataModule(L.LightningDataModule):
    """Train/val loaders over ``<data_dir>/train`` and ``<data_dir>/val`` patch folders."""

    num_channels = 2

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 1,
        crop_size: int | None = 128,
        augment: bool = True,
        pin_memory: bool = True,
        input_mode: str = "sigma",
    ) -> None:
        super().__init__()
        if input_mode != "sigma":
            raise ValueError(f"random patches carry the 'sigma' input only, got {input_mode!r}")
        self.save_hyperparameters(logger=False)
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.crop_size = crop_size
        self.augment = augment
        self.pin_memory = pin_memory
        self.input_mode = input_mode
        self.datasets: dict[str, RandomPatchDataset] = {}

    def _dataset(self, split: str) -> RandomPatchDataset:
        # training patches are listed afresh each time, so a run can start while the
        # generator is still writing them (with trainer.reload_dataloaders_every_n_epochs=1)
        if split not in self.datasets or split == "train":
            train = split == "train"
            self.datasets[split] = RandomPatchDataset(
                _patch_files(self.data_dir / split),
                crop_size=self.crop_size if train else None,
                augment=self.augment and train,
            )
        return self.datasets[split]

    def stems(self, split: str) -> list[str]:
        """Patch names of ``split`` (``train`` or ``val``)."""
        return [f.stem for f in self._dataset(split).files]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
            self._dataset("val")
        if stage == "validate":
            self._dataset("val")

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        return sample_loader(
            self._dataset(split), batch_size, shuffle, self.num_workers, self.pin_memory
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.val_batch_size)
