"""``atd-dl simulate``: write simulated raw frames, masters, catalogs and truth tables."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from atd_dl.commands._validate import float_in, int_at_least, int_in, writable_out_dir
from atd_dl.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` sub-command."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate wide-field frames with known truth",
        description=(
            'Simulate raw 16-bit frames of the ATD-DL wide-field camera (QHY4040, 14.86"/px, '
            "100 ms) with a Gaia-like reference catalog, a truth table and master bias/dark. "
            "Frames of one run never overlap on the sky; frame k depends only on (seed, k)."
        ),
    )
    p.add_argument("--out", required=True, type=writable_out_dir, help="output folder")
    p.add_argument(
        "--n-frames", type=int_at_least(1), default=1, help="number of frames (default 1)"
    )
    p.add_argument(
        "--preset",
        choices=["sparse", "paper", "dense", "random"],
        default="paper",
        help="star density of the paper camera, or 'random': domain-randomised fields "
        "(any PSF 1-6 px, noise regime, density, defects; docs/simulator.md)",
    )
    p.add_argument(
        "--patches",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="with --preset random: write N 256x256 training patches (network input, "
        "labels, points as .npz) into --out instead of frames",
    )
    p.add_argument(
        "--fwhm",
        type=float_in(0.5, 20.0),
        default=None,
        help="--preset random: fix the PSF FWHM, 0.5-20 px",
    )
    p.add_argument(
        "--density",
        default=None,
        help="--preset random: fix the density, stars with optimal SNR>=3 per 1e6 px, "
        "or a cell name: empty, sparse, paper, crowded",
    )
    p.add_argument(
        "--hard",
        action="store_true",
        help="--preset random: always add nebulosity, defects, glow and trails",
    )
    p.add_argument(
        "--clean",
        action="store_true",
        help="--preset random: no nebulosity, defects, glow or trails (galaxies, halos, "
        "spikes and saturated stars still occur)",
    )
    p.add_argument(
        "--seed", type=int_at_least(0), default=0, help="run seed (camera, pointings, fields)"
    )
    p.add_argument(
        "--size",
        type=int_in(32, 20000),
        default=None,
        help="frame size in px, 32-20000 (default 1600)",
    )
    p.add_argument(
        "--start-index", type=int_at_least(0), default=0, help="index of the first frame"
    )
    p.add_argument(
        "--isolated",
        action="store_true",
        help="isolated stars: no close pairs, trails, cosmic rays or saturating stars, "
        "and a minimum separation between stars",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any SimConfig field, e.g. --set sky_mag_arcsec2=19.5 --set sip_corner_px=1.5",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    from atd_dl.sim.config import SimConfig

    fields = {f.name: f for f in dataclasses.fields(SimConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise InputError(
                None, f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}"
            )
        default = getattr(SimConfig(), key)
        try:
            if isinstance(default, bool):
                parsed: object = value.strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                parsed = int(value)
            elif isinstance(default, tuple):
                parsed = tuple(float(v) for v in value.split(","))
            elif isinstance(default, float) or default is None:
                parsed = None if value.strip().lower() == "none" else float(value)
            else:
                parsed = value
        except ValueError as err:
            raise InputError(None, f"--set {item!r}: {err}") from None
        out[key] = parsed
    return out


#: what a rerun into the same --out may change without redoing frames
_NOT_IN_KEY = {
    "out", "n_frames", "start_index", "no_progress", "quiet", "verbose", "overwrite",
    "debug", "func", "command", "patches",
}  # fmt: skip
STAMP = ".atd_dl_run.json"
#: folders ``atd-dl simulate`` writes (replaced by --overwrite when the settings changed)
_WRITES = ("frames", "truth", "catalogs", "calib", "patches", "images", "masks", "points")


def _check_stamp(args: argparse.Namespace) -> None:
    """Resume keyed on the settings: frames already in --out are kept only when they were
    simulated with the same settings (seed, preset, overrides, size, ...); otherwise the
    run is refused unless --overwrite, which replaces them."""
    from atd_dl.io.resume import compare_keys, describe_changes, read_key, write_key

    key = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_IN_KEY and not callable(v)}
    out = Path(args.out)
    stored = read_key(out / STAMP)
    occupied = out.is_dir() and any(
        (out / d).is_dir() and any((out / d).iterdir()) for d in _WRITES
    )
    if occupied:
        changed = compare_keys(stored, key)
        if changed:
            why = describe_changes(
                ["no resume key"]
                if stored is None
                else [f"--{c.replace('_', '-')}" for c in changed]
            )
            if not args.overwrite:
                raise InputError(
                    out,
                    f"holds frames simulated with other settings ({why}); pass --overwrite "
                    "to replace them, or choose another --out",
                )
            import shutil

            for d in _WRITES:
                shutil.rmtree(out / d, ignore_errors=True)
            print(f"simulate: {out}: replacing earlier frames ({why})")
    write_key(out / STAMP, key)


def run(args: argparse.Namespace) -> int:
    """Simulate the requested frames; exit code 1 when any frame failed."""
    from atd_dl.sim.config import preset_config
    from atd_dl.sim.simulate import simulate_run

    if args.n_frames < 1:
        raise InputError(None, f"--n-frames must be >= 1, got {args.n_frames}")
    if args.preset == "random":
        return _run_random(args)
    if args.patches or args.fwhm is not None or args.density is not None or args.hard or args.clean:
        raise InputError(
            None, "--patches, --fwhm, --density, --hard and --clean need --preset random"
        )
    if args.start_index < 0:
        raise InputError(None, f"--start-index must be >= 0, got {args.start_index}")
    overrides = _parse_overrides(args.overrides)
    if args.size is not None:
        overrides["size"] = args.size
    if args.isolated:
        overrides["isolated"] = True
    cfg = preset_config(args.preset, **overrides)
    _check_stamp(args)
    report = simulate_run(
        cfg,
        args.seed,
        args.out,
        args.n_frames,
        start_index=args.start_index,
        progress=not args.no_progress,
    )
    print(
        f"simulate: {len(report.written)} written, {len(report.skipped)} skipped "
        f"(unchanged), {len(report.failed)} failed -> {args.out}"
    )
    for name, problem in report.failed.items():
        print(f"  failed {name}: {problem}", file=sys.stderr)
    return 1 if report.failed else 0


def _run_random(args: argparse.Namespace) -> int:
    """``--preset random``: frames (frames/ + truth/) or training patches."""
    from atd_dl.sim.randomized import DENSITY_CELLS, write_random_frames, write_training_set

    if args.hard and args.clean:
        raise InputError(None, "--hard and --clean exclude each other")
    if args.patches < 0:
        raise InputError(None, f"--patches must be >= 0, got {args.patches}")
    if args.fwhm is not None and not 0.5 <= args.fwhm <= 20.0:
        raise InputError(None, f"--fwhm must be in [0.5, 20] px, got {args.fwhm}")
    density = None
    if args.density is not None:
        if args.density in DENSITY_CELLS:
            density = DENSITY_CELLS[args.density]
        else:
            try:
                density = float(args.density)
            except ValueError:
                density = -1.0
            if not 0.0 <= density <= 1e6:
                raise InputError(
                    None,
                    f"--density must be a number in [0, 1e6] or one of "
                    f"{', '.join(DENSITY_CELLS)}, got {args.density!r}",
                )
    size = args.size or (256 if args.patches else 1600)
    if not 32 <= size <= 20000:
        raise InputError(None, f"--size must be in [32, 20000], got {size}")
    _check_stamp(args)
    if args.patches:
        n = write_training_set(
            args.out,
            args.patches,
            seed=args.seed,
            size=size,
            start=args.start_index,
            progress=not args.no_progress,
        )
        print(f"simulate: {n} patches written ({args.patches - n} already present) -> {args.out}")
        return 0
    written = write_random_frames(
        args.out,
        args.n_frames,
        seed=args.seed,
        size=size,
        start=args.start_index,
        fwhm=args.fwhm,
        density=density,
        hard=True if args.hard else (False if args.clean else None),
        progress=not args.no_progress,
    )
    print(
        f"simulate: {len(written)} random frames written "
        f"({args.n_frames - len(written)} already present) -> {args.out}"
    )
    return 0
