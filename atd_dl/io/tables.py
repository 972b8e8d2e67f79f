"""One policy for rows with bad positions in every table read (reference catalogs,
detection tables, truth tables).

Rows whose position columns are NaN or infinite are dropped, counted and warned once,
naming the file and the count; a non-empty table where *every* row is bad is an error
(:class:`~atd_dl.errors.InputError`). An empty table stays empty (the caller decides).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table

from atd_dl.errors import InputError

__all__ = ["drop_nonfinite_rows", "finite_rows"]

log = logging.getLogger(__name__)


def finite_rows(table: Table, columns: Sequence[str], path: str | Path | None = None) -> np.ndarray:
    """Boolean mask: rows whose ``columns`` are all finite numbers (masked = bad)."""
    good = np.ones(len(table), dtype=bool)
    for name in columns:
        col = table[name]
        if isinstance(col, MaskedColumn):
            good &= ~np.asarray(col.mask, dtype=bool)
            col = col.filled(np.nan) if col.dtype.kind in "fc" else col.filled(0)
        try:
            values = np.asarray(col, dtype=float)
        except (TypeError, ValueError):
            raise InputError(
                path if path is not None else table.meta.get("path"),
                f"column {name} is not numeric ({col.dtype})",
            ) from None
        good &= np.isfinite(values)
    return good


def drop_nonfinite_rows(
    table: Table,
    columns: Sequence[str],
    path: str | Path | None = None,
    *,
    what: str = "rows",
) -> Table:
    """``table`` without the rows whose ``columns`` are NaN/inf (see the module docstring).

    Warns ``"<path>: dropped N of M rows with NaN/inf <cols>"``; raises InputError when all
    of a non-empty table's rows are bad.
    """
    n = len(table)
    if n == 0:
        return table
    good = finite_rows(table, columns, path)
    n_bad = int(n - good.sum())
    if n_bad == 0:
        return table
    cols = "/".join(columns)
    name = path if path is not None else table.meta.get("path", "table")
    if n_bad == n:
        raise InputError(path, f"all {n} {what} have NaN/inf {cols}; nothing usable")
    log.warning("%s: dropped %d of %d %s with NaN/inf %s", name, n_bad, n, what, cols)
    out = table[good]
    out.meta["n_dropped_nonfinite"] = n_bad
    return out
