"""Reading and writing single-frame FITS images.

Pixel convention: arrays are ``[y, x]``, 0-based, pixel centre at integer coordinates
(astropy ``origin=0``). :func:`read_frame` returns physical values (``BZERO``/``BSCALE``
applied, so unsigned 16-bit data stored as int16 + ``BZERO = 32768`` come back as
0..65535) as float32 ADU, with a mask of unusable pixels.

Multi-extension files: the frame header is the primary header with the chosen
extension's cards on top (the usual "inherit" convention, extension wins), so keywords
such as ``EXPTIME`` or ``SATURATE`` that live only in the primary header are found.
The WCS is taken from the chosen HDU's own header, or from the primary header when
the extension has no celestial WCS (as in raw LCO Sinistro files).
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning

from atd_dl import __version__
from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_output

__all__ = [
    "Frame",
    "read_frame",
    "write_fits_image",
    "write_raw_uint16",
    "provenance_cards",
    "strip_wcs_keywords",
    "wcs_problem",
]

log = logging.getLogger(__name__)

GAIN_KEYS = ("GAIN", "EGAIN", "CCDGAIN")
EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "EXP_TIME")
SATURATION_KEYS = ("SATURATE", "SATLEVEL")
#: read-noise keywords (electrons), for the saturation margin
READ_NOISE_KEYS = ("RDNOISE", "READNOIS", "RON")
#: a pixel within this many read-noise sigmas under the header saturation level is saturated:
#: read noise is added after the full well clips, so a saturated core or bleed is a plateau
#: that scatters around (and below) the nominal level
SATURATION_READ_SIGMAS = 5.0

# cards that describe the on-disk layout, not the image: dropped from Frame.header
_STRUCTURAL = {
    "SIMPLE",
    "XTENSION",
    "BITPIX",
    "NAXIS",
    "EXTEND",
    "PCOUNT",
    "GCOUNT",
    "GROUPS",
    "BZERO",
    "BSCALE",
    "BLANK",
    "CHECKSUM",
    "DATASUM",
    "INHERIT",
}
_NAXIS_RE = re.compile(r"^NAXIS\d+$")
_WCS_RE = re.compile(
    r"^(WCSAXES|WCSNAME|CRPIX\d+|CRVAL\d+|CDELT\d+|CTYPE\d+|CUNIT\d+|CROTA\d+|CD\d+_\d+"
    r"|PC\d+_\d+|PV\d+_\d+|PS\d+_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX"
    r"|A_ORDER|B_ORDER|AP_ORDER|BP_ORDER|A_\d+_\d+|B_\d+_\d+|AP_\d+_\d+|BP_\d+_\d+"
    r"|A_DMAX|B_DMAX)$"
)
_OLD_DATE_RE = re.compile(r"^(\d{2})/(\d{2})/(\d{2})$")  # pre-1999 FITS DATE-OBS dd/mm/yy


@dataclass
class Frame:
    """One image frame in physical units.

    ``data`` float32 ``[ny, nx]`` in ADU; ``mask`` True where unusable (non-finite or
    saturated); ``saturated`` True at or above the saturation level; ``wcs`` a celestial
    WCS (SIP kept) or None; ``hdu`` the index of the HDU read; ``saturation_level`` the
    level used for ``saturated`` (ADU) or None when none was known.
    """

    data: np.ndarray
    mask: np.ndarray
    saturated: np.ndarray
    header: fits.Header
    wcs: WCS | None
    path: Path | None
    hdu: int
    saturation_level: float | None = None
    # 0-based (x0, y0) of data[0, 0] in the HDU's pixel grid: non-zero when DATASEC/TRIMSEC
    # trimmed off a prescan/overscan; catalog positions are given in the HDU's grid
    origin: tuple[int, int] = (0, 0)

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(ny, nx)``."""
        return (int(self.data.shape[0]), int(self.data.shape[1]))

    @property
    def gain(self) -> float | None:
        """Gain in electrons per ADU from GAIN / EGAIN / CCDGAIN (must be > 0), else None."""
        return _first_number(self.header, GAIN_KEYS, positive=True)

    @property
    def exptime(self) -> float | None:
        """Exposure time in seconds from EXPTIME / EXPOSURE, else None."""
        return _first_number(self.header, EXPTIME_KEYS, positive=False)

    @property
    def date_obs(self) -> Time | None:
        """Start of the exposure from DATE-OBS (+TIME-OBS) or MJD-OBS, else None."""
        return parse_date_obs(self.header)


