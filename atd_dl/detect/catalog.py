"""The detection catalog: one place that defines every column, and the per-frame catalog class.

:data:`COLUMN_SPECS` lists every catalog column with its dtype, unit, description and the
equivalent SExtractor and photutils quantities (``docs/detect.md`` shows the same table).
:class:`SourceCatalog` -- in the spirit of :class:`photutils.segmentation.SourceCatalog` --
exposes one lazy property per column, computed from the stage results of
:func:`~atd_dl.detect.postprocess.segment_sources`, and turns them into an astropy
:class:`~astropy.table.Table` with units and descriptions (:meth:`SourceCatalog.to_table`).

Pixel convention: 0-based, pixel centre = integer (add 1 for SExtractor's ``X_IMAGE``);
fluxes in the frame's flux unit (electrons when the gain is known, else ADU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u
from astropy.table import Table

from atd_dl.detect.flags import FLAG_DESCRIPTIONS

if TYPE_CHECKING:
    from atd_dl.detect.deblend import Sources
    from atd_dl.detect.measure import Measurements

#: Detection catalog columns of ``docs/DESIGN.md``, in order (``ra``, ``dec`` only when a WCS
#: is known). Shared by every catalog producer, the classical baselines included.
STANDARD_COLUMNS: tuple[str, ...] = (
    "id",
    "x",
    "y",
    "x_err",
    "y_err",
    "ra",
    "dec",
    "flux",
    "flux_err",
    "snr",
    "area",
    "circularity",
    "peak",
    "prob",
    "flags",
)

#: Columns of :func:`~atd_dl.detect.postprocess.extract_sources`: the standard ones without
#: a sky position (the pipeline adds ``ra``/``dec``) plus ``parent`` of deblended children.
CATALOG_COLUMNS: tuple[str, ...] = (
    *(c for c in STANDARD_COLUMNS if c not in ("ra", "dec")),
    "parent",
)

#: ``unit`` of a :class:`ColumnSpec` that stands for the catalog's flux unit
FLUX_UNIT = "flux"


@dataclass(frozen=True)
class ColumnSpec:
    """One catalog column: numpy dtype, unit (:data:`FLUX_UNIT` = the frame's flux unit,
    "" = none), description, and the nearest SExtractor and photutils quantities."""

    name: str
    dtype: str
    unit: str
    description: str
    sextractor: str
    photutils: str

    def astropy_unit(self, flux_unit: u.UnitBase) -> u.UnitBase | None:
        """The column's astropy unit (None when dimensionless)."""
        if not self.unit:
            return None
        return flux_unit if self.unit == FLUX_UNIT else u.Unit(self.unit)


def _flags_text() -> str:
    bits = ", ".join(f"{int(f)} {str(f.name).lower()}" for f in FLAG_DESCRIPTIONS)
    return f"bit mask (SExtractor FLAGS bits 1-8): {bits}"


COLUMN_SPECS: tuple[ColumnSpec, ...] = (
    ColumnSpec(
        "id", "int64", "", "source number (= value in the segmentation map)", "NUMBER", "label"
    ),
    ColumnSpec(
        "x",
        "float64",
        "pix",
        "intensity-weighted centroid, 0-based column (pixel centre = integer)",
        "XWIN_IMAGE - 1 (X_IMAGE - 1)",
        "xcentroid",
    ),
    ColumnSpec(
        "y",
        "float64",
        "pix",
        "intensity-weighted centroid, 0-based row (pixel centre = integer)",
        "YWIN_IMAGE - 1 (Y_IMAGE - 1)",
        "ycentroid",
    ),
    ColumnSpec(
        "x_err", "float64", "pix", "1-sigma centroid uncertainty in x", "sqrt(ERRX2WIN_IMAGE)", "-"
    ),
    ColumnSpec(
        "y_err", "float64", "pix", "1-sigma centroid uncertainty in y", "sqrt(ERRY2WIN_IMAGE)", "-"
    ),
    ColumnSpec(
        "ra",
        "float64",
        "deg",
        "right ascension from the frame WCS (ICRS/FK5 as in the header)",
        "ALPHAWIN_J2000",
        "sky_centroid.ra",
    ),
    ColumnSpec(
        "dec",
        "float64",
        "deg",
        "declination from the frame WCS",
        "DELTAWIN_J2000",
        "sky_centroid.dec",
    ),
    ColumnSpec(
        "flux",
        "float64",
        FLUX_UNIT,
        "circular-aperture flux, background subtracted",
        "FLUX_APER (BACKPHOTO_TYPE LOCAL)",
        "circular_photometry(r)[0]",
    ),
    ColumnSpec(
        "flux_err",
        "float64",
        FLUX_UNIT,
        "1-sigma aperture flux uncertainty",
        "FLUXERR_APER",
        "circular_photometry(r)[1]",
    ),
    ColumnSpec(
        "snr",
        "float64",
        "",
        "aperture signal-to-noise ratio flux / flux_err",
        "FLUX_APER / FLUXERR_APER",
        "-",
    ),
    ColumnSpec("area", "int64", "pix2", "pixels in the source's segment", "ISOAREA_IMAGE", "area"),
    ColumnSpec(
        "circularity",
        "float64",
        "",
        "4 pi A / P^2 of the segment (Eq. 15)",
        "- (cf. ELONGATION)",
        "- (cf. eccentricity)",
    ),
    ColumnSpec(
        "peak",
        "float64",
        FLUX_UNIT,
        "maximum background-subtracted pixel value in the segment",
        "FLUX_MAX",
        "max_value",
    ),
    ColumnSpec(
        "prob",
        "float64",
        "",
        "confidence: peak network probability in the segment (cut on it to trade "
        "completeness for purity)",
        "- (cf. CLASS_STAR)",
        "-",
    ),
    ColumnSpec("flags", "int32", "", _flags_text(), "FLAGS (bits 1-8)", "-"),
    ColumnSpec(
        "parent",
        "int64",
        "",
        "component number a deblended child came from (0 = not deblended)",
        "-",
        "- (deblend_sources keeps the parent segment)",
    ),
)

