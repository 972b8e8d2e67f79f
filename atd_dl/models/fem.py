"""Feature Enhancement Module (FEM) of ATD-DL (He et al. 2026, §3.1).

Two parallel branches look at the same input:

* a 3×3 convolution (fine, local detail);
* a 5×5 depthwise-separable convolution: a 5×5 depthwise filter per input
  channel followed by a 1×1 pointwise convolution (wider context at a small
  parameter cost).

Their outputs are **concatenated** along channels and fused by a 1×1
convolution. Concatenation lets the 1×1 fusion learn its own mix of the two
receptive fields (with a sum, the 1×1 convolution would only see their fixed
1:1 blend). Each branch and the fusion end in BatchNorm + ReLU.

With a one-channel input the depthwise stage is a single learned 5×5 filter
(``dw_multiplier`` filters with ``dw_multiplier > 1``), much like the
PSF-matched smoothing kernel classical detectors apply before thresholding.

Parameter count (convolutions without bias, BN has 2 per channel), with
``i`` input channels, ``c`` output channels and multiplier ``m``::

    3×3 branch : 9·i·c + 2c
    5×5 branch : 25·i·m + i·m·c + 2c
    fusion     : 2c·c + 2c
"""

from __future__ import annotations

import torch
from torch import nn

from atd_dl.models.blocks import ConvBNReLU

__all__ = ["FeatureEnhancementModule", "FEMDoubleConv"]


class FeatureEnhancementModule(nn.Module):
    """Parallel 3×3 conv and 5×5 depthwise-separable conv, concatenated, fused by a 1×1 conv."""

    def __init__(self, in_channels: int, out_channels: int, dw_multiplier: int = 1) -> None:
        super().__init__()
        if dw_multiplier < 1:
            raise ValueError(f"dw_multiplier must be >= 1, got {dw_multiplier}")
        dw_channels = in_channels * dw_multiplier
        self.branch3 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.branch5 = nn.Sequential(
            # depthwise: one (or m) 5×5 filters per input channel
            nn.Conv2d(in_channels, dw_channels, 5, padding=2, groups=in_channels, bias=False),
            # pointwise: mix channels
            nn.Conv2d(dw_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.branch3(x), self.branch5(x)], dim=1))


class FEMDoubleConv(nn.Sequential):
    """First encoder block of ATD-UNet: FEM (``in → out``) then a 3×3 conv-BN-ReLU (``out → out``).

    It replaces the first 3×3 convolution of the plain double-conv block, so the
    block keeps the U-Net shape (two feature-extraction stages, same output width).
    """

    def __init__(self, in_channels: int, out_channels: int, dw_multiplier: int = 1) -> None:
        super().__init__(
            FeatureEnhancementModule(in_channels, out_channels, dw_multiplier),
            ConvBNReLU(out_channels, out_channels),
        )
