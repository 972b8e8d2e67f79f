"""Tables of a prepared dataset: ``manifest.csv``, ``labels.csv``, ``table1.csv``.

* ``manifest.csv`` — one row per subfield image (the training index);
* ``labels.csv`` — one row per frame: catalog sources kept / dropped by reason, components;
* ``table1.csv`` — enhancement quality metrics per frame (paper Table 1, Eqs. 4–6).

All are plain CSV with a header line, written atomically.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from astropy.table import Table

from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_write_text

__all__ = [
    "MANIFEST_COLUMNS",
    "LABELS_COLUMNS",
    "TABLE1_COLUMNS",
    "POINTS_COLUMNS",
    "SPLITS",
    "write_csv",
    "read_manifest",
    "read_manifest_rows",
]

SPLITS = ("train", "val", "test")

#: One row per subfield. ``x0, y0``: top-left corner of the subfield in frame pixels;
#: ``ra_center, dec_center``: sky position of the subfield centre (deg, NaN without WCS);
#: counts are of catalog sources / components whose position falls in the subfield.
MANIFEST_COLUMNS = (
    "stem",
    "frame",
    "subfield",
    "split",
    "x0",
    "y0",
    "size",
    "ra_center",
    "dec_center",
    "n_kept",
    "n_kept_blob",
    "n_dropped_snr",
    "n_components",
    "n_components_matched",
    "n_mask_pixels",
    "mask_fraction",
    "psf_fwhm",
    "gain",
    "image",
    "mask",
    "aux",
    "points",
)

#: One row per frame: counts from :class:`atd_dl.labels.LabelResult` plus context.
LABELS_COLUMNS = (
    "frame",
    "test",
    "n_subfields",
    "n_catalog",
    "n_kept",
    "n_kept_component",
    "n_kept_blob",
    "n_kept_saturated",
    "n_dropped_off_frame",
    "n_dropped_edge",
    "n_dropped_masked",
    "n_dropped_saturated",
    "n_dropped_snr",
    "n_components",
    "n_components_matched",
    "n_components_unmatched",
    "n_components_small",
    "n_mask_pixels",
    "psf_fwhm",
    "gain",
    "gain_source",
    "background_adu",
    "background_rms_adu",
    "seconds",
)

TABLE1_COLUMNS = ("frame", "method", "mean", "contrast", "entropy")

#: Columns of ``points/<stem>.csv`` (subfield pixel coordinates, 0-based).
POINTS_COLUMNS = ("x", "y", "snr", "source_id", "mag", "blob", "saturated")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> Path:
    """Write ``rows`` (dicts) with the given ``columns`` as CSV, atomically.

    Missing keys are written empty; floats with 6 significant digits.
    """
    columns = list(columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row[c]) if c in row and row[c] is not None else "" for c in columns])
    return atomic_write_text(path, buf.getvalue())


def read_manifest_rows(dataset: str | Path) -> list[dict[str, str]]:
    """Rows of ``<dataset>/manifest.csv`` as strings (the one manifest reader).

    ``dataset`` is the dataset folder or the CSV file itself. Checks that the columns
    ``stem`` and ``split`` exist and every split is train/val/test; raises
    :class:`~atd_dl.errors.InputError` otherwise.
    """
    path = Path(dataset)
    if path.is_dir():
        path = path / "manifest.csv"
    elif not path.is_file():
        raise InputError(dataset, "dataset folder not found")
    if not path.is_file():
        raise InputError(path, "manifest.csv not found (is this an `atd-dl prep` dataset folder?)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"stem", "split"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(path, f"missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    bad = sorted({r["split"] for r in rows} - set(SPLITS))
    if bad:
        raise InputError(path, f"unknown split value(s) {', '.join(bad)}; expected train/val/test")
    return rows


def read_manifest(dataset: str | Path, *, split: str | None = None) -> Table:
    """:func:`read_manifest_rows` as a Table (optionally only one ``split``).

    Text columns (``stem``, ``frame``, ``subfield``, ``split``) stay strings; the other
    columns are parsed as numbers where possible.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows = read_manifest_rows(dataset)
    if split is not None:
        rows = [r for r in rows if r["split"] == split]
    names = list(rows[0]) if rows else ["stem", "split"]
    text = {"stem", "frame", "subfield", "split"}
    cols = [
        [r[c] for r in rows] if c in text else _parse_column([r[c] for r in rows]) for c in names
    ]
    return Table(cols, names=names) if rows else Table(names=names, dtype=[str] * len(names))


def _parse_column(values: list[str]) -> list[Any]:
    """Integers, else floats (empty -> NaN), else the strings unchanged."""
    try:
        return [int(v) for v in values]
    except ValueError:
        pass
    try:
        return [float(v) if v != "" else float("nan") for v in values]
    except ValueError:
        return values
