"""Kill-and-resume (issue 11): ``kill -9`` of detect, prep and simulate mid-run, then rerun.

Each test starts the verb in a subprocess on several small simulated frames, SIGKILLs it
as soon as its first output appears, and checks that (a) the unchanged rerun (a new
process, as a user would start it) completes, reports the finished frames as "skipped
(unchanged)", leaves no partial file (every output readable, no ``*.tmp``) and gives the
same results as a clean uninterrupted run; (b) after one input changes, that frame is redone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

pytestmark = pytest.mark.slow

N_FRAMES = 6
N_PREP = 4  # prep is the slowest per frame
SIZE = 256


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``N_FRAMES`` simulated frames (frames/, catalogs/) of 256 px."""
    from atd_dl.sim import preset_config
    from atd_dl.sim.simulate import simulate_run

    root = tmp_path_factory.mktemp("kill_resume")
    simulate_run(preset_config("paper", size=SIZE), 5, root, N_FRAMES, progress=False)
    return root


def atd(argv: list[object], cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "ATD_DL_DEBUG"}
    return subprocess.Popen(
        [sys.executable, "-m", "atd_dl.cli", *map(str, argv)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def clean_run(argv: list[object]) -> None:
    """The uninterrupted reference run, in-process (no start-up cost)."""
    from atd_dl.cli import main

    assert main([str(a) for a in argv]) == 0


def run_to_end(argv: list[object], cwd: Path) -> tuple[int, str, str]:
    proc = atd(argv, cwd)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def kill_after_first(
    argv: list[object], cwd: Path, done: Callable[[], int], n_frames: int = N_FRAMES
) -> int:
    """Start ``argv``, SIGKILL it when ``done()`` (finished frames) first is >= 1; the
    number of finished frames after the kill, which must be fewer than all."""
    proc = atd(argv, cwd)
    t0 = time.monotonic()
    while done() < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 90, "no output appeared"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    n = done()
    assert 1 <= n < n_frames, f"not killed mid-run ({n} of {n_frames} frames done)"
    return n


def no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert not left, left


def change_pixels(path: Path) -> None:
    with fits.open(path) as hdul:
        data, header = hdul[0].data[::-1].copy(), hdul[0].header.copy()
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)


def same_tables(a: Path, b: Path) -> None:
    ta, tb = Table.read(a), Table.read(b)
    assert ta.colnames == tb.colnames and len(ta) == len(tb), (a, b)
    for name in ta.colnames:
        ca, cb = np.asarray(ta[name]), np.asarray(tb[name])
        if ca.dtype.kind in "fc":
            np.testing.assert_allclose(ca, cb, rtol=1e-6, atol=1e-9, equal_nan=True)
        else:
            assert (ca == cb).all(), (a, name)


# ----------------------------------------------------------------------------- detect


def test_detect_kill_and_resume(frames: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((frames / "frames").glob("*.fits")):
        (src / p.name).write_bytes(p.read_bytes())
    opts = ["--device", "cpu", "--no-progress"]
    clean_run(["detect", src, "--out", tmp_path / "clean", *opts])
    out = tmp_path / "det"

    def done() -> int:
        return len(list(out.glob("*.key.json"))) if out.is_dir() else 0

    n_done = kill_after_first(["detect", src, "--out", out, *opts], tmp_path, done)
    # (a) unchanged rerun: completes, finished frames skipped, nothing partial
    rc, stdout, err = run_to_end(["detect", src, "--out", out, *opts], tmp_path)
    assert rc == 0 and "Traceback" not in err, err
    assert stdout.count("skipped (unchanged)") == n_done + 1, stdout  # + the summary line
    no_temporaries(out)
    clean = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert sorted(p.name for p in out.iterdir()) == clean
    for cat in sorted((tmp_path / "clean").glob("*.cat.*")):
        same_tables(cat, out / cat.name)  # every catalog readable and equal to the clean run
    # (b) one frame's pixels change: that frame (only) is redone
    changed = sorted(src.glob("*.fits"))[0]
    change_pixels(changed)
    rc, stdout, err = run_to_end(["detect", src, "--out", out, *opts], tmp_path)
    assert rc == 0, err
    assert f"{changed}: redone (input changed)" in stdout, stdout
    assert stdout.count("skipped (unchanged)") == N_FRAMES - 1 + 1, stdout
    no_temporaries(out)


# ----------------------------------------------------------------------------- prep


def test_prep_kill_and_resume(frames: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((frames / "frames").glob("*.fits"))[:N_PREP]:
        (src / p.name).write_bytes(p.read_bytes())
    opts = ["--catalogs", frames / "catalogs", "--subfield-size", "64", "-q"]
    clean_run(["prep", src, "--out", tmp_path / "clean", *opts])
    out = tmp_path / "ds"

    def done() -> int:
        state = out / ".state"
        return len(list(state.glob("*.json"))) if state.is_dir() else 0

    n_done = kill_after_first(["prep", src, "--out", out, *opts], tmp_path, done, N_PREP)
    rc, stdout, err = run_to_end(["prep", src, "--out", out, *opts], tmp_path)
    assert rc == 0 and "Traceback" not in err, err
    assert f"{N_PREP - n_done} prepared, {n_done} skipped (unchanged)" in stdout, stdout
    no_temporaries(out)
    clean = tmp_path / "clean"
    assert (out / "manifest.csv").read_text() == (clean / "manifest.csv").read_text()
    for sub in ("images", "masks", "points"):
        names = sorted(p.name for p in (clean / sub).iterdir())
        assert sorted(p.name for p in (out / sub).iterdir()) == names, sub
        for name in names:  # byte-identical: nothing truncated or half-written
            assert (out / sub / name).read_bytes() == (clean / sub / name).read_bytes(), name
    changed = sorted(src.glob("*.fits"))[-1]
    change_pixels(changed)
    rc, stdout, err = run_to_end(["prep", src, "--out", out, *opts], tmp_path)
    assert rc == 0, err
    assert f"1 prepared, {N_PREP - 1} skipped (unchanged)" in stdout, stdout
    assert "redone (input changed" in stdout + err, stdout + err
    no_temporaries(out)


# ----------------------------------------------------------------------------- simulate


def test_simulate_kill_and_resume(tmp_path: Path) -> None:
    opts = ["--size", SIZE, "--n-frames", N_FRAMES, "--seed", "9", "--no-progress"]
    clean_run(["simulate", "--out", tmp_path / "clean", *opts])
    out = tmp_path / "sim"

    def done() -> int:
        folder = out / "frames"
        return len(list(folder.glob("*.fits"))) if folder.is_dir() else 0

    n_done = kill_after_first(["simulate", "--out", out, *opts], tmp_path, done)
    rc, stdout, err = run_to_end(["simulate", "--out", out, *opts], tmp_path)
    assert rc == 0 and "Traceback" not in err, err
    assert f"{N_FRAMES - n_done} written, {n_done} skipped (unchanged)" in stdout, stdout
    no_temporaries(out)
    clean = tmp_path / "clean"
    for sub in ("frames", "truth", "catalogs", "calib"):
        names = sorted(p.name for p in (clean / sub).iterdir())
        assert sorted(p.name for p in (out / sub).iterdir()) == names, sub
    for name in sorted(p.name for p in (clean / "frames").iterdir()):
        a, b = fits.getdata(clean / "frames" / name), fits.getdata(out / "frames" / name)
        assert np.array_equal(a, b), name  # frame k depends only on (seed, k)
    for sub in ("truth", "catalogs"):
        for p in sorted((clean / sub).iterdir()):
            same_tables(p, out / sub / p.name)
    # simulate has no input frames: a frame whose files went missing is made again,
    # and other settings are refused (test_fault_corpus.test_simulate_refuses_other_settings)
    gone = sorted((out / "truth").iterdir())[0]
    gone.unlink()
    rc, stdout, err = run_to_end(["simulate", "--out", out, *opts], tmp_path)
    assert rc == 0 and f"1 written, {N_FRAMES - 1} skipped (unchanged)" in stdout, stdout
    same_tables(clean / "truth" / gone.name, gone)
