"""Make a subpackage callable, so ``atd_dl.detect(...)`` and ``atd_dl.evaluate(...)`` run the
Python API (:mod:`atd_dl.api`) while ``atd_dl.detect`` stays the ``atd_dl/detect`` package.

A package attribute cannot be both a function and a subpackage: importing
``atd_dl.detect.pipeline`` sets ``atd_dl.detect`` to the subpackage. Giving the
subpackage's module object a ``__call__`` keeps both meanings consistent whatever was
imported first.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call runs ``atd_dl.api.<__api_name__>``."""

    __api_name__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        api = importlib.import_module("atd_dl.api")
        return getattr(api, self.__api_name__)(*args, **kwargs)


def make_callable(module_name: str, api_name: str) -> None:
    """Turn the (already imported) module ``module_name`` into a :class:`CallableModule`
    calling :func:`atd_dl.api.<api_name>`."""
    module = sys.modules[module_name]
    module.__class__ = CallableModule
    module.__api_name__ = api_name  # type: ignore[attr-defined]
