"""Writing and reading detection catalogs (FITS binary table + ECSV), with provenance.

Both formats carry the same columns (``docs/DESIGN.md``: ``id, x, y, x_err, y_err, ra,
dec, flux, flux_err, snr, area, circularity, peak, prob, flags, parent``; x, y 0-based
pixels, pixel centre = integer) and the same metadata: model name and source, input file
name and SHA-256, ATD-DL version, threshold, and a configuration summary. The FITS header
also documents every flag bit (``FLAGBITn`` cards). Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from atd_dl.detect.flags import flag_header_cards
from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_output

# metadata key -> (FITS keyword, comment)
FITS_KEYS: dict[str, tuple[str, str]] = {
    "model": ("MODEL", "network name"),
    "model_path": ("MODELSRC", "model folder or checkpoint"),
    "threshold": ("THRESH", "probability threshold"),
    "threshold_source": ("THRSRC", "where the threshold came from"),
    "input_file": ("INFILE", "input frame"),
    "input_sha256": ("INSHA256", "SHA-256 of the input file"),
    "hdu": ("INHDU", "HDU of the input frame"),
    "atd_dl_version": ("ATDVERS", "ATD-DL version"),
    "flux_unit": ("FLUXUNIT", "unit of flux, flux_err, peak"),
    "gain": ("GAIN", "[e-/ADU] gain used"),
    "fwhm_px": ("FWHM", "[px] PSF FWHM used (deblending, aperture)"),
    "fwhm_source": ("FWHMSRC", "measured / header keyword / default"),
    "fwhm_nstars": ("FWHMNST", "stars the FWHM was measured on"),
    "aper_rad": ("APERRAD", "[px] photometry aperture radius"),
    "bkg_rms": ("BKGRMS", "median background rms (flux unit)"),
    "n_sources": ("NSOURCES", "number of sources"),
    "n_comp": ("NCOMP", "connected components before deblending"),
    "has_wcs": ("HASWCS", "ra/dec from the frame WCS"),
    "calibration": ("CALIB", "master frames applied"),
    "device": ("DEVICE", "inference device"),
    "date_obs": ("DATE-OBS", "start of exposure of the input frame"),
    "pixel_convention": ("PIXCONV", "x, y pixel convention"),
    "config": ("CONFIG", "configuration summary (JSON)"),
}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def catalog_hdu(table: Table, meta: dict[str, Any] | None = None) -> fits.BinTableHDU:
    """Binary-table HDU of ``table`` with metadata cards and the flag-bit documentation."""
    meta = {**table.meta, **(meta or {})}
    plain = Table(table, copy=False)
    plain.meta = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        hdu = fits.table_to_hdu(plain)
        hdu.name = "CATALOG"
        for key, value in meta.items():
            value = _plain(value)
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                continue
            if key in FITS_KEYS:
                kw, comment = FITS_KEYS[key]
                short = not isinstance(value, str) or len(value) + len(comment) < 60
                hdu.header[kw] = (value, comment) if short else value
            elif isinstance(value, (bool, int, float, str)):
                kw = key.upper().replace("-", "_")
                if len(kw) > 8:
                    kw = f"HIERARCH ATD {kw}"
                hdu.header[kw] = value
        for kw, value, comment in flag_header_cards():
            hdu.header[kw] = (value, comment)
    return hdu


def write_catalog(
    table: Table,
    fits_path: str | Path | None,
    ecsv_path: str | Path | None = None,
    *,
    meta: dict[str, Any] | None = None,
    primary_header: fits.Header | None = None,
) -> list[Path]:
    """Write ``table`` as a FITS binary table (HDU 1 ``CATALOG``) and/or an ECSV file.

    ``meta`` is merged into the table metadata (see :data:`FITS_KEYS` for the FITS
    keywords). ``primary_header`` (e.g. provenance cards) goes to the FITS primary HDU.
    Both files are written atomically; returns the paths written.
    """
    written: list[Path] = []
    meta = {**table.meta, **(meta or {})}
    if fits_path is not None:
        target = Path(fits_path)
        hdul = fits.HDUList([fits.PrimaryHDU(header=primary_header), catalog_hdu(table, meta)])
        with atomic_output(target) as tmp:
            hdul.writeto(tmp, checksum=True)
        written.append(target)
    if ecsv_path is not None:
        target = Path(ecsv_path)
        out = Table(table, copy=False)
        out.meta = {k: _plain(v) for k, v in meta.items() if v is not None}
        out.meta["flag_bits"] = {name: value for name, value, _ in _flag_list()}
        with atomic_output(target) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            out.write(tmp, format="ascii.ecsv")
        written.append(target)
    return written


def _flag_list() -> list[tuple[str, int, str]]:
    return [(c[2].split(":")[0], c[1], c[2]) for c in flag_header_cards()]


def read_catalog(path: str | Path) -> Table:
    """Read a catalog written by :func:`write_catalog` (``.fits`` or ``.ecsv``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "catalog not found")
    try:
        if p.suffix.lower() == ".ecsv":
            return Table.read(p, format="ascii.ecsv")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            return Table.read(p, hdu="CATALOG", format="fits")
    except Exception as err:  # astropy raises many types for corrupt files
        raise InputError(p, f"cannot read catalog ({str(err).splitlines()[0]})") from None
