"""Name → baseline class registry and factory."""

from __future__ import annotations

from typing import Any

from atd_dl.baselines.base import BaseFinder
from atd_dl.baselines.daofind import DAOFindFinder
from atd_dl.baselines.psphot import PsphotFinder
from atd_dl.baselines.sep_finder import SepFinder
from atd_dl.baselines.sextractor import SExtractorFinder
from atd_dl.baselines.twomass import TwoMassFinder

__all__ = ["BASELINES", "available_baselines", "get_baseline"]

#: registered baselines; add an entry to make a new finder available everywhere
BASELINES: dict[str, type[BaseFinder]] = {
    "sextractor": SExtractorFinder,
    "sep": SepFinder,
    "daofind": DAOFindFinder,
    "twomass": TwoMassFinder,
    "psphot": PsphotFinder,
}


def available_baselines() -> list[str]:
    """Names accepted by :func:`get_baseline`."""
    return sorted(BASELINES)


def get_baseline(name: str, **params: Any) -> BaseFinder:
    """Instantiate the baseline ``name`` with keyword ``params``.

    Raises ``KeyError`` naming the valid baselines for an unknown name, and
    ``TypeError`` for a parameter the baseline does not have.
    """
    key = name.lower().strip()
    if key not in BASELINES:
        raise KeyError(
            f"unknown baseline {name!r}; choose one of: {', '.join(available_baselines())}"
        )
    return BASELINES[key](**params)
