"""DNA-Net: dense nested attention network (Li et al. 2023, IEEE TIP 32, 1745).

Re-implemented from the paper's description for the ATD-DL comparison:

* **Backbone / nodes**: residual blocks with cascaded channel and spatial
  attention (CBAM-style "Res-CBAM" blocks: two 3×3 conv-BN, channel attention
  from average- and max-pooled descriptors through a shared bottleneck MLP,
  spatial attention from channel-mean and channel-max maps through a 7×7 conv,
  identity or 1×1-projected shortcut).
* **Dense nested interactive module (DNIM)**: UNet++-style grid of nodes
  ``X[i][j]`` (level ``i``, column ``j``). Column 0 is the encoder (2×2 max-pool
  between levels). Node ``X[i][j]`` (``j ≥ 1``) takes all earlier nodes of its
  level, the up-sampled node ``X[i+1][j-1]`` and — the "interactive" part — the
  max-pooled node ``X[i-1][j]`` from the level above.
* **Feature pyramid fusion (FPFM)**: the last node of every level is projected
  by a 1×1 conv to the top width, up-sampled to full resolution and
  concatenated with ``X[0][depth]``; a Res-CBAM block fuses them.
* **Deep supervision**: a 1×1 head on ``X[0][1] … X[0][depth-1]`` and on the
  fused feature. In training mode the network returns the list of all
  ``depth`` outputs (final last); in eval mode (or with ``deep_supervision=False``)
  only the final output. The losses in :mod:`atd_dl.losses` average over a list.

Widths follow Li et al.: ``base_width`` 16 → 16, 32, 64, 128, 256 for ``depth=4``
with two Res-CBAM blocks per encoder stage and per nested node below level 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atd_dl.models.blocks import pad_to_multiple, upsample_like
from atd_dl.models.registry import register_model

__all__ = ["ChannelAttention", "SpatialAttention", "ResCBAMBlock", "DNANet", "dnanet"]


class ChannelAttention(nn.Module):
    """Channel weights from avg- and max-pooled descriptors through a shared 1×1 bottleneck."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """Pixel weights from the channel-mean and channel-max maps through a 7×7 conv."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))


class ResCBAMBlock(nn.Module):
    """Residual block with cascaded channel and spatial attention."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.ca = ChannelAttention(out_channels)
        self.sa = SpatialAttention()
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
            )
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        out = out * self.ca(out)
        out = out * self.sa(out)
        return self.act(out + self.shortcut(x))


def _stack(in_channels: int, out_channels: int, n_blocks: int) -> nn.Sequential:
    blocks = [ResCBAMBlock(in_channels, out_channels)]
    blocks += [ResCBAMBlock(out_channels, out_channels) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class DNANet(nn.Module):
    """Dense nested U-shape with Res-CBAM nodes, pyramid fusion and deep supervision."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_width: int = 16,
        depth: int = 4,
        blocks_per_level: int = 2,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        self.depth = depth
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        w = [base_width * 2**i for i in range(depth + 1)]
        self.widths = w
        self.pool = nn.MaxPool2d(2)
        # nodes[f"{i}_{j}"] = block producing X[i][j]
        nodes: dict[str, nn.Module] = {"0_0": ResCBAMBlock(in_channels, w[0])}
        for i in range(1, depth + 1):
            nodes[f"{i}_0"] = _stack(w[i - 1], w[i], blocks_per_level)
        for j in range(1, depth + 1):
            for i in range(depth - j + 1):
                cin = j * w[i] + w[i + 1] + (w[i - 1] if i > 0 else 0)
                nodes[f"{i}_{j}"] = _stack(cin, w[i], 1 if i == 0 else blocks_per_level)
        self.nodes = nn.ModuleDict(nodes)
        # FPFM: 1×1 projections of the last node of levels 1..depth
        self.project = nn.ModuleList(nn.Conv2d(w[i], w[0], 1) for i in range(1, depth + 1))
        self.fuse = ResCBAMBlock(w[0] * (depth + 1), w[0])
        self.heads = nn.ModuleList(nn.Conv2d(w[0], num_classes, 1) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x, (h, wd) = pad_to_multiple(x, 2**self.depth)
        d = self.depth
        X: dict[tuple[int, int], torch.Tensor] = {(0, 0): self.nodes["0_0"](x)}
        for i in range(1, d + 1):
            X[i, 0] = self.nodes[f"{i}_0"](self.pool(X[i - 1, 0]))
        for j in range(1, d + 1):
            for i in range(d - j + 1):
                ref = X[i, 0]
                parts = [X[i, k] for k in range(j)]
                parts.append(upsample_like(X[i + 1, j - 1], ref))
                if i > 0:
                    parts.append(self.pool(X[i - 1, j]))
                X[i, j] = self.nodes[f"{i}_{j}"](torch.cat(parts, dim=1))
        top = X[0, 0]
        pyramid = [upsample_like(self.project[i - 1](X[i, d - i]), top) for i in range(1, d + 1)]
        fused = self.fuse(torch.cat([*pyramid, X[0, d]], dim=1))
        feats = [X[0, j] for j in range(1, d)] + [fused]
        if self.training and self.deep_supervision:
            return [head(f)[..., :h, :wd] for head, f in zip(self.heads, feats)]
        return self.heads[-1](fused)[..., :h, :wd]


@register_model("dnanet")
def dnanet(
    in_channels: int = 1,
    num_classes: int = 2,
    base_width: int = 16,
    depth: int = 4,
    blocks_per_level: int = 2,
    deep_supervision: bool = True,
) -> DNANet:
    """DNA-Net (Li et al. 2023): dense nested Res-CBAM U-shape with deep supervision."""
    return DNANet(in_channels, num_classes, base_width, depth, blocks_per_level, deep_supervision)