# ---------------------------------------------------------------------------- header helpers


def _first_number(header: fits.Header, keys: Iterable[str], *, positive: bool) -> float | None:
    for key in keys:
        value = header.get(key)
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            continue
        return number
    return None


def _time_scale(header: fits.Header) -> str:
    scale = str(header.get("TIMESYS", "utc")).strip().lower()
    return scale if scale in Time.SCALES else "utc"


def parse_date_obs(header: fits.Header) -> Time | None:
    """Exposure start as an astropy Time, or None.

    Order: a DATE-OBS with a time part; MJD-OBS; a date-only DATE-OBS combined with
    TIME-OBS / UT / UTSTART when present. The old ``dd/mm/yy`` form is understood.
    The time scale comes from TIMESYS (default UTC).
    """
    scale = _time_scale(header)
    raw = header.get("DATE-OBS")
    date = raw.strip() if isinstance(raw, str) else ""
    old = _OLD_DATE_RE.match(date)
    if old:
        day, month, year = old.groups()
        date = f"19{year}-{month}-{day}"
    if date and "T" in date:
        try:
            return Time(date, scale=scale)
        except ValueError:
            pass
    mjd = _first_number(header, ("MJD-OBS",), positive=True)
    if mjd is not None:
        return Time(mjd, format="mjd", scale=scale)
    if date:
        for key in ("TIME-OBS", "UT", "UTSTART"):
            clock = header.get(key)
            if isinstance(clock, str) and re.match(r"^\d{1,2}:\d{2}", clock.strip()):
                try:
                    return Time(f"{date[:10]}T{clock.strip()}", scale=scale)
                except ValueError:
                    break
        try:
            return Time(date, scale=scale)
        except ValueError:
            return None
    return None


def _is_structural(keyword: str) -> bool:
    return keyword in _STRUCTURAL or bool(_NAXIS_RE.match(keyword))


def _clean_header(header: fits.Header) -> fits.Header:
    out = fits.Header()
    for card in header.cards:
        if _is_structural(card.keyword):
            continue
        out.append(card, end=True)
    return out


def _merge_headers(primary: fits.Header, ext: fits.Header) -> fits.Header:
    merged = _clean_header(primary)
    for card in _clean_header(ext).cards:
        if card.keyword in ("COMMENT", "HISTORY", ""):
            merged.append(card, end=True)
        else:
            merged[card.keyword] = (card.value, card.comment)
    return merged


def strip_wcs_keywords(header: fits.Header) -> fits.Header:
    """Return a copy of ``header`` without primary-WCS keywords (incl. SIP)."""
    out = fits.Header()
    for card in header.cards:
        if _WCS_RE.match(card.keyword):
            continue
        out.append(card, end=True)
    return out


# ---------------------------------------------------------------------------- reading


def _hdu_kind(hdu: Any) -> str:
    if isinstance(hdu, fits.CompImageHDU):
        return "compressed image"
    if isinstance(hdu, fits.BinTableHDU):
        return "binary table"
    if isinstance(hdu, fits.TableHDU):
        return "ASCII table"
    if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)):
        return "image"
    return type(hdu).__name__


def _hdu_shape(hdu: Any) -> tuple[int, ...]:
    header = hdu.header
    naxis = int(header.get("NAXIS", 0) or 0)
    return tuple(int(header.get(f"NAXIS{i}", 0) or 0) for i in range(naxis, 0, -1))


def _is_image(hdu: Any) -> bool:
    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and not isinstance(
        hdu, fits.GroupsHDU
    )


def _describe_hdus(hdul: fits.HDUList) -> str:
    parts = []
    for i, hdu in enumerate(hdul):
        shape = _hdu_shape(hdu)
        if _is_image(hdu) and (not shape or 0 in shape):
            what = "empty"
        else:
            what = f"{_hdu_kind(hdu)} {shape}" if _is_image(hdu) else _hdu_kind(hdu)
        parts.append(f"{i} {hdu.name or '-'} ({what})")
    return ", ".join(parts)


