"""Bad CLI input ends in one clear line and a non-zero exit, never a traceback.

Numeric options are range-checked by argparse ``type=`` factories
(:mod:`atd_dl.commands._validate`), output paths are checked for writability before
any work starts, ``$ATD_DL_SEXTRACTOR`` must point at an executable, and ``--debug`` /
``ATD_DL_DEBUG=1`` bring the traceback back for developers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atd_dl.cli import main
from atd_dl.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``atd-dl ARGV`` in-process → (exit code, stderr); argparse errors exit via SystemExit."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, fragment: str) -> None:
    assert rc != 0, err
    assert "Traceback" not in err, err
    assert fragment in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("usage:")]
    # argparse prints a usage block, then the one error line
    assert lines[-1].startswith(("atd-dl", "error:")), err
    assert fragment in lines[-1], err


# (verb args, expected fragment of the error line); "{tmp}" is a fresh tmp folder
BAD_OPTIONS: list[tuple[list[str], str]] = [
    # detect
    (["detect", "f.fits", "--gain", "0"], "argument --gain: must be a number > 0, got '0'"),
    (["detect", "f.fits", "--gain", "-1"], "argument --gain: must be a number > 0, got '-1'"),
    (["detect", "f.fits", "--gain", "nan"], "argument --gain: expected a finite number"),
    (["detect", "f.fits", "--gain", "abc"], "argument --gain: expected a number, got 'abc'"),
    (["detect", "f.fits", "--threshold", "1.5"], "argument --threshold: must be a number in (0, 1)"),
    (["detect", "f.fits", "--threshold", "0"], "argument --threshold: must be a number in (0, 1)"),
    (["detect", "f.fits", "--tile", "17"], "argument --tile: must be a multiple of 16 in [16, 8192]"),
    (["detect", "f.fits", "--tile", "0"], "argument --tile: must be a multiple of 16"),
    (["detect", "f.fits", "--tile", "1.5"], "argument --tile: expected an integer"),
    (["detect", "f.fits", "--device", "tpu"], "argument --device: must be one of auto, cpu, cuda"),
    (["detect", "f.fits", "--device", "cuda:x"], "argument --device: must be one of"),
    (["detect", "f.fits", "--workers", "0"], "argument --workers: must be an integer in [1, 64]"),
    (["detect", "f.fits", "--workers", "65"], "argument --workers: must be an integer in [1, 64]"),
    (["detect", "f.fits", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    (["detect", "f.fits", "--overlap", "-1"], "argument --overlap: must be an integer >= 0"),
    (["detect", "f.fits", "--edge", "-1"], "argument --edge: must be a number >= 0"),
    # masters
    (["masters", "a.fits", "--kind", "bias", "--out", "{tmp}/m.fits", "--sigma", "-1"], "--sigma: must be a number > 0"),
    (["masters", "a.fits", "--kind", "bias", "--out", "{tmp}/m.fits", "--sigma", "0"], "--sigma: must be a number > 0"),
    # evaluate
    (["evaluate", "d.ecsv", "--radius", "-3"], "argument --radius: must be a number > 0, got '-3'"),
    (["evaluate", "d.ecsv", "--shape", "-5", "-5"], "argument --shape: must be an integer >= 1, got '-5'"),
    (["evaluate", "d.ecsv", "--shape", "0", "10"], "argument --shape: must be an integer >= 1"),
    (["evaluate", "d.ecsv", "--edge", "-2"], "argument --edge: must be a number >= 0"),
    (["evaluate", "d.ecsv", "--snr-min", "-1"], "argument --snr-min: must be a number >= 0"),
    (["evaluate", "d.ecsv", "--astrometry-radius", "0"], "--astrometry-radius: must be a number > 0"),
    (["evaluate", "--negative", "f.fits", "--threshold", "2"], "--threshold: must be a number in (0, 1)"),
    (["evaluate", "--negative", "f.fits", "--device", "gpu"], "argument --device: must be one of"),
    # models
    (["models", "--size", "0"], "argument --size: must be an integer in [16, 8192], got '0'"),
    (["models", "--size", "9000"], "argument --size: must be an integer in [16, 8192]"),
    (["models", "--base-width", "0"], "argument --base-width: must be an integer >= 1, got '0'"),
    (["models", "--in-channels", "0"], "argument --in-channels: must be an integer in [1, 64]"),
    # simulate
    (["simulate", "--out", "{tmp}/s", "--n-frames", "0"], "argument --n-frames: must be an integer >= 1"),
    (["simulate", "--out", "{tmp}/s", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["simulate", "--out", "{tmp}/s", "--size", "10"], "argument --size: must be an integer in [32, 20000]"),
    (["simulate", "--out", "{tmp}/s", "--fwhm", "0.1"], "argument --fwhm: must be a number in [0.5, 20]"),
    (["simulate", "--out", "{tmp}/s", "--start-index", "-1"], "--start-index: must be an integer >= 0"),
    (["simulate", "--out", "{tmp}/s", "--patches", "-1"], "--patches: must be an integer >= 0"),
    # binary-stamps
    (["binary-stamps", "{tmp}/b", "--n-sources", "0"], "--n-sources: must be an integer >= 1"),
    (["binary-stamps", "{tmp}/b", "--size", "4"], "argument --size: must be an integer >= 8"),
    (["binary-stamps", "{tmp}/b", "--binary-fraction", "1.5"], "--binary-fraction: must be a number in [0, 1]"),
    (["binary-stamps", "{tmp}/b", "--q-min", "0"], "--q-min: must be a number in (0, 1]"),
    (["binary-stamps", "{tmp}/b", "--radius", "0"], "argument --radius: must be a number > 0"),
    # classify-binaries
    (["classify-binaries", "st", "--threshold", "1"], "--threshold: must be a number in (0, 1)"),
    (["classify-binaries", "st", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    (["classify-binaries", "st", "--device", "gpu"], "argument --device: must be one of"),
    # baseline / twomass
    (["baseline", "sep", "f.fits", "--out", "{tmp}", "--threshold", "-1"], "--threshold: must be a number > 0"),
    (["baseline", "sep", "f.fits", "--out", "{tmp}", "--saturation", "0"], "--saturation: must be a number > 0"),
    (["twomass", "f.fits", "--out", "{tmp}", "--n1", "0"], "argument --n1: must be a number > 0"),
    (["twomass", "f.fits", "--out", "{tmp}", "--edge", "-1", "5"], "argument --edge-margins/--edge: must be an integer >= 0"),
    (["twomass", "f.fits", "--out", "{tmp}", "--dedup-radius", "-1"], "--dedup-radius: must be a number >= 0"),
    # benchmark
    (["benchmark", "--out", "{tmp}", "--limit", "0"], "argument --limit: must be an integer >= 1"),
    (["benchmark", "--out", "{tmp}", "--radius", "0"], "argument --radius: must be a number > 0"),
    (["benchmark", "--out", "{tmp}", "--target-precision", "1.5"], "--target-precision: must be a number in (0, 1]"),
    (["benchmark", "--out", "{tmp}", "--injection", "-1"], "--injection: must be an integer >= 0"),
    (["benchmark", "--out", "{tmp}", "--device", "tpu"], "argument --device: must be one of"),
    # prep
    (["prep", "f.fits", "--catalogs", "c", "--out", "{tmp}/p", "--gain", "0"], "argument --gain: must be a number > 0"),
    (["prep", "f.fits", "--catalogs", "c", "--out", "{tmp}/p", "--subfield-size", "8"], "--subfield-size: must be an integer in [16, 8192]"),
    (["prep", "f.fits", "--catalogs", "c", "--out", "{tmp}/p", "--psf-fwhm", "-2"], "--psf-fwhm: must be a number > 0"),
    # tune-baselines
    (["tune-baselines", "v", "--limit", "0"], "argument --limit: must be an integer >= 1"),
    (["tune-baselines", "v", "--snr-min", "-1"], "argument --snr-min: must be a number >= 0"),
    # demo
    (["demo", "--out", "{tmp}/d", "--size", "100"], "argument --size: must be an integer in [512, 20000]"),
    (["demo", "--out", "{tmp}/d", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "fragment"), BAD_OPTIONS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_OPTIONS]
)
def test_bad_numeric_option_is_one_line(
    argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    before = sorted(tmp_path.iterdir())
    rc, err = run_cli(argv, capsys)
    assert rc == 2
    assert_one_line_error(rc, err, fragment)
    assert sorted(tmp_path.iterdir()) == before, "nothing may be written on bad input"


def test_every_numeric_option_has_a_checked_type() -> None:
    """No verb takes a bare ``type=int`` / ``type=float`` option (except plane indices)."""
    from atd_dl.cli import build_parser

    allowed_plain = {"--plane"}  # any index; negative counts from the end, range checked on read
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    bare = [
        f"{verb} {action.option_strings or action.dest}"
        for verb, sub in verbs.items()
        for action in sub._actions
        if action.type in (int, float) and not set(action.option_strings) & allowed_plain
    ]
    assert not bare, f"unchecked numeric options: {bare}"


def test_valid_values_still_parse() -> None:
    from atd_dl.cli import build_parser

    args = build_parser().parse_args(
        ["detect", "f.fits", "--gain", "1.5", "--threshold", "0.4", "--tile", "256"]
        + ["--device", "cuda:1", "--workers", "64", "--overlap", "0", "--out", "."]
    )
    assert (args.gain, args.threshold, args.tile, args.device, args.workers) == (
        1.5,
        0.4,
        256,
        "cuda:1",
        64,
    )
    assert isinstance(args.out, Path)


def test_subprocess_has_no_traceback(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "atd_dl.cli", "detect", "f.fits", "--gain", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "ATD_DL_DEBUG": ""},
    )
    assert r.returncode == 2
    assert "argument --gain: must be a number > 0" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "detections").exists()


# --------------------------------------------------------------------------- --out checks


def test_out_existing_file_where_a_folder_is_wanted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["detect", "f.fits", "--out", afile], "exists and is not a folder"),
        (["simulate", "--out", afile], "exists and is not a folder"),
        (["simulate", "--out", afile / "sub"], f"cannot create it: {afile} is not a folder"),
        (["baseline", "sep", "f.fits", "--out", afile], "exists and is not a folder"),
        (["twomass", "f.fits", "--out", afile], "exists and is not a folder"),
        (["binary-stamps", afile], "exists and is not a folder"),
        (["prep", "f.fits", "--catalogs", "c", "--out", afile], "exists and is not a folder"),
        (["tune-baselines", "v", "--out", afile], "exists and is not a folder"),
        (["benchmark", "--out", afile], "exists and is not a folder"),
        (["demo", "--out", afile], "exists and is not a folder"),
        (["train-binary", "--out", afile], "exists and is not a folder"),
        (["classify-binaries", "st", "--report", afile], "exists and is not a folder"),
        (
            ["masters", "a.fits", "--kind", "bias", "--out", tmp_path],
            "is a folder, expected a file",
        ),
        (["masters", "a.fits", "--kind", "bias", "--out", afile / "m.fits"], "is not a folder"),
        (["evaluate", "--negative", "f.fits", "--out", afile / "n.json"], "is not a folder"),
        (["classify-binaries", "st", "--out", tmp_path], "is a folder, expected a file"),
    ]
    for argv, fragment in cases:
        rc, err = run_cli(argv, capsys)
        assert_one_line_error(rc, err, fragment)
        assert str(tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert afile.read_text() == "x"


def test_out_checked_before_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "out"
    afile.write_text("x")
    # evaluate (no --negative) writes a folder: a file there is refused before reading inputs
    rc, err = run_cli(["evaluate", "nosuch.ecsv", "--reference", "r.ecsv", "--out", afile], capsys)
    assert_one_line_error(rc, err, f"argument --out: {afile}: exists and is not a folder")
    assert "nosuch" not in err
    # benchmark --out from a --config file goes through the same check
    cfg = tmp_path / "b.yaml"
    cfg.write_text(f"test_set: {tmp_path}\nout: {afile}\n")
    rc, err = run_cli(["benchmark", "--config", cfg], capsys)
    assert rc == 2
    assert_one_line_error(rc, err, "exists and is not a folder")


def test_default_out_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("detections").write_text("a file where detect's default folder goes")
    rc, err = run_cli(["detect", "f.fits"], capsys)
    assert_one_line_error(rc, err, "argument --out: detections: exists and is not a folder")


def test_read_only_out_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: chmod 0o555 does not prevent writing")
        rc, err = run_cli(["detect", "f.fits", "--out", ro], capsys)
        assert_one_line_error(rc, err, f"{ro}: folder is not writable (permission denied)")
        rc, err = run_cli(["simulate", "--out", ro / "new" / "deeper"], capsys)
        assert_one_line_error(rc, err, f"cannot create it in {ro} (permission denied)")
        rc, err = run_cli(["masters", "a.fits", "--kind", "bias", "--out", ro / "m.fits"], capsys)
        assert_one_line_error(rc, err, "is not writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_unwritable_out_folder_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same checks when os.access says no (works as root, where chmod does not)."""
    import atd_dl.commands._validate as validate

    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access

    def access(path, mode, *a, **k):  # type: ignore[no-untyped-def]
        if Path(path) == ro and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    monkeypatch.setattr(validate.os, "access", access)
    for argv, fragment in [
        (["detect", "f.fits", "--out", ro], f"{ro}: folder is not writable (permission denied)"),
        (["baseline", "sep", "f.fits", "--out", ro], "folder is not writable"),
        (["evaluate", "d.ecsv", "--out", ro], "folder is not writable"),
        (["simulate", "--out", ro / "a" / "b"], f"cannot create it in {ro} (permission denied)"),
        (["binary-stamps", ro / "s"], f"cannot create it in {ro}"),
        (["masters", "a.fits", "--kind", "bias", "--out", ro / "m.fits"], "is not writable"),
    ]:
        rc, err = run_cli(argv, capsys)
        assert_one_line_error(rc, err, fragment)
    assert list(ro.iterdir()) == []


