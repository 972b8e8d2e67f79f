"""The training task: Hydra config in, trained + exported model and metrics out.

``train(cfg)`` does the work (instantiate data, network, loss, Lightning
module, callbacks, loggers and trainer; fit; tune the detection threshold on
the validation set; export a model folder; optionally test) and returns
``(metric_dict, object_dict)``. ``train.py`` and ``atd-dl train`` only call it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, ListConfig, OmegaConf

import atd_dl
from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_write_text
from atd_dl.lit.datamodule import StarFieldDataModule
from atd_dl.lit.detection_metrics import ThresholdScan, threshold_grid
from atd_dl.lit.module import SegmentationModule
from atd_dl.models.flops import count_parameters
from atd_dl.models.inference import logits_to_prob
from atd_dl.models.model_folder import load_checkpoint_weights, save_model_folder
from atd_dl.models.registry import build_model, get_model_spec

__all__ = [
    "train",
    "main",
    "get_metric_value",
    "instantiate_callbacks",
    "instantiate_loggers",
    "tune_threshold",
    "resolve_precision",
]

log = logging.getLogger(__name__)


def instantiate_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    """Every entry of the ``callbacks`` group that has a ``_target_``."""
    out: list[L.Callback] = []
    for _, cb in (cfg or {}).items():
        if isinstance(cb, DictConfig) and "_target_" in cb:
            out.append(hydra.utils.instantiate(cb))
    return out


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Every entry of the ``logger`` group that has a ``_target_``."""
    out: list[Logger] = []
    for _, lg in (cfg or {}).items():
        if isinstance(lg, DictConfig) and "_target_" in lg:
            out.append(hydra.utils.instantiate(lg))
    return out


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """``trainer.precision`` or, when null, bf16-mixed on a bf16-capable CUDA device, else 32-true."""
    precision = trainer_cfg.get("precision")
    if precision is not None:
        return str(precision)
    accel = str(trainer_cfg.get("accelerator", "auto"))
    cuda = accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available())
    if cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def get_metric_value(metric_dict: dict[str, Any], metric_name: str | None) -> float | None:
    """The value Hydra sweepers optimise; None when no metric is named."""
    if not metric_name:
        return None
    if metric_name not in metric_dict:
        raise KeyError(
            f"optimized_metric {metric_name!r} not found; available: {', '.join(sorted(metric_dict))}"
        )
    return float(metric_dict[metric_name])


