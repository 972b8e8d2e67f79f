"""Network inference on whole frames: model loading, engine and device set-up, tiled prediction.

The network sees exactly what it saw in training (``docs/DESIGN.md``, "Enhancement"):
the input planes of the whole frame are built once, cut into overlapping tiles with
:class:`atd_dl.prep.partition.Tiler` (padded where the frame is smaller than a tile),
predicted in batches, and stitched back so that each output pixel comes from the tile in
which it lies farthest from the tile edges: the probability map has no seams and a star
on a tile border is one component, found once.

Engines (``engine=``): ``"onnx"`` — ONNX Runtime on the CPU, the model folder's
``model.onnx`` (:mod:`atd_dl.detect.onnx_engine`); ``"torch"`` — PyTorch, CPU
(channels-last memory, all cores unless ``OMP_NUM_THREADS`` is set) or CUDA (bf16
autocast, channels-last, batch size from the free GPU memory, optional ``torch.compile``).
``"auto"`` (default): ONNX Runtime when the device is the CPU and the folder has a
``model.onnx`` made from its weights, else PyTorch. Both give the same probabilities
within 1e-5 (tests/test_engines.py); docs/performance.md has the measurements.

Tiles on the CPU are at most :data:`CPU_MAX_TILE` px a side and shaped to the frame
(:func:`atd_dl.prep.partition.plan_tile_shape`), which bounds memory for any frame size
and keeps a 50 x 4000 strip close to its own pixel count.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from atd_dl.detect.onnx_engine import OnnxNetwork, cpu_threads, load_onnx_network
from atd_dl.errors import InputError
from atd_dl.prep.partition import DETECT_OVERLAP, Tiler, plan_tile_shape

if TYPE_CHECKING:  # torch is imported only when the PyTorch engine runs
    import torch
    from torch import nn

log = logging.getLogger(__name__)

ENGINES = ("auto", "onnx", "torch")


def cuda_available() -> bool:
    """Whether a CUDA device is usable, without importing torch on machines with no NVIDIA
    driver (importing torch costs seconds and hundreds of MB)."""
    if "torch" not in sys.modules:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and visible.strip() in ("", "-1"):
            return False
        if not Path("/proc/driver/nvidia/gpus").is_dir() and not Path("/dev/nvidia0").exists():
            return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available else CPU; unknown or absent CUDA raises."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(None, f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, f"device {device!r} requested but CUDA is not available")
    return dev


def device_kind(device: Any) -> str:
    """``"cpu"`` or ``"cuda"`` for a device (string, torch device, ``None``/``"auto"``
    resolved), without importing torch when the answer is the CPU."""
    if device is None or str(device) == "auto":
        return "cuda" if cuda_available() else "cpu"
    return "cpu" if str(device).startswith("cpu") else "cuda"


def configure_cpu_threads() -> int:
    """Use every available core for PyTorch CPU inference (unless ``OMP_NUM_THREADS`` is set)."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = cpu_threads()
    torch.set_num_threads(n)
    return n


