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