def _hdu_label(index: int, hdu: Any) -> str:
    return f"HDU {index} ({hdu.name or '-'})"


def _pick_hdu(path: Path, hdul: fits.HDUList, hdu: int | str | None) -> int:
    if hdu is None:
        for i, item in enumerate(hdul):
            shape = _hdu_shape(item)
            if _is_image(item) and len(shape) >= 2 and 0 not in shape:
                return i
        raise InputError(path, f"no 2-D image data in this file (HDUs: {_describe_hdus(hdul)})")
    if isinstance(hdu, (int, np.integer)) and not isinstance(hdu, bool):
        index = int(hdu)
        if not -len(hdul) <= index < len(hdul):
            raise InputError(
                path, f"no HDU {index}: the file has {len(hdul)} ({_describe_hdus(hdul)})"
            )
        return index % len(hdul)
    if isinstance(hdu, str):
        if hdu.strip().lstrip("-").isdigit():
            return _pick_hdu(path, hdul, int(hdu))
        try:
            return hdul.index_of(hdu)
        except KeyError:
            raise InputError(path, f"no HDU named '{hdu}' (HDUs: {_describe_hdus(hdul)})") from None
    raise InputError(path, f"hdu must be an index or a name, not {hdu!r}")


_WCS_NUMERIC_RE = re.compile(r"^(CRVAL\d|CRPIX\d|CDELT\d|CD\d_\d|PC\d_\d|CROTA\d)$")
_CELESTIAL_CTYPE_RE = re.compile(r"^(RA|DEC|GLON|GLAT|ELON|ELAT|SLON|SLAT|HLON|HLAT)")


def wcs_problem(header: fits.Header, wcs: WCS | None = None) -> str | None:
    """Why the celestial WCS of ``header`` is unusable (``None``: usable or absent).

    Checked: numeric and finite ``CRVALi``/``CRPIXi``/``CDELTi``/``CDi_j``/``PCi_j``/
    ``CROTAi``; a known celestial ``CTYPE`` pair; a finite, non-singular pixel-scale
    matrix; a finite sky position at the reference pixel.
    """
    for card in header.cards:
        key = card.keyword
        if _WCS_NUMERIC_RE.match(key):
            value = card.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{key} = {value!r} is not a number"
            if not math.isfinite(float(value)):
                return f"{key} = {value!r} is not finite"
    ctypes = [str(header.get(f"CTYPE{i}", "")).strip().upper() for i in (1, 2)]
    for kind in ("CD", "PC"):
        keys = [f"{kind}{i}_{j}" for i in (1, 2) for j in (1, 2)]
        if any(k in header for k in keys):
            default = 0.0 if kind == "CD" else None
            vals = [header.get(k, default) for k in keys]
            vals = [
                (1.0 if k[-3] == k[-1] else 0.0) if v is None else v for k, v in zip(keys, vals)
            ]
            m = np.asarray(vals, dtype=float).reshape(2, 2)
            if not np.any(m) or abs(float(np.linalg.det(m))) <= (1e-12 * np.max(np.abs(m))) ** 2:
                return f"the {kind} matrix is zero or singular"
    if wcs is None:
        if any(_CELESTIAL_CTYPE_RE.match(c) for c in ctypes):
            return f"CTYPE1/2 = {ctypes[0]!r}/{ctypes[1]!r} is not a known celestial projection"
        return None
    try:
        matrix = np.asarray(wcs.pixel_scale_matrix, dtype=float)
    except Exception as err:  # noqa: BLE001 - astropy raises many types for broken WCS
        return f"cannot compute the pixel scale ({type(err).__name__})"
    if matrix.shape != (2, 2) or not np.all(np.isfinite(matrix)):
        return "the CD/PC matrix is not finite"
    det = float(np.linalg.det(matrix))
    scale = float(np.max(np.abs(matrix)))
    if scale == 0.0 or not np.isfinite(det) or abs(det) <= (1e-12 * scale) ** 2:
        return "the CD/PC matrix is zero or singular"
    try:
        crpix = np.asarray(wcs.wcs.crpix, dtype=float) - 1.0
        sky = np.asarray(wcs.all_pix2world(crpix[None, :], 0), dtype=float)
    except Exception as err:  # noqa: BLE001
        return f"cannot map pixels to the sky ({type(err).__name__})"
    if not np.all(np.isfinite(sky)):
        return "the reference pixel maps to a non-finite sky position"
    return None


