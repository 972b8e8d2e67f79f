"""The ``atd-dl`` command line: one sub-command per module in :mod:`atd_dl.commands`.

Errors end in one line on stderr and a non-zero exit code: bad options are refused by
argparse (exit 2, see :mod:`atd_dl.commands._validate`), bad input files raise
:class:`~atd_dl.errors.InputError` (exit 2), file-system errors print the path and the
cause (exit 1) and anything unexpected prints its type and message (exit 1).
``atd-dl --debug`` or ``ATD_DL_DEBUG=1`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from atd_dl import __version__, commands
from atd_dl.commands._validate import add_common_options, claim_output, log_level
from atd_dl.errors import InputError
from atd_dl.process_tuning import tune_process


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered verb."""
    parser = argparse.ArgumentParser(
        prog="atd-dl", description="Faint point-source detection in astronomical images."
    )
    parser.add_argument("--version", action="version", version=f"atd-dl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback on errors instead of one line (also ATD_DL_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=_workflow_rank):
        module = importlib.import_module(f"atd_dl.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for verb_parser in sub.choices.values():  # --quiet/--verbose/--overwrite, one place
        add_common_options(verb_parser)
    return parser


#: verbs in workflow order in ``atd-dl --help`` (others follow alphabetically)
WORKFLOW_ORDER = (
    "simulate",
    "masters",
    "prep",
    "train",
    "finetune",
    "models",
    "export",
    "detect",
    "evaluate",
    "baseline",
    "tune_baselines",
    "benchmark",
    "repeatability",
    "binary_stamps",
    "train_binary",
    "classify_binaries",
    "demo",
)


def _workflow_rank(info: pkgutil.ModuleInfo) -> tuple[int, str]:
    name = info.name
    rank = WORKFLOW_ORDER.index(name) if name in WORKFLOW_ORDER else len(WORKFLOW_ORDER)
    return rank, name


#: top-level modules of the optional extras (pyproject ``[project.optional-dependencies]``)
OPTIONAL_EXTRAS = {
    "lightning": "train",
    "hydra": "train",
    "omegaconf": "train",
    "tensorboard": "train",
    "hydra_plugins": "hpc",
    "optuna": "hpc",
    "submitit": "hpc",
    "sep": "baselines",
}


def debug_enabled(args: argparse.Namespace | None = None) -> bool:
    """``--debug`` given, or ``$ATD_DL_DEBUG`` set to anything but empty/0/false/no/off."""
    env = os.environ.get("ATD_DL_DEBUG", "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no", "off")


def os_error_line(err: OSError) -> str:
    """``"<path>: <cause>"`` for a file-system error (both paths for a failed rename)."""
    cause = err.strerror or str(err) or type(err).__name__
    if err.filename is not None and err.filename2 is not None:
        return f"{err.filename} -> {err.filename2}: {cause}"
    if err.filename is not None:
        return f"{err.filename}: {cause}"
    return cause


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = debug_enabled(args)
    logging.basicConfig(level=log_level(args, debug=debug), format="%(levelname)s: %(message)s")
    logging.getLogger().setLevel(log_level(args, debug=debug))  # also when configured before
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    tune_process()  # before the verb imports numpy
    try:
        claim_output(args)  # stale temporaries cleaned; occupied --out needs --overwrite
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except InputError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if debug:
            raise
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - one line for users; --debug for the traceback
        if debug:
            raise
        missing = (err.name or "") if isinstance(err, ModuleNotFoundError) else ""
        extra = OPTIONAL_EXTRAS.get(missing.split(".")[0])
        if extra is not None:
            print(
                f"error: this command needs the optional package {missing!r}: "
                f"pip install 'atd-dl[{extra}]'",
                file=sys.stderr,
            )
            return 2
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
        print(
            f"error: {detail} (run with --debug or ATD_DL_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def console_main() -> None:
    """The ``atd-dl`` command: :func:`main`, then :func:`~atd_dl.process_tuning.fast_exit`
    (no interpreter teardown once the outputs are written)."""
    from atd_dl.process_tuning import fast_exit

    fast_exit(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()
