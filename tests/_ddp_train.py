"""Script for tests/test_ddp_cpu.py: a synchronised DDP training step on the CPU.

``python tests/_ddp_train.py DATASET OUT DEVICES`` composes ``configs/train.yaml`` with
``experiment=quick`` on the CPU (``trainer.devices=DEVICES``, ``trainer.strategy=ddp``:
gloo), trains one epoch of two optimiser steps per rank (each rank sees other samples)
and writes ``OUT/rank<r>.json``: the global step, the SHA-256 of the network parameters
before and after training, and the rank's world size. Lightning's DDP launcher starts the
other ranks by running this script again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def weights_sha256(module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.named_parameters()):  # buffers are not averaged
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str]) -> int:
    dataset, out, devices = argv[:3]
    import lightning as L
    from _train_helpers import compose_train
    from hydra.core.hydra_config import HydraConfig

    from atd_dl.lit.train_task import train

    cfg = compose_train(
        [
            "experiment=quick",
            f"data.data_dir={dataset}",
            "data.crop_size=32",
            "data.batch_size=1",
            "model.base_width=4",
            "trainer.accelerator=cpu",
            f"trainer.devices={devices}",
            "++trainer.strategy=ddp",  # added or replaced
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.enable_progress_bar=false",
            "callbacks=none",
            "logger=csv",
            "export.enabled=false",
        ],
        Path(out) / "run",
    )
    # composed, not run by @hydra.main: keep Lightning's launcher from adding hydra.* args
    HydraConfig.instance().cfg = None  # type: ignore[assignment]

    class Record(L.Callback):
        def on_train_start(self, trainer, pl_module):
            self.before = weights_sha256(pl_module.net)

        def on_train_end(self, trainer, pl_module):
            doc = {
                "rank": trainer.global_rank,
                "world_size": trainer.world_size,
                "global_step": trainer.global_step,
                "before": self.before,
                "after": weights_sha256(pl_module.net),
                "pid": os.getpid(),
            }
            Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(doc))

    import atd_dl.lit.train_task as task

    plain = task.instantiate_callbacks
    task.instantiate_callbacks = lambda c: [*plain(c), Record()]  # type: ignore[assignment]
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
