"""Network inference on whole frames: model loading, device set-up, tiled prediction.

The network sees exactly what it saw in training (``docs/DESIGN.md``, "Enhancement"):
the whole frame is enhanced once, tiles are cut from the 8-bit image with
:class:`atd_dl.prep.partition.Tiler` (overlapping, padded when the frame is smaller than
a tile), predicted in batches, and stitched back so that each output pixel comes from
the tile in which it lies farthest from the tile edges: the probability map has no
seams and a star on a tile border is one component, found once.

Devices: CUDA when available (bf16 autocast, channels-last memory, batch size from the
free GPU memory), else CPU with all cores (``torch.set_num_threads``) unless
``OMP_NUM_THREADS`` is set. ``torch.compile`` is optional.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atd_dl.errors import InputError
from atd_dl.models.inference import predict_proba
from atd_dl.prep.partition import Tiler

log = logging.getLogger(__name__)

RMS_CLIP = 5.0  # normalised background rms plane is clipped to [0, RMS_CLIP] (as in training)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available else CPU; unknown or absent CUDA raises."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, f"device {device!r} requested but CUDA is not available")
    return dev


def configure_cpu_threads() -> int:
    """Use every available core for CPU inference (unless ``OMP_NUM_THREADS`` is set)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return n


def load_detector(
    path: str | Path | None = None, *, device: str | torch.device | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model folder, a shipped model by name (default: ``default``) or a ``.ckpt``.

    Returns ``(model in eval mode on device, meta)``; ``meta`` as from
    :func:`atd_dl.models.model_folder.load_model_folder` (``name``, ``kwargs``,
    ``input``, ``threshold``, ``path`` ...). A checkpoint carries no tuned threshold:
    ``meta["threshold"]`` is 0.5 and ``meta["threshold_source"]`` says so.
    """
    from atd_dl.models import model_folder as mf
    from atd_dl.models.registry import build_model

    dev = resolve_device(device)
    p = mf.resolve_model_dir(path)
    if p.is_dir():
        model, meta = mf.load_model_folder(p, map_location="cpu")
        meta = dict(meta)
        meta.setdefault("threshold_source", "thresholds.json")
    elif p.is_file():
        ckpt = mf.load_checkpoint(p)
        name, kwargs = mf.checkpoint_model_spec(ckpt)
        if name is None:
            raise InputError(
                p, "checkpoint records no model name (model_spec); export a model folder"
            )
        model = build_model(name, **kwargs)
        try:
            model.load_state_dict(mf.load_checkpoint_weights(p), strict=True)
        except RuntimeError as err:
            raise InputError(p, f"weights do not fit {name}: {str(err).splitlines()[0]}") from None
        model.eval()
        meta = {
            "name": name,
            "kwargs": kwargs,
            "input": mf.input_kind(kwargs.get("in_channels", 1)),
            "threshold": 0.5,
            "threshold_source": "default 0.5 (checkpoint has no tuned threshold)",
            "config": {"name": name, "kwargs": kwargs},
            "fingerprint": None,
            "metrics": None,
            "path": p,
        }
    else:
        raise InputError(p, "model not found (expected a model folder or a .ckpt file)")
    return model.to(dev).eval(), meta


def input_channels(meta: dict[str, Any]) -> int:
    """Number of input planes the model expects (from its kwargs or input kind)."""
    kw = meta.get("kwargs") or {}
    if "in_channels" in kw:
        return int(kw["in_channels"])
    return 3 if "rms" in str(meta.get("input", "")) else 1


def model_input(
    image8: np.ndarray,
    *,
    channels: int = 1,
    background_rms: np.ndarray | None = None,
    bad: np.ndarray | None = None,
) -> np.ndarray:
    """Network input planes ``[C, ny, nx]`` float32 for a whole frame.

    Plane 0 is ``image8 / 255``; the noise-aware 3-channel input adds the background rms
    divided by its median over usable pixels (non-finite -> clip value, clipped to
    ``[0, RMS_CLIP]``) and the bad-pixel mask (1 = unusable), as ``atd-dl prep`` and the
    training data module build them.
    """
    planes = [np.asarray(image8, dtype=np.float32) / np.float32(255.0)]
    if channels >= 3:
        if background_rms is None:
            raise ValueError("a noise-aware model needs the background rms map")
        rms = np.asarray(background_rms, dtype=np.float32)
        b = np.zeros(rms.shape, bool) if bad is None else np.asarray(bad, dtype=bool)
        finite = np.isfinite(rms) & (rms > 0)
        ref = finite & ~b
        med = float(np.median(rms[ref])) if ref.any() else 1.0
        norm = np.where(finite, rms / np.float32(med), np.float32(RMS_CLIP))
        planes.append(np.clip(norm, 0.0, RMS_CLIP).astype(np.float32))
        planes.append(b.astype(np.float32))
    if len(planes) != channels:
        raise ValueError(f"cannot build a {channels}-channel input (known: 1 or 3)")
    return np.stack(planes)


#: largest automatic CPU tile (px a side); larger frames are tiled with overlap
CPU_MAX_TILE = 2048


class TiledPredictor:
    """Batched, tiled prediction of a whole-frame probability map with one network.

    ``predict(planes)`` takes ``[C, ny, nx]`` float32 planes and returns the stitched
    foreground probability ``[ny, nx]`` float32. The model is moved to ``device``, put in
    eval mode, optionally compiled; CUDA uses bf16 autocast and channels-last.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        tile: int | None = 512,
        overlap: int = 64,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        compile: bool = False,
        amp: bool = True,
    ) -> None:
        if tile is not None and (tile < 16 or tile % 16):
            raise ValueError(f"tile must be a multiple of 16 (>= 16), got {tile}")
        self.device = resolve_device(device)
        # tile=None: automatic. On CUDA 1024² tiles batched to fill the memory; on CPU one
        # tile over the whole frame (up to CPU_MAX_TILE px a side), which avoids computing
        # overlaps twice: 1.8-2x faster than 512² tiles for a 1600² frame on 2 cores.
        self.auto_tile = tile is None
        self.tile = int(tile) if tile is not None else (1024 if self.device.type == "cuda" else 0)
        self.overlap = int(overlap)
        self.amp = bool(amp) and self.device.type == "cuda"
        if self.device.type == "cpu":
            configure_cpu_threads()
        model = model.to(self.device).eval()
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if compile:
            model = torch.compile(model)  # type: ignore[assignment]
        self.model = model
        self._batch_size = batch_size

    def _autocast(self) -> Any:
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def batch_size(self, channels: int) -> int:
        """Batch size: the user's, else 4 on CPU, else from free GPU memory (1..64)."""
        if self._batch_size:
            return int(self._batch_size)
        if self.device.type != "cuda":
            self._batch_size = 4
            return 4
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        x = torch.zeros(2, channels, self.tile, self.tile, device=self.device)
        x = x.to(memory_format=torch.channels_last)
        with torch.no_grad(), self._autocast():
            predict_proba(self.model, x)
        per_sample = max((torch.cuda.max_memory_allocated(self.device) - base) / 2.0, 1.0)
        free, _ = torch.cuda.mem_get_info(self.device)
        bs = int(np.clip(0.6 * free / per_sample, 1, 64))
        self._batch_size = bs
        log.info("CUDA batch size %d (%.0f MiB per tile)", bs, per_sample / 2**20)
        return bs

    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, tile, tile]`` float32 for input tiles ``[N, C, tile, tile]``."""
        bs = self.batch_size(tiles.shape[1])
        out = np.empty((tiles.shape[0], tiles.shape[2], tiles.shape[3]), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            for i in range(0, tiles.shape[0], bs):
                x = torch.from_numpy(np.ascontiguousarray(tiles[i : i + bs])).to(
                    self.device, non_blocking=True
                )
                if self.device.type == "cuda":
                    x = x.to(memory_format=torch.channels_last)
                p = predict_proba(self.model, x)
                out[i : i + bs] = p[:, 0].float().cpu().numpy()
        return out

    def predict(self, planes: np.ndarray) -> np.ndarray:
        """Stitched probability map ``[ny, nx]`` for whole-frame planes ``[C, ny, nx]``."""
        planes = np.asarray(planes, dtype=np.float32)
        if planes.ndim == 2:
            planes = planes[None]
        tile = self.tile
        if tile == 0:  # automatic on CPU: the whole frame in one tile when it fits
            tile = min(CPU_MAX_TILE, -(-max(planes.shape[-2:]) // 16) * 16)
        # one tile covers the frame: no overlap needed; else keep it below half a tile
        overlap = 0 if tile >= max(planes.shape[-2:]) else min(self.overlap, tile // 2 - 1)
        tiler = Tiler(planes.shape[-2:], tile=tile, overlap=overlap)
        tiles = tiler.split(planes)  # [N, C, t, t]
        return tiler.stitch(self.predict_tiles(tiles))
