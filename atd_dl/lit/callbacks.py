"""Training callbacks: the loss-curve plot of the run folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from atd_dl.io.atomic import atomic_output

__all__ = ["LossCurvePlot"]


class LossCurvePlot(L.Callback):
    """Write ``loss_curve.png`` (train and validation loss vs epoch, like paper Fig. 9) each epoch.

    The history is part of the callback state, so it survives a resume from
    ``last.ckpt``. ``dirpath`` defaults to the trainer's ``default_root_dir``.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "loss_curve.png",
        train_key: str = "train/loss",
        val_key: str = "val/loss",
    ) -> None:
        self.dirpath = dirpath
        self.filename = filename
        self.train_key = train_key
        self.val_key = val_key
        self.history: dict[str, list[float]] = {"epoch": [], "train": [], "val": []}

    def path(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath or trainer.default_root_dir) / self.filename

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics

        def value(key: str) -> float:
            v = metrics.get(key)
            return float(v) if v is not None else math.nan

        self.history["epoch"].append(trainer.current_epoch + 1)
        self.history["train"].append(value(self.train_key))
        self.history["val"].append(value(self.val_key))
        self._plot(trainer)

    @rank_zero_only
    def _plot(self, trainer: L.Trainer) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        h = self.history
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        ax.plot(h["epoch"], h["train"], "-o", ms=3, label="train loss")
        ax.plot(h["epoch"], h["val"], "--s", ms=3, label="validation loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title("Training and validation loss")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_output(self.path(trainer)) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        hist = state_dict.get("history") or {}
        self.history = {k: list(hist.get(k, [])) for k in ("epoch", "train", "val")}
