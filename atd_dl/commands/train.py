"""``atd-dl train``: train a segmentation network with Hydra overrides (same as ``python train.py``)."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from atd_dl.config_paths import config_dir

log = logging.getLogger(__name__)

HELP = """\
Train a point-source segmentation network. Arguments are Hydra overrides of
configs/train.yaml, e.g.

  atd-dl train data.data_dir=/data/atd/dataset
  atd-dl train experiment=quick data.data_dir=/data/atd/dataset
  atd-dl train experiment=paper trainer=gpu
  atd-dl train -m experiment=ablation_fem seed=1,2,3
  atd-dl train -m hparams_search=optuna
  atd-dl train --cfg job experiment=paper          (print the composed config)
  atd-dl train ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt   (resume)

Each run writes logs/<task>/runs/<date_time>/ with checkpoints/, csv/, tensorboard/,
loss_curve.png and model/ (the exported model folder). See docs/models.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a segmentation network (Hydra overrides)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    p.add_argument("-m", "--multirun", action="store_true", help="sweep: one job per combination")
    p.add_argument(
        "--cfg", choices=["job", "hydra", "all"], help="print the composed config and exit"
    )
    p.add_argument(
        "--config-dir", help="folder holding train.yaml (default: the packaged atd_dl/configs)"
    )
    p.add_argument("--config-name", default="train", help="primary config name (default: train)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import hydra
    from omegaconf import DictConfig

    from atd_dl.lit.train_task import main as run_task

    cdir = config_dir(args.config_dir)
    # an error inside the task (bad dataset, missing or hostile ckpt_path, ...) ends in one
    # line through the CLI (the traceback with --debug), not in Hydra's printed traceback:
    # keep it, drop the run folder when it holds no checkpoint, raise it after Hydra returns
    failures: list[Exception] = []

    @hydra.main(version_base="1.3", config_path=str(cdir), config_name=args.config_name)
    def _entry(cfg: DictConfig) -> float | None:
        try:
            return run_task(cfg)
        except Exception as err:  # noqa: BLE001 - re-raised below, outside Hydra
            discard_failed_run()
            failures.append(err)
            return None

    argv = ["atd-dl-train", *args.overrides]
    if args.multirun:
        argv.append("--multirun")
    if args.cfg:
        argv += ["--cfg", args.cfg]
    saved = sys.argv
    sys.argv = argv
    try:
        _entry()
    except SystemExit as exc:  # hydra exits on config errors after printing them
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = saved
    if failures:
        raise failures[0]
    return 0


def discard_failed_run() -> Path | None:
    """Remove this Hydra job's run folder after a failure when it holds no checkpoint yet
    (only the config, the log and empty logger folders: nothing to resume from); returns
    the folder removed, or None (a run with a checkpoint is kept for ``ckpt_path=``)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        out = Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, AttributeError, TypeError):  # not inside a Hydra run
        return None
    if not out.is_dir() or any(out.rglob("*.ckpt")):
        return None
    shutil.rmtree(out, ignore_errors=True)
    log.info("removed the run folder %s (the run failed before its first checkpoint)", out)
    return out
