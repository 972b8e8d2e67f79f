"""Model folders: weights + the facts needed to use them, without pickle.

Layout (see ``docs/DESIGN.md``)::

    <dir>/model.safetensors   state dict (floating tensors stored as fp16 by default)
    <dir>/config.json         {"name": ..., "kwargs": {...}, "input": "zscale8", ...}
    <dir>/thresholds.json     {"prob_threshold": t}
    <dir>/fingerprint.json    dataset fingerprint copied from the training dataset
    <dir>/metrics.json        validation (and test) metrics
    <dir>/MODEL_CARD.md       short human description

Loading never unpickles anything: weights come from safetensors, metadata from
JSON. Lightning ``.ckpt`` files are read with ``torch.load(weights_only=True)``,
which refuses checkpoints that carry arbitrary pickled objects.
"""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atd_dl.errors import InputError
from atd_dl.io.atomic import atomic_output, atomic_write_text

if TYPE_CHECKING:  # torch is imported only where weights are read or written
    import torch
    from torch import nn

__all__ = [
    "MODEL_FILES",
    "INPUT_KINDS",
    "default_model_dir",
    "weights_dir",
    "shipped_models",
    "resolve_model_dir",
    "save_model_folder",
    "read_model_meta",
    "load_model_folder",
    "load_checkpoint",
    "load_checkpoint_weights",
    "export_model_folder",
    "input_kind",
    "checkpoint_model_spec",
]

WEIGHTS = "model.safetensors"
MODEL_FILES = (WEIGHTS, "config.json", "thresholds.json")
# how the model input is made from a frame (see DESIGN.md "Enhancement")
INPUT_KINDS = {1: "zscale8", 2: "sigma_asinh+bad", 3: "zscale8+rms+bad"}


def weights_dir() -> Path:
    """Folder of the models shipped with the package (``atd_dl/weights``)."""
    return Path(__file__).resolve().parents[1] / "weights"


def default_model_dir() -> Path:
    """Folder of the default detector shipped with the package (``atd_dl/weights/default``)."""
    return weights_dir() / "default"


def shipped_models(kind: str = "detector") -> dict[str, Path]:
    """Shipped model folders by name: ``detector`` (segmentation networks) or ``binary``
    (visual-binary classifiers). ``default`` first, then alphabetical."""
    out: dict[str, Path] = {}
    root = weights_dir()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        cfg = folder / "config.json"
        if not cfg.is_file():
            continue
        try:
            name = str(json.loads(cfg.read_text()).get("name", ""))
        except (OSError, json.JSONDecodeError):
            continue
        is_binary = name.startswith("binary")
        if (kind == "binary") == is_binary:
            out[folder.name] = folder
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "default", kv[0])))


def resolve_model_dir(name_or_path: str | Path | None) -> Path:
    """A model folder or checkpoint from a path, or a shipped model's name (``default``,
    ``paper_camera`` ...; ``None`` = ``default``). Unknown names raise :class:`InputError`
    listing the shipped ones."""
    if name_or_path is None:
        return default_model_dir()
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise InputError(
        p,
        f"model not found: neither a model folder / .ckpt file nor a shipped model "
        f"({', '.join(shipped) or 'none shipped'})",
    )


def input_kind(in_channels: int) -> str:
    """Input description stored in ``config.json`` for a network with ``in_channels``."""
    return INPUT_KINDS.get(int(in_channels), f"{int(in_channels)}-channel")


def _model_spec(model: nn.Module, name: str | None, kwargs: dict | None) -> tuple[str, dict]:
    spec = getattr(model, "model_spec", None) or {}
    name = name or spec.get("name")
    if name is None:
        raise ValueError("model name unknown: pass name= (or build the model with build_model)")
    kw = dict(spec.get("kwargs", {}) if kwargs is None else kwargs)
    return name, kw


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _default_card(name: str, kwargs: dict, threshold: float, metrics: dict | None) -> str:
    lines = [
        f"# ATD-DL model: {name}",
        "",
        f"- network: `{name}` with {json.dumps(kwargs)}",
        f"- input: {input_kind(kwargs.get('in_channels', 1))} (stretched 8-bit image / 255, [B, C, H, W])",
        f"- probability threshold (tuned on validation): {threshold:.3f}",
        f"- written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
    ]
    if metrics:
        lines += [
            "",
            "## Metrics",
            "",
            "```json",
            json.dumps(metrics, indent=2, default=str),
            "```",
        ]
    return "\n".join(lines) + "\n"


