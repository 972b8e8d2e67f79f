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


def read_manifest(dataset: str | Path, *, split: str | None = None) -> Table:
    """Read ``<dataset>/manifest.csv`` as a Table (optionally only one ``split``)."""
    path = Path(dataset)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.exists():
        raise InputError(path, "manifest not found (run `atd-dl prep` first)")
    table = Table.read(path, format="ascii.csv")
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        table = table[table["split"] == split]
    return table
