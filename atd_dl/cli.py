"""The ``atd-dl`` command line: one sub-command per module in :mod:`atd_dl.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from atd_dl import __version__, commands
from atd_dl.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered verb."""
    parser = argparse.ArgumentParser(
        prog="atd-dl", description="Faint point-source detection in astronomical images."
    )
    parser.add_argument("--version", action="version", version=f"atd-dl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"atd_dl.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