def tune_threshold(
    net: torch.nn.Module,
    loader: Any,
    thresholds: list[float],
    *,
    radius: float = 3.0,
    edge: float = 3.0,
    one_to_one: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Scan probability thresholds on ``loader`` batches; returns (best row, full table).

    The best row maximises detection F1 (ties → lower threshold).
    """
    scan = ThresholdScan(thresholds, radius=radius, edge=edge, one_to_one=one_to_one)
    device = torch.device(device)
    net = net.to(device).eval()
    autocast = device.type == "cuda"
    with torch.no_grad():
        for batch in loader:
            x = batch["image"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                prob = logits_to_prob(net(x))
            probs = prob[:, 0].float().cpu().numpy()
            scan.update(probs, [np.asarray(p, dtype=float).reshape(-1, 2) for p in batch["points"]])
    return scan.best(), scan.table()


def _log_hyperparameters(cfg: DictConfig, net: torch.nn.Module, loggers: list[Logger]) -> None:
    if not loggers:
        return
    hp: dict[str, Any] = {}
    for key in ("model", "loss", "module", "data", "trainer", "seed", "task_name", "tags"):
        node = cfg.get(key)
        is_container = isinstance(node, DictConfig | ListConfig)
        hp[key] = OmegaConf.to_container(node, resolve=True) if is_container else node
    hp["model/params"] = count_parameters(net)
    for lg in loggers:
        lg.log_hyperparams(hp)


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    """Best checkpoint of the monitored metric, else ``last.ckpt``, else None.

    A best score of 0 (e.g. val/f1 still 0 at the 0.5 threshold in a short run)
    selects nothing, so the last weights are used instead of the first epoch's.
    """
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    best = getattr(cb, "best_model_path", "")
    score = getattr(cb, "best_model_score", None)
    if score is not None and getattr(cb, "mode", "min") == "max" and float(score) <= 0.0:
        best = ""
    for path in (best, getattr(cb, "last_model_path", "")):
        if path and Path(path).is_file():
            return str(path)
    return None


def _base_config(base: Any) -> dict[str, Any] | None:
    """``config.json`` additions of a run started from ``base`` (a BaseModel): its record
    (name, path, SHA-256), its input kind and its detection settings (``postprocess``)."""
    if base is None:
        return None
    extra: dict[str, Any] = {"base_model": base.record()}
    if base.input_kind:
        extra["input"] = base.input_kind
    if "postprocess" in base.config:
        extra["postprocess"] = base.config["postprocess"]
    return extra


def _model_card(
    spec: dict,
    threshold: float,
    metrics: dict,
    cfg: DictConfig,
    n_train: int,
    n_val: int,
    base: Any = None,
) -> str:
    val = metrics.get("val", {})
    kw = spec["kwargs"]
    lines = [
        f"# ATD-DL model `{spec['name']}`",
        "",
        "Per-pixel point-source segmentation network for stretched 8-bit sky images",
        "(whole-frame background subtraction + ZScale, see `docs/DESIGN.md`).",
        "",
        "## Network",
        f"- registry name: `{spec['name']}`; kwargs: `{json.dumps(kw)}`",
        f"- parameters: {metrics.get('params', 'n/a')}",
        f"- input channels: {kw.get('in_channels', 1)} ({cfg.data.get('input_mode', 'image')})",
        "",
        "## Training",
        f"- dataset: `{cfg.data.data_dir}` ({n_train} training / {n_val} validation patches)",
        f"- epochs: {metrics.get('epochs', 'n/a')}; loss: {cfg.loss.get('_target_', '').rsplit('.', 1)[-1]};"
        f" optimizer lr {OmegaConf.select(cfg, 'module.optimizer.lr')}",
        f"- checkpoint: `{metrics.get('checkpoint')}`",
        *(
            [f"- initialised from `{base.label}` (weights SHA-256 `{base.sha256}`)"]
            if base is not None
            else []
        ),
        f"- atd-dl {atd_dl.__version__}, seed {cfg.get('seed')}",
        "",
        "## Operating point",
        f"- probability threshold {threshold:.3f} maximises detection F1 on the validation split",
        f"  (match radius {OmegaConf.select(cfg, 'module.match_radius', default=3.0)} px,"
        f" {OmegaConf.select(cfg, 'module.edge', default=3.0)} px edge exclusion).",
        f"- validation: precision {val.get('precision', math.nan):.4f}, recall {val.get('recall', math.nan):.4f},"
        f" F1 {val.get('f1', math.nan):.4f}",
        "",
        "## Limits",
        "- Labels come from a reference catalog (Gaia-anchored masks): sources missing from the",
        "  catalog count as false positives; check the fingerprint before applying the model to",
        "  data from another instrument (pixel scale, PSF FWHM, depth).",
    ]
    return "\n".join(lines) + "\n"


def _export(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: SegmentationModule,
    datamodule: StarFieldDataModule,
    base: Any = None,
) -> dict[str, Any]:
    """Best weights → threshold scan on validation → model folder; returns the metrics written."""
    ecfg = cfg.export
    spec = get_model_spec(module.net)
    net = build_model(spec["name"], **spec["kwargs"])
    ckpt = _best_checkpoint(trainer)
    if ckpt is not None:
        net.load_state_dict(load_checkpoint_weights(ckpt))
    else:  # fast_dev_run / no checkpointing: the weights in memory
        net.load_state_dict(module.net.state_dict())
    grid = (
        threshold_grid(**{str(k): float(v) for k, v in ecfg.thresholds.items()})
        if isinstance(ecfg.thresholds, DictConfig)
        else list(ecfg.thresholds)
    )
    best, table = tune_threshold(
        net,
        datamodule.val_dataloader(),
        grid,
        radius=module.hparams["match_radius"],
        edge=module.hparams["edge"],
        one_to_one=module.hparams["one_to_one"],
        device=module.device,
    )
    threshold = float(best["threshold"])
    metrics = {
        "val": best,
        "threshold_scan": table,
        "checkpoint": ckpt,
        "epochs": int(trainer.current_epoch),
        "params": count_parameters(net),
        "data_dir": str(cfg.data.data_dir),
    }
    fp = Path(cfg.data.data_dir) / "fingerprint.json"
    n_train = len(datamodule.stems("train"))
    n_val = len(datamodule.stems("val"))
    out_dir = Path(ecfg.out_dir)
    save_model_folder(
        out_dir,
        net,
        threshold=threshold,
        fingerprint=fp if fp.is_file() else None,
        metrics=metrics,
        card=_model_card(spec, threshold, metrics, cfg, n_train, n_val, base),
        fp16=bool(ecfg.get("fp16", True)),
        extra_config=_base_config(base),
        onnx=bool(ecfg.get("onnx", True)),
    )
    log.info(
        "model folder written to %s (threshold %.3f, val F1 %.4f)", out_dir, threshold, best["f1"]
    )
    return metrics


def init_weights(net: torch.nn.Module, source: str) -> None:
    """Start from trained weights (weights only, no optimiser state): a model folder, a
    shipped model name (``default``, ``paper_camera``) or a Lightning ``.ckpt``.

    The base network must have the same architecture and input planes as ``net``;
    a mismatch raises :class:`InputError` naming the source and the difference.
    """
    from atd_dl.models.model_folder import (
        load_checkpoint_weights,
        load_model_folder,
        resolve_model_dir,
    )

    path = resolve_model_dir(source)
    if path.is_dir():
        base, meta = load_model_folder(path)
        state = base.state_dict()
        base_in = int((meta.get("kwargs") or {}).get("in_channels", 1))
        net_in = int(get_model_spec(net)["kwargs"].get("in_channels", 1))
        if base_in != net_in:
            raise InputError(
                path,
                f"base model takes {base_in} input plane(s) ({meta.get('input')}) but this "
                f"run's model takes {net_in}; choose a base with the same input",
            )
    else:
        state = load_checkpoint_weights(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InputError(
            path, f"weights do not fit this model: {str(err).splitlines()[0]}"
        ) from None
    log.info("initialised the network from %s", path)


#: ``ckpt_path`` values Lightning resolves itself (not files)
_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


def check_before_fit(datamodule: Any, ckpt_path: Any) -> None:
    """Refuse bad inputs before the trainer starts: every training/validation patch listed
    and complete (:meth:`setup` of the data module), and ``ckpt_path`` an existing
    weights-only checkpoint (missing, unreadable or pickled payloads → :class:`InputError`)."""
    from atd_dl.models.model_folder import load_checkpoint

    if ckpt_path is not None and str(ckpt_path) not in _CKPT_KEYWORDS:
        load_checkpoint(str(ckpt_path))
    if hasattr(datamodule, "setup"):
        datamodule.setup("fit")


@contextlib.contextmanager
def worker_input_errors() -> Iterator[None]:
    """An :class:`InputError` raised in a DataLoader worker reaches the main process as a
    ``RuntimeError("Caught InputError in DataLoader worker ...")`` holding the worker's
    traceback text: raise it again as the one-line :class:`InputError`."""
    try:
        yield
    except RuntimeError as err:
        text = str(err)
        if not text.startswith("Caught InputError"):
            raise
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        raise InputError(None, last.split("InputError: ", 1)[-1].strip()) from err


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one training job described by ``cfg`` (the composed ``configs/train.yaml``)."""
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)

    from atd_dl.lit.finetune import build_network, freeze_encoder, load_base, resolve_input_mode

    log.info("data: %s", cfg.data.get("data_dir"))
    # start from trained weights: model.init (experiment=finetune) or init_from
    init = OmegaConf.select(cfg, "model.init", default=None) or cfg.get("init_from")
    base = load_base(str(init)) if init else None
    data_kwargs: dict[str, Any] = {}
    mode = cfg.data.get("input_mode")
    if base is not None or mode == "auto":  # the dataset's input must be the base's
        data_kwargs["input_mode"] = resolve_input_mode(base, mode)
    datamodule: StarFieldDataModule = hydra.utils.instantiate(cfg.data, **data_kwargs)
    net = build_network(cfg.model, base)
    in_ch = get_model_spec(net)["kwargs"].get("in_channels", 1)
    if in_ch != datamodule.num_channels:
        raise InputError(
            None,
            f"model.in_channels={in_ch} but data.input_mode={datamodule.input_mode!r} gives "
            f"{datamodule.num_channels} channel(s); set model.in_channels={datamodule.num_channels}",
        )
    if base is not None:
        init_weights(net, str(base.path))
    if OmegaConf.select(cfg, "model.freeze_encoder", default=False):
        freeze_encoder(net)
    loss = hydra.utils.instantiate(cfg.loss)
    module: SegmentationModule = hydra.utils.instantiate(cfg.module, net=net, loss=loss)
    if cfg.get("train", True):  # bad data or checkpoint: fail now, not after the first epoch
        check_before_fit(datamodule, cfg.get("ckpt_path"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        precision=resolve_precision(cfg.trainer),
    )
    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": module,
        "callbacks": callbacks,
        "logger": loggers,
        "trainer": trainer,
    }
    _log_hyperparameters(cfg, net, loggers)

    if cfg.get("train", True):
        with worker_input_errors():
            trainer.fit(
                module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
            )
    metric_dict: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1
    }

    export_cfg = cfg.get("export")
    if export_cfg is not None and export_cfg.get("enabled", True) and trainer.is_global_zero:
        exported = _export(cfg, trainer, module, datamodule, base)
        metric_dict["val/threshold"] = exported["val"]["threshold"]
        metric_dict["val/f1_tuned"] = exported["val"]["f1"]
        module.det_threshold = exported["val"]["threshold"]
        objects["export"] = exported
    if trainer.world_size > 1:  # every rank tests at rank 0's tuned threshold
        module.det_threshold = float(trainer.strategy.broadcast(module.det_threshold, src=0))

    if cfg.get("test", False):
        if not datamodule.stems("test"):
            log.warning("no test split in %s; skipping test", cfg.data.data_dir)
        else:
            ckpt = _best_checkpoint(trainer)
            with worker_input_errors():
                trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
            metric_dict.update(
                {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
            )
            if "export" in objects:
                mpath = Path(cfg.export.out_dir) / "metrics.json"
                merged = json.loads(mpath.read_text())
                merged["test"] = {k: v for k, v in metric_dict.items() if k.startswith("test/")}
                atomic_write_text(mpath, json.dumps(merged, indent=2, default=str) + "\n")
    return metric_dict, objects


def main(cfg: DictConfig) -> float | None:
    """Body of the ``@hydra.main`` entry points: train and return the optimised metric.

    ``task_kind: binary_classifier`` (set by ``experiment=binary_classifier``) trains the
    visual-binary stamp classifier instead of the segmentation network.
    """
    if cfg.get("task_kind") == "binary_classifier":
        from atd_dl.lit.binary import train_binary

        return get_metric_value(train_binary(cfg), cfg.get("optimized_metric"))
    metric_dict, _ = train(cfg)
    return get_metric_value(metric_dict, cfg.get("optimized_metric"))
