"""Detection on many frames: inputs, resumption, prefetching, the run summary.

:func:`detect_files` is the batch behind ``atd-dl detect`` and ``infer.py``. It runs as a
short chain of stages:

1. :func:`expand_inputs` -- files, folders and glob patterns to frame paths (this verb's
   own outputs excluded), :func:`unique_stems` -- one output name per frame;
2. the resume decision (:mod:`atd_dl.detect.resume_keys`): a frame is skipped only when
   its outputs exist and its stored key is unchanged;
3. the frames left, prepared ahead in background threads while the current one is
   inferred (:meth:`~atd_dl.detect.pipeline.Detector.run`), each failure recorded and
   the batch going on -- or, with ``jobs > 1``, shared among worker processes
   (:func:`_run_frames_in_processes`: 'spawn' context, the model loaded once per process,
   each with ``cores / jobs`` inference threads);
4. the :class:`RunSummary` (``summary.json``, frames per minute included).

The one-frame work is :mod:`atd_dl.detect.pipeline`; the writing
:mod:`atd_dl.detect.catalog_io`. This module imports both; neither imports it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from atd_dl import __version__
from atd_dl.detect.catalog_io import OUTPUT_SUFFIXES, OutputConfig
from atd_dl.detect.onnx_engine import OnnxNetwork, cpu_threads
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
    jobs: int = 1  # processes that ran the frames

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

    @property
    def frames_per_minute(self) -> float:
        """Frames processed (not skipped, not failed) per minute of this run's wall time
        (from the call of :func:`detect_files`: worker start-up included)."""
        if self.wall_s <= 0 or not self.n_ok:
            return 0.0
        return 60.0 * self.n_ok / self.wall_s

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
            "jobs": self.jobs,
            "frames_per_minute": round(self.frames_per_minute, 3),
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
    prepared: Callable[[], Any],
    detector: Detector,
    output: OutputConfig,
    key: dict[str, Any] | None,
) -> dict[str, Any]:
    """Run one frame (``prepared()`` gives it read and enhanced: a prefetched future's
    ``result``), write its outputs and resume key; its summary record.
    Raises what reading or detecting the frame raised."""
    record: dict[str, Any] = {"path": str(path), "stem": stem}
    prep = prepared()
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


def _frame_record(
    path: Path,
    stem: str,
    prepared: Callable[[], Any],
    detector: Detector,
    output: OutputConfig,
    key: dict[str, Any] | None,
) -> tuple[dict[str, Any], str | None]:
    """:func:`_run_frame`, a failure turned into a "failed" record:
    ``(record, one-line error or None)``."""
    try:
        return _run_frame(path, stem, prepared, detector, output, key), None
    except Exception as err:  # noqa: BLE001 - one bad frame must not stop the batch
        msg = _problem(path, err)
        log.debug("frame failed", exc_info=True)
        return {"path": str(path), "stem": stem, "status": "failed", "error": msg}, msg


def _record_outcome(
    summary: RunSummary,
    record: dict[str, Any],
    msg: str | None,
    on_failure: Callable[[str], Any] | None,
) -> None:
    """Append a frame's record (and its failure) to ``summary``."""
    if msg is not None:
        summary.failures.append({"path": record["path"], "stage": "frame", "error": msg})
        if on_failure:
            on_failure(msg)
    summary.frames.append(record)


def _progress_bar(progress: bool, n: int) -> Any:
    if not (progress and n):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=n, unit="frame", desc="detect", file=sys.stderr)


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
    bar = _progress_bar(progress, len(plan.todo))
    n_workers = max(1, int(workers))

    def prepare(p: Path) -> Any:
        return detector.prepare(p, masters=masters)

    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="atd-prefetch") as pool:
        for p, s, fut in _prefetched(pool, plan.todo, n_workers, prepare):
            record, msg = _frame_record(p, s, fut.result, detector, output, plan.keys.get(s))
            _record_outcome(summary, record, msg, on_failure)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()


# --------------------------------------------------------------------- worker processes
@dataclass
class _WorkerSpec:
    """What a worker process needs to rebuild the parent's :class:`Detector` (pickled
    once per process): a torch module itself, or the path of the ONNX model (an ONNX
    Runtime session does not pickle)."""

    model: Any
    onnx: bool
    meta: dict[str, Any]
    config: Any
    binary_model: Any
    output: OutputConfig
    masters: Any
    threads: int
    log_level: int

    @classmethod
    def of(
        cls, detector: Detector, output: OutputConfig, masters: Any, threads: int
    ) -> _WorkerSpec:
        model = detector.model
        onnx = isinstance(model, OnnxNetwork)
        if model is None:
            raise ValueError("this Detector has no model (post-processing only)")
        return cls(
            model=model.path if onnx else model,
            onnx=onnx,
            meta=detector.meta,
            config=detector.config,
            binary_model=detector.binary_model,
            output=output,
            masters=masters,
            threads=threads,
            log_level=logging.getLogger().getEffectiveLevel(),
        )


