"""The fast ECSV writer writes the same text as astropy's and reads back identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.table import MaskedColumn, Table

from atd_dl.io.ecsv import ecsv_text, write_ecsv


def catalog_like(n: int = 500) -> Table:
    rng = np.random.default_rng(4)
    t = Table(meta={"threshold": 0.75, "model": "atd_unet", "note": "a b: c"})
    t["id"] = np.arange(1, n + 1)
    t["x"] = rng.uniform(0, 1600, n) * u.pix
    t["x"].description = "0-based column (pixel centre = integer)"
    t["flux"] = rng.lognormal(3, 2, n) * u.electron
    t["flux"][:6] = [np.nan, np.inf, -np.inf, 1e-30, 1.5e22, 0.1]
    t["peak"] = rng.normal(0, 50, n).astype(np.float32)
    t["peak"][:3] = [np.nan, np.float32(0.1), np.float32(3e38)]
    t["flags"] = rng.integers(0, 2048, n).astype(np.int32)
    t["good"] = rng.random(n) > 0.5
    return t


def test_text_is_astropy_text(tmp_path: Path) -> None:
    table = catalog_like()
    reference = tmp_path / "astropy.ecsv"
    table.write(reference, format="ascii.ecsv")
    ours = tmp_path / "ours.ecsv"
    write_ecsv(table, ours)
    assert ours.read_bytes() == reference.read_bytes()
    back = Table.read(ours, format="ascii.ecsv")
    for name in table.colnames:
        assert back[name].dtype == table[name].dtype
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(table[name]))
    assert back["flux"].unit == u.electron and back.meta == table.meta


@pytest.mark.parametrize("n", [0, 1])
def test_short_tables(n: int) -> None:
    table = catalog_like(10)[:n]
    import io

    buf = io.StringIO()
    table.write(buf, format="ascii.ecsv")
    assert ecsv_text(table) == buf.getvalue()


def test_other_columns_fall_back_to_astropy() -> None:
    import io

    table = catalog_like(20)
    table["name"] = [f"star {i}" for i in range(20)]  # spaces: quoted by astropy
    table["m"] = MaskedColumn(np.arange(20.0), mask=np.arange(20) % 3 == 0)
    table["x"].info.format = ".2f"
    buf = io.StringIO()
    table.write(buf, format="ascii.ecsv")
    assert ecsv_text(table) == buf.getvalue()
