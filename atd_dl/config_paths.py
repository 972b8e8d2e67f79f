"""Where the Hydra configs live: the one owner of that rule.

The configs ship inside the package (``atd_dl/configs``), so a wheel installed outside
a checkout can train; the checkout's top-level ``configs`` is a link to the same folder.
The ``atd-dl benchmark`` option presets are plain YAML, not Hydra configs, and live
apart in ``atd_dl/eval_configs``.
"""

from __future__ import annotations

import os
from pathlib import Path

from atd_dl.errors import InputError

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: option presets of ``atd-dl benchmark --config NAME`` (plain YAML, not Hydra configs)
EVAL_CONFIG_DIR = Path(__file__).resolve().parent / "eval_configs"


def config_dir(explicit: str | Path | None = None, primary: str = "train") -> Path:
    """Folder holding ``<primary>.yaml``: ``explicit``, then ``$ATD_DL_CONFIG_DIR``, then the
    configs packaged with atd_dl. Raises :class:`InputError` naming the folder tried first."""
    env = os.environ.get("ATD_DL_CONFIG_DIR")
    candidates = [Path(explicit)] if explicit else [Path(env)] if env else []
    candidates.append(PACKAGED_CONFIG_DIR)
    for folder in candidates:
        if (folder / f"{primary}.yaml").is_file():
            return folder.resolve()
    raise InputError(candidates[0], f"no {primary}.yaml found (pass --config-dir)")


def eval_config(name_or_path: str | Path) -> Path:
    """An ``atd-dl benchmark --config`` file: an existing path, else the shipped preset of
    that name (``quick``, ``paper_comparison``, ...: ``atd_dl/eval_configs/<name>.yaml``).
    Raises :class:`InputError` listing the presets when neither exists."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = EVAL_CONFIG_DIR / f"{path.name}.yaml"
    if path.name == str(name_or_path) and not path.suffix and preset.is_file():
        return preset
    names = ", ".join(sorted(p.stem for p in EVAL_CONFIG_DIR.glob("*.yaml")))
    raise InputError(path, f"config file not found (shipped presets: {names})")
