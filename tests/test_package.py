"""Package-level behaviour: CLI wiring and the science/framework split."""

from __future__ import annotations

import subprocess
import sys

import pytest

from atd_dl.cli import build_parser, main

SCIENCE_PACKAGES = [
    "atd_dl.io",
    "atd_dl.prep",
    "atd_dl.labels",
    "atd_dl.sim",
    "atd_dl.data",
    "atd_dl.detect",
    "atd_dl.evaluate",
    "atd_dl.baselines",
]


def test_cli_lists_core_verbs() -> None:
    parser = build_parser()
    verbs = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for verb in ["simulate", "prep", "train", "detect", "evaluate", "benchmark", "models", "demo"]:
        assert verb in verbs, f"missing verb {verb}"


def test_cli_without_verb_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2


@pytest.mark.parametrize("package", SCIENCE_PACKAGES)
def test_science_modules_do_not_import_lightning_or_hydra(package: str) -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module('{package}')\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('lightning', 'pytorch_lightning', 'hydra') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{package} pulls in {out.stdout.strip()}"
