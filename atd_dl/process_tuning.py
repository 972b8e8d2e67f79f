"""Process-wide CPU settings for the ``atd-dl`` verbs, applied before numpy is imported.

Two costs that do no useful work on frame-sized numpy arrays, measured on a 1600² frame with
``atd-dl detect`` (2-core machine, docs/performance.md):

* OpenBLAS worker threads spin while waiting; every BLAS call made here is small (mesh
  zooms, least squares), so one thread is as fast and saves ~0.25 CPU-s per frame.
  ``OPENBLAS_NUM_THREADS`` is set to 1 unless the user set it.
* glibc's malloc returns each large block (a frame-sized temporary) to the kernel when it is
  freed and page-faults a fresh one on the next allocation; keeping blocks up to 32 MB in
  the heap saves ~0.2 CPU-s of system time per frame (peak memory +~50 MB).

Python's cyclic garbage collector runs dozens of full collections while numpy, scipy,
astropy and onnxruntime are imported (hundreds of thousands of new objects, none of them
garbage): ~0.1 CPU-s per process. :func:`pause_gc` turns it off for the start-up and
:func:`settle_gc` turns it back on with the start-up objects frozen (never scanned again).

And one at the end: a normal interpreter exit tears down every module, frees every object
one by one and destroys ONNX Runtime's session, ~0.25 CPU-s after the work is done.
:func:`fast_exit` (the ``atd-dl`` command's exit) flushes the standard streams, runs the
``atexit`` handlers (logging, temporary folders, multiprocessing) and ends the process
without that teardown, unless a non-daemon thread still runs (then Python's exit waits
for it as usual).
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import os
import sys
import threading

__all__ = ["fast_exit", "pause_gc", "settle_gc", "tune_process"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_process() -> None:
    """Apply the settings above (no-op for what is already set or not available)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024)
    except (OSError, AttributeError):  # not glibc
        pass


def fast_exit(code: int) -> None:
    """End the process with exit status ``code`` (see the module docstring); never returns."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(not t.daemon for t in others):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to say
            pass
    atexit._run_exitfuncs()
    os._exit(code)


def pause_gc() -> None:
    """Stop automatic cyclic garbage collection (start-up imports; see :func:`settle_gc`)."""
    gc.disable()


def settle_gc() -> None:
    """After :func:`pause_gc`: freeze every object alive now (modules, the model) out of
    future collections and turn automatic collection back on. No-op when it was on."""
    if gc.isenabled():
        return
    gc.freeze()
    gc.enable()
