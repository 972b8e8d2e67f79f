"""Multi-GPU / multi-node batch detection: a thin Lightning predict loop over frames.

Each rank gets a share of the frames (Lightning's unrepeated distributed sampler: every
frame exactly once), prepares them in DataLoader workers (read, calibrate, enhance, input
planes: :meth:`Detector.prepare`, :meth:`Detector.input_planes`), predicts the stitched
probability map of each frame on its device with the tiling of the single-process path
(:class:`~atd_dl.detect.inference.TiledPredictor` inside
:meth:`FramePredictor.predict_step`, so the catalogs equal those of ``atd-dl detect
--engine torch``) and writes the frame's outputs itself (:class:`DetectionWriter`,
post-processing on the rank's CPU). Ranks write ``summary.rank<r>.json``; rank 0 merges
them into ``summary.json`` (frames in input order, each record naming its ``rank``).
tests/test_ddp_cpu.py runs this with two CPU processes (DDP over gloo).

SLURM (2 nodes x 4 GPUs, see ``docs/detect.md``)::

    srun python infer.py inputs=[/data/night1] out=/data/det distributed.enabled=true \\
        distributed.trainer.devices=4 distributed.trainer.num_nodes=2
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from atd_dl.detect.batch import RunSummary, _now, _problem, expand_inputs, unique_stems
from atd_dl.detect.catalog_io import OutputConfig
from atd_dl.detect.inference import tile_multiple
from atd_dl.detect.pipeline import Detector, PreparedFrame
from atd_dl.errors import InputError
from atd_dl.prep.partition import DETECT_OVERLAP

__all__ = ["FrameDataset", "FramePredictor", "DetectionWriter", "predict_distributed"]

log = logging.getLogger(__name__)


class FrameDataset(Dataset):
    """One item per frame: the prepared frame and its network input planes.

    A frame that cannot be read gives an item with ``error`` set instead (the batch goes on).
    """

    def __init__(
        self, paths: Sequence[Path], stems: Sequence[str], detector: Detector, masters: Any = None
    ) -> None:
        self.paths = list(paths)
        self.stems = list(stems)
        self.detector = detector
        self.masters = masters

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"index": i, "path": str(self.paths[i]), "stem": self.stems[i]}
        try:
            prepared = self.detector.prepare(self.paths[i], masters=self.masters)
            if not isinstance(prepared, PreparedFrame):  # one stitched map per item
                raise InputError(
                    self.paths[i],
                    "a multi-extension file: choose one with detect.hdu=N (the distributed "
                    "path runs one image per frame)",
                )
            item["prepared"] = prepared
            if not prepared.empty:  # the planes of the single-process path, any input kind
                item["planes"] = torch.from_numpy(self.detector.input_planes(prepared))
        except Exception as err:  # noqa: BLE001 - one bad frame must not stop the batch
            item["error"] = _problem(self.paths[i], err)
        return item


def _first(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return batch[0]


class FramePredictor(L.LightningModule):
    """Predict the stitched probability map of one frame per step.

    The tiles, their batches and the stitching are those of
    :class:`~atd_dl.detect.inference.TiledPredictor` (``tile=None``: automatic, as in
    ``atd-dl detect``; ``symmetries``: the flips averaged, the detector's), run on this
    rank's device."""

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        tile: int | None = None,
        overlap: int = DETECT_OVERLAP,
        tiles_per_batch: int | None = None,
        amp: bool = True,
        multiple: int = 16,
        symmetries: int = 1,
    ):
        super().__init__()
        self.net = net
        self.symmetries = symmetries
        self.tile = tile
        self.overlap = overlap
        self.multiple = multiple
        self.tiles_per_batch = tiles_per_batch
        self.amp = amp
        self._predictor: Any = None

    def predictor(self) -> Any:
        """The :class:`~atd_dl.detect.inference.TiledPredictor` on this rank's device."""
        if self._predictor is None:
            from atd_dl.detect.inference import TiledPredictor

            self._predictor = TiledPredictor(
                self.net,
                tile=self.tile,
                overlap=self.overlap,
                batch_size=self.tiles_per_batch,
                device=self.device,
                amp=self.amp,
                multiple=self.multiple,
                symmetries=self.symmetries,
            )
        return self._predictor

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        out = {k: v for k, v in batch.items() if k != "planes"}
        planes = batch.get("planes")
        if planes is None:
            return out
        out["prob"] = self.predictor().predict(planes.numpy())
        return out


