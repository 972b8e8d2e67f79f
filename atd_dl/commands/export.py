"""``atd-dl export``: write a model folder's ``model.onnx`` (the CPU inference engine's copy)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write model.onnx into model folders (CPU engine of detect)",
        description="Export each model folder's network to ONNX (model.onnx beside "
        "model.safetensors, tagged with the weights' SHA-256). `atd-dl detect` runs it with "
        "ONNX Runtime on the CPU; a folder without a current model.onnx runs with PyTorch. "
        "Folders written by `atd-dl train` and `atd-dl finetune` already have one.",
    )
    p.add_argument("models", nargs="+", help="model folders or shipped model names (e.g. default)")
    p.add_argument(
        "--onnx",
        action="store_true",
        default=True,
        help="export to ONNX (the only format; accepted for clarity)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export every named folder; exit 1 when any could not be exported."""
    from atd_dl.detect.onnx_engine import export_onnx, file_sha256
    from atd_dl.errors import InputError
    from atd_dl.models.model_folder import resolve_model_dir

    failed = 0
    for name in args.models:
        folder = resolve_model_dir(name)
        try:
            if not folder.is_dir():
                raise InputError(folder, "not a model folder")
            path = export_onnx(folder)
        except InputError as err:
            print(f"error: {err}")
            failed += 1
            continue
        if path is None:
            raise InputError(folder, "the onnx package is not installed (pip install onnx)")
        print(f"{path}  ({path.stat().st_size / 1e6:.1f} MB, sha256 {file_sha256(path)[:12]})")
    return 1 if failed else 0
