"""Every training config group and experiment composes and instantiates (Hydra compose API)."""

from __future__ import annotations

import hydra
import lightning as L
import pytest
import torch
from _train_helpers import CONFIG_DIR, compose_train

from atd_dl.lit.datamodule import StarFieldDataModule
from atd_dl.lit.module import SegmentationModule
from atd_dl.lit.train_task import instantiate_callbacks, instantiate_loggers, resolve_precision
from atd_dl.losses import SegmentationLoss


def _options(group: str) -> list[str]:
    """Config names of ``group`` that belong to the segmentation training (not the binary task)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if "binary" not in p.stem)


def _instantiate_parts(cfg, *, trainer: bool = True):
    # as train() does: a base model (model.init, experiment=finetune) brings its network
    # and input mode
    from omegaconf import OmegaConf

    from atd_dl.lit.finetune import build_network, load_base, resolve_input_mode

    init = OmegaConf.select(cfg, "model.init", default=None)
    base = load_base(str(init)) if init else None
    with torch.device("meta"):  # full-width networks without allocating or initialising weights
        net = build_network(cfg.model, base)
    loss = hydra.utils.instantiate(cfg.loss)
    module = hydra.utils.instantiate(cfg.module, net=net, loss=loss)
    mode = cfg.data.get("input_mode")
    kw = (
        {"input_mode": resolve_input_mode(base, mode)} if base is not None or mode == "auto" else {}
    )
    dm = hydra.utils.instantiate(cfg.data, **kw)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    out = {
        "net": net,
        "loss": loss,
        "module": module,
        "dm": dm,
        "callbacks": callbacks,
        "loggers": loggers,
    }
    if trainer:
        out["trainer"] = hydra.utils.instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            precision=resolve_precision(cfg.trainer),
        )
    return out


def test_default_config_instantiates(tmp_path):
    cfg = compose_train([], tmp_path)
    parts = _instantiate_parts(cfg)
    assert parts["net"].model_spec["name"] == "atd_unet"
    assert isinstance(parts["loss"], SegmentationLoss)
    assert isinstance(parts["module"], SegmentationModule)
    assert isinstance(parts["dm"], StarFieldDataModule)
    assert isinstance(parts["trainer"], L.Trainer)
    names = {type(c).__name__ for c in parts["callbacks"]}
    assert {"ModelCheckpoint", "EarlyStopping", "LossCurvePlot", "LearningRateMonitor"} <= names
    assert {type(lg).__name__ for lg in parts["loggers"]} == {"CSVLogger", "TensorBoardLogger"}
    # paper defaults: Adam 1e-4, cosine to 1e-6 over max_epochs = 100
    opt = parts["module"].configure_optimizers  # needs a trainer for T_max; check the config
    assert callable(opt)
    assert cfg.module.optimizer.lr == 1e-4 and cfg.module.scheduler.eta_min == 1e-6
    assert cfg.module.scheduler.T_max == cfg.trainer.max_epochs == 100
    assert cfg.data.data_dir.endswith("data/dataset")
    assert (
        cfg.callbacks.model_checkpoint.monitor == "val/f1"
        and cfg.callbacks.model_checkpoint.save_last
    )


@pytest.mark.parametrize("model", _options("model"))
def test_model_group(model, tmp_path):
    cfg = compose_train([f"model={model}", "model.base_width=4"], tmp_path)
    net = hydra.utils.instantiate(cfg.model)
    assert net.model_spec["name"] == model
    x = torch.zeros(1, 1, 32, 32)
    assert net.eval()(x).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("loss", _options("loss"))
def test_loss_group(loss, tmp_path):
    cfg = compose_train([f"loss={loss}"], tmp_path)
    fn = hydra.utils.instantiate(cfg.loss)
    assert float(fn(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8))) >= 0


@pytest.mark.parametrize("trainer", _options("trainer"))
def test_trainer_group(trainer, tmp_path):
    cfg = compose_train([f"trainer={trainer}"], tmp_path)
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        assert cfg.trainer.precision == "bf16-mixed"
        if trainer == "ddp":
            assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm
        return
    t = hydra.utils.instantiate(cfg.trainer, logger=False, precision=resolve_precision(cfg.trainer))
    assert isinstance(t, L.Trainer)


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_logger_and_callback_groups(group, tmp_path):
    for option in _options(group):
        cfg = compose_train([f"{group}={option}"], tmp_path)
        objs = (instantiate_loggers if group == "logger" else instantiate_callbacks)(cfg.get(group))
        if option == "none":
            assert objs == []
        else:
            assert objs, f"{group}={option} gave nothing"


@pytest.mark.parametrize("debug", _options("debug"))
def test_debug_group(debug, tmp_path):
    cfg = compose_train([f"debug={debug}"], tmp_path)
    assert cfg.callbacks is None and cfg.logger is None and cfg.trainer.accelerator == "cpu"
    _instantiate_parts(cfg)


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}", f"data.data_dir={tmp_path}"], tmp_path)
    parts = _instantiate_parts(cfg, trainer=cfg.trainer.accelerator in ("auto", "cpu"))
    assert parts["dm"].num_channels == parts["net"].model_spec["kwargs"]["in_channels"]


def test_paper_experiment_settings(tmp_path):
    cfg = compose_train(["experiment=paper"], tmp_path)
    assert cfg.model.name == "atd_unet" and cfg.model.base_width == 64 and cfg.model.depth == 3
    assert (
        cfg.loss._target_.endswith("CEDiceLoss")
        and cfg.loss.ce_weight == cfg.loss.dice_weight == 1.0
    )
    assert cfg.module.optimizer._target_ == "torch.optim.Adam" and cfg.module.optimizer.lr == 1e-4
    assert cfg.module.scheduler._target_.endswith("CosineAnnealingLR")
    assert cfg.module.scheduler.eta_min == 1e-6 and cfg.module.scheduler.T_max == 100


@pytest.mark.parametrize(
    ("experiment", "models"),
    [("ablation_fem", ["unet", "atd_unet"]), ("compare_dl", ["atd_unet", "dnanet", "starnet"])],
)
def test_sweep_experiments(experiment, models, tmp_path):
    cfg = compose_train([f"experiment={experiment}"], tmp_path, hydra_cfg=True)
    assert cfg.hydra.sweeper.params.model.split(",") == models
    # a sweep job = the experiment + model=<name> + seed=<n>: the command-line choice wins
    name = "unet" if "unet" in models else "dnanet"
    job = compose_train([f"experiment={experiment}", f"model={name}", "seed=2"], tmp_path)
    assert job.model.name == name and job.seed == 2
    assert job.task_name == experiment and job.module.optimizer.lr == 1e-4
    assert job.model.base_width == (64 if name == "unet" else 16)  # each network keeps its width


def test_experiments_combine(tmp_path):
    cfg = compose_train(["experiment=[paper,noise_aware]"], tmp_path)
    assert cfg.task_name == "paper" and cfg.data.input_mode == "noise_aware"
    assert cfg.model.in_channels == 3 and cfg.model.base_width == 64


def test_quick_experiment_is_small_and_cpu(tmp_path):
    cfg = compose_train(["experiment=quick", "data.data_dir=/somewhere/dataset"], tmp_path)
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.max_epochs <= 5
    assert cfg.model.base_width <= 16 and cfg.data.data_dir == "/somewhere/dataset"


def test_optuna_search(tmp_path):
    cfg = compose_train(["hparams_search=optuna"], tmp_path, hydra_cfg=True)
    assert cfg.optimized_metric == "val/f1_best"
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {
        "module.optimizer.lr",
        "loss.ce_weight",
        "loss.dice_weight",
        "model.base_width",
    }
    hydra.utils.instantiate(sweeper.sampler)


@pytest.mark.parametrize(
    ("launcher", "target"), [("slurm", "SlurmLauncher"), ("joblib_local", "JoblibLauncher")]
)
def test_launchers(launcher, target, tmp_path):
    cfg = compose_train([f"hydra/launcher={launcher}"], tmp_path, hydra_cfg=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.timeout_min > 0


def test_run_folder_layout(tmp_path):
    cfg = compose_train([], None, hydra_cfg=True)
    run_dir = cfg.hydra.run.dir
    assert run_dir.startswith(cfg.paths.log_dir) and "/train/runs/" in run_dir
    assert cfg.export.out_dir == f"{cfg.paths.output_dir}/model"
