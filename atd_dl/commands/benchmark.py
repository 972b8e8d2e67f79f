"""``atd-dl benchmark``: sweep models and classical baselines over a simulated test set."""

from __future__ import annotations

import argparse
import ast
import logging
from pathlib import Path
from typing import Any

from atd_dl.commands._validate import (
    DEVICE_HELP,
    check_sextractor_env,
    device_choice,
    float_in,
    int_at_least,
    nonneg_float,
    out_dir_problem,
    positive_float,
    uses_sextractor,
    writable_out_dir,
)
from atd_dl.errors import InputError

log = logging.getLogger(__name__)

# option name -> default; a --config YAML may set any of them (CLI flags win)
DEFAULTS: dict[str, Any] = {
    "test_set": None,
    "out": None,
    "model": [],
    "model_name": [],
    "no_model": False,
    "baselines": "sextractor,sextractor_seg,sep,daofind",
    "baseline_sweep": "dense",
    "baseline_param": [],
    "thresholds": None,
    "reference": "auto",
    "limit": None,
    "radius": 3.0,
    "edge": 3.0,
    "snr_min": 2.0,
    "astrometry_radius": 2.0,
    "target_precision": 0.90,
    "align": "closest",
    "injection": 0,
    "injection_rounds": 1,
    "injection_frames": 1,
    "device": None,
    "no_progress": False,
    "ablation": None,
}

