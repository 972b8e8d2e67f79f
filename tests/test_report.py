"""Tests for sweeps, the summary and the report writer on synthetic detection lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from atd_dl.errors import InputError
from atd_dl.evaluate.references import References, read_table, references_from_truth
from atd_dl.evaluate.report import (
    ablation_table,
    build_summary,
    load_summary,
    matched_precision_pairs,
    render_markdown,
    write_report,
)
from atd_dl.evaluate.sweep import EvalSettings, Method, run_sweeps, summarize_sweep

SHAPE = (200, 200)


class _FakeFrame:
    """Stand-in for io.Frame: the sweep only needs ``shape`` and a name."""

    def __init__(self, seed: int) -> None:
        self.shape = SHAPE
        self.seed = seed


def _refs(seed: int) -> References:
    rng = np.random.default_rng(seed)
    n = 150
    xy = rng.uniform(5, 195, (n, 2))
    snr = 10 ** rng.uniform(0, 1.6, n)  # 1 .. 40
    target = np.ones(n, bool)
    target[:5] = False  # a few non-targets (trails)
    return References(xy, snr, target, rng.uniform(size=n) < 0.7, np.full(n, np.nan))


def _make_method(name: str, boost: float, jitter: float) -> Method:
    """Detects references with SNR above ``t / boost``, plus FPs that fall as t rises."""

    def finder(frame: _FakeFrame, t: float) -> Table:
        refs = _refs(frame.seed)
        rng = np.random.default_rng(frame.seed + int(t * 100))
        keep = refs.snr > t / boost
        xy = refs.xy[keep] + rng.normal(0, jitter, (int(keep.sum()), 2)) + [0.1, -0.05]
        n_fp = int(60 / t)
        fp = rng.uniform(5, 195, (n_fp, 2))
        allxy = np.vstack([xy, fp])
        return Table({"x": allxy[:, 0], "y": allxy[:, 1]})

    return Method.from_finder(name, "threshold", np.arange(1.0, 6.01, 0.5), finder, kind="model")


def _frames() -> list[tuple[str, _FakeFrame, References]]:
    return [(f"f{s}", _FakeFrame(s), _refs(s)) for s in (1, 2, 3)]


@pytest.fixture(scope="module")
def results() -> dict:
    methods = [_make_method("base", 1.0, 0.25), _make_method("fem", 1.3, 0.2)]
    return run_sweeps(methods, _frames(), EvalSettings(), progress=False)


def test_sweep_pools_frames(results: dict) -> None:
    r = results["base"]
    assert r.n_frames == 3 and len(r.points) == 11
    # recall falls and precision rises with the threshold
    rec = [p.paper.recall for p in r.points]
    prec = [p.paper.precision for p in r.points]
    assert rec[0] > rec[-1] and prec[-1] > prec[0]
    # per-frame rows sum to the pooled counts
    p0 = r.points[0]
    assert sum(row["paper_tp"] for row in p0.per_frame) == p0.paper.tp
    assert p0.paper.n_ref == sum(int(((rf.snr >= 2) & rf.target).sum()) for _, _, rf in _frames())


def test_summary_best_aligned_top3(results: dict) -> None:
    s = summarize_sweep(results["base"], EvalSettings(target_precision=0.9))
    f1 = s["sweep"]["paper"]["f1"]
    assert s["best"]["paper"]["f1"] == max(f1)
    ia = s["aligned"]["paper"]["index"]
    prec = np.asarray(s["sweep"]["paper"]["precision"])
    assert ia == int(np.argmin(np.abs(prec - 0.9)))
    assert s["top3"]["paper"]["f1"] == pytest.approx(np.mean(sorted(f1)[-3:]))
    assert set(s["snr_recall"]["paper"]) >= {"2-3", ">10"}
    # known +0.1/-0.05 offset is removed by the RMS but shows in the mean
    assert s["astrometry"]["all"]["mean_dx"] == pytest.approx(0.1, abs=0.05)
    assert s["astrometry"]["all"]["rms_x"] < 0.4
    assert 0 <= s["growth"]["fp_rate"] <= 1


def test_ablation_pairs_and_lift() -> None:
    pairs = matched_precision_pairs([0.5, 0.9, 0.97], [0.91, 0.96, 0.6, 0.99], n=2)
    assert pairs == [(1, 0), (2, 1)]
    base = {
        "name": "u",
        "values": [1, 2],
        "sweep": {"paper": {"precision": [0.9, 0.95], "faint_found": [100, 40]}},
    }
    enh = {
        "name": "f",
        "values": [3, 4],
        "sweep": {"paper": {"precision": [0.951, 0.899], "faint_found": [90, 120]}},
    }
    tab = ablation_table(base, enh, n=2)
    assert [r["lift_pct"] for r in tab["rows"]] == pytest.approx([20.0, 125.0])
    assert tab["rows"][0]["base_value"] == 1 and tab["rows"][0]["enhanced_value"] == 4


def test_write_report_outputs(results: dict, tmp_path: Path) -> None:
    summary = build_summary(
        results,
        EvalSettings(),
        test_set="synthetic",
        n_frames=3,
        ablation=("base", "fem"),
        pixel_scale_arcsec=14.86,
    )
    report = write_report(summary, tmp_path / "rep")
    out = tmp_path / "rep"
    assert report == out / "report.md"
    text = report.read_text()
    for heading in (
        "Table 5",
        "Table 5b",
        "Table 6",
        "Table 7",
        "Recall per true-SNR bin",
        "Growth rate",
    ):
        assert heading in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {
        "fig_metrics_vs_point.png",
        "fig_pr_curves.png",
        "fig_top3.png",
        "fig_recall_snr.png",
        "fig_centroid_residuals.png",
        "fig_ablation.png",
    } <= set(pngs)
    assert all((out / p).stat().st_size > 5000 for p in pngs)
    data = json.loads((out / "summary.json").read_text())  # strict JSON (no NaN)
    assert data["methods"]["fem"]["best"]["paper"]["f1"] == pytest.approx(
        summary["methods"]["fem"]["best"]["paper"]["f1"]
    )
    assert len(data["ablation"]["rows"]) == 5
    assert load_summary(out)["n_frames"] == 3
    # re-rendering from the loaded JSON gives the same tables
    assert render_markdown(load_summary(out)).split("## Timing")[0] == text.split("## Figures")[0]


def test_missing_method_and_failures(tmp_path: Path) -> None:
    def broken(frame: object) -> list[Table]:
        raise RuntimeError("binary not found")

    methods = [_make_method("ok", 1.0, 0.2), Method("broken", "t", [1.0, 2.0], broken)]
    res = run_sweeps(methods, _frames()[:1], progress=False)
    assert res["broken"].n_frames == 0 and "binary not found" in res["broken"].failures[0]
    summary = build_summary(res)
    text = write_report(summary, tmp_path).read_text()
    assert "Methods without results: broken" in text and "## Failures" in text


def test_load_summary_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="summary file not found"):
        load_summary(tmp_path)
    (tmp_path / "summary.json").write_text("{bad")
    with pytest.raises(InputError, match="not valid JSON"):
        load_summary(tmp_path / "summary.json")


def test_truth_table_references(tmp_path: Path) -> None:
    t = Table(
        {
            "id": [1, 2, 3],
            "x": [10.0, 20.0, 30.0],
            "y": [5.0, 6.0, 7.0],
            "snr_true": [1.0, 5.0, 50.0],
            "in_catalog": [True, False, True],
            "kind": ["star", "star", "trail"],
            "mag": [15.0, 14.0, 9.0],
        }
    )
    p = tmp_path / "truth.ecsv"
    t.write(p)
    refs = references_from_truth(read_table(p))
    assert refs.target.tolist() == [True, True, False]
    assert refs.in_catalog.tolist() == [True, False, True]
    np.testing.assert_allclose(refs.xy, [[10, 5], [20, 6], [30, 7]])
    with pytest.raises(InputError, match="no SNR column"):
        references_from_truth(Table({"x": [1.0], "y": [2.0]}), path="t.csv")
    with pytest.raises(InputError, match="file not found"):
        read_table(tmp_path / "nope.ecsv")
