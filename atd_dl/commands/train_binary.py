"""``atd-dl train-binary``: train, test and export the visual-binary stamp classifier."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from atd_dl.commands._validate import out_dir_problem, writable_out_dir
from atd_dl.config_paths import config_dir
from atd_dl.errors import InputError

CONFIG_NAME = "binary_train"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-binary`` sub-command."""
    p = subparsers.add_parser(
        "train-binary",
        help="train the visual-binary stamp classifier (ResNet34)",
        description=(
            "Train the visual-binary stamp classifier with the Hydra config "
            "configs/binary_train.yaml (data: binary_stamps, model: resnet34_binary). "
            "Writes checkpoints, the held-out classification report + confusion matrix "
            "(<out>/report) and an exported model folder (<out>/model)."
        ),
        epilog="example: atd-dl train-binary experiment=binary_shipped trainer.max_epochs=5",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.data_dir=stamps/")
    p.add_argument(
        "--out", type=writable_out_dir, default=None, help="run folder (default runs/binary_<time>)"
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="folder holding binary_train.yaml (default: the package's configs)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compose the config, train, and print the test report; exit code 0 on success."""
    from hydra import compose, initialize_config_dir

    from atd_dl.binaries.report import format_report
    from atd_dl.lit.binary import train_binary

    out = args.out or Path("runs") / f"binary_{datetime.now():%Y%m%d_%H%M%S}"
    problem = out_dir_problem(out)
    if problem:
        raise InputError(None, f"--out {problem}")
    overrides = list(args.overrides) + [f"paths.output_dir={Path(out).resolve()}"]
    with initialize_config_dir(
        config_dir=str(config_dir(args.config_dir, CONFIG_NAME)), version_base=None
    ):
        try:
            cfg = compose(config_name=CONFIG_NAME, overrides=overrides)
        except Exception as err:  # bad override: one line for the user
            raise InputError(None, f"config: {err}") from None
    metrics = train_binary(cfg)
    print(format_report(metrics["test"]), end="")
    print(f"train-binary: report in {Path(out) / 'report'}, model in {Path(out) / 'model'}")
    return 0