def save_model_folder(
    dir: str | Path,
    model: nn.Module,
    *,
    name: str | None = None,
    kwargs: dict | None = None,
    threshold: float = 0.5,
    fingerprint: dict | str | Path | None = None,
    metrics: dict | None = None,
    card: str | None = None,
    fp16: bool = True,
    extra_config: dict | None = None,
    onnx: bool = False,
) -> Path:
    """Write ``model`` and its metadata to the folder ``dir`` (created if needed).

    ``name``/``kwargs`` default to ``model.model_spec`` (set by ``build_model``).
    ``fingerprint`` is a dict or the path of a ``fingerprint.json`` to copy.
    ``fp16`` stores floating tensors as float16 (half the size; inference
    loads them back as float32). ``onnx`` also writes ``model.onnx`` (the CPU inference
    engine's copy of the same weights; about 1 s) when the ``onnx`` package is installed. Every file
    is written atomically.
    """
    from safetensors.torch import save_file

    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    name, kw = _model_spec(model, name, kwargs)
    state = {}
    for key, t in model.state_dict().items():
        t = t.detach().cpu()
        if fp16 and t.is_floating_point():
            t = t.half()
        state[key] = t.contiguous()
    with atomic_output(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "name": name})
    config = {"name": name, "kwargs": kw, "input": input_kind(kw.get("in_channels", 1))}
    if extra_config:
        config.update(extra_config)
    _write_json(out / "config.json", config)
    _write_json(out / "thresholds.json", {"prob_threshold": float(threshold)})
    if fingerprint is not None:
        if not isinstance(fingerprint, dict):
            fingerprint = _read_json(Path(fingerprint))
        _write_json(out / "fingerprint.json", fingerprint)
    if metrics is not None:
        _write_json(out / "metrics.json", metrics)
    atomic_write_text(
        out / "MODEL_CARD.md", card or _default_card(name, kw, float(threshold), metrics)
    )
    if onnx:
        from atd_dl.detect.onnx_engine import export_onnx

        export_onnx(out)
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg} at line {err.lineno})") from None


def read_model_meta(dir: str | Path) -> dict:
    """The facts of a model folder without loading its weights (no torch import).

    Returns ``name``, ``kwargs``, ``input``, ``threshold``, ``config``, ``fingerprint``,
    ``metrics`` (None when absent) and ``path``. Missing or malformed files raise
    :class:`InputError`.
    """
    folder = Path(dir)
    if not folder.is_dir():
        raise InputError(folder, "model folder not found")
    for fname in MODEL_FILES:
        if not (folder / fname).is_file():
            raise InputError(folder / fname, "missing from model folder")
    config = _read_json(folder / "config.json")
    if not isinstance(config, dict) or "name" not in config:
        raise InputError(folder / "config.json", "no model 'name' in config")
    thresholds = _read_json(folder / "thresholds.json")
    try:
        threshold = float(thresholds["prob_threshold"])
    except (KeyError, TypeError, ValueError):
        raise InputError(folder / "thresholds.json", "no numeric 'prob_threshold'") from None
    optional = {}
    for key in ("fingerprint", "metrics"):
        p = folder / f"{key}.json"
        optional[key] = _read_json(p) if p.is_file() else None
    kwargs = config.get("kwargs", {})
    return {
        "name": config["name"],
        "kwargs": kwargs,
        "input": config.get("input", input_kind(kwargs.get("in_channels", 1))),
        "threshold": threshold,
        # optional per-frame rule (atd_dl.detect.adaptive_threshold)
        "adaptive": thresholds.get("adaptive") if isinstance(thresholds, dict) else None,
        "config": config,
        **optional,
        "path": folder,
    }


