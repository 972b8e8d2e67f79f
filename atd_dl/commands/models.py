"""``atd-dl models``: list the registered networks with parameter counts and GFLOPs."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list networks (parameters, GFLOPs per 512² input)",
        description="List the registered networks with parameter count and forward GFLOPs "
        "(1 multiply-add = 2 FLOPs) at their default widths.",
    )
    p.add_argument(
        "--size", type=int, default=512, help="square input side in pixels (default 512)"
    )
    p.add_argument(
        "--in-channels", type=int, default=1, help="input channels (1 image, 3 noise-aware)"
    )
    p.add_argument("--base-width", type=int, default=None, help="override every model's base width")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atd_dl.models.flops import format_table, model_table

    extra = {} if args.base_width is None else {"base_width": args.base_width}
    rows = model_table(size=args.size, in_channels=args.in_channels, **extra)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, size=args.size))
    return 0
