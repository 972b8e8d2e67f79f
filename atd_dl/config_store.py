"""Structured configs in Hydra's ConfigStore: the detection dataclasses own the defaults.

``configs/infer.yaml`` takes its ``detect`` and ``postprocess`` sections from the groups
registered here (``detect: default``, ``postprocess: default``), which are built from
:class:`~atd_dl.detect.pipeline.DetectConfig` and
:class:`~atd_dl.detect.config.PostprocessConfig` themselves: a default changes in the
dataclass and nowhere else, and Hydra checks the types and names of overrides
(``postprocess.low_snr=abc`` or ``detect.tiel=512`` are refused at composition).
``atd-dl detect`` leaves unset options to the same dataclass. Call :func:`register_configs`
before composing ``infer.yaml`` (``infer.py`` does on import).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

__all__ = ["register_configs", "structured_node"]


def _omegaconf_type(tp: Any) -> Any:
    """The annotation OmegaConf 2.3 accepts for ``tp``: ``X | None`` -> ``Optional[X]``;
    other unions (``int | str | None``) -> ``Any``."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1:
        return typing.Optional[args[0]]  # noqa: UP045 - OmegaConf 2.3 needs typing.Optional
    return Any


def structured_node(cls: type, exclude: tuple[str, ...] = ()) -> Any:
    """A typed, writable OmegaConf node with the fields and defaults of the dataclass ``cls``
    (all but ``exclude``); a frozen dataclass gives a node that overrides can still set."""
    from omegaconf import OmegaConf

    hints = typing.get_type_hints(cls)
    spec = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        default = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        spec.append((f.name, _omegaconf_type(hints[f.name]), dataclasses.field(default=default)))
    return OmegaConf.structured(dataclasses.make_dataclass(cls.__name__, spec))


def register_configs() -> None:
    """Store the groups ``detect/default`` (every :class:`DetectConfig` field but
    ``postprocess``) and ``postprocess/default`` (every :class:`PostprocessConfig` field)."""
    from hydra.core.config_store import ConfigStore

    from atd_dl.detect.config import PostprocessConfig
    from atd_dl.detect.pipeline import DetectConfig

    store = ConfigStore.instance()
    store.store(
        group="detect", name="default", node=structured_node(DetectConfig, ("postprocess",))
    )
    store.store(group="postprocess", name="default", node=structured_node(PostprocessConfig))
