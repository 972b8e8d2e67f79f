"""``fingerprint.json``: what a prepared dataset looks like, to compare it with new data.

It records the pixel statistics of the 8-bit images the network is trained on (mean,
spread, percentiles, 256-bin histogram; overall and per split), the label density, the
PSF FWHM estimated on each frame (from bright isolated kept stars), label counts, the
frames with their splits, the split rule, the preparation parameters and the software
versions. A model trained on the dataset ships this file, so that detection can warn
when a new frame's statistics are far from the training data.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from atd_dl import __version__
from atd_dl.io.atomic import atomic_write_text

__all__ = ["histogram_stats", "software_versions", "build_fingerprint", "write_fingerprint"]


def histogram_stats(hist: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Mean, std, entropy (bits) and percentiles of a 256-bin uint8 histogram."""
    h = np.asarray(hist, dtype=np.float64)
    n = h.sum()
    if n <= 0:
        return {"n_pixels": 0}
    levels = np.arange(len(h), dtype=np.float64)
    p = h / n
    mean = float((p * levels).sum())
    std = float(np.sqrt(max((p * (levels - mean) ** 2).sum(), 0.0)))
    nz = p[p > 0]
    cdf = np.cumsum(p)
    pct = {f"p{q:g}": float(np.searchsorted(cdf, q / 100.0)) for q in (1, 5, 25, 50, 75, 95, 99)}
    return {
        "n_pixels": int(n),
        "mean": mean,
        "std": std,
        "entropy": float(-(nz * np.log2(nz)).sum()),
        **pct,
        "frac_0": float(p[0]),
        "frac_255": float(p[-1]),
    }


def software_versions() -> dict[str, str]:
    """Versions of the libraries that shape the prepared data."""
    out = {"atd_dl": __version__, "python": platform.python_version()}
    for mod in ("numpy", "scipy", "astropy", "photutils", "cv2", "skimage"):
        try:
            m = __import__(mod)
            out["opencv" if mod == "cv2" else mod] = str(getattr(m, "__version__", "?"))
        except ImportError:  # pragma: no cover
            continue
    return out


def build_fingerprint(
    records: Sequence[Mapping[str, Any]],
    *,
    split_rule: Mapping[str, Any],
    prep_config: Mapping[str, Any],
    label_config: Mapping[str, Any],
) -> dict[str, Any]:
    """Assemble the fingerprint from per-frame records written by the builder."""
    hist_all = np.zeros(256, dtype=np.int64)
    hist_split = {s: np.zeros(256, dtype=np.int64) for s in ("train", "val", "test")}
    mask_pos = {s: 0 for s in hist_split}
    mask_tot = {s: 0 for s in hist_split}
    counts: dict[str, int] = {}
    frames = []
    fwhm = []
    for rec in records:
        for split, h in rec.get("hist_by_split", {}).items():
            h = np.asarray(h, dtype=np.int64)
            hist_split[split] += h
            hist_all += h
        for split, (pos, tot) in rec.get("mask_by_split", {}).items():
            mask_pos[split] += int(pos)
            mask_tot[split] += int(tot)
        for k, v in rec.get("counts", {}).items():
            counts[k] = counts.get(k, 0) + int(v)
        value = rec.get("psf_fwhm")
        if value is not None and np.isfinite(float(value)):
            fwhm.append(float(rec["psf_fwhm"]))
        frames.append(
            {
                "name": rec["frame"],
                "file": rec.get("path"),
                "test": bool(rec.get("test")),
                "splits": sorted({s["split"] for s in rec.get("subfields", [])}),
                "n_subfields": len(rec.get("subfields", [])),
                "shape": rec.get("shape"),
                "gain": rec.get("gain"),
                "psf_fwhm": rec.get("psf_fwhm"),
                "background_adu": rec.get("background_adu"),
                "background_rms_adu": rec.get("background_rms_adu"),
                "zscale": [rec.get("vmin"), rec.get("vmax")],
                "n_kept": rec.get("counts", {}).get("n_kept"),
                "footprint": rec.get("footprint"),
            }
        )
    n_sub = {s: 0 for s in hist_split}
    for rec in records:
        for s in rec.get("subfields", []):
            n_sub[s["split"]] += 1
    return {
        "format": "atd-dl dataset fingerprint v1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": "zscale8",
        "n_frames": len(frames),
        "n_subfields": n_sub,
        "pixel_stats": {
            "all": histogram_stats(hist_all),
            **{s: histogram_stats(h) for s, h in hist_split.items() if h.sum()},
        },
        "histogram": hist_all.tolist(),
        "mask_fraction": {s: (mask_pos[s] / mask_tot[s]) for s in mask_pos if mask_tot[s]},
        "psf_fwhm_px": {
            "median": float(np.median(fwhm)) if fwhm else None,
            "min": float(np.min(fwhm)) if fwhm else None,
            "max": float(np.max(fwhm)) if fwhm else None,
            "method": "photutils fit_fwhm (CircularGaussianPRF) on bright isolated kept stars",
        },
        "label_counts": counts,
        "split_rule": dict(split_rule),
        "prep": dict(prep_config),
        "labels": dict(label_config),
        "frames": frames,
        "versions": software_versions(),
    }


def write_fingerprint(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write the fingerprint as indented JSON (NaN written as null), atomically."""
    text = json.dumps(_no_nan(doc), indent=2, default=_json_default, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def _no_nan(obj: Any) -> Any:
    """Replace non-finite floats by None, recursively (strict JSON)."""
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_no_nan(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
