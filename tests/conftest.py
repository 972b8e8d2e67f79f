"""Shared pytest configuration: CPU only, quiet plotting, shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def _gpu_selected(markexpr: str) -> bool:
    """True when ``-m`` selects the gpu tier (``-m gpu``, ``-m "gpu and not slow"``)."""
    return "gpu" in markexpr and "not gpu" not in markexpr


def pytest_configure(config: pytest.Config) -> None:
    # CPU only (reproducible numbers, no GPU contention) unless the run asks for the gpu
    # tier (`-m gpu`, `make test-gpu`) or CUDA_VISIBLE_DEVICES is set explicitly
    if not _gpu_selected(config.getoption("markexpr") or ""):
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip when no CUDA device is visible."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    why = "no CUDA device" + (" visible (run `make test-gpu` / pytest -m gpu)" if hidden else "")
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=why))


REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Folder of real FITS frames beside the checkout; skips the test when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real frames not available at {REAL_DATA}")
    return REAL_DATA
