"""Writing and reading detection catalogs (FITS binary table + ECSV), with provenance.

Both formats carry the same columns (``docs/DESIGN.md``: ``id, x, y, x_err, y_err, ra,
dec, flux, flux_err, snr, area, circularity, peak, prob, flags, parent``; x, y 0-based
pixels, pixel centre = integer) and the same metadata: model name and source, input file
name and SHA-256, ATD-DL version, threshold, and a configuration summary. The FITS header
also documents every flag bit (``FLAGBITn`` cards, ``FLAGVERS`` = the bit assignment's
version). Every column with a unit gets its ``TUNITn`` card -- also units outside the FITS
standard such as ``electron``, written in astropy's generic format and restored by
:func:`read_catalog` -- and its description as the comment of ``TTYPEn`` (as SExtractor
does). Files are written atomically.

Per frame, :func:`write_frame_outputs` writes what an :class:`OutputConfig` asks for
(catalogs, DS9 regions, segmentation and probability maps, overlay PNG) with the
metadata of :func:`catalog_meta`: :class:`~atd_dl.detect.pipeline.Detector` computes,
this module writes. It imports the records of :mod:`atd_dl.detect.frame`, never the
pipeline.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from atd_dl import __version__
from atd_dl.detect.flags import FLAG_VERSION, flag_header_cards
from atd_dl.detect.frame import PreparedFrame
from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_output
from atd_dl.io.ecsv import write_ecsv
from atd_dl.io.fits_io import provenance_cards, write_fits_image
from atd_dl.io.resume import file_sha256  # re-exported: one owner, cached

if TYPE_CHECKING:
    from atd_dl.detect.postprocess import Extraction

__all__ = [
    "FITS_KEYS",
    "OUTPUT_SUFFIXES",
    "CatalogSource",
    "OutputConfig",
    "catalog_hdu",
    "catalog_meta",
    "file_sha256",
    "read_catalog",
    "write_catalog",
    "write_frame_outputs",
]

#: File-name ending of each per-frame output (``<stem><suffix>``).
OUTPUT_SUFFIXES = {
    "fits": ".cat.fits",
    "ecsv": ".cat.ecsv",
    "regions": ".reg",
    "segmap": ".seg.fits",
    "probmap": ".prob.fits",
    "overlay": ".overlay.png",
}


@dataclass
class OutputConfig:
    """Which files to write for each frame, and where."""

    out_dir: Path
    regions: bool = False
    segmap: bool = False
    probmap: bool = False
    overlay: bool = False
    overwrite: bool = False

    def paths(self, stem: str) -> dict[str, Path]:
        """Paths of the requested outputs of the frame ``stem``."""
        wanted = ["fits", "ecsv"] + [
            k for k in ("regions", "segmap", "probmap", "overlay") if getattr(self, k)
        ]
        return {k: Path(self.out_dir) / f"{stem}{OUTPUT_SUFFIXES[k]}" for k in wanted}

    def complete(self, stem: str) -> bool:
        """True when every requested output of ``stem`` exists (files are atomic)."""
        return all(p.is_file() for p in self.paths(stem).values())


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


def _column_cards(hdu: fits.BinTableHDU, table: Table) -> None:
    """``TUNITn`` for every column with a unit (astropy drops non-FITS units such as
    ``electron``) and the column description as the ``TTYPEn`` comment (cut to fit)."""
    for i, name in enumerate(table.colnames, start=1):
        col = table[name]
        if col.unit is not None and f"TUNIT{i}" not in hdu.header:
            hdu.header.set(f"TUNIT{i}", col.unit.to_string(), after=f"TFORM{i}")
        text = col.description
        if text:
            # the value field reaches column 30 when a comment follows; " / " separates
            room = 80 - max(len(str(fits.Card(f"TTYPE{i}", name)).rstrip()), 30) - 3
            hdu.header.comments[f"TTYPE{i}"] = (
                text if len(text) <= room else text[: room - 3] + "..."
            )


def catalog_hdu(table: Table, meta: dict[str, Any] | None = None) -> fits.BinTableHDU:
    """Binary-table HDU of ``table`` with metadata cards and the flag-bit documentation."""
    meta = {**table.meta, **(meta or {})}
    plain = Table(table, copy=False)
    plain.meta = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        hdu = fits.table_to_hdu(plain)
        hdu.name = "CATALOG"
        _column_cards(hdu, plain)
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
        hdu.header["FLAGVERS"] = (FLAG_VERSION, "flag bits: 1-8 SExtractor FLAGS, own >= 256")
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
        out.meta["flag_version"] = FLAG_VERSION
        with atomic_output(target) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            write_ecsv(out, tmp)
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
            return _restore_units(Table.read(p, hdu="CATALOG", format="fits"))
    except Exception as err:  # astropy raises many types for corrupt files
        raise InputError(p, f"cannot read catalog ({str(err).splitlines()[0]})") from None


def _restore_units(table: Table) -> Table:
    """Units that FITS does not know (``TUNITn = 'electron'``) read back as astropy units."""
    for col in table.itercols():
        if isinstance(col.unit, u.UnrecognizedUnit):
            try:
                col.unit = u.Unit(str(col.unit))
            except ValueError:
                pass
    return table


# ------------------------------------------------------------------ one frame's outputs
class CatalogSource(Protocol):
    """What the writer needs to know of the detector that made a catalog
    (:class:`~atd_dl.detect.pipeline.Detector` is one)."""

    @property
    def meta(self) -> dict[str, Any]: ...  # the model folder's metadata

    @property
    def threshold(self) -> float: ...

    @property
    def threshold_source(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def config(self) -> Any: ...  # with .summary() -> JSON-friendly dict


def catalog_meta(source: CatalogSource, prepared: PreparedFrame, ex: Extraction) -> dict[str, Any]:
    """Metadata written with the catalog of one frame (see :data:`FITS_KEYS`)."""
    frame = prepared.frame
    date_obs = frame.header.get("DATE-OBS") if frame.header is not None else None
    return {
        "model": source.meta.get("name"),
        "model_path": str(source.meta.get("path", "")),
        "threshold": ex.threshold if np.isfinite(ex.threshold) else source.threshold,
        "threshold_source": source.threshold_source,
        "input_file": frame.path.name if frame.path else None,
        "input_sha256": prepared.sha256,
        "hdu": frame.hdu,
        "atd_dl_version": __version__,
        "flux_unit": prepared.unit,
        "gain": prepared.gain,
        "fwhm_px": ex.fwhm,
        "fwhm_source": prepared.fwhm.source if prepared.fwhm else "default",
        "fwhm_nstars": prepared.fwhm.n_stars if prepared.fwhm else 0,
        "aper_rad": ex.aperture_radius,
        "bkg_rms": ex.background_rms,
        "n_sources": len(ex.catalog),
        "n_comp": ex.n_components,
        "has_wcs": frame.wcs is not None,
        "calibration": prepared.calibration,
        "device": source.device,
        "date_obs": date_obs,
        "pixel_convention": "0-based, pixel centre = integer",
        "config": json.dumps(source.config.summary(), sort_keys=True, default=str),
    }


def write_frame_outputs(
    source: CatalogSource,
    prepared: PreparedFrame,
    prob: np.ndarray,
    ex: Extraction,
    output: OutputConfig,
    stem: str,
) -> dict[str, Path]:
    """Write the requested outputs of one frame (each atomically); returns their paths."""
    from atd_dl.detect.regions import write_ds9_regions

    frame = prepared.frame
    paths = output.paths(stem)
    Path(output.out_dir).mkdir(parents=True, exist_ok=True)
    meta = catalog_meta(source, prepared, ex)
    prov = {
        "source": meta["input_file"],
        "insha256": prepared.sha256,
        "model": meta["model"],
        "thresh": meta["threshold"],
    }
    primary = fits.Header(provenance_cards(**prov))
    write_catalog(ex.catalog, paths["fits"], paths["ecsv"], meta=meta, primary_header=primary)
    radius = max(3.0, ex.aperture_radius if np.isfinite(ex.aperture_radius) else 3.0)
    if "regions" in paths:
        write_ds9_regions(ex.catalog, paths["regions"], radius=radius, wcs=frame.wcs)
    maps = {
        "segmap": (ex.segmap, np.int32, "segmentation map: catalog id per pixel"),
        "probmap": (prob, np.float32, "foreground probability"),
    }
    for kind, (data, dtype, content) in maps.items():
        if kind in paths:
            write_fits_image(
                paths[kind],
                data.astype(dtype),
                header=frame.header,
                wcs=frame.wcs,
                provenance={**prov, "content": content},
            )
    if "overlay" in paths:
        title = f"{stem}: {len(ex.catalog)} sources (threshold {meta['threshold']:.3f})"
        _write_overlay(prepared, ex, paths["overlay"], radius=radius, title=title)
    return paths


def _write_overlay(
    prepared: PreparedFrame, ex: Extraction, path: Path, *, radius: float, title: str
) -> None:
    """The overlay PNG: the catalog drawn on the (trimmed) 8-bit frame."""
    from atd_dl.detect.overlay import write_overlay_png

    frame = prepared.frame
    img8 = prepared.image8
    if img8 is None and prepared.subtracted_adu is not None:  # not needed by the model
        from atd_dl.prep.enhance import zscale_stretch

        img8 = zscale_stretch(prepared.subtracted_adu, frame.mask, source=frame.path)[0]
    if img8 is None:
        img8 = np.zeros(frame.shape, np.uint8)
    shown = ex.catalog
    if frame.origin != (0, 0) and len(shown):  # drawn on the trimmed image
        shown = shown.copy(copy_data=True)
        shown["x"] -= float(frame.origin[0])
        shown["y"] -= float(frame.origin[1])
    write_overlay_png(img8, shown, path, radius=radius, title=title)
