"""Common interface and helpers for the classical baseline detectors.

Every baseline is a small dataclass holding its parameters. Calling it on an image
returns an astropy :class:`~astropy.table.Table` with the detection catalog columns of
``docs/DESIGN.md`` (``id, x, y, x_err, y_err, [ra, dec,] flux, flux_err, snr, area,
circularity, peak, prob, flags``; x, y 0-based pixels, pixel centre = integer).
``ra``/``dec`` (deg) are present only when a WCS is passed. Finder-specific columns
follow the standard ones. ``prob`` is NaN: classical finders have no probability.

Flux is in electrons when the finder was given a ``gain`` (e-/ADU), else in ADU;
``table.meta["flux_unit"]`` says which.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from atd_dl.detect.flags import SourceFlag
from atd_dl.detect.postprocess import STANDARD_COLUMNS
from atd_dl.errors import InputError

__all__ = [
    "CATALOG_COLUMNS",
    "FLAG_BLENDED",
    "FLAG_EDGE",
    "FLAG_LOW_SNR",
    "FLAG_MASKED",
    "FLAG_SATURATED",
    "FLAG_TRAIL",
    "BaseFinder",
    "BaselineUnavailable",
    "Finder",
    "background_maps",
    "gaussian_kernel",
    "make_catalog",
    "neighbourhood_any",
    "position_error",
    "prepare_image",
    "sweep",
]

#: Standard catalog columns, in order (``ra``, ``dec`` only when a WCS is given); the one
#: list of ``docs/DESIGN.md`` that the network's post-processing uses too.
CATALOG_COLUMNS: tuple[str, ...] = STANDARD_COLUMNS

# flag bits: the values of atd_dl.detect.flags.SourceFlag, as plain ints
FLAG_BLENDED = int(SourceFlag.BLENDED)  #: blended / deblended child
FLAG_TRAIL = int(SourceFlag.TRAIL)  #: elongated trail (not set by classical finders)
FLAG_SATURATED = int(SourceFlag.SATURATED)  #: saturated pixel(s) at the source
FLAG_MASKED = int(SourceFlag.MASKED)  #: touches masked / non-finite pixels
FLAG_EDGE = int(SourceFlag.NEAR_EDGE)  #: centre within ``edge`` px of the image border
FLAG_LOW_SNR = int(SourceFlag.LOW_SNR)  #: SNR below the finder's low-SNR mark


class BaselineUnavailable(RuntimeError):
    """A baseline's external program or library is missing (message says what to install)."""


@runtime_checkable
class Finder(Protocol):
    """What the evaluation code needs from a baseline.

    ``finder(data, mask=..., wcs=..., threshold=...)`` returns the catalog table;
    ``threshold=None`` uses the finder's own default. ``sweep_values("dense")`` is the
    dense threshold sweep, ``sweep_values("paper")`` the ten representative points.
    """

    name: str

    def __call__(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
    ) -> Table: ...

    def sweep_values(self, which: str = "dense") -> np.ndarray: ...


def sweep(start: float, stop: float, step: float) -> np.ndarray:
    """Inclusive arithmetic sweep ``start, start+step, ..., stop`` rounded to 6 decimals."""
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(n), 6)


