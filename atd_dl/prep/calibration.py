"""CCD calibration: master bias / dark / flat, and applying them to a frame.

Conventions (ADU, arrays ``[y, x]``):

* the master **dark is bias-subtracted** (``combine_masters(kind="dark", bias=...)``
  makes one) and is valid for ``dark_exptime`` seconds; it is scaled by
  ``frame.exptime / dark_exptime`` when both are known and differ, and used as it is
  otherwise (with a warning if a time is missing);
* the master **flat** may have any scale: :func:`calibrate` divides by the flat
  normalised to median 1 over its positive finite pixels; flat pixels that are
  non-finite or below ``min_flat`` (after normalising) become NaN and masked;
* ``calibrated = (raw - bias - dark * t / t_dark) / flat``.

Masters are combined with a per-pixel sigma-clipped median (astropy ``sigma_clip``,
median centre, MAD-based sigma), ignoring masked (saturated / non-finite) input pixels.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clip

from atd_dl.errors import InputError
from atd_dl.io.fits_io import Frame, read_frame, write_fits_image

__all__ = ["CalibrationMasters", "Master", "calibrate", "combine_masters"]

log = logging.getLogger(__name__)

MasterKind = Literal["bias", "dark", "flat"]
_COPY_KEYS = (
    "INSTRUME",
    "TELESCOP",
    "DETECTOR",
    "CCDSUM",
    "XBINNING",
    "YBINNING",
    "GAIN",
    "RDNOISE",
)


@dataclass
class CalibrationMasters:
    """Master calibration arrays (float, ``[ny, nx]``, ADU); any may be None.

    ``dark`` is bias-subtracted and valid for ``dark_exptime`` seconds; ``flat`` any scale;
    ``bad`` a bad-pixel map (bool, True = hot, dead or otherwise unusable: masked).
    """

    bias: np.ndarray | None = None
    dark: np.ndarray | None = None
    flat: np.ndarray | None = None
    dark_exptime: float | None = None
    bad: np.ndarray | None = None

    @classmethod
    def from_files(
        cls,
        bias: str | Path | None = None,
        dark: str | Path | None = None,
        flat: str | Path | None = None,
        *,
        bad_pixels: str | Path | None = None,
        hdu: int | str | None = None,
    ) -> CalibrationMasters:
        """Read master files (see :func:`read_frame`); ``dark_exptime`` from the dark's EXPTIME;
        ``bad_pixels``: a bad-pixel map, nonzero (or non-finite) = bad."""

        def load(path: str | Path | None) -> Frame | None:
            # masters are float images: no saturation flagging
            return None if path is None else read_frame(path, hdu=hdu, saturation=float("inf"))

        b, d, f, m = load(bias), load(dark), load(flat), load(bad_pixels)
        return cls(
            bias=None if b is None else b.data,
            dark=None if d is None else d.data,
            flat=None if f is None else f.data,
            dark_exptime=None if d is None else d.exptime,
            bad=None if m is None else (m.mask | (m.data != 0)),
        )

    def __bool__(self) -> bool:
        return any(a is not None for a in (self.bias, self.dark, self.flat, self.bad))


@dataclass
class Master:
    """A combined master frame: float32 ``data`` plus a header describing it."""

    data: np.ndarray
    kind: str
    header: fits.Header
    n_frames: int
    exptime: float | None = None

    def write(self, path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        """Write the master as a float32 FITS image (atomically)."""
        info = {"mastkind": self.kind, "ncombine": self.n_frames, **(provenance or {})}
        return write_fits_image(
            path, self.data.astype(np.float32), header=self.header, provenance=info
        )


def _check_shape(frame: Frame, name: str, array: np.ndarray) -> None:
    if array.shape != frame.shape:
        raise InputError(
            frame.path,
            f"master {name} shape {array.shape} does not match frame shape {frame.shape}",
        )


def calibrate(frame: Frame, masters: CalibrationMasters, *, min_flat: float = 0.01) -> Frame:
    """Return a calibrated copy of ``frame``: ``(raw - bias - scaled dark) / normalised flat``.

    Pixels that become non-finite (NaN in a master, bad flat pixels) are added to ``mask``;
    ``saturated`` is kept from the raw frame; pixels of the bad-pixel map are masked. Header
    cards ZEROCOR / DARKCOR / FLATCOR / BPMCOR record what was applied. Raises
    :class:`InputError` on a shape mismatch.
    """
    data = np.array(frame.data, dtype=np.float32, copy=True)
    header = frame.header.copy()
    mask = frame.mask.copy()
    if masters.bias is not None:
        bias = np.asarray(masters.bias, dtype=np.float32)
        _check_shape(frame, "bias", bias)
        data -= bias
        header["ZEROCOR"] = (True, "ATD-DL: master bias subtracted")
    if masters.dark is not None:
        dark = np.asarray(masters.dark, dtype=np.float32)
        _check_shape(frame, "dark", dark)
        scale = 1.0
        t_frame, t_dark = frame.exptime, masters.dark_exptime
        if t_frame is not None and t_dark is not None and t_dark > 0:
            scale = t_frame / t_dark
        elif t_frame is None or t_dark is None:
            log.warning(
                "%s: exposure time of %s unknown; master dark subtracted without scaling",
                frame.path,
                "frame" if t_frame is None else "dark",
            )
        data -= dark * np.float32(scale)
        header["DARKCOR"] = (True, "ATD-DL: master dark subtracted")
        header["DARKSCAL"] = (float(scale), "dark scale factor (exposure time ratio)")
    if masters.flat is not None:
        flat = np.asarray(masters.flat, dtype=np.float32)
        _check_shape(frame, "flat", flat)
        good = np.isfinite(flat) & (flat > 0)
        if not good.any():
            raise InputError(frame.path, "master flat has no positive finite pixels")
        norm = flat / np.float32(np.median(flat[good]))
        bad = ~good | (norm < min_flat)
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.where(bad, np.float32(np.nan), data / np.where(bad, 1, norm)).astype(
                np.float32
            )
        mask |= bad
        header["FLATCOR"] = (True, "ATD-DL: divided by normalised master flat")
    if masters.bad is not None:
        bad_map = np.asarray(masters.bad, dtype=bool)
        _check_shape(frame, "bad-pixel map", bad_map)
        mask |= bad_map
        header["BPMCOR"] = (int(bad_map.sum()), "ATD-DL: pixels masked by the bad-pixel map")
    mask |= ~np.isfinite(data)
    return dataclasses.replace(frame, data=data, mask=mask, header=header)


def _as_array(
    item: Any, hdu: int | str | None
) -> tuple[np.ndarray, float | None, fits.Header | None, Any]:
    """(data with masked pixels as NaN, exptime, header, name) for a path, Frame or array."""
    if isinstance(item, (str, Path)):
        item = read_frame(item, hdu=hdu)
    if isinstance(item, Frame):
        data = np.where(item.mask, np.float32(np.nan), item.data).astype(np.float32)
        return data, item.exptime, item.header, item.path
    if isinstance(item, Master):
        return (
            np.asarray(item.data, dtype=np.float32),
            item.exptime,
            item.header,
            f"<{item.kind} master>",
        )
    array = np.asarray(item, dtype=np.float32)
    if array.ndim != 2:
        raise InputError(None, f"calibration input must be a 2-D image, got shape {array.shape}")
    return array, None, None, "<array>"


def _clipped_median(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Per-pixel sigma-clipped median along axis 0, in row blocks to bound memory."""
    n, ny, nx = stack.shape
    out = np.empty((ny, nx), dtype=np.float32)
    rows = max(1, int(8_000_000 // max(1, n * nx)))
    for y0 in range(0, ny, rows):
        block = stack[:, y0 : y0 + rows]
        if n >= 3:
            block = sigma_clip(
                block,
                sigma=sigma,
                maxiters=5,
                axis=0,
                cenfunc="median",
                stdfunc="mad_std",
                masked=False,
            )
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="All-NaN slice")  # such pixels stay NaN
            out[y0 : y0 + rows] = np.nanmedian(block, axis=0)
    return out


def _reference(item: Any) -> tuple[np.ndarray | None, float | None]:
    """A master given as path (first 2-D image, no saturation flags), Master, Frame or array."""
    if item is None:
        return None, None
    if isinstance(item, (str, Path)):
        frame = read_frame(item, saturation=float("inf"))
        return frame.data, frame.exptime
    if isinstance(item, Master):
        return np.asarray(item.data, dtype=np.float32), item.exptime
    if isinstance(item, Frame):
        return item.data, item.exptime
    return np.asarray(item, dtype=np.float32), None


def combine_masters(
    paths_or_arrays: Iterable[Any],
    kind: MasterKind = "bias",
    bias: Any = None,
    *,
    dark: Any = None,
    dark_exptime: float | None = None,
    sigma: float = 3.0,
    hdu: int | str | None = None,
) -> Master:
    """Combine raw calibration frames into a master (per-pixel sigma-clipped median).

    Inputs: file paths, :class:`Frame` objects or 2-D arrays, all the same shape; masked
    (saturated / non-finite) pixels are ignored. ``bias`` (path, array, Frame or Master)
    is subtracted from darks and flats; ``dark`` (bias-subtracted master, scaled by
    exposure time) from flats; master files are read from their first 2-D image, ``hdu``
    applies to the raw inputs only. Darks with different exposure times are scaled to their
    median exposure time, which becomes the master's ``exptime``. Each flat is normalised
    to median 1 before combining and the master flat has median 1.
    Raises :class:`InputError` for no inputs, a bad file or mismatched shapes.
    """
    if kind not in ("bias", "dark", "flat"):
        raise ValueError(f"kind must be 'bias', 'dark' or 'flat', got {kind!r}")
    items = list(paths_or_arrays)
    if not items:
        raise InputError(None, f"no input frames for the master {kind}")
    bias_data, _ = _reference(bias)
    dark_data, dark_t = _reference(dark)
    if dark_exptime is not None:
        dark_t = dark_exptime

    arrays: list[np.ndarray] = []
    exptimes: list[float | None] = []
    first_header: fits.Header | None = None
    shape: tuple[int, ...] | None = None
    for item in items:
        data, exptime, header, name = _as_array(item, hdu)
        if shape is None:
            shape = data.shape
            first_header = header
        elif data.shape != shape:
            raise InputError(name, f"shape {data.shape} differs from the first frame's {shape}")
        if bias_data is not None and kind != "bias":
            if bias_data.shape != data.shape:
                raise InputError(
                    name, f"shape {data.shape} does not match the bias {bias_data.shape}"
                )
            data = data - bias_data
        if dark_data is not None and kind == "flat":
            if dark_data.shape != data.shape:
                raise InputError(
                    name, f"shape {data.shape} does not match the dark {dark_data.shape}"
                )
            scale = exptime / dark_t if (exptime is not None and dark_t) else 1.0
            data = data - dark_data * np.float32(scale)
        if kind == "flat":
            good = np.isfinite(data) & (data > 0)
            if not good.any():
                raise InputError(name, "flat frame has no positive pixels after bias/dark removal")
            data = data / np.float32(np.median(data[good]))
        arrays.append(np.asarray(data, dtype=np.float32))
        exptimes.append(exptime)

    master_t: float | None = None
    if kind == "dark":
        known = [t for t in exptimes if t is not None]
        if known:
            master_t = float(np.median(known))
            if len(set(known)) > 1 or len(known) < len(exptimes):
                log.warning("darks have different exposure times; scaling each to %.3f s", master_t)
                arrays = [
                    a if (t is None or t <= 0 or t == master_t) else a * np.float32(master_t / t)
                    for a, t in zip(arrays, exptimes)
                ]
    combined = _clipped_median(np.stack(arrays), sigma)
    if kind == "flat":
        good = np.isfinite(combined) & (combined > 0)
        if good.any():
            combined /= np.float32(np.median(combined[good]))

    header = fits.Header()
    if first_header is not None:
        for key in _COPY_KEYS + (("FILTER",) if kind == "flat" else ()):
            if key in first_header:
                header[key] = (first_header[key], first_header.comments[key])
    header["IMAGETYP"] = (f"MASTER {kind.upper()}", "ATD-DL combined calibration frame")
    header["NCOMBINE"] = (len(arrays), "number of frames combined")
    header["COMBTYPE"] = ("SIGCLIP-MEDIAN", f"per-pixel median after {sigma:g}-sigma clipping")
    header["BUNIT"] = ("ADU" if kind != "flat" else "", "pixel unit")
    if kind == "dark":
        if master_t is not None:
            header["EXPTIME"] = (master_t, "[s] exposure time of the master dark")
        header["BIASSUB"] = (bias_data is not None, "bias subtracted before combining")
    return Master(data=combined, kind=kind, header=header, n_frames=len(arrays), exptime=master_t)
