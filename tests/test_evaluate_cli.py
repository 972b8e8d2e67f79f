"""``atd-dl evaluate`` and ``atd-dl benchmark`` on a small simulated test set (real sim, real finders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from atd_dl.cli import main
from atd_dl.evaluate.metrics import evaluate_frame
from atd_dl.evaluate.references import load_test_set, read_table, references_from_truth


@pytest.fixture(scope="module")
def sim_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    rc = main(
        [
            "simulate",
            "--out",
            str(out),
            "--n-frames",
            "2",
            "--size",
            "256",
            "--seed",
            "11",
            "--no-progress",
        ]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def sep_catalog(sim_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from atd_dl.baselines import get_baseline
    from atd_dl.io.fits_io import read_frame

    tf = load_test_set(sim_set)[0]
    frame = read_frame(tf.frame)
    cat = get_baseline("sep")(frame.data, mask=frame.mask, threshold=1.2)
    path = tmp_path_factory.mktemp("cat") / "det.ecsv"
    cat.write(path, format="ascii.ecsv")
    return path


def test_evaluate_truth_matches_library(sim_set: Path, sep_catalog: Path, tmp_path: Path) -> None:
    tf = load_test_set(sim_set)[0]
    out = tmp_path / "ev"
    rc = main(
        [
            "evaluate",
            str(sep_catalog),
            "--reference",
            str(tf.truth),
            "--frame",
            str(tf.frame),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    det = read_table(sep_catalog)
    refs = references_from_truth(read_table(tf.truth))
    fe = evaluate_frame(
        np.column_stack([det["x"], det["y"]]),
        refs.xy,
        refs.snr,
        shape=(256, 256),
        ref_target=refs.target,
    )
    assert m["paper"]["tp"] == fe.paper.tp and m["paper"]["fn"] == fe.paper.fn
    assert m["strict"]["tp"] == fe.strict.tp
    assert m["paper"]["tp"] > 20 and 0 < m["paper"]["precision"] <= 1
    assert m["reference_kind"] == "truth"
    matched = Table.read(out / "matched.ecsv")
    assert int(np.sum(matched["tp_paper"])) == fe.paper.tp
    missed = Table.read(out / "missed.ecsv")
    assert len(missed) == fe.paper.fn


def test_evaluate_catalog_mode_and_columns(
    sim_set: Path, sep_catalog: Path, tmp_path: Path, capsys
) -> None:
    tf = load_test_set(sim_set)[0]
    rc = main(
        [
            "evaluate",
            str(sep_catalog),
            "--reference",
            str(tf.catalog),
            "--frame",
            str(tf.frame),
            "--json",
        ]
    )
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    assert m["reference_kind"] == "catalog" and m["n_reference"] > 0
    # 1-based renamed columns give the same answer
    det = read_table(sep_catalog)
    t = Table({"X_IMAGE": det["x"] + 1.0, "Y_IMAGE": det["y"] + 1.0})
    p = tmp_path / "sex.csv"
    t.write(p, format="ascii.csv")
    rc = main(
        [
            "evaluate",
            str(p),
            "--reference",
            str(tf.truth),
            "--frame",
            str(tf.frame),
            "--x-col",
            "X_IMAGE",
            "--y-col",
            "Y_IMAGE",
            "--one-based",
            "--json",
        ]
    )
    m2 = json.loads(capsys.readouterr().out)
    rc0 = main(
        [
            "evaluate",
            str(sep_catalog),
            "--reference",
            str(tf.truth),
            "--frame",
            str(tf.frame),
            "--json",
        ]
    )
    m1 = json.loads(capsys.readouterr().out)
    assert rc == rc0 == 0 and m2["paper"] == m1["paper"]


def test_evaluate_errors(sim_set: Path, sep_catalog: Path, tmp_path: Path, capsys) -> None:
    tf = load_test_set(sim_set)[0]
    assert main(["evaluate", str(sep_catalog), "--reference", str(tf.catalog)]) == 2
    assert "needs --frame" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "none.ecsv"), "--reference", str(tf.truth)]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["evaluate", str(sep_catalog), "--reference", str(tf.truth), "--x-col", "xc"]) == 2
    assert "no x column" in capsys.readouterr().err


def test_benchmark_cli_baselines(sim_set: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(
        f"test_set: {sim_set}\nno_model: true\nbaselines: sep,daofind,nosuch\nbaseline_sweep: paper\n"
    )
    out = tmp_path / "rep"
    rc = main(
        ["benchmark", "--config", str(cfg), "--out", str(out), "--no-progress", "--limit", "1"]
    )
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["methods"]) == {"sep", "daofind"}
    assert "nosuch" in s["skipped"]
    assert s["n_frames"] == 1 and s["methods"]["sep"]["n_frames"] == 1
    assert len(s["methods"]["daofind"]["values"]) == 10
    assert (out / "report.md").is_file() and (out / "fig_pr_curves.png").is_file()


def test_benchmark_cli_bad_options(sim_set: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tset_set: x\n")
    assert main(["benchmark", "--config", str(bad), "--out", str(tmp_path)]) == 2
    assert "unknown option 'tset_set'" in capsys.readouterr().err
    assert (
        main(
            ["benchmark", "--test-set", str(sim_set), "--out", str(tmp_path), "--thresholds", "a:b"]
        )
        == 2
    )
    assert "bad --thresholds" in capsys.readouterr().err
