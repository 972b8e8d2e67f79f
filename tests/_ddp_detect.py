"""Script for tests/test_ddp_cpu.py: Lightning distributed detection on the CPU.

``python tests/_ddp_detect.py MODEL OUT DEVICES FRAME...`` runs
:func:`atd_dl.lit.predict.predict_distributed` as ``infer.py distributed.enabled=true``
does (the torch engine, a Trainer with ``accelerator=cpu``, ``devices=DEVICES``,
``strategy=ddp``: gloo on the CPU). Lightning's DDP launcher starts the other ranks by
running this script again (which is why it is a script and not a pytest function). Each
rank writes ``OUT/done.rank<r>`` (its process id) when it has finished.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    model, out, devices, *frames = argv
    from atd_dl.detect.catalog_io import OutputConfig
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector
    from atd_dl.lit.predict import predict_distributed

    net, meta = load_detector(model, device="cpu", engine="torch")
    detector = Detector(net, meta, DetectConfig(device="cpu"))
    trainer = {
        "accelerator": "cpu",
        "devices": int(devices),
        "enable_progress_bar": False,
    }
    if int(devices) > 1:
        trainer["strategy"] = "ddp"
    summary = predict_distributed(
        frames, detector, OutputConfig(Path(out)), trainer_kwargs=trainer, num_workers=0
    )
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    Path(out, f"done.rank{rank}").write_text(str(os.getpid()))
    if summary is not None:
        print(f"rank 0 summary: {summary.n_ok} ok, {summary.n_failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
