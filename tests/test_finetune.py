"""Fine-tuning (issue 14): ``atd-dl finetune`` from a shipped model, weights-only loading of
the base, input mismatches refused in one line, provenance in the model folder."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from atd_dl.cli import main
from atd_dl.errors import InputError
from atd_dl.lit.finetune import (
    dataset_input_kind,
    load_base,
    resolve_input_mode,
    val_subfields_for,
)
from atd_dl.models.model_folder import shipped_models

REPO = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sim_frame(tmp_path_factory) -> Path:
    """One 240² simulated frame of the paper camera (WCS, Gaia-like catalog, masters)."""
    from atd_dl.sim import preset_config, simulate_run

    out = tmp_path_factory.mktemp("sim")
    simulate_run(preset_config("dense", size=240, fwhm_px=3.0), 31, out, 1, progress=False)
    return out


@pytest.fixture(scope="module")
def finetuned(sim_frame, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``atd-dl finetune`` in fast_dev_run from the shipped default model."""
    out = tmp_path_factory.mktemp("ft") / "model"
    frame = next((sim_frame / "frames").glob("*.fits"))
    cmd = [
        sys.executable,
        "-m",
        "atd_dl.cli",
        "finetune",
        str(frame),
        "--catalogs",
        str(sim_frame / "catalogs"),
        "--out",
        str(out),
        "--bias",
        str(sim_frame / "calib" / "master_bias.fits"),
        "--dark",
        str(sim_frame / "calib" / "master_dark.fits"),
        "--set",
        "+trainer.fast_dev_run=true",
        "--quiet",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    return out, res


def test_finetune_command_writes_a_model_folder(finetuned) -> None:
    out, res = finetuned
    assert res.returncode == 0, res.stderr[-3000:]
    assert "finetune: model ->" in res.stdout
    for name in (
        "model.safetensors",
        "config.json",
        "thresholds.json",
        "fingerprint.json",
        "metrics.json",
        "MODEL_CARD.md",
    ):
        assert (out / name).is_file(), name
    # the dataset was prepared in the default model's input representation
    assert list((out / ".finetune" / "dataset" / "sigma").glob("*.npz"))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["input"] == "sigma_asinh+bad"
    assert cfg["kwargs"]["in_channels"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["val"]["f1"] <= 1.0
    assert metrics["val_base"] is not None  # the base scored on the same held-out subfields
    thr = json.loads((out / "thresholds.json").read_text())["prob_threshold"]
    assert thr == pytest.approx(metrics["val"]["threshold"])
    # the folder loads like any model folder
    from atd_dl.models.model_folder import load_model_folder

    _, meta = load_model_folder(out)
    assert meta["input"] == "sigma_asinh+bad"


def test_card_and_fingerprint_name_the_base_model_hash(finetuned) -> None:
    out, res = finetuned
    assert res.returncode == 0, res.stderr[-3000:]
    sha = _sha(shipped_models()["default"] / "model.safetensors")
    card = (out / "MODEL_CARD.md").read_text()
    assert sha in card and "`default`" in card
    assert "sim_s31_0000" in card  # the frames used
    assert "F1" in card
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["base_model"]["sha256"] == sha and cfg["base_model"]["shipped"] == "default"
    fp = json.loads((out / "fingerprint.json").read_text())
    assert fp["finetune"]["base_model"]["sha256"] == sha
    assert [f["frame"] for f in fp["finetune"]["frames"]] == ["sim_s31_0000"]


def test_rerun_skips_finished_stages(finetuned, capsys) -> None:
    out, res = finetuned
    assert res.returncode == 0, res.stderr[-3000:]
    state = json.loads((out / ".finetune" / "state.json").read_text())
    frame = Path(state["key"]["frames"][0])
    before = (out / "model.safetensors").stat().st_mtime_ns
    argv = [
        "finetune",
        str(frame),
        "--catalogs",
        state["key"]["catalogs"],
        "--out",
        str(out),
        "--set",
        "+trainer.fast_dev_run=true",
        "--quiet",
    ]
    # other options than the finished run: refused in one line
    assert main([*argv, "--epochs", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    sim = frame.parents[1] / "calib"
    rc = main(
        [*argv, "--bias", str(sim / "master_bias.fits"), "--dark", str(sim / "master_dark.fits")]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "train: finished earlier" in text and "threshold: tuned earlier" in text
    assert (out / "model.safetensors").stat().st_mtime_ns >= before


class Payload:
    """Any pickled object that is not a tensor or plain data."""


def test_base_is_loaded_weights_only(tmp_path) -> None:
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Payload()}, ckpt)
    with pytest.raises(InputError, match="refusing to load"):
        load_base(ckpt)
    # a plain checkpoint is accepted and hashed
    ok = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"net.w": torch.zeros(1)}}, ok)
    base = load_base(ok)
    assert base.sha256 == _sha(ok)
    # the shipped model: safetensors, hash of the weights file
    default = load_base("default")
    assert default.shipped == "default" and default.input_kind == "sigma_asinh+bad"
    assert default.sha256 == _sha(default.path / "model.safetensors")