# option name -> argparse type; also applied to the values of a --config YAML
CHECKS: dict[str, Any] = {
    "limit": int_at_least(1),
    "radius": positive_float,
    "edge": nonneg_float,
    "snr_min": nonneg_float,
    "astrometry_radius": positive_float,
    "target_precision": float_in(0.0, 1.0, lo_open=True),
    "injection": int_at_least(0),
    "injection_rounds": int_at_least(1),
    "injection_frames": int_at_least(1),
    "device": device_choice,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` sub-command."""
    p = subparsers.add_parser(
        "benchmark",
        help="compare models and baselines on a simulated test set (paper Tables 5-8, Figs 11-13)",
        description=(
            "Run each model with a probability-threshold sweep and each classical baseline with "
            "its threshold sweep on every frame of TEST_SET (the `atd-dl simulate` layout: "
            "frames/, truth/, catalogs/, calib/), score every operating point with the paper "
            "protocol and the strict one-to-one rule, and write REPORT/report.md, summary.json "
            "and figures. Unavailable baselines are skipped with a warning. Exit code 1 when a "
            "frame failed. Options may come from --config FILE.yaml or a shipped preset "
            "(--config quick, paper_comparison, compare_dl, ablation_fem: atd_dl/eval_configs/)."
        ),
    )
    p.add_argument(
        "--matrix",
        nargs=argparse.REMAINDER,
        default=None,
        metavar="MATRIX_OPTION",
        help="run the evaluation matrix instead (FWHM x density cells, hard and near-empty "
        "frames; baselines tuned per cell on validation frames): every option after "
        "--matrix is the matrix's own, see `atd-dl benchmark --matrix --help`",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file with any of these options, or the name of a shipped preset (quick, "
        "paper_comparison, compare_dl, ablation_fem); command-line flags win",
    )
    p.add_argument("--test-set", type=Path, default=None, help="simulated test-set folder")
    p.add_argument("--out", type=writable_out_dir, default=None, help="report folder")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="model folder (repeat for several; the first two also give the FEM ablation, "
        "base first). Default: the shipped model",
    )
    p.add_argument("--model-name", action="append", default=None, help="display name per --model")
    p.add_argument("--no-model", action="store_true", default=None, help="baselines only")
    p.add_argument(
        "--baselines",
        default=None,
        help="comma-separated baselines (default sextractor,sextractor_seg,sep,daofind; "
        "'none' for none; also twomass, psphot)",
    )
    p.add_argument(
        "--baseline-sweep",
        choices=("dense", "paper"),
        default=None,
        help="threshold list per baseline",
    )
    p.add_argument(
        "--baseline-param",
        action="append",
        default=None,
        metavar="NAME.KEY=VALUE",
        help="finder parameter, e.g. sextractor.filter_fwhm=2.0 (repeatable)",
    )
    p.add_argument(
        "--thresholds",
        default=None,
        help="probability thresholds: START:STOP:STEP or comma list (default 0.05:0.95:0.05)",
    )
    p.add_argument(
        "--reference-set",
        "--reference",
        dest="reference",
        choices=("auto", "truth", "catalog"),
        default=None,
        help="reference set: simulator truth, the catalog, or auto (--reference: deprecated "
        "alias; elsewhere --reference is a file)",
    )
    p.add_argument(
        "--limit", type=CHECKS["limit"], default=None, help="use only the first N frames"
    )
    p.add_argument(
        "--radius", type=CHECKS["radius"], default=None, help="match radius px (default 3)"
    )
    p.add_argument("--edge", type=CHECKS["edge"], default=None, help="edge cut px (default 3)")
    p.add_argument(
        "--snr-min", type=CHECKS["snr_min"], default=None, help="SNR defining G (default 2)"
    )
    p.add_argument(
        "--astrometry-radius", type=CHECKS["astrometry_radius"], default=None, help="px (default 2)"
    )
    p.add_argument(
        "--target-precision",
        type=CHECKS["target_precision"],
        default=None,
        help="precision alignment target in (0, 1] (0.90)",
    )
    p.add_argument("--align", choices=("closest", "at_least"), default=None, help="alignment rule")
    p.add_argument(
        "--injection",
        type=CHECKS["injection"],
        default=None,
        help="inject N stars per round (0 = off)",
    )
    p.add_argument(
        "--injection-rounds",
        type=CHECKS["injection_rounds"],
        default=None,
        help="injection rounds per frame",
    )
    p.add_argument(
        "--injection-frames",
        type=CHECKS["injection_frames"],
        default=None,
        help="frames used for injection",
    )
    p.add_argument(
        "--device",
        type=device_choice,
        default=None,
        help=f"torch device for models: {DEVICE_HELP} (default: cuda if available)",
    )
    p.add_argument("--no-progress", action="store_true", default=None, help="hide the progress bar")
    p.set_defaults(func=run)


def parse_thresholds(text: str | list | None) -> list[float] | None:
    """``"0.1:0.9:0.1"`` (inclusive) or ``"0.3,0.5"`` or a list -> floats; None stays None."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    text = str(text).strip()
    try:
        if ":" in text:
            from atd_dl.baselines.base import sweep

            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            values = [float(v) for v in sweep(start, stop, step)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(
            None, f"bad --thresholds {text!r}: use START:STOP:STEP or a comma list"
        ) from None
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise InputError(None, f"bad --thresholds {text!r}: probabilities must be in (0, 1)")
    return values


def parse_baseline_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["sextractor.filter_fwhm=2.0"]`` -> ``{"sextractor": {"filter_fwhm": 2.0}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise InputError(None, f"bad --baseline-param {item!r}: use NAME.KEY=VALUE")
        key, value = item.split("=", 1)
        name, param = key.split(".", 1)
        try:
            val: Any = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            val = value
        out.setdefault(name.strip(), {})[param.strip()] = val
    return out


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """Merge defaults, the --config YAML (a file or a shipped preset name) and the
    command-line flags (flags win).

    Relative paths in the YAML are relative to the current directory.
    """
    opts = dict(DEFAULTS)
    if args.config is not None:
        import yaml

        from atd_dl.config_paths import eval_config

        args.config = eval_config(args.config)
        try:
            data = yaml.safe_load(args.config.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(args.config, f"not valid YAML ({err})") from None
        if not isinstance(data, dict):
            raise InputError(args.config, "expected a mapping of option: value")
        for k, v in data.items():
            key = str(k).replace("-", "_")
            if key not in DEFAULTS:
                raise InputError(
                    args.config, f"unknown option {k!r}; valid: {', '.join(sorted(DEFAULTS))}"
                )
            if key in CHECKS and v is not None:
                try:
                    v = CHECKS[key](str(v))
                except argparse.ArgumentTypeError as err:
                    raise InputError(args.config, f"{k}: {err}") from None
            opts[key] = v
    for key in DEFAULTS:
        v = getattr(args, key, None)
        if v is not None:
            opts[key] = v
    if not opts["test_set"]:
        raise InputError(None, "--test-set is required (or test_set: in --config)")
    if not opts["out"]:
        raise InputError(None, "--out is required (or out: in --config)")
    problem = out_dir_problem(Path(opts["out"]))
    if problem:
        raise InputError(None, f"--out {problem}")
    for key in ("model", "model_name", "baseline_param"):
        if isinstance(opts[key], (str, Path)):
            opts[key] = [opts[key]]
        opts[key] = list(opts[key] or [])
    if isinstance(opts["baselines"], (list, tuple)):
        opts["baselines"] = ",".join(opts["baselines"])
    return opts


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write the report; exit code 1 if any frame failed."""
    if getattr(args, "matrix", None) is not None:
        from atd_dl.evaluate.matrix_cli import main as matrix_main

        return matrix_main(list(args.matrix))
    from atd_dl.evaluate.benchmark import run_benchmark
    from atd_dl.evaluate.sweep import EvalSettings

    o = resolve_options(args)
    baselines = [
        b.strip() for b in str(o["baselines"] or "").split(",") if b.strip() and b.strip() != "none"
    ]
    models: list[str | None] = [str(m) for m in o["model"]]
    if not models and not o["no_model"]:
        models = [None]  # the shipped default model, skipped with a warning if missing
    if uses_sextractor(baselines):
        check_sextractor_env()
    settings = EvalSettings(
        radius=float(o["radius"]),
        edge=float(o["edge"]),
        snr_min=float(o["snr_min"]),
        astrometry_radius=float(o["astrometry_radius"]),
        target_precision=float(o["target_precision"]),
        align_mode=str(o["align"]),
    )
    injection = None
    if int(o["injection"] or 0) > 0:
        injection = {
            "n_per_round": int(o["injection"]),
            "rounds": int(o["injection_rounds"]),
            "frames": int(o["injection_frames"]),
        }
    result = run_benchmark(
        Path(o["test_set"]),
        models=models,
        model_names=[str(n) for n in o["model_name"]],
        baselines=baselines,
        baseline_sweep=str(o["baseline_sweep"]),
        baseline_params=parse_baseline_params([str(x) for x in o["baseline_param"]]),
        prob_thresholds=parse_thresholds(o["thresholds"]),
        settings=settings,
        reference=str(o["reference"]),
        limit=o["limit"],
        out=Path(o["out"]),
        injection=injection,
        device=o["device"],
        progress=not o["no_progress"],
        ablation=_yes_no(o["ablation"]),
    )
    _print_table5(result.summary)
    if result.skipped:
        for name, why in result.skipped.items():
            print(f"skipped {name}: {why}")
    print(f"report: {result.report}")
    if result.n_failures:
        print(f"{result.n_failures} frame/method failures (see the report's Failures section)")
        return 1
    return 0


def _yes_no(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).lower() in ("yes", "true", "1", "on")


def _print_table5(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * v:.2f}"

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    t = Table(title="best F1 and precision alignment (paper rule | strict rule)")
    for col in (
        "method",
        "P",
        "R",
        "F1",
        "P≈target",
        "R",
        "R faint",
        "F1 strict",
        "R faint strict",
        "RMS px",
    ):
        t.add_column(col, justify="right")
    for name, m in summary["methods"].items():
        if not m.get("best"):
            t.add_row(m.get("label") or name, *["–"] * 9)
            continue
        b, a = m["best"]["paper"], m["aligned"]["paper"]
        bs, as_ = m["best"]["strict"], m["aligned"]["strict"]
        rms = m.get("astrometry", {}).get("all", {}).get("rms_total")
        t.add_row(
            m["label"],
            pct(b["precision"]),
            pct(b["recall"]),
            pct(b["f1"]),
            pct(a["precision"]),
            pct(a["recall"]),
            pct(a["faint_recall"]),
            pct(bs["f1"]),
            pct(as_["faint_recall"]),
            "–" if rms is None else f"{rms:.3f}",
        )
    console.print(t)
