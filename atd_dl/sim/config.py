"""Simulator configuration: every physical knob of the simulated camera and sky.

Defaults describe one unit of the ATD-DL wide-field array (QHY4040 CMOS camera behind a
150 mm f/1.15 lens, 14.86 arcsec/px, 100 ms exposures). Units are given in each field's
comment: ``_e`` = electrons, ``_adu`` = ADU, ``_px`` = pixels, ``_s`` = seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

# stars per square degree brighter than SimConfig.density_ref_mag, per preset
PRESET_DENSITY: dict[str, float] = {"sparse": 46.0, "paper": 229.0, "dense": 572.0}


@dataclass(frozen=True)
class SimConfig:
    """All parameters of a simulated frame (frozen; use :func:`dataclasses.replace`)."""

    preset: str = "paper"
    # --- detector -------------------------------------------------------------
    size: int = 1600  # frame is size x size pixels
    pixel_scale_arcsec: float = 14.86
    exptime_s: float = 0.1
    gain_e_per_adu: float = 1.1  # QHY4040-like: ~72 ke- full well over the 16-bit range
    read_noise_e: float = 3.5
    row_noise_e: float = 0.5  # per-frame row-correlated read noise (CMOS banding)
    full_well_e: float = 75_000.0  # charge beyond this bleeds along the column
    saturate_adu: int = 65535
    bias_level_adu: float = 300.0
    bias_column_sigma_adu: float = 1.5  # fixed column-to-column bias structure
    bias_gradient_adu: float = 4.0  # fixed bias ramp across the columns
    dark_rate_e_s: float = 0.05  # base dark current per pixel (cooled sensor)
    n_hot_pixels: int = 300  # fixed per camera, present in the master dark
    hot_rate_min_e_s: float = 2_000.0  # hot-pixel dark current range (log-uniform)
    hot_rate_max_e_s: float = 100_000.0
    master_n_combined: int = 20  # frames averaged into the master bias / dark (0 = noiseless)
    # --- optics / astrometry --------------------------------------------------
    # optical PSF FWHM before pixel integration; pixelated stars measure ~0.25 px wider
    fwhm_px: float = 1.25  # on the optical axis (measured FWHM ~1.5 px, as in the paper)
    fwhm_corner_px: float = 1.8  # in the frame corners, quadratic growth (measured ~2.0 px)
    moffat_beta: float = 3.0
    ellip_center: float = 0.03  # 1 - b/a on axis
    ellip_corner: float = 0.12  # 1 - b/a in the corners, radially elongated
    vignetting_corner: float = 0.75  # relative throughput in the corners (cos^4-like)
    rotation_max_deg: float = 1.0  # random field rotation in [-max, max]
    sip_corner_px: float = 0.0  # radial SIP distortion at the corner (0 = pure TAN)
    dec_limit_deg: float = 75.0  # field centres stay within |dec| <= limit
    date_obs: str = "2023-09-21T11:21:32"  # DATE-OBS of frame 0 (UTC)
    cadence_s: float = 60.0  # DATE-OBS step between frame indices
    # --- photometry / sky -----------------------------------------------------
    zeropoint_mag: float = 19.63  # magnitude giving 1 e-/s (G band, 130 mm aperture)
    sky_mag_arcsec2: float = 20.0  # sky surface brightness on axis (bright suburban site)
    sky_gradient: float = 0.10  # fractional sky ramp across the frame, random direction
    # --- stars ----------------------------------------------------------------
    star_density: float | None = None  # stars/deg^2 brighter than density_ref_mag (None: preset)
    density_ref_mag: float = 13.0
    lf_slope: float = 0.33  # d log10 N(<m) / dm
    mag_bright: float = 6.0
    mag_faint: float | None = None  # None: detection limit (SNR 2) + faint_depth_mag
    faint_depth_mag: float = 2.0
    density_gradient: float = 0.15  # fractional star-density ramp across the frame
    pair_fraction: float = 0.03  # fraction of stars given a close companion
    pair_sep_px: tuple[float, float] = (1.5, 4.0)
    pair_dmag_max: float = 3.0  # companion is 0..max mag fainter
    pm_sigma_mas_yr: float = 6.0  # ordinary proper motions (per axis, Gaussian)
    n_high_pm: int = 5  # stars with 100-1000 mas/yr
    n_bright_extra: float = 1.0  # mean number of extra saturating stars (mag 1.5-4)
    margin_px: int = 12  # stars this far outside the frame still spill light in
    # --- catalog --------------------------------------------------------------
    ref_epoch: float = 2016.0
    catalog_mag_sigma: float = 0.02
    catalog_pos_sigma_mas: float = 0.1
    # --- artefacts ------------------------------------------------------------
    trail_rate: float = 0.5  # mean number of moving-object trails per frame
    trail_length_px: tuple[float, float] = (10.0, 150.0)
    trail_mag: tuple[float, float] = (6.0, 10.0)  # total magnitude of the trail
    cosmic_rate: float = 3.0  # mean cosmic-ray hits per frame
    # --- isolated mode (clean test frames) -----------------------------------
    isolated: bool = False  # no pairs/trails/cosmics/saturating stars; min separation
    min_separation_px: float = 6.0

    @property
    def sky_e(self) -> float:
        """Sky electrons per pixel per exposure on the optical axis."""
        pix_mag = self.sky_mag_arcsec2 - 5.0 * math.log10(self.pixel_scale_arcsec)
        return self.exptime_s * 10.0 ** (-0.4 * (pix_mag - self.zeropoint_mag))

    @property
    def density(self) -> float:
        """Star density (per deg^2 brighter than ``density_ref_mag``)."""
        if self.star_density is not None:
            return float(self.star_density)
        return PRESET_DENSITY[self.preset]


def preset_config(preset: str = "paper", **overrides: Any) -> SimConfig:
    """Return the configuration of a named preset with keyword overrides.

    ``preset`` is one of ``sparse``, ``paper``, ``dense`` (star density only; the
    camera is the same). Unknown names raise ``KeyError`` listing the valid ones.
    """
    if preset not in PRESET_DENSITY:
        raise KeyError(f"unknown preset {preset!r}; valid: {', '.join(PRESET_DENSITY)}")
    cfg = SimConfig(preset=preset)
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
