"""Stamp cutting, normalisation, binary labels and stamp-set storage.

Pixel convention: 0-based, pixel centre = integer, arrays ``[y, x]``; multi-band data are
cubes ``[C, ny, nx]`` (bands stacked as channels, as in Gezer et al.).

Stamp geometry: the classifier works on a fixed *angular* grid so that the binary radius
(default 2.5 arcsec) is the same number of network pixels whatever the survey. A stamp
covers ``stamp_arcsec`` on a side and is resampled to ``size`` x ``size`` px; a frame with
pixel scale ``p`` arcsec/px is sampled with ``zoom = p * size / stamp_arcsec`` output
pixels per input pixel (bilinear; when shrinking, the frame is first box-averaged over
``1/zoom`` px so fluxes are not aliased).

Edges: stamp pixels outside the frame or on masked/non-finite pixels are filled with the
median of the stamp's valid pixels (a sky estimate) and the stamp is flagged ``edge``.

Stamp-set folder (written by :func:`write_stamp_set`)::

    <dir>/shard_00000.npz   images float16 [n, C, S, S] (normalised), labels int64 [n], groups int64 [n]
    <dir>/stamps.csv        one row per stamp: index, shard, row, group, label, + simulation truth
    <dir>/stampset.json     geometry, class names, generator settings, counts

User-labelled folders: a CSV with columns ``file,label`` (``label`` optional for
classification; 0/1 or single/binary); files ``.npy`` ([H, W] or [C, H, W]), ``.fits`` /
``.fit`` / ``.fits.gz`` (2-D image or 3-D cube in the first HDU with data) or ``.png``
(grey or RGB → channels), paths relative to the CSV. Stamps of another size are resampled.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from atd_dl.errors import InputError

CLASS_NAMES = ("single", "binary")
STAMP_SUFFIXES = (".npy", ".fits", ".fit", ".fits.gz", ".fit.gz", ".png")


@dataclass(frozen=True)
class StampGeometry:
    """Network stamp geometry: ``size`` px covering ``stamp_arcsec`` on a side.

    ``radius_arcsec`` is the binary radius: a second source closer than this to the
    target makes the stamp *binary*. ``normalize`` names the method of
    :func:`normalize_stamps`.
    """

    size: int = 32
    stamp_arcsec: float = 8.0
    radius_arcsec: float = 2.5
    channels: int = 1
    normalize: str = "peak_asinh"

    @property
    def out_scale(self) -> float:
        """Network pixel scale (arcsec/px)."""
        return self.stamp_arcsec / self.size

    def zoom(self, pixel_scale: float) -> float:
        """Output pixels per input pixel for a frame of ``pixel_scale`` arcsec/px."""
        return float(pixel_scale) / self.out_scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StampGeometry:
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in keys})


def _as_cube(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"image must be [ny, nx] or [C, ny, nx], got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def cut_stamps(
    image_or_cube: np.ndarray,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    size: int = 32,
    *,
    zoom: float = 1.0,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut stamps centred on ``(x, y)`` (0-based px) → ``(stamps [N, C, size, size], edge [N])``.

    ``image_or_cube`` is one frame ``[ny, nx]`` or bands stacked ``[C, ny, nx]`` (same
    pixel grid). The stamp centre ``((size-1)/2, (size-1)/2)`` falls exactly on ``(x, y)``
    (sub-pixel, bilinear sampling). ``zoom`` = output px per input px (1 = native
    sampling; < 1 shrinks after box-averaging over ``round(1/zoom)`` px). ``mask`` (bool
    ``[ny, nx]``, True = bad) and non-finite pixels count as invalid; invalid or off-frame
    stamp pixels are filled with the median of the stamp's valid pixels (0 if none) and
    the stamp's ``edge`` flag is set.
    """
    cube = _as_cube(image_or_cube)
    nc, ny, nx = cube.shape
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.shape != y.shape:
        raise ValueError("x and y must have the same length")
    if zoom <= 0:
        raise ValueError("zoom must be > 0")
    n = len(x)
    out = np.zeros((n, nc, size, size), dtype=np.float32)
    if n == 0:
        return out, np.zeros(0, dtype=bool)
    bad = ~np.isfinite(cube).all(axis=0)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    src = np.where(bad[None], 0.0, cube).astype(np.float32)
    valid = (~bad).astype(np.float32)
    box = int(round(1.0 / zoom)) if zoom < 1.0 else 1
    if box > 1:
        # box-average data and validity so a shrunken stamp keeps mean surface brightness
        num = ndimage.uniform_filter(src * valid[None], size=(1, box, box), mode="constant")
        den = ndimage.uniform_filter(valid, size=box, mode="constant")
        src = np.where(den[None] > 0, num / np.maximum(den[None], 1e-12), 0.0).astype(np.float32)
        valid = (den > 0.999).astype(np.float32)
    off = (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) / zoom
    # an even box window is centred half a pixel before its output pixel
    shift = 0.5 if box > 1 and box % 2 == 0 else 0.0
    yy = y[:, None, None] + shift + off[None, :, None]  # [n, size, 1]
    xx = x[:, None, None] + shift + off[None, None, :]  # [n, 1, size]
    yy, xx = np.broadcast_arrays(yy, xx)
    coords = np.stack([yy.ravel(), xx.ravel()])
    inside = (coords[0] >= -0.5) & (coords[0] <= ny - 0.5) & (coords[1] >= -0.5)
    inside &= coords[1] <= nx - 0.5
    ok = ndimage.map_coordinates(valid, coords, order=1, mode="nearest") > 0.999
    ok = (ok & inside).reshape(n, size, size)
    for c in range(nc):
        out[:, c] = ndimage.map_coordinates(src[c], coords, order=1, mode="nearest").reshape(
            n, size, size
        )
    edge = ~ok.all(axis=(1, 2))
    for i in np.flatnonzero(edge):
        for c in range(nc):
            good = out[i, c][ok[i]]
            out[i, c][~ok[i]] = float(np.median(good)) if good.size else 0.0
    return out, edge


