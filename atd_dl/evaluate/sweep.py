"""Threshold sweeps: run detection methods over a test set and score every operating point.

A :class:`Method` turns one frame into one detection table per sweep value (so a model
computes its probability map once and only re-thresholds it). :func:`run_sweeps` scores
all methods on all frames with :func:`~atd_dl.evaluate.metrics.evaluate_frame` and pools
the counts; :func:`summarize_sweep` turns a :class:`SweepResult` into the JSON-ready
numbers of the paper's Tables 5–6 and Figs. 11–13.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table

from atd_dl.evaluate.metrics import (
    FAINT_SNR,
    SNR_BIN_EDGES,
    FrameEvaluation,
    GrowthResult,
    PooledMetrics,
    align_precision,
    evaluate_frame,
    growth_and_false_positive,
    interpolate_at_precision,
    pool_frames,
    snr_bin_labels,
    top_k_mean,
)
from atd_dl.evaluate.references import References, detections_xy

__all__ = [
    "EvalSettings",
    "Method",
    "SweepResult",
    "evaluate_catalogs",
    "run_sweeps",
    "summarize_sweep",
]

log = logging.getLogger(__name__)
RULES = ("paper", "strict")


@dataclass(frozen=True)
class EvalSettings:
    """Matching settings shared by every method (paper defaults)."""

    radius: float = 3.0  # px, TP matching radius
    edge: float = 3.0  # px, candidates this close to the border are dropped
    snr_min: float = 2.0  # G = references with SNR >= snr_min
    astrometry_radius: float = 2.0  # px, pairs used for the centroid RMS
    target_precision: float = 0.90  # precision alignment target (Table 5)
    align_mode: str = "closest"  # see metrics.align_precision
    faint: tuple[float, float] = FAINT_SNR
    bright_snr: float = 10.0
    residual_sample: int = 4000  # residuals kept in summary.json for the scatter plot

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class Method:
    """A detection method with a sweep over one parameter.

    ``run(frame)`` returns one detection table (columns ``x, y``, 0-based px) per entry of
    ``values``, in the same order; the optional ``run_one(frame, value)`` detects at a
    single value (used by injection tests). ``kind`` is ``"model"`` or ``"baseline"``;
    ``segmentation_centroid`` marks methods whose centroids come from a segmentation map
    (reported like the paper's Table 8). ``higher_is_stricter`` tells plots which way the
    operating points run.
    """

    name: str
    param: str
    values: list[float]
    run: Callable[[Any], list[Table]]
    kind: str = "baseline"
    label: str | None = None
    segmentation_centroid: bool = False
    higher_is_stricter: bool = True
    info: dict[str, Any] = field(default_factory=dict)
    run_one: Callable[[Any, float], Table] | None = None

    def detect(self, frame: Any, value: float) -> Table:
        """Detections at one sweep value (``run_one`` when given, else the whole sweep)."""
        if self.run_one is not None:
            return self.run_one(frame, float(value))
        return self.run(frame)[self.values.index(value)]

    @classmethod
    def from_finder(
        cls,
        name: str,
        param: str,
        values: Sequence[float],
        finder: Callable[[Any, float], Table],
        **kwargs: Any,
    ) -> Method:
        """Build a method from ``finder(frame, value) -> Table`` called once per value."""
        vals = [float(v) for v in values]

        def run(frame: Any) -> list[Table]:
            return [finder(frame, v) for v in vals]

        return cls(name=name, param=param, values=vals, run=run, run_one=finder, **kwargs)


@dataclass
class SweepResult:
    """Pooled metrics of one method at every sweep value."""

    name: str
    param: str
    values: list[float]
    points: list[PooledMetrics]
    growth: list[GrowthResult]
    kind: str = "baseline"
    label: str | None = None
    segmentation_centroid: bool = False
    higher_is_stricter: bool = True
    seconds: float = 0.0
    n_frames: int = 0
    failures: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def evaluate_catalogs(
    catalogs: Sequence[Table],
    refs: References,
    shape: tuple[int, int] | None,
    settings: EvalSettings,
    *,
    name: str = "",
) -> tuple[list[FrameEvaluation], list[GrowthResult]]:
    """Score one frame's catalogs (one per sweep value) against its references."""
    evals, growth = [], []
    base = refs.xy[refs.in_catalog & refs.target] if len(refs) else np.zeros((0, 2))
    confirm = refs.xy[refs.target] if len(refs) else np.zeros((0, 2))
    for cat in catalogs:
        xy = detections_xy(cat) if len(cat) else np.zeros((0, 2))
        fe = evaluate_frame(
            xy,
            refs.xy,
            refs.snr,
            shape=shape,
            radius=settings.radius,
            edge=settings.edge,
            snr_min=settings.snr_min,
            ref_target=refs.target,
            astrometry_radius=settings.astrometry_radius,
            name=name,
        )
        evals.append(fe)
        kept = xy[fe.det_index] if len(xy) else xy
        growth.append(growth_and_false_positive(kept, base, confirm, settings.radius))
    return evals, growth


def _sum_growth(items: Sequence[GrowthResult]) -> GrowthResult:
    n_det = sum(g.n_det for g in items)
    n_base = sum(g.n_base for g in items)
    n_new = sum(g.n_new for g in items)
    n_fp = sum(g.n_fp for g in items)
    return GrowthResult(
        n_det=n_det,
        n_base=n_base,
        n_base_matched=sum(g.n_base_matched for g in items),
        n_new=n_new,
        n_fp=n_fp,
        growth_rate=n_new / n_base if n_base else float("nan"),
        fp_rate=n_fp / n_det if n_det else 0.0,
    )


def run_sweeps(
    methods: Sequence[Method],
    frames: Iterable[tuple[str, Any, References]] | Sequence[Any],
    settings: EvalSettings | None = None,
    *,
    loader: Callable[[Any], tuple[str, Any, References]] | None = None,
    progress: bool = True,
    n_frames: int | None = None,
) -> dict[str, SweepResult]:
    """Run every method on every frame and pool the metrics per sweep value.

    ``frames`` yields ``(name, frame, references)`` tuples, or arbitrary items turned into
    such tuples by ``loader`` (so frames are read one at a time). ``frame`` is whatever the
    methods' ``run`` accepts (an :class:`atd_dl.io.fits_io.Frame`). A frame that fails to
    load, or a method that fails on a frame, is logged and recorded in ``failures``; the
    other frames go on.
    """
    settings = settings or EvalSettings()
    per_method: dict[str, list[list[FrameEvaluation]]] = {
        m.name: [[] for _ in m.values] for m in methods
    }
    per_growth: dict[str, list[list[GrowthResult]]] = {
        m.name: [[] for _ in m.values] for m in methods
    }
    seconds = {m.name: 0.0 for m in methods}
    done = {m.name: 0 for m in methods}
    failures: dict[str, list[str]] = {m.name: [] for m in methods}
    load_failures: list[str] = []

    total = n_frames
    if total is None and isinstance(frames, Sized):
        total = len(frames)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="benchmark", unit="frame")
    for item in frames:
        try:
            name, frame, refs = loader(item) if loader else item
        except Exception as err:  # a bad frame must not stop the benchmark
            label = getattr(item, "name", str(item))
            log.error("%s: cannot load (%s)", label, err)
            load_failures.append(f"{label}: {err}")
            if bar is not None:
                bar.update(1)
            continue
        shape = tuple(frame.shape) if hasattr(frame, "shape") else None
        for m in methods:
            if bar is not None:
                bar.set_postfix_str(f"{name} {m.name}")
            t0 = time.perf_counter()
            try:
                cats = m.run(frame)
                if len(cats) != len(m.values):
                    raise RuntimeError(
                        f"returned {len(cats)} catalogs for {len(m.values)} sweep values"
                    )
            except Exception as err:
                log.error("%s on %s failed: %s", m.name, name, err)
                failures[m.name].append(f"{name}: {err}")
                continue
            seconds[m.name] += time.perf_counter() - t0
            done[m.name] += 1
            evals, growth = evaluate_catalogs(cats, refs, shape, settings, name=name)
            for k, (fe, g) in enumerate(zip(evals, growth)):
                per_method[m.name][k].append(fe)
                per_growth[m.name][k].append(g)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    out = {}
    for m in methods:
        points = [
            pool_frames(
                fes, edges=SNR_BIN_EDGES, faint=settings.faint, bright_snr=settings.bright_snr
            )
            for fes in per_method[m.name]
        ]
        out[m.name] = SweepResult(
            name=m.name,
            param=m.param,
            values=list(m.values),
            points=points,
            growth=[_sum_growth(g) for g in per_growth[m.name]],
            kind=m.kind,
            label=m.label,
            segmentation_centroid=m.segmentation_centroid,
            higher_is_stricter=m.higher_is_stricter,
            seconds=seconds[m.name],
            n_frames=done[m.name],
            failures=load_failures + failures[m.name],
            info=dict(m.info),
        )
    return out


