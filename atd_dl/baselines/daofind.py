"""DAOFind baseline: photutils ``DAOStarFinder`` on the background-subtracted image.

Background: photutils ``Background2D`` (64-px boxes, 3×3 median filter, sigma-clipped
SExtractor-style estimator). ``threshold`` is in units of the background RMS: the value
handed to DAOStarFinder is ``threshold × median(background RMS)`` (DAOFind itself then
scales it by the kernel's relative error, as the original DAOFIND does).

Minimum separation: photutils 3.0 changed the default ``min_separation`` from 0 to
2.5·FWHM, which merges close pairs and removes faint neighbours of bright stars. The
papers this baseline reproduces used photutils ≤ 2.x, so we pass ``min_separation=0``
explicitly (peaks are still at least one kernel half-width apart, because DAOFind keeps
only the maximum of the convolved image within its kernel footprint). Set
``min_separation=None`` to get the photutils ≥ 3 default.

Outputs per source: DAOFind centroid (0-based), aperture flux and its error in a
circular aperture of radius ``aperture_radius`` (px, default = FWHM) with
``snr = flux / flux_err``, DAOFind peak, sharpness and roundness.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from atd_dl.baselines.base import (
    BaseFinder,
    background_maps,
    make_catalog,
    position_error,
    prepare_image,
    sweep,
)

__all__ = [
    "DAOFindFinder",
    "dao_aperture_photometry",
    "dao_centroids",
    "dao_star_finder",
    "run_dao_finder",
]


def dao_star_finder(
    threshold: float,
    fwhm: float,
    *,
    sigma_radius: float = 1.5,
    sharpness_range: tuple[float, float] | None = (0.2, 1.0),
    roundness_range: tuple[float, float] | None = (-1.0, 1.0),
    min_separation: float | None = 0.0,
    exclude_border: bool = False,
    peak_max: float | None = None,
) -> Any:
    """Build a ``DAOStarFinder`` the same way on photutils 2.x and ≥ 3.

    ``threshold`` is absolute (image units). ``min_separation=None`` keeps the installed
    photutils default; any number is passed through (0 = no extra separation limit).
    """
    from photutils.detection import DAOStarFinder

    sig = inspect.signature(DAOStarFinder.__init__).parameters
    kw: dict[str, Any] = {"sigma_radius": sigma_radius, "exclude_border": exclude_border}
    if "sharpness_range" in sig:
        kw["sharpness_range"] = sharpness_range
        kw["roundness_range"] = roundness_range
    else:  # photutils < 3
        lo, hi = sharpness_range or (-np.inf, np.inf)
        rlo, rhi = roundness_range or (-np.inf, np.inf)
        kw.update(sharplo=lo, sharphi=hi, roundlo=rlo, roundhi=rhi)
    if peak_max is not None:
        kw["peak_max" if "peak_max" in sig else "peakmax"] = peak_max
    if min_separation is not None and "min_separation" in sig:
        kw["min_separation"] = float(min_separation)
    return DAOStarFinder(threshold=threshold, fwhm=fwhm, **kw)


def _col(table: Table, *names: str) -> np.ndarray:
    for name in names:
        if name in table.colnames:
            return np.asarray(table[name], dtype=float)
    raise KeyError(f"none of {names} in DAOStarFinder output {table.colnames}")


def run_dao_finder(finder: Any, image: np.ndarray, bad: np.ndarray) -> Table | None:
    """Run a ``DAOStarFinder`` on ``image`` with ``bad`` pixels masked; None when nothing is found.

    photutils' "No sources were found" warning is silenced (an empty frame is no error).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*No sources were found.*")
        found = finder(image, mask=bad if bad.any() else None)
    if found is None or len(found) == 0:
        return None
    return found


def dao_centroids(found: Table | None) -> tuple[np.ndarray, np.ndarray]:
    """0-based ``(x, y)`` centroids of ``DAOStarFinder`` output (photutils 2.x or ≥ 3 names).

    ``None`` (nothing found) gives two empty arrays.
    """
    if found is None:
        return np.zeros(0), np.zeros(0)
    return _col(found, "x_centroid", "xcentroid"), _col(found, "y_centroid", "ycentroid")


