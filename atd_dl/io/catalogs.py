"""Reference catalogs (Gaia archive exports and similar): reading, proper motion, projection.

:func:`read_reference_catalog` reads CSV, ECSV, FITS or VOTable files (optionally gzipped)
into a table with canonical columns ``source_id, ra, dec, mag`` (degrees, magnitudes)
plus ``pmra, pmdec`` (mas/yr, ``pmra`` includes cos(dec) as in Gaia) and ``ref_epoch``
(Julian year) when proper motions are present.

:func:`project_catalog` places the sources on a frame through its WCS (SIP included),
returning 0-based pixel coordinates ``x, y`` (pixel centre = integer). The catalog
reference frame (ICRS) and a WCS in FK5/J2000 are treated as the same (they differ by
< 0.1 arcsec).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from atd_dl.errors import InputError

__all__ = [
    "CANONICAL_ALIASES",
    "Footprint",
    "read_reference_catalog",
    "propagate_proper_motion",
    "project_catalog",
    "frame_footprint",
    "ldac_objects_hdu",
]

log = logging.getLogger(__name__)

#: accepted column names (compared case-insensitively), first match wins
CANONICAL_ALIASES: dict[str, tuple[str, ...]] = {
    "source_id": ("source_id", "source", "designation", "objid", "id"),
    "ra": ("ra", "ra_icrs", "radeg", "ra_deg", "raj2000", "_raj2000", "alpha_j2000"),
    "dec": ("dec", "de_icrs", "dedeg", "dec_deg", "dej2000", "_dej2000", "decj2000", "delta_j2000"),
    "mag": ("phot_g_mean_mag", "gmag", "g_mag", "g", "mag"),
    "pmra": ("pmra", "pm_ra", "pmra_cosdec"),
    "pmdec": ("pmdec", "pmde", "pm_dec"),
    "ref_epoch": ("ref_epoch", "epoch"),
}
_REQUIRED = ("ra", "dec")
_J2000_POSITION_NAMES = {"raj2000", "_raj2000", "dej2000", "_dej2000", "decj2000"}

_FORMATS = (
    (".ecsv", "ascii.ecsv"),
    (".csv", "ascii.csv"),
    (".tsv", "ascii.tab"),
    (".fits", "fits"),
    (".fit", "fits"),
    (".fts", "fits"),
    (".vot", "votable"),
    (".votable", "votable"),
    (".xml", "votable"),
)


def _catalog_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, fmt in _FORMATS:
        if name.endswith(suffix):
            return fmt
    known = ", ".join(sorted({s for s, _ in _FORMATS}))
    raise InputError(path, f"unknown catalog format (expected one of {known}, optionally .gz)")


def ldac_objects_hdu(path: str | Path) -> int | None:
    """Index of the ``LDAC_OBJECTS`` table of a FITS-LDAC file (SExtractor
    ``CATALOG_TYPE FITS_LDAC``, SCAMP input), None for any other file. An LDAC file's first
    table is ``LDAC_IMHEAD`` (the image header as text), which astropy would read by default."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            for i, hdu in enumerate(hdul):
                if hdu.name == "LDAC_OBJECTS":
                    return i
    except (OSError, ValueError):
        return None
    return None


def _find_column(table: Table, names: tuple[str, ...]) -> str | None:
    lower = {name.lower(): name for name in table.colnames}
    for candidate in names:
        if candidate.lower() in lower:
            return lower[candidate.lower()]
    return None


def _as_float(col: Any, unit: u.UnitBase | None = None) -> np.ndarray:
    """Column as float64 with masked entries as NaN, converted to ``unit`` when it has one."""
    values = col.filled(np.nan) if isinstance(col, MaskedColumn) else col
    out = np.asarray(values, dtype=np.float64)
    col_unit = getattr(col, "unit", None)
    if unit is not None and col_unit is not None:
        try:
            out = (out * u.Unit(col_unit)).to_value(unit)
        except (u.UnitsError, ValueError, TypeError):
            pass  # unknown or odd units: keep the numbers as they are
    return out


