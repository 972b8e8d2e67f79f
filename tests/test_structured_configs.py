"""One source of defaults for detection settings (the dataclasses), the ``module`` config
group, the binary classifier on the training callbacks/logger groups, and the benchmark
presets kept apart from the Hydra configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from atd_dl.cli import build_parser
from atd_dl.commands.detect import DETECT_OPTIONS, detect_config
from atd_dl.config_paths import EVAL_CONFIG_DIR, PACKAGED_CONFIG_DIR, eval_config
from atd_dl.config_store import register_configs
from atd_dl.detect.config import PostprocessConfig
from atd_dl.detect.pipeline import DetectConfig
from atd_dl.errors import InputError


def _compose(primary: str, overrides: list[str]):
    with initialize_config_dir(str(PACKAGED_CONFIG_DIR), version_base="1.3"):
        return compose(primary, overrides=overrides)


def _detect_actions() -> dict[str, object]:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["detect"]  # type: ignore[union-attr]
    return {a.dest: a for a in sub._actions}


# ------------------------------------------------------------------ detection defaults


def test_detect_cli_defaults_are_the_dataclass_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(DetectConfig)}
    actions = _detect_actions()
    for name in DETECT_OPTIONS:
        assert name in fields, f"--{name} sets no DetectConfig field"
        # no default of its own: an option not given keeps the dataclass default
        assert actions[name].default is None, f"--{name} has its own default"
        default = fields[name].default
        if default is not None and not isinstance(default, bool):
            assert f"(default {default:g})" in actions[name].help, f"--{name} help"
    args = build_parser().parse_args(["detect", "f.fits"])
    assert detect_config(args) == DetectConfig()
    args = build_parser().parse_args(
        ["detect", "f.fits", "--overlap", "32", "--edge", "5", "--compile", "--hdu", "SCI"]
    )
    assert detect_config(args) == DetectConfig(overlap=32, edge=5.0, compile=True, hdu="SCI")


def test_infer_yaml_composes_to_the_dataclass_defaults() -> None:
    register_configs()
    cfg = _compose("infer.yaml", [])
    assert set(cfg.detect) == {f.name for f in dataclasses.fields(DetectConfig)} - {"postprocess"}
    assert set(cfg.postprocess) == {f.name for f in dataclasses.fields(PostprocessConfig)}
    detect = dict(cfg.detect)
    config = DetectConfig(postprocess=PostprocessConfig(**dict(cfg.postprocess)), **detect)
    assert config == DetectConfig()


def test_infer_overrides_are_checked_against_the_dataclasses() -> None:
    register_configs()
    cfg = _compose(
        "infer.yaml", ["postprocess.low_snr=5", "detect.hdu=SCI", "detect.threshold=0.4"]
    )
    assert cfg.postprocess.low_snr == 5.0 and cfg.detect.hdu == "SCI"
    assert cfg.detect.threshold == 0.4
    for bad in ("postprocess.low_snr=abc", "detect.tiel=512", "detect.tile=big"):
        with pytest.raises(ConfigCompositionException):
            _compose("infer.yaml", [bad])


# ------------------------------------------------------------------ module group


def test_module_group_selects_the_lightning_module() -> None:
    options = sorted(p.stem for p in (PACKAGED_CONFIG_DIR / "module").glob("*.yaml"))
    assert options == ["binary", "segmentation"]
    train = _compose("train", ["paths.output_dir=/tmp/unused"])
    assert train.module._target_ == "atd_dl.lit.module.SegmentationModule"
    binary = _compose("train", ["paths.output_dir=/tmp/unused", "experiment=binary_classifier"])
    assert binary.module._target_ == "atd_dl.lit.binary.BinaryClassifierModule"
    assert binary.module.optimizer._target_ == "torch.optim.AdamW"
    for text in ("train.yaml", "binary_train.yaml", "experiment/binary_classifier.yaml"):
        assert "optimizer:" not in (PACKAGED_CONFIG_DIR / text).read_text(), text


def test_binary_training_uses_the_callbacks_and_logger_groups(tmp_path: Path) -> None:
    from atd_dl.lit.train_task import instantiate_callbacks, instantiate_loggers

    text = (PACKAGED_CONFIG_DIR / "binary_train.yaml").read_text()
    assert "lightning.pytorch" not in text  # no copies of callbacks, loggers or trainer
    cfg = _compose("binary_train", [f"paths.output_dir={tmp_path}"])
    assert cfg.module._target_.endswith("BinaryClassifierModule")
    callbacks = {type(c).__name__: c for c in instantiate_callbacks(cfg.callbacks)}
    ckpt = callbacks["ModelCheckpoint"]
    assert ckpt.monitor == "val/f1" and ckpt.mode == "max" and ckpt.save_last
    assert Path(ckpt.dirpath) == tmp_path / "checkpoints"
    assert {"EarlyStopping", "LossCurvePlot"} <= set(callbacks)
    assert [type(lg).__name__ for lg in instantiate_loggers(cfg.logger)] == ["CSVLogger"]
    assert cfg.trainer.max_epochs == 40 and cfg.trainer.precision == "32-true"
    none = _compose("binary_train", [f"paths.output_dir={tmp_path}", "callbacks=none"])
    assert instantiate_callbacks(none.callbacks) == []


# ------------------------------------------------------------------ benchmark presets


def test_benchmark_presets_live_outside_the_hydra_configs(tmp_path: Path) -> None:
    from atd_dl.commands.benchmark import resolve_options

    assert not (PACKAGED_CONFIG_DIR / "eval").exists()
    presets = sorted(p.stem for p in EVAL_CONFIG_DIR.glob("*.yaml"))
    assert {"quick", "paper_comparison", "compare_dl", "ablation_fem"} <= set(presets)
    for name in presets:
        assert eval_config(name) == EVAL_CONFIG_DIR / f"{name}.yaml"
        argv = ["benchmark", "--config", name, "--test-set", str(tmp_path)]
        args = build_parser().parse_args([*argv, "--out", str(tmp_path / name)])
        assert resolve_options(args)["out"] == tmp_path / name
    own = tmp_path / "mine.yaml"
    own.write_text("limit: 1\n")
    assert eval_config(own) == own
    with pytest.raises(InputError, match="shipped presets: .*quick"):
        eval_config("nope")
    with pytest.raises(InputError, match="not found"):
        eval_config(tmp_path / "missing.yaml")


@pytest.mark.slow
def test_train_binary_end_to_end_with_the_groups(tmp_path: Path) -> None:
    """A two-epoch run: checkpoints, CSV log and loss curve come from the shared groups."""
    import json

    from atd_dl.cli import main

    out = tmp_path / "run"
    overrides = ["model.width=4", "data.synth.n_sources=24", "data.batch_size=16"]
    overrides += ["trainer.max_epochs=2", "trainer.accelerator=cpu"]
    assert main(["train-binary", "--out", str(out), *overrides]) == 0
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "loss_curve.png").is_file()
    assert any((out / "csv").rglob("metrics.csv"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["best_val_f1"] is not None
