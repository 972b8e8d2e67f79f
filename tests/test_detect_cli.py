"""``atd-dl detect`` and ``infer.py`` end to end with a tiny real model folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _detect_helpers import tiny_model_folder
from astropy.io import fits

from atd_dl.cli import main
from atd_dl.detect.catalog_io import file_sha256, read_catalog
from atd_dl.sim import preset_config, simulate_field, write_field

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect_cli")
    sim = simulate_field(preset_config("paper", size=256), seed=5)
    frame = write_field(sim, root / "sim")["frame"]
    model = tiny_model_folder(root / "model", threshold=0.5)
    bad = root / "bad"
    bad.mkdir()
    (bad / "notfits.fits").write_text("this is not a FITS file")
    fits.PrimaryHDU(np.zeros((3, 16, 16), np.float32)).writeto(bad / "cube.fits")
    fits.PrimaryHDU().writeto(bad / "empty.fits")
    return root, frame, model, bad


def _run(args, capsys):
    rc = main(["detect", *map(str, args), "--no-progress", "--device", "cpu", "--tile", "256"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_end_to_end_and_resume(setup, capsys):
    root, frame, model, _ = setup
    out = root / "out"
    rc, stdout, err = _run(
        [frame, "--model", model, "--out", out, "--regions", "--segmap", "--probmap", "--overlay"],
        capsys,
    )
    assert rc == 0, err
    stem = frame.name.removesuffix(".fits")
    for suffix in (".cat.fits", ".cat.ecsv", ".reg", ".seg.fits", ".prob.fits", ".overlay.png"):
        assert (out / f"{stem}{suffix}").is_file(), suffix
    cat = read_catalog(out / f"{stem}.cat.fits")
    assert {"x", "y", "ra", "dec", "flux", "snr", "flags"} <= set(cat.colnames)
    hdr = fits.getheader(out / f"{stem}.cat.fits", "CATALOG")
    assert hdr["MODEL"] == "atd_unet" and hdr["THRESH"] == 0.5
    assert hdr["INSHA256"] == file_sha256(frame) and hdr["ATDVERS"]
    prob = fits.getdata(out / f"{stem}.prob.fits")
    assert prob.shape == (256, 256) and np.all((prob >= 0) & (prob <= 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_ok"] == 1 and summary["n_failed"] == 0
    assert set(summary["timings_s"]) >= {"read", "enhance", "inference", "postprocess", "write"}
    assert "1 frame(s) processed" in stdout
    # second run: outputs complete -> skipped; --overwrite redoes it with a new threshold
    rc, stdout, _ = _run(
        [frame, "--model", model, "--out", out, "--regions", "--segmap", "--probmap", "--overlay"],
        capsys,
    )
    assert rc == 0 and "0 frame(s) processed, 1 skipped" in stdout
    rc, stdout, _ = _run(
        [frame, "--model", model, "--out", out, "--overwrite", "--threshold", "0.9"], capsys
    )
    assert rc == 0 and "1 frame(s) processed" in stdout
    assert fits.getheader(out / f"{stem}.cat.fits", "CATALOG")["THRESH"] == 0.9


def test_cli_bad_inputs_are_reported_and_the_batch_goes_on(setup, capsys):
    root, frame, model, bad = setup
    out = root / "out_bad"
    rc, stdout, err = _run(
        [
            bad / "notfits.fits",
            bad / "cube.fits",
            frame,
            bad / "empty.fits",
            bad / "missing.fits",
            "--model",
            model,
            "--out",
            out,
        ],
        capsys,
    )
    assert rc == 1
    assert "notfits.fits: not a FITS file" in err
    assert "cube.fits: HDU 0 (PRIMARY) has a 3-D cube" in err
    assert "empty.fits: no 2-D image data" in err
    assert "missing.fits: file not found" in err
    assert "4 failure(s)" in err and "1 frame(s) processed" in stdout
    assert (out / f"{frame.name.removesuffix('.fits')}.cat.ecsv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_failed"] == 4 and summary["n_ok"] == 1
    assert {f["path"].split("/")[-1] for f in summary["failures"]} == {
        "notfits.fits",
        "cube.fits",
        "empty.fits",
        "missing.fits",
    }


def test_cli_cube_plane_and_checkpoint_model(setup, capsys, tmp_path):
    import torch

    root, frame, model, bad = setup
    from atd_dl.models.model_folder import load_model_folder

    net, meta = load_model_folder(model)
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"model_spec": {"name": meta["name"], "kwargs": meta["kwargs"]}},
        },
        tmp_path / "model.ckpt",
    )
    rc, _, err = _run(
        [
            bad / "cube.fits",
            "--plane",
            "1",
            "--model",
            tmp_path / "model.ckpt",
            "--out",
            tmp_path / "o",
        ],
        capsys,
    )
    assert rc == 0, err
    assert (tmp_path / "o" / "cube.cat.fits").is_file()


def _infer_cfg(overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(str(REPO / "atd_dl" / "configs"), version_base="1.3"):
        cfg = compose("infer.yaml", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_infer_py_single_process_and_lightning_predict(setup, tmp_path, monkeypatch):
    root, frame, model, bad = setup
    monkeypatch.syspath_prepend(str(REPO))
    import infer

    common = [
        f"inputs=[{frame},{bad / 'cube.fits'}]",
        f"model_path={model}",
        "detect.device=cpu",
        "detect.tile=256",
        "progress=false",
    ]
    s = infer.run_infer(_infer_cfg([*common, f"out={tmp_path / 'a'}", "outputs.regions=true"]))
    assert s["n_ok"] == 1 and s["n_failed"] == 1 and "3-D cube" in s["failures"][0]["error"]
    assert (tmp_path / "a" / "summary.json").is_file()
    # the same frames through the Lightning predict loop (DDP-ready; one CPU device here)
    s2 = infer.run_infer(
        _infer_cfg(
            [
                *common,
                f"out={tmp_path / 'b'}",
                "distributed.enabled=true",
                "distributed.num_workers=0",
                "distributed.trainer.accelerator=cpu",
                "distributed.trainer.devices=1",
            ]
        )
    )
    assert s2["n_ok"] == 1 and s2["n_failed"] == 1
    a = read_catalog(tmp_path / "a" / f"{frame.name.removesuffix('.fits')}.cat.fits")
    b = read_catalog(tmp_path / "b" / f"{frame.name.removesuffix('.fits')}.cat.fits")
    assert len(a) == len(b) and np.allclose(a["x"], b["x"])
    # the deprecated top-level threshold= still works (as detect.threshold=)
    s3 = infer.run_infer(_infer_cfg([*common, f"out={tmp_path / 'c'}", "threshold=0.33"]))
    assert s3["threshold"] == pytest.approx(0.33)


@pytest.mark.slow
def test_infer_py_runs_as_a_hydra_script(setup, tmp_path):
    root, frame, model, _ = setup
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "infer.py"),
            f"inputs=[{frame}]",
            f"model_path={model}",
            "detect.device=cpu",
            "detect.tile=256",
            "progress=false",
            f"out={tmp_path / 'c'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["n_ok"] == 1
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
