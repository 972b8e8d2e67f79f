"""Detection on many frames: inputs, resumption, prefetching, the run summary.

:func:`detect_files` is the batch behind ``atd-dl detect`` and ``infer.py``. It runs as a
short chain of stages:

1. :func:`expand_inputs` -- files, folders and glob patterns to frame paths (this verb's
   own outputs excluded), :func:`unique_stems` -- one output name per frame;
2. the resume decision (:mod:`atd_dl.detect.resume_keys`): a frame is skipped only when
   its outputs exist and its stored key is unchanged;
3. the frames left, prepared ahead in background threads while the current one is
   inferred (:meth:`~atd_dl.detect.pipeline.Detector.run`), each failure recorded and
   the batch going on;
4. the :class:`RunSummary` (``summary.json``).

The one-frame work is :mod:`atd_dl.detect.pipeline`; the writing
:mod:`atd_dl.detect.catalog_io`. This module imports both; neither imports it.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from atd_dl import __version__
from atd_dl.detect.catalog_io import OUTPUT_SUFFIXES, OutputConfig
from atd_dl.detect.pipeline import Detector
from atd_dl.detect.resume_keys import FrameDecision, decide_frame, key_path, run_key
from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_write_text
from atd_dl.io.paths import FITS_SUFFIXES, frame_stem
from atd_dl.io.resume import remove_if_exists, write_key

__all__ = [
    "RunSummary",
    "default_workers",
    "detect_files",
    "expand_inputs",
    "load_masters",
    "unique_stems",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ inputs
def _is_output(path: Path) -> bool:
    """A file this verb writes (catalog, maps) or a hidden temporary: never an input when
    folders or globs are expanded (``atd-dl detect dir --out dir`` reads only frames)."""
    name = path.name.lower()
    return name.startswith(".") or name.endswith(tuple(OUTPUT_SUFFIXES.values()))


def _expand_one(item: str | Path, problems: list[tuple[str, str]]) -> list[Path]:
    """The frame paths of one input item; a problem is appended when it matches nothing."""
    s = str(item)
    p = Path(s)
    if p.is_dir():
        found = sorted(
            q
            for q in p.iterdir()
            if q.is_file() and q.name.lower().endswith(FITS_SUFFIXES) and not _is_output(q)
        )
        if not found:
            problems.append((s, f"{s}: folder contains no FITS files"))
        return found
    if p.exists():
        return [p]
    if glob.has_magic(s):
        found = sorted(
            Path(q)
            for q in glob.glob(s, recursive=True)
            if Path(q).is_file() and not _is_output(Path(q))
        )
        if not found:
            problems.append((s, f"{s}: pattern matches no files"))
        return found
    problems.append((s, str(InputError(p, "file not found"))))
    return []


def expand_inputs(items: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (FITS files inside, sorted) and glob patterns -> frame paths.

    Returns ``(paths, problems)``; ``problems`` lists ``(item, message)`` for inputs that
    match nothing. Duplicates are dropped, order kept.
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in items:
        paths.extend(_expand_one(item, problems))
    seen: set[Path] = set()
    unique = []
    for q in paths:
        key = q.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(q)
    return unique, problems


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output stems; frames with the same name in different folders get the folder prefix."""
    stems = [frame_stem(p) for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    out = []
    for p, s in zip(paths, stems):
        out.append(f"{p.resolve().parent.name}_{s}" if counts[s] > 1 else s)
    if len(set(out)) != len(out):  # still clashing: number them
        out = [f"{s}_{i:04d}" for i, s in enumerate(out)]
    return out


# ----------------------------------------------------------------------------- summary
@dataclass
class RunSummary:
    """Outcome of :func:`detect_files` (written as ``summary.json``)."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    model: str | None = None
    device: str | None = None
    threshold: float | None = None
    started: str = ""
    finished: str = ""
    wall_s: float = 0.0

    @property
    def n_ok(self) -> int:
        return sum(f["status"] == "ok" for f in self.frames)

    @property
    def n_skipped(self) -> int:
        return sum(f["status"] == "skipped" for f in self.frames)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def n_detections(self) -> int:
        # skipped frames count what their (unchanged) catalogs hold
        return int(
            sum(f.get("n_detections", 0) for f in self.frames if f["status"] in ("ok", "skipped"))
        )

    def stage_totals(self) -> dict[str, float]:
        """Seconds spent per stage, summed over processed frames."""
        tot: dict[str, float] = {}
        for f in self.frames:
            for k, v in f.get("timings", {}).items():
                tot[k] = tot.get(k, 0.0) + float(v)
        return {k: round(v, 4) for k, v in tot.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "atd_dl_version": __version__,
            "model": self.model,
            "device": self.device,
            "threshold": self.threshold,
            "started": self.started,
            "finished": self.finished,
            "wall_s": round(self.wall_s, 3),
            "n_frames": len(self.frames)
            + sum(1 for f in self.failures if f.get("stage") == "input"),
            "n_ok": self.n_ok,
            "n_skipped": self.n_skipped,
            "n_failed": self.n_failed,
            "n_detections": self.n_detections,
            "timings_s": self.stage_totals(),
            "frames": self.frames,
            "failures": self.failures,
        }

    def write(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _problem(path: Path, err: BaseException) -> str:
    if isinstance(err, InputError):
        return str(err)
    first = str(err).splitlines()[0] if str(err) else ""
    return f"{path}: {type(err).__name__}: {first}".rstrip(": ")


# ------------------------------------------------------------------------------ resume
@dataclass
class _Plan:
    """Frames to run, in order, and the resume key to store after each (by stem)."""

    todo: list[tuple[Path, str]] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)


def _skipped_record(path: Path, stem: str, decision: FrameDecision) -> dict[str, Any]:
    """The summary record of a frame skipped because its key is unchanged."""
    doc = decision.stored or {}
    return {
        "path": str(path),
        "stem": stem,
        "status": "skipped",
        "reason": "unchanged",
        "n_detections": int(doc.get("n_detections", 0)),
        "threshold": doc.get("key", {}).get("threshold"),
    }


def _plan_frames(
    paths: Sequence[Path],
    stems: Sequence[str],
    detector: Detector,
    output: OutputConfig,
    masters: Any,
    summary: RunSummary,
    on_status: Callable[[Path, str], Any] | None,
) -> _Plan:
    """Resume keyed on content (:mod:`atd_dl.io.resume`): skip a frame only when its
    outputs are complete and its stored key matches (unless ``output.overwrite``)."""
    common = run_key(detector, masters)
    plan = _Plan()
    for p, s in zip(paths, stems):
        try:
            decision = decide_frame(p, s, output.out_dir, common, complete=output.complete(s))
        except OSError as err:  # unreadable input: reported when the frame is read
            plan.todo.append((p, s))
            log.debug("cannot hash %s: %s", p, err)
            continue
        if decision.skip and not output.overwrite:
            summary.frames.append(_skipped_record(p, s, decision))
            if on_status:
                on_status(p, decision.status)
            continue
        reason = "overwrite" if output.overwrite and decision.reason != "new" else decision.reason
        if reason != "new":
            # the old key goes first: an interrupted redo is redone again next time
            remove_if_exists([key_path(output.out_dir, s)])
            if on_status:
                on_status(p, f"redone ({reason})")
        plan.keys[s] = {**decision.key, "_reason": reason}
        plan.todo.append((p, s))
    return plan


# ------------------------------------------------------------------------------ frames
def _prefetched(
    pool: ThreadPoolExecutor,
    todo: Iterable[tuple[Path, str]],
    depth: int,
    prepare: Callable[[Path], Any],
) -> Iterator[tuple[Path, str, Future]]:
    """``(path, stem, future of prepare(path))`` in order, keeping ``depth + 1`` frames
    submitted to ``pool`` ahead of the one being processed."""
    queue: deque[tuple[Path, str, Future]] = deque()
    it = iter(todo)

    def refill() -> None:
        while len(queue) < depth + 1:
            try:
                p, s = next(it)
            except StopIteration:
                return
            queue.append((p, s, pool.submit(prepare, p)))

    refill()
    while queue:
        item = queue.popleft()
        refill()
        yield item


def _run_frame(
    path: Path,
    stem: str,
    prepared: Future,
    detector: Detector,
    output: OutputConfig,
    key: dict[str, Any] | None,
) -> dict[str, Any]:
    """Run one prefetched frame, write its outputs and resume key; its summary record.
    Raises what reading or detecting the frame raised."""
    record: dict[str, Any] = {"path": str(path), "stem": stem}
    prep = prepared.result()
    res = detector.run(prep, write=output, stem=stem)
    flags = np.asarray(res.catalog["flags"]) if len(res.catalog) else np.zeros(0)
    key = dict(key or {})
    reason = key.pop("_reason", "new")
    if key:
        write_key(
            key_path(output.out_dir, stem),
            key,
            n_detections=len(res.catalog),
            input=str(path),
            outputs=sorted(Path(v).name for v in res.outputs.values()),
        )
    if reason != "new":
        record["redone"] = reason
    record.update(
        status="ok",
        n_detections=len(res.catalog),
        n_flagged=int(np.count_nonzero(flags)),
        threshold=res.threshold,
        shape=list(prep.frame.shape),
        timings={k: round(v, 4) for k, v in res.timings.items()},
        outputs={k: str(v) for k, v in res.outputs.items()},
        warnings=res.warnings,
    )
    return record


def _run_frames(
    plan: _Plan,
    detector: Detector,
    output: OutputConfig,
    summary: RunSummary,
    *,
    masters: Any,
    workers: int,
    progress: bool,
    on_failure: Callable[[str], Any] | None,
) -> None:
    """Every planned frame, prepared ahead in ``workers`` threads; failures are recorded
    (and passed to ``on_failure``) and the batch goes on."""
    bar = None
    if progress and plan.todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan.todo), unit="frame", desc="detect", file=sys.stderr)
    n_workers = max(1, int(workers))

    def prepare(p: Path) -> Any:
        return detector.prepare(p, masters=masters)

    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="atd-prefetch") as pool:
        for p, s, fut in _prefetched(pool, plan.todo, n_workers, prepare):
            try:
                record = _run_frame(p, s, fut, detector, output, plan.keys.get(s))
            except Exception as err:  # noqa: BLE001 - one bad frame must not stop the batch
                msg = _problem(p, err)
                record = {"path": str(p), "stem": s, "status": "failed", "error": msg}
                summary.failures.append({"path": str(p), "stage": "frame", "error": msg})
                log.debug("frame failed", exc_info=True)
                if on_failure:
                    on_failure(msg)
            summary.frames.append(record)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()


def detect_files(
    inputs: Iterable[str | Path],
    detector: Detector,
    output: OutputConfig,
    *,
    masters: Any = None,
    workers: int = 1,
    progress: bool = True,
    summary_name: str | None = "summary.json",
    on_failure: Any = None,
    on_status: Any = None,
) -> RunSummary:
    """Detect sources in many frames; bad frames are reported and the batch goes on.

    ``inputs``: files, folders or glob patterns (this run's own outputs excluded). A frame
    is skipped only when its requested outputs exist and its stored resume key
    (``<stem>.key.json``: input SHA-256, model hash, threshold, options, calibration; see
    :mod:`atd_dl.detect.resume_keys`) equals the current one, unless ``output.overwrite``.
    Up to ``workers`` frames are read, calibrated and enhanced in background threads while
    the current one is inferred. ``on_failure`` (callable taking the one-line message) is
    called for each failure as it happens; ``on_status(path, text)`` for each frame
    skipped ("skipped (unchanged)") or redone ("redone (input changed)", ...).
    Writes ``summary.json`` in ``output.out_dir`` (unless ``summary_name`` is None).
    """
    t_start = time.perf_counter()
    summary = RunSummary(
        model=str(detector.meta.get("name")),
        device=detector.device,
        threshold=detector.threshold,
        started=_now(),
    )
    paths, problems = expand_inputs(inputs)
    for item, msg in problems:
        summary.failures.append({"path": item, "stage": "input", "error": msg})
        if on_failure:
            on_failure(msg)
    plan = _plan_frames(paths, unique_stems(paths), detector, output, masters, summary, on_status)
    _run_frames(
        plan,
        detector,
        output,
        summary,
        masters=masters,
        workers=workers,
        progress=progress,
        on_failure=on_failure,
    )
    summary.finished = _now()
    summary.wall_s = time.perf_counter() - t_start
    if summary_name:
        Path(output.out_dir).mkdir(parents=True, exist_ok=True)
        summary.write(Path(output.out_dir) / summary_name)
    return summary


# ----------------------------------------------------------------------------- options
def load_masters(
    bias: str | Path | None = None,
    dark: str | Path | None = None,
    flat: str | Path | None = None,
) -> Any:
    """:class:`~atd_dl.prep.calibration.CalibrationMasters` from files, or None when none given."""
    if bias is None and dark is None and flat is None:
        return None
    from atd_dl.prep.calibration import CalibrationMasters

    return CalibrationMasters.from_files(bias=bias, dark=dark, flat=flat)


def default_workers() -> int:
    """Prefetch threads by default: 1 (reading overlaps inference; more rarely helps)."""
    return 1 if (os.cpu_count() or 1) < 4 else 2