#: the worker process's detector, output and masters (set once by :func:`_init_worker`)
_WORKER: dict[str, Any] = {}


def _init_worker(spec: _WorkerSpec) -> None:
    """Worker process start: leave Ctrl-C to the parent (which ends every worker), log
    like it, and load the model once with ``spec.threads`` inference threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = str(spec.threads)
    logging.basicConfig(level=spec.log_level, format="%(levelname)s: %(message)s")
    if spec.onnx:
        model: Any = OnnxNetwork(spec.model, threads=spec.threads)
    else:
        import torch

        torch.set_num_threads(spec.threads)
        model = spec.model
    detector = Detector(model, spec.meta, spec.config)
    detector.binary_model = spec.binary_model
    _WORKER.update(detector=detector, output=spec.output, masters=spec.masters)


def _worker_frame(
    path: Path, stem: str, key: dict[str, Any] | None
) -> tuple[dict[str, Any], str | None]:
    """One frame in a worker process: ``(record, error or None)`` as :func:`_frame_record`."""
    detector: Detector = _WORKER["detector"]
    masters = _WORKER["masters"]
    return _frame_record(
        path,
        stem,
        lambda: detector.prepare(path, masters=masters),
        detector,
        _WORKER["output"],
        key,
    )


@contextlib.contextmanager
def _worker_start_env(threads: int) -> Iterator[None]:
    """While worker processes start (a spawned process inherits the environment and the
    ignored signals as they are then): ``OMP_NUM_THREADS`` (and the BLAS libraries'
    variables) set to ``threads`` and, in the main thread, Ctrl-C ignored, so that the
    workers leave it to the parent from their first instruction. Restored afterwards."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in names}
    os.environ.update({k: str(threads) for k in names})
    main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, handler)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Stop every worker process now (Ctrl-C, or an error in the parent)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


def _run_frames_in_processes(
    plan: _Plan,
    detector: Detector,
    output: OutputConfig,
    summary: RunSummary,
    *,
    masters: Any,
    jobs: int,
    progress: bool,
    on_failure: Callable[[str], Any] | None,
) -> None:
    """Every planned frame, shared among ``jobs`` worker processes ('spawn'; each loads
    the model once and runs with ``cores / jobs`` inference threads). Frames are handed
    out one at a time (a free process takes the next); the records are appended in the
    planned (input) order, failures reported as they happen. Ctrl-C ends every worker."""
    threads = max(1, cpu_threads() // jobs)
    spec = _WorkerSpec.of(detector, output, masters, threads)
    bar = _progress_bar(progress, len(plan.todo))
    results: dict[int, tuple[dict[str, Any], str | None]] = {}
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(spec,),
    )
    try:
        with _worker_start_env(threads):  # processes start as frames are submitted
            futures = {
                pool.submit(_worker_frame, p, s, plan.keys.get(s)): i
                for i, (p, s) in enumerate(plan.todo)
            }
        for fut in as_completed(futures):
            i = futures[fut]
            p, s = plan.todo[i]
            try:
                record, msg = fut.result()
            except Exception as err:  # noqa: BLE001 - a worker died (memory, signal)
                msg = _problem(p, err)
                record = {"path": str(p), "stem": s, "status": "failed", "error": msg}
            results[i] = (record, msg)
            if msg is not None and on_failure:
                on_failure(msg)
            if bar is not None:
                bar.update(1)
    except BaseException:
        _end_workers(pool)
        raise
    finally:
        if bar is not None:
            bar.close()
    pool.shutdown(wait=True)
    for i in range(len(plan.todo)):
        record, msg = results[i]
        _record_outcome(summary, record, msg, None)


def detect_files(
    inputs: Iterable[str | Path],
    detector: Detector,
    output: OutputConfig,
    *,
    masters: Any = None,
    workers: int = 1,
    jobs: int = 1,
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
    the current one is inferred. ``jobs > 1`` shares the frames among that many worker
    processes instead (each loads the model once and infers with ``cores / jobs``
    threads; same outputs, resume keys and summary as one process, frames in input
    order). ``on_failure`` (callable taking the one-line message) is
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
    n_jobs = max(1, min(int(jobs), len(plan.todo)))
    summary.jobs = n_jobs
    if n_jobs > 1:
        _run_frames_in_processes(
            plan,
            detector,
            output,
            summary,
            masters=masters,
            jobs=n_jobs,
            progress=progress,
            on_failure=on_failure,
        )
    else:
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
    bad_pixels: str | Path | None = None,
) -> Any:
    """:class:`~atd_dl.prep.calibration.CalibrationMasters` from files, or None when none given."""
    if bias is None and dark is None and flat is None and bad_pixels is None:
        return None
    from atd_dl.prep.calibration import CalibrationMasters

    return CalibrationMasters.from_files(bias=bias, dark=dark, flat=flat, bad_pixels=bad_pixels)


def default_workers() -> int:
    """Prefetch threads by default: 1 (reading overlaps inference; more rarely helps)."""
    return 1 if (os.cpu_count() or 1) < 4 else 2