#: :data:`COLUMN_SPECS` by column name
COLUMNS: dict[str, ColumnSpec] = {c.name: c for c in COLUMN_SPECS}


def describe_column(table: Table, name: str, flux_unit: u.UnitBase | str = u.electron) -> None:
    """Set the unit and description of column ``name`` of ``table`` from its spec."""
    spec = COLUMNS[name]
    table[name].unit = spec.astropy_unit(u.Unit(flux_unit))
    table[name].description = spec.description


def make_table(
    values: Mapping[str, np.ndarray],
    unit: u.UnitBase | str,
    columns: Sequence[str] = CATALOG_COLUMNS,
) -> Table:
    """Astropy table of ``columns`` (in that order) from ``values``, each cast to its spec's
    dtype and given its unit and description; ``unit`` is the flux unit."""
    t = Table()
    flux_unit = u.Unit(unit)
    for name in columns:
        t[name] = np.asarray(values[name], dtype=COLUMNS[name].dtype)
        describe_column(t, name, flux_unit)
    return t


def empty_catalog(unit: u.UnitBase | str) -> Table:
    """Catalog with all :data:`CATALOG_COLUMNS` and zero rows."""
    return make_table({c: np.zeros(0) for c in CATALOG_COLUMNS}, unit)


class SourceCatalog:
    """Catalog of the sources of one frame (columns: :data:`COLUMN_SPECS`).

    Built from the stage results of :func:`~atd_dl.detect.postprocess.segment_sources`:
    ``sources`` (segmentation, :class:`~atd_dl.detect.deblend.Sources`), ``meas``
    (:class:`~atd_dl.detect.measure.Measurements`) and the ``flags`` column
    (:func:`~atd_dl.detect.flags.source_flags`); ``unit`` is the flux unit. Each column is
    a lazy property returning an array of length ``len(catalog)``.
    """

    def __init__(
        self,
        sources: Sources,
        meas: Measurements,
        flags: np.ndarray,
        unit: u.UnitBase | str = u.electron,
    ) -> None:
        self._sources = sources
        self._meas = meas
        self._flags = np.asarray(flags)
        self.unit = u.Unit(unit)

    def __len__(self) -> int:
        return int(self._sources.n)

    @cached_property
    def id(self) -> np.ndarray:
        """Source number 1..n (= value in the segmentation map)."""
        return np.arange(1, len(self) + 1)

    @cached_property
    def x(self) -> np.ndarray:
        """Centroid column, px (0-based, pixel centre = integer)."""
        return self._meas.x

    @cached_property
    def y(self) -> np.ndarray:
        """Centroid row, px (0-based, pixel centre = integer)."""
        return self._meas.y

    @cached_property
    def x_err(self) -> np.ndarray:
        """1-sigma centroid uncertainty in x, px."""
        return self._meas.x_err

    @cached_property
    def y_err(self) -> np.ndarray:
        """1-sigma centroid uncertainty in y, px."""
        return self._meas.y_err

    @cached_property
    def flux(self) -> np.ndarray:
        """Circular-aperture flux minus local background (flux unit)."""
        return self._meas.flux

    @cached_property
    def flux_err(self) -> np.ndarray:
        """1-sigma aperture flux uncertainty (flux unit)."""
        return self._meas.flux_err

    @cached_property
    def snr(self) -> np.ndarray:
        """Aperture SNR ``flux / flux_err`` (0 where ``flux_err`` is 0)."""
        return self._meas.snr

    @cached_property
    def area(self) -> np.ndarray:
        """Pixels in the source's segment, px^2."""
        return self._meas.area

    @cached_property
    def circularity(self) -> np.ndarray:
        """``4 pi A / P^2`` of the segment (paper Eq. 15)."""
        return self._sources.circularity[1:]

    @cached_property
    def peak(self) -> np.ndarray:
        """Maximum background-subtracted pixel value in the segment (flux unit)."""
        return self._meas.peak

    @cached_property
    def prob(self) -> np.ndarray:
        """Peak network probability in the segment, in [0, 1]."""
        return self._meas.prob

    @cached_property
    def flags(self) -> np.ndarray:
        """Bit mask of :class:`~atd_dl.detect.flags.SourceFlag`."""
        return self._flags

    @cached_property
    def parent(self) -> np.ndarray:
        """Component a deblended child came from (0 = not deblended)."""
        return self._sources.parent[1:]

    def to_table(self, columns: Sequence[str] = CATALOG_COLUMNS) -> Table:
        """Astropy table of ``columns`` with units and descriptions (:data:`COLUMN_SPECS`)."""
        return make_table({c: getattr(self, c) for c in columns}, self.unit, columns)
