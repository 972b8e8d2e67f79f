"""``atd-dl train``: train a segmentation network with Hydra overrides (same as ``python train.py``)."""

from __future__ import annotations

import argparse
import sys

from atd_dl.config_paths import config_dir

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

    @hydra.main(version_base="1.3", config_path=str(cdir), config_name=args.config_name)
    def _entry(cfg: DictConfig) -> float | None:
        return run_task(cfg)

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
    return 0
