"""benchmarks/bench_gpu.py runs (reduced, on the CPU) and reports what it promises."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _detect_helpers import tiny_model_folder

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_gpu_reduced_cpu_run_writes_the_json(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sys.modules.pop("bench_gpu", None)
    import bench_gpu

    model = tiny_model_folder(tmp_path / "model")
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--model", str(model), "--device", "cpu", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["reduced"] is True and res["device"] == "cpu" and res["frame_size"] == 64
    assert {"gpu", "torch", "model", "input_planes", "repeat", "warmup"} <= set(res)
    rows = res["inference"]
    assert [(r["variant"], r["batch"]) for r in rows] == [("fp32", 1), ("fp32", 8)]
    for r in rows:
        assert r["latency_ms_per_frame"] > 0 and r["frames_per_s"] > 0
        assert {"batch_ms", "median_batch_ms", "peak_memory_mb"} <= set(r)
    wf = res["whole_frame"]
    assert set(wf["shares"]) == {"pre", "inference", "post"}
    assert abs(sum(wf["shares"].values()) - 1.0) < 1e-3
    assert {"read", "enhance", "planes", "inference", "postprocess"} <= set(wf["stages_s"])
    assert "REDUCED CPU RUN" in capsys.readouterr().out
