"""Helpers shared by the ``bench_*.py`` scripts (run as scripts: ``from _common import ...``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[Any, float, float]:
    """Call ``fn`` ``repeat`` times: ``(result, best wall seconds, CPU seconds of that run)``."""
    best: tuple[Any, float, float] = (None, float("inf"), float("inf"))
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best[1]:
            best = (out, wall, cpu)
    return best
