"""ONNX Runtime inference: the CPU engine of ``atd-dl detect``.

Chosen by measurement (``benchmarks/bench_engines.py``, docs/performance.md): on CPU,
ONNX Runtime runs the shipped U-Net about 2x faster than PyTorch eager with channels-last
memory and about 4x faster than plain eager, with probabilities equal to PyTorch's within
1e-5, and detection then never imports torch (a few seconds and ~600 MB less per process).

A model folder carries ``model.onnx`` next to ``model.safetensors``; the ONNX file records
the SHA-256 of the safetensors weights it was exported from, and a file that does not match
the folder's weights is never used (the PyTorch engine runs instead). ``model.onnx`` is a
protobuf graph, not a pickle: loading it runs no code.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_output
from atd_dl.io.resume import file_sha256

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "model.safetensors"
#: metadata key in the ONNX file holding the SHA-256 of the exported safetensors weights
WEIGHTS_HASH_KEY = "atd_dl_weights_sha256"
#: ONNX operator set used for export
OPSET = 17


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` package can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(folder: str | Path) -> Path | None:
    """Write ``folder/model.onnx`` from the weights in ``folder/model.safetensors``.

    The network is rebuilt from the folder (so the ONNX graph holds exactly the weights the
    PyTorch engine loads, fp16 rounding included) and traced with dynamic batch, height and
    width. Returns the path, or None when the ``onnx`` package (needed to write the
    metadata) is not installed.
    """
    try:
        import onnx
    except ImportError:
        log.info("onnx not installed: %s has no model.onnx (PyTorch engine only)", folder)
        return None
    import torch

    from atd_dl.models.model_folder import load_model_folder

    folder = Path(folder)
    net, meta = load_model_folder(folder)
    channels = int(meta["kwargs"].get("in_channels", 1))
    example = torch.zeros(1, channels, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_output(folder / ONNX_FILE) as tmp, warnings.catch_warnings():
        # the tracer notes that input padding to a multiple of 2**depth is fixed at trace
        # time: inference tiles are always such multiples (plan_tile_shape, Tiler sizes)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            net.eval(),
            (example,),
            str(tmp),
            input_names=["planes"],
            output_names=["logits"],
            dynamic_axes={"planes": axes, "logits": axes},
            opset_version=OPSET,
            dynamo=False,
        )
        graph = onnx.load(str(tmp))
        entry = graph.metadata_props.add()
        entry.key, entry.value = WEIGHTS_HASH_KEY, file_sha256(folder / WEIGHTS_FILE)
        onnx.save(graph, str(tmp))
    return folder / ONNX_FILE


def usable_onnx(folder: str | Path) -> Path | None:
    """``folder/model.onnx`` when :func:`load_onnx_network` would use it, else None."""
    network = load_onnx_network(folder, threads=1)
    return None if network is None else network.path


def cpu_threads() -> int:
    """Threads for CPU inference: ``OMP_NUM_THREADS`` when set, else every usable core."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class OnnxNetwork:
    """A model folder's network run by ONNX Runtime on the CPU.

    Calling it maps input planes ``[N, C, H, W]`` float32 (H, W multiples of 16) to the
    foreground probability ``[N, H, W]`` float32: softmax of class 1 for K >= 2 output
    classes, the sigmoid of the single logit for K = 1 (as
    :func:`atd_dl.models.inference.logits_to_prob`).
    """

    device = "cpu"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        #: tiles run at once, one core each: ONNX Runtime's threads inside one convolution
        #: of this small network cost ~25 % more CPU than whole tiles side by side
        self.parallel = max(1, int(threads or cpu_threads()))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise InputError(
                self.path, f"not a readable ONNX model ({str(err).splitlines()[0]})"
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        #: the metadata written by :func:`export_onnx` (weights SHA-256 ...)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(planes, dtype=np.float32)
        logits = self.session.run(None, {self.input_name: x})[-1]
        return logits_to_probability(logits)

    def map_tiles(self, tiles: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Probabilities ``[1, H, W]`` of each ``[1, C, H, W]`` tile, in order, computed
        :attr:`parallel` at a time (ONNX Runtime releases the GIL; one session serves all)."""
        if self.parallel == 1:
            yield from map(self, tiles)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            yield from pool.map(self, tiles)

    def __repr__(self) -> str:
        return f"OnnxNetwork({str(self.path)!r})"


def logits_to_probability(logits: np.ndarray) -> np.ndarray:
    """Foreground probability ``[N, H, W]`` float32 from logits ``[N, K, H, W]`` (numpy)."""
    z = np.asarray(logits, dtype=np.float32)
    if z.shape[1] == 1:
        return (1.0 / (1.0 + np.exp(-z[:, 0]))).astype(np.float32)
    # softmax of class 1 = 1 / sum_k exp(z_k - z_1); an overflow gives probability 0
    with np.errstate(over="ignore"):
        if z.shape[1] == 2:  # the same sum, exp(0) = 1 written out: one exp per pixel
            return (1.0 / (np.exp(z[:, 0] - z[:, 1]) + np.float32(1.0))).astype(np.float32)
        return (1.0 / np.exp(z - z[:, 1:2]).sum(axis=1)).astype(np.float32)


def load_onnx_network(folder: str | Path, threads: int | None = None) -> OnnxNetwork | None:
    """The folder's :class:`OnnxNetwork` when ``model.onnx`` exists, onnxruntime is installed
    and the file was exported from the folder's current weights; else None (with a log line
    when the file is stale). One ONNX Runtime session serves the check and the inference."""
    folder = Path(folder)
    path = folder / ONNX_FILE
    if not path.is_file() or not onnxruntime_available():
        return None
    network = OnnxNetwork(path, threads)
    if network.metadata.get(WEIGHTS_HASH_KEY) != file_sha256(folder / WEIGHTS_FILE):
        log.warning(
            "%s: not exported from this folder's weights; using PyTorch "
            "(refresh it with: atd-dl export %s)",
            path,
            folder,
        )
        return None
    return network
