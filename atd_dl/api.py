"""Python API: detect, simulate and evaluate without the command line.

Four functions, also available from the package itself (``atd_dl.detect`` ...):

* :func:`detect` — sources in a FITS file or a 2-D array, as an astropy ``QTable``
  (the catalog ``atd-dl detect`` writes, with units);
* :func:`load_model` — a shipped model by name or a model folder / checkpoint, loaded once
  and reusable across :func:`detect` calls;
* :func:`simulate` — one raw frame of the field simulator with its truth table and header;
* :func:`evaluate` — precision / recall / F1 of a catalog against a truth table.

Pixel convention everywhere: arrays ``[y, x]``, catalog ``x, y`` 0-based pixel centres
(astropy ``origin=0``). Example::

    import atd_dl
    image, truth, header = atd_dl.simulate(seed=1, size=512)
    catalog = atd_dl.detect(image, header=header)
    print(atd_dl.evaluate(catalog, truth)["f1"])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io import fits
    from astropy.table import QTable, Table
    from astropy.wcs import WCS

    from atd_dl.io.fits_io import Frame

__all__ = ["LoadedModel", "SimulatedImage", "detect", "evaluate", "load_model", "simulate"]


@dataclass
class LoadedModel:
    """A detection network ready for :func:`detect`.

    ``network``: the ``torch.nn.Module`` in eval mode on ``device``; ``meta``: its model
    folder metadata (``name``, ``input``, ``threshold``, ``kwargs``, ``path`` ...).
    """

    network: Any
    meta: dict[str, Any]
    device: str | None = None

    @property
    def name(self) -> str:
        """Model name (from its ``config.json``)."""
        return str(self.meta.get("name", ""))

    @property
    def threshold(self) -> float:
        """The model's tuned probability threshold (0-1)."""
        return float(self.meta.get("threshold", 0.5))


def load_model(name_or_path: str | Path = "default", *, device: str | None = None) -> LoadedModel:
    """Load a detection model once, for several :func:`detect` calls.

    ``name_or_path``: a shipped model name (``"default"``, ``"paper_camera"``; list them
    with ``atd-dl models``), a model folder or a Lightning ``.ckpt`` file. ``device``:
    ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...; None = CUDA when available, else CPU.
    Raises :class:`~atd_dl.errors.InputError` when the model cannot be found or read.
    """
    from atd_dl.detect.inference import load_detector

    network, meta = load_detector(
        None if name_or_path == "default" else name_or_path, device=device
    )
    return LoadedModel(network, dict(meta), device)


