"""Resume keyed on content: skip an output only when everything that made it is unchanged.

A *resume key* is a flat mapping ``component -> value`` (the input file's SHA-256, the
model folder's hash, the threshold, the post-processing options, the calibration
masters' hashes, the configuration digest, ...). It is stored next to the outputs of
a frame (``<stem>.key.json`` for ``atd-dl detect``, the ``.state/<frame>.json`` record for
``atd-dl prep``, ``.atd_dl_run.json`` for a whole ``atd-dl simulate`` folder), written
*last*, so an interrupted frame has no key and is redone.

On a rerun :func:`compare_keys` says what changed: ``[]`` means "skipped (unchanged)",
otherwise the frame is redone and the reason names the components ("input changed",
"model changed", "threshold changed", ...). A different frame with the same file name
has another SHA-256 and is redone, never silently skipped.

Hashing streams the file in 1 MiB chunks and is cached per ``(path, size, mtime, inode)``
so a file hashed for the resume decision is not read again when its catalog is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from atd_dl.io.atomic import atomic_write_text

__all__ = [
    "KEY_SUFFIX",
    "compare_keys",
    "describe_changes",
    "digest",
    "file_sha256",
    "files_sha256",
    "folder_sha256",
    "read_key",
    "write_key",
]

#: file written beside a frame's outputs holding its resume key (``<stem>.key.json``)
KEY_SUFFIX = ".key.json"
CHUNK = 1 << 20

_CACHE: dict[tuple[str, int, int, int], str] = {}
_LOCK = threading.Lock()

#: how each key component is named in "redone (... changed)" messages
_LABELS = {
    "input_sha256": "input",
    "model_sha256": "model",
    "threshold": "threshold",
    "postprocess": "post-processing options",
    "calibration": "calibration masters",
    "config": "options",
    "catalog_sha256": "reference catalog",
    "test": "split",
}


def file_sha256(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file, streamed in ``chunk`` bytes; cached while the file is unchanged."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    value = h.hexdigest()
    with _LOCK:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        _CACHE[key] = value
    return value


def files_sha256(paths: Mapping[str, str | Path | None]) -> dict[str, str | None]:
    """``{name: sha256 or None}`` for optional files (calibration masters, ...)."""
    return {k: None if v is None else file_sha256(v) for k, v in sorted(paths.items())}


def folder_sha256(path: str | Path) -> str:
    """SHA-256 over every file in a folder (names and contents, sorted); a file's own hash
    for a file. Hidden files and temporaries are ignored."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        rel = f.relative_to(p).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or rel.endswith(".tmp"):
            continue
        h.update(rel.encode() + b"\0" + file_sha256(f).encode() + b"\n")
    return h.hexdigest()


def digest(value: Any) -> str:
    """Short stable hash of a JSON-able value (sorted keys)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _norm(value: Any) -> Any:
    """Values compared as JSON (tuples = lists, floats as written)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def compare_keys(stored: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Names of the components of ``current`` that differ from ``stored`` (``[]``: unchanged).

    A missing stored key gives ``["no resume key"]`` (an older or interrupted output).
    """
    if not stored:
        return ["no resume key"]
    changed = []
    for name in current:
        if _norm(stored.get(name)) != _norm(current[name]):
            changed.append(name)
    return changed


def describe_changes(changed: Iterable[str]) -> str:
    """``"input changed, threshold changed"`` for the changed key components."""
    parts = []
    for name in changed:
        if name == "no resume key":
            parts.append("no resume key from an earlier run")
        elif name == "outputs missing":
            parts.append("outputs missing")
        else:
            parts.append(f"{_LABELS.get(name, name)} changed")
    return ", ".join(parts)


def read_key(path: str | Path) -> dict[str, Any] | None:
    """The key stored in ``path`` (a JSON object; its ``"key"`` entry when present);
    ``None`` when missing or unreadable."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    key = doc.get("key", doc)
    return key if isinstance(key, dict) else None


def write_key(path: str | Path, key: Mapping[str, Any], **extra: Any) -> Path:
    """Write ``{"key": key, **extra}`` atomically (after the outputs it vouches for)."""
    doc = {"key": dict(key), **extra}
    return atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")


def remove_if_exists(paths: Iterable[str | Path]) -> None:
    """Delete files (outputs being replaced); missing ones are fine."""
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
