"""``atd-dl models``: list the registered networks with parameter counts and GFLOPs."""

from __future__ import annotations

import argparse
import json

from atd_dl.commands._validate import int_at_least, int_in


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list networks (parameters, GFLOPs per 512² input)",
        description="List the registered networks with parameter count and forward GFLOPs "
        "(1 multiply-add = 2 FLOPs) at their default widths.",
    )
    p.add_argument(
        "--size",
        type=int_in(16, 8192),
        default=512,
        help="square input side in pixels, 16-8192 (default 512)",
    )
    p.add_argument(
        "--in-channels",
        type=int_in(1, 64),
        default=1,
        help="input channels (1 image, 3 noise-aware)",
    )
    p.add_argument(
        "--base-width",
        type=int_at_least(1),
        default=None,
        help="override every model's base width (>= 1)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--shipped",
        action="store_true",
        help="list the shipped trained models (name, network, input, threshold, card summary)",
    )
    p.set_defaults(func=run)


def shipped_rows() -> list[dict]:
    """One row per shipped model folder (detectors, then binary classifiers)."""
    from atd_dl.models.model_folder import shipped_models

    rows = []
    for kind in ("detector", "binary"):
        for name, folder in shipped_models(kind).items():
            cfg = json.loads((folder / "config.json").read_text())
            thr_path = folder / "thresholds.json"
            shipped = json.loads(thr_path.read_text()) if thr_path.is_file() else {}
            thr = shipped.get("prob_threshold")
            adaptive = shipped.get("adaptive")
            fdr = adaptive.get("fdr") if isinstance(adaptive, dict) else None
            card = folder / "MODEL_CARD.md"
            summary = ""
            if card.is_file():
                lines = [ln.strip() for ln in card.read_text().splitlines()]
                summary = next((ln for ln in lines[1:] if ln and not ln.startswith("#")), "")
            rows.append(
                {
                    "name": name,
                    "kind": kind,
                    "network": cfg.get("name"),
                    "input": "stamps" if kind == "binary" else str(cfg.get("input", "")),
                    "threshold": thr,
                    "per_frame_fdr": fdr,
                    "path": str(folder),
                    "summary": summary,
                }
            )
    return rows


def run(args: argparse.Namespace) -> int:
    from atd_dl.models.flops import format_table, model_table

    if args.shipped:
        rows = shipped_rows()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            thr = "" if r["threshold"] is None else f"threshold {r['threshold']:.3f}"
            if r.get("per_frame_fdr") is not None:
                thr += f" (per frame below it: fdr {r['per_frame_fdr']:g})"
            print(f"{r['name']:<16} {r['kind']:<9} {r['network']:<16} {r['input']:<18} {thr}")
            if r["summary"]:
                print(f"{'':<16} {r['summary']}")
        print("use: atd-dl detect --model NAME ...; cards: atd_dl/weights/NAME/MODEL_CARD.md")
        return 0
    extra = {} if args.base_width is None else {"base_width": args.base_width}
    rows = model_table(size=args.size, in_channels=args.in_channels, **extra)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, size=args.size))
    return 0
