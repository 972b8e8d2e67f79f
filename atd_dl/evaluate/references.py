"""Reference sets for evaluation: simulation truth or a catalog projected through the WCS.

Pixel convention: 0-based, pixel centre = integer, ``x`` = column, ``y`` = row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from atd_dl.errors import InputError
from atd_dl.io.paths import FITS_SUFFIXES, frame_stem

__all__ = [
    "References",
    "TestFrame",
    "detections_xy",
    "load_test_set",
    "read_table",
    "references_from_catalog",
    "references_from_truth",
    "sextractor_xy_columns",
]

log = logging.getLogger(__name__)

#: SExtractor pixel columns (1-based), best first: windowed, then isophotal barycentre
SEXTRACTOR_XY = (("XWIN_IMAGE", "YWIN_IMAGE"), ("X_IMAGE", "Y_IMAGE"))

TABLE_SUFFIXES = (".ecsv", ".csv", ".fits", ".fit", ".fits.gz", ".vot", ".xml", ".txt", ".dat")


@dataclass
class References:
    """Reference set A of one frame.

    ``xy`` [M, 2] pixel positions; ``snr`` [M] the SNR that defines G (true SNR for a
    simulation, 3×3-aperture SNR for a catalog); ``target`` [M] True for sources that may
    enter G (stars, not trails); ``in_catalog`` [M] True for sources of the base catalog
    (used by the growth rate); ``mag`` [M] magnitudes when known (NaN otherwise).
    """

    xy: np.ndarray
    snr: np.ndarray
    target: np.ndarray
    in_catalog: np.ndarray
    mag: np.ndarray
    source: str = "truth"

    def __len__(self) -> int:
        return len(self.xy)


@dataclass(frozen=True)
class TestFrame:
    """One frame of a simulated test set (``atd-dl simulate`` layout)."""

    name: str
    frame: Path
    truth: Path | None
    catalog: Path | None


def read_table(path: str | Path) -> Table:
    """Read an astropy-readable table (ECSV, CSV, FITS, VOTable, ASCII); raise InputError.

    Of a FITS-LDAC file (SExtractor ``CATALOG_TYPE FITS_LDAC``) the ``LDAC_OBJECTS`` table
    is read.
    """
    from atd_dl.io.catalogs import ldac_objects_hdu

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    name = path.name.lower()
    fmt = None
    if name.endswith(".csv"):
        fmt = "ascii.csv"
    elif name.endswith(".ecsv"):
        fmt = "ascii.ecsv"
    hdu = ldac_objects_hdu(path) if fmt is None and ".fit" in name else None
    try:
        if hdu is not None:
            return Table.read(path, hdu=hdu)
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as err:  # astropy raises many types for unreadable tables
        raise InputError(path, f"cannot read table ({type(err).__name__}: {err})") from err


def _column(table: Table, names: tuple[str, ...], path: Path | str | None, what: str) -> str:
    lower = {c.lower(): c for c in table.colnames}
    for n in names:
        if n in table.colnames:
            return n
        if n.lower() in lower:
            return lower[n.lower()]
    raise InputError(
        path, f"no {what} column (looked for {', '.join(names)}; has {', '.join(table.colnames)})"
    )


def detections_xy(
    table: Table,
    *,
    x_col: str = "x",
    y_col: str = "y",
    one_based: bool = False,
    path: Path | str | None = None,
) -> np.ndarray:
    """Pixel positions [N, 2] (0-based) from a detection table with ``x_col``/``y_col``.

    ``one_based=True`` converts FITS/SExtractor-style 1-based positions (``X_IMAGE``).
    Rows with NaN/inf positions are dropped and counted in one warning; a table where
    every row is bad is an InputError (:func:`atd_dl.io.tables.drop_nonfinite_rows`).
    """
    from atd_dl.io.tables import drop_nonfinite_rows

    xc = _column(table, (x_col,), path, "x")
    yc = _column(table, (y_col,), path, "y")
    table = drop_nonfinite_rows(table, (xc, yc), path, what="rows")
    xy = np.column_stack([np.asarray(table[xc], float), np.asarray(table[yc], float)])
    return xy - 1.0 if one_based else xy


def sextractor_xy_columns(table: Table) -> tuple[str, str] | None:
    """The 1-based SExtractor pixel columns of ``table`` (``XWIN_IMAGE``/``YWIN_IMAGE``,
    else ``X_IMAGE``/``Y_IMAGE``; any case) when it has no ``x``/``y``; None otherwise."""
    lower = {c.lower(): c for c in table.colnames}
    if "x" in lower and "y" in lower:
        return None
    for xc, yc in SEXTRACTOR_XY:
        if xc.lower() in lower and yc.lower() in lower:
            return lower[xc.lower()], lower[yc.lower()]
    return None


def _sextractor_snr(table: Table) -> np.ndarray | None:
    """``FLUX_AUTO / FLUXERR_AUTO`` (else ``FLUX_APER / FLUXERR_APER``, first aperture)."""
    lower = {c.lower(): c for c in table.colnames}
    for f, e in (("flux_auto", "fluxerr_auto"), ("flux_aper", "fluxerr_aper")):
        if f in lower and e in lower:
            flux = np.asarray(table[lower[f]], float)
            err = np.asarray(table[lower[e]], float)
            if flux.ndim > 1:
                flux, err = flux[:, 0], err[:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(err > 0, flux / err, 0.0)
    return None


def references_from_truth(
    table: Table,
    *,
    path: Path | str | None = None,
    snr_col: str | None = None,
    target_kinds: tuple[str, ...] = ("star",),
) -> References:
    """References from a simulator truth table (``x, y, snr_true, in_catalog, kind``) or a
    SExtractor catalog (FITS-LDAC too): ``XWIN_IMAGE``/``YWIN_IMAGE`` (else ``X_IMAGE``/
    ``Y_IMAGE``, 1-based, converted to 0-based), SNR ``FLUX_AUTO / FLUXERR_AUTO``.

    A = every row; rows whose ``kind`` is not in ``target_kinds`` (trails) stay in A but
    never enter G. A table without ``kind`` treats every row as a target; without
    ``in_catalog`` every row counts as catalogued.
    """
    from atd_dl.io.tables import drop_nonfinite_rows

    sex = sextractor_xy_columns(table)
    xc, yc = sex or (_column(table, ("x",), path, "x"), _column(table, ("y",), path, "y"))
    table = drop_nonfinite_rows(table, (xc, yc), path)
    xy = detections_xy(table, x_col=xc, y_col=yc, one_based=sex is not None, path=path)
    n = len(xy)
    sex_snr = _sextractor_snr(table) if sex is not None and snr_col is None else None
    if sex_snr is not None:
        snr = sex_snr
    else:
        sc = _column(table, (snr_col,) if snr_col else ("snr_true", "snr"), path, "SNR")
        snr = np.asarray(table[sc], dtype=float)
    if "kind" in table.colnames:
        kinds = np.char.strip(np.asarray(table["kind"]).astype(str))
        target = np.isin(kinds, target_kinds)
    else:
        target = np.ones(n, dtype=bool)
    in_cat = np.asarray(table["in_catalog"], bool) if "in_catalog" in table.colnames else target
    mag = np.asarray(table["mag"], float) if "mag" in table.colnames else np.full(n, np.nan)
    return References(xy, snr, target, in_cat, mag, source="truth")


def references_from_catalog(
    catalog: Table,
    frame: Any,
    *,
    path: Path | str | None = None,
    snr_box: int = 3,
) -> References:
    """References from a Gaia-like catalog projected through ``frame.wcs``.

    The catalog is read with the canonical columns (``ra, dec, mag``), propagated to the
    frame epoch and projected with :func:`atd_dl.io.catalogs.project_catalog`; the SNR
    defining G is the fixed ``snr_box``×``snr_box`` aperture SNR of
    :func:`atd_dl.labels.snr.box_snr` measured on ``frame.data``.
    """
    from atd_dl.io.catalogs import project_catalog
    from atd_dl.labels.snr import box_snr

    wcs = getattr(frame, "wcs", None)
    if wcs is None:
        raise InputError(
            getattr(frame, "path", path), "frame has no celestial WCS; cannot project the catalog"
        )
    gain = getattr(frame, "gain", None)
    if gain is None:
        log.warning(
            "%s: no GAIN in header; assuming 1 e-/ADU for the 3x3 SNR", getattr(frame, "path", "")
        )
        gain = 1.0
    proj = project_catalog(catalog, wcs, frame.shape, epoch=getattr(frame, "date_obs", None))
    x = np.asarray(proj["x"], float)
    y = np.asarray(proj["y"], float)
    if len(x):
        snr = box_snr(
            frame.data,
            x,
            y,
            gain=float(gain),
            box=snr_box,
            bad=frame.mask,
            saturated=frame.saturated,
        ).snr
    else:
        snr = np.zeros(0)
    n = len(x)
    mag = np.asarray(proj["mag"], float) if "mag" in proj.colnames else np.full(n, np.nan)
    return References(
        np.column_stack([x, y]) if n else np.zeros((0, 2)),
        np.asarray(snr, float),
        np.ones(n, dtype=bool),
        np.ones(n, dtype=bool),
        mag,
        source="catalog",
    )


def _find(folder: Path, stem: str) -> Path | None:
    if not folder.is_dir():
        return None
    for suf in TABLE_SUFFIXES:
        p = folder / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def load_test_set(folder: str | Path, *, limit: int | None = None) -> list[TestFrame]:
    """List the frames of a test set: ``frames/*.fits`` with ``truth/`` and ``catalogs/``.

    A folder of FITS files without ``frames/`` is accepted too (truth/catalog looked up
    beside it). Raises InputError when no frame is found or no frame has a reference.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "test set folder not found")
    frames_dir = folder / "frames" if (folder / "frames").is_dir() else folder
    paths = sorted(
        p for p in frames_dir.iterdir() if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES)
    )
    if not paths:
        raise InputError(frames_dir, "no FITS frames found")
    out = []
    for p in paths:
        stem = frame_stem(p, FITS_SUFFIXES + TABLE_SUFFIXES)
        out.append(
            TestFrame(stem, p, _find(folder / "truth", stem), _find(folder / "catalogs", stem))
        )
    if not any(f.truth or f.catalog for f in out):
        raise InputError(folder, "no truth/ or catalogs/ tables matching the frames")
    return out[:limit] if limit else out
