"""Evaluation matrix: detectors against tuned classical baselines across simulated conditions.

Cells (:data:`CELLS`) are fixed settings of the domain-randomised simulator
(``atd-dl simulate --preset random``): PSF FWHM {1.3, 2.5, 4.5} px × star density
{sparse, paper, crowded}, plus ``hard`` (FWHM 2.5 px, paper density, nebulosity, defects,
glow and trails forced with ``--hard``) and ``empty`` (FWHM 2.5 px, density ``empty``).
Cell ``i`` has validation frames (seed ``1000 + i``) and test frames (seed ``2000 + i``);
everything else (noise regime, gain, PSF shape, field) is drawn per frame.

The protocol ("honest" tuning):

* a **model** runs at its own shipped threshold (its folder's ``thresholds.json``): one
  operating point for every cell. Its best F1 over a threshold sweep *on the test frames*
  is reported for information only (an oracle, not a result);
* a classical **baseline** is tuned per cell on the *validation frames only*: every
  combination of its parameter grid (default :data:`atd_dl.baselines.tuning.DEFAULT_GRIDS`)
  and threshold is scored with exactly the test-time machinery (finder set-up by
  :func:`atd_dl.evaluate.benchmark.baseline_method`, frames by
  :func:`~atd_dl.evaluate.benchmark.frame_loader`, scoring by
  :func:`atd_dl.evaluate.sweep.run_sweeps`), and the combination with the highest
  **strict** F1 wins (ties: higher precision, then fewer detections, then grid order).
  The winner is applied unchanged to the test frames.

Per method and cell (test frames, pooled): strict one-to-one P, R, F1 at the operating
point (3 px radius, 3 px edge cut, G = stars with ``snr_true >= 2``); faint recall
(2 < SNR < 5, strict rule) linearly interpolated at precision 0.90 along the method's
threshold sweep (the curve metric of the benchmark's Table 5; for baselines the sweep
runs at the validation-tuned non-threshold parameters); the centroid RMS of SNR > 10
stars (one-to-one pairs within 2 px, mean offset removed, as the benchmark); and the
number of detections (after the edge cut) per 10^5 px, the only meaningful number in
the ``empty`` cell.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from atd_dl.evaluate.metrics import Counts, interpolate_at_precision
from atd_dl.evaluate.references import References, TestFrame
from atd_dl.evaluate.sweep import EvalSettings, Method, SweepResult, run_sweeps

__all__ = [
    "CELLS",
    "FWHMS",
    "DENSITIES",
    "CacheStats",
    "Cell",
    "ModelEntry",
    "TuneOutcome",
    "best_over_thresholds",
    "cached_method",
    "clean_json",
    "ensure_frames",
    "evaluate_cell",
    "frames_area",
    "grid_combos",
    "model_cache_key",
    "operating_metrics",
    "parse_cells",
    "render_matrix_markdown",
    "simulate_argv",
    "tune_on_validation",
    "winner",
]

log = logging.getLogger(__name__)

FWHMS: tuple[float, ...] = (1.3, 2.5, 4.5)
DENSITIES: tuple[str, ...] = ("sparse", "paper", "crowded")
VAL_SEED0 = 1000
TEST_SEED0 = 2000
#: thresholds added when the validation optimum sits on the upper edge of the sweep
UPPER_EXTENSION: tuple[float, ...] = (2.25, 2.5, 3.0, 4.0, 5.0)
#: below this many members of G in the test frames, F1 is not meaningful
MIN_G_FOR_F1 = 20


@dataclass(frozen=True)
class Cell:
    """One condition of the matrix: fixed PSF FWHM (px), named density, hard defects."""

    name: str
    index: int
    fwhm: float
    density: str
    hard: bool = False

    @property
    def val_seed(self) -> int:
        return VAL_SEED0 + self.index

    @property
    def test_seed(self) -> int:
        return TEST_SEED0 + self.index

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "fwhm": self.fwhm,
            "density": self.density,
            "hard": self.hard,
            "seed_val": self.val_seed,
            "seed_test": self.test_seed,
        }


def _build_cells() -> tuple[Cell, ...]:
    cells = [
        Cell(f"f{fw:g}-{dens}", k, fw, dens)
        for k, (fw, dens) in enumerate(itertools.product(FWHMS, DENSITIES))
    ]
    cells.append(Cell("hard", len(cells), 2.5, "paper", hard=True))
    cells.append(Cell("empty", len(cells), 2.5, "empty"))
    return tuple(cells)


#: the 11 cells, index = position (f1.3-sparse … f4.5-crowded, hard, empty)
CELLS: tuple[Cell, ...] = _build_cells()


def parse_cells(spec: str | Sequence[str] | None, cells: Sequence[Cell] = CELLS) -> list[Cell]:
    """Cells from a comma list of names or indices (``None``/``"all"`` = all, in order).

    Also accepted: ``fwhm=2.5`` / ``density=crowded`` style filters. Raises ValueError.
    """
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "all")):
        return list(cells)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    by_name = {c.name: c for c in cells}
    chosen: list[Cell] = []
    for raw in (s.strip() for s in items):
        if not raw:
            continue
        if raw.isdigit() and int(raw) < len(cells):
            found = [cells[int(raw)]]
        elif raw in by_name:
            found = [by_name[raw]]
        elif raw.startswith("fwhm="):
            found = [c for c in cells if math.isclose(c.fwhm, float(raw[5:])) and not c.hard]
            found = [c for c in found if c.density != "empty"]
        elif raw.startswith("density="):
            found = [c for c in cells if c.density == raw[8:] and not c.hard]
        else:
            found = []
        if not found:
            raise ValueError(f"unknown cell {raw!r}; choose from {', '.join(by_name)} or 0-10")
        chosen += [c for c in found if c not in chosen]
    return sorted(chosen, key=lambda c: c.index)


# --------------------------------------------------------------------------- frames


def simulate_argv(cell: Cell, split: str, n: int, size: int, out: str | Path) -> list[str]:
    """``atd-dl`` arguments that simulate ``n`` frames of ``cell`` (``split`` = val/test)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    seed = cell.val_seed if split == "val" else cell.test_seed
    argv = ["simulate", "--preset", "random", "--out", str(out), "--n-frames", str(int(n))]
    argv += ["--size", str(int(size)), "--seed", str(seed), "--fwhm", f"{cell.fwhm:g}"]
    argv += ["--density", cell.density, "--no-progress"]
    argv.append("--hard" if cell.hard else "--clean")
    return argv


