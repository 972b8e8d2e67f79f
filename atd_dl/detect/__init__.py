"""Detection on new frames: post-processing of probability maps and the frame pipeline.

Post-processing (pure numpy / OpenCV / scipy): :func:`extract_sources`,
:func:`segment_sources`, :class:`PostprocessConfig`, :class:`SourceFlag`.
Pipeline (torch imported only when a model runs): :func:`detect_frame`,
:func:`detect_files`, :class:`Detector`, :class:`DetectConfig`, :class:`OutputConfig`.
See ``docs/detect.md``.

The package is callable: ``atd_dl.detect(path_or_array, model="default", **options)`` is
:func:`atd_dl.api.detect` (a catalog QTable).
"""

from atd_dl._callable import make_callable
from atd_dl.detect.batch import detect_files
from atd_dl.detect.catalog_io import OutputConfig
from atd_dl.detect.flags import SourceFlag, decode_flags
from atd_dl.detect.pipeline import DetectConfig, Detector, detect_frame
from atd_dl.detect.postprocess import PostprocessConfig, extract_sources, segment_sources

__all__ = [
    "DetectConfig",
    "Detector",
    "OutputConfig",
    "PostprocessConfig",
    "SourceFlag",
    "decode_flags",
    "detect_files",
    "detect_frame",
    "extract_sources",
    "segment_sources",
]

make_callable(__name__, "detect")
