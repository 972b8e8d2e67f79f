"""``atd_dl.process_tuning``: one OpenBLAS thread unless the user chose, set before numpy."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = (
    "import os; from atd_dl.process_tuning import tune_process; tune_process(); "
    "print(os.environ.get('OPENBLAS_NUM_THREADS'))"
)


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if env_value is not None:
        env["OPENBLAS_NUM_THREADS"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_one_blas_thread_by_default_and_the_users_choice_wins() -> None:
    assert _run(None) == "1"
    assert _run("3") == "3"


def test_the_cli_does_not_import_numpy_before_tuning() -> None:
    code = "import sys, atd_dl.cli; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


FAST_EXIT = """
import atexit, sys, threading, time
from pathlib import Path
from atd_dl.process_tuning import fast_exit
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
if len(sys.argv) > 2:  # a non-daemon thread still working: the exit must wait for it
    threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done"))).start()
sys.stdout.write("unflushed output")
fast_exit(3)
"""


def test_fast_exit_flushes_runs_atexit_and_waits_for_working_threads(tmp_path) -> None:
    for args, thread_file in (([], False), (["thread"], True)):
        proc = subprocess.run(
            [sys.executable, "-c", FAST_EXIT, str(tmp_path), *args],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 3, proc.stderr
        assert proc.stdout == "unflushed output"
        assert (tmp_path / "atexit").read_text() == "ran"
        assert (tmp_path / "thread").exists() == thread_file
        (tmp_path / "atexit").unlink()


def test_gc_paused_for_start_up_then_frozen_and_back_on() -> None:
    code = (
        "import gc; from atd_dl.process_tuning import pause_gc, settle_gc; "
        "pause_gc(); off = not gc.isenabled(); import numpy; settle_gc(); "
        "print(off, gc.isenabled(), gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]