def _celestial_wcs(
    header: fits.Header, hdul: fits.HDUList, path: str | Path | None = None
) -> WCS | None:
    """The celestial WCS of ``header``, or None. A broken WCS (see :func:`wcs_problem`)
    gives one warning naming the file and the cause, and None (pixel-only catalog)."""
    name = path if path is not None else "frame"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        wcs: WCS | None
        try:
            wcs = WCS(header, fobj=hdul, relax=True)
        except Exception as err:  # astropy raises many types for broken WCS headers
            cause = wcs_problem(header) or (
                str(err).splitlines()[0] if str(err) else type(err).__name__
            )
            if "wcs_types" in cause or "CTYPE" in cause.upper():
                ctypes = [str(header.get(f"CTYPE{i}", "")) for i in (1, 2)]
                cause = f"unknown CTYPE1/2 = {ctypes[0]!r}/{ctypes[1]!r}"
            log.warning("%s: invalid WCS (%s); treated as having no WCS", name, cause)
            return None
        wcs = wcs.celestial if wcs.has_celestial else None
        problem = wcs_problem(header, wcs)
    if problem is not None:
        log.warning("%s: invalid WCS (%s); treated as having no WCS", name, problem)
        return None
    return wcs


def _saturation_from_storage(raw_header: fits.Header) -> float | None:
    """Top of the integer range for unscaled integer storage (65535 for uint16), else None."""
    bitpix = int(raw_header.get("BITPIX", -32))
    bscale = float(raw_header.get("BSCALE", 1.0))
    bzero = float(raw_header.get("BZERO", 0.0))
    if bscale != 1.0 or bitpix not in (8, 16, 32):
        return None
    top = {8: 255.0, 16: 32767.0, 32: 2147483647.0}[bitpix]
    return top + bzero


_SECTION_RE = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


def parse_section(value: Any) -> tuple[int, int, int, int] | None:
    """IRAF section ``[x1:x2,y1:y2]`` (1-based, inclusive, may run backwards) ->
    ``(x1, x2, y1, y2)``, or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    m = _SECTION_RE.match(value)
    return tuple(int(v) for v in m.groups()) if m else None  # type: ignore[return-value]


def _data_section(header: fits.Header, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    """Slices of the light-sensitive region from TRIMSEC or DATASEC, when it is a proper
    sub-region of ``shape``; None otherwise (whole array)."""
    for key in ("TRIMSEC", "DATASEC"):
        sec = parse_section(header.get(key))
        if sec is None:
            continue
        x1, x2, y1, y2 = sec
        xa, xb = sorted((x1, x2))
        ya, yb = sorted((y1, y2))
        ny, nx = shape
        if xa < 1 or ya < 1 or xb > nx or yb > ny:
            continue
        if (xa, xb, ya, yb) == (1, nx, 1, ny):
            return None
        return slice(ya - 1, yb), slice(xa - 1, xb)
    return None


def _remap_wcs(wcs: WCS, header: fits.Header, x0: int, y0: int) -> WCS | None:
    """Primary-header (whole-detector) WCS re-expressed in an amplifier's trimmed pixels
    through DETSEC/DATASEC. Without both keywords the primary WCS is taken as it is (it
    then describes the extension itself); with them but a SIP distortion, None."""
    det = parse_section(header.get("DETSEC"))
    dat = parse_section(header.get("DATASEC"))
    if det is None or dat is None:
        return wcs
    if wcs.sip is not None:
        return None
    out = wcs.deepcopy()
    w = out.wcs
    cd = np.array(w.cd if w.has_cd() else out.pixel_scale_matrix, dtype=float)
    # det (0-based) = a + b * (x + x0) for the data section's first pixel at dat x1
    new_cd = cd.copy()
    crpix = np.array(w.crpix, dtype=float)
    for axis, (d1, d2, s1, s2, off) in enumerate(
        ((det[0], det[1], dat[0], dat[1], x0), (det[2], det[3], dat[2], dat[3], y0))
    ):
        b = (d2 - d1 + (1 if d2 >= d1 else -1)) / (s2 - s1 + (1 if s2 >= s1 else -1))
        a = (d1 - 1) - b * (s1 - 1)
        # world depends on det - (crpix_det - 1): det - c = b * (x + off) + a - c
        crpix[axis] = ((crpix[axis] - 1) - a) / b - off + 1
        new_cd[:, axis] = cd[:, axis] * b
    w.crpix = crpix
    if w.has_cd():
        w.cd = new_cd
    else:
        w.pc = new_cd
        w.cdelt = [1.0, 1.0]
    w.set()
    return out


def image_hdus(path: str | Path) -> list[int]:
    """Indices of the HDUs of a FITS file that hold 2-D (or larger) image data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            with fits.open(path, memmap=False) as hdul:
                return [
                    i
                    for i, h in enumerate(hdul)
                    if _is_image(h) and len(_hdu_shape(h)) >= 2 and 0 not in _hdu_shape(h)
                ]
        except (OSError, ValueError, TypeError, EOFError):
            return []


