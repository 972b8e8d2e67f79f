"""The Lightning DDP paths on the CPU (gloo), two processes: distributed detection over
many frames (``infer.py distributed.enabled=true``) and a synchronised training step.

Lightning's ``strategy=ddp`` starts the other ranks by running the launching script again
(``sys.argv``), so each run is a small script (tests/_ddp_detect.py, tests/_ddp_train.py)
started in its own process group, with a free ``MASTER_PORT``, one thread per rank and a
time limit; the group is killed when the limit passes. This is the route of the SLURM
launcher (docs/detect.md, "Many GPUs, many nodes") with gloo instead of NCCL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atd_dl.detect.catalog_io import read_catalog
from atd_dl.sim import preset_config, simulate_field, write_field

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_ranks(script: str, *args: object, cwd: Path) -> str:
    """Run ``script`` (which starts the second rank itself); its output. The whole process
    group is killed after :data:`TIMEOUT_S`."""
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONWARNINGS": "ignore",
    }
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_NTASKS", "SLURM_JOB_ID"):
        env.pop(k, None)  # the launcher sets them for the ranks it starts
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{script} did not finish in {TIMEOUT_S} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    return out


def test_distributed_detection_two_cpu_ranks_each_frame_once_same_catalogs(tmp_path, monkeypatch):
    frames = [
        write_field(
            simulate_field(preset_config("paper", size=128), seed=40 + k), tmp_path / f"s{k}"
        )["frame"]
        for k in range(3)
    ]
    out = _run_ranks("_ddp_detect.py", "default", tmp_path / "ddp", 2, *frames, cwd=tmp_path)
    assert "processed by more than one rank" not in out
    assert (tmp_path / "ddp" / "done.rank0").is_file() and (
        tmp_path / "ddp" / "done.rank1"
    ).is_file()
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    stems = [f.name.removesuffix(".fits") for f in frames]
    assert [r["stem"] for r in summary["frames"]] == stems  # each frame once, input order
    assert {r["rank"] for r in summary["frames"]} == {0, 1}  # both ranks did frames
    assert summary["n_ok"] == 3 and summary["jobs"] == 2
    assert not list((tmp_path / "ddp").glob("summary.rank*.json"))  # merged by rank 0

    # the same frames in one process, PyTorch engine, the single-process batch, one thread
    # as in each rank (another thread count sums the convolutions in another order)
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    from atd_dl.detect.batch import detect_files
    from atd_dl.detect.catalog_io import OutputConfig
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector

    try:
        net, meta = load_detector("default", device="cpu", engine="torch")
        one = detect_files(
            frames,
            Detector(net, meta, DetectConfig(device="cpu")),
            OutputConfig(tmp_path / "one"),
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    assert one.n_ok == 3
    assert summary["n_detections"] == one.n_detections > 0
    for stem in stems:
        a = read_catalog(tmp_path / "one" / f"{stem}.cat.fits")
        b = read_catalog(tmp_path / "ddp" / f"{stem}.cat.fits")
        assert a.colnames == b.colnames and len(a) == len(b)
        for c in a.colnames:
            assert np.array_equal(np.asarray(a[c]), np.asarray(b[c]), equal_nan=True), c


def test_ddp_training_step_is_synchronised_on_two_cpu_ranks(tmp_path):
    sys.path.insert(0, str(HERE))
    from _train_helpers import make_tiny_dataset

    dataset = make_tiny_dataset(tmp_path / "ds", size=48)
    _run_ranks("_ddp_train.py", dataset, tmp_path / "train", 2, cwd=tmp_path)
    docs = [json.loads((tmp_path / "train" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [d["rank"] for d in docs] == [0, 1] and all(d["world_size"] == 2 for d in docs)
    assert docs[0]["pid"] != docs[1]["pid"]
    assert docs[0]["global_step"] == docs[1]["global_step"] == 2
    assert docs[0]["before"] == docs[1]["before"]  # same initial weights (seeded)
    assert docs[0]["after"] != docs[0]["before"]  # the optimiser stepped
    assert docs[0]["after"] == docs[1]["after"]  # gradients averaged: equal weights
