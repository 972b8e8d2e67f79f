"""Catalog-anchored training labels (paper §2.2, Fig. 5).

:func:`make_labels` turns a calibrated frame, its background / rms maps and a projected
reference catalog into a label mask; :mod:`~atd_dl.labels.snr` holds the blob and 3×3
aperture SNR (Eqs. 8–11); :mod:`~atd_dl.labels.overlay` draws the Fig. 5-style check image.
"""

from atd_dl.labels.anchor import REASONS, LabelConfig, LabelResult, make_labels
from atd_dl.labels.psf import median_prf_fwhm, select_psf_stars
from atd_dl.labels.segment import Segmentation, segment_threshold
from atd_dl.labels.snr import ApertureSNR, aperture_snr, blob_snr, box_snr, snr_from_counts

__all__ = [
    "REASONS",
    "ApertureSNR",
    "LabelConfig",
    "LabelResult",
    "Segmentation",
    "aperture_snr",
    "blob_snr",
    "box_snr",
    "median_prf_fwhm",
    "make_labels",
    "segment_threshold",
    "select_psf_stars",
    "snr_from_counts",
]
