"""Dataset builder behind ``atd-dl prep``: FITS frames + reference catalogs → training set.

Per frame: read → calibrate (optional masters) → :func:`~atd_dl.prep.enhance.enhance_frame`
(whole-frame background + ZScale) → catalog-anchored labels on the calibrated frame
(:func:`~atd_dl.labels.make_labels`) → 512² subfields (:func:`~atd_dl.prep.partition.subfield_grid`,
numbered ``9 2 3 / 8 1 4 / 7 6 5``) → files::

    images/<stem>.png    uint8 ZScale image of the subfield
    masks/<stem>.png     uint8 label mask, 0 / 255
    aux/<stem>.npz       rms (float32 at float16 precision, background rms / frame median)
                         and bad (bool, unusable pixels)
    sigma/<stem>.npz     with ``input_kind="sigma_asinh+bad"`` only: ``planes`` [2, S, S]
                         float16, the significance input of the generalist models
                         (:func:`~atd_dl.prep.network_input.significance_planes` of the
                         whole calibrated frame, as detection computes it)
    points/<stem>.csv    kept catalog sources in subfield pixels (x, y, snr, source_id, ...)
    overlays/<frame>.png Fig. 5-style check image of the whole frame

and, over all finished frames, ``manifest.csv``, ``labels.csv``, ``table1.csv`` and
``fingerprint.json``. ``<stem>`` = ``<frame>_s<subfield>``.

Splits (paper): subfields 1, 3, 4, 6, 7, 9 → train, 2, 5, 8 → val; every subfield of a
frame named as a test frame → test. Test frames must not share sky with training frames
(checked from the WCS footprints; :class:`InputError` naming both frames unless
``force=True``).

Robustness: every file is written atomically; a frame is finished when its state file
``.state/<frame>.json`` is written (last) with its resume key, and a rerun skips a
finished frame only when the key is unchanged (SHA-256 of the frame and of its catalog,
the calibration masters' content, the settings digest and the split; see
:mod:`atd_dl.io.resume`), reporting "redone (input changed, ...)" otherwise; a frame that
fails (unreadable FITS, no catalog, no WCS, constant frame, ...) is reported, leaves the
dataset (its old state and manifest rows go) and the batch goes on (:class:`BuildReport`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atd_dl.data.fingerprint import build_fingerprint, write_fingerprint
from atd_dl.data.isolation import SkyFootprint, check_isolation, footprint_of
from atd_dl.data.manifest import (
    LABELS_COLUMNS,
    MANIFEST_COLUMNS,
    POINTS_COLUMNS,
    TABLE1_COLUMNS,
    write_csv,
)
from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_output, atomic_write_text, clean_stale_temporaries
from atd_dl.io.paths import FITS_SUFFIXES, frame_stem
from atd_dl.io.resume import compare_keys, describe_changes, file_sha256
from atd_dl.labels.anchor import LabelConfig, LabelResult, make_labels
from atd_dl.prep.network_input import (
    SIGMA_INPUT_KIND,
    normalised_rms,
    significance_planes,
)

__all__ = [
    "FITS_SUFFIXES",
    "CATALOG_SUFFIXES",
    "PrepConfig",
    "BuildReport",
    "frame_stem",
    "find_frames",
    "find_catalog",
    "assign_split",
    "build_dataset",
]

log = logging.getLogger(__name__)

CATALOG_SUFFIXES = (
    ".ecsv",
    ".csv",
    ".fits",
    ".fit",
    ".vot",
    ".xml",
    ".ecsv.gz",
    ".csv.gz",
    ".fits.gz",
    ".vot.gz",
    ".xml.gz",
)
STATE_DIR = ".state"


@dataclass(frozen=True)
class PrepConfig:
    """Settings of a dataset build (defaults = paper)."""

    subfield_size: int = 512
    train_subfields: tuple[int, ...] | None = None  # None: every subfield not in val
    val_subfields: tuple[int, ...] = (2, 5, 8)
    catalog_pattern: str = "{stem}"  # catalog file name (without suffix) for frame <stem>
    gain: float | None = None  # e-/ADU; overrides the header GAIN when given
    saturation: float | None = None  # ADU; overrides the header SATURATE when given
    hdu: int | str | None = None
    background_box: int = 50
    background_filter: int = 3
    isolation_margin_deg: float = 0.0
    write_aux: bool = True
    write_overlays: bool = True
    # network input written besides the ZScale PNG: "zscale8" (PNG + aux only) or
    # "sigma_asinh+bad" (also sigma/<stem>.npz, the planes of atd_dl.prep.network_input)
    input_kind: str = "zscale8"
    catalog_columns: Mapping[str, str] | None = None
    labels: LabelConfig = field(default_factory=LabelConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``labels`` as a nested dict)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "labels"}
        d["train_subfields"] = None if self.train_subfields is None else list(self.train_subfields)
        d["val_subfields"] = list(self.val_subfields)
        d["catalog_columns"] = None if self.catalog_columns is None else dict(self.catalog_columns)
        d["labels"] = self.labels.to_dict()
        return d

    def digest(self) -> str:
        """Short hash of the settings that change the written files."""
        d = self.to_dict()
        for k in ("write_overlays", "isolation_margin_deg"):
            d.pop(k, None)
        if d.get("input_kind") == "zscale8":  # datasets written before the option stay valid
            d.pop("input_kind")
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class BuildReport:
    """Outcome of :func:`build_dataset`."""

    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # frame -> "skipped (unchanged)" / "redone (input changed, ...)" for frames seen before
    status: dict[str, str] = field(default_factory=dict)
    overlaps: list[tuple[str, str, float]] = field(default_factory=list)
    n_subfields: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no frame failed."""
        return not self.failed

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"dataset: {self.out_dir}",
            f"frames: {len(self.done)} prepared, {len(self.skipped)} skipped (unchanged), "
            f"{len(self.failed)} failed",
            "subfields: " + ", ".join(f"{k} {v}" for k, v in self.n_subfields.items()),
        ]
        lines.extend(f"  {name}: {text}" for name, text in self.status.items())
        if self.overlaps:
            lines.append(f"WARNING: {len(self.overlaps)} test/train overlap(s) accepted (--force)")
        if self.failed:  # each failure was logged once, as it happened, with its cause
            lines.append(f"failed frames: {', '.join(self.failed)}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- inputs


def find_frames(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand a folder (its FITS files, sorted) or a list of files / folders / globs."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                q for q in p.iterdir() if q.is_file() and q.name.lower().endswith(FITS_SUFFIXES)
            )
            if not found:
                raise InputError(p, f"no FITS frames ({', '.join(FITS_SUFFIXES)}) in folder")
            out.extend(found)
        elif any(ch in str(item) for ch in "*?["):
            found = [Path(q) for q in sorted(glob.glob(str(item))) if Path(q).is_file()]
            if not found:
                raise InputError(p, "pattern matches no file")
            out.extend(found)
        else:
            out.append(p)  # a missing file fails later with the frame's own message
    if not out:
        raise InputError(None, "no input frames")
    stems: dict[str, Path] = {}
    for p in out:
        s = frame_stem(p)
        if s in stems and stems[s] != p:
            raise InputError(p, f"frame name '{s}' also used by {stems[s]}; names must be unique")
        stems[s] = p
    return list(dict.fromkeys(out))


def find_catalog(
    frame: str | Path,
    catalogs: str | Path,
    *,
    pattern: str = "{stem}",
    suffixes: Sequence[str] = CATALOG_SUFFIXES,
) -> Path:
    """Catalog of ``frame``: ``catalogs`` itself when it is a file (one catalog for all
    frames), else ``<catalogs>/<pattern><suffix>`` for the first suffix that exists."""
    cat = Path(catalogs)
    if cat.is_file():
        return cat
    if not cat.is_dir():
        raise InputError(cat, "catalog folder not found")
    stem = frame_stem(frame)
    base = pattern.format(stem=stem, name=Path(frame).name)
    for suf in suffixes:
        cand = cat / f"{base}{suf}"
        if cand.is_file():
            return cand
    short = "{" + ",".join(s.lstrip(".") for s in suffixes[:6]) + ",...}"
    raise InputError(frame, f"no reference catalog found: looked for {cat / base}.{short}")


def assign_split(subfield: int, *, test: bool, config: PrepConfig) -> str | None:
    """Split of subfield ``subfield`` of a frame (None = not used)."""
    if test:
        return "test"
    if subfield in config.val_subfields:
        return "val"
    if config.train_subfields is None or subfield in config.train_subfields:
        return "train"
    return None


def _match_test(stems: Sequence[str], paths: Sequence[Path], patterns: Sequence[str]) -> set[str]:
    """Frames named by ``patterns`` (exact names, file names or globs)."""
    chosen: set[str] = set()
    for pat in patterns:
        pat = pat.strip()
        if not pat:
            continue
        hit = {
            s
            for s, p in zip(stems, paths)
            if fnmatch.fnmatch(s, pat) or fnmatch.fnmatch(p.name, pat) or str(p) == pat
        }
        if not hit:
            raise InputError(None, f"test frame pattern '{pat}' matches none of the input frames")
        chosen |= hit
    return chosen


def _parse_patterns(test_frames: str | Sequence[str] | None) -> list[str]:
    if test_frames is None:
        return []
    if isinstance(test_frames, str):
        return [t for t in test_frames.split(",") if t.strip()]
    return [str(t) for t in test_frames]


# ----------------------------------------------------------------------------- outputs


def _write_png(path: Path, image: np.ndarray) -> None:
    from atd_dl.labels.overlay import write_png

    write_png(path, image)


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


def _write_points(path: Path, res: LabelResult, sub) -> int:
    """Write the kept sources inside ``sub`` in subfield pixel coordinates; return the count."""
    kept = res.kept
    x = np.asarray(kept["x"], dtype=np.float64) - sub.x0
    y = np.asarray(kept["y"], dtype=np.float64) - sub.y0
    i = np.flatnonzero((x >= -0.5) & (x < sub.size - 0.5) & (y >= -0.5) & (y < sub.size - 0.5))
    cols = zip(
        x[i].tolist(),
        y[i].tolist(),
        np.asarray(kept["snr"], dtype=np.float64)[i].tolist(),
        np.asarray(kept["source_id"])[i].tolist(),
        np.asarray(kept["mag"], dtype=np.float64)[i].tolist(),
        (np.asarray(kept["component"])[i] == 0).astype(int).tolist(),
        np.asarray(kept["saturated"], dtype=bool)[i].astype(int).tolist(),
    )
    lines = [",".join(POINTS_COLUMNS)]
    lines += [f"{a:.4f},{b:.4f},{c:.3f},{d},{e:.4f},{f},{g}" for a, b, c, d, e, f, g in cols]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(i)


def _count_in(x: np.ndarray, y: np.ndarray, sub, select: np.ndarray | None = None) -> int:
    inside = (x >= sub.x0 - 0.5) & (x < sub.x0 + sub.size - 0.5)
    inside &= (y >= sub.y0 - 0.5) & (y < sub.y0 + sub.size - 0.5)
    if select is not None:
        inside &= select
    return int(inside.sum())


def _subfield_radec(wcs, sub) -> tuple[float, float]:
    if wcs is None:
        return float("nan"), float("nan")
    cy, cx = sub.center
    try:
        sky = wcs.pixel_to_world(cx, cy)
        return float(sky.ra.deg), float(sky.dec.deg)
    except Exception:  # noqa: BLE001 - a broken WCS only loses the sky position
        return float("nan"), float("nan")


# ----------------------------------------------------------------------------- one frame


def prepare_training_frame(
    path: Path,
    catalogs: str | Path,
    out_dir: Path,
    *,
    test: bool,
    config: PrepConfig,
    masters=None,
) -> dict[str, Any]:
    """Prepare one frame (all its files) and return its state record (not yet written)."""
    from atd_dl.io.catalogs import project_catalog, read_reference_catalog
    from atd_dl.io.fits_io import read_frame
    from atd_dl.labels.overlay import write_overlay
    from atd_dl.prep.enhance import enhance_frame, table1_metrics
    from atd_dl.prep.partition import subfield_grid

    t0 = time.perf_counter()
    name = frame_stem(path)
    cat_path = find_catalog(path, catalogs, pattern=config.catalog_pattern)
    raw = read_frame(path, hdu=config.hdu, saturation=config.saturation)
    if raw.wcs is None:
        raise InputError(path, "frame has no celestial WCS: cannot project the reference catalog")
    gain, gain_source = config.gain, "config"
    if gain is None:
        gain, gain_source = raw.gain, "header"
    if gain is None:
        raise InputError(path, "gain unknown (no GAIN/EGAIN in the header): pass --gain E_PER_ADU")
    try:
        subs = subfield_grid(raw.shape, config.subfield_size)
    except InputError as err:
        raise InputError(path, err.problem) from None
    frame = raw
    if masters is not None and masters:
        from atd_dl.prep.calibration import calibrate

        frame = calibrate(raw, masters)
    usable = frame.data[np.isfinite(frame.data) & ~frame.mask]
    if usable.size == 0:
        raise InputError(path, "no finite unmasked pixel: nothing to label")
    if float(np.ptp(usable)) == 0.0:
        raise InputError(
            path,
            f"constant frame (every usable pixel = {float(usable[0]):g}): no measurable "
            "noise or PSF; remove it from the batch",
        )
    enh = enhance_frame(
        frame.data,
        frame.mask,
        box=config.background_box,
        filter_size=config.background_filter,
        source=path,
    )
    assert enh.image8 is not None  # stretch=True
    columns = None if config.catalog_columns is None else dict(config.catalog_columns)
    catalog = read_reference_catalog(cat_path, columns=columns)
    projected = project_catalog(catalog, frame.wcs, frame.shape, epoch=frame.date_obs)
    res = make_labels(
        frame.data,
        enh.background,
        enh.background_rms,
        projected,
        gain=float(gain),
        mask=frame.mask,
        saturated=frame.saturated,
        n_catalog=len(catalog),
        config=config.labels,
    )
    psf_fwhm = res.psf_fwhm
    if not np.isfinite(psf_fwhm):
        psf_fwhm = _fwhm_for_fingerprint(frame, enh, res)

    rms = enh.background_rms
    good_rms = rms[np.isfinite(rms) & (rms > 0) & ~frame.mask]
    rms_med = float(np.median(good_rms)) if good_rms.size else float("nan")
    norm_rms = normalised_rms(rms, frame.mask)
    # float16 precision (5e-4 relative) is plenty for a noise map and compresses 10x better
    norm_rms = norm_rms.astype(np.float16).astype(np.float32)
    kx = np.asarray(res.kept["x"], dtype=np.float64)
    ky = np.asarray(res.kept["y"], dtype=np.float64)
    blob = np.asarray(res.kept["component"]) == 0
    src = res.sources
    sx = np.asarray(src["x"], dtype=np.float64)
    sy = np.asarray(src["y"], dtype=np.float64)
    low = np.asarray(src["status"]) == "low_snr"
    cx = np.asarray(res.components["x"], dtype=np.float64)
    cy = np.asarray(res.components["y"], dtype=np.float64)
    cm = np.asarray(res.components["matched"], dtype=bool)

    sigma = None
    if config.input_kind == SIGMA_INPUT_KIND:  # whole frame, as detection computes it
        sigma = significance_planes(
            enh.subtracted, enh.background_rms, bad=frame.mask, saturated=frame.saturated
        )
    elif config.input_kind != "zscale8":
        raise InputError(
            None, f"input kind must be 'zscale8' or '{SIGMA_INPUT_KIND}', got {config.input_kind!r}"
        )
    rows: list[dict[str, Any]] = []
    hist_by_split: dict[str, np.ndarray] = {}
    mask_by_split: dict[str, list[int]] = {}
    for sub in subs:
        split = assign_split(sub.number, test=test, config=config)
        if split is None:
            continue
        stem = f"{name}_s{sub.number}"
        sl = sub.slices
        img = np.ascontiguousarray(enh.image8[sl])
        msk = np.ascontiguousarray(res.mask[sl] * np.uint8(255))
        _write_png(out_dir / "images" / f"{stem}.png", img)
        _write_png(out_dir / "masks" / f"{stem}.png", msk)
        if config.write_aux:
            _write_npz(
                out_dir / "aux" / f"{stem}.npz",
                rms=np.ascontiguousarray(norm_rms[sl], dtype=np.float32),
                bad=np.ascontiguousarray(frame.mask[sl]),
            )
        if sigma is not None:
            _write_npz(
                out_dir / "sigma" / f"{stem}.npz",
                planes=np.ascontiguousarray(sigma[:, sl[0], sl[1]], dtype=np.float16),
            )
        _write_points(out_dir / "points" / f"{stem}.csv", res, sub)
        ra, dec = _subfield_radec(frame.wcs, sub)
        n_mask = int(res.mask[sl].sum())
        rows.append(
            {
                "stem": stem,
                "frame": name,
                "subfield": sub.number,
                "split": split,
                "x0": sub.x0,
                "y0": sub.y0,
                "size": sub.size,
                "ra_center": ra,
                "dec_center": dec,
                "n_kept": _count_in(kx, ky, sub),
                "n_kept_blob": _count_in(kx, ky, sub, blob),
                "n_dropped_snr": _count_in(sx, sy, sub, low),
                "n_components": _count_in(cx, cy, sub),
                "n_components_matched": _count_in(cx, cy, sub, cm),
                "n_mask_pixels": n_mask,
                "mask_fraction": n_mask / float(sub.size * sub.size),
                "psf_fwhm": psf_fwhm,
                "gain": float(gain),
                "image": f"images/{stem}.png",
                "mask": f"masks/{stem}.png",
                "aux": f"aux/{stem}.npz" if config.write_aux else "",
                "points": f"points/{stem}.csv",
            }
        )
        hist_by_split.setdefault(split, np.zeros(256, dtype=np.int64))
        hist_by_split[split] += np.bincount(img.ravel(), minlength=256)
        pos_tot = mask_by_split.setdefault(split, [0, 0])
        pos_tot[0] += n_mask
        pos_tot[1] += img.size
    if config.write_overlays:
        write_overlay(out_dir / "overlays" / f"{name}.png", enh.image8, res)
    table1 = [
        {"frame": name, **row}
        for row in table1_metrics(raw.data, raw.mask, enhanced=enh, source=path)
    ]
    fp = footprint_of(name, frame.wcs, frame.shape)
    bkg = enh.background[~frame.mask]
    return {
        "frame": name,
        "path": str(path),
        "catalog": str(cat_path),
        "test": bool(test),
        "config_digest": config.digest(),
        "shape": list(frame.shape),
        "gain": float(gain),
        "gain_source": gain_source,
        "psf_fwhm": float(psf_fwhm) if np.isfinite(psf_fwhm) else None,
        "background_adu": float(np.median(bkg)) if bkg.size else None,
        "background_rms_adu": rms_med if np.isfinite(rms_med) else None,
        "vmin": enh.vmin,
        "vmax": enh.vmax,
        "counts": dict(res.counts),
        "subfields": rows,
        "table1": table1,
        "hist_by_split": {k: v.tolist() for k, v in hist_by_split.items()},
        "mask_by_split": mask_by_split,
        "footprint": fp.to_dict(),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _fwhm_for_fingerprint(frame, enh, res: LabelResult) -> float:
    """PSF FWHM (px) from bright isolated kept stars when labelling did not need one."""
    from atd_dl.labels.psf import median_prf_fwhm, select_psf_stars

    kept = res.kept
    ok = ~np.asarray(kept["saturated"], dtype=bool)
    x = np.asarray(kept["x"], dtype=np.float64)[ok]
    y = np.asarray(kept["y"], dtype=np.float64)[ok]
    pick = select_psf_stars(
        x,
        y,
        np.asarray(kept["snr"], dtype=np.float64)[ok],
        frame.shape,
        all_x=np.asarray(kept["x"], dtype=np.float64),
        all_y=np.asarray(kept["y"], dtype=np.float64),
        bad=frame.mask,
        max_stars=12,
    )
    if len(pick) < 3:
        return float("nan")
    return median_prf_fwhm(enh.subtracted, x[pick], y[pick])


# ----------------------------------------------------------------------------- batch


def _state_path(out_dir: Path, name: str) -> Path:
    return out_dir / STATE_DIR / f"{name}.json"


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _footprint_from_header(path: Path, config: PrepConfig) -> SkyFootprint | None:
    """Sky footprint of a frame from its WCS (reads the frame); None without WCS."""
    from atd_dl.io.fits_io import read_frame

    fr = read_frame(path, hdu=config.hdu, saturation=float("inf"))
    if fr.wcs is None:
        return None
    return footprint_of(frame_stem(path), fr.wcs, fr.shape)


def _masters_key(masters) -> dict[str, Any] | None:
    """Content hashes of the calibration masters (None without masters)."""
    if masters is None or not masters:
        return None
    out: dict[str, Any] = {}
    for k in ("bias", "dark", "flat"):
        arr = getattr(masters, k, None)
        out[k] = (
            None if arr is None else hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        )
    out["dark_exptime"] = getattr(masters, "dark_exptime", None)
    return out


def _resume_key(
    path: Path, catalogs: str | Path, cfg: PrepConfig, calibration: Any, *, test: bool
) -> dict[str, Any]:
    """What must be unchanged for a finished frame to be skipped (:mod:`atd_dl.io.resume`)."""
    try:
        cat = find_catalog(path, catalogs, pattern=cfg.catalog_pattern)
        cat_sha: str | None = file_sha256(cat)
    except (InputError, OSError):
        cat_sha = None  # the frame fails with a clear message when prepared
    try:
        frame_sha: str | None = file_sha256(path)
    except OSError:
        frame_sha = None
    return {
        "input_sha256": frame_sha,
        "catalog_sha256": cat_sha,
        "calibration": calibration,
        "config": cfg.digest(),
        "test": bool(test),
    }


def build_dataset(
    frames: str | Path | Iterable[str | Path],
    catalogs: str | Path,
    out_dir: str | Path,
    *,
    masters=None,
    test_frames: str | Sequence[str] | None = None,
    config: PrepConfig | None = None,
    force: bool = False,
    redo: bool = False,
    progress: bool = True,
) -> BuildReport:
    """Prepare a training / validation / test dataset from FITS frames and catalogs.

    Parameters
    ----------
    frames : folder, file, glob or list of them
        Raw (or calibrated) FITS frames.
    catalogs : folder or file
        ``<catalogs>/<frame>.{ecsv,csv,fits,vot,xml}`` per frame (``config.catalog_pattern``),
        or one catalog file covering all frames.
    out_dir : folder
        Dataset folder (created; see the module docstring for its layout).
    masters : :class:`~atd_dl.prep.calibration.CalibrationMasters`, optional
        Master bias / dark / flat applied to every frame.
    test_frames : names or globs (list or comma-separated string)
        Frames whose subfields all go to the test split.
    config : :class:`PrepConfig`
        Split rule, gain / saturation overrides, label parameters, ...
    force : bool
        Accept test frames that overlap training frames on the sky (logged).
    redo : bool
        Prepare frames again even when already finished.

    Returns a :class:`BuildReport`; failed frames are listed there (the batch goes on).
    Raises :class:`InputError` for problems that concern the whole batch (no frames,
    unknown test-frame name, test/train sky overlap without ``force``).
    """
    cfg = config or PrepConfig()
    out = Path(out_dir)
    paths = find_frames(frames)
    stems = [frame_stem(p) for p in paths]
    test_set = _match_test(stems, paths, _parse_patterns(test_frames))
    report = BuildReport(out_dir=out)
    digest = cfg.digest()
    calibration = _masters_key(masters)
    clean_stale_temporaries(out)

    # sky isolation of test frames (current inputs and frames finished earlier in out_dir)
    states = {
        p.stem: s
        for p in sorted((out / STATE_DIR).glob("*.json"))
        if (s := _read_state(p)) is not None
    }
    fps: dict[str, SkyFootprint] = {}
    is_test: dict[str, bool] = {}
    by_name = dict(zip(stems, paths))
    for name, st in states.items():
        if name not in by_name and st.get("footprint"):
            fps[name] = SkyFootprint.from_dict(name, st["footprint"])
            is_test[name] = bool(st.get("test"))
    for name, path in by_name.items():
        is_test[name] = name in test_set
        old = states.get(name)
        if old and old.get("footprint") and old.get("path") == str(path):
            fps[name] = SkyFootprint.from_dict(name, old["footprint"])
            continue
        try:
            fp = _footprint_from_header(path, cfg)
        except InputError as err:
            log.error("%s", err)
            report.failed[name] = str(err)
            continue
        if fp is None:
            log.warning("%s: no celestial WCS; sky isolation cannot be checked", path)
        else:
            fps[name] = fp
    test_fps = [fp for n, fp in fps.items() if is_test.get(n)]
    train_fps = [fp for n, fp in fps.items() if not is_test.get(n)]
    report.overlaps = check_isolation(
        test_fps, train_fps, paths=by_name, margin_deg=cfg.isolation_margin_deg, force=force
    )
    for t, r, sep in report.overlaps:
        log.warning(
            "test frame %s overlaps training frame %s (%.3f deg apart); accepted", t, r, sep
        )

    todo = [(n, p) for n, p in by_name.items() if n not in report.failed]
    try:
        from tqdm import tqdm

        bar = tqdm(todo, desc="prep", unit="frame", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = todo
    for name, path in bar:
        prev = states.get(name)
        # resume keyed on content (atd_dl.io.resume): frame + catalog + masters + settings
        key = _resume_key(path, catalogs, cfg, calibration, test=is_test[name])
        changed = compare_keys(prev.get("key") if prev else None, key)
        if prev is not None and not changed and not redo:
            report.skipped.append(name)
            report.status[name] = "skipped (unchanged)"
            continue
        if prev is not None:
            why = "--redo" if redo and not changed else describe_changes(changed)
            report.status[name] = f"redone ({why})"
            log.info("%s: redone (%s)", path, why)
        try:
            record = prepare_training_frame(
                path, catalogs, out, test=is_test[name], config=cfg, masters=masters
            )
        except Exception as err:  # noqa: BLE001 - one bad frame must not stop the batch
            msg = (
                str(err) if isinstance(err, InputError) else f"{path}: {type(err).__name__}: {err}"
            )
            log.error("%s", msg, exc_info=log.isEnabledFor(10))
            report.failed[name] = msg
            # a frame that fails now leaves the dataset (no stale subfields in the manifest)
            if states.pop(name, None) is not None:
                _state_path(out, name).unlink(missing_ok=True)
            continue
        record["key"] = key
        atomic_write_text(_state_path(out, name), json.dumps(record) + "\n")
        states[name] = record
        report.done.append(name)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(kept=record["counts"]["n_kept"], s=f"{record['seconds']:.1f}")

    other = sorted(n for n, st in states.items() if st.get("config_digest") != digest)
    if other:
        log.warning(
            "%d frame(s) in %s were prepared with other settings and stay in the dataset: %s",
            len(other),
            out,
            ", ".join(other[:5]) + (" ..." if len(other) > 5 else ""),
        )
    _write_tables(out, states, cfg, test_set)
    counts: dict[str, int] = {"train": 0, "val": 0, "test": 0}
    for st in states.values():
        for row in st.get("subfields", []):
            counts[row["split"]] = counts.get(row["split"], 0) + 1
    report.n_subfields = counts
    return report


def _write_tables(
    out: Path, states: Mapping[str, Mapping[str, Any]], cfg: PrepConfig, test_set: set[str]
) -> None:
    """Write manifest / labels / table1 / fingerprint over every finished frame in ``out``."""
    if not states:
        return
    records = [states[k] for k in sorted(states)]
    manifest = [row for rec in records for row in rec.get("subfields", [])]
    labels = []
    for rec in records:
        labels.append(
            {
                "frame": rec["frame"],
                "test": rec.get("test", False),
                "n_subfields": len(rec.get("subfields", [])),
                **rec.get("counts", {}),
                "psf_fwhm": rec.get("psf_fwhm"),
                "gain": rec.get("gain"),
                "gain_source": rec.get("gain_source"),
                "background_adu": rec.get("background_adu"),
                "background_rms_adu": rec.get("background_rms_adu"),
                "seconds": rec.get("seconds"),
            }
        )
    table1 = [row for rec in records for row in rec.get("table1", [])]
    write_csv(out / "manifest.csv", manifest, MANIFEST_COLUMNS)
    write_csv(out / "labels.csv", labels, LABELS_COLUMNS)
    write_csv(out / "table1.csv", table1, TABLE1_COLUMNS)
    split_rule = {
        "train_subfields": (
            "all but val" if cfg.train_subfields is None else list(cfg.train_subfields)
        ),
        "val_subfields": list(cfg.val_subfields),
        "test_frames": sorted(r["frame"] for r in records if r.get("test")),
        "subfield_size": cfg.subfield_size,
        "numbering": "9 2 3 / 8 1 4 / 7 6 5 (1 = centre)",
    }
    doc = build_fingerprint(
        records,
        split_rule=split_rule,
        prep_config={k: v for k, v in cfg.to_dict().items() if k != "labels"},
        label_config=cfg.labels.to_dict(),
    )
    write_fingerprint(out / "fingerprint.json", doc)
