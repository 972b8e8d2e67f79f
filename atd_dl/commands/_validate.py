"""Checks shared by every ``atd-dl`` verb: argparse ``type=`` factories and output-path checks.

Numeric options get a ``type=`` from here (:func:`positive_float`, :func:`float_in`,
:func:`int_at_least`, :func:`int_in`, :func:`multiple_of16`, ...); a value out of range
makes argparse print one line, ``atd-dl VERB: error: argument --x: must be ... got ...``,
and exit with code 2 before any work starts. Output locations use :func:`writable_out_dir`,
:func:`writable_out_file` or :func:`writable_out_path`, which check (without creating
anything) that the path can be written: an existing file where a folder is wanted, a
read-only folder or a parent that cannot be created is refused the same way. The
``*_problem`` functions return the message (or ``None``) for checks done after parsing,
e.g. on values from a ``--config`` file.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from atd_dl.errors import InputError

__all__ = [
    "DEVICE_HELP",
    "MAX_WORKERS",
    "RESUMABLE_VERBS",
    "add_common_options",
    "claim_output",
    "log_level",
    "output_problem",
    "check_sextractor_env",
    "device_choice",
    "float_in",
    "int_at_least",
    "int_in",
    "multiple_of16",
    "nonneg_float",
    "out_dir_problem",
    "out_file_problem",
    "out_path_problem",
    "positive_float",
    "probability",
    "sextractor_env_problem",
    "uses_sextractor",
    "writable_out_dir",
    "writable_out_file",
    "writable_out_path",
]

#: upper bound of ``--workers`` (threads preparing frames ahead)
MAX_WORKERS = 64

DEVICE_HELP = "auto, cpu, cuda or cuda:N"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _fmt(v: float) -> str:
    return f"{v:g}"


def _number(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _named(func: Callable, name: str) -> Callable:
    func.__name__ = name  # argparse names the type in some messages
    return func


def float_in(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Callable[[str], float]:
    """``type=`` for a finite float in ``[lo, hi]`` (``lo_open``/``hi_open``: exclusive ends;
    ``None``: unbounded)."""
    if lo is not None and hi is not None:
        desc = (
            f"a number in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
        )
    elif lo is not None:
        desc = f"a number {'>' if lo_open else '>='} {_fmt(lo)}"
    elif hi is not None:
        desc = f"a number {'<' if hi_open else '<='} {_fmt(hi)}"
    else:
        desc = "a finite number"

    def convert(text: str) -> float:
        value = _number(text)
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {desc}, got {text!r}")
        return value

    return _named(convert, "number")


def positive_float(text: str) -> float:
    """``type=`` for a finite float > 0."""
    return _POSITIVE(text)


def nonneg_float(text: str) -> float:
    """``type=`` for a finite float >= 0."""
    return _NONNEG(text)


def probability(text: str) -> float:
    """``type=`` for a probability threshold strictly between 0 and 1."""
    return _PROBABILITY(text)


_POSITIVE = float_in(0.0, lo_open=True)
_NONNEG = float_in(0.0)
_PROBABILITY = float_in(0.0, 1.0, lo_open=True, hi_open=True)


def int_in(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """``type=`` for an integer in ``[lo, hi]`` (``None``: unbounded)."""
    if lo is not None and hi is not None:
        desc = f"an integer in [{lo}, {hi}]"
    elif lo is not None:
        desc = f"an integer >= {lo}"
    elif hi is not None:
        desc = f"an integer <= {hi}"
    else:
        desc = "an integer"

    def convert(text: str) -> int:
        value = _integer(text)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {desc}, got {text!r}")
        return value

    return _named(convert, "integer")


def int_at_least(lo: int) -> Callable[[str], int]:
    """``type=`` for an integer >= ``lo``."""
    return int_in(lo)


def multiple_of16(text: str) -> int:
    """``type=`` for a tile size: a multiple of 16 in [16, 8192] px."""
    value = _integer(text)
    if value < 16 or value > 8192 or value % 16:
        raise argparse.ArgumentTypeError(f"must be a multiple of 16 in [16, 8192], got {text!r}")
    return value


def device_choice(text: str) -> str:
    """``type=`` for a torch device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    value = str(text).strip().lower()
    if not _DEVICE_RE.match(value):
        raise argparse.ArgumentTypeError(f"must be one of {DEVICE_HELP}, got {text!r}")
    return value