def _count(folder: Path, suffix: str) -> int:
    return sum(1 for p in folder.glob(f"*{suffix}")) if folder.is_dir() else 0


def ensure_frames(
    cell: Cell,
    split: str,
    n: int,
    size: int,
    folder: str | Path,
    *,
    runner: Callable[[list[str]], int] | None = None,
) -> Path:
    """Simulate the frames of ``cell``/``split`` into ``folder`` unless already there.

    ``runner(argv)`` runs an ``atd-dl`` command line (default: :func:`atd_dl.cli.main`
    in-process, i.e. exactly ``atd-dl simulate ...``); the simulator itself keeps frames
    that exist, so a larger ``n`` adds only the missing ones. Returns ``folder``.
    """
    folder = Path(folder)
    if _count(folder / "frames", ".fits") >= n and _count(folder / "truth", ".ecsv") >= n:
        return folder
    argv = simulate_argv(cell, split, n, size, folder)
    if runner is None:
        from atd_dl.cli import main as cli_main

        runner = cli_main
    log.info("atd-dl %s", " ".join(argv))
    rc = runner(argv)
    if rc != 0:
        raise RuntimeError(f"atd-dl {' '.join(argv)} failed with exit code {rc}")
    (folder / "simulate.txt").write_text("atd-dl " + " ".join(argv) + "\n")
    return folder


def frames_area(frames: Sequence[TestFrame]) -> int:
    """Total number of pixels of the frames (from the FITS headers)."""
    from astropy.io import fits

    area = 0
    for tf in frames:
        h = fits.getheader(tf.frame)
        area += int(h["NAXIS1"]) * int(h["NAXIS2"])
    return area


# --------------------------------------------------------------------------- caching


@dataclass
class CacheStats:
    """Per-method counters of a cached method (reset per cell by the caller)."""

    hits: int = 0
    misses: int = 0
    seconds: float = 0.0  # compute time of the frames (recorded in the cache for hits)
    failures: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.hits, self.misses, self.seconds, self.failures = 0, 0, 0.0, []


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "method"