def normalize_stamps(stamps: np.ndarray, method: str = "peak_asinh") -> np.ndarray:
    """Scale raw stamps ``[N, C, S, S]`` for the network (per stamp and channel).

    ``"peak"``: subtract the median (sky) and divide by the target's peak above sky, the
    maximum in the central 5x5 px, floored at 5 robust sigma (MAD) so a faint target does
    not blow the noise up. ``"peak_asinh"`` (default) then applies ``asinh(v/0.1) /
    asinh(10)``, which keeps the target at 1 and lifts faint companions. ``"none"`` copies.
    """
    st = np.asarray(stamps, dtype=np.float32)
    if st.ndim == 3:
        st = st[:, None]
    if method == "none" or len(st) == 0:
        return st.copy()
    if method not in ("peak", "peak_asinh"):
        raise ValueError(f"unknown normalisation {method!r} (peak, peak_asinh, none)")
    s = st.shape[-1]
    flat = st.reshape(st.shape[0], st.shape[1], -1)
    med = np.median(flat, axis=2)
    mad = np.median(np.abs(flat - med[..., None]), axis=2) * 1.4826
    c0, c1 = max(0, s // 2 - 3), min(s, s // 2 + 3)
    peak = st[..., c0:c1, c0:c1].max(axis=(2, 3)) - med
    scale = np.maximum(peak, 5.0 * mad)
    scale = np.where(scale > 0, scale, 1.0)
    out = (st - med[..., None, None]) / scale[..., None, None]
    if method == "peak_asinh":
        out = np.arcsinh(out / 0.1) / np.arcsinh(10.0)
    return out.astype(np.float32)


def binary_labels(
    x: np.ndarray,
    y: np.ndarray,
    *,
    pixel_scale: float,
    radius_arcsec: float = 2.5,
    other_x: np.ndarray | None = None,
    other_y: np.ndarray | None = None,
) -> np.ndarray:
    """Label each source 1 (binary) when another source lies within ``radius_arcsec``, else 0.

    ``x, y`` in px; ``pixel_scale`` in arcsec/px converts the radius. The "other"
    sources default to the same list (a source never counts itself); pass
    ``other_x/other_y`` to test against a deeper catalog.
    """
    from scipy.spatial import cKDTree

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ox = x if other_x is None else np.asarray(other_x, dtype=np.float64)
    oy = y if other_y is None else np.asarray(other_y, dtype=np.float64)
    if len(x) == 0 or len(ox) == 0:
        return np.zeros(len(x), dtype=np.int64)
    r_px = radius_arcsec / pixel_scale
    tree = cKDTree(np.column_stack([ox, oy]))
    dist, _ = tree.query(np.column_stack([x, y]), k=min(2, len(ox)))
    dist = np.atleast_2d(dist.T).T if dist.ndim == 1 else dist
    # skip the zero-distance self match
    near = np.where(dist[:, 0] > 1e-9, dist[:, 0], dist[:, -1] if dist.shape[1] > 1 else np.inf)
    return (near < r_px).astype(np.int64)


# ----------------------------------------------------------------------- stamp sets


@dataclass
class StampSet:
    """Stamps with labels and grouping (stamps of one source/system share a group).

    ``images`` float32 ``[N, C, S, S]`` normalised; ``labels`` int64 ``[N]`` (-1 = unknown);
    ``groups`` int64 ``[N]``; ``table`` per-stamp metadata columns (lists/arrays of length N).
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    geometry: StampGeometry
    table: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> StampSet:
        idx = np.asarray(idx)
        return StampSet(
            self.images[idx],
            self.labels[idx],
            self.groups[idx],
            self.geometry,
            {k: np.asarray(v)[idx] for k, v in self.table.items()},
            dict(self.info),
        )


def write_stamp_set(folder: str | Path, stamps: StampSet, *, shard_size: int = 4096) -> Path:
    """Write ``stamps`` as ``.npz`` shards + ``stamps.csv`` + ``stampset.json`` (atomic files)."""
    from atd_dl.io.atomic import atomic_output, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(stamps)
    shards = max(1, -(-n // shard_size))
    rows = []
    for s in range(shards):
        sl = slice(s * shard_size, min(n, (s + 1) * shard_size))
        with atomic_output(folder / f"shard_{s:05d}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(
                    fh,
                    images=stamps.images[sl].astype(np.float16),
                    labels=stamps.labels[sl].astype(np.int64),
                    groups=stamps.groups[sl].astype(np.int64),
                )
        rows += [(i, s, i - sl.start) for i in range(sl.start, sl.stop)]
    cols = list(stamps.table)
    with atomic_output(folder / "stamps.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "shard", "row", "group", "label", *cols])
            for i, s, r in rows:
                extra = [_fmt(stamps.table[c][i]) for c in cols]
                w.writerow([i, s, r, int(stamps.groups[i]), int(stamps.labels[i]), *extra])
    meta = {
        "format": "atd_dl.binary_stamps/1",
        "count": n,
        "n_binary": int((stamps.labels == 1).sum()),
        "n_single": int((stamps.labels == 0).sum()),
        "shards": shards,
        "classes": list(CLASS_NAMES),
        "geometry": stamps.geometry.to_dict(),
        **stamps.info,
    }
    atomic_write_text(folder / "stampset.json", json.dumps(meta, indent=2, default=str) + "\n")
    return folder


def _fmt(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return f"{float(v):.6g}"
    if isinstance(v, np.integer | np.bool_):
        return v.item()
    return v


def read_stamp_set(folder: str | Path) -> StampSet:
    """Read a folder written by :func:`write_stamp_set`; raises :class:`InputError` if broken."""
    folder = Path(folder)
    meta_path = folder / "stampset.json"
    if not meta_path.is_file():
        raise InputError(folder, "not a stamp set (no stampset.json)")
    meta = json.loads(meta_path.read_text())
    imgs, labels, groups = [], [], []
    for s in range(int(meta["shards"])):
        path = folder / f"shard_{s:05d}.npz"
        if not path.is_file():
            raise InputError(path, "missing shard")
        with np.load(path) as z:
            imgs.append(z["images"].astype(np.float32))
            labels.append(z["labels"])
            groups.append(z["groups"])
    table: dict[str, np.ndarray] = {}
    csv_path = folder / "stamps.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as fh:
            recs = list(csv.DictReader(fh))
        skip = {"index", "shard", "row", "group", "label"}
        for key in recs[0].keys() if recs else []:
            if key not in skip:
                table[key] = _column([r[key] for r in recs])
    table["index"] = np.arange(sum(len(lab) for lab in labels))
    st = StampSet(
        np.concatenate(imgs),
        np.concatenate(labels).astype(np.int64),
        np.concatenate(groups).astype(np.int64),
        StampGeometry.from_dict(meta.get("geometry", {})),
        table,
        {k: v for k, v in meta.items() if k not in ("geometry",)},
    )
    if len(st) != int(meta["count"]):
        raise InputError(
            folder, f"shards hold {len(st)} stamps, stampset.json says {meta['count']}"
        )
    return st


def _column(values: list[str]) -> np.ndarray:
    for typ in (int, float):
        try:
            return np.array([typ(v) for v in values])
        except ValueError:
            continue
    return np.array(values, dtype=object)


# ------------------------------------------------------------------ user stamp folders


def read_stamp_file(path: str | Path) -> np.ndarray:
    """Read one stamp file → float32 ``[C, H, W]`` (``.npy``, ``.fits``/``.fit``[.gz], ``.png``)."""
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise InputError(path, "stamp file not found")
    try:
        if name.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        elif name.endswith((".fits", ".fit", ".fits.gz", ".fit.gz")):
            from astropy.io import fits

            with fits.open(path, memmap=False) as hdul:
                data = next((h.data for h in hdul if h.data is not None), None)
            if data is None:
                raise InputError(path, "no image data in any HDU")
            arr = np.asarray(data)
        elif name.endswith(".png"):
            arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if arr is None:
                raise InputError(path, "unreadable PNG")
            if arr.ndim == 3:
                arr = np.moveaxis(arr[..., :3][..., ::-1], -1, 0)  # BGR → RGB channels
        else:
            raise InputError(path, f"unsupported stamp type (use {', '.join(STAMP_SUFFIXES)})")
    except InputError:
        raise
    except Exception as err:  # corrupt file of a known type
        raise InputError(path, f"cannot read stamp ({type(err).__name__}: {err})") from None
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise InputError(path, f"stamp must be 2-D or [C, H, W], got shape {arr.shape}")
    return arr


def resize_stamp(stamp: np.ndarray, size: int) -> np.ndarray:
    """Resample a ``[C, H, W]`` stamp to ``[C, size, size]`` (area when shrinking, bilinear else)."""
    c, h, w = stamp.shape
    if h == size and w == size:
        return stamp
    interp = cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(stamp[i], (size, size), interpolation=interp) for i in range(c)])


def _parse_label(value: str, path: Path, line: int) -> int:
    v = value.strip().lower()
    if v in ("", "nan", "none", "?"):
        return -1
    if v in ("0", "single", "else", "false"):
        return 0
    if v in ("1", "binary", "true"):
        return 1
    raise InputError(path, f"line {line}: label {value!r} is not 0/1/single/binary")


def read_stamp_csv(
    csv_path: str | Path, geometry: StampGeometry, *, normalize: bool = True
) -> tuple[StampSet, list[str]]:
    """Read a user CSV (``file,label``) of stamp files → ``(StampSet, failures)``.

    Files are resampled to ``geometry.size``; channel counts must match
    ``geometry.channels`` (a single-band stamp is repeated when the model wants more and
    a 3-channel PNG is averaged for a 1-channel model). Unknown labels are -1. Unreadable
    files are skipped and listed in ``failures`` as ``"<file>: <problem>"``; a CSV without
    a ``file`` column raises :class:`InputError`.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(csv_path, "CSV not found")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "file" not in fields:
            raise InputError(csv_path, "CSV needs a 'file' column (and optionally 'label')")
        recs = [{k.strip().lower(): (v or "") for k, v in r.items() if k} for r in reader]
    images, labels, names, failures = [], [], [], []
    for line, rec in enumerate(recs, start=2):
        path = Path(rec["file"].strip())
        path = path if path.is_absolute() else csv_path.parent / path
        try:
            label = _parse_label(rec.get("label", ""), csv_path, line)
            st = _fit_channels(read_stamp_file(path), geometry.channels, path)
        except InputError as err:
            failures.append(str(err))
            continue
        images.append(resize_stamp(st, geometry.size))
        labels.append(label)
        names.append(rec["file"].strip())
    c, s = geometry.channels, geometry.size
    arr = np.stack(images) if images else np.zeros((0, c, s, s), dtype=np.float32)
    if normalize:
        arr = normalize_stamps(arr, geometry.normalize)
    n = len(labels)
    out = StampSet(
        arr.astype(np.float32),
        np.asarray(labels, dtype=np.int64),
        np.arange(n, dtype=np.int64),
        geometry,
        {"file": np.asarray(names, dtype=object)},
        {"source": str(csv_path)},
    )
    return out, failures


def _fit_channels(stamp: np.ndarray, channels: int, path: Path) -> np.ndarray:
    c = stamp.shape[0]
    if c == channels:
        return stamp
    if c == 1:
        return np.repeat(stamp, channels, axis=0)
    if channels == 1 and c == 3:
        return stamp.mean(axis=0, keepdims=True)
    raise InputError(path, f"stamp has {c} channels, the model expects {channels}")


def read_stamps(path: str | Path, geometry: StampGeometry) -> tuple[StampSet, list[str]]:
    """Read stamps for classification from any supported source → ``(StampSet, failures)``.

    ``path`` may be a stamp-set folder (``stampset.json``), a CSV (``file[,label]``), a
    folder holding ``labels.csv`` (or exactly one ``*.csv``), or a plain folder of stamp
    files (labels unknown).
    """
    path = Path(path)
    if path.is_file():
        return read_stamp_csv(path, geometry)
    if not path.is_dir():
        raise InputError(path, "no such file or folder")
    if (path / "stampset.json").is_file():
        return read_stamp_set(path), []
    if (path / "labels.csv").is_file():
        return read_stamp_csv(path / "labels.csv", geometry)
    found = sorted(path.glob("*.csv"))
    if len(found) == 1:
        return read_stamp_csv(found[0], geometry)
    if len(found) > 1:
        raise InputError(path, "several CSV files; name one or add labels.csv")
    files = list_stamp_files(path)
    if not files:
        raise InputError(path, f"no stamp files ({', '.join(STAMP_SUFFIXES)}) and no labels.csv")
    images, names, failures = [], [], []
    for f in files:
        try:
            st = _fit_channels(read_stamp_file(f), geometry.channels, f)
        except InputError as err:
            failures.append(str(err))
            continue
        images.append(resize_stamp(st, geometry.size))
        names.append(f.name)
    c, s = geometry.channels, geometry.size
    arr = np.stack(images) if images else np.zeros((0, c, s, s), dtype=np.float32)
    n = len(names)
    out = StampSet(
        normalize_stamps(arr, geometry.normalize),
        np.full(n, -1, dtype=np.int64),
        np.arange(n, dtype=np.int64),
        geometry,
        {"file": np.asarray(names, dtype=object)},
        {"source": str(path)},
    )
    return out, failures


def list_stamp_files(folder: str | Path) -> list[Path]:
    """Stamp files in ``folder`` (sorted; suffixes :data:`STAMP_SUFFIXES`)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.name.lower().endswith(STAMP_SUFFIXES))
