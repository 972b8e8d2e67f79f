"""Lightning data module for visual-binary stamps (simulated or read from disk)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from atd_dl.binaries.splits import group_split
from atd_dl.binaries.stamps import StampGeometry, StampSet, read_stamps
from atd_dl.binaries.synth import SynthConfig, profiles_from_names, simulate_binary_stamps

log = logging.getLogger(__name__)


class StampDataset(Dataset):
    """Normalised stamps + labels; ``augment`` applies a random element of the dihedral
    group (90° rotations and flips), which leaves binarity unchanged."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, augment: bool = False) -> None:
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(self.images[i])
        if self.augment:
            k = int(torch.randint(4, (1,)))
            img = torch.rot90(img, k, dims=(1, 2))
            if bool(torch.rand(1) < 0.5):
                img = torch.flip(img, dims=(2,))
        return img.contiguous(), torch.tensor(self.labels[i])


def synth_config_from_dict(d: dict[str, Any] | None, geometry: StampGeometry) -> SynthConfig:
    """Build a :class:`SynthConfig` from plain (Hydra) values; ``profiles`` may be preset names."""
    d = dict(d or {})
    if "profiles" in d and d["profiles"] is not None:
        d["profiles"] = profiles_from_names(list(d["profiles"]))
    else:
        d.pop("profiles", None)
    for key in ("sep_arcsec", "flux_ratio", "snr", "neighbour_flux", "beta"):
        if key in d and d[key] is not None:
            d[key] = tuple(d[key])
    return SynthConfig(geometry=geometry, **d)


class BinaryStampDataModule(L.LightningDataModule):
    """Train / val / test stamps for the binary classifier.

    Args:
        data_dir: a stamp-set folder (``atd-dl binary-stamps``), a ``file,label`` CSV or a
            folder with ``labels.csv``; ``None`` simulates stamps in memory from ``synth``.
        geometry: :class:`StampGeometry` fields (size, stamp_arcsec, radius_arcsec,
            channels, normalize).
        synth: :class:`SynthConfig` fields for the in-memory simulation.
        fractions: (train, test, val) shares, split by group and stratified by label.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        *,
        geometry: dict[str, Any] | None = None,
        synth: dict[str, Any] | None = None,
        fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.geometry = StampGeometry(**(geometry or {}))
        self.stamps: StampSet | None = None
        self.split: np.ndarray | None = None
        self.subsets: dict[str, StampSet] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.stamps is not None:
            return
        hp = self.hparams
        if hp.data_dir:
            stamps, failures = read_stamps(Path(hp.data_dir), self.geometry)
            for f in failures:
                log.warning("skipped %s", f)
            if (stamps.labels < 0).any():
                raise ValueError(f"{hp.data_dir}: training stamps need labels (0/1) for every file")
            self.geometry = stamps.geometry
        else:
            cfg = synth_config_from_dict(hp.synth, self.geometry)
            stamps = simulate_binary_stamps(cfg, progress=True)
        self.stamps = stamps
        self.split = group_split(stamps.labels, stamps.groups, tuple(hp.fractions), seed=hp.seed)
        for name in ("train", "val", "test"):
            self.subsets[name] = stamps.subset(np.flatnonzero(self.split == name))
        counts = {k: len(v) for k, v in self.subsets.items()}
        log.info("binary stamps: %d total, split %s", len(stamps), counts)

    @property
    def in_channels(self) -> int:
        return self.geometry.channels

    def _loader(self, name: str, *, train: bool = False) -> DataLoader:
        sub = self.subsets[name]
        ds = StampDataset(sub.images, sub.labels, augment=train and self.hparams.augment)
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            shuffle=train,
            num_workers=self.hparams.num_workers,
            drop_last=train and len(ds) > self.hparams.batch_size,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
