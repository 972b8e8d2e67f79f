"""ResNet34 visual-binary classifier for N-band stamps, and its model folder.

The network follows the Gezer et al. recipe (SPEC §9): torchvision ResNet34 without
pretrained weights, the first convolution replaced to take ``in_channels`` stacked bands,
extra convolution layers after the last residual stage for feature extraction, and a
two-class head (0 = single, 1 = binary within the radius).

Stem for small stamps: the ImageNet stem (7x7 stride-2 convolution + max-pool) shrinks a
32 px stamp to 8 px before the first residual block, which blurs close pairs together.
``stem="small"`` uses a 3x3 stride-1 convolution and no max-pool instead (a 32 px stamp
reaches ``layer4`` at 4x4 px); ``stem="auto"`` (default) picks it for stamps up to
``small_stem_max`` px and the ImageNet stem above.

``width=64`` is the torchvision ResNet34 exactly (``torchvision.models.resnet34``);
other widths build the same topology (3-4-6-3 ``BasicBlock`` stages, widths ``w, 2w,
4w, 8w``) with torchvision's ``BasicBlock``, so state-dict keys are identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet34
from torchvision.models.resnet import BasicBlock

from atd_dl.errors import InputError

MODEL_NAME = "binary_resnet34"
CLASS_NAMES = ("single", "binary")


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One residual stage of ``BasicBlock``s (same layout as torchvision's ResNet)."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes),
        )
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class BinaryResNet(nn.Module):
    """ResNet34 two-class stamp classifier.

    Input ``[B, in_channels, S, S]`` float32 (normalised stamps, see
    :func:`atd_dl.binaries.stamps.normalize_stamps`); output logits ``[B, num_classes]``.

    Args:
        in_channels: number of stacked bands.
        num_classes: 2 (single / binary).
        width: channels of the first stage (64 = torchvision ResNet34).
        stem: ``"small"``, ``"imagenet"`` or ``"auto"`` (decided from ``stamp_size``).
        stamp_size: stamp side in px, used by ``stem="auto"``.
        extra_convs: number of extra 3x3 conv-BN-ReLU layers after ``layer4``.
        dropout: dropout before the final linear layer.
        small_stem_max: largest stamp side (px) that gets the small stem under ``"auto"``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        width: int = 64,
        stem: str = "auto",
        stamp_size: int = 32,
        extra_convs: int = 2,
        dropout: float = 0.2,
        small_stem_max: int = 64,
    ) -> None:
        super().__init__()
        if stem not in ("auto", "small", "imagenet"):
            raise ValueError(f"stem must be 'auto', 'small' or 'imagenet', got {stem!r}")
        if in_channels < 1 or width < 1:
            raise ValueError("in_channels and width must be >= 1")
        small = stem == "small" or (stem == "auto" and stamp_size <= small_stem_max)
        self.in_channels = in_channels
        self.num_classes = num_classes
        if width == 64:
            backbone = resnet34(weights=None)
            layers = [backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
        else:
            widths = [width, 2 * width, 4 * width, 8 * width]
            layers, inplanes = [], width
            for planes, blocks, stride in zip(widths, (3, 4, 6, 3), (1, 2, 2, 2)):
                layers.append(_stage(inplanes, planes, blocks, stride))
                inplanes = planes
        if small:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        top = 8 * width
        extra: list[nn.Module] = []
        for _ in range(extra_convs):
            extra += [nn.Conv2d(top, top, 3, padding=1, bias=False), nn.BatchNorm2d(top)]
            extra += [nn.ReLU(inplace=True)]
        self.extra = nn.Sequential(*extra)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(top, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.extra(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def build_binary_model(kwargs: dict[str, Any] | None = None) -> BinaryResNet:
    """Build :class:`BinaryResNet` from a kwargs dict (as stored in ``config.json``)."""
    return BinaryResNet(**(kwargs or {}))


def default_binary_model_dir() -> Path:
    """Folder of the small classifier shipped with the package."""
    return Path(__file__).resolve().parents[1] / "weights" / "binary_default"


def save_binary_model(
    folder: str | Path,
    net: BinaryResNet,
    config: dict[str, Any],
    *,
    metrics: dict[str, Any] | None = None,
    model_card: str | None = None,
    half: bool = True,
) -> Path:
    """Write a model folder: ``model.safetensors``, ``config.json``, ``thresholds.json``,
    optional ``metrics.json`` and ``MODEL_CARD.md``; each file is written atomically.

    ``config`` must hold ``kwargs`` (BinaryResNet arguments) and ``input`` (stamp geometry,
    see :func:`atd_dl.binaries.stamps.StampGeometry.to_dict`); ``threshold`` defaults to 0.5.
    ``half=True`` stores floating tensors as fp16 (loaded back as fp32).
    """
    from safetensors.torch import save_file

    from atd_dl.io.atomic import atomic_output, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"name": MODEL_NAME, "classes": list(CLASS_NAMES), "threshold": 0.5, **config}
    state = {}
    for key, val in net.state_dict().items():
        val = val.detach().cpu()
        if half and val.is_floating_point():
            val = val.half()
        state[key] = val.contiguous()
    with atomic_output(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"name": MODEL_NAME})
    atomic_write_text(folder / "config.json", json.dumps(cfg, indent=2) + "\n")
    thr = {"prob_threshold": float(cfg["threshold"])}
    atomic_write_text(folder / "thresholds.json", json.dumps(thr, indent=2) + "\n")
    if metrics is not None:
        atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    if model_card is not None:
        atomic_write_text(folder / "MODEL_CARD.md", model_card)
    return folder


def load_binary_model(
    folder: str | Path | None = None, *, device: str | torch.device = "cpu"
) -> tuple[BinaryResNet, dict[str, Any]]:
    """Load a model folder (default: the shipped one) → ``(net in eval mode, config dict)``.

    Raises :class:`InputError` when the folder or its files are missing or unreadable.
    """
    from safetensors.torch import load_file

    folder = default_binary_model_dir() if folder is None else Path(folder)
    cfg_path = folder / "config.json"
    weights = folder / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise InputError(
            folder, "not a binary-classifier model folder (needs config.json and model.safetensors)"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(cfg_path, f"invalid JSON ({err.msg})") from None
    if cfg.get("name") != MODEL_NAME:
        raise InputError(cfg_path, f"model name is {cfg.get('name')!r}, expected {MODEL_NAME!r}")
    net = build_binary_model(cfg.get("kwargs"))
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(weights, f"weights do not fit config.json ({first})") from None
    return net.to(device).eval(), cfg
