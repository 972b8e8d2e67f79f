"""Plain PyTorch networks (no Lightning), their registry and model-folder I/O.

>>> from atd_dl.models import build_model, list_models
>>> net = build_model("atd_unet", base_width=16)

Names are imported on first use, so ``atd_dl.models.model_folder`` can read a model
folder's metadata without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_model": "atd_dl.models.registry",
    "list_models": "atd_dl.models.registry",
    "register_model": "atd_dl.models.registry",
    "predict_proba": "atd_dl.models.inference",
    "logits_to_prob": "atd_dl.models.inference",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'atd_dl.models' has no attribute {name!r}")
