"""Evaluation matrix of detectors across simulated conditions, with honest baseline tuning.

Cells: PSF FWHM {1.3, 2.5, 4.5} px × density {sparse, paper, crowded}, plus ``hard`` and
``empty`` (:mod:`atd_dl.evaluate.matrix`). Per cell the frames are simulated with
``atd-dl simulate --preset random`` (validation seed 1000 + cell index, test seed
2000 + cell index); models run at their shipped threshold; SExtractor and sep are tuned
per cell on the validation frames only and reported on the test frames.

    atd-dl benchmark --matrix --out matrix_out --model default=atd_dl/weights/default
    atd-dl benchmark --matrix --out /tmp/m --model default=atd_dl/weights/default --quick
    atd-dl benchmark --matrix --out /tmp/m --cells f2.5-paper,empty --baselines sep

(``python benchmarks/eval_matrix.py`` takes the same options.)

Writes OUT/matrix.json (all numbers) and OUT/matrix.md (one table per metric), updated
after every cell. Frames go to OUT/sim (or --sim-dir) and are simulated only once;
detections are cached per frame and method configuration in OUT/cache (or --cache-dir),
so a re-run only re-scores. Exit code 1 when a method failed on some frame.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("eval_matrix")

QUICK = {
    "size": 512,
    "n_val": 1,
    "n_test": 1,
    "cells": "f2.5-paper,f4.5-crowded,empty",
    "model_thresholds": "0.1:0.9:0.1",
}
DEFAULTS: dict[str, Any] = {
    "size": 1024,
    "n_val": 1,
    "n_test": 2,
    "cells": None,
    "model_thresholds": None,
}


def build_matrix_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="atd-dl benchmark --matrix",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="model folder to evaluate at its shipped threshold (repeatable; "
        "default: the shipped model as 'default')",
    )
    ap.add_argument("--no-model", action="store_true", help="baselines only")
    ap.add_argument(
        "--baselines",
        default="sextractor,sep",
        help="comma-separated baselines tuned per cell ('none' for none; default sextractor,sep)",
    )
    ap.add_argument(
        "--cells",
        default=None,
        help="comma list of cell names or indices (f1.3-sparse … f4.5-crowded, hard, empty; "
        "0-10), or fwhm=X / density=NAME; default all",
    )
    ap.add_argument("--quick", action="store_true", help="smoke test: " + str(QUICK))
    ap.add_argument("--n-val", type=int, default=None, help="validation frames per cell (1)")
    ap.add_argument("--n-test", type=int, default=None, help="test frames per cell (2)")
    ap.add_argument("--size", type=int, default=None, help="frame size px (1024)")
    ap.add_argument("--sim-dir", type=Path, default=None, help="frames folder (default OUT/sim)")
    ap.add_argument(
        "--cache-dir", type=Path, default=None, help="detection cache (default OUT/cache)"
    )
    ap.add_argument("--no-cache", action="store_true", help="do not cache detections")
    ap.add_argument(
        "--tune-sweep",
        choices=("auto", "dense", "paper", "both"),
        default="auto",
        help="baseline thresholds tried on the validation frames (auto: the dense sweep, "
        "extended where the optimum sits on an edge)",
    )
    ap.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME.KEY=V1,V2",
        help="replace a baseline's tuning grid, e.g. sep.filter_fwhm=default,1.5,3.0,4.5 "
        "(NAME.none=1 tunes the threshold only)",
    )
    ap.add_argument(
        "--baseline-param",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="fixed finder parameter for every grid point (repeatable)",
    )
    ap.add_argument(
        "--model-thresholds",
        default=None,
        help="probability sweep for the information-only best F1 and the faint recall at "
        "P=0.90: START:STOP:STEP or comma list (default 0.05:0.95:0.05; the shipped "
        "threshold is always added)",
    )
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    ap.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: all cores)"
    )
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    return ap


def _parse_models(items: list[str], no_model: bool) -> list[tuple[str, str | None]]:
    if no_model:
        return []
    if not items:
        return [("default", None)]
    out: list[tuple[str, str | None]] = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            path, name = item, Path(item).name
        out.append((name.strip(), path.strip()))
    return out


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def _parse_grids(items: list[str]) -> dict[str, dict[str, list[Any]]]:
    """``["sep.filter_fwhm=default,1.5"]`` -> ``{"sep": {"filter_fwhm": ["default", 1.5]}}``."""
    grids: dict[str, dict[str, list[Any]]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"bad --grid {item!r}: use NAME.KEY=V1,V2")
        name, param = (s.strip() for s in key.split(".", 1))
        g = grids.setdefault(name, {})
        if param != "none":
            g[param] = [_literal(v) for v in values.split(",") if v.strip()]
    return grids


def _setup_models(
    specs: list[tuple[str, str | None]],
    thresholds: list[float] | None,
    device: str | None,
    cache_dir: Path | None,
) -> list[Any]:
    from atd_dl.evaluate.benchmark import model_method
    from atd_dl.evaluate.matrix import ModelEntry, cached_method, model_cache_key

    entries = []
    for name, path in specs:
        m = model_method(path, thresholds=thresholds, name=name, device=device)
        t0 = float(m.info["default_threshold"])
        if round(t0, 4) not in [round(v, 4) for v in m.values]:  # custom sweep: add it
            vals = sorted({*m.values, round(t0, 4)})
            m = model_method(path, thresholds=vals, name=name, device=device)
        key = model_cache_key(path, device=str(m.info.get("device")))
        cm, stats = cached_method(m, cache_dir, key)
        entries.append(ModelEntry(name=name, method=cm, stats=stats, threshold=t0, info=m.info))
        log.info("model %s: %s, shipped threshold %g", name, m.info.get("model_dir"), t0)
    return entries


def main(argv: list[str] | None = None) -> int:
    args = build_matrix_parser().parse_args(argv)
    opts = dict(QUICK if args.quick else DEFAULTS)
    for key in ("size", "n_val", "n_test", "cells", "model_thresholds"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from atd_dl.commands.benchmark import parse_baseline_params, parse_thresholds
    from atd_dl.evaluate.benchmark import LABELS
    from atd_dl.evaluate.matrix import (
        clean_json,
        ensure_frames,
        evaluate_cell,
        parse_cells,
        render_matrix_markdown,
    )
    from atd_dl.evaluate.sweep import EvalSettings
    from atd_dl.io.atomic import atomic_write_text

    wall0 = time.perf_counter()
    cells = parse_cells(opts["cells"])
    size, n_val, n_test = int(opts["size"]), int(opts["n_val"]), int(opts["n_test"])
    if n_val < 1 or n_test < 1 or size < 32:
        raise SystemExit("--n-val and --n-test must be >= 1 and --size >= 32")
    out: Path = args.out
    sim_dir = args.sim_dir or out / "sim"
    cache_dir = None if args.no_cache else (args.cache_dir or out / "cache")
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip() and b.strip() != "none"]
    grids = _parse_grids(args.grid)
    fixed = parse_baseline_params(args.baseline_param)
    settings = EvalSettings()
    model_specs = _parse_models(args.model, args.no_model)
    models = _setup_models(
        model_specs,
        parse_thresholds(opts["model_thresholds"]),
        args.device,
        None if cache_dir is None else cache_dir / "det",
    )

    matrix: dict[str, Any] = {
        "settings": {
            **settings.to_dict(),
            "size": size,
            "n_val": n_val,
            "n_test": n_test,
            "quick": bool(args.quick),
            "tune_sweep": args.tune_sweep,
            "grids": grids or "DEFAULT_GRIDS",
            "baseline_fixed": fixed,
            "model_thresholds": opts["model_thresholds"] or "0.05:0.95:0.05",
            "seeds": "validation 1000 + cell index, test 2000 + cell index",
            "sim_dir": str(sim_dir),
        },
        "methods": {
            **{
                me.name: {
                    "kind": "model",
                    "label": me.name,
                    "path": me.info.get("model_dir"),
                    "network": me.info.get("network"),
                    "threshold": me.threshold,
                    "device": me.info.get("device"),
                }
                for me in models
            },
            **{b: {"kind": "baseline", "label": LABELS.get(b, b)} for b in baselines},
        },
        "cells": {},
        "command": " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
    }
    n_fail = 0
    for cell in cells:
        base = sim_dir / f"s{size}" / cell.name
        t = time.perf_counter()
        val_dir = ensure_frames(cell, "val", n_val, size, base / "val")
        test_dir = ensure_frames(cell, "test", n_test, size, base / "test")
        t_sim = time.perf_counter() - t
        entry = evaluate_cell(
            cell,
            val_dir=val_dir,
            test_dir=test_dir,
            n_val=n_val,
            n_test=n_test,
            models=models,
            baselines=baselines,
            settings=settings,
            grids=grids or None,
            tune_sweep=args.tune_sweep,
            baseline_fixed=fixed,
            cache_dir=None if cache_dir is None else cache_dir / "det",
            progress=args.progress,
        )
        entry["seconds_simulate"] = t_sim
        matrix["cells"][cell.name] = entry
        n_fail += sum(len(m.get("failures", [])) for m in entry["methods"].values())
        w = entry.get("winner") or {}
        log.info(
            "cell %s done in %.0f s (+%.0f s simulation): %s",
            cell.name,
            entry["seconds"],
            t_sim,
            ", ".join(
                f"{n} F1 {m['strict']['f1']:.4f}"
                for n, m in entry["methods"].items()
                if m.get("strict")
            )
            + (f"; best {w.get('method')}" if w else ""),
        )
        matrix["wall_seconds"] = time.perf_counter() - wall0
        atomic_write_text(out / "matrix.json", json.dumps(clean_json(matrix), indent=1))
        atomic_write_text(out / "matrix.md", render_matrix_markdown(clean_json(matrix)))
    matrix["wall_seconds"] = time.perf_counter() - wall0
    atomic_write_text(out / "matrix.json", json.dumps(clean_json(matrix), indent=1))
    atomic_write_text(out / "matrix.md", render_matrix_markdown(clean_json(matrix)))
    print(f"matrix: {out / 'matrix.md'} ({matrix['wall_seconds']:.0f} s)")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
