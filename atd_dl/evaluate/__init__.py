"""Evaluation against truth or reference catalogs: matching, metrics, sweeps, reports.

The package is callable: ``atd_dl.evaluate(detections, truth, radius=3)`` is
:func:`atd_dl.api.evaluate` (a dict of precision, recall, F1 and counts).
"""

from atd_dl._callable import make_callable

make_callable(__name__, "evaluate")
