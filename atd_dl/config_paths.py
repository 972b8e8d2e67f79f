"""Where the Hydra configs live: the one owner of that rule.

The configs ship inside the package (``atd_dl/configs``), so a wheel installed outside
a checkout can train; the checkout's top-level ``configs`` is a link to the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from atd_dl.errors import InputError

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


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
