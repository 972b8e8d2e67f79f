"""Overlay PNG: detections drawn on the ZScale-stretched frame (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from atd_dl.detect.regions import region_colour
from atd_dl.io.atomic import atomic_output


def write_overlay_png(
    image8: np.ndarray,
    table: Table,
    path: str | Path,
    *,
    radius: float = 4.0,
    title: str | None = None,
    max_pixels: int = 2000,
) -> Path:
    """Draw each source as a circle (colour by flags, see :mod:`atd_dl.detect.regions`).

    ``image8`` is the uint8 stretched frame (``origin='upper'``: row 0 at the top, as the
    array is stored). The figure has about one screen pixel per image pixel, capped at
    ``max_pixels`` on the long side. Written atomically; returns the path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import EllipseCollection

    ny, nx = image8.shape
    scale = min(1.0, max_pixels / max(nx, ny))
    dpi = 100
    fig = plt.figure(figsize=(nx * scale / dpi, ny * scale / dpi + (0.3 if title else 0)), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1 if not title else ny / (ny + 30 / scale)))
    ax.imshow(image8, cmap="gray", origin="upper", interpolation="nearest", vmin=0, vmax=255)
    if len(table):
        x = np.asarray(table["x"], dtype=float)
        y = np.asarray(table["y"], dtype=float)
        flags = np.asarray(table["flags"]) if "flags" in table.colnames else np.zeros(len(x))
        colours = [region_colour(int(f)) for f in flags]
        d = np.full(len(x), 2 * radius)
        coll = EllipseCollection(
            d,
            d,
            np.zeros(len(x)),
            units="x",
            offsets=np.column_stack([x, y]),
            offset_transform=ax.transData,
            facecolors="none",
            edgecolors=colours,
            linewidths=0.6,
        )
        ax.add_collection(coll)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(ny - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=8)
    target = Path(path)
    with atomic_output(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return target
