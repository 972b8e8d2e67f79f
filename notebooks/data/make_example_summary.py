"""Regenerate ``example_summary.json`` (used by paper_figures.ipynb and its test).

A small real benchmark: two simulated 512×512 frames, the classical baselines with their
ten-point paper sweeps, the model when one is given, and a small injection run.

    python notebooks/data/make_example_summary.py [--model MODEL_DIR --model-name NAME]

The committed file includes a model trained by the quickstart notebook's recipe
(``atd-dl train experiment=quick trainer.max_epochs=20`` on three 400×400 simulated
frames, seed 5): a toy CPU model, far from a converged one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from atd_dl.cli import main as cli
from atd_dl.evaluate.benchmark import run_benchmark
from atd_dl.evaluate.report import to_jsonable
from atd_dl.evaluate.sweep import EvalSettings

HERE = Path(__file__).resolve().parent


def build(models: list[str], names: list[str], out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        sim = Path(tmp) / "sim"
        cli(
            [
                "simulate",
                "--out",
                str(sim),
                "--n-frames",
                "2",
                "--size",
                "512",
                "--seed",
                "7",
                "--no-progress",
            ]
        )
        result = run_benchmark(
            sim,
            models=models,
            model_names=names,
            baselines=("sextractor", "sextractor_seg", "sep", "daofind"),
            baseline_sweep="paper",
            prob_thresholds=[round(0.1 * k, 2) for k in range(1, 10)] if models else None,
            settings=EvalSettings(residual_sample=250),
            injection={"n_per_round": 120, "rounds": 1, "frames": 1},
            ablation=False,
            progress=False,
        )
    summary = to_jsonable(result.summary)
    summary["test_set"] = "simulated: atd-dl simulate --n-frames 2 --size 512 --seed 7"
    for m in summary["methods"].values():
        m["per_frame"] = m.get("per_frame", [])[:2]
        m["timing"] = {k: None for k in m["timing"]}  # machine-dependent, keep the file stable
    out.write_text(json.dumps(summary, allow_nan=False) + "\n")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", action="append", default=[], help="model folder(s) to include")
    ap.add_argument("--model-name", action="append", default=[], help="display name per --model")
    ap.add_argument("--out", type=Path, default=HERE / "example_summary.json")
    args = ap.parse_args()
    print(build(args.model, args.model_name, args.out))
