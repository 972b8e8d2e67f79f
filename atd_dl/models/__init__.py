"""Plain PyTorch networks (no Lightning), their registry and model-folder I/O.

>>> from atd_dl.models import build_model, list_models
>>> net = build_model("atd_unet", base_width=16)
"""

from atd_dl.models.inference import logits_to_prob, predict_proba
from atd_dl.models.registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model", "predict_proba", "logits_to_prob"]
