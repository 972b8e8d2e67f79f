"""LightningModule wrapping any registry network for star-field segmentation.

Logged every epoch (``/``-separated keys, as in the CSV and TensorBoard logs):

* ``train/loss``, ``val/loss``;
* ``val/dice``, ``val/iou``: pixel overlap of ``prob >= 0.5`` with the label mask
  (sums over the whole validation set);
* ``val/precision``, ``val/recall``, ``val/f1`` (and ``val/f1_best``, the best so
  far): detection-level scores — components of ``prob >= det_threshold``,
  probability-weighted centroids, matched to the kept catalog points of each
  patch within ``match_radius`` px (:mod:`atd_dl.lit.detection_metrics`);
* the same under ``test/`` for ``trainer.test``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from atd_dl.lit.detection_metrics import DetectionCounter
from atd_dl.models.inference import logits_to_prob

__all__ = ["SegmentationModule"]


def _as_numpy(points: torch.Tensor | np.ndarray) -> np.ndarray:
    """Reference points [N, 2] as a float numpy array (Lightning may have moved them to the GPU)."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    return np.asarray(points, dtype=float).reshape(-1, 2)


class SegmentationModule(L.LightningModule):
    """Train a segmentation network with a configurable loss, optimizer and LR schedule.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``):
    ``optimizer(params=...)`` and ``scheduler(optimizer=...)``; the scheduler is
    stepped once per epoch (cosine annealing of paper Eq. 14). ``compile`` wraps
    the network with ``torch.compile`` for training; ``channels_last`` switches
    the memory format on CUDA. The network's ``model_spec`` (name + kwargs from
    the registry) is stored in the checkpoint's hyper-parameters so a checkpoint
    can be exported to a model folder on its own.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        compile: bool = False,
        *,
        det_threshold: float = 0.5,
        match_radius: float = 3.0,
        edge: float = 3.0,
        one_to_one: bool = True,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        # only plain values go into the checkpoint (it must load with weights_only=True)
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"], logger=False)
        self.hparams["model_spec"] = getattr(net, "model_spec", None)
        self.hparams["loss_repr"] = repr(loss)
        self.net = net
        self.loss = loss
        self._optimizer_factory = optimizer
        self._scheduler_factory = scheduler
        self.det_threshold = float(det_threshold)
        self._use_channels_last = False
        self._compiled: nn.Module | None = None
        self._best_f1 = 0.0
        self._reset_counts()

    # ---------------------------------------------------------------- plumbing
    def _reset_counts(self) -> None:
        hp = self.hparams
        self._det = DetectionCounter(
            self.det_threshold, hp["match_radius"], hp["edge"], hp["one_to_one"]
        )
        self._pix = torch.zeros(3, dtype=torch.float64)  # intersection, predicted, true

    def setup(self, stage: str) -> None:
        if self.hparams["compile"] and stage == "fit" and self._compiled is None:
            # kept outside the module tree so state-dict keys stay "net.*"
            object.__setattr__(self, "_compiled", torch.compile(self.net))

    def _maybe_channels_last(self) -> None:
        if (
            self.hparams["channels_last"]
            and self.device.type == "cuda"
            and not self._use_channels_last
        ):
            self.net.to(memory_format=torch.channels_last)
            self._use_channels_last = True

    def on_fit_start(self) -> None:
        self._maybe_channels_last()

    def on_test_start(self) -> None:
        self._maybe_channels_last()

    def on_train_start(self) -> None:
        self._best_f1 = 0.0  # forget the sanity-check pass

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self._use_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        net = self._compiled if (self._compiled is not None and self.training) else self.net
        return net(x)

    # ---------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self(batch["image"])
        loss = self.loss(out, batch["mask"])
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch["image"]),
        )
        return loss

    def _eval_step(self, batch: dict[str, Any], prefix: str) -> torch.Tensor:
        out = self(batch["image"])
        mask = batch["mask"]
        loss = self.loss(out, mask)
        self.log(
            f"{prefix}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(mask),
        )
        prob = logits_to_prob(out)
        pred = (prob >= 0.5).float()
        truth = (mask > 0.5).float()
        self._pix += torch.stack([(pred * truth).sum(), pred.sum(), truth.sum()]).double().cpu()
        prob_np = prob[:, 0].detach().cpu().numpy()
        for p, pts in zip(prob_np, batch["points"]):
            self._det.update(p, _as_numpy(pts))
        return loss

    def _epoch_metrics(self, prefix: str) -> dict[str, float]:
        d = self._det
        counts = torch.tensor(
            [d.tp, d.fp, d.fn, *self._pix.tolist()], dtype=torch.float64, device=self.device
        )
        if self.trainer is not None and self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        tp, fp, fn, inter, npred, ntrue = counts.tolist()
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        union = npred + ntrue - inter
        return {
            f"{prefix}/dice": 2 * inter / (npred + ntrue) if npred + ntrue else 1.0,
            f"{prefix}/iou": inter / union if union else 1.0,
            f"{prefix}/precision": precision,
            f"{prefix}/recall": recall,
            f"{prefix}/f1": f1,
        }

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._reset_counts()

    def on_validation_epoch_end(self) -> None:
        metrics = self._epoch_metrics("val")
        if not self.trainer.sanity_checking:
            self._best_f1 = max(self._best_f1, metrics["val/f1"])
        metrics["val/f1_best"] = self._best_f1
        self.log("val/f1", metrics.pop("val/f1"), prog_bar=True)
        self.log_dict(metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._reset_counts()

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._epoch_metrics("test"))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return logits_to_prob(self(batch["image"]))

    # ---------------------------------------------------------------- optim
    def configure_optimizers(self) -> Any:
        optimizer = self._optimizer_factory(params=self.net.parameters())
        if self._scheduler_factory is None:
            return optimizer
        kw = {}
        keywords = getattr(self._scheduler_factory, "keywords", {})
        if (
            getattr(self._scheduler_factory, "func", None)
            is torch.optim.lr_scheduler.CosineAnnealingLR
            and keywords.get("T_max") is None
        ):
            kw["T_max"] = max(1, int(self.trainer.max_epochs or 1))
        scheduler = self._scheduler_factory(optimizer=optimizer, **kw)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
