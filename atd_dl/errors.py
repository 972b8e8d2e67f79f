"""Errors raised for bad user input: one clear line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input file or parameter; ``str(err)`` is a one-line message ``"<file>: <problem>"``."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        prefix = f"{path}: " if path is not None else ""
        super().__init__(f"{prefix}{problem}")
