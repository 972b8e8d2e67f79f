"""The records passed between the stages of detection on one frame.

:func:`~atd_dl.detect.pipeline.prepare_frame` gives a :class:`PreparedFrame` (or, for a
multi-extension file, a :class:`PreparedMosaic`); :class:`~atd_dl.detect.pipeline.Detector`
turns it into a :class:`FrameResult`; :mod:`atd_dl.detect.catalog_io` writes that, and
:mod:`atd_dl.detect.batch` runs many. Plain data only: this module imports no other stage,
so every stage can import it without a cycle. A frame's output name is
:func:`atd_dl.io.paths.frame_stem` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from atd_dl.io.fits_io import Frame
from atd_dl.io.paths import frame_stem
from atd_dl.prep.psf_width import FwhmMeasurement

__all__ = ["FrameResult", "PreparedFrame", "PreparedMosaic", "frame_stem"]


@dataclass
class PreparedFrame:
    """A frame ready for inference: calibrated, enhanced, in electrons when possible."""

    frame: Frame
    image8: np.ndarray | None  # uint8 stretched frame (None when empty or not needed)
    image_e: np.ndarray | None  # background-subtracted frame (electrons or ADU)
    rms_e: np.ndarray | None  # background rms map (same unit)
    background_rms_adu: np.ndarray | None
    subtracted_adu: np.ndarray | None  # background-subtracted frame (ADU)
    gain: float | None
    unit: str  # "electron" or "adu"
    sha256: str | None
    calibration: str
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    fwhm: FwhmMeasurement | None = None  # measured PSF width (None when empty)
    counting: bool = False  # photon-counting background (whole counts, rms < 3 e-)
    defect_dominated: bool = False  # sharp pixel defects outnumber stars (pixel_defects)

    @property
    def empty(self) -> bool:
        """True when the frame had no usable pixel (empty catalog)."""
        return self.subtracted_adu is None


@dataclass
class PreparedMosaic:
    """Every image extension of a multi-extension file, prepared; one catalog comes out."""

    path: Path
    parts: list[PreparedFrame]
    sha256: str | None
    warnings: list[str] = field(default_factory=list)

    @property
    def frame(self) -> Frame:
        """The first extension's frame (shape and header of the batch record)."""
        return self.parts[0].frame

    @property
    def timings(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in self.parts:
            for k, v in part.timings.items():
                out[k] = out.get(k, 0.0) + v
        return out


@dataclass
class FrameResult:
    """Everything :func:`~atd_dl.detect.pipeline.detect_frame` produced for one frame."""

    catalog: Table
    prob: np.ndarray
    segmap: np.ndarray
    prepared: PreparedFrame
    threshold: float
    timings: dict[str, float]
    outputs: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
