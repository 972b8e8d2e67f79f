"""Turning network logits into a foreground probability map."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["logits_to_prob", "predict_proba"]


def logits_to_prob(
    logits: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """Foreground probability [B, 1, H, W] (float32) from logits [B, K, H, W].

    ``K = 1``: sigmoid of the single logit; ``K ≥ 2``: softmax probability of
    class 1. A deep-supervision list uses its last (final) output.
    """
    if isinstance(logits, list | tuple):
        logits = logits[-1]
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:2]


def predict_proba(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` [B, C, H, W] without gradients; returns probability [B, 1, H, W].

    The model's train/eval mode is left as the caller set it (call ``model.eval()``
    first for inference: BatchNorm statistics and single-output DNA-Net).
    """
    with torch.no_grad():
        return logits_to_prob(model(x))
