"""Name → network registry: ``register_model``, ``build_model``, ``list_models``.

Every registered factory accepts the common keyword arguments ``in_channels``
(1 = the stretched image; 3 = image + normalised RMS + bad-pixel mask),
``num_classes`` (2 = two-class logits for cross-entropy, 1 = a single logit for
a sigmoid) and ``base_width`` (channels of the first level).

``build_model`` records what it built on the module as ``model.model_spec =
{"name": ..., "kwargs": {...}}`` (all defaults filled in), so a trained network
can be written to a model folder and rebuilt from its ``config.json``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = [
    "register_model",
    "build_model",
    "list_models",
    "model_factory",
    "model_summary_line",
    "get_model_spec",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class/function decorator adding a network factory under ``name``."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def _ensure_loaded() -> None:
    # importing the modules runs their @register_model decorators
    from atd_dl.models import dnanet, starnet, unet  # noqa: F401


def list_models() -> list[str]:
    """Sorted names of all registered networks."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name``; unknown names raise ``KeyError`` listing valid ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; valid names: {', '.join(sorted(_REGISTRY))}"
        ) from None


def _plain(value: Any) -> Any:
    """Turn OmegaConf containers / tuples into JSON-friendly Python values."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` with ``kwargs``.

    Raises ``KeyError`` (listing valid names) for an unknown name and ``TypeError``
    for a keyword the network does not take.
    """
    factory = model_factory(name)
    kwargs = {k: _plain(v) for k, v in kwargs.items()}
    sig = inspect.signature(factory)
    try:
        bound = sig.bind(**kwargs)
    except TypeError as err:
        raise TypeError(f"model {name!r}: {err}") from None
    bound.apply_defaults()
    model = factory(**kwargs)
    object.__setattr__(model, "model_spec", {"name": name, "kwargs": dict(bound.arguments)})
    return model


def get_model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name", "kwargs"}`` recorded by :func:`build_model`; ``KeyError`` if absent."""
    spec = getattr(model, "model_spec", None)
    if not isinstance(spec, dict):
        raise KeyError(f"{type(model).__name__} was not built with build_model (no model_spec)")
    return spec


def model_summary_line(name: str) -> str:
    """First line of the factory docstring (used by ``atd-dl models``)."""
    doc = inspect.getdoc(model_factory(name)) or ""
    return doc.splitlines()[0] if doc else ""
