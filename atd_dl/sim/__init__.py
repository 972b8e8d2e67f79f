"""Field simulator: raw frames of the ATD-DL wide-field camera with known truth.

Main entry points: :func:`simulate_field` (one frame in memory), :func:`simulate_run`
(frames + masters + catalogs on disk), :func:`add_stars` / :func:`render_psf_stamp`
(reusable star rendering with the field-dependent Moffat PSF).
"""

from atd_dl.sim.config import PRESET_DENSITY, SimConfig, preset_config
from atd_dl.sim.psf import MoffatPSF, add_stars, inject_stars, psf_stamps, render_psf_stamp
from atd_dl.sim.simulate import (
    SimulatedField,
    detection_limit_mag,
    frame_name,
    psf_model,
    simulate_field,
    simulate_run,
    snr3,
    write_calibration,
    write_field,
)

__all__ = [
    "PRESET_DENSITY",
    "MoffatPSF",
    "SimConfig",
    "SimulatedField",
    "add_stars",
    "detection_limit_mag",
    "frame_name",
    "inject_stars",
    "preset_config",
    "psf_model",
    "psf_stamps",
    "render_psf_stamp",
    "simulate_field",
    "simulate_run",
    "snr3",
    "write_calibration",
    "write_field",
]
