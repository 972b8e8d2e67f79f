"""Atomic file output: write to a temporary name in the target folder, then rename."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: temporaries made by :func:`atomic_output`: ``.<name>.<random>.tmp``
_TMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")
#: start of this process: temporaries older than this are left over from a killed run
_STARTED = time.time()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    If the body raises, the temporary file is removed and ``path`` is left untouched,
    so an interrupted run never leaves a truncated output behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # writers such as astropy refuse to overwrite an existing file
    tmp.unlink()
    try:
        yield tmp
        if tmp.exists():
            # mkstemp names are private (0600); give the result the usual umask permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def clean_stale_temporaries(folder: str | Path, *, recursive: bool = True) -> int:
    """Remove temporaries of :func:`atomic_output` left in ``folder`` by a killed run
    (``.<name>.<random>.tmp`` older than this process); returns how many went.
    A missing folder is fine; a temporary of a run still writing is newer and stays."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    n = 0
    files = root.rglob(".*.tmp") if recursive else root.glob(".*.tmp")
    for p in files:
        try:
            if p.is_file() and _TMP_RE.match(p.name) and p.stat().st_mtime < _STARTED:
                p.unlink()
                n += 1
        except OSError:
            continue
    if n:
        log.info("%s: removed %d stale temporary file(s) of an interrupted run", root, n)
    return n
