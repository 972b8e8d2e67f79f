"""Visual-binary stamp classifier: stamps, simulation, splits, model, report, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from atd_dl.binaries.classify import classify_detections, predict_binary_proba
from atd_dl.binaries.model import (
    BinaryResNet,
    default_binary_model_dir,
    load_binary_model,
    save_binary_model,
)
from atd_dl.binaries.report import classification_report, format_report, write_classification_report
from atd_dl.binaries.splits import group_split
from atd_dl.binaries.stamps import (
    StampGeometry,
    binary_labels,
    cut_stamps,
    normalize_stamps,
    read_stamp_csv,
    read_stamp_set,
    read_stamps,
    write_stamp_set,
)
from atd_dl.binaries.synth import (
    PROFILE_PRESETS,
    SynthConfig,
    _add_star,
    simulate_binary_stamps,
)
from atd_dl.cli import main
from atd_dl.errors import InputError

REPO = Path(__file__).resolve().parents[1]
TINY = {"width": 4, "extra_convs": 1, "dropout": 0.0}


def _gauss_frame(shape, stars, fwhm=2.5, sky=10.0):
    img = np.full(shape, sky, dtype=np.float32)
    for x, y, f in stars:
        _add_star(img, x, y, f, fwhm, 0.0, 0.0, 3.0)
    return img


def _tiny_model_folder(tmp_path: Path, geo: StampGeometry) -> Path:
    torch.manual_seed(0)
    net = BinaryResNet(geo.channels, stamp_size=geo.size, **TINY)
    cfg = {"kwargs": {"in_channels": geo.channels, "stamp_size": geo.size, **TINY}}
    cfg["input"] = geo.to_dict()
    return save_binary_model(tmp_path / "model", net, cfg, metrics={"note": "untrained"})


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_resnet_adapter_output_shapes(channels: int) -> None:
    net = BinaryResNet(channels, width=8, stamp_size=32).eval()
    assert net.conv1.in_channels == channels
    with torch.no_grad():
        out = net(torch.randn(2, channels, 32, 32))
    assert out.shape == (2, 2)


def test_full_width_is_torchvision_resnet34_with_small_stem() -> None:
    from torchvision.models import resnet34

    net = BinaryResNet(3, width=64, stamp_size=32, extra_convs=2)
    ref = resnet34(weights=None)
    ours = {k: v.shape for k, v in net.state_dict().items() if k.startswith("layer")}
    theirs = {k: v.shape for k, v in ref.state_dict().items() if k.startswith("layer")}
    assert ours == theirs
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert len([m for m in net.extra if isinstance(m, torch.nn.Conv2d)]) == 2


def test_large_stamps_get_imagenet_stem() -> None:
    net = BinaryResNet(1, width=4, stamp_size=96).eval()
    assert net.conv1.stride == (2, 2) and isinstance(net.maxpool, torch.nn.MaxPool2d)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 96, 96)).shape == (1, 2)


def test_model_folder_round_trip_fp16(tmp_path: Path) -> None:
    geo = StampGeometry(size=16, channels=2)
    folder = _tiny_model_folder(tmp_path, geo)
    net, meta = load_binary_model(folder)
    assert meta["input"]["channels"] == 2 and meta["threshold"] == 0.5
    assert json.loads((folder / "thresholds.json").read_text())["prob_threshold"] == 0.5
    x = np.random.default_rng(0).normal(size=(3, 2, 16, 16)).astype(np.float32)
    p = predict_binary_proba(net, x)
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()


def test_load_model_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a binary-classifier model folder"):
        load_binary_model(tmp_path)
    folder = _tiny_model_folder(tmp_path, StampGeometry(size=16))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["kwargs"]["width"] = 8
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="weights do not fit config.json"):
        load_binary_model(folder)


def test_shipped_default_model_loads() -> None:
    if not (default_binary_model_dir() / "model.safetensors").is_file():
        pytest.skip("no shipped binary classifier")
    net, meta = load_binary_model()
    size = (default_binary_model_dir() / "model.safetensors").stat().st_size
    assert size < 4_000_000
    assert meta["input"]["radius_arcsec"] == 2.5
    assert 0.2 <= meta["threshold"] <= 0.8


# ---------------------------------------------------------------------------- stamps


def test_cut_stamps_centres_source_subpixel_and_zoom() -> None:
    img = _gauss_frame((80, 90), [(40.3, 35.7, 5000.0)], sky=0.0)
    for zoom in (1.0, 2.0, 0.5):
        st, edge = cut_stamps(img, [40.3], [35.7], 16, zoom=zoom)
        s = st[0, 0]
        yy, xx = np.mgrid[:16, :16]
        cx, cy = (s * xx).sum() / s.sum(), (s * yy).sum() / s.sum()
        assert abs(cx - 7.5) < 0.1 and abs(cy - 7.5) < 0.1, zoom
        assert not edge[0]
    # zoom 2 doubles the apparent size: second moment grows ~4x
    s1 = cut_stamps(img, [40.3], [35.7], 24, zoom=1.0)[0][0, 0]
    s2 = cut_stamps(img, [40.3], [35.7], 24, zoom=2.0)[0][0, 0]
    yy, xx = np.mgrid[:24, :24]

    def m2(s):
        return (s * ((xx - 11.5) ** 2 + (yy - 11.5) ** 2)).sum() / s.sum()

    assert 3.0 < m2(s2) / m2(s1) < 5.0


def test_cut_stamps_multiband_and_edges() -> None:
    cube = np.stack([np.full((30, 30), 1.0), np.full((30, 30), 2.0), np.full((30, 30), 3.0)])
    cube[1, 10, 10] = np.nan
    st, edge = cut_stamps(cube, [2.0, 15.0, 10.0], [2.0, 15.0, 10.0], 8)
    assert st.shape == (3, 3, 8, 8)
    assert edge.tolist() == [True, False, True]
    # off-frame / NaN pixels are filled with the stamp's valid median
    np.testing.assert_allclose(st[0, :, 0, 0], [1.0, 2.0, 3.0])
    assert np.isfinite(st).all()


def test_binary_labels_use_pixel_scale() -> None:
    x = np.array([10.0, 18.0, 50.0, 90.0])
    y = np.array([10.0, 10.0, 50.0, 90.0])
    # 8 px apart: binary at 0.25"/px (2.0"), single at 0.4"/px (3.2")
    assert binary_labels(x, y, pixel_scale=0.25).tolist() == [1, 1, 0, 0]
    assert binary_labels(x, y, pixel_scale=0.4).tolist() == [0, 0, 0, 0]


def test_normalize_peak_asinh_sets_target_to_one() -> None:
    img = _gauss_frame((40, 40), [(19.5, 19.5, 3000.0)], sky=100.0)
    st, _ = cut_stamps(img, [19.5], [19.5], 16)
    n = normalize_stamps(st)
    assert abs(n[0, 0].max() - 1.0) < 0.02
    assert abs(np.median(n)) < 0.05


# ------------------------------------------------------------------------ simulation


def test_simulated_stamps_labels_groups_and_truth() -> None:
    cfg = SynthConfig(n_sources=40, views_per_source=3, seed=3)
    st = simulate_binary_stamps(cfg)
    assert st.images.shape == (120, 1, 32, 32) and np.isfinite(st.images).all()
    # every view of a system shares group and label
    for g in np.unique(st.groups):
        assert len(set(st.labels[st.groups == g])) == 1
    sep = st.table["sep_arcsec"]
    assert np.all(sep[st.labels == 1] < 2.5) and np.all(np.isnan(sep[st.labels == 0]))
    nb = st.table["nearest_neighbour_arcsec"]
    assert np.all(nb[np.isfinite(nb)] >= 2.5 * 1.15)
    again = simulate_binary_stamps(cfg)
    np.testing.assert_array_equal(st.images, again.images)


def test_stamp_set_round_trip(tmp_path: Path) -> None:
    geo = StampGeometry(size=16, channels=2)
    st = simulate_binary_stamps(SynthConfig(n_sources=10, geometry=geo, seed=1))
    write_stamp_set(tmp_path / "set", st, shard_size=7)
    back = read_stamp_set(tmp_path / "set")
    assert len(list((tmp_path / "set").glob("shard_*.npz"))) == 3
    np.testing.assert_allclose(back.images, st.images, atol=2e-3)
    np.testing.assert_array_equal(back.labels, st.labels)
    np.testing.assert_array_equal(back.groups, st.groups)
    assert back.geometry == geo
    assert back.table["survey"].tolist() == st.table["survey"].tolist()


# ---------------------------------------------------------------------------- splits


def test_group_split_proportions_stratified_no_leakage() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(1000), 3)
    labels = np.repeat((rng.random(1000) < 0.3).astype(int), 3)
    split = group_split(labels, groups, seed=5)
    for name, frac in (("train", 0.70), ("test", 0.15), ("val", 0.15)):
        sel = split == name
        assert abs(sel.mean() - frac) < 0.01, name
        assert abs(labels[sel].mean() - labels.mean()) < 0.02, name
    for a, b in (("train", "test"), ("train", "val"), ("test", "val")):
        assert not set(groups[split == a]) & set(groups[split == b])
    np.testing.assert_array_equal(split, group_split(labels, groups, seed=5))
    assert (split != group_split(labels, groups, seed=6)).any()


def test_group_split_small_classes_fill_every_subset() -> None:
    split = group_split(np.array([0, 0, 0, 1, 1, 1]), np.arange(6))
    for lab in (slice(0, 3), slice(3, 6)):
        assert sorted(split[lab].tolist()) == ["test", "train", "val"]


# ---------------------------------------------------------------------------- report


def test_classification_report_matches_hand_counts(tmp_path: Path) -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 0])
    rep = classification_report(y, p)
    assert rep["single"]["precision"] == pytest.approx(3 / 5)
    assert rep["single"]["recall"] == pytest.approx(3 / 4)
    assert rep["binary"]["precision"] == pytest.approx(4 / 5)
    assert rep["binary"]["recall"] == pytest.approx(4 / 6)
    assert rep["accuracy"] == pytest.approx(0.7)
    f1s = [2 * 0.6 * 0.75 / 1.35, 2 * 0.8 * (4 / 6) / (0.8 + 4 / 6)]
    assert rep["macro avg"]["f1"] == pytest.approx(np.mean(f1s))
    assert rep["weighted avg"]["f1"] == pytest.approx(0.4 * f1s[0] + 0.6 * f1s[1])
    assert rep["confusion_matrix"] == [[3, 1], [2, 4]]
    assert "| accuracy | | | 0.700 | 10 |" in format_report(rep)
    write_classification_report(tmp_path, y, p.astype(float), threshold=0.5)
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert json.loads((tmp_path / "report.json").read_text())["n"] == 10


# -------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_classifier_learns_separable_case() -> None:
    import lightning as L

    from atd_dl.lit.binary import BinaryClassifierModule
    from atd_dl.lit.binary_data import StampDataset

    torch.manual_seed(0)
    geo = StampGeometry(size=16, stamp_arcsec=8.0)
    cfg = SynthConfig(
        n_sources=400,
        views_per_source=1,
        profiles=(PROFILE_PRESETS["ps1_like"],),
        geometry=geo,
        sep_arcsec=(1.6, 2.4),
        flux_ratio=(0.7, 1.0),
        snr=(300.0, 600.0),
        neighbour_prob=0.0,
        seed=0,
    )
    st = simulate_binary_stamps(cfg)
    split = group_split(st.labels, st.groups, (0.75, 0.25, 0.0), seed=0)
    tr, te = split == "train", split == "test"
    loaders = [
        torch.utils.data.DataLoader(
            StampDataset(st.images[m], st.labels[m], augment=aug), batch_size=32, shuffle=aug
        )
        for m, aug in ((tr, True), (te, False))
    ]
    net = BinaryResNet(1, stamp_size=16, width=4, extra_convs=0, dropout=0.0)
    module = BinaryClassifierModule(net, optimizer=lambda params: torch.optim.Adam(params, lr=3e-3))
    trainer = L.Trainer(
        max_epochs=10,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loaders[0])
    p = predict_binary_proba(net, st.images[te])
    acc = ((p >= 0.5) == st.labels[te]).mean()
    assert acc >= 0.9


# ----------------------------------------------------------------------- integration


def test_classify_detections_adds_columns(tmp_path: Path) -> None:
    folder = _tiny_model_folder(tmp_path, StampGeometry(size=16, stamp_arcsec=8.0))
    net, meta = load_binary_model(folder)
    stars = [(30.0, 30.0, 4000.0), (80.0, 40.0, 4000.0), (84.0, 40.0, 3000.0), (2.0, 60.0, 1e3)]
    img = _gauss_frame((100, 120), stars)
    cat = Table({"id": [1, 2, 3, 4], "x": [s[0] for s in stars], "y": [s[1] for s in stars]})
    out = classify_detections(img, cat, net, meta, stamp_size=16, pixel_scale=0.5)
    assert out.colnames[-2:] == ["p_binary", "binary"]
    assert len(out) == 4 and out["binary"].dtype == bool
    assert np.all((out["p_binary"] >= 0) & (out["p_binary"] <= 1))
    assert "p_binary" not in cat.colnames
    with pytest.raises(ValueError, match="does not match"):
        classify_detections(img, cat, net, meta, stamp_size=32, pixel_scale=0.5)
    with pytest.raises(InputError, match="needs x and y"):
        classify_detections(img, Table({"id": [1]}), net, meta, pixel_scale=0.5)


def test_shipped_model_separates_pair_from_single() -> None:
    if not (default_binary_model_dir() / "model.safetensors").is_file():
        pytest.skip("no shipped binary classifier")
    net, meta = load_binary_model()
    rng = np.random.default_rng(1)
    # 0.25"/px, FWHM 1", isolated star vs a 1.5" equal pair
    stars = [(40.0, 40.0, 2e4), (120.0, 40.0, 2e4), (126.0, 40.0, 1.5e4)]
    img = _gauss_frame((80, 170), stars, fwhm=4.0, sky=200.0)
    img = rng.poisson(img).astype(np.float32)
    cat = Table({"x": [40.0, 120.0], "y": [40.0, 40.0]})
    out = classify_detections(img, cat, net, meta, pixel_scale=0.25)
    assert out["p_binary"][0] < 0.5 < out["p_binary"][1]


# -------------------------------------------------------------------- user stamp CSVs


def _user_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / "user"
    d.mkdir()
    a = rng.normal(size=(20, 20)).astype(np.float32)
    np.save(d / "a.npy", a)
    fits.PrimaryHDU(rng.normal(size=(1, 24, 24)).astype(np.float32)).writeto(d / "b.fits")
    import cv2

    cv2.imwrite(str(d / "c.png"), (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    rows = [("a.npy", "binary"), ("b.fits", "0"), ("c.png", "1"), ("missing.npy", "0")]
    with open(d / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label"])
        w.writerows(rows)
    return d


def test_read_user_stamp_csv(tmp_path: Path) -> None:
    d = _user_folder(tmp_path)
    geo = StampGeometry(size=16)
    st, failures = read_stamp_csv(d / "labels.csv", geo)
    assert st.images.shape == (3, 1, 16, 16)
    assert st.labels.tolist() == [1, 0, 1]
    assert st.table["file"].tolist() == ["a.npy", "b.fits", "c.png"]
    assert len(failures) == 1 and "missing.npy: stamp file not found" in failures[0]
    st2, _ = read_stamps(d, geo)  # folder with labels.csv
    np.testing.assert_array_equal(st2.labels, st.labels)


def test_read_user_stamp_csv_errors(tmp_path: Path) -> None:
    geo = StampGeometry(size=16)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,label\nx.npy,1\n")
    with pytest.raises(InputError, match="needs a 'file' column"):
        read_stamp_csv(bad, geo)
    np.save(tmp_path / "x.npy", np.zeros((8, 8)))
    bad.write_text("file,label\nx.npy,maybe\n")
    st, failures = read_stamp_csv(bad, geo)
    assert len(st) == 0 and "line 2: label 'maybe' is not 0/1/single/binary" in failures[0]
    np.save(tmp_path / "y.npy", np.zeros((4, 8, 8)))
    bad.write_text("file,label\ny.npy,1\n")
    _, failures = read_stamp_csv(bad, geo)
    assert "stamp has 4 channels, the model expects 1" in failures[0]


def test_cli_classify_binaries_with_report(tmp_path: Path, capsys) -> None:
    d = _user_folder(tmp_path)
    model = _tiny_model_folder(tmp_path, StampGeometry(size=16))
    out = tmp_path / "res.csv"
    rc = main(
        [
            "classify-binaries",
            str(d),
            "--model",
            str(model),
            "--out",
            str(out),
            "--report",
            str(tmp_path / "rep"),
        ]
    )
    assert rc == 1  # missing.npy failed, others written
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["stamp"] for r in rows] == ["a.npy", "b.fits", "c.png"]
    assert all(0.0 <= float(r["p_binary"]) <= 1.0 for r in rows)
    assert (tmp_path / "rep" / "confusion.png").is_file()
    assert "missing.npy" in capsys.readouterr().err


def test_cli_binary_stamps_writes_set(tmp_path: Path) -> None:
    rc = main(
        ["binary-stamps", str(tmp_path / "s"), "--n-sources", "12", "--size", "16", "--bands", "2"]
    )
    assert rc == 0
    st = read_stamp_set(tmp_path / "s")
    assert st.images.shape == (24, 2, 16, 16)
    assert set(st.table["split"].tolist()) <= {"train", "test", "val"}
    assert (tmp_path / "s" / "preview.png").is_file()
    assert main(["binary-stamps", str(tmp_path / "t"), "--profiles", "nope"]) == 2


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "primary,experiment",
    [
        ("binary_train", None),
        ("binary_train", "binary_classifier"),
        ("binary_train", "binary_shipped"),
        ("train", "binary_classifier"),
    ],
)
def test_hydra_configs_build_data_and_module(primary: str, experiment: str | None) -> None:
    from hydra import compose, initialize_config_dir

    from atd_dl.lit.binary import BinaryClassifierModule, build_binary_training
    from atd_dl.lit.binary_data import BinaryStampDataModule

    cfg_dir = REPO / "atd_dl" / "configs"
    if not (cfg_dir / f"{primary}.yaml").is_file():
        pytest.skip(f"configs/{primary}.yaml not present")
    overrides = ["paths.output_dir=/tmp/unused", "model.width=4"]
    if experiment:
        overrides.append(f"experiment={experiment}")
    with initialize_config_dir(config_dir=str(cfg_dir), version_base=None):
        cfg = compose(primary, overrides=overrides)
    assert cfg.task_kind == "binary_classifier"
    assert list(cfg.data.fractions) == [0.7, 0.15, 0.15]
    assert cfg.trainer.max_epochs == (16 if experiment == "binary_shipped" else 40)
    dm, module = build_binary_training(cfg)
    assert isinstance(dm, BinaryStampDataModule) and isinstance(module, BinaryClassifierModule)
    assert module.net.conv1.in_channels == 1 and module.net.fc.out_features == 2
    opt = module.configure_optimizers()
    assert isinstance(opt["optimizer"], torch.optim.AdamW)
    assert isinstance(opt["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