def _array_frame(
    data: np.ndarray,
    header: fits.Header | None,
    wcs: WCS | None,
    saturation: float | None,
) -> Frame:
    """A :class:`~atd_dl.io.fits_io.Frame` from an in-memory image, treated as
    :func:`~atd_dl.io.fits_io.read_frame` treats a file: saturation from ``saturation``,
    else the header (SATURATE / SATLEVEL), else the top of an integer dtype's range
    (65535 for uint16), else a plateau of 16-bit maxima; WCS from ``wcs`` or the header."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from atd_dl.errors import InputError
    from atd_dl.io.fits_io import SATURATION_KEYS, Frame, infer_saturation

    raw = np.asarray(data)
    if raw.ndim != 2 or 0 in raw.shape:
        raise InputError(None, f"image must be a non-empty 2-D array, got shape {raw.shape}")
    values = np.array(raw, dtype=np.float32, order="C")
    hdr = fits.Header() if header is None else fits.Header(header)
    level = saturation
    if level is None:
        for key in SATURATION_KEYS:
            v = hdr.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                level = float(v)
                break
    if level is None and np.issubdtype(raw.dtype, np.integer):
        level = float(np.iinfo(raw.dtype).max)
    if level is None:
        level = infer_saturation(values)
    if wcs is None and header is not None:
        try:
            w = WCS(hdr, naxis=2)
            wcs = w.celestial if w.has_celestial else None
        except Exception:  # a broken WCS header: pixel-only catalog, as for files
            wcs = None
    if wcs is not None:
        wcs = wcs.deepcopy()
        wcs.pixel_shape = (values.shape[1], values.shape[0])
    finite = np.isfinite(values)
    saturated = finite & (values >= level) if level is not None else np.zeros(values.shape, bool)
    return Frame(values, ~finite | saturated, saturated, hdr, wcs, None, 0, level)


def detect(
    source: str | Path | np.ndarray | Frame,
    model: str | Path | LoadedModel = "default",
    *,
    header: fits.Header | None = None,
    wcs: WCS | None = None,
    saturation: float | None = None,
    bias: str | Path | None = None,
    dark: str | Path | None = None,
    flat: str | Path | None = None,
    device: str | None = None,
    **options: Any,
) -> QTable:
    """Detect point sources in one frame; returns the catalog as an astropy ``QTable``.

    ``source``: a FITS file path, a 2-D image array ``[y, x]`` in ADU (any numeric dtype;
    an integer dtype saturates at the top of its range), or a
    :class:`~atd_dl.io.fits_io.Frame`. For arrays, ``header`` supplies GAIN / SATURATE /
    EXPTIME and a WCS, ``wcs`` overrides the header's, ``saturation`` (ADU) overrides both.
    ``model``: a shipped model name, a model folder or ``.ckpt`` path, or a
    :func:`load_model` result (load once when detecting on many frames). ``bias``,
    ``dark``, ``flat``: master calibration FITS files. ``device``: as for
    :func:`load_model`.

    ``options`` are the fields of :class:`~atd_dl.detect.pipeline.DetectConfig`, e.g.
    ``threshold`` (probability 0-1; default the model's tuned one), ``min_snr``
    (aperture SNR cut), ``gain`` (e-/ADU, overrides the header), ``tile``, ``overlap``
    (px), ``edge`` (px, NEAR_EDGE flag), ``hdu`` and ``plane`` (files only).

    Columns (see docs/detect.md): ``id``; ``x, y`` and ``x_err, y_err`` [pix]; ``ra,
    dec`` [deg] (NaN without a WCS); ``flux, flux_err, peak`` [electron when the gain is
    known, else adu]; ``snr``; ``area`` [pix2]; ``fwhm`` [pix]; ``flags`` ... The meta
    holds the threshold, model and frame provenance. Raises
    :class:`~atd_dl.errors.InputError` for unreadable input.
    """
    from astropy.table import QTable

    from atd_dl.detect.batch import load_masters
    from atd_dl.detect.pipeline import DetectConfig, Detector

    known = {f.name for f in dataclasses.fields(DetectConfig)} - {"device"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown detect option(s) {unknown}; valid: {sorted(known)}")
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device)
    config = DetectConfig(device=device or loaded.device, **options)
    detector = Detector(loaded.network, loaded.meta, config)
    masters = load_masters(bias, dark, flat)
    if isinstance(source, np.ndarray):
        frame: Any = _array_frame(source, header, wcs, saturation)
    elif isinstance(source, (str, Path)):
        frame = Path(source)
    else:
        frame = source
    result = detector.run(frame, masters=masters)
    return QTable(result.catalog, copy=False)


class SimulatedImage(NamedTuple):
    """:func:`simulate` result: ``image`` raw uint16 ``[y, x]`` in ADU (bias, dark, sky,
    vignetting and noise included, as the camera writes it); ``truth``: one row per
    star / trail (``x, y`` [pix], ``flux_e`` [electron], ``mag``, ``snr_true``,
    ``kind`` ...); ``header``: the FITS header (GAIN, SATURATE, EXPTIME, DATE-OBS, WCS)."""

    image: np.ndarray
    truth: Table
    header: fits.Header


def simulate(
    preset: str = "paper", *, seed: int = 0, index: int = 0, **overrides: Any
) -> SimulatedImage:
    """One simulated raw frame of the ATD-DL wide-field camera with its truth.

    ``preset``: ``"sparse"``, ``"paper"`` or ``"dense"`` (star density); ``seed`` and
    ``index`` pick the frame (the same pair always gives the same frame; ``atd-dl
    simulate --seed S`` writes frames ``index = 0, 1, ...``). ``overrides`` are fields of
    :class:`~atd_dl.sim.config.SimConfig`, e.g. ``size=512`` (px), ``fwhm_px``,
    ``exptime_s``, ``star_density`` (stars/deg^2).
    """
    from atd_dl.sim import preset_config, simulate_field

    field = simulate_field(preset_config(preset, **overrides), seed, index)
    return SimulatedImage(field.image, field.truth, field.header)


def evaluate(
    detections: Any,
    truth: Any,
    radius: float = 3.0,
    *,
    snr_min: float = 2.0,
    edge: float = 3.0,
    shape: tuple[int, int] | None = None,
    rule: str = "strict",
) -> dict[str, Any]:
    """Score a catalog against the truth: precision, recall, F1 and counts.

    ``detections``: a table with ``x, y`` columns [pix] (e.g. :func:`detect`'s) or an
    ``[N, 2]`` array of (x, y); ``truth``: a simulator truth table (``x, y, snr_true``,
    optional ``kind`` — trails never count as targets) or an ``[M, 2]`` array (every row
    a target). A detection matches a reference within ``radius`` px; references with
    SNR below ``snr_min`` may be matched but are not required (the set G of
    docs/evaluation.md); with ``shape`` (ny, nx), detections closer than ``edge`` px to
    the border are ignored. ``rule``: ``"strict"`` (one-to-one) or ``"paper"`` (nearest
    reference, He et al. 2026 §4); both rules' counts are returned under their names.

    Returns ``{"precision", "recall", "f1", "tp", "fp", "fn", "n_det", "n_ref",
    "rule", "radius", "paper": {...}, "strict": {...}}`` (dimensionless fractions, counts).
    """
    from atd_dl.evaluate.metrics import evaluate_frame
    from atd_dl.evaluate.references import detections_xy, references_from_truth

    if rule not in ("strict", "paper"):
        raise ValueError(f"rule must be 'strict' or 'paper', got {rule!r}")
    if isinstance(detections, np.ndarray):
        det = np.asarray(detections, float).reshape(-1, 2)
    else:
        det = detections_xy(detections)
    if isinstance(truth, np.ndarray):
        ref_xy, ref_snr, target = np.asarray(truth, float).reshape(-1, 2), None, None
    else:
        refs = references_from_truth(truth)
        ref_xy, ref_snr, target = refs.xy, refs.snr, refs.target
    ev = evaluate_frame(
        det,
        ref_xy,
        ref_snr,
        shape=shape,
        radius=radius,
        edge=edge,
        snr_min=snr_min,
        ref_target=target,
    )
    chosen = ev.counts(rule).to_dict()
    out: dict[str, Any] = {
        k: chosen[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "n_ref")
    }
    out.update(n_det=chosen["tp"] + chosen["fp"], rule=rule, radius=float(radius))
    out["paper"] = ev.paper.to_dict()
    out["strict"] = ev.strict.to_dict()
    return out
