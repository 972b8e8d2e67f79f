"""The evaluation matrix (``atd-dl benchmark --matrix``, ``benchmarks/eval_matrix.py``): the
quick path on one small cell (shipped model + sep)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from atd_dl.evaluate.matrix import CELLS, parse_cells, simulate_argv

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "eval_matrix.py"
MODEL = REPO / "atd_dl" / "weights" / "default"


def _load_script():
    spec = importlib.util.spec_from_file_location("eval_matrix", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cells_and_seeds():
    assert len(CELLS) == 11
    assert [c.name for c in CELLS[-2:]] == ["hard", "empty"]
    cell = parse_cells("f2.5-paper")[0]
    assert (cell.val_seed, cell.test_seed) == (1004, 2004)
    argv = simulate_argv(parse_cells("hard")[0], "val", 1, 256, "x")
    assert argv[:3] == ["simulate", "--preset", "random"] and "--hard" in argv
    assert [c.name for c in parse_cells("fwhm=1.3")] == [
        "f1.3-sparse",
        "f1.3-paper",
        "f1.3-crowded",
    ]
    with pytest.raises(ValueError):
        parse_cells("nope")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


@pytest.mark.skipif(not (MODEL / "model.safetensors").is_file(), reason="no shipped model")
def test_quick_matrix_one_cell(tmp_path):
    script = _load_script()
    out = tmp_path / "m"
    argv = ["--out", str(out), "--quick", "--size", "256", "--cells", "f2.5-paper"]
    argv += ["--model", f"default={MODEL}", "--baselines", "sep", "--device", "cpu"]
    argv += ["--grid", "sep.filter_fwhm=default", "--model-thresholds", "0.2,0.5,0.8"]
    rc = script.main(argv)
    assert rc == 0
    data = json.loads((out / "matrix.json").read_text())
    assert {"settings", "methods", "cells", "wall_seconds"} <= set(data)
    assert set(data["methods"]) == {"default", "sep"}
    cell = data["cells"]["f2.5-paper"]
    assert cell["seed_val"] == 1004 and cell["seed_test"] == 2004
    assert len(cell["val_frames"]) == 1 and len(cell["test_frames"]) == 1
    assert cell["n_ref"] > 0 and cell["winner"]["method"] in ("default", "sep")
    model, sep = cell["methods"]["default"], cell["methods"]["sep"]
    assert model["operating_point"]["threshold"] == data["methods"]["default"]["threshold"]
    assert sep["operating_point"]["threshold"] == sep["tuning"]["threshold"]
    assert _finite(sep["tuning"]["val"]["f1"])
    for m in (model, sep):
        s = m["strict"]
        for key in ("precision", "recall", "f1", "det_per_1e5px", "rms_bright_px"):
            assert _finite(s[key]), key
        assert 0.0 <= s["f1"] <= 1.0 and s["n_det"] > 0
        assert s["faint_recall_p90"] is None or 0.0 <= s["faint_recall_p90"] <= 1.0
        assert _finite(m["best_over_thresholds"]["f1"])
        assert m["best_over_thresholds"]["f1"] >= s["f1"] - 1e-12
    md = (out / "matrix.md").read_text()
    assert "Strict F1" in md and "| f2.5-paper |" in md and "wins strict F1" in md

    # a re-run (through the CLI) re-scores from the caches: nothing simulated or detected again
    from atd_dl.cli import main as cli_main

    assert cli_main(["benchmark", "--matrix", *argv]) == 0
    again = json.loads((out / "matrix.json").read_text())["cells"]["f2.5-paper"]
    assert again["methods"]["sep"]["cache"] == {"hits": 1, "misses": 0}
    assert again["methods"]["default"]["cache"] == {"hits": 1, "misses": 0}
    assert again["methods"]["sep"]["strict"] == sep["strict"]
