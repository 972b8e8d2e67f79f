"""Train a segmentation network: ``python train.py [hydra overrides]`` (see docs/models.md)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from atd_dl.lit.train_task import main as run_task


@hydra.main(version_base="1.3", config_path="atd_dl/configs", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Train, export the model folder and return the metric a sweeper optimises."""
    return run_task(cfg)


if __name__ == "__main__":
    main()
