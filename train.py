"""Train a segmentation network: ``python train.py [hydra overrides]`` (see docs/models.md).

The same task as ``atd-dl train``: a user error (bad dataset, missing or hostile
``ckpt_path`` ...) ends in one line and exit code 2, and a run that failed before its first
checkpoint leaves no run folder; ``ATD_DL_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from atd_dl.commands.train import discard_failed_run
from atd_dl.errors import InputError
from atd_dl.lit.train_task import main as run_task


@hydra.main(version_base="1.3", config_path="atd_dl/configs", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Train, export the model folder and return the metric a sweeper optimises."""
    try:
        return run_task(cfg)
    except InputError as err:
        discard_failed_run()
        if os.environ.get("ATD_DL_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
