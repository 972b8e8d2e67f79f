"""Fine-tuning a trained detector on a user's own labelled frames.

Two layers:

* the **training-side pieces** used by :func:`atd_dl.lit.train_task.train` when a run starts
  from trained weights (``model.init=default``, a model folder or a ``.ckpt``; the older
  ``init_from=`` key is the same): :func:`load_base` (architecture, input kind and SHA-256
  of the base, weights-only), :func:`resolve_input_mode` (the dataset's input must be the
  base model's; ``data.input_mode=auto`` takes it from the base), :func:`build_network`
  (a model folder's own architecture) and :func:`freeze_encoder`;
* the **whole path** behind ``atd-dl finetune`` (:func:`run_finetune`): frames + the
  user's catalogs → ``atd-dl prep`` dataset in the base model's input representation →
  ``experiment=finetune`` training → probability threshold tuned with the full detection
  pipeline on held-out subfields → a model folder whose ``config.json``,
  ``fingerprint.json``, ``metrics.json`` and ``MODEL_CARD.md`` name the base model and its
  hash, the frames used and the validation scores. Every stage records its result under
  ``<out>/.finetune/``; a rerun skips finished stages and resumes training from its last
  checkpoint.

Pixel convention: 0-based, pixel centre = integer, ``x`` = column, ``y`` = row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

import atd_dl
from atd_dl.errors import InputError

__all__ = [
    "INPUT_MODE_KINDS",
    "BaseModel",
    "FinetuneOptions",
    "FinetuneResult",
    "load_base",
    "dataset_input_kind",
    "resolve_input_mode",
    "build_network",
    "freeze_encoder",
    "val_subfields_for",
    "finetune_overrides",
    "tune_on_heldout",
    "run_finetune",
]

log = logging.getLogger(__name__)

#: ``data.input_mode`` of :class:`~atd_dl.lit.datamodule.StarFieldDataModule` → the
#: ``config.json`` "input" kind of the models that take it
INPUT_MODE_KINDS = {
    "image": "zscale8",
    "noise_aware": "zscale8+rms+bad",
    "sigma": "sigma_asinh+bad",
}
KIND_INPUT_MODES = {v: k for k, v in INPUT_MODE_KINDS.items()}
#: input kinds ``atd-dl prep`` can write (``--input-kind``)
PREP_KINDS = ("zscale8", "sigma_asinh+bad")
WORK = ".finetune"
# subfields held out for validation, in this order (numbering 9 2 3 / 8 1 4 / 7 6 5):
# 1/3 of them gives the paper's 2, 5, 8
VAL_ORDER = (2, 5, 8, 4, 6, 9, 7, 3, 1)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- base model


@dataclass(frozen=True)
class BaseModel:
    """A trained network to start from (weights not loaded here)."""

    source: str  # as given: a shipped name, a folder or a .ckpt
    path: Path
    name: str | None  # registry name of the network (None: .ckpt without a record)
    kwargs: dict[str, Any]
    input_kind: str  # config.json "input" (a .ckpt: guessed from its input planes)
    sha256: str  # of model.safetensors (folder) or of the .ckpt file
    shipped: str | None = None  # the shipped model's name when it is one
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def channels(self) -> int:
        return int(self.kwargs.get("in_channels", 1))

    @property
    def label(self) -> str:
        return self.shipped or str(self.path)

    def record(self) -> dict[str, Any]:
        """What a fine-tuned model folder stores about its base."""
        return {
            "source": self.source,
            "shipped": self.shipped,
            "path": str(self.path),
            "network": self.name,
            "input": self.input_kind,
            "sha256": self.sha256,
        }


def load_base(source: str | Path) -> BaseModel:
    """Describe the base of a fine-tuning run: a model folder, a shipped model name
    (``default``, ``paper_camera``) or a Lightning ``.ckpt``.

    Only JSON and the file hash are read; the weights are loaded later, weights-only
    (:func:`atd_dl.lit.train_task.init_weights`). Unknown names raise :class:`InputError`.
    """
    from atd_dl.models.model_folder import (
        INPUT_KINDS,
        checkpoint_model_spec,
        load_checkpoint,
        resolve_model_dir,
        shipped_models,
    )

    path = resolve_model_dir(str(source))
    shipped = next((n for n, p in shipped_models().items() if p.resolve() == path.resolve()), None)
    if path.is_dir():
        cfg_path = path / "config.json"
        weights = path / "model.safetensors"
        for p in (cfg_path, weights):
            if not p.is_file():
                raise InputError(p, "missing from the base model folder")
        try:
            config = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(cfg_path, f"not readable JSON ({err})") from None
        if not isinstance(config, dict) or "name" not in config:
            raise InputError(cfg_path, "no model 'name' in config")
        kwargs = dict(config.get("kwargs") or {})
        kind = str(config.get("input") or INPUT_KINDS.get(int(kwargs.get("in_channels", 1)), ""))
        return BaseModel(
            str(source), path, str(config["name"]), kwargs, kind, _sha256(weights), shipped, config
        )
    ckpt = load_checkpoint(path)  # weights_only=True: refuses pickled objects
    name, kwargs = checkpoint_model_spec(ckpt)
    kind = INPUT_KINDS.get(int(kwargs.get("in_channels", 1)), "")
    return BaseModel(str(source), path, name, kwargs, kind, _sha256(path), None, {})


def dataset_input_kind(text: str) -> str:
    """``atd-dl prep --input-kind``: a kind (``zscale8``, ``sigma_asinh+bad``, or ``sigma``
    for short) or a model folder / shipped model whose ``config.json`` names it."""
    value = str(text).strip()
    if value == "sigma":
        value = "sigma_asinh+bad"
    if value in PREP_KINDS:
        return value
    kind = load_base(value).input_kind
    if kind not in PREP_KINDS:
        raise InputError(
            None,
            f"model {value!r} takes input {kind!r}; atd-dl prep writes {' or '.join(PREP_KINDS)} "
            "(a zscale8+rms+bad model trains on the zscale8 dataset with data.input_mode=noise_aware)",
        )
    return kind


def resolve_input_mode(base: BaseModel | None, requested: str | None) -> str:
    """The data module's ``input_mode`` for a run starting from ``base``.

    ``auto`` (or None) takes it from the base model. An explicit mode must give the base
    model's input kind and planes, else :class:`InputError` (one line) names both.
    """
    mode = "auto" if requested in (None, "", "auto") else str(requested)
    if base is None:
        if mode == "auto":
            raise InputError(None, "data.input_mode=auto needs a base model (model.init=...)")
        return mode
    if mode == "auto":
        if base.input_kind not in KIND_INPUT_MODES:
            raise InputError(
                base.path, f"base model input {base.input_kind!r} has no dataset input mode"
            )
        return KIND_INPUT_MODES[base.input_kind]
    from atd_dl.lit.datamodule import INPUT_MODES

    kind = INPUT_MODE_KINDS.get(mode, mode)
    planes = INPUT_MODES.get(mode)
    if kind != base.input_kind or planes != base.channels:
        raise InputError(
            base.path,
            f"base model '{base.label}' takes {base.input_kind} input ({base.channels} plane(s)) "
            f"but data.input_mode={mode} gives {kind} ({planes} plane(s)); use "
            f"data.input_mode={KIND_INPUT_MODES.get(base.input_kind, 'auto')} and a dataset "
            f"prepared with `atd-dl prep --input-kind {base.input_kind}`",
        )
    return mode


def build_network(model_cfg: Any, base: BaseModel | None) -> nn.Module:
    """The network of a run: a model folder base's own architecture (``config.json``),
    else the ``model`` config group (without the ``init`` / ``freeze_encoder`` keys)."""
    import hydra
    from omegaconf import OmegaConf

    from atd_dl.models.registry import build_model

    if base is not None and base.is_folder and base.name:
        log.info("network: %s %s (the base model's architecture)", base.name, base.kwargs)
        return build_model(base.name, **base.kwargs)
    cfg = OmegaConf.to_container(model_cfg, resolve=True) if model_cfg is not None else {}
    assert isinstance(cfg, dict)
    cfg.pop("init", None)
    cfg.pop("freeze_encoder", None)
    return hydra.utils.instantiate(cfg)


def freeze_encoder(net: nn.Module) -> int:
    """Stop gradients through the encoder (``net.encoder``); returns the parameters frozen.

    Batch-norm statistics of the encoder still follow the new data (train mode).
    """
    enc = getattr(net, "encoder", None)
    if not isinstance(enc, nn.Module):
        raise InputError(None, f"{type(net).__name__} has no encoder to freeze")
    n = 0
    for p in enc.parameters():
        p.requires_grad_(False)
        n += p.numel()
    log.info("encoder frozen (%d parameters)", n)
    return n


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class FinetuneOptions:
    """Settings of :func:`run_finetune` (defaults: ``atd-dl finetune``)."""

    base: str = "default"
    epochs: int = 8
    val_fraction: float = 1.0 / 3.0
    from_scratch: bool = False  # same architecture and input, random weights
    freeze_encoder: bool = False
    lr: float | None = None  # None: experiment=finetune's (from scratch: 2e-3)
    samples_per_epoch: int = 200
    batch_size: int = 8
    crop_size: int = 128
    subfield_size: int | None = None  # None: min(512, frame side // 3, multiple of 16)
    seed: int = 1234
    device: str = "cpu"
    overrides: tuple[str, ...] = ()  # extra Hydra overrides of the training run
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = list(self.overrides)
        d.pop("progress")
        return d


@dataclass
class FinetuneResult:
    """What :func:`run_finetune` produced."""

    out_dir: Path
    threshold: float
    val: dict[str, Any]
    base_val: dict[str, Any] | None
    stages: dict[str, str]  # stage -> "done" / "skipped (finished)"
    cpu_seconds: float


def val_subfields_for(fraction: float) -> tuple[int, ...]:
    """Subfields held out for validation: ``round(9 * fraction)`` of them (1..8)."""
    if not 0.0 < fraction < 1.0:
        raise InputError(None, f"--val-fraction must be in (0, 1), got {fraction}")
    k = min(8, max(1, round(9 * fraction)))
    return tuple(sorted(VAL_ORDER[:k]))


def _auto_subfield_size(frames: Sequence[Path], hdu: Any) -> int:
    from atd_dl.io.fits_io import read_frame

    side = min(min(read_frame(p, hdu=hdu).shape) for p in frames[:1])
    size = min(512, (side // 3) // 16 * 16)
    if size < 64:
        raise InputError(
            frames[0], f"frame too small ({side} px): need >= 192 px for 3x3 subfields"
        )
    return size


def finetune_overrides(
    dataset: Path,
    run_dir: Path,
    base: BaseModel,
    opts: FinetuneOptions,
    *,
    input_mode: str,
    subfield_size: int | None = None,
) -> list[str]:
    """Hydra overrides of the training run (``experiment=finetune``); training crops are
    at most ``subfield_size``."""
    crop = min(opts.crop_size, subfield_size) if subfield_size else opts.crop_size
    ov = [
        "experiment=finetune",
        "logger=csv",
        f"data.data_dir={dataset}",
        f"data.input_mode={input_mode}",
        f"data.batch_size={opts.batch_size}",
        f"data.crop_size={crop}",
        f"data.samples_per_epoch={opts.samples_per_epoch}",
        f"trainer.max_epochs={opts.epochs}",
        f"trainer.enable_progress_bar={str(bool(opts.progress)).lower()}",
        f"paths.output_dir={run_dir}",
        f"paths.work_dir={run_dir}",
        f"paths.log_dir={run_dir}",
        f"export.out_dir={run_dir / 'model'}",
        f"seed={opts.seed}",
        f"model.freeze_encoder={str(bool(opts.freeze_encoder)).lower()}",
    ]
    if opts.device != "cpu":
        ov.append("trainer=gpu")
    if opts.from_scratch:
        ov += ["model.init=null", f"model.name={base.name}"]
        ov += [f"model.{k}={v}" for k, v in base.kwargs.items()]
        ov.append(f"module.optimizer.lr={opts.lr if opts.lr is not None else 2.0e-3}")
    else:
        ov.append(f"model.init={base.path}")
        if opts.lr is not None:
            ov.append(f"module.optimizer.lr={opts.lr}")
    # "key=value" of a setting the config does not list is added ("++"), like --set elsewhere
    extra = [
        f"++{o}" if "." in o.split("=", 1)[0] and not o.startswith(("+", "~")) else o
        for o in opts.overrides
    ]
    return ov + extra


def _compose(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from atd_dl.config_paths import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _in_box(xy: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    return (
        (xy[:, 0] >= x0 - 0.5)
        & (xy[:, 0] < x0 + size - 0.5)
        & (xy[:, 1] >= y0 - 0.5)
        & (xy[:, 1] < y0 + size - 0.5)
    )


def tune_on_heldout(
    models: dict[str, str | Path],
    frames: dict[str, Path],
    catalogs: dict[str, Path],
    boxes: dict[str, list[tuple[int, int, int]]],
    *,
    masters: Any = None,
    thresholds: Sequence[float] | None = None,
    radius: float = 3.0,
    edge: float = 3.0,
    snr_min: float = 2.0,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Strict P/R/F1 of each model on the held-out subfields, at every threshold.

    ``boxes[frame]`` = ``[(x0, y0, size), ...]`` held-out subfields. The full detection
    pipeline runs once per frame and model (probability map of the whole calibrated
    frame, as ``atd-dl detect`` sees it); detections and references inside each box are
    matched one-to-one (``radius`` px, ``edge`` px cut at the box border). References: the
    user's catalog projected through the WCS (A), G = its sources with 3x3-box SNR >=
    ``snr_min`` (the paper protocol with a catalog). Returns per model the best row
    (max F1, ties → lower threshold), the row at the model's own threshold and the table.
    """
    from atd_dl.detect.frame import PreparedFrame
    from atd_dl.detect.inference import load_detector
    from atd_dl.detect.pipeline import DetectConfig, Detector
    from atd_dl.evaluate.matching import prf
    from atd_dl.evaluate.metrics import evaluate_frame
    from atd_dl.evaluate.references import references_from_catalog
    from atd_dl.io.catalogs import read_reference_catalog
    from atd_dl.io.fits_io import read_frame

    grid = sorted({round(float(t), 3) for t in (thresholds or np.arange(0.05, 0.951, 0.05))})
    dets = {}
    for key, path in models.items():
        net, meta = load_detector(path, device=device)
        dets[key] = Detector(net, meta, DetectConfig(device=device))
    sums = {key: {t: [0, 0, 0] for t in grid + [round(d.threshold, 3)]} for key, d in dets.items()}
    for name, fpath in frames.items():
        if progress:
            progress(name)
        frame = read_frame(fpath)
        if masters is not None and masters:
            from atd_dl.prep.calibration import calibrate

            frame = calibrate(frame, masters)
        refs = references_from_catalog(read_reference_catalog(catalogs[name]), frame)
        for key, det in dets.items():
            prepared = det.prepare(frame)
            if not isinstance(prepared, PreparedFrame):  # a Frame gives one image
                raise InputError(fpath, "expected one image per frame file")
            prob = det.infer(prepared)
            for t in sums[key]:
                cat = det.extract(prepared, prob, threshold=t).catalog
                xy = np.column_stack([np.asarray(cat["x"], float), np.asarray(cat["y"], float)])
                for x0, y0, size in boxes[name]:
                    d = xy[_in_box(xy, x0, y0, size)] - (x0, y0)
                    inside = _in_box(refs.xy, x0, y0, size)
                    ev = evaluate_frame(
                        d,
                        refs.xy[inside] - (x0, y0),
                        refs.snr[inside],
                        shape=(size, size),
                        radius=radius,
                        edge=edge,
                        snr_min=snr_min,
                        ref_target=refs.target[inside],
                    )
                    s = sums[key][t]
                    s[0] += ev.strict.tp
                    s[1] += ev.strict.fp
                    s[2] += ev.strict.fn
    out: dict[str, dict[str, Any]] = {}
    for key, det in dets.items():
        rows = []
        for t in sorted(sums[key]):
            tp, fp, fn = sums[key][t]
            p, r, f = prf(tp, fp, fn)
            rows.append(
                {"threshold": t, "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f}
            )
        own_t = round(det.threshold, 3)
        best = max(
            (r for r in rows if r["threshold"] in grid), key=lambda r: (r["f1"], -r["threshold"])
        )
        out[key] = {
            "best": best,
            "own_threshold": next(r for r in rows if r["threshold"] == own_t),
            "table": rows,
        }
    return out


_LOCKS: list[Any] = []


def _lock(work: Path) -> Any:
    """Hold an exclusive lock on ``work/lock``: a second ``atd-dl finetune`` on the same
    output folder is refused instead of mixing files."""
    import fcntl

    fh = (work / "lock").open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise InputError(
            work.parent, "another atd-dl finetune is writing this folder; wait for it to end"
        ) from None
    _LOCKS.append(fh)
    return fh


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _fmt(row: dict[str, Any] | None) -> str:
    if not row:
        return "n/a"
    return (
        f"F1 {row['f1']:.4f} (precision {row['precision']:.4f}, recall {row['recall']:.4f}; "
        f"{row['tp']} TP, {row['fp']} FP, {row['fn']} FN) at threshold {row['threshold']:.2f}"
    )


def _card(
    base: BaseModel,
    opts: FinetuneOptions,
    frames: list[dict[str, Any]],
    threshold: float,
    val: dict[str, Any],
    base_val: dict[str, Any] | None,
    train_info: dict[str, Any],
    prep: dict[str, Any],
) -> str:
    how = (
        "trained from random weights with the architecture and input of"
        if opts.from_scratch
        else "fine-tuned from"
    )
    lines = [
        f"# ATD-DL model {how} `{base.label}`",
        "",
        f"Made by `atd-dl finetune` (atd-dl {atd_dl.__version__}) on "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}.",
        "",
        "## Base model",
        f"- {'shipped model' if base.shipped else 'model'}: `{base.label}` (`{base.path}`)",
        f"- network: `{base.name}` {json.dumps(base.kwargs)}; input `{base.input_kind}`",
        f"- base weights SHA-256: `{base.sha256}`",
        f"- weights: {'not used (from scratch)' if opts.from_scratch else 'loaded weights-only (safetensors, no pickle) as the start'}",
        "",
        "## Frames",
        f"- {len(frames)} frame(s), labels from the user's catalogs (catalog-anchored masks, "
        f"sources with 3x3 SNR >= {prep.get('snr_min', 2.0)}):",
    ]
    lines += [
        f"  - `{f['frame']}` ({f['path']}; catalog `{f['catalog']}`; sha256 {f['sha256'][:16]}…)"
        for f in frames
    ]
    lines += [
        f"- subfields of {prep['subfield_size']} px; held out for validation: "
        f"{', '.join(map(str, prep['val_subfields']))} of every frame "
        f"({prep['n_train']} training / {prep['n_val']} validation subfields)",
        "",
        "## Training",
        f"- `experiment=finetune`, {train_info.get('epochs')} epoch(s) of {opts.samples_per_epoch} "
        f"random {opts.crop_size}² crops (batch {opts.batch_size}), learning rate "
        f"{train_info.get('lr')}, encoder {'frozen' if opts.freeze_encoder else 'trained'}",
        f"- {train_info.get('cpu_minutes', float('nan')):.1f} CPU-minutes for the training stage",
        "",
        "## Validation (held-out subfields, full detection pipeline)",
        "- strict one-to-one matching within 3 px, 3 px edge cut; references = the user's "
        "catalog projected through the WCS, G = its sources with 3x3 SNR >= 2",
        f"- this model: {_fmt(val)}",
    ]
    if base_val is not None and not opts.from_scratch:
        lines.append(
            f"- base model `{base.label}` on the same subfields, at its own threshold: {_fmt(base_val)}"
        )
    lines += [
        f"- probability threshold {threshold:.2f} (maximum F1 on the held-out subfields) is in "
        "`thresholds.json`",
        "",
        "## Limits",
        "- Validated only on held-out subfields of the same frames: same camera, nights and "
        "sky as the training data. Sources missing from the catalog count as false positives.",
        "- Check the fingerprint before using the model on another camera or setup.",
    ]
    return "\n".join(lines) + "\n"