def dao_aperture_photometry(
    sub: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    rms: np.ndarray,
    *,
    gain: float | None = None,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circular-aperture flux, error and SNR on a background-subtracted image (ADU).

    Error per pixel: background RMS, plus Poisson noise ``max(sub, 0) / gain`` when the
    gain (e-/ADU) is known. Returns ``(flux, flux_err, snr)``.
    """
    from photutils.aperture import CircularAperture, aperture_photometry

    n = len(x)
    if n == 0:
        z = np.zeros(0)
        return z, z, z
    var = rms.astype(float) ** 2
    if gain:
        var = var + np.clip(sub, 0, None) / gain
    ap = CircularAperture(np.column_stack([x, y]), r=radius)
    phot = aperture_photometry(sub, ap, error=np.sqrt(var), mask=mask)
    flux = np.asarray(phot["aperture_sum"], dtype=float)
    err = np.asarray(phot["aperture_sum_err"], dtype=float)
    snr = np.divide(flux, err, out=np.full(n, np.nan), where=err > 0)
    return flux, err, snr


@dataclass
class DAOFindFinder(BaseFinder):
    """DAOStarFinder on a Background2D-subtracted image; ``threshold`` in background σ.

    ``fwhm`` kernel FWHM (px). ``min_separation`` defaults to 0 (photutils ≤ 2
    behaviour, see module docstring). ``gain`` e-/ADU, ``saturation`` ADU (flag 4).
    """

    name: ClassVar[str] = "daofind"
    SWEEP_DENSE: ClassVar[tuple[float, ...]] = tuple(sweep(4.0, 8.0, 0.1))
    SWEEP_PAPER: ClassVar[tuple[float, ...]] = (3.0, 3.3, 3.5, 3.7, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5)

    threshold: float = 5.0
    fwhm: float = 2.0
    sigma_radius: float = 1.5
    sharpness_range: tuple[float, float] | None = (0.2, 1.0)
    roundness_range: tuple[float, float] | None = (-1.0, 1.0)
    min_separation: float | None = 0.0
    back_size: int = 64
    back_filtersize: int = 3
    aperture_radius: float | None = None
    gain: float | None = None
    saturation: float | None = None
    edge: int = 3

    def __call__(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
    ) -> Table:
        """Detect sources; returns the standard catalog (0-based x, y)."""
        thresh = self._threshold(threshold)
        img, bad = prepare_image(data, mask, name="daofind input")
        bkg, rms = background_maps(
            img, bad, box_size=self.back_size, filter_size=self.back_filtersize
        )
        sub = img - bkg
        sigma = float(np.median(rms[~bad]))
        finder = dao_star_finder(
            thresh * sigma,
            self.fwhm,
            sigma_radius=self.sigma_radius,
            sharpness_range=self.sharpness_range,
            roundness_range=self.roundness_range,
            min_separation=self.min_separation,
        )
        found = run_dao_finder(finder, sub, bad)
        n = 0 if found is None else len(found)
        x, y = dao_centroids(found)
        radius = self.aperture_radius or self.fwhm
        flux, ferr, snr = dao_aperture_photometry(
            sub, x, y, radius, rms, gain=self.gain, mask=bad if bad.any() else None
        )
        saturated = (img >= self.saturation) & ~bad if self.saturation else None
        pos_err = position_error(self.fwhm / 2.3548, snr)
        extra: dict[str, Any] = {}
        if found is not None:
            extra = {
                "sharpness": _col(found, "sharpness"),
                "roundness1": _col(found, "roundness1"),
                "roundness2": _col(found, "roundness2"),
                "dao_flux": _col(found, "flux") * (self.gain or 1.0),
            }
        else:
            extra = {k: np.zeros(0) for k in ("sharpness", "roundness1", "roundness2", "dao_flux")}
        return make_catalog(
            x,
            y,
            flux=flux,
            flux_err=ferr,
            snr=snr,
            x_err=pos_err,
            y_err=pos_err,
            area=np.full(n, np.pi * radius**2),
            peak=None if found is None else _col(found, "peak"),
            shape=img.shape,
            mask=bad,
            saturated=saturated,
            edge=self.edge,
            wcs=wcs,
            gain=self.gain,
            extra=extra,
            meta={
                "finder": self.name,
                "threshold": thresh,
                "threshold_adu": thresh * sigma,
                "background_rms": sigma,
                "fwhm": self.fwhm,
                "min_separation": self.min_separation,
            },
        )