def test_pickled_base_refused_by_the_command(sim_frame, tmp_path, capsys) -> None:
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, ckpt)
    frame = next((sim_frame / "frames").glob("*.fits"))
    rc = main(
        [
            "finetune",
            str(frame),
            "--catalogs",
            str(sim_frame / "catalogs"),
            "--out",
            str(tmp_path / "m"),
            "--base",
            str(ckpt),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "refusing to load" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_input_mismatch_is_one_line() -> None:
    default = load_base("default")
    assert resolve_input_mode(default, "auto") == "sigma"
    assert resolve_input_mode(default, "sigma") == "sigma"
    with pytest.raises(
        InputError,
        match=r"takes sigma_asinh\+bad input \(2 plane\(s\)\) but "
        r"data.input_mode=image gives zscale8 \(1 plane",
    ):
        resolve_input_mode(default, "image")
    with pytest.raises(
        InputError,
        match=r"data.input_mode=noise_aware gives zscale8\+rms\+bad "
        r"\(3 plane",
    ):
        resolve_input_mode(default, "noise_aware")
    paper = load_base("paper_camera")
    assert resolve_input_mode(paper, "auto") == "image"
    with pytest.raises(InputError, match="data.input_mode=sigma"):
        resolve_input_mode(paper, "sigma")


def test_train_refuses_mismatch_in_one_line(finetuned, capsys) -> None:
    """``atd-dl train experiment=finetune`` on the sigma dataset with a zscale base / mode."""
    out, res = finetuned
    assert res.returncode == 0, res.stderr[-3000:]
    data = out / ".finetune" / "dataset"
    common = [
        "train",
        "experiment=finetune",
        f"data.data_dir={data}",
        f"paths.output_dir={out.parent / 'run'}",
        "+trainer.fast_dev_run=true",
        "logger=csv",
        "hydra.run.dir=" + str(out.parent / "hydra"),
    ]
    rc = main([*common, "data.input_mode=noise_aware"])
    err = capsys.readouterr().err
    assert rc == 2 and "data.input_mode=noise_aware gives zscale8+rms+bad" in err
    assert "Traceback" not in err
    # the paper model (zscale8) on a dataset prepared for sigma models: auto picks "image",
    # which this dataset has (PNG); an explicit sigma mode is refused
    rc = main([*common, "model.init=paper_camera", "data.input_mode=sigma"])
    err = capsys.readouterr().err
    assert rc == 2 and "base model 'paper_camera' takes zscale8 input" in err


def test_sigma_mode_needs_sigma_planes(finetuned, tmp_path) -> None:
    out, _ = finetuned
    from atd_dl.lit.datamodule import StarFieldDataset

    data = out / ".finetune" / "dataset"
    stem = next((data / "sigma").glob("*.npz")).stem
    ds = StarFieldDataset(data, [stem], input_mode="sigma")
    sample = ds[0]
    assert sample["image"].shape[0] == 2
    with np.load(data / "sigma" / f"{stem}.npz") as z:
        assert z["planes"].dtype == np.float16
    # a zscale8 dataset (no sigma/ folder) is refused with the prep option to use
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(data, copy)
    shutil.rmtree(copy / "sigma")
    with pytest.raises(InputError, match="--input-kind sigma_asinh"):
        StarFieldDataset(copy, [stem], input_mode="sigma")


def test_prep_input_kind_from_a_model() -> None:
    assert dataset_input_kind("default") == "sigma_asinh+bad"
    assert dataset_input_kind("paper_camera") == "zscale8"
    assert dataset_input_kind("sigma") == "sigma_asinh+bad"
    with pytest.raises(InputError):
        dataset_input_kind("no_such_model")


def test_val_subfields() -> None:
    assert val_subfields_for(1 / 3) == (2, 5, 8)
    assert len(val_subfields_for(0.1)) == 1
    with pytest.raises(InputError):
        val_subfields_for(1.0)
