"""Data module, detection metrics and end-to-end Lightning training on a tiny dataset (CPU)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from _train_helpers import REPO, compose_train, make_tiny_dataset

from atd_dl.cli import main as cli_main
from atd_dl.errors import InputError
from atd_dl.lit.datamodule import (
    StarFieldDataModule,
    StarFieldDataset,
    _grid_symmetry,
    collate_samples,
    transform_points,
)
from atd_dl.lit.detection_metrics import (
    DetectionCounter,
    ThresholdScan,
    centroids_from_prob,
    threshold_grid,
)
from atd_dl.lit.train_task import train
from atd_dl.losses import CEDiceLoss
from atd_dl.models import build_model, predict_proba
from atd_dl.models.model_folder import export_model_folder, load_checkpoint, load_model_folder
from atd_dl.prep.network_input import RMS_CLIP


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("ds"), size=48)


# ------------------------------------------------------------------ augmentation
@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_points_follow_grid_symmetries(k, flip):
    h, w = 7, 11  # non-square: rotations swap the axes
    xy = np.array([[2.0, 1.0], [10.0, 6.0], [0.0, 3.0]], dtype=np.float32)
    img = np.zeros((1, h, w))
    for i, (x, y) in enumerate(xy, start=1):
        img[0, int(y), int(x)] = i
    moved = _grid_symmetry(img, k, flip)
    new = transform_points(xy, (h, w), k, flip)
    for i, (x, y) in enumerate(new, start=1):
        assert moved[0, int(round(y)), int(round(x))] == i


def test_dataset_samples_and_augmentation_keep_labels_aligned(dataset):
    ds = StarFieldDataset(dataset, ["frame00_s1"], augment=True)
    plain = StarFieldDataset(dataset, ["frame00_s1"])[0]
    assert plain["image"].shape == (1, 48, 48) and plain["image"].dtype == torch.float32
    assert 0.0 <= float(plain["image"].min()) and float(plain["image"].max()) <= 1.0
    assert set(np.unique(plain["mask"].numpy())) <= {0.0, 1.0}
    torch.manual_seed(0)
    for _ in range(6):
        s = ds[0]
        # every kept point sits on a labelled pixel, whatever symmetry was drawn
        for x, y in s["points"].numpy():
            assert s["mask"][0, int(round(y)), int(round(x))] == 1
        # augmented images are a permutation of the original pixels
        assert torch.allclose(
            s["image"].flatten().sort().values, plain["image"].flatten().sort().values
        )


def test_random_crop_moves_and_filters_points(dataset):
    torch.manual_seed(3)
    ds = StarFieldDataset(dataset, ["frame00_s1"], crop_size=24)
    for _ in range(5):
        s = ds[0]
        assert s["image"].shape == (1, 24, 24) and s["mask"].shape == (1, 24, 24)
        pts = s["points"].numpy()
        assert np.all((pts > -0.5) & (pts < 23.5))
        for x, y in pts:
            assert s["mask"][0, int(round(y)), int(round(x))] == 1


def test_noise_aware_input_has_three_planes(dataset):
    s = StarFieldDataset(dataset, ["frame00_s2"], input_mode="noise_aware")[0]
    assert s["image"].shape == (3, 48, 48)
    assert 0.7 < float(s["image"][1].mean()) < 1.3 and float(s["image"][1].max()) <= RMS_CLIP
    assert float(s["image"][2].sum()) == 3.0  # the bad pixels written by the fixture


def test_datamodule_batches(dataset):
    dm = StarFieldDataModule(str(dataset), batch_size=3, num_workers=0, crop_size=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 1, 32, 32) and batch["mask"].shape == (3, 1, 32, 32)
    assert len(batch["points"]) == 3 and len(batch["stem"]) == 3
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[-2:] == (48, 48)  # validation is never cropped
    assert dm.stems("val") == ["frame00_s5", "frame00_s6"]


def test_dataset_errors(tmp_path, dataset):
    with pytest.raises(InputError, match="dataset folder not found"):
        StarFieldDataModule(str(tmp_path / "none")).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="manifest.csv not found"):
        StarFieldDataModule(str(tmp_path / "empty")).setup("fit")
    ds = make_tiny_dataset(
        tmp_path / "noval", n_train=2, n_val=0, n_test=0, size=16, n_stars=1, aux=False
    )
    with pytest.raises(InputError, match="no rows with split 'val'"):
        StarFieldDataModule(str(ds)).setup("fit")
    with pytest.raises(
        InputError, match=r"aux/frame00_s1.npz: missing \(needed for noise_aware input\)"
    ):
        StarFieldDataModule(str(ds), input_mode="noise_aware").setup("fit")
    (ds / "images" / "frame00_s2.png").unlink()
    with pytest.raises(
        InputError, match=r"images/frame00_s2.png: missing \(listed in manifest.csv"
    ):
        StarFieldDataset(ds, ["frame00_s1", "frame00_s2"])


# ------------------------------------------------------------------ detection metrics
def test_centroids_from_probability_map():
    yy, xx = np.mgrid[:40, :40]
    prob = np.exp(-((xx - 12.3) ** 2 + (yy - 20.6) ** 2) / 4.0)
    prob += np.exp(-((xx - 1.0) ** 2 + (yy - 30.0) ** 2) / 4.0)  # too close to the edge
    xy = centroids_from_prob(prob, 0.3, edge=3)
    assert xy.shape == (1, 2)
    np.testing.assert_allclose(xy[0], [12.3, 20.6], atol=0.1)
    assert len(centroids_from_prob(prob, 0.3, edge=0)) == 2
    assert len(centroids_from_prob(prob, 1.01)) == 0


def test_threshold_scan_picks_best_f1():
    yy, xx = np.mgrid[:32, :32]
    refs = np.array([[8.0, 8.0], [20.0, 20.0]])
    prob = 0.9 * np.exp(-((xx - 8) ** 2 + (yy - 8) ** 2) / 2.0)
    prob += 0.5 * np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 2.0)
    prob += 0.3 * np.exp(-((xx - 25) ** 2 + (yy - 8) ** 2) / 2.0)  # a false source
    scan = ThresholdScan(threshold_grid(0.2, 0.8, 0.2))
    scan.update([prob], [refs])
    rows = {r["threshold"]: r for r in scan.table()}
    assert (rows[0.2]["tp"], rows[0.2]["fp"], rows[0.2]["fn"]) == (2, 1, 0)
    assert (rows[0.4]["tp"], rows[0.4]["fp"], rows[0.4]["fn"]) == (2, 0, 0)
    assert (rows[0.6]["tp"], rows[0.6]["fn"]) == (1, 1)
    assert scan.best()["threshold"] == 0.4 and scan.best()["f1"] == 1.0
    counter = DetectionCounter(0.4)
    counter.update(prob, refs)
    assert counter.scores["f1"] == 1.0


# ------------------------------------------------------------------ optimisation
@pytest.mark.slow
def test_overfits_a_two_image_batch(dataset):
    torch.manual_seed(0)
    ds = StarFieldDataset(dataset, ["frame00_s1", "frame00_s2"])
    batch = collate_samples([ds[0], ds[1]])
    net = build_model("atd_unet", base_width=8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = CEDiceLoss()
    first = None
    for _ in range(50):
        opt.zero_grad()
        loss = loss_fn(net(batch["image"]), batch["mask"])
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert first > 1.0 and float(loss.detach()) < 0.15
    prob = predict_proba(net, batch["image"])  # still train mode: batch statistics, as fitted
    dice = 2 * (prob.round() * batch["mask"]).sum() / (prob.round().sum() + batch["mask"].sum())
    assert float(dice) > 0.9


# ------------------------------------------------------------------ end to end
def test_fast_dev_run_end_to_end_noise_aware(dataset, tmp_path):
    overrides = [
        "experiment=quick",
        "debug=fdr",
        f"data.data_dir={dataset}",
        "data.crop_size=32",
        "data.input_mode=noise_aware",
        "model.in_channels=3",
        "model.base_width=4",
        "test=true",
    ]
    metrics, objects = train(compose_train(overrides, tmp_path))
    folder = tmp_path / "model"
    model, meta = load_model_folder(folder)
    assert meta["input"] == "zscale8+rms+bad" and 0 < meta["threshold"] < 1
    assert meta["fingerprint"]["psf_fwhm_px"] == 2.8
    saved = json.loads((folder / "metrics.json").read_text())
    assert len(saved["threshold_scan"]) == 19 and "test" in saved
    assert {"val/f1", "val/dice", "val/iou", "test/f1", "val/threshold"} <= set(metrics)
    assert "ATD-DL model `atd_unet`" in (folder / "MODEL_CARD.md").read_text()
    assert predict_proba(model, torch.zeros(1, 3, 48, 48)).shape == (1, 1, 48, 48)


def test_channel_mismatch_is_reported(dataset, tmp_path):
    cfg = compose_train(
        ["experiment=quick", f"data.data_dir={dataset}", "data.input_mode=noise_aware"], tmp_path
    )
    with pytest.raises(InputError, match="model.in_channels=1 but data.input_mode='noise_aware'"):
        train(cfg)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_train_checkpoint_resume_and_export(dataset, tmp_path):
    base = [
        "experiment=quick",
        f"data.data_dir={dataset}",
        "data.crop_size=32",
        "model.base_width=4",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "callbacks.model_summary=null",
        "logger=csv",
    ]
    run1 = tmp_path / "run1"
    train(compose_train(base, run1))
    last = run1 / "checkpoints" / "last.ckpt"
    assert last.is_file() and (run1 / "checkpoints" / "epoch_000.ckpt").is_file()
    ckpt = load_checkpoint(last)  # weights_only=True: our own checkpoints carry plain data only
    assert ckpt["epoch"] == 0 and ckpt["hyper_parameters"]["model_spec"]["name"] == "atd_unet"
    assert (run1 / "loss_curve.png").stat().st_size > 1000

    run2 = tmp_path / "run2"
    metrics, objects = train(
        compose_train([*base, "trainer.max_epochs=2", f"ckpt_path={last}"], run2)
    )
    assert objects["trainer"].current_epoch == 2
    curve = next(c for c in objects["callbacks"] if type(c).__name__ == "LossCurvePlot")
    assert curve.history["epoch"] == [1, 2]
    with open(run2 / "csv" / "version_0" / "metrics.csv") as fh:
        epochs = {row["epoch"] for row in csv.DictReader(fh) if row.get("val/f1")}
    assert epochs == {"1"}  # only the resumed epoch ran in the second job
    assert 0.0 <= metrics["val/f1"] <= 1.0 and "lr-Adam" in metrics

    out = export_model_folder(run2 / "checkpoints" / "last.ckpt", tmp_path / "exported", 0.42)
    model, meta = load_model_folder(out)
    assert meta["kwargs"]["base_width"] == 4 and meta["threshold"] == pytest.approx(0.42)


def test_cli_prints_composed_config(capsys):
    assert cli_main(["train", "--cfg", "job", "experiment=quick", "data.data_dir=/x/dataset"]) == 0
    out = capsys.readouterr().out
    assert "name: atd_unet" in out and "data_dir: /x/dataset" in out and "task_name: quick" in out


@pytest.mark.slow
def test_multirun_ablation_sweep(dataset, tmp_path):
    """`python train.py -m experiment=ablation_fem seed=...` runs one job per model × seed."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "experiment=ablation_fem",
        "seed=1,2",
        "export.thresholds={start: 0.3, stop: 0.7, step: 0.2}",
        "debug=fdr",
        f"data.data_dir={dataset}",
        "model.base_width=4",
        "trainer.detect_anomaly=false",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    names = sorted(json.loads(p.read_text())["name"] for p in sweep.glob("*/model/config.json"))
    assert names == ["atd_unet", "atd_unet", "unet", "unet"]