# --------------------------------------------------------------------------- SExtractor


@pytest.mark.parametrize("kind", ["missing", "folder", "not_executable"])
def test_bad_sextractor_env_is_reported(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "sex"
    if kind == "folder":
        target.mkdir()
    elif kind == "not_executable":
        target.write_text("#!/bin/sh\n")
        target.chmod(0o644)
        if os.access(target, os.X_OK):
            pytest.skip("file is executable for this user")
    monkeypatch.setenv("ATD_DL_SEXTRACTOR", str(target))
    out = tmp_path / "o"
    for argv in (
        ["baseline", "sextractor", "f.fits", "--out", out],
        ["evaluate", "--negative", "f.fits", "--out", out],
        ["benchmark", "--test-set", tmp_path, "--out", out, "--baselines", "sep,sextractor"],
        ["tune-baselines", tmp_path, "--baselines", "sextractor"],
    ):
        rc, err = run_cli(argv, capsys)
        assert_one_line_error(rc, err, f"$ATD_DL_SEXTRACTOR={target}")
    assert not out.exists()


def test_sextractor_env_ignored_when_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atd_dl.commands._validate import sextractor_env_problem, uses_sextractor

    monkeypatch.setenv("ATD_DL_SEXTRACTOR", str(tmp_path / "nope"))
    assert not uses_sextractor("sep,daofind") and uses_sextractor(["sep", "sextractor_seg"])
    assert "not found" in (sextractor_env_problem() or "")
    monkeypatch.setenv("ATD_DL_SEXTRACTOR", "")
    assert sextractor_env_problem() is None
    monkeypatch.setenv("ATD_DL_SEXTRACTOR", sys.executable)  # any executable is accepted
    assert sextractor_env_problem() is None


# --------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("radius: -1", "radius: must be a number > 0"),
        ("limit: 0", "limit: must be an integer >= 1"),
        ("target_precision: 2", "target_precision: must be a number in (0, 1]"),
        ("device: tpu", "device: must be one of"),
        ("thresholds: 0:1.5:0.5", "probabilities must be in (0, 1)"),
    ],
)
def test_benchmark_config_values_are_checked(
    line: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "b.yaml"
    cfg.write_text(f"test_set: {tmp_path}\nno_model: true\nbaselines: sep\n{line}\n")
    rc, err = run_cli(["benchmark", "--config", cfg, "--out", tmp_path / "rep"], capsys)
    assert rc == 2
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "rep").exists()