class DetectionWriter(BasePredictionWriter):
    """Post-process and write each frame's outputs on the rank that predicted it."""

    def __init__(self, detector: Detector, output: OutputConfig) -> None:
        super().__init__(write_interval="batch")
        self.detector = detector
        self.output = output
        self.records: list[dict[str, Any]] = []

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        rec: dict[str, Any] = {
            "path": prediction["path"],
            "stem": prediction["stem"],
            "rank": trainer.global_rank,
        }
        if "error" in prediction:
            rec.update(status="failed", error=prediction["error"])
            self.records.append(rec)
            return
        prepared = prediction["prepared"]
        prob = prediction.get("prob")
        if prob is None:
            prob = np.zeros(prepared.frame.shape, dtype=np.float32)
        try:
            res = self.detector.run_on_prob(prepared, prob, write=self.output, stem=rec["stem"])
            rec.update(
                status="ok",
                n_detections=len(res.catalog),
                threshold=res.threshold,
                timings={k: round(v, 4) for k, v in res.timings.items()},
                outputs={k: str(v) for k, v in res.outputs.items()},
                warnings=res.warnings,
            )
        except Exception as err:  # noqa: BLE001 - one bad frame must not stop the batch
            rec.update(status="failed", error=_problem(Path(rec["path"]), err))
        self.records.append(rec)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = Path(self.output.out_dir) / f"summary.rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.records, indent=1, default=str))


def predict_distributed(
    inputs: Sequence[str | Path],
    detector: Detector,
    output: OutputConfig,
    *,
    masters: Any = None,
    trainer_kwargs: dict[str, Any] | None = None,
    num_workers: int = 2,
) -> RunSummary | None:
    """Run detection over ``inputs`` with a Lightning ``Trainer.predict`` (DDP when several
    devices / nodes). Returns the merged :class:`RunSummary` on rank 0, None elsewhere."""
    import time

    t_start = time.perf_counter()
    paths, problems = expand_inputs(inputs)
    stems = unique_stems(paths)
    todo = [(p, s) for p, s in zip(paths, stems) if output.overwrite or not output.complete(s)]
    skipped = [(p, s) for p, s in zip(paths, stems) if (p, s) not in todo]
    kwargs = {
        "accelerator": "auto",
        "devices": "auto",
        "logger": False,
        "enable_progress_bar": True,
    }
    kwargs.update(trainer_kwargs or {})
    writer = DetectionWriter(detector, output)
    trainer = L.Trainer(callbacks=[writer], enable_checkpointing=False, **kwargs)
    summary = RunSummary(
        model=str(detector.meta.get("name")), threshold=detector.threshold, started=_now()
    )
    if todo:
        ds = FrameDataset([p for p, _ in todo], [s for _, s in todo], detector, masters)
        loader = DataLoader(
            ds, batch_size=1, shuffle=False, num_workers=num_workers, collate_fn=_first
        )
        module = FramePredictor(
            detector.model,
            tile=detector.config.tile,
            overlap=detector.config.overlap,
            tiles_per_batch=detector.config.batch_size,
            amp=detector.config.amp,
            multiple=tile_multiple(detector.meta),
            symmetries=detector.symmetries,
        )
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        trainer.strategy.barrier()
    if trainer.global_rank != 0:
        return None
    summary.device = str(trainer.strategy.root_device)
    summary.jobs = trainer.world_size
    by_stem: dict[str, dict[str, Any]] = {}
    for rank in range(trainer.world_size):
        f = Path(output.out_dir) / f"summary.rank{rank}.json"
        if not f.is_file():
            continue
        for rec in json.loads(f.read_text()):
            if rec["stem"] in by_stem:  # never with the unrepeated sampler; kept once
                log.warning("%s: processed by more than one rank", rec["path"])
                continue
            by_stem[rec["stem"]] = rec
        f.unlink()
    for _, s in todo:  # input order
        rec = by_stem.get(s)
        if rec is None:
            continue
        summary.frames.append(rec)
        if rec["status"] == "failed":
            summary.failures.append({"path": rec["path"], "stage": "frame", "error": rec["error"]})
    for p, s in skipped:
        summary.frames.append({"path": str(p), "stem": s, "status": "skipped"})
    for item, msg in problems:
        summary.failures.append({"path": item, "stage": "input", "error": msg})
    summary.finished = _now()
    summary.wall_s = time.perf_counter() - t_start
    Path(output.out_dir).mkdir(parents=True, exist_ok=True)
    summary.write(Path(output.out_dir) / "summary.json")
    return summary
