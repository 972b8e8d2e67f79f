"""Detect sources in FITS frames: ``python infer.py inputs=[...] [hydra overrides]``.

Thin Hydra entry over :func:`atd_dl.detect.pipeline.detect_files` (the function behind
``atd-dl detect``); ``distributed.enabled=true`` runs the Lightning predict loop
(:func:`atd_dl.lit.predict.predict_distributed`, DDP over GPUs / nodes). See docs/detect.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from atd_dl.config_store import register_configs

log = logging.getLogger(__name__)
# infer.yaml's `detect` and `postprocess` groups: built from the dataclasses (their defaults)
register_configs()


def run_infer(cfg: DictConfig) -> dict[str, Any]:
    """Run detection as configured; returns the run summary as a dict."""
    from atd_dl.detect.batch import detect_files, load_masters
    from atd_dl.detect.catalog_io import OutputConfig
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector
    from atd_dl.detect.postprocess import PostprocessConfig
    from atd_dl.errors import InputError

    keys = ("inputs", "model_path", "out", "engine", "overwrite", "workers", "progress")
    c: dict[str, Any] = {k: cfg[k] for k in keys}
    c["jobs"] = cfg.get("jobs", 1)
    for k in ("calib", "outputs", "detect", "postprocess", "distributed"):
        c[k] = OmegaConf.to_container(cfg[k], resolve=True) if k in cfg else {}
    if not isinstance(c["inputs"], (str, int, float)):
        c["inputs"] = OmegaConf.to_container(c["inputs"], resolve=True)
    inputs = c["inputs"] if isinstance(c["inputs"], list) else [c["inputs"]]
    if not inputs:
        raise InputError(None, "no inputs: pass inputs=[FILE_OR_FOLDER_OR_GLOB,...]")
    if cfg.get("threshold") is not None:  # deprecated top-level alias of detect.threshold
        log.warning("infer.py threshold= is deprecated: use detect.threshold=")
        c["detect"] = {**(c["detect"] or {}), "threshold": float(cfg["threshold"])}
    # every field from infer.yaml's detect / postprocess groups (the dataclasses' defaults)
    config = DetectConfig(
        postprocess=PostprocessConfig(**(c.get("postprocess") or {})), **(c["detect"] or {})
    )
    dist = c.get("distributed") or {}
    # the Lightning (distributed) path runs torch modules; one process may use ONNX Runtime
    engine = "torch" if dist.get("enabled") else str(c.get("engine") or "auto")
    model, meta = load_detector(c["model_path"], device=config.device, engine=engine)
    detector = Detector(model, meta, config)
    output = OutputConfig(Path(c["out"]), overwrite=bool(c["overwrite"]), **c["outputs"])
    masters = load_masters(**c["calib"])
    if dist.get("enabled"):
        from atd_dl.lit.predict import predict_distributed

        trainer_kwargs = {k: v for k, v in (dist.get("trainer") or {}).items() if v is not None}
        summary = predict_distributed(
            inputs,
            detector,
            output,
            masters=masters,
            trainer_kwargs=trainer_kwargs,
            num_workers=int(dist.get("num_workers", 2)),
        )
        return summary.to_dict() if summary is not None else {}
    summary = detect_files(
        inputs,
        detector,
        output,
        masters=masters,
        workers=int(c["workers"]),
        jobs=int(c.get("jobs") or 1),
        progress=bool(c["progress"]),
        on_failure=lambda msg: log.error(msg),
    )
    log.info(
        "%d ok, %d skipped, %d failed, %d sources -> %s",
        summary.n_ok,
        summary.n_skipped,
        summary.n_failed,
        summary.n_detections,
        output.out_dir,
    )
    return summary.to_dict()


@hydra.main(version_base="1.3", config_path="atd_dl/configs", config_name="infer.yaml")
def main(cfg: DictConfig) -> int:
    """Hydra entry: run, and return the number of failed frames (0 = success)."""
    summary = run_infer(cfg)
    return int(summary.get("n_failed", 0))


if __name__ == "__main__":
    main()