def load_model_folder(
    dir: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Load a model folder; returns ``(model in eval mode, float32, meta)``.

    ``meta`` as from :func:`read_model_meta`. Missing or malformed files raise
    :class:`InputError`.
    """
    from safetensors.torch import load_file

    from atd_dl.models.registry import build_model

    meta = read_model_meta(dir)
    folder, config = meta["path"], meta["config"]
    try:
        model = build_model(config["name"], **config.get("kwargs", {}))
    except (KeyError, TypeError) as err:
        raise InputError(folder / "config.json", str(err).strip("'\"")) from None
    try:
        state = load_file(str(folder / WEIGHTS), device="cpu")
    except Exception as err:  # safetensors raises its own error types
        raise InputError(folder / WEIGHTS, f"cannot read weights ({err})") from None
    ref = model.state_dict()
    state = {k: (v.to(ref[k].dtype) if k in ref else v) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(
            folder / WEIGHTS, f"weights do not fit {config['name']}: {first}"
        ) from None
    model.to(map_location).eval()
    return model, meta


def load_checkpoint(path: str | Path) -> dict:
    """Read a Lightning/torch checkpoint with ``weights_only=True`` (tensors and plain data only).

    A checkpoint that carries any other pickled object is refused with
    :class:`InputError` instead of executing its pickle code.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "checkpoint not found")
    with p.open("rb") as fh:  # torch.save writes a zip archive (or, legacy, a pickle)
        head = fh.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise InputError(p, "not a torch checkpoint (neither a zip archive nor a pickle)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            p,
            "refusing to load: checkpoint contains pickled objects other than tensors and "
            f"plain data ({first[:200]})",
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise InputError(
            p, f"not a readable torch checkpoint ({str(err).splitlines()[0][:200]})"
        ) from None
    if not isinstance(ckpt, dict):
        raise InputError(p, "checkpoint is not a dictionary")
    return ckpt


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Network weights from a LightningModule state dict (``net.`` / ``_orig_mod.`` removed)."""
    if any(k.startswith("net.") for k in state):
        state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    return {k.replace("_orig_mod.", ""): v for k, v in state.items()}


def _weights(ckpt: dict, path: str | Path) -> dict[str, torch.Tensor]:
    import torch

    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "no state_dict of tensors in checkpoint")
    return _strip_prefixes(state)


def load_checkpoint_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Network state dict from a Lightning ``.ckpt`` (or a bare state-dict file), safely."""
    return _weights(load_checkpoint(path), path)


def checkpoint_model_spec(ckpt: dict) -> tuple[str | None, dict]:
    """``(name, kwargs)`` recorded by :class:`~atd_dl.lit.module.SegmentationModule` in a checkpoint."""
    spec = (ckpt.get("hyper_parameters") or {}).get("model_spec") or {}
    return spec.get("name"), dict(spec.get("kwargs") or {})


def export_model_folder(
    ckpt: str | Path,
    out_dir: str | Path,
    threshold: float,
    *,
    name: str | None = None,
    kwargs: dict | None = None,
    fingerprint: dict | str | Path | None = None,
    metrics: dict | None = None,
    card: str | None = None,
    fp16: bool = True,
) -> Path:
    """Turn a training checkpoint into a model folder.

    The network name and kwargs are read from the checkpoint's hyper-parameters
    (``model_spec``) unless given.
    """
    from atd_dl.models.registry import build_model

    data = load_checkpoint(ckpt)
    ck_name, ck_kwargs = checkpoint_model_spec(data)
    name = name or ck_name
    if name is None:
        raise InputError(ckpt, "checkpoint records no model name; pass name= and kwargs=")
    model = build_model(name, **(ck_kwargs if kwargs is None else kwargs))
    try:
        model.load_state_dict(_weights(data, ckpt), strict=True)
    except RuntimeError as err:
        raise InputError(ckpt, f"weights do not fit {name}: {str(err).splitlines()[0]}") from None
    return save_model_folder(
        out_dir,
        model,
        threshold=threshold,
        fingerprint=fingerprint,
        metrics=metrics,
        card=card,
        fp16=fp16,
    )
