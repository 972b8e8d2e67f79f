"""Benchmark orchestration: models and classical baselines swept over a simulated test set.

The test set is the ``atd-dl simulate`` layout (``frames/``, ``truth/``, ``catalogs/``,
optional ``calib/`` masters). Frames are calibrated with the masters when present; the
references are the truth tables (default) or the Gaia-like catalogs projected through
the WCS with the 3×3 SNR (``reference="catalog"``, the paper's real-data protocol).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from atd_dl.errors import InputError
from atd_dl.evaluate.references import (
    References,
    TestFrame,
    load_test_set,
    read_table,
    references_from_catalog,
    references_from_truth,
)
from atd_dl.evaluate.sweep import EvalSettings, Method, SweepResult, run_sweeps

__all__ = [
    "BASELINE_ALIASES",
    "BenchmarkOutput",
    "baseline_method",
    "frame_loader",
    "model_method",
    "run_benchmark",
    "truth_zeropoint",
]

log = logging.getLogger(__name__)

#: benchmark-only aliases: name -> (registered baseline, extra params, segmentation_centroid)
BASELINE_ALIASES: dict[str, tuple[str, dict[str, Any], bool]] = {
    "sextractor_seg": ("sextractor", {"centroid": "segmentation"}, True),
}
#: parameters the benchmark sets for a baseline unless the user overrides them
BENCHMARK_DEFAULTS: dict[str, dict[str, Any]] = {
    # 2MASS Atlas edge margins (26/36 px) make no sense on other cameras: the protocol's
    # own 3-px edge cut applies to every method instead
    "twomass": {"edge_y": 3, "edge_x": 3},
}
LABELS = {
    "sextractor": "SExtractor",
    "sextractor_seg": "SExtractor (seg. centroid)",
    "daofind": "DAOFind",
    "twomass": "2MASS DAOFind",
    "sep": "sep",
    "psphot": "psphot-like",
}


def _make_finder(name: str, params: dict[str, Any]) -> tuple[Any, bool]:
    """Instantiate a baseline by name through :func:`atd_dl.baselines.get_baseline`."""
    from atd_dl.baselines import get_baseline

    key = name.lower().strip()
    base, extra, seg = BASELINE_ALIASES.get(key, (key, {}, False))
    kwargs = {**BENCHMARK_DEFAULTS.get(base, {}), **extra, **params}
    return get_baseline(base, **kwargs), seg


def _check_available(name: str, finder: Any) -> None:
    """Raise BaselineUnavailable when an external program is missing."""
    if "sextractor" in name:
        from atd_dl.baselines.sextractor import find_sextractor

        find_sextractor(getattr(finder, "binary", None))


def baseline_method(
    name: str,
    *,
    sweep: str = "dense",
    values: Sequence[float] | None = None,
    params: dict[str, Any] | None = None,
) -> Method:
    """A sweep :class:`Method` for the baseline ``name`` (``sextractor``, ``sep``, ``daofind``…).

    ``sweep`` = ``"dense"`` or ``"paper"`` picks the finder's own threshold list unless
    ``values`` is given. The frame's gain and saturation level are passed to the finder
    when it has such parameters. Raises ``BaselineUnavailable`` / ``KeyError``.
    """
    finder, seg = _make_finder(name, dict(params or {}))
    _check_available(name, finder)
    vals = [float(v) for v in (values if values is not None else finder.sweep_values(sweep))]
    fields = set(getattr(finder, "__dataclass_fields__", {}))

    def configured(frame: Any) -> Any:
        upd = {}
        if "gain" in fields and getattr(finder, "gain", None) is None and frame.gain:
            upd["gain"] = float(frame.gain)
        level = getattr(frame, "saturation_level", None)
        if level and np.isfinite(level):
            if "saturation" in fields and getattr(finder, "saturation", None) is None:
                upd["saturation"] = float(level)
            if "saturation_level" in fields:
                upd["saturation_level"] = float(level)
        return finder.with_params(**upd) if upd else finder

    def run_one(frame: Any, value: float) -> Table:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return configured(frame)(frame.data, mask=frame.mask, wcs=frame.wcs, threshold=value)

    def run(frame: Any) -> list[Table]:
        f = configured(frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [f(frame.data, mask=frame.mask, wcs=frame.wcs, threshold=v) for v in vals]

    label = {
        "sextractor_seg": "SExtractor (seg. centroid)",
        "sextractor": "SExtractor",
        "daofind": "DAOFind",
        "sep": "sep",
    }.get(name, name)
    return Method(
        name=name,
        param="threshold (σ)",
        values=vals,
        run=run,
        run_one=run_one,
        kind="baseline",
        label=label,
        segmentation_centroid=seg,
        higher_is_stricter=True,
        info={"params": _safe_params(finder)},
    )


def _safe_params(finder: Any) -> dict[str, Any]:
    try:
        p = finder.params()
    except Exception:
        return {}
    return {
        k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
        for k, v in p.items()
    }


DEFAULT_PROB_SWEEP: tuple[float, ...] = tuple(np.round(np.arange(0.05, 0.951, 0.05), 3))


def model_method(
    model_dir: str | Path | None,
    *,
    thresholds: Sequence[float] | None = None,
    name: str | None = None,
    device: str | None = None,
) -> Method:
    """A sweep :class:`Method` for a trained model folder (probability-threshold sweep).

    The probability map of each frame is computed once by the detection pipeline and
    re-thresholded at every value (default 0.05 … 0.95, step 0.05, plus the model's own
    ``thresholds.json`` operating point). ``model_dir=None`` uses the shipped model.
    """
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector

    model, meta = load_detector(model_dir, device=device)
    det = Detector(model, meta, DetectConfig(device=device))
    t0 = float(det.threshold)
    vals = sorted(
        {round(float(v), 4) for v in (thresholds if thresholds is not None else DEFAULT_PROB_SWEEP)}
    )
    if thresholds is None:
        vals = sorted(set(vals) | {round(t0, 4)})
    bad = [v for v in vals if not 0.0 < v < 1.0]
    if bad:
        raise InputError(None, f"probability thresholds must lie in (0, 1), got {bad}")
    mname = name or (Path(model_dir).name if model_dir else str(meta.get("name") or "atd-dl"))
    if mname in ("model", ""):  # run folders end in .../model: use the parent's name
        mname = Path(model_dir).resolve().parent.name if model_dir else "atd-dl"

    def catalogs(frame: Any, values: Sequence[float]) -> list[Table]:
        from atd_dl.detect.frame import PreparedMosaic

        prepared = det.prepare(frame)
        if isinstance(prepared, PreparedMosaic):
            raise InputError(
                frame,
                f"{len(prepared.parts)} image extensions: the benchmark scores one image "
                "per frame file; split the extensions into files",
            )
        prob = det.infer(prepared)
        out = []
        for v in values:
            if det.fdr_rule is not None and round(float(v), 4) == round(t0, 4):
                # the shipped operating point: the model's per-frame threshold rule
                out.append(det.extract(prepared, prob).catalog)
            else:
                out.append(det.extract(prepared, prob, threshold=float(v)).catalog)
        return out

    def run(frame: Any) -> list[Table]:
        return catalogs(frame, vals)

    def run_one(frame: Any, value: float) -> Table:
        return catalogs(frame, [value])[0]

    return Method(
        name=mname,
        param="prob_threshold",
        values=vals,
        run=run,
        run_one=run_one,
        kind="model",
        label=mname,
        higher_is_stricter=True,
        info={
            "model_dir": str(model_dir) if model_dir else "default",
            "network": meta.get("name"),
            "default_threshold": t0,
            "device": det.device,
        },
    )


def truth_zeropoint(truth: Table, exptime: float) -> float | None:
    """Magnitude zeropoint ``mag + 2.5 log10(flux_e / exptime)`` (median) from a truth table."""
    if not {"mag", "flux_e"} <= set(truth.colnames):
        return None
    f = np.asarray(truth["flux_e"], float)
    m = np.asarray(truth["mag"], float)
    ok = (f > 0) & np.isfinite(m)
    if "kind" in truth.colnames:
        ok &= np.asarray(truth["kind"]).astype(str) == "star"
    if not ok.any():
        return None
    return float(np.median(m[ok] + 2.5 * np.log10(f[ok] / exptime)))


def frame_loader(
    test_dir: str | Path, *, reference: str = "auto", calibrate: bool = True
) -> Callable[[TestFrame], tuple[str, Any, References]]:
    """A loader for :func:`run_sweeps`: read + calibrate a frame and build its references.

    ``reference``: ``"truth"``, ``"catalog"`` or ``"auto"`` (truth when present).
    """
    from atd_dl.io.fits_io import read_frame

    test_dir = Path(test_dir)
    masters = None
    calib = test_dir / "calib"
    if calibrate and calib.is_dir():
        from atd_dl.prep.calibration import CalibrationMasters

        def pick(stem: str) -> Path | None:
            p = calib / f"master_{stem}.fits"
            return p if p.is_file() else None

        masters = CalibrationMasters.from_files(pick("bias"), pick("dark"), pick("flat"))
        if not masters:
            masters = None

    def load(tf: TestFrame) -> tuple[str, Any, References]:
        frame = read_frame(tf.frame)
        if masters is not None:
            from atd_dl.prep.calibration import calibrate as _cal

            frame = _cal(frame, masters)
        mode = reference
        if mode == "auto":
            mode = "truth" if tf.truth else "catalog"
        if mode == "truth":
            if tf.truth is None:
                raise InputError(tf.frame, "no truth table for this frame")
            refs = references_from_truth(read_table(tf.truth), path=tf.truth)
        elif mode == "catalog":
            if tf.catalog is None:
                raise InputError(tf.frame, "no reference catalog for this frame")
            from atd_dl.io.catalogs import read_reference_catalog

            refs = references_from_catalog(
                read_reference_catalog(tf.catalog), frame, path=tf.catalog
            )
        else:
            raise ValueError(f"reference must be 'truth', 'catalog' or 'auto', got {reference!r}")
        return tf.name, frame, refs

    return load


@dataclass
class BenchmarkOutput:
    """What :func:`run_benchmark` produced."""

    summary: dict[str, Any]
    report: Path | None
    results: dict[str, SweepResult]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def n_failures(self) -> int:
        return sum(len(r.failures) for r in self.results.values())


def run_benchmark(
    test_set: str | Path,
    *,
    models: Sequence[str | Path | None] = (),
    model_names: Sequence[str] | None = None,
    baselines: Sequence[str] = ("sextractor", "daofind"),
    baseline_sweep: str = "dense",
    baseline_params: dict[str, dict[str, Any]] | None = None,
    prob_thresholds: Sequence[float] | None = None,
    settings: EvalSettings | None = None,
    reference: str = "auto",
    limit: int | None = None,
    out: str | Path | None = None,
    injection: dict[str, Any] | None = None,
    device: str | None = None,
    progress: bool = True,
    extra_methods: Sequence[Method] = (),
    ablation: bool | None = None,
) -> BenchmarkOutput:
    """Sweep models and baselines over ``test_set`` and (with ``out``) write the report.

    ``baseline_params`` maps a baseline name to finder parameters.
    Unavailable baselines (missing binary, unknown name) and models that fail to load
    are skipped with a warning and listed in ``summary["skipped"]``. ``ablation``: compare
    the first two models (base first, enhanced second; Table 7); ``None`` = only when
    exactly two models ran.
    ``injection`` (keyword arguments of :func:`injection_recovery` plus ``frames``: how
    many test frames to use) adds an injection–recovery run at each method's best-F1
    operating point.
    """
    from atd_dl.evaluate.report import build_summary, write_report

    settings = settings or EvalSettings()
    frames = load_test_set(test_set, limit=limit)
    methods: list[Method] = []
    skipped: dict[str, str] = {}
    names = list(model_names or [])
    for k, mdir in enumerate(models):
        nm = names[k] if k < len(names) else None
        try:
            methods.append(model_method(mdir, thresholds=prob_thresholds, name=nm, device=device))
        except Exception as err:
            label = nm or str(mdir)
            log.warning("model %s skipped: %s", label, err)
            skipped[label] = str(err)
    for b in baselines:
        try:
            params = (baseline_params or {}).get(b, {})
            methods.append(baseline_method(b, sweep=baseline_sweep, params=params))
        except Exception as err:  # BaselineUnavailable, KeyError, ImportError
            log.warning("baseline %s skipped: %s", b, err)
            skipped[b] = str(err)
    methods.extend(extra_methods)
    seen: set[str] = set()
    for m in methods:  # unique names (two models from folders with the same name)
        base, k = m.name, 2
        while m.name in seen:
            m.name = f"{base}_{k}"
            k += 1
        seen.add(m.name)
    if not methods:
        raise InputError(test_set, "nothing to benchmark: no model or baseline could be set up")

    loader = frame_loader(test_set, reference=reference)
    results = run_sweeps(methods, frames, settings, loader=loader, progress=progress)
    model_keys = [m.name for m in methods if m.kind == "model"]
    want = len(model_keys) == 2 if ablation is None else ablation
    pair = (model_keys[0], model_keys[1]) if want and len(model_keys) >= 2 else None

    inj_summary = None
    if injection:
        inj_summary = _run_injection(methods, results, frames, loader, dict(injection), progress)

    scale = _pixel_scale(frames)
    ref_mode = reference if reference != "auto" else ("truth" if frames[0].truth else "catalog")
    summary = build_summary(
        results,
        settings,
        test_set=test_set,
        n_frames=len(frames),
        reference=ref_mode,
        ablation=pair,
        injection=inj_summary,
        pixel_scale_arcsec=scale,
        extra={"skipped": skipped},
    )
    report = write_report(summary, out) if out is not None else None
    return BenchmarkOutput(summary=summary, report=report, results=results, skipped=skipped)


def _pixel_scale(frames: Sequence[TestFrame]) -> float | None:
    try:
        from astropy.io import fits

        v = fits.getheader(frames[0].frame).get("PIXSCALE")
        return float(v) if v else None
    except Exception:
        return None


def _run_injection(
    methods: Sequence[Method],
    results: dict[str, SweepResult],
    frames: Sequence[TestFrame],
    loader: Callable[[TestFrame], tuple[str, Any, References]],
    opts: dict[str, Any],
    progress: bool,
) -> dict[str, Any] | None:
    """Injection–recovery on the first ``opts['frames']`` frames at each best-F1 point."""
    from atd_dl.evaluate.injection import InjectionResult, injection_recovery

    n_frames = int(opts.pop("frames", 1))
    detectors: dict[str, Callable[[Any], Table]] = {}
    for m in methods:
        r = results[m.name]
        if not r.points or r.n_frames == 0:
            continue
        f1 = [p.paper.f1 for p in r.points]
        ib = int(np.argmax(f1))

        def det(frame: Any, m: Method = m, v: float = r.values[ib]) -> Table:
            return m.detect(frame, v)

        detectors[m.label or m.name] = det
    if not detectors:
        return None
    parts: list[InjectionResult] = []
    seed0 = int(opts.pop("seed", 0))
    for k, tf in enumerate(frames[:n_frames]):
        name, frame, refs = loader(tf)
        zp = None
        if tf.truth is not None:
            zp = truth_zeropoint(read_table(tf.truth), float(frame.exptime or 1.0))
        parts.append(
            injection_recovery(
                frame,
                detectors,
                existing_xy=refs.xy[refs.snr > 1.0] if len(refs) else None,
                zeropoint=zp,
                seed=seed0 + k,
                progress=progress,
                **opts,
            )
        )
    merged = _merge_injections(parts)
    return merged.summary()


def _merge_injections(parts: Sequence[Any]) -> Any:
    from atd_dl.evaluate.injection import InjectionResult

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([getattr(p, attr) for p in parts])

    names = list(parts[0].found)
    return InjectionResult(
        x=cat("x"),
        y=cat("y"),
        flux_e=cat("flux_e"),
        f3_e=cat("f3_e"),
        snr=cat("snr"),
        mag=cat("mag"),
        round=cat("round"),
        found={n: np.concatenate([p.found[n] for p in parts]) for n in names},
        offsets={n: np.concatenate([p.offsets[n] for p in parts]) for n in names},
        zeropoint=parts[0].zeropoint,
        failures={n: sum((p.failures.get(n, []) for p in parts), []) for n in names},
    )
