"""Dataset preparation (``atd-dl prep``): frames + reference catalogs → training folder.

See :func:`~atd_dl.data.builder.build_dataset` for the folder layout and the split rule.
"""

from atd_dl.data.builder import BuildReport, PrepConfig, build_dataset, find_catalog, find_frames
from atd_dl.data.isolation import SkyFootprint, check_isolation, footprints_overlap
from atd_dl.data.manifest import read_manifest

__all__ = [
    "BuildReport",
    "PrepConfig",
    "SkyFootprint",
    "build_dataset",
    "check_isolation",
    "find_catalog",
    "find_frames",
    "footprints_overlap",
    "read_manifest",
]