def run_finetune(
    frames: Sequence[str | Path],
    catalogs: str | Path,
    out: str | Path,
    options: FinetuneOptions | None = None,
    *,
    masters: Any = None,
    prep_overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    say: Callable[[str], None] = print,
) -> FinetuneResult:
    """Prepare → fine-tune → tune the threshold on held-out subfields → export (see the
    module docstring). ``out`` becomes the model folder; its working files stay in
    ``out/.finetune`` (dataset, training run, stage records) so a rerun resumes.

    ``prep_overrides``: extra :class:`~atd_dl.data.builder.PrepConfig` fields (``gain``,
    ``hdu``, ``catalog_pattern`` ...). ``overwrite`` removes a previous run in ``out`` first.
    """
    import resource

    from atd_dl.data.builder import PrepConfig, build_dataset, find_frames
    from atd_dl.data.manifest import read_manifest_rows
    from atd_dl.models.model_folder import MODEL_FILES

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    cpu0 = cpu()
    opts = options or FinetuneOptions()
    out = Path(out)
    work = out / WORK
    if overwrite and out.exists():
        shutil.rmtree(work, ignore_errors=True)
        for name in (*MODEL_FILES, "fingerprint.json", "metrics.json", "MODEL_CARD.md"):
            (out / name).unlink(missing_ok=True)
    paths = find_frames(list(frames))
    base = load_base(opts.base)
    if base.input_kind not in PREP_KINDS:
        raise InputError(
            base.path,
            f"base model input {base.input_kind!r}: atd-dl finetune prepares "
            f"{' or '.join(PREP_KINDS)} data only",
        )
    pov = dict(prep_overrides or {})
    hdu = pov.get("hdu")
    sub_size = opts.subfield_size or _auto_subfield_size(paths, hdu)
    val_subs = val_subfields_for(opts.val_fraction)
    prep_cfg = PrepConfig(
        subfield_size=sub_size,
        val_subfields=val_subs,
        write_overlays=False,
        input_kind=base.input_kind,
        **pov,
    )
    key = {
        "frames": sorted(str(p.resolve()) for p in paths),
        "catalogs": str(Path(catalogs).resolve()),
        "base_sha256": base.sha256,
        "options": {k: v for k, v in opts.to_dict().items() if k not in ("device",)},
        "prep": prep_cfg.digest(),
    }
    work.mkdir(parents=True, exist_ok=True)
    lock = _lock(work)  # one writer per output folder
    try:
        state_path = work / "state.json"
        state = _read_state(state_path)
        if state.get("key") not in (None, key):
            raise InputError(
                out,
                "holds a fine-tuning run of other frames, base or options; pass --overwrite "
                "to start again, or choose another --out",
            )
        state["key"] = key
        state.setdefault("stages", {})
        stages: dict[str, str] = {}

        def save() -> None:
            from atd_dl.io.atomic import atomic_write_text

            atomic_write_text(state_path, json.dumps(state, indent=2, default=str) + "\n")

        # 1. prep ------------------------------------------------------------------
        dataset = work / "dataset"
        say(
            f"[1/4] prep: {len(paths)} frame(s) -> {dataset} (input {base.input_kind}, "
            f"{sub_size} px subfields, validation subfields {','.join(map(str, val_subs))})"
        )
        report = build_dataset(
            paths, catalogs, dataset, masters=masters, config=prep_cfg, progress=opts.progress
        )
        if report.failed:
            for name, msg in report.failed.items():
                say(f"      frame {name} failed: {msg}")
        rows = read_manifest_rows(dataset) if (dataset / "manifest.csv").is_file() else []
        used = sorted({r["frame"] for r in rows})
        n_train = sum(r["split"] == "train" for r in rows)
        n_val = sum(r["split"] == "val" for r in rows)
        if not n_train or not n_val:
            raise InputError(
                None, f"no usable frame: {len(report.failed)} of {len(paths)} failed in prep"
            )
        stages["prep"] = f"{len(report.done)} prepared, {len(report.skipped)} already done"
        if report.done and state["stages"].get("train"):  # a frame changed: train again
            say("      frames changed since the last run: training starts again")
            for k in ("train", "tune", "export"):
                state["stages"].pop(k, None)
            shutil.rmtree(work / "train", ignore_errors=True)
        state["stages"]["prep"] = {"frames": used, "n_train": n_train, "n_val": n_val}
        save()

        # 2. train -----------------------------------------------------------------
        run_dir = work / "train"
        exported = run_dir / "model"
        input_mode = KIND_INPUT_MODES[base.input_kind]
        if (
            state["stages"].get("train", {}).get("done")
            and (exported / "model.safetensors").is_file()
        ):
            say(f"[2/4] train: finished earlier ({exported})")
            stages["train"] = "skipped (finished)"
        else:
            from atd_dl.lit.train_task import train

            ov = finetune_overrides(
                dataset, run_dir, base, opts, input_mode=input_mode, subfield_size=sub_size
            )
            last = run_dir / "checkpoints" / "last.ckpt"
            if last.is_file():
                ov.append(f"ckpt_path={last}")
                say(f"[2/4] train: resuming from {last}")
            else:
                say(
                    f"[2/4] train: {opts.epochs} epoch(s) on {n_train} subfields "
                    f"({'from scratch' if opts.from_scratch else f'from {base.label}'})"
                )
            c0 = cpu()
            cfg = _compose(ov)
            metrics, objects = train(cfg)
            from omegaconf import OmegaConf

            state["stages"]["train"] = {
                "done": True,
                "overrides": ov,
                "epochs": int(objects["trainer"].current_epoch),
                "lr": OmegaConf.select(cfg, "module.optimizer.lr"),
                "cpu_minutes": (cpu() - c0) / 60.0,
                "val_patch_f1": metrics.get("val/f1_tuned"),
            }
            save()
            stages["train"] = "done"

        # 3. threshold on held-out subfields ----------------------------------------
        tune = state["stages"].get("tune")
        if tune:
            say("[3/4] threshold: tuned earlier")
            stages["tune"] = "skipped (finished)"
        else:
            say("[3/4] threshold: detection pipeline on the held-out subfields")
            records = {p.stem: _read_state(p) for p in sorted((dataset / ".state").glob("*.json"))}
            fr = {n: Path(records[n]["path"]) for n in used if n in records}
            cats = {n: Path(records[n]["catalog"]) for n in used if n in records}
            boxes: dict[str, list[tuple[int, int, int]]] = {}
            for r in rows:
                if r["split"] == "val":
                    boxes.setdefault(r["frame"], []).append(
                        (int(r["x0"]), int(r["y0"]), int(r["size"]))
                    )
            models: dict[str, str | Path] = {"model": exported}
            if not opts.from_scratch:
                models["base"] = base.path
            res = tune_on_heldout(
                models,
                fr,
                cats,
                boxes,
                masters=masters,
                device=opts.device,
                progress=(lambda n: say(f"      {n}")) if opts.progress else None,
            )
            tune = {
                "val": res["model"]["best"],
                "table": res["model"]["table"],
                "base": res["base"]["own_threshold"] if "base" in res else None,
                "base_best": res["base"]["best"] if "base" in res else None,
            }
            state["stages"]["tune"] = tune
            save()
            stages["tune"] = "done"
        threshold = float(tune["val"]["threshold"])

        # 4. export ----------------------------------------------------------------
        say(f"[4/4] export: {out}")
        _export(
            out,
            exported,
            dataset,
            base,
            opts,
            state,
            tune,
            threshold,
            paths,
            prep_cfg,
            n_train,
            n_val,
        )
        stages["export"] = "done"
        state["stages"]["export"] = {"done": True}
        save()
        return FinetuneResult(out, threshold, tune["val"], tune.get("base"), stages, cpu() - cpu0)
    finally:
        _LOCKS.remove(lock)
        lock.close()


