"""Segmentation losses: cross-entropy + Dice (paper Eqs. 12–13), Dice only, focal (+ Dice).

All losses take ``(logits, target)``:

* ``logits``: [B, K, H, W] with ``K = 2`` (two-class logits, softmax) or ``K = 1``
  (one logit, sigmoid); or a list/tuple of such tensors (deep supervision), in
  which case the loss is the mean of the loss of every output;
* ``target``: [B, 1, H, W] or [B, H, W], values 0 (background) / 1 (source).

Dice is computed on the foreground probability with sums over the whole batch
(``1 − (2Σ y p + s) / (Σ y + Σ p + s)``), so patches without any source do not
produce undefined ratios; ``smooth`` = s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SegmentationLoss",
    "CEDiceLoss",
    "DiceLoss",
    "FocalLoss",
    "FocalDiceLoss",
    "dice_loss",
    "cross_entropy",
    "focal_loss",
]


def _target(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Target as float [B, 1, H, W] on the logits' device."""
    if target.dim() == 3:
        target = target.unsqueeze(1)
    if target.shape[1] != 1 or target.shape[-2:] != like.shape[-2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not fit logits {tuple(like.shape)}"
        )
    return target.to(device=like.device, dtype=torch.float32)


def _foreground_prob(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:2]


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None
) -> torch.Tensor:
    """Pixel-averaged binary cross-entropy (Eq. 12) for 1- or 2-channel logits.

    ``pos_weight`` (> 0) multiplies the loss of source pixels (class imbalance).
    """
    y = _target(target, logits)
    if logits.shape[1] == 1:
        pw = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pw)
    weight = None
    if pos_weight is not None:
        weight = torch.ones(logits.shape[1], device=logits.device)
        weight[1] = pos_weight
    ce = F.cross_entropy(logits, y[:, 0].long(), weight=weight, reduction="none")
    return ce.mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss (Eq. 13) of the foreground probability, batch-global sums."""
    y = _target(target, logits)
    p = _foreground_prob(logits)
    inter = (p * y).sum()
    return 1.0 - (2.0 * inter + smooth) / (p.sum() + y.sum() + smooth)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float | None = 0.25
) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017), pixel mean; ``alpha`` weights source pixels."""
    y = _target(target, logits)
    if logits.shape[1] == 1:
        logp1 = F.logsigmoid(logits)
        logp0 = F.logsigmoid(-logits)
    else:
        logp = torch.log_softmax(logits, dim=1)
        logp0, logp1 = logp[:, 0:1], logp[:, 1:2]
    logpt = y * logp1 + (1.0 - y) * logp0
    pt = logpt.exp()
    loss = -((1.0 - pt) ** gamma) * logpt
    if alpha is not None:
        loss = loss * (alpha * y + (1.0 - alpha) * (1.0 - y))
    return loss.mean()


class SegmentationLoss(nn.Module):
    """Weighted sum ``ce_weight·CE + dice_weight·Dice + focal_weight·Focal``.

    Accepts a single logits tensor or a deep-supervision list (mean over outputs).
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        focal_weight: float = 0.0,
        *,
        smooth: float = 1.0,
        pos_weight: float | None = None,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
    ) -> None:
        super().__init__()
        if min(ce_weight, dice_weight, focal_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if ce_weight == dice_weight == focal_weight == 0:
            raise ValueError("at least one loss weight must be > 0")
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.focal_weight = float(focal_weight)
        self.smooth = smooth
        self.pos_weight = pos_weight
        self.gamma = gamma
        self.alpha = alpha

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of one output tensor."""
        logits = logits.float()
        total = logits.new_zeros(())
        if self.ce_weight:
            total = total + self.ce_weight * cross_entropy(logits, target, self.pos_weight)
        if self.dice_weight:
            total = total + self.dice_weight * dice_loss(logits, target, self.smooth)
        if self.focal_weight:
            total = total + self.focal_weight * focal_loss(logits, target, self.gamma, self.alpha)
        return total

    def forward(
        self,
        logits: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...],
        target: torch.Tensor,
    ) -> torch.Tensor:
        if isinstance(logits, list | tuple):
            if not logits:
                raise ValueError("empty list of outputs")
            return torch.stack([self.single(lg, target) for lg in logits]).mean()
        return self.single(logits, target)

    def extra_repr(self) -> str:
        return f"ce={self.ce_weight}, dice={self.dice_weight}, focal={self.focal_weight}"


class CEDiceLoss(SegmentationLoss):
    """Cross-entropy + Dice, the paper's training loss (weights 1 and 1 by default)."""

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        *,
        smooth: float = 1.0,
        pos_weight: float | None = None,
    ) -> None:
        super().__init__(ce_weight, dice_weight, 0.0, smooth=smooth, pos_weight=pos_weight)


class DiceLoss(SegmentationLoss):
    """Soft Dice only."""

    def __init__(self, *, smooth: float = 1.0) -> None:
        super().__init__(0.0, 1.0, 0.0, smooth=smooth)


class FocalLoss(SegmentationLoss):
    """Focal loss only."""

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = 0.25) -> None:
        super().__init__(0.0, 0.0, 1.0, gamma=gamma, alpha=alpha)


class FocalDiceLoss(SegmentationLoss):
    """Focal + Dice."""

    def __init__(
        self,
        focal_weight: float = 1.0,
        dice_weight: float = 1.0,
        *,
        smooth: float = 1.0,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
    ) -> None:
        super().__init__(0.0, dice_weight, focal_weight, smooth=smooth, gamma=gamma, alpha=alpha)
