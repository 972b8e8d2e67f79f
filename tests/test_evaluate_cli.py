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
    assert main(["benchmark", "--config", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "unknown option 'tset_set'" in capsys.readouterr().err
    assert (
        main(
            [
                "benchmark",
                "--test-set",
                str(sim_set),
                "--out",
                str(tmp_path / "out"),
                "--thresholds",
                "a:b",
            ]
        )
        == 2
    )
    assert "bad --thresholds" in capsys.readouterr().err


def test_benchmark_with_a_model_folder(sim_set: Path, tmp_path: Path) -> None:
    """A tiny untrained network through the real detection pipeline: plumbing, not skill."""
    import torch

    from atd_dl.evaluate.benchmark import run_benchmark
    from atd_dl.models.model_folder import save_model_folder
    from atd_dl.models.registry import build_model

    torch.manual_seed(0)
    net = build_model("atd_unet", base_width=4)
    # an untrained net thresholds into one frame-sized blob; make the head say "sky"
    # almost everywhere so the post-processing stays fast (the plumbing is what is tested)
    head = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.mul_(0.01)
        head.bias.copy_(
            torch.tensor([4.0, -4.0][: head.out_channels] if head.out_channels == 2 else [-4.0])
        )
    mdir = tmp_path / "tiny" / "model"
    save_model_folder(mdir, net, threshold=0.5)
    out = run_benchmark(
        sim_set,
        models=[mdir, mdir],
        model_names=["unet", "fem"],
        baselines=(),
        prob_thresholds=[0.3, 0.6],
        limit=1,
        out=tmp_path / "rep",
        progress=False,
    )
    s = out.summary
    assert list(s["methods"]) == ["unet", "fem"]
    m = s["methods"]["unet"]
    assert m["kind"] == "model" and m["n_frames"] == 1 and m["values"] == [0.3, 0.6]
    assert m["info"]["default_threshold"] == 0.5
    # identical weights -> identical sweeps, zero lift in the ablation table
    assert s["methods"]["fem"]["sweep"]["paper"] == m["sweep"]["paper"]
    assert s["ablation"]["base"] == "unet" and len(s["ablation"]["rows"]) == 2
    assert (tmp_path / "rep" / "report.md").is_file()
