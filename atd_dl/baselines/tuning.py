"""Choose each baseline's parameters by maximum F1 on validation frames.

For every combination of a small parameter grid (e.g. the detection filter of
SExtractor, the DAOFind kernel FWHM) and every threshold of the finder's sweep, the
finder runs on all validation frames; detections are matched to the reference positions
and TP / FP / FN are summed over the frames. The combination with the highest summed F1
wins (ties: higher precision, then the earlier grid point).

References are tables (or dicts) with ``x``, ``y`` (0-based) and optionally
``snr_true``. With ``min_snr`` set, the paper's protocol applies: a detection is a TP
when it matches any reference (set A), and recall counts only references with
``snr_true ≥ min_snr`` (set G).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table

from atd_dl.baselines.base import BaseFinder
from atd_dl.baselines.registry import get_baseline

__all__ = ["DEFAULT_GRIDS", "TuneResult", "score_catalogs", "tune_all", "tune_baseline"]

#: Non-threshold parameters tried by default (kept small: every point multiplies run time).
#: SExtractor's SEEING_FWHM only changes CLASS_STAR, so the detection filter is tuned instead.
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "sextractor": {"filter_fwhm": ["default", 1.5, 3.0]},
    "sep": {"filter_fwhm": ["default", 1.5, 3.0]},
    "daofind": {"fwhm": [1.5, 2.0, 3.0]},
    "twomass": {"n1": [0.5, 0.7, 0.9]},
    "psphot": {"smooth_fwhm": [1.5, 2.0, 3.0]},
}

Metric = Callable[..., Any]


@dataclass
class TuneResult:
    """Outcome of :func:`tune_baseline`.

    ``params``: winning constructor parameters plus ``threshold``; ``best``: its row
    (precision, recall, f1, tp, fp, fn); ``table``: every grid point, best first.
    """

    name: str
    params: dict[str, Any]
    best: dict[str, Any]
    table: Table = field(repr=False)

    def finder(self) -> BaseFinder:
        """The tuned finder (its default threshold set to the winning one)."""
        return get_baseline(self.name, **self.params)


def _default_metric() -> Metric:
    from atd_dl.evaluate.matching import match_points

    return match_points


def _frame_arrays(frame: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
    if isinstance(frame, np.ndarray):
        return frame, None, None
    return np.asarray(frame.data), getattr(frame, "mask", None), getattr(frame, "wcs", None)


def _ref_arrays(ref: Any) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(ref["x"], float)
    y = np.asarray(ref["y"], float)
    names = ref.colnames if isinstance(ref, Table) else list(ref)
    snr = np.asarray(ref["snr_true"], float) if "snr_true" in names else None
    return np.column_stack([x, y]), snr


def score_catalogs(
    catalogs: Sequence[Table],
    references: Sequence[Any],
    shapes: Sequence[tuple[int, int]],
    *,
    metric: Metric | None = None,
    radius: float = 3.0,
    min_snr: float | None = None,
    edge: int = 3,
) -> dict[str, float]:
    """Summed TP / FP / FN and precision, recall, F1 of catalogs against references.

    Detections within ``edge`` px of the border are dropped first (paper §4).
    """
    from atd_dl.evaluate.matching import prf

    metric = metric or _default_metric()
    tp = fp = fn = 0
    for cat, ref, (ny, nx) in zip(catalogs, references, shapes):
        x = np.asarray(cat["x"], float)
        y = np.asarray(cat["y"], float)
        keep = (x >= edge) & (y >= edge) & (x <= nx - 1 - edge) & (y <= ny - 1 - edge)
        det = np.column_stack([x[keep], y[keep]])
        ref_xy, ref_snr = _ref_arrays(ref)
        if min_snr is None or ref_snr is None:
            res = metric(det, ref_xy, radius)
            tp, fp, fn = tp + res.tp, fp + res.fp, fn + res.fn
        else:
            res_all = metric(det, ref_xy, radius)
            res_g = metric(det, ref_xy[ref_snr >= min_snr], radius)
            tp, fp, fn = tp + res_all.tp, fp + res_all.fp, fn + res_g.fn
    precision, recall, f1 = prf(tp, fp, fn)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def tune_baseline(
    baseline: str | BaseFinder,
    frames: Sequence[Any],
    references: Sequence[Any],
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    thresholds: Sequence[float] | str | None = None,
    metric: Metric | None = None,
    radius: float = 3.0,
    min_snr: float | None = None,
    edge: int = 3,
    progress: bool = False,
) -> TuneResult:
    """Grid search of one baseline on validation frames; returns the best parameters.

    ``baseline``: a registry name or a configured finder (its fields are the fixed
    parameters). ``frames``: 2-D arrays or objects with ``data`` (and optionally
    ``mask``, ``wcs``). ``grid``: extra parameter lists (default :data:`DEFAULT_GRIDS`;
    ``{}`` tunes the threshold only). ``thresholds``: values, or ``"dense"`` /
    ``"paper"`` / ``"both"`` (default: both sweeps merged). ``metric``: a callable
    ``metric(det_xy, ref_xy, radius)`` returning an object with ``tp, fp, fn``
    (default :func:`atd_dl.evaluate.matching.match_points`, one-to-one).
    """
    base = get_baseline(baseline) if isinstance(baseline, str) else baseline
    if len(frames) != len(references):
        raise ValueError(f"{len(frames)} frames but {len(references)} reference tables")
    if not frames:
        raise ValueError("no validation frames given")
    grid = dict(DEFAULT_GRIDS.get(base.name, {}) if grid is None else grid)
    if thresholds is None or isinstance(thresholds, str):
        which = thresholds or "both"
        if which == "both":
            values = np.union1d(base.sweep_values("dense"), base.sweep_values("paper"))
        else:
            values = base.sweep_values(which)
    else:
        values = np.asarray(list(thresholds), float)
    arrays = [_frame_arrays(f) for f in frames]
    shapes = [a[0].shape for a in arrays]
    keys = list(grid)
    combos = list(itertools.product(*(grid[k] for k in keys))) if keys else [()]
    rows: list[dict[str, Any]] = []
    total = len(combos) * len(values)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"tune {base.name}", unit="pt")
    for combo in combos:
        finder = base.with_params(**dict(zip(keys, combo)))
        for thr in values:
            cats = [finder(d, mask=m, wcs=w, threshold=float(thr)) for d, m, w in arrays]
            score = score_catalogs(
                cats, references, shapes, metric=metric, radius=radius, min_snr=min_snr, edge=edge
            )
            rows.append({**dict(zip(keys, combo)), "threshold": float(thr), **score})
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["f1"], -rows[i]["precision"], i))
    best = rows[order[0]]
    params = {**base.params(), **{k: best[k] for k in keys}, "threshold": best["threshold"]}
    table = Table(
        {
            name: _column([rows[i][name] for i in order])
            for name in [*keys, "threshold", "precision", "recall", "f1", "tp", "fp", "fn"]
        }
    )
    table.meta["baseline"] = base.name
    return TuneResult(name=base.name, params=params, best=dict(best), table=table)


def _column(values: list[Any]) -> list[Any]:
    """Grid values may mix types (``"default"``, 1.5, None): store such columns as text."""
    numeric = all(isinstance(v, (bool, int, float, np.integer, np.floating)) for v in values)
    return values if numeric else [str(v) for v in values]


def tune_all(
    frames: Sequence[Any],
    references: Sequence[Any],
    names: Sequence[str] | None = None,
    **kwargs: Any,
) -> dict[str, TuneResult]:
    """:func:`tune_baseline` for several baselines (default: all registered ones).

    A baseline whose external program is missing is skipped with a warning.
    """
    import warnings

    from atd_dl.baselines.base import BaselineUnavailable
    from atd_dl.baselines.registry import available_baselines

    out: dict[str, TuneResult] = {}
    for name in names or available_baselines():
        try:
            out[name] = tune_baseline(name, frames, references, **kwargs)
        except BaselineUnavailable as err:
            warnings.warn(f"skipping {name}: {err}", stacklevel=2)
    return out
