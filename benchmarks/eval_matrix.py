"""Evaluation matrix (``atd-dl benchmark --matrix``); see :mod:`atd_dl.evaluate.matrix_cli`.

python benchmarks/eval_matrix.py --out matrix_out --model default=atd_dl/weights/default
"""

from __future__ import annotations

import sys

from atd_dl.evaluate.matrix_cli import main

if __name__ == "__main__":
    sys.exit(main())
