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


# ------------------------------------------------------------------ one owner per contract

#: the CLI verb protocol: every atd_dl/commands module defines register/run, entry points main
VERB_PROTOCOL = {"register", "run", "main"}


def test_public_names_are_defined_once() -> None:
    """A module-level public function or class name means one thing in the package."""
    import ast
    from collections import defaultdict
    from pathlib import Path

    import atd_dl

    root = Path(atd_dl.__file__).parent
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not node.name.startswith("_") and node.name not in VERB_PROTOCOL:
                    where[node.name].append(str(path.relative_to(root)))
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, f"defined in several modules (rename one or import it): {twice}"


def test_fits_names_have_one_owner() -> None:
    from atd_dl.data import builder
    from atd_dl.detect import pipeline
    from atd_dl.evaluate import references
    from atd_dl.io.paths import FITS_SUFFIXES, frame_stem, is_fits_name

    assert builder.FITS_SUFFIXES is pipeline.FITS_SUFFIXES is references.FITS_SUFFIXES
    assert builder.frame_stem is pipeline.frame_stem is frame_stem
    for suffix in FITS_SUFFIXES:
        assert frame_stem(f"a/b/f_01{suffix}") == "f_01"
        assert frame_stem(f"F_01{suffix.upper()}") == "F_01" and is_fits_name(f"x{suffix}")
    assert frame_stem("x.fts.gz") == "x" and frame_stem("cat.ecsv") == "cat"
    assert frame_stem("t.ecsv", (".ecsv", *FITS_SUFFIXES)) == "t" and not is_fits_name("t.png")


def test_core_dependencies_leave_training_and_baselines_to_extras() -> None:
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    project = meta["project"]

    def names(reqs: list[str]) -> set[str]:
        return {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in reqs}

    core = names(project["dependencies"])
    extras = project["optional-dependencies"]
    optional = {"lightning", "hydra-core", "tensorboard", "sep", "optuna", "submitit"}
    assert not core & optional, core & optional
    assert {"lightning", "hydra-core", "tensorboard"} <= names(extras["train"])
    assert {"optuna", "submitit", "hydra-optuna-sweeper"} <= names(extras["hpc"])
    assert "sep" in names(extras["baselines"])
    assert set(extras["all"]) == {"atd-dl[train,hpc,baselines]"}


def test_missing_optional_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import atd_dl.commands.train as train_cmd

    def no_lightning(args: object) -> int:
        raise ModuleNotFoundError("No module named 'lightning'", name="lightning")

    monkeypatch.setattr(train_cmd, "run", no_lightning)
    assert main(["train", "experiment=quick"]) == 2
    assert "pip install 'atd-dl[train]'" in capsys.readouterr().err