class BaseFinder:
    """Shared behaviour of the baseline dataclasses (mixin; subclasses are dataclasses).

    Subclasses set ``name``, ``SWEEP_DENSE``, ``SWEEP_PAPER`` and a ``threshold`` field.
    """

    name: ClassVar[str] = "base"
    SWEEP_DENSE: ClassVar[tuple[float, ...]] = ()
    SWEEP_PAPER: ClassVar[tuple[float, ...]] = ()
    threshold: float

    def __call__(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
    ) -> Table:
        """Detect sources in ``data``; every subclass implements this."""
        raise NotImplementedError

    def sweep_values(self, which: str = "dense") -> np.ndarray:
        """Threshold values to sweep: ``"dense"`` (fine grid) or ``"paper"`` (ten points)."""
        if which == "dense":
            return np.asarray(self.SWEEP_DENSE, dtype=float)
        if which == "paper":
            return np.asarray(self.SWEEP_PAPER, dtype=float)
        raise ValueError(f"which must be 'dense' or 'paper', got {which!r}")

    def params(self) -> dict[str, Any]:
        """The finder's parameters as a plain dict (for reports and tuning tables)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.repr:
                out[f.name] = getattr(self, f.name)
        return out

    def with_params(self, **params: Any) -> BaseFinder:
        """A copy with some parameters changed (unknown names raise ``TypeError``)."""
        return dataclasses.replace(self, **params)  # type: ignore[type-var]

    def _threshold(self, threshold: float | None) -> float:
        value = self.threshold if threshold is None else float(threshold)
        if not np.isfinite(value):
            raise ValueError(f"{self.name}: threshold must be finite, got {value}")
        return value


# ------------------------------------------------------------------------------ image helpers


def prepare_image(
    data: np.ndarray, mask: np.ndarray | None = None, *, name: str = "image"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, mask)``: C-contiguous native float32 data and a bool mask.

    Non-finite pixels are added to the mask and replaced by the median of the good
    pixels so that C programs never see NaN. Raises :class:`InputError` for a non-2-D
    array, a mask of another shape, or an image without a single usable pixel.
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise InputError(None, f"{name}: expected a 2-D image, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != arr.shape:
            raise InputError(None, f"{name}: mask shape {m.shape} differs from image {arr.shape}")
        bad = bad | m
    if bad.all():
        raise InputError(None, f"{name}: no usable pixels (all masked or non-finite)")
    if bad.any():
        arr = arr.copy()
        arr[bad] = np.median(arr[~bad])
    return arr, bad


def background_maps(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    box_size: int = 64,
    filter_size: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Background and background-RMS maps (float32, ADU) from photutils ``Background2D``.

    Sigma-clipped SExtractor-style mode estimate in ``box_size`` boxes, median filtered
    over ``filter_size`` boxes. The box shrinks for images smaller than one box.
    """
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, SExtractorBackground, StdBackgroundRMS

    ny, nx = data.shape
    box = (min(box_size, ny), min(box_size, nx))
    fs = filter_size if min(ny // box[0], nx // box[1]) >= filter_size else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bkg = Background2D(
            data,
            box,
            mask=mask if mask is not None and mask.any() else None,
            filter_size=(fs, fs),
            sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
            bkg_estimator=SExtractorBackground(),
            bkg_rms_estimator=StdBackgroundRMS(),
            exclude_percentile=50.0,
        )
    return (
        np.asarray(bkg.background, dtype=np.float32),
        np.asarray(bkg.background_rms, dtype=np.float32),
    )


def gaussian_kernel(fwhm: float, half_size: int | None = None) -> np.ndarray:
    """Peak-normalised circular Gaussian kernel sampled at pixel centres.

    ``half_size`` defaults to ``max(1, round(fwhm))``, giving 3×3 for FWHM < 1.5 px,
    5×5 for 1.5–2.5 px, and so on (the sizes SExtractor's own filters use).
    """
    if not fwhm > 0:
        raise ValueError(f"fwhm must be positive, got {fwhm}")
    h = max(1, int(round(fwhm))) if half_size is None else int(half_size)
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    k = np.exp(-(xx**2 + yy**2) / (2.0 * sigma**2))
    return (k / k.max()).astype(np.float32)


def neighbourhood_any(
    flag_image: np.ndarray, x: np.ndarray, y: np.ndarray, radius: int = 1
) -> np.ndarray:
    """True where any pixel of ``flag_image`` within a (2r+1)² box of round(x, y) is set."""
    n = len(x)
    out = np.zeros(n, dtype=bool)
    if n == 0 or not flag_image.any():
        return out
    ny, nx = flag_image.shape
    xi = np.clip(np.rint(np.asarray(x)).astype(np.intp), 0, nx - 1)
    yi = np.clip(np.rint(np.asarray(y)).astype(np.intp), 0, ny - 1)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            yy = np.clip(yi + dy, 0, ny - 1)
            xx = np.clip(xi + dx, 0, nx - 1)
            out |= flag_image[yy, xx]
    return out