def _export(
    out: Path,
    exported: Path,
    dataset: Path,
    base: BaseModel,
    opts: FinetuneOptions,
    state: dict[str, Any],
    tune: dict[str, Any],
    threshold: float,
    paths: Sequence[Path],
    prep_cfg: Any,
    n_train: int,
    n_val: int,
) -> None:
    from atd_dl.io.atomic import atomic_write_text

    def write_json(path: Path, obj: Any) -> None:
        atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")

    out.mkdir(parents=True, exist_ok=True)
    records = {p.stem: _read_state(p) for p in sorted((dataset / ".state").glob("*.json"))}
    frames = [
        {
            "frame": n,
            "path": rec.get("path"),
            "catalog": rec.get("catalog"),
            "sha256": (rec.get("key") or {}).get("input_sha256") or _sha256(Path(rec["path"])),
        }
        for n, rec in records.items()
    ]
    train_info = dict(state["stages"].get("train") or {})
    prep = {
        "subfield_size": prep_cfg.subfield_size,
        "val_subfields": list(prep_cfg.val_subfields),
        "n_train": n_train,
        "n_val": n_val,
        "snr_min": prep_cfg.labels.snr_min,
    }
    provenance = {
        "base_model": base.record(),
        "from_scratch": opts.from_scratch,
        "frames": frames,
        "options": opts.to_dict(),
        "prep": prep,
    }
    shutil.copyfile(exported / "model.safetensors", out / "model.safetensors.tmp")
    (out / "model.safetensors.tmp").replace(out / "model.safetensors")
    config = json.loads((exported / "config.json").read_text())
    for k in ("postprocess",):  # detection settings of the base carry over
        if k in base.config and k not in config:
            config[k] = base.config[k]
    config["input"] = base.input_kind
    config["base_model"] = base.record()
    config["finetune"] = {"from_scratch": opts.from_scratch, "frames": [f["frame"] for f in frames]}
    write_json(out / "config.json", config)
    write_json(out / "thresholds.json", {"prob_threshold": threshold})
    fp_path = dataset / "fingerprint.json"
    fingerprint = json.loads(fp_path.read_text()) if fp_path.is_file() else {}
    fingerprint["finetune"] = provenance
    write_json(out / "fingerprint.json", fingerprint)
    write_json(
        out / "metrics.json",
        {
            "val": tune["val"],
            "val_base": tune.get("base"),
            "val_base_best": tune.get("base_best"),
            "threshold_scan": tune["table"],
            "train": train_info,
            **provenance,
        },
    )
    atomic_write_text(
        out / "MODEL_CARD.md",
        _card(base, opts, frames, threshold, tune["val"], tune.get("base"), train_info, prep),
    )