def read_frame(
    path: str | Path,
    *,
    hdu: int | str | None = None,
    plane: int | None = None,
    saturation: float | None = None,
    trim: bool = True,
) -> Frame:
    """Read one 2-D image from a FITS file (plain, gzipped, or tile-compressed ``.fz``).

    ``hdu``: index or EXTNAME; default the first HDU holding a 2-D image. ``plane``:
    index along the first numpy axis of a 3-D cube (length-1 leading axes are dropped
    automatically). ``saturation``: level in ADU; overrides header SATURATE / SATLEVEL
    (a header level counts down to :func:`saturation_margin` under it).
    Without either, unscaled integer storage saturates at the top of its range
    (65535 for unsigned 16-bit). Pass ``float('inf')`` to flag no pixels as saturated.

    A frame whose pixels are all non-finite is returned fully masked (not an error).
    ``trim``: keep only the TRIMSEC / DATASEC region (prescan and overscan excluded);
    ``Frame.origin`` says where it starts. An amplifier extension without its own WCS gets
    the primary header's WCS mapped through DETSEC (none when that map is not linear).
    Raises :class:`InputError` for a missing or non-FITS file, no image, a cube without
    ``plane``, or an empty HDU.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, not a FITS file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            hdul = fits.open(path, memmap=False)
        except (OSError, ValueError, TypeError, EOFError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(path, f"not a FITS file ({reason})") from None
        with hdul:
            if len(hdul) == 0:
                raise InputError(path, "not a FITS file (no HDUs found)")
            index = _pick_hdu(path, hdul, hdu)
            chosen = hdul[index]
            label = _hdu_label(index, chosen)
            if not _is_image(chosen):
                raise InputError(path, f"{label} is a {_hdu_kind(chosen)}, not an image")
            shape = _hdu_shape(chosen)
            if not shape or 0 in shape:
                raise InputError(path, f"{label} is empty: no image data")
            raw_header = chosen.header.copy()
            try:
                raw = chosen.data
            except Exception as err:  # truncated or corrupt data unit
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise InputError(
                    path, f"cannot read the image data of {label} ({reason})"
                ) from None
            if raw is None or raw.size == 0:
                raise InputError(path, f"{label} is empty: no image data")
            data = np.asarray(raw)
            while data.ndim > 2 and data.shape[0] == 1:
                data = data[0]
            if data.ndim == 1:
                raise InputError(path, f"{label} has 1-D data of shape {data.shape}, not an image")
            if data.ndim == 3:
                if plane is None:
                    raise InputError(
                        path,
                        f"{label} has a 3-D cube of shape {data.shape}; "
                        "choose a plane with plane=N / --plane N",
                    )
                if not -data.shape[0] <= plane < data.shape[0]:
                    raise InputError(
                        path, f"plane {plane} out of range: the cube has {data.shape[0]} planes"
                    )
                data = data[plane]
            elif data.ndim > 3:
                raise InputError(
                    path,
                    f"{label} has a {data.ndim}-D array of shape {data.shape}; "
                    "only 2-D images and 3-D cubes (with plane=N) are supported",
                )
            elif plane not in (None, 0):
                raise InputError(path, f"plane={plane} given but {label} is a 2-D image")
            data = np.array(data, dtype=np.float32, order="C")
            if index == 0:
                header = _clean_header(chosen.header)
            else:
                header = _merge_headers(hdul[0].header, chosen.header)
            section = _data_section(chosen.header, data.shape) if trim else None
            origin = (0, 0)
            if section is not None:
                origin = (int(section[1].start), int(section[0].start))
                data = np.ascontiguousarray(data[section])
            wcs = _celestial_wcs(chosen.header, hdul, path)
            if wcs is not None and section is not None:
                wcs = wcs.slice(section)
            if wcs is None and index != 0:
                wcs = _celestial_wcs(hdul[0].header, hdul, path)
                if wcs is not None and _image_count(hdul) > 1:
                    wcs = _remap_wcs(wcs, chosen.header, *origin)
    if wcs is not None:
        wcs.pixel_shape = (data.shape[1], data.shape[0])

    level = saturation
    if level is None:
        level = _first_number(header, SATURATION_KEYS, positive=True)
        if level is not None:
            level -= saturation_margin(header)
    if level is None:
        level = _saturation_from_storage(raw_header)
    if level is None:
        level = infer_saturation(data)
        if level is not None:
            log.info(
                "%s: no SATURATE keyword; saturation inferred at %.0f ADU (a plateau of "
                "16-bit-range maxima)",
                path,
                level,
            )
    finite = np.isfinite(data)
    if level is not None and math.isfinite(level):
        saturated = finite & (data >= level)
    else:
        saturated = np.zeros(data.shape, dtype=bool)
    mask = ~finite | saturated
    if not finite.any():
        log.warning("%s: every pixel is non-finite; the frame is fully masked", path)
    return Frame(
        data=data,
        mask=mask,
        saturated=saturated,
        header=header,
        wcs=wcs,
        path=path,
        hdu=index,
        saturation_level=None if level is None else float(level),
        origin=origin,
    )


def saturation_margin(header: fits.Header) -> float:
    """How far (ADU) under the header's SATURATE a pixel still counts as saturated:
    :data:`SATURATION_READ_SIGMAS` times the read noise (RDNOISE / READNOIS / RON, electrons,
    over GAIN); 0 when either is unknown."""
    noise_e = _first_number(header, READ_NOISE_KEYS, positive=True)
    gain = _first_number(header, GAIN_KEYS, positive=True)
    if noise_e is None or gain is None:
        return 0.0
    return SATURATION_READ_SIGMAS * noise_e / gain


def infer_saturation(data: np.ndarray, *, min_pixels: int = 10) -> float | None:
    """Saturation level (ADU) of a frame stored as floats without SATURATE, or None.

    A 16-bit detector clips at ~65535 ADU; after bias subtraction and flat fielding the
    clipped pixels are no longer equal but form a plateau just below the maximum. When
    the maximum lies in 50,000-70,000 and at least ``min_pixels`` pixels reach 98 % of
    it, 98 % of the maximum is returned.
    """
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return None
    top = float(finite.max())
    if not 5.0e4 <= top <= 7.0e4:
        return None
    if int(np.count_nonzero(finite >= 0.98 * top)) < min_pixels:
        return None
    return 0.98 * top


def _image_count(hdul: fits.HDUList) -> int:
    return sum(
        1 for h in hdul if _is_image(h) and len(_hdu_shape(h)) >= 2 and 0 not in _hdu_shape(h)
    )


# ---------------------------------------------------------------------------- writing


def _fits_value(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    text = str(value)
    return text.encode("ascii", "replace").decode("ascii")


def provenance_cards(**kv: Any) -> list[fits.Card]:
    """FITS cards recording who wrote a file: ORIGIN, ATDVERS, DATE (UTC) and extras.

    ``source=...`` becomes ``ATDSRC`` (the input file). Other keys up to 8 characters
    (letters, digits, ``-``, ``_``) are written as ordinary keywords, longer ones as
    ``HIERARCH ATD <KEY>``. Values that are not numbers or booleans are stored as text.
    """
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    cards = [
        fits.Card("ORIGIN", "ATD-DL", "software that wrote this file"),
        fits.Card("ATDVERS", __version__, "ATD-DL version"),
        fits.Card("DATE", now, "[UTC] date this file was written"),
    ]
    for key, value in kv.items():
        if value is None:
            continue
        name = key.upper()
        if name in ("SOURCE", "ATDSRC"):
            cards.append(fits.Card("ATDSRC", _fits_value(value), "ATD-DL input file"))
        elif len(name) <= 8 and re.fullmatch(r"[A-Z0-9_-]+", name):
            cards.append(fits.Card(name, _fits_value(value)))
        else:
            clean = re.sub(r"[^A-Z0-9_-]+", "_", name)
            cards.append(fits.Card(f"HIERARCH ATD {clean}", _fits_value(value)))
    return cards


def _prepare_header(
    header: fits.Header | None, wcs: WCS | None, provenance: dict[str, Any] | None
) -> fits.Header:
    out = _clean_header(header) if header is not None else fits.Header()
    for key in ("EXTNAME", "EXTVER"):
        out.remove(key, ignore_missing=True, remove_all=True)
    if wcs is not None:
        out = strip_wcs_keywords(out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            out.update(wcs.to_header(relax=True))
    for card in provenance_cards(**(provenance or {})):
        out.remove(card.keyword, ignore_missing=True, remove_all=True)
        out.append(card, end=True)
    return out


def _write_hdul(target: Path, tmp: Path, hdul: fits.HDUList) -> None:
    name = target.name.lower()
    if name.endswith(".gz"):
        with gzip.open(tmp, "wb") as fh:
            hdul.writeto(fh, checksum=True)
    else:
        hdul.writeto(tmp, checksum=True)


def _image_hdul(target: Path, data: np.ndarray, header: fits.Header) -> fits.HDUList:
    if target.name.lower().endswith(".fz"):
        if np.issubdtype(data.dtype, np.floating):
            comp = fits.CompImageHDU(data, header, compression_type="GZIP_2", quantize_level=0.0)
        else:
            comp = fits.CompImageHDU(data, header, compression_type="RICE_1")
        return fits.HDUList([fits.PrimaryHDU(), comp])
    return fits.HDUList([fits.PrimaryHDU(data, header)])


def write_fits_image(
    path: str | Path,
    data: np.ndarray,
    *,
    header: fits.Header | None = None,
    wcs: WCS | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a 2-D image atomically and return the path.

    Structural keywords of ``header`` are dropped (the data define them); when ``wcs``
    is given its cards replace any WCS in ``header`` (SIP kept). Provenance cards
    (see :func:`provenance_cards`) are always added. ``.fz`` names give a
    tile-compressed image in HDU 1 (lossless); ``.gz`` names are gzipped.
    """
    target = Path(path)
    array = np.asarray(data)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    hdr = _prepare_header(header, wcs, provenance)
    hdul = _image_hdul(target, array, hdr)
    with atomic_output(target) as tmp:
        _write_hdul(target, tmp, hdul)
    return target


def write_raw_uint16(
    path: str | Path,
    data_uint16: np.ndarray,
    header: fits.Header | None = None,
    *,
    wcs: WCS | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a raw camera-style frame: unsigned 16-bit stored as int16 + BZERO = 32768.

    Non-uint16 input is rounded and clipped to 0..65535 (non-finite values raise
    ``ValueError``). Written atomically; returns the path.
    """
    array = np.asarray(data_uint16)
    if array.dtype != np.uint16:
        if not np.all(np.isfinite(array)):
            raise ValueError("write_raw_uint16: data contain non-finite values")
        array = np.clip(np.rint(array), 0, 65535).astype(np.uint16)
    target = Path(path)
    hdr = _prepare_header(header, wcs, provenance)
    if target.name.lower().endswith(".fz"):
        hdul = fits.HDUList(
            [fits.PrimaryHDU(), fits.CompImageHDU(array, hdr, compression_type="RICE_1")]
        )
    else:
        # astropy stores uint16 as int16 with BZERO = 32768, BSCALE = 1
        hdul = fits.HDUList([fits.PrimaryHDU(array, hdr, uint=True)])
    with atomic_output(target) as tmp:
        _write_hdul(target, tmp, hdul)
    return target
