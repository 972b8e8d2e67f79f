"""Resume keys of ``atd-dl detect``: what must be unchanged for a frame to be skipped.

Per frame: the input file's SHA-256; per run: the model folder's hash, the threshold,
the detection / post-processing options that change the catalog, the calibration
masters' content hashes and the binary classifier. The key is written as
``<stem>.key.json`` next to the frame's outputs after they are complete
(see :mod:`atd_dl.io.resume`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atd_dl.io.resume import (
    KEY_SUFFIX,
    compare_keys,
    describe_changes,
    digest,
    file_sha256,
    folder_sha256,
    read_key,
)

__all__ = ["FrameDecision", "decide_frame", "key_path", "run_key"]

# options that do not change what is written (speed / placement only)
_NOT_IN_KEY = ("device", "compile", "batch_size", "threshold", "min_snr", "postprocess")


def _array_sha256(arr: Any) -> str | None:
    if arr is None:
        return None
    a = np.ascontiguousarray(np.asarray(arr))
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def run_key(detector: Any, masters: Any = None) -> dict[str, Any]:
    """Key components shared by every frame of a run (computed once)."""
    path = detector.meta.get("path")
    model = None
    if path and Path(path).exists():
        model = folder_sha256(path)
    else:
        model = digest({"name": detector.meta.get("name"), "kwargs": detector.meta.get("kwargs")})
    options = {k: v for k, v in detector.config.summary().items() if k not in _NOT_IN_KEY}
    calibration = None
    if masters is not None and masters:
        calibration = {
            k: _array_sha256(getattr(masters, k, None)) for k in ("bias", "dark", "flat")
        }
        calibration["dark_exptime"] = getattr(masters, "dark_exptime", None)
    binaries = None
    if getattr(detector, "binary_model", None) is not None:
        _, bmeta = detector.binary_model
        bpath = bmeta.get("path") if isinstance(bmeta, dict) else None
        binaries = folder_sha256(bpath) if bpath and Path(bpath).exists() else digest(bmeta)
    return {
        "model_sha256": model,
        "threshold": round(float(detector.threshold), 9),
        "postprocess": {
            **detector.config.summary().get("postprocess", {}),
            "min_snr": float(detector.min_snr),
            "binaries": binaries,
        },
        "calibration": calibration,
        "config": options,
    }


def key_path(out_dir: str | Path, stem: str) -> Path:
    """Where the resume key of frame ``stem`` lives."""
    return Path(out_dir) / f"{stem}{KEY_SUFFIX}"


@dataclass
class FrameDecision:
    """Whether to skip a frame, why, and the key to store after redoing it."""

    skip: bool
    reason: str  # "unchanged" or "input changed, threshold changed", ...
    key: dict[str, Any]
    stored: dict[str, Any] | None  # the stored key document (for n_detections of a skip)

    @property
    def status(self) -> str:
        return "skipped (unchanged)" if self.skip else f"redone ({self.reason})"


def decide_frame(
    path: Path, stem: str, out_dir: str | Path, common: dict[str, Any], *, complete: bool
) -> FrameDecision:
    """Skip ``path`` only when its outputs are complete and the stored key equals the
    current one (input SHA-256 + ``common``)."""
    key = {"input_sha256": file_sha256(path), **common}
    kp = key_path(out_dir, stem)
    stored = read_key(kp)
    doc = None
    if stored is not None:
        import json

        try:
            doc = json.loads(kp.read_text())
        except (OSError, ValueError):
            doc = None
    if not complete:
        first = stored is None and not any(Path(out_dir).glob(f"{stem}.cat.*"))
        return FrameDecision(False, "new" if first else "outputs missing", key, doc)
    changed = compare_keys(stored, key)
    if not changed:
        return FrameDecision(True, "unchanged", key, doc)
    return FrameDecision(False, describe_changes(changed), key, doc)