def position_error(sigma_psf: float, snr: np.ndarray) -> np.ndarray:
    """Centroid 1-σ error ``σ_PSF / SNR`` (px) per source; NaN where the SNR is not positive."""
    snr = np.asarray(snr, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(snr > 0, sigma_psf / snr, np.nan)


def _column(values: Any, n: int, dtype: Any = float) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan, dtype=float) if dtype is float else np.zeros(n, dtype=dtype)
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim == 0:
        arr = np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"column has shape {arr.shape}, expected ({n},)")
    return arr


def make_catalog(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    flux: Any = None,
    flux_err: Any = None,
    snr: Any = None,
    x_err: Any = None,
    y_err: Any = None,
    area: Any = None,
    circularity: Any = None,
    peak: Any = None,
    flags: Any = None,
    shape: tuple[int, int] | None = None,
    mask: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    edge: int = 3,
    wcs: WCS | None = None,
    gain: float | None = None,
    extra: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Table:
    """Assemble the standard detection catalog.

    ``x``, ``y`` 0-based pixels. Flux, flux error and peak are given in ADU and are
    multiplied by ``gain`` (e-/ADU) when it is known. Flags 4 / 8 / 16 are added from
    ``saturated`` / ``mask`` (3×3 box at the rounded position) and from ``shape`` with
    ``edge``. ``extra`` columns are appended after the standard ones. Rows are sorted by
    decreasing SNR and numbered from 1.
    """
    xa = np.asarray(x, dtype=float).reshape(-1)
    ya = np.asarray(y, dtype=float).reshape(-1)
    n = xa.size
    scale = float(gain) if gain else 1.0
    fl = _column(flags, n, np.int32).copy()
    if saturated is not None:
        fl[neighbourhood_any(saturated, xa, ya)] |= FLAG_SATURATED
    if mask is not None:
        fl[neighbourhood_any(mask, xa, ya)] |= FLAG_MASKED
    if shape is not None and n:
        ny, nx = shape
        near = (
            (xa < edge - 0.5) | (ya < edge - 0.5) | (xa > nx - 0.5 - edge) | (ya > ny - 0.5 - edge)
        )
        fl[near] |= FLAG_EDGE
    cols: dict[str, np.ndarray] = {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "x": xa,
        "y": ya,
        "x_err": _column(x_err, n),
        "y_err": _column(y_err, n),
        "flux": _column(flux, n) * scale,
        "flux_err": _column(flux_err, n) * scale,
        "snr": _column(snr, n),
        "area": _column(area, n),
        "circularity": _column(circularity, n),
        "peak": _column(peak, n) * scale,
        "prob": np.full(n, np.nan),
        "flags": fl,
    }
    names = [c for c in CATALOG_COLUMNS if c not in ("ra", "dec")]
    if wcs is not None:
        if n:
            ra, dec = wcs.celestial.all_pix2world(xa, ya, 0)
        else:
            ra = dec = np.zeros(0)
        cols["ra"], cols["dec"] = np.asarray(ra, float), np.asarray(dec, float)
        names = list(CATALOG_COLUMNS)
    table = Table([cols[c] for c in names], names=names)
    for key, values in (extra or {}).items():
        table[key] = _column(values, n, np.asarray(values).dtype if values is not None else float)
    if n:
        snr_sort = np.where(np.isfinite(table["snr"]), table["snr"], -np.inf)
        table = table[np.argsort(-snr_sort, kind="stable")]
        table["id"] = np.arange(1, n + 1, dtype=np.int64)
    table.meta.update(meta or {})
    table.meta["flux_unit"] = "electron" if gain else "adu"
    table.meta["pixel_origin"] = 0
    return table
