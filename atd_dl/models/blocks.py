"""Small building blocks shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBNReLU", "DoubleConv", "pad_to_multiple", "upsample_like"]


class ConvBNReLU(nn.Sequential):
    """``k×k`` convolution (no bias) → BatchNorm → ReLU, 'same' padding."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
    ) -> None:
        pad = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=pad,
                dilation=dilation,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """The U-Net unit: two 3×3 conv-BN-ReLU layers (``in → out → out``)."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid = out_channels if mid_channels is None else mid_channels
        super().__init__(ConvBNReLU(in_channels, mid), ConvBNReLU(mid, out_channels))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` [B, C, H, W] at the bottom/right (edge values) so H and W divide ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` for cropping the output.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear up-sampling of ``x`` to the spatial size of ``ref``."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)
