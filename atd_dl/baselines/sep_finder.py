"""SExtractor algorithms in-process through the ``sep`` library (Barbary 2016).

Same settings as :mod:`atd_dl.baselines.sextractor` (paper Table 3: minimum area 2,
32 deblending levels, contrast 0.005, 64-px background boxes median-filtered over 3
boxes, global background for photometry) without writing files or starting a process.
``threshold`` is in units of the global background RMS, as SExtractor's RELATIVE
threshold. Positions are windowed centroids (sep ``winpos`` with σ = 2·r½/2.35, r½ the
half-flux radius — SExtractor's XWIN definition) or the isophotal barycentre
(``centroid="iso"``); sep already counts pixels from 0. Fluxes are Kron (AUTO) fluxes
with SExtractor's PHOT_AUTOPARAMS 2.5, 3.5; ``snr = flux / flux_err``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from atd_dl.baselines.base import (
    FLAG_BLENDED,
    BaseFinder,
    BaselineUnavailable,
    gaussian_kernel,
    make_catalog,
    prepare_image,
    sweep,
)

__all__ = ["SepFinder"]

_DEFAULT_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32)


def _import_sep() -> Any:
    try:
        import sep
    except ImportError as err:  # pragma: no cover - sep is a declared dependency
        raise BaselineUnavailable(
            "the 'sep' baseline needs the sep package: pip install sep"
        ) from err
    return sep


@dataclass
class SepFinder(BaseFinder):
    """In-process SExtractor (sep); ``threshold`` in units of the global background RMS.

    ``filter_fwhm``: Gaussian detection filter FWHM (px), ``"default"`` for the 3×3
    pyramid, ``None`` for no filter. ``gain`` e-/ADU (Poisson term of the errors and
    electron fluxes), ``saturation`` ADU (flag 4 for sources touching such pixels).
    """

    name: ClassVar[str] = "sep"
    SWEEP_DENSE: ClassVar[tuple[float, ...]] = tuple(sweep(0.5, 2.0, 0.1))
    SWEEP_PAPER: ClassVar[tuple[float, ...]] = tuple(sweep(0.1, 1.0, 0.1))

    threshold: float = 1.5
    minarea: int = 2
    deblend_nthresh: int = 32
    deblend_cont: float = 0.005
    back_size: int = 64
    back_filtersize: int = 3
    filter_fwhm: float | str | None = "default"
    clean: bool = True
    clean_param: float = 1.0
    gain: float | None = None
    saturation: float | None = None
    centroid: str = "win"
    edge: int = 3

    def __post_init__(self) -> None:
        if self.centroid not in ("win", "iso"):
            raise ValueError(f"centroid must be 'win' or 'iso', got {self.centroid!r}")

    def __call__(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
    ) -> Table:
        """Detect sources; returns the standard catalog (0-based x, y)."""
        sep = _import_sep()
        thresh = self._threshold(threshold)
        img, bad = prepare_image(data, mask, name="sep input")
        ny, nx = img.shape
        bw, bh = min(self.back_size, nx), min(self.back_size, ny)
        bkg = sep.Background(
            img, mask=bad, bw=bw, bh=bh, fw=self.back_filtersize, fh=self.back_filtersize
        )
        sub = img - bkg.back()
        rms = float(bkg.globalrms)
        if self.filter_fwhm is None:
            kernel = None
        elif self.filter_fwhm == "default":
            kernel = _DEFAULT_KERNEL
        else:
            kernel = gaussian_kernel(float(self.filter_fwhm))
        # very low thresholds on crowded frames need a large pixel stack and many sub-objects
        sep.set_extract_pixstack(max(sep.get_extract_pixstack(), img.size))
        sep.set_sub_object_limit(max(sep.get_sub_object_limit(), 65536))
        try:
            objs = sep.extract(
                sub,
                thresh,
                err=rms,
                gain=self.gain,
                mask=bad,
                minarea=int(self.minarea),
                filter_kernel=kernel,
                deblend_nthresh=int(self.deblend_nthresh),
                deblend_cont=float(self.deblend_cont),
                clean=self.clean,
                clean_param=float(self.clean_param),
            )
        except Exception as err:  # sep raises bare Exception for buffer overflows
            raise RuntimeError(f"sep extraction failed at threshold {thresh:g}: {err}") from err
        n = len(objs)
        x_iso = np.asarray(objs["x"], float)
        y_iso = np.asarray(objs["y"], float)
        a = np.asarray(objs["a"], float)
        b = np.asarray(objs["b"], float)
        theta = np.clip(np.asarray(objs["theta"], float), -np.pi / 2, np.pi / 2)
        flux, ferr, r_half, x_win, y_win = (np.full(n, np.nan) for _ in range(5))
        if n:
            flux, ferr = self._auto_flux(sep, sub, bad, x_iso, y_iso, a, b, theta, rms)
            r_half, _ = sep.flux_radius(
                sub,
                x_iso,
                y_iso,
                6.0 * np.maximum(a, 0.5),
                0.5,
                normflux=np.maximum(flux, 1e-12),
                subpix=5,
            )
            sig = 2.0 / 2.35 * np.maximum(np.asarray(r_half, float), 0.5)
            xw, yw, wflag = sep.winpos(sub, x_iso, y_iso, sig, mask=bad)
            ok = (
                (wflag == 0)
                & np.isfinite(xw)
                & (np.hypot(xw - x_iso, yw - y_iso) < 2.0 * np.maximum(a, 1.0))
            )
            x_win = np.where(ok, xw, x_iso)
            y_win = np.where(ok, yw, y_iso)
        x, y = (x_win, y_win) if self.centroid == "win" else (x_iso, y_iso)
        pos_var_x = np.asarray(objs["errx2"], float)
        pos_var_y = np.asarray(objs["erry2"], float)
        flags = np.zeros(n, dtype=np.int32)
        flags[(np.asarray(objs["flag"]) & sep.OBJ_MERGED) != 0] |= FLAG_BLENDED
        snr = np.divide(flux, ferr, out=np.full(n, np.nan), where=ferr > 0)
        saturated = (img >= self.saturation) & ~bad if self.saturation else None
        circ = np.divide(b, a, out=np.full(n, np.nan), where=a > 0)
        return make_catalog(
            x,
            y,
            flux=flux,
            flux_err=ferr,
            snr=snr,
            x_err=np.sqrt(pos_var_x) if np.any(pos_var_x > 0) else None,
            y_err=np.sqrt(pos_var_y) if np.any(pos_var_y > 0) else None,
            area=np.asarray(objs["npix"], float),
            circularity=circ,
            peak=np.asarray(objs["peak"], float),
            flags=flags,
            shape=img.shape,
            mask=bad,
            saturated=saturated,
            edge=self.edge,
            wcs=wcs,
            gain=self.gain,
            extra={
                "x_win": x_win,
                "y_win": y_win,
                "x_iso": x_iso,
                "y_iso": y_iso,
                "flux_iso": np.asarray(objs["flux"], float) * (self.gain or 1.0),
                "flux_radius": np.asarray(r_half, float),
                "sep_flags": np.asarray(objs["flag"], np.int32),
            },
            meta={
                "finder": self.name,
                "threshold": thresh,
                "centroid": self.centroid,
                "background_rms": rms,
            },
        )

    def _auto_flux(
        self,
        sep: Any,
        sub: np.ndarray,
        bad: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        a: np.ndarray,
        b: np.ndarray,
        theta: np.ndarray,
        rms: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Kron (AUTO) flux as SExtractor's PHOT_AUTOPARAMS 2.5, 3.5.

        Elliptical aperture of semi-axes k·a, k·b with k = max(2.5·r_Kron, 3.5).
        """
        a_ = np.maximum(a, 0.1)
        b_ = np.maximum(b, 0.1)
        kronrad, _ = sep.kron_radius(sub, x, y, a_, b_, theta, 6.0, mask=bad)
        kronrad = np.where(np.isfinite(kronrad) & (kronrad > 0), kronrad, 0.0)
        k = np.maximum(2.5 * kronrad, 3.5)
        flux, ferr, _ = sep.sum_ellipse(
            sub, x, y, a_, b_, theta, k, err=rms, gain=self.gain, mask=bad, subpix=1
        )
        return np.asarray(flux, float), np.asarray(ferr, float)