# --------------------------------------------------------------------------- --debug


def _fail_with(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    import atd_dl.commands.models as models

    def boom(args):  # type: ignore[no-untyped-def]
        raise exc

    monkeypatch.setattr(models, "run", boom)


@pytest.mark.parametrize(
    ("exc", "rc_expected", "line"),
    [
        (InputError("x.fits", "bad header"), 2, "error: x.fits: bad header"),
        (PermissionError(13, "Permission denied", "/data/out.fits"), 1, "/data/out.fits: Permission denied"),
        (RuntimeError("boom\nsecond line"), 1, "error: RuntimeError: boom (run with --debug"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_debug_shows_traceback(
    exc: BaseException,
    rc_expected: int,
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ATD_DL_DEBUG", raising=False)
    _fail_with(monkeypatch, exc)
    rc, err = run_cli(["models"], capsys)
    assert rc == rc_expected
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    assert line in err and "Traceback" not in err and "second line" not in err
    with pytest.raises(type(exc)):
        main(["--debug", "models"])
    monkeypatch.setenv("ATD_DL_DEBUG", "1")
    with pytest.raises(type(exc)):
        main(["models"])
    monkeypatch.setenv("ATD_DL_DEBUG", "0")
    assert main(["models"]) == rc_expected


# --------------------------------------------------------------------------- binary checkpoints


def test_binary_training_uses_weights_only_checkpoints() -> None:
    source = (REPO / "atd_dl" / "lit" / "binary.py").read_text()
    assert "weights_only=False" not in source
    assert "weights_only=True" in source


def test_binary_module_hparams_load_with_weights_only(tmp_path: Path) -> None:
    import torch
    from omegaconf import OmegaConf

    from atd_dl.lit.binary import BinaryClassifierModule

    module = BinaryClassifierModule(
        torch.nn.Linear(2, 2),
        optimizer=torch.optim.SGD,
        class_weights=OmegaConf.create({"w": [1.0, 2]}).w,  # a ListConfig, as from Hydra
    )
    assert module.hparams["class_weights"] == [1.0, 2.0]
    path = tmp_path / "h.pt"
    torch.save({"hyper_parameters": dict(module.hparams)}, path)
    assert torch.load(path, weights_only=True)["hyper_parameters"]["class_weights"] == [1.0, 2.0]

    class Hostile:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("true",))

    torch.save({"x": Hostile()}, path)
    with pytest.raises(Exception, match="[Ww]eights"):
        torch.load(path, weights_only=True)


def test_binary_training_hparams_are_plain_data(tmp_path: Path) -> None:
    """Module and data-module hyper-parameters go into the checkpoint: no DictConfig."""
    import torch
    from hydra import compose, initialize_config_dir

    from atd_dl.commands.train_binary import config_dir
    from atd_dl.lit.binary import build_binary_training

    overrides = ["model.width=4", "data.synth.n_sources=4", "module.class_weights=[1.0,1.5]"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="binary_train", overrides=overrides)
    dm, module = build_binary_training(cfg)
    path = tmp_path / "h.pt"
    torch.save({"m": dict(module.hparams), "dm": dict(dm.hparams)}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["m"]["class_weights"] == [1.0, 1.5]
    assert loaded["dm"]["geometry"]["size"] == cfg.data.geometry.size
