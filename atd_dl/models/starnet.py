"""StarNet: lightweight fully convolutional pixel classifier for star images.

Reconstruction of the network of Xue et al. 2020 (Multimed. Tools Appl. 79,
4681) from its published description: a light fully convolutional network
that classifies every pixel as target or background in one stage, using
features of the image at several scales. The description does not fix the
layer count, widths or the way scales are merged; this implementation
(documented in ``docs/models.md``) uses:

* three scales: full resolution, 1/2 and 1/4 (2×2 max-pool between them),
  each with two 3×3 conv-BN-ReLU layers, widths ``w, 2w, 4w``;
* the 1/4 stage uses dilation 2 in its second conv for a larger receptive
  field (≈ 40 px on the full-resolution grid), enough context to judge a
  faint star against its local background;
* hypercolumn fusion: each scale is projected by a 1×1 conv to ``w``
  channels, bilinearly up-sampled to full resolution and concatenated; one
  3×3 conv-BN-ReLU mixes them and a 1×1 conv gives the per-pixel logits.
"""

from __future__ import annotations

import torch
from torch import nn

from atd_dl.models.blocks import ConvBNReLU, pad_to_multiple, upsample_like
from atd_dl.models.registry import register_model

__all__ = ["StarNet", "starnet"]


class StarNet(nn.Module):
    """Three-scale fully convolutional pixel classifier with hypercolumn fusion."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_width: int = 32) -> None:
        super().__init__()
        w = base_width
        self.num_classes = num_classes
        self.stage1 = nn.Sequential(ConvBNReLU(in_channels, w), ConvBNReLU(w, w))
        self.stage2 = nn.Sequential(ConvBNReLU(w, 2 * w), ConvBNReLU(2 * w, 2 * w))
        self.stage3 = nn.Sequential(ConvBNReLU(2 * w, 4 * w), ConvBNReLU(4 * w, 4 * w, dilation=2))
        self.pool = nn.MaxPool2d(2)
        self.proj = nn.ModuleList(nn.Conv2d(c, w, 1) for c in (w, 2 * w, 4 * w))
        self.mix = ConvBNReLU(3 * w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, wd) = pad_to_multiple(x, 4)
        f1 = self.stage1(x)
        f2 = self.stage2(self.pool(f1))
        f3 = self.stage3(self.pool(f2))
        cols = [
            self.proj[0](f1),
            upsample_like(self.proj[1](f2), f1),
            upsample_like(self.proj[2](f3), f1),
        ]
        return self.head(self.mix(torch.cat(cols, dim=1)))[..., :h, :wd]


@register_model("starnet")
def starnet(in_channels: int = 1, num_classes: int = 2, base_width: int = 32) -> StarNet:
    """StarNet (Xue et al. 2020): light three-scale fully convolutional pixel classifier."""
    return StarNet(in_channels, num_classes, base_width)
