"""ATD-DL: deep-learning detection of faint point sources in astronomical images.

Python API (imported on first use, so ``import atd_dl`` stays light)::

    import atd_dl
    image, truth, header = atd_dl.simulate(seed=1, size=512)
    catalog = atd_dl.detect(image, header=header)   # astropy QTable with units
    metrics = atd_dl.evaluate(catalog, truth)       # precision, recall, f1, ...

``atd_dl.detect``, ``atd_dl.load_model``, ``atd_dl.simulate`` and ``atd_dl.evaluate`` are
documented in :mod:`atd_dl.api`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "detect", "evaluate", "load_model", "simulate"]

# name -> module that provides it; ``detect`` / ``evaluate`` are the callable subpackages
_LAZY = {
    "detect": "atd_dl.detect",
    "evaluate": "atd_dl.evaluate",
    "load_model": "atd_dl.api",
    "simulate": "atd_dl.api",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'atd_dl' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return module if name in ("detect", "evaluate") else getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