def load_detector(
    path: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    engine: str = "auto",
) -> tuple[Any, dict[str, Any]]:
    """Load a model folder, a shipped model by name (default: ``default``) or a ``.ckpt``.

    Returns ``(network, meta)``: an :class:`~atd_dl.detect.onnx_engine.OnnxNetwork` when
    ``engine`` resolves to ONNX Runtime (see the module docstring), else a torch module in
    eval mode on ``device``. ``meta`` as from
    :func:`atd_dl.models.model_folder.read_model_meta` (``name``, ``kwargs``, ``input``,
    ``threshold``, ``path`` ...) plus ``engine``. A checkpoint carries no tuned threshold:
    ``meta["threshold"]`` is 0.5 and ``meta["threshold_source"]`` says so.
    """
    from atd_dl.models import model_folder as mf

    if engine not in ENGINES:
        raise InputError(None, f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    p = mf.resolve_model_dir(path)
    if engine != "torch" and p.is_dir():
        network = _onnx_network(p, engine, device)
        if network is not None:
            meta = {**mf.read_model_meta(p), "engine": "onnxruntime"}
            meta.setdefault("threshold_source", "thresholds.json")
            return network, meta
    model, meta = _load_torch(p)
    dev = resolve_device(device)
    return model.to(dev).eval(), {**meta, "engine": "torch"}


def _onnx_network(folder: Path, engine: str, device: Any) -> OnnxNetwork | None:
    """The folder's ONNX network when ``engine`` allows it on this device, else None
    (``engine="onnx"`` raises instead, naming what is missing)."""
    if device_kind(device) != "cpu":
        if engine == "onnx":
            raise InputError(folder, "the onnx engine runs on the CPU only (use --device cpu)")
        return None
    network = load_onnx_network(folder)
    if network is None and engine == "onnx":
        raise InputError(
            folder / "model.onnx",
            "no usable ONNX model (missing, stale or onnxruntime not installed; "
            f"run: atd-dl export {folder})",
        )
    return network


def _load_torch(p: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A torch module (eval mode, CPU) and its meta from a model folder or a checkpoint."""
    from atd_dl.models import model_folder as mf
    from atd_dl.models.registry import build_model

    if p.is_dir():
        model, meta = mf.load_model_folder(p, map_location="cpu")
        meta = dict(meta)
        meta.setdefault("threshold_source", "thresholds.json")
        return model, meta
    if not p.is_file():
        raise InputError(p, "model not found (expected a model folder or a .ckpt file)")
    ckpt = mf.load_checkpoint(p)
    name, kwargs = mf.checkpoint_model_spec(ckpt)
    if name is None:
        raise InputError(p, "checkpoint records no model name (model_spec); export a model folder")
    model = build_model(name, **kwargs)
    try:
        model.load_state_dict(mf.load_checkpoint_weights(p), strict=True)
    except RuntimeError as err:
        raise InputError(p, f"weights do not fit {name}: {str(err).splitlines()[0]}") from None
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
    return model.eval(), meta


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
    (ADU) normalised by :func:`atd_dl.prep.network_input.normalised_rms` and the bad-pixel
    mask (1 = unusable): :func:`atd_dl.prep.network_input.zscale_planes`, the function
    ``atd-dl prep`` (aux files) and the training data module use too.
    """
    from atd_dl.prep.network_input import normalised_rms, zscale_planes

    if channels >= 3 and background_rms is None:
        raise ValueError("a noise-aware model needs the background rms map")
    norm = None if background_rms is None else normalised_rms(background_rms, bad)
    return zscale_planes(image8, channels=channels, norm_rms=norm, bad=bad)


#: largest automatic CPU tile (px a side): bounds memory for any frame size (ONNX Runtime
#: holds ~0.35 GB of activations for the shipped network at 576² against ~0.7 GB at 832²,
#: at the same CPU time per pixel); larger frames are tiled with overlap (a 1600² frame:
#: nine 560² tiles, 10 % more pixels than the frame)
CPU_MAX_TILE = 640


def tile_multiple(meta: dict[str, Any]) -> int:
    """Side multiple for a model's tiles: ``2**depth`` of a U-Net-like network (its input is
    padded to that internally), else 16."""
    depth = meta.get("kwargs", {}).get("depth") if isinstance(meta.get("kwargs"), dict) else None
    return 2 ** int(depth) if isinstance(depth, int) and 0 <= depth <= 6 else 16


#: the image flips averaged at inference for each ``symmetries`` count (axes of a 2-D map
#: flipped; () = as it is): none, left-right, and all four flips (the 180-degree rotation)
FLIP_SETS: dict[int, tuple[tuple[int, ...], ...]] = {
    1: ((),),
    2: ((), (1,)),
    4: ((), (1,), (0,), (0, 1)),
}


class TiledPredictor:
    """Batched, tiled prediction of a whole-frame probability map with one network.

    ``predict(planes)`` takes ``[C, ny, nx]`` float32 planes and returns the stitched
    foreground probability ``[ny, nx]`` float32. ``model`` is a torch module (moved to
    ``device``, eval mode, channels-last, optionally compiled; CUDA uses bf16 autocast) or
    an :class:`~atd_dl.detect.onnx_engine.OnnxNetwork` (CPU).
    """

    def __init__(
        self,
        model: Any,
        *,
        tile: int | None = 512,
        overlap: int = DETECT_OVERLAP,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        compile: bool = False,
        amp: bool = True,
        multiple: int = 16,
        symmetries: int = 1,
    ) -> None:
        if tile is not None and (tile < 16 or tile % 16):
            raise ValueError(f"tile must be a multiple of 16 (>= 16), got {tile}")
        if symmetries not in FLIP_SETS:
            raise ValueError(f"symmetries must be one of {sorted(FLIP_SETS)}, got {symmetries}")
        #: the probability map is the mean over this many flips of the frame (1: none)
        self.symmetries = int(symmetries)
        self.onnx = isinstance(model, OnnxNetwork)
        if self.onnx:
            if device_kind(device) != "cpu":
                raise InputError(model.path, "the onnx engine runs on the CPU only")
            self.device: Any = "cpu"
        else:
            self.device = resolve_device(device)
        on_cuda = str(self.device).startswith("cuda")
        # tile=None: automatic. On CUDA 1024² tiles batched to fill the memory; on CPU tiles
        # shaped to the frame, at most CPU_MAX_TILE a side (0 marks "plan per frame")
        self.tile = int(tile) if tile is not None else (1024 if on_cuda else 0)
        self.overlap = int(overlap)
        #: automatic CPU tiles are multiples of this (the network's 2**depth): a 50-row
        #: strip is cut into 56-row tiles for a depth-3 network, not 64-row ones
        self.multiple = int(multiple)
        self.amp = bool(amp) and on_cuda
        self._batch_size = batch_size
        self.model = model if self.onnx else self._torch_model(model, compile)

    def _torch_model(self, model: nn.Module, compile: bool) -> nn.Module:
        import torch

        if self.device.type == "cpu":
            configure_cpu_threads()
        # channels-last: same output, about 1.7x faster on CPU and faster on CUDA
        model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        if compile:
            model = torch.compile(model)  # type: ignore[assignment]
        return model

    def _autocast(self) -> Any:
        import torch

        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def batch_size(self, channels: int) -> int:
        """Batch size: the user's, else on the ONNX engine as many tiles as it runs side by
        side, else 1 on CPU (tiles are large), else from free GPU memory (1..64)."""
        if self._batch_size:
            return int(self._batch_size)
        if self.onnx or self.device.type != "cuda":
            self._batch_size = cast(OnnxNetwork, self.model).parallel if self.onnx else 1
            return self._batch_size
        import torch

        from atd_dl.models.inference import predict_proba

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

    def tile_probabilities(
        self, tiles: Iterable[np.ndarray], channels: int
    ) -> Iterator[np.ndarray]:
        """Probability ``[ty, tx]`` float32 of each input tile ``[C, ty, tx]``, in order.

        ONNX Runtime runs the tiles side by side, one core each, through one thread pool per
        call; PyTorch takes them :meth:`batch_size` at a time. Tiles are read lazily, so
        memory holds one batch (or one tile per core) beside the caller's arrays."""
        if self.onnx:
            network = cast(OnnxNetwork, self.model)
            for tile_prob in network.map_tiles(t[None] for t in tiles):
                yield tile_prob[0]
            return
        import torch

        from atd_dl.models.inference import predict_proba

        bs = self.batch_size(channels)
        it = iter(tiles)
        with torch.inference_mode(), self._autocast():
            while batch := list(itertools.islice(it, bs)):
                x = torch.from_numpy(np.stack(batch)).to(self.device, non_blocking=True)
                x = x.to(memory_format=torch.channels_last)
                yield from predict_proba(self.model, x)[:, 0].float().cpu().numpy()

    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, ty, tx]`` float32 for input tiles ``[N, C, ty, tx]``."""
        out = np.empty((tiles.shape[0], tiles.shape[2], tiles.shape[3]), dtype=np.float32)
        for i, tile_prob in enumerate(self.tile_probabilities(tiles, tiles.shape[1])):
            out[i] = tile_prob
        return out

    def tiler(self, shape: tuple[int, ...]) -> Tiler:
        """The tiling of a frame of ``shape``: the fixed square tile, or on the CPU
        automatic tiles shaped to the frame (:func:`plan_tile_shape`)."""
        if self.tile == 0:
            tile_shape = plan_tile_shape(shape, CPU_MAX_TILE, self.overlap, self.multiple)
            return Tiler(shape, tile=tile_shape, overlap=self.overlap)
        # one tile covers the frame: no overlap needed; else keep it below half a tile
        tile = self.tile
        overlap = 0 if tile >= max(shape[-2:]) else min(self.overlap, tile // 2 - 1)
        return Tiler(shape, tile=tile, overlap=overlap)

    def predict(self, planes: np.ndarray) -> np.ndarray:
        """Stitched probability map ``[ny, nx]`` for whole-frame planes ``[C, ny, nx]``:
        with ``symmetries`` > 1 the mean of the maps of the flipped frame (:data:`FLIP_SETS`)
        flipped back, which averages out the network's own response to the noise pattern
        (the frame's noise is the same seen flipped; the network's answer to it is not).

        Tiles are cut as they are predicted (:meth:`tile_probabilities`), so memory holds
        the frame's planes, its probability map and one batch of tiles."""
        planes = np.asarray(planes, dtype=np.float32)
        if planes.ndim == 2:
            planes = planes[None]
        if self.symmetries == 1:
            return self._predict_once(planes)
        total = np.zeros(planes.shape[-2:], dtype=np.float64)
        for axes in FLIP_SETS[self.symmetries]:
            flipped = np.ascontiguousarray(np.flip(planes, axis=tuple(a + 1 for a in axes)))
            total += np.flip(self._predict_once(flipped), axis=axes)
        return (total / self.symmetries).astype(np.float32)

    def _predict_once(self, planes: np.ndarray) -> np.ndarray:
        tiler = self.tiler(planes.shape[-2:])
        ty, tx = tiler.tile_shape
        padded = tiler.pad(planes)
        prob = np.empty(planes.shape[-2:], dtype=np.float32)
        views = (padded[:, y0 : y0 + ty, x0 : x0 + tx] for y0, x0 in tiler.boxes)
        for i, tile_prob in enumerate(self.tile_probabilities(views, planes.shape[0])):
            tiler.place(prob, i, tile_prob)
        return prob