# ----------------------------------------------------------------------------- output paths


def _nearest_existing(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not os.path.lexists(p) and p.parent != p:
        p = p.parent
    return p


def _not_writable(folder: Path) -> str | None:
    """Why files cannot be created in the existing ``folder`` (``None``: they can)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:  # os.access can be wrong (root squash, ACLs): try a nameless temporary file
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def _creatable(path: Path) -> str | None:
    """Why the missing ``path`` cannot be created (``None``: it can)."""
    anc = _nearest_existing(path)
    if not anc.is_dir():
        return f"cannot create it: {anc} is not a folder"
    why = _not_writable(anc)
    return None if why is None else f"cannot create it in {anc} ({why})"


def out_dir_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as an output folder (``None``: it can). Creates nothing."""
    path = Path(path)
    if path.is_dir():
        why = _not_writable(path)
        return None if why is None else f"{path}: folder is not writable ({why})"
    if os.path.lexists(path):
        return f"{path}: exists and is not a folder"
    why = _creatable(path)
    return None if why is None else f"{path}: {why}"


def out_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be written as an output file (``None``: it can). Creates nothing."""
    path = Path(path)
    if path.is_dir():
        return f"{path}: is a folder, expected a file name"
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        # the file is replaced by a rename, but a read-only file is a clear "do not touch"
        return f"{path}: file is not writable (permission denied)"
    parent = path.parent if str(path.parent) else Path(".")
    if parent.is_dir():
        why = _not_writable(parent)
        return None if why is None else f"{path}: folder {parent} is not writable ({why})"
    if os.path.lexists(parent):
        return f"{path}: {parent} is not a folder"
    why = _creatable(parent)
    return None if why is None else f"{path}: folder {parent}: {why}"


def out_path_problem(path: str | Path) -> str | None:
    """Like :func:`out_dir_problem` for an existing folder, else like :func:`out_file_problem`
    (for outputs that may be either, e.g. ``evaluate --negative --out``)."""
    path = Path(path)
    if path.is_dir():
        return out_dir_problem(path)
    if os.path.lexists(path):
        return out_file_problem(path)
    why = _creatable(path)
    return None if why is None else f"{path}: {why}"


def _path_type(check: Callable[[str | Path], str | None], name: str) -> Callable[[str], Path]:
    def convert(text: str) -> Path:
        if not str(text).strip():
            raise argparse.ArgumentTypeError("empty path")
        path = Path(os.path.expanduser(text))
        problem = check(path)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return path

    return _named(convert, name)


#: ``type=`` for an output folder (existing and writable, or creatable)
writable_out_dir = _path_type(out_dir_problem, "folder")
#: ``type=`` for an output file (not a folder; its folder writable or creatable)
writable_out_file = _path_type(out_file_problem, "file")
#: ``type=`` for an output that may be a file or a folder
writable_out_path = _path_type(out_path_problem, "path")


# ----------------------------------------------------------------------------- SExtractor


def uses_sextractor(names: str | list[str] | tuple[str, ...] | None) -> bool:
    """Whether a baseline name (or comma list / list of names) runs SExtractor."""
    if names is None:
        return False
    if isinstance(names, str):
        names = names.split(",")
    return any(str(n).strip().lower().startswith("sextractor") for n in names)


def sextractor_env_problem() -> str | None:
    """Why ``$ATD_DL_SEXTRACTOR`` is unusable (``None``: unset, empty, or an executable)."""
    value = os.environ.get("ATD_DL_SEXTRACTOR", "")
    if not value.strip():
        return None
    if shutil.which(value):
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        cause = "is a folder, not the SExtractor executable"
    elif path.exists():
        cause = "is not executable"
    else:
        cause = "not found (neither a file nor a command on PATH)"
    return (
        f"$ATD_DL_SEXTRACTOR={value}: {cause}; fix it or unset it to use "
        "'source-extractor' / 'sex' from PATH"
    )


def check_sextractor_env() -> None:
    """Raise :class:`InputError` when ``$ATD_DL_SEXTRACTOR`` is set but unusable."""
    problem = sextractor_env_problem()
    if problem:
        raise InputError(None, problem)


# ----------------------------------------------------------------------------- shared options

#: verbs whose rerun into a non-empty --out resumes (content keys) instead of refusing
RESUMABLE_VERBS = frozenset({"detect", "finetune", "prep", "simulate"})


def _has_option(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every verb has, added once here (not per verb):

    ``-q/--quiet`` (warnings and errors only, no progress bar), ``-v/--verbose`` (debug
    logging) and, for verbs with ``--out``, ``--overwrite`` (write into an existing
    non-empty output; see :func:`claim_output`). Options a verb already defines stay.
    """
    if not _has_option(parser, "--quiet"):
        flags = ["--quiet"] if _has_option(parser, "-q") else ["-q", "--quiet"]
        parser.add_argument(
            *flags,
            action="store_true",
            default=argparse.SUPPRESS,
            help="warnings and errors only, no progress bar",
        )
    if not _has_option(parser, "--verbose"):
        flags = ["--verbose"] if _has_option(parser, "-v") else ["-v", "--verbose"]
        parser.add_argument(
            *flags, action="store_true", default=argparse.SUPPRESS, help="debug logging"
        )
    if _has_option(parser, "--out"):
        out_type = parser._option_string_actions["--out"].type
        kind = (
            "dir"
            if out_type is writable_out_dir
            else "file"
            if out_type is writable_out_file
            else "path"
        )
        parser.set_defaults(_out_kind=kind)
    if _has_option(parser, "--out") and not _has_option(parser, "--overwrite"):
        parser.add_argument(
            "--overwrite",
            action="store_true",
            default=False,
            help="write into an existing, non-empty --out (replacing its files); without it "
            "such an output is refused",
        )


def _visible_entries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def output_problem(
    path: str | Path | None, *, overwrite: bool, resumable: bool, kind: str = "path"
) -> str | None:
    """Why writing to ``path`` needs ``--overwrite`` (``None``: go ahead).

    An existing non-empty folder or an existing file is refused unless ``overwrite``;
    resumable verbs (detect, prep, simulate) resume instead, with content keys.
    """
    if path is None or overwrite or resumable:
        return None
    p = Path(path)
    if p.is_dir():
        if _visible_entries(p):
            return (
                f"{p}: output folder exists and is not empty; pass --overwrite to write "
                "into it, or choose another --out"
            )
        return None
    if p.is_file() and kind == "file":  # a file where a folder may go: the verb decides
        return f"{p}: output file exists; pass --overwrite to replace it"
    return None


def claim_output(args: argparse.Namespace) -> None:
    """Before a verb's work: clean stale temporaries of a killed run in ``--out`` and refuse
    an occupied output without ``--overwrite`` (:class:`InputError`, one line)."""
    from atd_dl.io.atomic import clean_stale_temporaries

    out = getattr(args, "out", None)
    if out is None or not isinstance(out, (str, Path)):
        return
    out = Path(out)
    clean_stale_temporaries(out if out.is_dir() else out.parent, recursive=out.is_dir())
    verb = getattr(args, "command", None)
    problem = output_problem(
        out,
        overwrite=bool(getattr(args, "overwrite", False) or getattr(args, "redo", False)),
        resumable=verb in RESUMABLE_VERBS,
        kind=getattr(args, "_out_kind", "path"),
    )
    if problem:
        raise InputError(None, problem)


def log_level(args: argparse.Namespace, *, debug: bool = False) -> int:
    """Logging level from ``--quiet`` / ``--verbose`` / ``--debug`` (top level or verb)."""
    import logging

    if getattr(args, "verbose", False) or debug:
        return logging.DEBUG
    if getattr(args, "quiet", False):
        return logging.WARNING
    return logging.INFO
