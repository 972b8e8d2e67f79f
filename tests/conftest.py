"""Shared pytest configuration: CPU only, quiet plotting, shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Folder of real FITS frames beside the checkout; skips the test when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real frames not available at {REAL_DATA}")
    return REAL_DATA