def model_cache_key(model_dir: str | Path | None, device: str | None = None) -> dict[str, Any]:
    """What identifies a model's detections: its folder files (size, mtime) and device."""
    from atd_dl.models.model_folder import default_model_dir

    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    files: dict[str, Any] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix in (".json", ".safetensors", ".pt", ".ckpt"):
                st = p.stat()
                files[p.name] = [st.st_size, st.st_mtime_ns]
    elif folder.is_file():
        st = folder.stat()
        files[folder.name] = [st.st_size, st.st_mtime_ns]
    return {"model": str(folder.resolve()), "files": files, "device": str(device or "auto")}


def _tag(v: float) -> str:
    return f"{float(v):.6g}"


def cached_method(
    method: Method,
    cache_dir: str | Path | None,
    key: Mapping[str, Any],
    *,
    per_value: bool = False,
) -> tuple[Method, CacheStats]:
    """Wrap ``method`` so that each frame's catalogs (x, y per sweep value) are cached.

    The cache file depends on ``key`` (what configures the method) and the frame's path;
    it is used only while the frame's size and modification time are unchanged.
    ``cache_dir=None`` disables caching. ``per_value``: run the method one value at a
    time (``run_one``), cache each value on its own (so another threshold list reuses
    what is known) and score a value at which the finder raises as *no detections*
    (recorded in the stats' ``failures``; such values are not cached). Otherwise the
    whole sweep runs at once and the sweep values are part of the cache key.
    """
    from atd_dl import __version__

    stats = CacheStats()
    values = [float(v) for v in method.values]
    per_value = per_value and method.run_one is not None
    base_key: dict[str, Any] = {"key": dict(key), "version": __version__}
    if not per_value:
        base_key["values"] = values
    folder = Path(cache_dir) / _safe_name(method.name) if cache_dir is not None else None
    empty = Table({"x": np.zeros(0), "y": np.zeros(0)})

    def load(cfile: Path | None, stamp: list[int]) -> dict[str, tuple[Table, float]]:
        if cfile is None or not cfile.is_file():
            return {}
        try:
            with np.load(cfile) as z:
                if list(z["stamp"]) != stamp:
                    return {}
                return {
                    str(t): (Table({"x": z[f"x_{t}"], "y": z[f"y_{t}"]}), float(z[f"s_{t}"]))
                    for t in z["tags"]
                }
        except Exception as err:  # a damaged cache file is recomputed
            log.warning("ignoring cache file %s: %s", cfile, err)
            return {}

    def save(cfile: Path, stamp: list[int], known: dict[str, tuple[Table, float]]) -> None:
        arrays: dict[str, Any] = {
            "tags": np.asarray(list(known), dtype=str),
            "stamp": np.asarray(stamp, np.int64),
        }
        for t, (cat, sec) in known.items():
            arrays[f"x_{t}"] = np.asarray(cat["x"], float) if len(cat) else np.zeros(0)
            arrays[f"y_{t}"] = np.asarray(cat["y"], float) if len(cat) else np.zeros(0)
            arrays[f"s_{t}"] = np.asarray(sec)
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_name(cfile.stem + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(cfile)

    def run(frame: Any) -> list[Table]:
        path = getattr(frame, "path", None)
        cfile: Path | None = None
        stamp: list[int] = []
        if folder is not None and path is not None and Path(path).is_file():
            st = Path(path).stat()
            stamp = [int(st.st_size), int(st.st_mtime_ns)]
            cfile = folder / f"{_digest({**base_key, 'frame': str(Path(path).resolve())})}.npz"
        known = load(cfile, stamp)
        missing = [v for v in values if _tag(v) not in known]
        if not missing:
            stats.hits += 1
            stats.seconds += sum(known[_tag(v)][1] for v in values)
            return [known[_tag(v)][0] for v in values]
        stats.misses += 1
        fresh: dict[str, tuple[Table, float]] = {}
        if per_value:
            assert method.run_one is not None
            for v in missing:
                t0 = time.perf_counter()
                try:
                    cat = method.run_one(frame, v)
                except Exception as err:  # a finder failing at one threshold (overflow)
                    label = Path(path).name if path is not None else "frame"
                    stats.failures.append(f"{label} at {v:g}: {err}")
                    log.warning("%s on %s at %g failed: %s", method.name, label, v, err)
                    known[_tag(v)] = (empty, 0.0)
                    continue
                fresh[_tag(v)] = (cat, time.perf_counter() - t0)
        else:
            t0 = time.perf_counter()
            cats = method.run(frame)
            if len(cats) != len(values):
                raise RuntimeError(f"returned {len(cats)} catalogs for {len(values)} values")
            dt = (time.perf_counter() - t0) / max(len(values), 1)
            fresh = {_tag(v): (c, dt) for v, c in zip(values, cats)}
        stats.seconds += sum(s for _, s in fresh.values())
        if cfile is not None and fresh:
            save(
                cfile, stamp, {**{t: kv for t, kv in known.items() if kv[0] is not empty}, **fresh}
            )
        known.update(fresh)
        return [known[_tag(v)][0] for v in values]

    wrapped = Method(
        name=method.name,
        param=method.param,
        values=list(method.values),
        run=run,
        kind=method.kind,
        label=method.label,
        segmentation_centroid=method.segmentation_centroid,
        higher_is_stricter=method.higher_is_stricter,
        info=dict(method.info),
        run_one=None,
    )
    return wrapped, stats


# --------------------------------------------------------------------------- tuning


def grid_combos(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a parameter grid, in grid order (``{}`` -> ``[{}]``)."""
    keys = list(grid)
    if not keys:
        return [{}]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _combo_label(name: str, combo: Mapping[str, Any]) -> str:
    inner = ",".join(f"{k}={v}" for k, v in combo.items())
    return f"{name}[{inner}]" if inner else name


@dataclass
class TuneOutcome:
    """Validation-frame tuning of one baseline in one cell.

    ``params``: the winning non-threshold parameters; ``threshold``: the winning
    threshold; ``thresholds``: the thresholds tried with the winning parameters (the
    test sweep reuses them);
    ``best``: the winner's validation row; ``rows``: every point tried, best first.
    """

    name: str
    params: dict[str, Any]
    threshold: float
    thresholds: list[float]
    best: dict[str, Any]
    rows: list[dict[str, Any]]
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self, top: int = 5) -> dict[str, Any]:
        return {
            "params": self.params,
            "threshold": self.threshold,
            "thresholds": self.thresholds,
            "val": self.best,
            "n_points": len(self.rows),
            "top": self.rows[:top],
            "failures": self.failures,
            "seconds": self.seconds,
        }


def _rank_key(row: Mapping[str, Any]) -> tuple[float, float, int, int]:
    return (-row["f1"], -row["precision"], int(row["n_det"]), int(row["order"]))


def tune_on_validation(
    name: str,
    frames: Sequence[TestFrame],
    loader: Callable[[TestFrame], tuple[str, Any, References]],
    settings: EvalSettings,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    sweep: str = "auto",
    fixed: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> TuneOutcome:
    """Pick ``name``'s parameters and threshold by strict F1 on validation ``frames``.

    ``grid``: non-threshold parameter lists (default the baseline's entry of
    :data:`atd_dl.baselines.tuning.DEFAULT_GRIDS`). ``sweep``: ``"dense"``, ``"paper"``
    or ``"both"`` score every grid point at every threshold of the finder's list(s);
    ``"auto"`` (coarse to fine, about half the runs) scores every grid point at every
    third value of the dense list, then the best grid point at the dense values within
    ±0.2 of its best threshold, then, when the optimum lies on an end of the dense
    list, at the paper values below it or at :data:`UPPER_EXTENSION` above it. Every
    stage is scored on the validation frames only. ``fixed``: parameters applied to
    every grid point. The thresholds tried at the winning grid point become
    ``TuneOutcome.thresholds`` (the test sweep). Raises ``BaselineUnavailable``.
    """
    from atd_dl.baselines import get_baseline
    from atd_dl.baselines.tuning import DEFAULT_GRIDS
    from atd_dl.evaluate.benchmark import baseline_method

    t_start = time.perf_counter()
    fixed = dict(fixed or {})
    finder = get_baseline(name, **fixed)
    grid = dict(DEFAULT_GRIDS.get(name, {}) if grid is None else grid)
    combos = grid_combos(grid)
    dense = [float(v) for v in finder.sweep_values("dense")]
    if sweep == "both":
        first = sorted({*dense, *(float(v) for v in finder.sweep_values("paper"))})
    elif sweep in ("dense", "paper"):
        first = [float(v) for v in finder.sweep_values(sweep)]
    elif sweep == "auto":
        first = sorted({*dense[::3], dense[-1]})
    else:
        raise ValueError(f"sweep must be auto, dense, paper or both, got {sweep!r}")
    tried: dict[int, list[float]] = {k: [] for k in range(len(combos))}
    rows: list[dict[str, Any]] = []
    failures: list[str] = []

    def score(which: Sequence[int], values: Sequence[float]) -> None:
        todo = []
        for k in which:
            new = [v for v in values if all(abs(v - t) > 1e-9 for t in tried[k])]
            if new:
                todo.append((k, new))
        if not todo:
            return
        methods, all_stats = [], []
        for k, new in todo:
            m = baseline_method(name, values=new, params={**fixed, **combos[k]})
            m.name = _combo_label(name, combos[k])
            key = {"baseline": name, "params": m.info.get("params", {})}
            cm, st = cached_method(m, cache_dir, key, per_value=True)
            methods.append(cm)
            all_stats.append(st)
        results = run_sweeps(methods, frames, settings, loader=loader, progress=False)
        for (k, new), cm, st in zip(todo, methods, all_stats):
            r = results[cm.name]
            failures.extend(r.failures + st.failures)
            for v, pm in zip(r.values, r.points):
                c = pm.strict
                rows.append(
                    {
                        **combos[k],
                        "threshold": float(v),
                        **_strict_fields(c),
                        "order": len(rows),
                        "combo": k,
                    }
                )
            tried[k].extend(new)

    score(range(len(combos)), first)
    if not rows:
        raise RuntimeError(f"tuning {name}: nothing was scored")
    if sweep == "auto":
        best = min(rows, key=_rank_key)
        k, thr = int(best["combo"]), float(best["threshold"])
        score([k], [v for v in dense if abs(v - thr) <= 0.2 + 1e-9])
        best = min(rows, key=_rank_key)
        k, thr = int(best["combo"]), float(best["threshold"])
        if thr <= dense[0] + 1e-9:
            score([k], [float(v) for v in finder.sweep_values("paper") if v < dense[0] - 1e-9])
        elif thr >= dense[-1] - 1e-9:
            score([k], [v for v in UPPER_EXTENSION if v > dense[-1] + 1e-9])
    rows.sort(key=_rank_key)
    best = rows[0]
    return TuneOutcome(
        name=name,
        params={**fixed, **combos[int(best["combo"])]},
        threshold=float(best["threshold"]),
        thresholds=sorted(tried[int(best["combo"])]),
        best=dict(best),
        rows=rows,
        failures=failures,
        seconds=time.perf_counter() - t_start,
    )


# --------------------------------------------------------------------------- metrics


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def operating_metrics(
    result: SweepResult, index: int, settings: EvalSettings, area_px: int
) -> dict[str, Any]:
    """Strict metrics of ``result`` at sweep point ``index`` plus the sweep's faint recall
    interpolated at ``settings.target_precision`` (strict rule) and detections per 10^5 px.
    """
    pm = result.points[index]
    c = pm.strict
    prec = [p.strict.precision for p in result.points]
    faint = [p.faint["strict"]["recall"] for p in result.points]
    ok = [i for i, f in enumerate(faint) if math.isfinite(float(f))]
    p90 = (
        interpolate_at_precision(
            [prec[i] for i in ok], [faint[i] for i in ok], settings.target_precision
        )
        if ok
        else None
    )
    ab = pm.astrometry_bright
    return {
        "value": float(result.values[index]),
        **_strict_fields(c),
        "det_per_1e5px": 1e5 * c.n_det / area_px if area_px else None,
        "faint_recall": _finite(pm.faint["strict"]["recall"]),
        "faint_n": int(pm.faint["strict"]["n"]),
        "faint_recall_p90": _finite(p90),
        "p90_bracketed": p90 is not None,
        "sweep_precision_range": [_finite(min(prec)), _finite(max(prec))],
        "rms_bright_px": _finite(ab.rms_total),
        "rms_bright_n": int(ab.n),
        "mean_offset_bright_px": [_finite(ab.mean_dx), _finite(ab.mean_dy)],
    }


def _strict_fields(c: Counts) -> dict[str, Any]:
    """The scores of one operating point as reported in matrix.json."""
    return {
        "precision": c.precision,
        "recall": c.recall,
        "f1": c.f1,
        "tp": c.tp,
        "fp": c.fp,
        "fn": c.fn,
        "n_det": c.n_det,
        "n_ref": c.n_ref,
    }


def best_over_thresholds(result: SweepResult) -> dict[str, Any]:
    """The sweep point of highest strict F1 (ties: the earlier point) — information only."""
    f1 = [p.strict.f1 for p in result.points]
    i = int(np.argmax(f1))
    c = result.points[i].strict
    return {
        "value": float(result.values[i]),
        "f1": c.f1,
        "precision": c.precision,
        "recall": c.recall,
    }


def winner(methods: Mapping[str, Mapping[str, Any]], n_ref: int) -> dict[str, Any] | None:
    """Which method has the highest strict F1 at its operating point, and by how much."""
    scored = [(m["strict"]["f1"], name) for name, m in methods.items() if m.get("strict")]
    if not scored:
        return None
    scored.sort(key=lambda t: (-t[0], t[1]))
    out: dict[str, Any] = {
        "method": scored[0][1],
        "f1": scored[0][0],
        "meaningful": n_ref >= MIN_G_FOR_F1,
    }
    if len(scored) > 1:
        out.update(runner_up=scored[1][1], runner_up_f1=scored[1][0])
        out["margin"] = scored[0][0] - scored[1][0]
    dens = [
        (m["strict"]["det_per_1e5px"], name)
        for name, m in methods.items()
        if m.get("strict") and m["strict"]["det_per_1e5px"] is not None
    ]
    if dens:
        d = min(v for v, _ in dens)
        tied = sorted(nm for v, nm in dens if math.isclose(v, d, rel_tol=1e-9, abs_tol=1e-12))
        out["fewest_detections"] = {"methods": tied, "det_per_1e5px": d}
    return out


# --------------------------------------------------------------------------- one cell


@dataclass
class ModelEntry:
    """A model prepared once for all cells: cached sweep method and its shipped threshold."""

    name: str
    method: Method
    stats: CacheStats
    threshold: float
    info: dict[str, Any]


def evaluate_cell(
    cell: Cell,
    *,
    val_dir: Path,
    test_dir: Path,
    n_val: int,
    n_test: int,
    models: Sequence[ModelEntry],
    baselines: Sequence[str],
    settings: EvalSettings,
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    tune_sweep: str = "auto",
    baseline_fixed: Mapping[str, Mapping[str, Any]] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Tune the baselines on ``val_dir``, run everything on ``test_dir``, return the entry."""
    from atd_dl.baselines.base import BaselineUnavailable
    from atd_dl.evaluate.benchmark import LABELS, baseline_method, frame_loader
    from atd_dl.evaluate.references import load_test_set

    t0 = time.perf_counter()
    val_frames = load_test_set(val_dir, limit=n_val)
    test_frames = load_test_set(test_dir, limit=n_test)
    val_loader = frame_loader(val_dir, reference="truth")
    test_loader = frame_loader(test_dir, reference="truth")
    area = frames_area(test_frames)

    entry: dict[str, Any] = {
        **cell.to_dict(),
        "val_frames": [tf.name for tf in val_frames],
        "test_frames": [tf.name for tf in test_frames],
        "area_px": area,
        "methods": {},
        "skipped": {},
    }
    methods: list[Method] = []
    op_index: dict[str, int] = {}
    meta: dict[str, dict[str, Any]] = {}
    stats: dict[str, CacheStats] = {}
    for me in models:
        me.stats.reset()
        methods.append(me.method)
        stats[me.name] = me.stats
        op_index[me.name] = [round(v, 4) for v in me.method.values].index(round(me.threshold, 4))
        meta[me.name] = {
            "kind": "model",
            "operating_point": {"rule": "shipped threshold", "threshold": me.threshold},
        }
    for b in baselines:
        fixed = dict((baseline_fixed or {}).get(b, {}))
        try:
            tuned = tune_on_validation(
                b,
                val_frames,
                val_loader,
                settings,
                grid=None if grids is None or b not in grids else grids[b],
                sweep=tune_sweep,
                fixed=fixed,
                cache_dir=cache_dir,
            )
        except (BaselineUnavailable, KeyError, ImportError) as err:
            log.warning("baseline %s skipped: %s", b, err)
            entry["skipped"][b] = str(err)
            continue
        m = baseline_method(b, values=tuned.thresholds, params=tuned.params)
        key = {"baseline": b, "params": m.info.get("params", {})}
        cm, st = cached_method(m, cache_dir, key, per_value=True)
        cm.label = LABELS.get(b, b)
        methods.append(cm)
        stats[b] = st
        op_index[b] = tuned.thresholds.index(tuned.threshold)
        meta[b] = {
            "kind": "baseline",
            "label": cm.label,
            "operating_point": {
                "rule": "tuned on validation frames (strict F1)",
                "threshold": tuned.threshold,
                "params": tuned.params,
            },
            "tuning": tuned.to_dict(),
        }
        log.info(
            "%s %s: val F1 %.4f at threshold %g %s (%d points, %.0f s)",
            cell.name,
            b,
            tuned.best["f1"],
            tuned.threshold,
            {k: v for k, v in tuned.params.items() if k not in fixed},
            len(tuned.rows),
            tuned.seconds,
        )
    if not methods:
        entry["seconds"] = time.perf_counter() - t0
        return entry

    results = run_sweeps(methods, test_frames, settings, loader=test_loader, progress=progress)
    for m in methods:
        r = results[m.name]
        st = stats[m.name]
        d: dict[str, Any] = dict(meta[m.name])
        d["failures"] = list(r.failures) + list(st.failures)
        d["n_frames"] = r.n_frames
        d["seconds_per_frame"] = st.seconds / (st.hits + st.misses) if st.hits + st.misses else None
        d["cache"] = {"hits": st.hits, "misses": st.misses}
        if r.n_frames and r.points:
            d["strict"] = operating_metrics(r, op_index[m.name], settings, area)
            d["best_over_thresholds"] = best_over_thresholds(r)
        else:
            d["strict"] = None
        entry["methods"][m.name] = d
    n_ref = next((d["strict"]["n_ref"] for d in entry["methods"].values() if d.get("strict")), 0)
    entry["n_ref"] = n_ref
    entry["winner"] = winner(entry["methods"], n_ref)
    entry["seconds"] = time.perf_counter() - t0
    return entry


# --------------------------------------------------------------------------- output


def clean_json(obj: Any) -> Any:
    """Recursively turn NaN/inf into None and numpy scalars/arrays into Python values."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}"


def _text(v: Any) -> str:
    return "–" if v is None else str(v)


def _faint_p90(m: Mapping[str, Any]) -> str | None:
    """Faint recall at P = 0.90, or why it is missing (the sweep's precision range)."""
    s = m["strict"]
    if s.get("faint_recall_p90") is not None:
        return _pct(s["faint_recall_p90"])
    lo, hi = s.get("sweep_precision_range") or (None, None)
    if not s.get("faint_n"):
        return "– (no faint stars)"
    if hi is not None and hi < 0.9:
        return f"– (P ≤ {_pct(hi)})"
    if lo is not None and lo > 0.9:
        return f"– (P ≥ {_pct(lo)})"
    return None


def _num(fmt: str) -> Callable[[Any], str]:
    return lambda v: "–" if v is None else format(float(v), fmt)


def _table(
    cells: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    labels: Mapping[str, str],
    get: Callable[[Mapping[str, Any]], Any],
    fmt: Callable[[Any], str],
    *,
    bold_max: bool = False,
) -> list[str]:
    lines = [
        "| cell | " + " | ".join(labels.get(c, c) for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for cell in cells:
        vals = []
        for c in columns:
            m = cell["methods"].get(c)
            vals.append(get(m) if m and m.get("strict") else None)
        bold = bold_max and int(cell.get("n_ref") or 0) >= MIN_G_FOR_F1
        best = max((v for v in vals if v is not None), default=None) if bold else None
        shown = []
        for v in vals:
            s = fmt(v)
            shown.append(f"**{s}**" if best is not None and v == best and s != "–" else s)
        lines.append(f"| {cell['name']} | " + " | ".join(shown) + " |")
    return lines


def render_matrix_markdown(matrix: Mapping[str, Any]) -> str:
    """The matrix as markdown: one table per metric (rows = cells, columns = methods)."""
    cells = [c for c in matrix["cells"].values() if c.get("methods")]
    columns: list[str] = []
    for c in cells:
        columns += [m for m in c["methods"] if m not in columns]
    labels = {n: str(d.get("label") or n) for n, d in matrix.get("methods", {}).items()}
    s = matrix.get("settings", {})
    out = [
        "# Evaluation matrix",
        "",
        f"{s.get('n_val')} validation + {s.get('n_test')} test frame(s) per cell, "
        f"{s.get('size')}² px; strict one-to-one rule, {s.get('radius')} px radius, "
        f"{s.get('edge')} px edge cut, G = stars with snr_true ≥ {s.get('snr_min')}. "
        "Models run at their shipped threshold (thresholds.json); baselines are tuned per "
        "cell on the validation frames only (grid × threshold by strict F1) and applied "
        "unchanged to the test frames. Numbers are pooled over the test frames.",
        "",
    ]

    def section(title: str, note: str, lines: list[str]) -> None:
        out.extend([f"## {title}", "", *([note, ""] if note else []), *lines, ""])

    def st(key: str) -> Callable[[Mapping[str, Any]], Any]:
        return lambda m: m["strict"][key]

    section(
        "Strict F1 (%) at the operating point",
        "",
        _table(cells, columns, labels, st("f1"), _pct, bold_max=True),
    )
    section("Precision (%)", "", _table(cells, columns, labels, st("precision"), _pct))
    section("Recall (%)", "", _table(cells, columns, labels, st("recall"), _pct))
    section(
        "Faint recall (%) at P = 0.90, 2 < SNR < 5, strict rule",
        "Interpolated along each method's threshold sweep on the test frames (baselines at "
        "their validation-tuned filter); – when the sweep's precision stays on one side of "
        "0.90 (its range in brackets) or there are no faint stars.",
        _table(cells, columns, labels, _faint_p90, _text),
    )
    section(
        "Centroid RMS (px), stars with SNR > 10",
        "One-to-one pairs within 2 px at the operating point, mean offset removed.",
        _table(cells, columns, labels, st("rms_bright_px"), _num(".3f")),
    )
    section(
        "Detections per 10^5 px",
        "After the edge cut, at the operating point (the number that matters in `empty`).",
        _table(cells, columns, labels, st("det_per_1e5px"), _num(".1f")),
    )
    section(
        "Best strict F1 (%) over thresholds on the test frames — information only",
        "An oracle choice on the test frames; not a result (see the rules above).",
        _table(
            cells,
            columns,
            labels,
            lambda m: m.get("best_over_thresholds", {}).get("f1"),
            _pct,
        ),
    )
    op_lines = ["| cell | " + " | ".join(labels.get(c, c) for c in columns) + " |"]
    op_lines.append("|---|" + "---|" * len(columns))
    for cell in cells:
        row = []
        for c in columns:
            m = cell["methods"].get(c)
            if not m:
                row.append("–")
                continue
            op = m.get("operating_point", {})
            text = f"t={op.get('threshold', float('nan')):g}"
            extra = {
                k: v
                for k, v in (op.get("params") or {}).items()
                if k in ("filter_fwhm", "fwhm", "n1", "smooth_fwhm")
            }
            if extra:
                text += " " + " ".join(f"{k}={v}" for k, v in extra.items())
            if m.get("tuning"):
                text += f" (val F1 {_pct(m['tuning']['val']['f1'])})"
            row.append(text)
        op_lines.append(f"| {cell['name']} | " + " | ".join(row) + " |")
    section("Operating points", "", op_lines)

    wins = []
    for cell in cells:
        w = cell.get("winner")
        if not w:
            continue
        name = labels.get(w["method"], w["method"])
        if not w["meaningful"]:
            fd = w.get("fewest_detections")
            tail = (
                "; fewest detections: "
                + " = ".join(labels.get(n, n) for n in fd["methods"])
                + f" ({fd['det_per_1e5px']:.2f} per 10^5 px)"
                if fd
                else ""
            )
            wins.append(
                f"- **{cell['name']}**: F1 not meaningful (|G| = {cell.get('n_ref', 0)})" + tail
            )
        elif "runner_up" in w:
            wins.append(
                f"- **{cell['name']}**: {name} wins strict F1 ({_pct(w['f1'])} %) over "
                f"{labels.get(w['runner_up'], w['runner_up'])} ({_pct(w['runner_up_f1'])} %) "
                f"by {100 * w['margin']:+.1f} points"
            )
        else:
            wins.append(f"- **{cell['name']}**: {name} ({_pct(w['f1'])} %), no other method")
    section("Winner of strict F1 per cell", "", wins)
    problems = []
    for cell in matrix["cells"].values():
        for b, why in cell.get("skipped", {}).items():
            problems.append(f"- {cell['name']}: {b} skipped ({why})")
        for n, m in cell.get("methods", {}).items():
            for f in m.get("failures", [])[:5]:
                problems.append(f"- {cell['name']} {n}: {f}")
    if problems:
        section("Problems", "", problems)
    if matrix.get("wall_seconds") is not None:
        out.append(f"Wall time: {matrix['wall_seconds']:.0f} s.")
        out.append("")
    return "\n".join(out)
