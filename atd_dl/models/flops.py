"""Parameter and FLOP counts of the registered networks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from atd_dl.models.registry import build_model, get_model_spec, list_models, model_summary_line

__all__ = ["count_parameters", "count_flops", "model_table", "format_table"]


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 512, 512)) -> int:
    """Forward-pass FLOPs (1 multiply-add = 2 FLOPs) for one input of ``input_shape``.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and
    matrix products; element-wise ops, pooling and BatchNorm are not counted) on
    the model in eval mode.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(input_shape, device=device)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def model_table(
    names: list[str] | None = None, *, size: int = 512, in_channels: int = 1, **kwargs: Any
) -> list[dict[str, Any]]:
    """One row per model: name, parameters, GFLOPs per ``size``² input, description.

    Networks are built on the ``meta`` device (no memory, no arithmetic), so the
    table is quick even for full-width models.
    """
    rows = []
    for name in names or list_models():
        with torch.device("meta"):
            model = build_model(name, in_channels=in_channels, **kwargs)
            flops = count_flops(model, (1, in_channels, size, size))
        rows.append(
            {
                "name": name,
                "params": count_parameters(model),
                "gflops": flops / 1e9,
                "kwargs": get_model_spec(model)["kwargs"],
                "description": model_summary_line(name),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]], size: int = 512) -> str:
    """Markdown table of :func:`model_table` rows."""
    lines = [
        f"| model | base width | parameters | GFLOPs / {size}² | description |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['kwargs'].get('base_width', '')} | {r['params'] / 1e6:.3f} M "
            f"| {r['gflops']:.1f} | {r['description']} |"
        )
    return "\n".join(lines)
