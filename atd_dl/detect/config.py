"""Parameters of the post-processing of probability maps (:mod:`atd_dl.detect.postprocess`).

Kept in a module of its own so that every stage (:mod:`~atd_dl.detect.components`,
:mod:`~atd_dl.detect.trails`, :mod:`~atd_dl.detect.deblend`,
:mod:`~atd_dl.detect.measure`) can take the one configuration object without importing
the chain that calls them. Lengths are in pixels, intensities in the frame's flux unit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PostprocessConfig:
    """Parameters of the post-processing (defaults = the documented operating point)."""

    min_area: int = 2  # px; smaller components are dropped (paper labels: >= 2 px)
    # ... unless their peak probability reaches this (> 1 = never): undersampled bright
    # stars can leave a single pixel above the threshold
    small_peak_prob: float = 1.01
    circularity_threshold: float = 0.7  # Eq. 15 blend criterion
    min_blend_area: int = 6  # px; smaller components always count as round
    min_child_area: int = 2  # px; smallest sub-target of the shape (growth) split
    max_children: int = 4  # shape split: at most this many sub-targets
    deblend: bool = True  # False: no splitting at all (trails still flagged)
    # split components at probability maxima this prominent (0 = off, the paper's chain):
    # neighbours merged below the probability between them come apart
    # (:func:`~atd_dl.detect.components.split_by_probability`)
    split_prominence: float = 0.0
    peak_smooth_sigma: float = 0.5  # px; Gaussian smoothing before peak finding
    deblend_nsigma: float = 3.0  # dip between peaks must exceed this many sigma
    deblend_contrast: float = 0.05  # ... and this fraction of the secondary peak
    pair_nsigma: float = 5.0  # elongation excess over the PSF must exceed this many sigma
    pair_min_excess: float = 0.5  # ... and this fraction of sigma_psf^2 (px^2)
    pair_min_separation: float = 0.5  # px; closer mixture pairs are not split
    pair_min_fraction: float = 0.05  # fainter child must hold this fraction of the light
    mixture_iterations: int = 25  # EM iterations of the flux-sharing fit
    max_mixture_peaks: int = 16  # more distinct peaks: steepest-ascent basins, no EM
    max_deblend_area: int = 2500  # px; larger components split only into peak basins
    trail_min_elongation: float = 4.0  # sqrt(l1/l2) of the pixel second moments
    trail_min_length: float = 12.0  # px, sqrt(12 l1)
    trail_plateau_nsigma: float = 3.0  # median track profile must exceed this many sigma
    trail_gap_fraction: float = 0.7  # no profile bin below (1 - this) x the median level
    aperture_scale: float = 1.5  # aperture radius = scale * FWHM
    min_aperture_radius: float = 1.5  # px
    aperture_method: str = "fast"  # "fast" (vectorised) or "exact" (photutils)
    default_fwhm: float = 2.0  # px, used when too few stars to measure it
    low_snr: float = 3.0  # LOW_SNR flag below this aperture SNR
    # subtract the median of an annulus around each source (other sources and masked
    # pixels excluded) from the aperture flux: corrects a frame background that is off
    # near bright stars, nebulosity and in crowded fields
    local_background: bool = True
    # "windowed": Eq. 16 centroid refined by a Gaussian-windowed iteration (like XWIN) for
    # isolated, non-trail sources; "segment": the paper's Eq. 16 over the segment pixels only
    centroid: str = "windowed"
