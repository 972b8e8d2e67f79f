"""Classical source-detection baselines with one common interface.

``get_baseline(name, **params)`` returns a finder; ``finder(data, mask=..., wcs=...,
threshold=...)`` returns the standard detection catalog (0-based x, y) and
``finder.sweep_values("dense" | "paper")`` its threshold sweep. See docs/baselines.md.
"""

from atd_dl.baselines.base import (
    CATALOG_COLUMNS,
    BaseFinder,
    BaselineUnavailable,
    Finder,
    make_catalog,
)
from atd_dl.baselines.daofind import DAOFindFinder
from atd_dl.baselines.psphot import PsphotFinder
from atd_dl.baselines.registry import BASELINES, available_baselines, get_baseline
from atd_dl.baselines.sep_finder import SepFinder
from atd_dl.baselines.sextractor import SExtractorFinder, find_sextractor
from atd_dl.baselines.twomass import TwoMassFinder, deduplicate

__all__ = [
    "BASELINES",
    "CATALOG_COLUMNS",
    "BaseFinder",
    "BaselineUnavailable",
    "DAOFindFinder",
    "Finder",
    "PsphotFinder",
    "SExtractorFinder",
    "SepFinder",
    "TwoMassFinder",
    "available_baselines",
    "deduplicate",
    "find_sextractor",
    "get_baseline",
    "make_catalog",
]
