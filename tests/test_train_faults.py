"""Fault corpus for ``atd-dl train`` (issue 11): bad data folders and checkpoints.

Each case runs ``atd_dl.cli.main(["train", ...])`` in-process (Hydra included) and
asserts: a non-zero exit code, exactly one error line naming the file and the cause, no
"Traceback", and no run folder left behind (the run fails before its first checkpoint).
Every fault is found before the trainer starts, so the whole module runs in seconds.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")
pytest.importorskip("hydra")

from _train_helpers import make_tiny_dataset  # noqa: E402

from atd_dl.cli import main  # noqa: E402
from atd_dl.errors import InputError  # noqa: E402

_ERR_RE = re.compile(r"^(error:|ERROR:|atd-dl( [\w-]+)?: error:)")
BASE = ["experiment=quick", "trainer.max_epochs=1", "data.crop_size=null", "export.onnx=false",
        "logger=csv", "callbacks=none"]  # fmt: skip


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]  # pragma: no cover - must never run
        return (os.system, ("touch /tmp/atd_dl_pwned",))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good tiny dataset and one broken copy per fault."""
    root = tmp_path_factory.mktemp("train_faults")
    good = make_tiny_dataset(root / "good", n_train=2, n_val=1, n_test=0, size=32, aux=False)
    f = {"root": root, "good": good, "missing": root / "no_such_dataset"}
    (root / "empty").mkdir()
    f["empty"] = root / "empty"
    for name in ("trunc", "nomask", "truncmask", "notpng"):
        f[name] = Path(shutil.copytree(good, root / name))
    img = f["trunc"] / "images" / "frame00_s1.png"
    img.write_bytes(img.read_bytes()[:60])
    (f["nomask"] / "masks" / "frame00_s2.png").unlink()
    mask = f["truncmask"] / "masks" / "frame00_s3.png"
    mask.write_bytes(mask.read_bytes()[:-12])
    (f["notpng"] / "images" / "frame00_s2.png").write_text("not a png")
    (root / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": _Evil()}))
    (root / "garbage.ckpt").write_bytes(b"\x00garbage" * 8)
    f.update(evil=root / "evil.ckpt", garbage=root / "garbage.ckpt")
    return f


def run_train(
    overrides: list[object], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    try:
        rc = main(["train", *BASE, f"hydra.run.dir={run_dir}", *map(str, overrides)])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if _ERR_RE.match(ln.strip())]


CASES: dict[str, tuple[Callable[[dict[str, Path]], list[object]], str]] = {
    "missing-data-dir": (
        lambda f: [f"data.data_dir={f['missing']}"],
        "no_such_dataset: dataset folder not found",
    ),
    "empty-data-dir": (lambda f: [f"data.data_dir={f['empty']}"], "manifest.csv not found"),
    "truncated-image": (
        lambda f: [f"data.data_dir={f['trunc']}"],
        "frame00_s1.png: truncated PNG",
    ),
    "not-a-png-image": (lambda f: [f"data.data_dir={f['notpng']}"], "frame00_s2.png: not a PNG"),
    "missing-mask": (lambda f: [f"data.data_dir={f['nomask']}"], "masks/frame00_s2.png: missing"),
    "truncated-mask": (
        lambda f: [f"data.data_dir={f['truncmask']}"],
        "masks/frame00_s3.png: truncated PNG",
    ),
    "missing-ckpt": (
        lambda f: [f"data.data_dir={f['good']}", f"ckpt_path={f['root'] / 'nope.ckpt'}"],
        "nope.ckpt: checkpoint not found",
    ),
    "hostile-ckpt": (
        lambda f: [f"data.data_dir={f['good']}", f"ckpt_path={f['evil']}"],
        "evil.ckpt: refusing to load",
    ),
    "garbage-ckpt": (
        lambda f: [f"data.data_dir={f['good']}", f"ckpt_path={f['garbage']}"],
        "garbage.ckpt: not a torch checkpoint",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_fault(
    case: str, data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides, fragment = CASES[case]
    run_dir = tmp_path / "run"
    rc, text = run_train(overrides(data), run_dir, capsys)
    assert rc != 0, text
    assert "Traceback" not in text, text
    lines = error_lines(text)
    assert len(lines) == 1 and fragment in lines[0], text
    assert not run_dir.exists(), sorted(run_dir.rglob("*"))  # no stale run folder
    assert not Path("/tmp/atd_dl_pwned").exists()


def test_train_fault_keeps_a_run_with_a_checkpoint(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"earlier epochs")
    rc, text = run_train([f"data.data_dir={data['missing']}"], run_dir, capsys)
    assert rc == 2 and len(error_lines(text)) == 1, text
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == b"earlier epochs"


def test_train_fault_debug_shows_the_traceback(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATD_DL_DEBUG", "1")
    with pytest.raises(InputError, match="evil.ckpt: refusing to load"):
        main(["train", *BASE, f"hydra.run.dir={tmp_path / 'run'}", f"data.data_dir={data['good']}",
              f"ckpt_path={data['evil']}"])  # fmt: skip


def test_worker_input_error_is_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    """A patch that is a complete PNG but cannot be decoded fails in a DataLoader worker;
    the RuntimeError torch raises in the main process becomes the worker's InputError."""
    from atd_dl.lit.datamodule import StarFieldDataset, sample_loader
    from atd_dl.lit.train_task import worker_input_errors

    bad = Path(shutil.copytree(data["good"], tmp_path / "bad"))
    png = bad / "images" / "frame00_s1.png"
    raw = bytearray(png.read_bytes())
    raw[40:-12] = np.zeros(len(raw) - 52, np.uint8).tobytes()  # IHDR/IEND kept, data zeroed
    png.write_bytes(bytes(raw))
    ds = StarFieldDataset(bad, ["frame00_s1"])
    with pytest.raises(InputError) as info, worker_input_errors():
        list(sample_loader(ds, 1, False, num_workers=1, pin_memory=False))
    assert str(info.value) == f"{png}: missing or unreadable image"


@pytest.mark.slow
def test_root_train_script_reports_one_line(tmp_path: Path) -> None:
    """`python train.py` (the Hydra script) ends a user error in one line, exit code 2,
    and leaves no run folder."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(repo / "train.py"), "experiment=quick",
         f"data.data_dir={tmp_path / 'nope'}", f"paths.log_dir={tmp_path / 'logs'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-1500:]
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith("nope: dataset folder not found")
    assert not list((tmp_path / "logs").rglob(".hydra"))