def _angles(
    table: Table, ra_name: str, dec_name: str, path: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    ra_col, dec_col = table[ra_name], table[dec_name]
    if ra_col.dtype.kind in "US" or dec_col.dtype.kind in "US":
        try:
            return _as_float(ra_col, u.deg), _as_float(dec_col, u.deg)
        except ValueError:
            pass
        try:
            coords = SkyCoord(
                np.asarray(ra_col, dtype=str),
                np.asarray(dec_col, dtype=str),
                unit=(u.hourangle, u.deg),
            )
        except ValueError as err:
            raise InputError(
                path, f"cannot parse coordinates in columns {ra_name}, {dec_name}: {err}"
            ) from None
        return coords.ra.deg, coords.dec.deg
    return _as_float(ra_col, u.deg), _as_float(dec_col, u.deg)


def read_reference_catalog(
    path: str | Path,
    *,
    columns: dict[str, str] | None = None,
    ref_epoch: float | None = 2016.0,
) -> Table:
    """Read a reference catalog and return canonical columns.

    Format from the file name: ``.csv``, ``.ecsv``, ``.fits``/``.fit``, ``.vot``/``.xml``
    (each optionally ``.gz``); of a FITS-LDAC file (SExtractor, ``ALPHA_J2000`` /
    ``DELTA_J2000``) the ``LDAC_OBJECTS`` table is read. ``columns`` maps canonical names to the file's names, e.g.
    ``{"ra": "RA_ICRS", "mag": "Gmag"}``; otherwise the names in :data:`CANONICAL_ALIASES`
    are tried (case-insensitive). ``ra`` and ``dec`` are required; a missing ``source_id``
    becomes the row number, a missing ``mag`` becomes NaN. ``ref_epoch`` (Julian year) is
    used when the file has proper motions but no epoch column (Gaia DR3: 2016.0; None =
    no propagation); positions from ``RAJ2000``/``DEJ2000`` columns are taken as epoch
    2000.0. Masked values become NaN. ``meta["path"]`` and ``meta["columns"]`` record the
    source file and the columns used.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    fmt = _catalog_format(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            hdu = ldac_objects_hdu(path) if fmt == "fits" else None
            raw = Table.read(path, format=fmt) if hdu is None else Table.read(path, hdu=hdu)
        except Exception as err:  # astropy readers raise many exception types
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(path, f"cannot read catalog as {fmt}: {reason}") from None

    columns = {k.lower(): v for k, v in (columns or {}).items()}
    unknown = sorted(set(columns) - set(CANONICAL_ALIASES))
    if unknown:
        raise InputError(
            path,
            f"unknown canonical column(s) {', '.join(unknown)} in columns= "
            f"(known: {', '.join(CANONICAL_ALIASES)})",
        )
    found: dict[str, str] = {}
    for canonical, aliases in CANONICAL_ALIASES.items():
        if canonical in columns:
            name = _find_column(raw, (columns[canonical],))
            if name is None:
                raise InputError(
                    path,
                    f"column '{columns[canonical]}' given for {canonical} not found; "
                    f"columns present: {', '.join(raw.colnames)}",
                )
            found[canonical] = name
        else:
            name = _find_column(raw, aliases)
            if name is not None:
                found[canonical] = name
    missing = [c for c in _REQUIRED if c not in found]
    if missing:
        raise InputError(
            path,
            f"missing required column(s) {', '.join(missing)}; columns present: "
            f"{', '.join(raw.colnames) or '(none)'} (map them with columns={{'ra': ..., 'dec': ...}})",
        )

    ra, dec = _angles(raw, found["ra"], found["dec"], path)
    if len(raw) and np.all(ra == 0.0) and np.all(dec == 0.0):
        raise InputError(
            path,
            f"every {found['ra']}/{found['dec']} is 0: a catalog of a frame without a sky WCS "
            "(SExtractor writes 0 there); use its pixel positions instead "
            "(atd-dl evaluate --reference-kind truth reads XWIN_IMAGE/YWIN_IMAGE)",
        )
    out = Table(meta={"path": str(path), "columns": dict(found)})
    if "source_id" in found:
        ids = raw[found["source_id"]]
        ids = np.asarray(ids.filled(-1) if isinstance(ids, MaskedColumn) else ids)
        out["source_id"] = (
            ids.astype(ids.dtype.newbyteorder("=")) if ids.dtype.kind in "iuf" else ids
        )
    else:
        out["source_id"] = np.arange(len(raw), dtype=np.int64)
    out["ra"] = ra
    out["dec"] = dec
    out["ra"].unit = u.deg
    out["dec"].unit = u.deg
    if "mag" in found:
        out["mag"] = _as_float(raw[found["mag"]])
    else:
        log.warning("%s: no magnitude column found; mag set to NaN", path)
        out["mag"] = np.full(len(raw), np.nan)
    out["mag"].unit = u.mag
    if "pmra" in found and "pmdec" in found:
        out["pmra"] = _as_float(raw[found["pmra"]], u.mas / u.yr)
        out["pmdec"] = _as_float(raw[found["pmdec"]], u.mas / u.yr)
        out["pmra"].unit = out["pmdec"].unit = u.mas / u.yr
        if found["ra"].lower() in _J2000_POSITION_NAMES:
            epochs = np.full(len(raw), 2000.0)
        elif "ref_epoch" in found:
            epochs = _as_float(raw[found["ref_epoch"]])
        elif ref_epoch is not None:
            log.info("%s: no ref_epoch column; assuming positions at J%.1f", path, ref_epoch)
            epochs = np.full(len(raw), float(ref_epoch))
        else:
            epochs = np.full(len(raw), np.nan)
        out["ref_epoch"] = epochs
        out["ref_epoch"].unit = u.yr
    # one NaN-row policy for every table read (atd_dl.io.tables): drop, count, warn
    from atd_dl.io.tables import drop_nonfinite_rows

    return drop_nonfinite_rows(out, ("ra", "dec"), path, what="catalog rows")


def propagate_proper_motion(table: Table, epoch: Time) -> Table:
    """Return a copy of ``table`` with ``ra, dec`` moved from ``ref_epoch`` to ``epoch``.

    Uses astropy ``SkyCoord.apply_space_motion`` (rigorous on the sphere, also near the
    poles) with parallax and radial velocity ignored. Rows with NaN proper motion or epoch
    are left unchanged; a table without ``pmra/pmdec/ref_epoch`` is returned unchanged.
    """
    out = table.copy()
    if not all(name in table.colnames for name in ("pmra", "pmdec", "ref_epoch")) or len(out) == 0:
        return out
    pmra = np.asarray(table["pmra"], dtype=np.float64)
    pmdec = np.asarray(table["pmdec"], dtype=np.float64)
    dt = float(Time(epoch).jyear) - np.asarray(table["ref_epoch"], dtype=np.float64)
    ra = np.asarray(table["ra"], dtype=np.float64)
    dec = np.asarray(table["dec"], dtype=np.float64)
    move = (
        np.isfinite(pmra)
        & np.isfinite(pmdec)
        & np.isfinite(dt)
        & np.isfinite(ra)
        & np.isfinite(dec)
    )
    if move.any():
        coords = SkyCoord(
            ra=ra[move] * u.deg,
            dec=dec[move] * u.deg,
            pm_ra_cosdec=pmra[move] * u.mas / u.yr,
            pm_dec=pmdec[move] * u.mas / u.yr,
            frame="icrs",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ERFA "distance overridden": no parallax given
            moved = coords.apply_space_motion(dt=dt[move] * u.yr)
        ra = ra.copy()
        dec = dec.copy()
        ra[move] = moved.ra.deg
        dec[move] = moved.dec.deg
    out["ra"] = ra
    out["dec"] = dec
    out["ra"].unit = out["dec"].unit = u.deg
    out.meta["epoch"] = float(Time(epoch).jyear)
    return out


@dataclass(frozen=True)
class Footprint:
    """Sky footprint of a frame: centre and corners (deg), radius = centre to farthest corner."""

    ra_center: float
    dec_center: float
    radius: float  # deg
    corners: np.ndarray  # [4, 2] (ra, dec) deg of the outer pixel corners

    def separation(self, ra: Any, dec: Any) -> np.ndarray:
        """Angular distance (deg) from the frame centre to ``ra, dec`` (deg)."""
        return _separation_deg(self.ra_center, self.dec_center, ra, dec)

    def overlaps(self, other: Footprint, margin: float = 0.0) -> bool:
        """True when the bounding circles of two frames come within ``margin`` deg."""
        sep = float(self.separation(other.ra_center, other.dec_center))
        return sep < self.radius + other.radius + margin


def _separation_deg(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    """Great-circle distance (deg), haversine form."""
    ra1, dec1, ra2, dec2 = (
        np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2)
    )
    hav = (
        np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0))))


def _pix2world(wcs: WCS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = wcs.all_pix2world(x, y, 0)
    return (b, a) if wcs.wcs.lng == 1 else (a, b)


def frame_footprint(wcs: WCS, shape: tuple[int, ...]) -> Footprint:
    """Footprint of a frame of ``shape`` (ny, nx) through its celestial ``wcs``."""
    ny, nx = int(shape[-2]), int(shape[-1])
    xs = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5, (nx - 1) / 2.0])
    ys = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5, (ny - 1) / 2.0])
    ra, dec = _pix2world(wcs, xs, ys)
    ra_c, dec_c = float(ra[4]) % 360.0, float(dec[4])
    radius = float(np.nanmax(_separation_deg(ra_c, dec_c, ra[:4], dec[:4])))
    corners = np.column_stack([np.mod(ra[:4], 360.0), dec[:4]])
    return Footprint(ra_c, dec_c, radius, corners)


def _ra_range(ra: np.ndarray) -> tuple[float, float]:
    """Smallest RA interval holding all values (handles the 0/360 wrap)."""
    ra = np.sort(np.mod(ra, 360.0))
    gaps = np.diff(np.concatenate([ra, [ra[0] + 360.0]]))
    i = int(np.argmax(gaps))
    return float(ra[(i + 1) % len(ra)]), float(ra[i])


def project_catalog(
    table: Table,
    wcs: WCS | None,
    shape: tuple[int, ...],
    *,
    epoch: Time | None = None,
    margin: float = 0,
) -> Table:
    """Project catalog sources to 0-based pixel ``x, y`` and keep those on the frame.

    ``epoch`` (the frame's observation time) first moves stars by their proper motion.
    Positions come from ``wcs.all_world2pix(..., 0)`` (SIP and other distortions
    included). A source is kept when ``-0.5 - margin <= x < nx - 0.5 + margin`` and the
    same for ``y`` (``margin`` in pixels; positive keeps sources just off the frame,
    negative drops those near the edge); NaN positions are dropped. Raises
    :class:`InputError` naming the catalog when it is empty, the frame has no WCS, or no
    source falls on the frame.
    """
    src = table.meta.get("path")
    if wcs is None:
        raise InputError(src, "the frame has no celestial WCS: cannot project the catalog")
    if len(table) == 0:
        raise InputError(src, "catalog is empty")
    ny, nx = int(shape[-2]), int(shape[-1])
    tab = propagate_proper_motion(table, epoch) if epoch is not None else table.copy()
    ra = np.asarray(tab["ra"], dtype=np.float64)
    dec = np.asarray(tab["dec"], dtype=np.float64)

    footprint = frame_footprint(wcs, (ny, nx))
    scale = float(np.mean(proj_plane_pixel_scales(wcs)))  # deg / pixel
    reach = footprint.radius * 1.05 + (max(margin, 0) + 2) * scale
    near = np.isfinite(ra) & np.isfinite(dec)
    near[near] = footprint.separation(ra[near], dec[near]) <= reach
    x = np.full(len(tab), np.nan)
    y = np.full(len(tab), np.nan)
    if near.any():
        lon, lat = (dec[near], ra[near]) if wcs.wcs.lng == 1 else (ra[near], dec[near])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            x[near], y[near] = wcs.all_world2pix(lon, lat, 0, quiet=True)
    lo = -0.5 - margin
    with np.errstate(invalid="ignore"):
        keep = (x >= lo) & (x < nx - 0.5 + margin) & (y >= lo) & (y < ny - 0.5 + margin)
    if not keep.any():
        good = np.isfinite(ra) & np.isfinite(dec)
        if good.any():
            ra_lo, ra_hi = _ra_range(ra[good])
            covers = (
                f"catalog covers RA {ra_lo:.4f}..{ra_hi:.4f} "
                f"Dec {np.min(dec[good]):+.4f}..{np.max(dec[good]):+.4f}"
            )
        else:
            covers = "catalog has no finite positions"
        raise InputError(
            src,
            f"catalog does not overlap the frame (frame centre RA {footprint.ra_center:.4f} "
            f"Dec {footprint.dec_center:+.4f}, radius {footprint.radius:.4f} deg; {covers})",
        )
    out = tab[keep]
    out["x"] = x[keep]
    out["y"] = y[keep]
    out.meta["n_projected"] = int(keep.sum())
    if epoch is not None:
        out.meta["epoch"] = float(Time(epoch).jyear)
    return out
