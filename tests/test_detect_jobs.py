"""``atd-dl detect --jobs N``: frames shared among worker processes, same outputs as one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atd_dl.cli import main
from atd_dl.detect.batch import RunSummary
from atd_dl.detect.catalog_io import read_catalog
from atd_dl.sim import preset_config, simulate_field, write_field


def test_frames_per_minute_in_the_summary():
    s = RunSummary(frames=[{"status": "ok"}, {"status": "ok"}, {"status": "skipped"}], wall_s=30.0)
    assert s.frames_per_minute == pytest.approx(4.0)  # skipped frames do not count
    d = s.to_dict()
    assert d["frames_per_minute"] == 4.0 and d["jobs"] == 1
    assert RunSummary().frames_per_minute == 0.0


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("jobs")
    return [
        write_field(simulate_field(preset_config("paper", size=128), seed=20 + k), root / f"s{k}")[
            "frame"
        ]
        for k in range(3)
    ]


def _detect(frames, out, *extra):
    args = ["detect", *map(str, frames), "--out", str(out), "--no-progress", "--device", "cpu"]
    return main([*args, *extra])


@pytest.mark.slow
def test_jobs_2_gives_the_catalogs_keys_and_summary_of_one_process(frames, tmp_path, capsys):
    # the shipped default model (ONNX Runtime on the CPU): the engine --jobs runs in practice
    assert _detect(frames, tmp_path / "one", "--jobs", "1") == 0
    assert _detect(frames, tmp_path / "two", "--jobs", "2") == 0
    out = capsys.readouterr().out
    assert "frames/min (2 process(es))" in out and "frames/min (1 process(es))" in out
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    stems = [f.name.removesuffix(".fits") for f in frames]
    # every frame exactly once, in input order
    assert [f["stem"] for f in two["frames"]] == stems == [f["stem"] for f in one["frames"]]
    assert two["jobs"] == 2 and one["jobs"] == 1 and two["frames_per_minute"] > 0
    assert two["n_ok"] == 3 and two["n_detections"] == one["n_detections"] > 0
    for stem in stems:
        a = read_catalog(tmp_path / "one" / f"{stem}.cat.fits")
        b = read_catalog(tmp_path / "two" / f"{stem}.cat.fits")
        assert a.colnames == b.colnames and len(a) == len(b) > 0
        for c in a.colnames:
            assert np.array_equal(np.asarray(a[c]), np.asarray(b[c]), equal_nan=True), c
        ka = json.loads((tmp_path / "one" / f"{stem}.key.json").read_text())
        kb = json.loads((tmp_path / "two" / f"{stem}.key.json").read_text())
        assert ka["key"] == kb["key"]
    # resume: a rerun with --jobs skips every frame, the processes are not even started
    assert _detect(frames, tmp_path / "two", "--jobs", "2") == 0
    again = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert again["n_skipped"] == 3 and again["jobs"] == 1
