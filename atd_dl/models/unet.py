"""U-Net for per-pixel point-source segmentation, with and without the FEM.

Architecture (He et al. 2026, §3.1, Fig. 7), widths for ``base_width=64``:

* encoder: a double-conv block (two 3×3 conv-BN-ReLU) at full resolution, then
  ``depth`` stages of 2×2 max-pool + double conv, each doubling the width:
  64 → 128 → 256 → 512 for the default ``depth=3``. The paper lists exactly
  these four widths and calls it a four-stage encoder, so there is **no extra
  1024-channel bottleneck level**; ``depth=4`` gives the classic
  Ronneberger layout (64 … 1024) if wanted.
* decoder: bilinear ×2 up-sampling, concatenation with the encoder feature of
  the same scale (skip connection) and a double conv back to that level's width.
* head: 1×1 convolution to ``num_classes`` logits per pixel.

``atd_unet`` replaces the first encoder block by :class:`FEMDoubleConv`
(Feature Enhancement Module followed by one 3×3 conv-BN-ReLU).

Inputs whose height/width are not multiples of ``2**depth`` are padded at the
bottom/right (edge values) and the output is cropped back, so any tile size works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atd_dl.models.blocks import DoubleConv, pad_to_multiple
from atd_dl.models.fem import FEMDoubleConv
from atd_dl.models.registry import register_model

__all__ = ["UNet", "unet", "atd_unet", "level_widths"]


class _Up(nn.Module):
    """Bilinear ×2 up-sampling, skip concatenation, double conv."""

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(deep_channels + skip_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, deep], dim=1))


def level_widths(base_width: int, depth: int, widths: Sequence[int] | None = None) -> list[int]:
    """Channel width of each level, full resolution first.

    ``widths`` given: those (``depth`` is then ``len(widths) - 1``); else the U-Net rule
    ``base_width · 2**level`` for ``depth + 1`` levels. Slower-growing widths
    (``[16, 24, 32, 48]``) keep the receptive field and cut the cost per pixel, most of
    which sits in the deep levels' decoders.
    """
    if widths is not None:
        out = [int(w) for w in widths]
        if len(out) < 2 or min(out) < 1:
            raise ValueError(f"widths needs >= 2 positive entries, got {list(widths)}")
        return out
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    return [base_width * 2**i for i in range(depth + 1)]


class UNet(nn.Module):
    """U-Net with an optional Feature Enhancement Module in the first encoder block."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_width: int = 64,
        depth: int = 3,
        fem: bool = False,
        fem_dw_multiplier: int = 1,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        widths = level_widths(base_width, depth, widths)
        depth = len(widths) - 1
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.depth = depth
        self.num_classes = num_classes
        self.widths = widths
        first = (
            FEMDoubleConv(in_channels, widths[0], fem_dw_multiplier)
            if fem
            else DoubleConv(in_channels, widths[0])
        )
        self.encoder = nn.ModuleList([first])
        self.encoder.extend(DoubleConv(widths[i - 1], widths[i]) for i in range(1, depth + 1))
        self.pool = nn.MaxPool2d(2)
        # decoder from the deepest level upwards
        self.decoder = nn.ModuleList(
            _Up(widths[i + 1], widths[i], widths[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, 2**self.depth)
        skips = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up in self.decoder:
            x = up(x, skips.pop())
        return self.head(x)[..., :h, :w]


@register_model("unet")
def unet(in_channels: int = 1, num_classes: int = 2, base_width: int = 64, depth: int = 3) -> UNet:
    """U-Net baseline: double-conv encoder 64→128→256→512, bilinear decoder (FEM ablation base)."""
    return UNet(in_channels, num_classes, base_width, depth, fem=False)


@register_model("atd_unet")
def atd_unet(
    in_channels: int = 1,
    num_classes: int = 2,
    base_width: int = 64,
    depth: int = 3,
    fem_dw_multiplier: int = 1,
    widths: Sequence[int] | None = None,
) -> UNet:
    """ATD-DL U-Net: U-Net with the Feature Enhancement Module in the first encoder block.

    ``widths`` (e.g. ``[16, 24, 32, 48]``) overrides the doubling rule (:func:`level_widths`).
    """
    return UNet(
        in_channels,
        num_classes,
        base_width,
        depth,
        fem=True,
        fem_dw_multiplier=fem_dw_multiplier,
        widths=widths,
    )