def _point_row(pm: PooledMetrics, rule: str, value: float, index: int) -> dict[str, Any]:
    c = pm.counts(rule)
    return {
        "index": index,
        "value": value,
        "precision": c.precision,
        "recall": c.recall,
        "f1": c.f1,
        "tp": c.tp,
        "fp": c.fp,
        "fn": c.fn,
        "faint_recall": pm.faint[rule]["recall"],
        "faint_found": pm.faint[rule]["found"],
    }


def summarize_sweep(result: SweepResult, settings: EvalSettings | None = None) -> dict[str, Any]:
    """JSON-ready summary of one method's sweep.

    Keys: ``sweep`` (per-point arrays for both rules), ``best`` (highest-F1 point),
    ``top3`` (mean ± std of the three best-F1 points, Fig. 12), ``aligned`` (point matched
    to the target precision and its faint recall, Table 5), ``snr_recall`` (per-bin recall
    at the best point and averaged over the top three, Fig. 13), ``astrometry`` (Table 6
    at the best paper-rule point), ``growth`` (GR / FP at the best point), ``per_frame``,
    ``residuals`` (a sample for the scatter plot) and ``timing``.
    """
    settings = settings or EvalSettings()
    vals = [float(v) for v in result.values]
    labels = snr_bin_labels(SNR_BIN_EDGES)
    out: dict[str, Any] = {
        "name": result.name,
        "label": result.label or result.name,
        "kind": result.kind,
        "param": result.param,
        "values": vals,
        "segmentation_centroid": result.segmentation_centroid,
        "higher_is_stricter": result.higher_is_stricter,
        "n_frames": result.n_frames,
        "failures": list(result.failures),
        "info": result.info,
        "timing": {
            "seconds_total": result.seconds,
            "seconds_per_frame": result.seconds / result.n_frames if result.n_frames else None,
        },
        "sweep": {},
        "best": {},
        "top3": {},
        "aligned": {},
        "snr_recall": {},
        "snr_recall_top3": {},
    }
    if not result.points or result.n_frames == 0:
        return out
    n_det = [pm.paper.n_det for pm in result.points]
    out["sweep"]["n_det"] = n_det
    out["sweep"]["n_ref"] = result.points[0].paper.n_ref
    out["sweep"]["growth_rate"] = [g.growth_rate for g in result.growth]
    out["sweep"]["fp_rate"] = [g.fp_rate for g in result.growth]
    best_paper_idx = 0
    for rule in RULES:
        rows = [_point_row(pm, rule, v, i) for i, (pm, v) in enumerate(zip(result.points, vals))]
        arr = {
            k: [r[k] for r in rows]
            for k in ("precision", "recall", "f1", "tp", "fp", "fn", "faint_recall", "faint_found")
        }
        out["sweep"][rule] = arr
        f1 = np.asarray(arr["f1"])
        ib = int(np.argmax(f1))
        if rule == "paper":
            best_paper_idx = ib
        out["best"][rule] = rows[ib]
        out["top3"][rule] = top_k_mean(arr["precision"], arr["recall"], arr["f1"], k=3)
        ia = align_precision(arr["precision"], settings.target_precision, mode=settings.align_mode)
        out["aligned"][rule] = {
            **rows[ia],
            "target": settings.target_precision,
            "mode": settings.align_mode,
            "interpolated_recall": interpolate_at_precision(
                arr["precision"], arr["recall"], settings.target_precision
            ),
            "interpolated_faint_recall": interpolate_at_precision(
                arr["precision"], arr["faint_recall"], settings.target_precision
            ),
        }
        best_pm = result.points[ib]
        out["snr_recall"][rule] = best_pm.snr_recall[rule]
        top = out["top3"][rule]["indices"]
        out["snr_recall_top3"][rule] = {
            lab: float(np.nanmean([result.points[i].snr_recall[rule][lab]["recall"] for i in top]))
            if best_pm.snr_recall[rule][lab]["n"]
            else float("nan")
            for lab in labels
        }
    pm = result.points[best_paper_idx]
    out["astrometry"] = {
        "index": best_paper_idx,
        "value": vals[best_paper_idx],
        "all": pm.astrometry.to_dict(),
        "bright": pm.astrometry_bright.to_dict(),
        "bright_snr": settings.bright_snr,
    }
    out["growth"] = {"index": best_paper_idx, **result.growth[best_paper_idx].to_dict()}
    d = pm.to_dict(residual_sample=settings.residual_sample)
    out["per_frame"] = d["per_frame"]
    out["residuals"] = d.get("residuals", {"dx": [], "dy": [], "snr": []})
    return out
