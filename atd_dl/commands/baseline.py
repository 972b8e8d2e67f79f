"""``atd-dl baseline`` and ``atd-dl twomass``: run the classical detectors on FITS frames."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from atd_dl.commands._validate import (
    check_sextractor_env,
    int_at_least,
    nonneg_float,
    positive_float,
    uses_sextractor,
    writable_out_dir,
)
from atd_dl.errors import InputError
from atd_dl.io.paths import frame_stem

BASELINE_NAMES = ("daofind", "psphot", "sep", "sextractor", "twomass")


def _frame_paths(items: list[str], failures: list[str]) -> list[Path]:
    """Files, folders and globs -> frames (as for ``atd-dl detect``); items that match
    nothing are reported (one line each) and counted as failures."""
    from atd_dl.detect.batch import expand_inputs

    paths, problems = expand_inputs(items)
    if not paths:  # nothing to do: the last problem is the error line
        for _, msg in problems[:-1]:
            print(f"error: {msg}", file=sys.stderr)
        raise InputError(None, problems[-1][1] if problems else "no FITS frames to process")
    for _, msg in problems:
        print(f"error: {msg}", file=sys.stderr)
        failures.append(msg)
    return paths


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``baseline`` and ``twomass`` sub-commands."""
    p = subparsers.add_parser(
        "baseline",
        help="run a classical detector (SExtractor, sep, DAOFind, 2MASS DAOFind, psphot)",
        description=(
            "Run one classical baseline on FITS frames and write one catalog per frame "
            "(and threshold) with the ATD-DL columns id, x, y (0-based), ra, dec, flux, "
            "snr, flags, ... Baselines: " + ", ".join(BASELINE_NAMES) + ". See docs/baselines.md."
        ),
    )
    p.add_argument("name", help="baseline name: " + ", ".join(BASELINE_NAMES))
    p.add_argument("frames", nargs="+", help="FITS files, folders or glob patterns")
    p.add_argument(
        "--threshold",
        type=positive_float,
        default=None,
        help="detection threshold, > 0 (default: the finder's)",
    )
    p.add_argument(
        "--sweep",
        choices=("dense", "paper"),
        default=None,
        help="run every threshold of the finder's dense or ten-point paper sweep",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="finder parameter, e.g. --param fwhm=2.5 --param filter_fwhm=None (repeatable)",
    )
    p.add_argument(
        "--out",
        type=writable_out_dir,
        default="baselines",
        help="output folder (default: ./baselines)",
    )
    p.add_argument(
        "--format", choices=("ecsv", "fits", "csv"), default="ecsv", help="catalog format"
    )
    p.add_argument("--hdu", default=None, help="HDU index or EXTNAME (default: first image)")
    p.add_argument(
        "--saturation", type=positive_float, default=None, help="saturation level in ADU"
    )
    p.set_defaults(func=run)

    t = subparsers.add_parser(
        "twomass",
        help="2MASS Atlas DAOFind pipeline (Liu et al. 2025) with cross-frame de-duplication",
        description=(
            "Run the tuned 2MASS DAOFind pipeline on Atlas frames (SKYSIG, SEESH, MAGZP from "
            "the headers), write one catalog per frame and, for several frames, a merged "
            "catalog de-duplicated at --dedup-radius arcsec."
        ),
    )
    t.add_argument(
        "frames",
        nargs="+",
        help="2MASS Atlas FITS frames (.fits or .fits.gz): files, folders or glob patterns",
    )
    t.add_argument(
        "--n1", type=positive_float, default=0.7, help="FWHM_det = n1 * FWHM_img (default 0.7)"
    )
    t.add_argument(
        "--n2", type=positive_float, default=1.0, help="threshold = n2 * SKYSIG (default 1.0)"
    )
    t.add_argument(
        "--edge-margins",
        "--edge",
        dest="edge",
        type=int_at_least(0),
        nargs=2,
        default=(26, 36),
        metavar=("Y", "X"),
        help="sources this close to the border are cut, px (default 26 36; --edge: "
        "deprecated alias)",
    )
    t.add_argument(
        "--sharpness-norm",
        choices=("peak", "none", "skysig"),
        default="peak",
        help="normalisation of the central sharpness (see docs)",
    )
    t.add_argument("--dedup-radius", type=nonneg_float, default=1.0, help="arcsec (default 1)")
    t.add_argument(
        "--out",
        type=writable_out_dir,
        default="baselines",
        help="output folder (default: ./baselines)",
    )
    t.add_argument(
        "--format", choices=("ecsv", "fits", "csv"), default="ecsv", help="catalog format"
    )
    t.set_defaults(func=run_twomass)


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b=None", "c=gauss"]`` → ``{"a": 1, "b": None, "c": "gauss"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(None, f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _write(table: Any, path: Path, fmt: str) -> Path:
    from atd_dl.io.atomic import atomic_output

    with atomic_output(path) as tmp:
        table.write(tmp, format={"ecsv": "ascii.ecsv", "fits": "fits", "csv": "ascii.csv"}[fmt])
    return path


def _hdu(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def run(args: argparse.Namespace) -> int:
    """Run the baseline on every frame; exit code 1 if any frame failed."""
    from atd_dl.baselines import BaselineUnavailable, get_baseline
    from atd_dl.io.fits_io import read_frame

    if uses_sextractor(args.name):
        check_sextractor_env()
    params = parse_params(args.param)
    try:
        finder = get_baseline(args.name, **params)
    except KeyError as err:
        raise InputError(None, str(err.args[0])) from None
    except TypeError as err:
        raise InputError(None, f"baseline {args.name!r}: {err}") from None
    if args.sweep and args.threshold is not None:
        raise InputError(None, "give either --threshold or --sweep, not both")
    thresholds = list(finder.sweep_values(args.sweep)) if args.sweep else [args.threshold]
    failures: list[str] = []
    args.frames = _frame_paths(args.frames, failures)
    for path in args.frames:
        try:
            frame = read_frame(path, hdu=_hdu(args.hdu), saturation=args.saturation)
            run_finder = finder
            level = frame.saturation_level
            if "saturation" in finder.params() and finder.params()["saturation"] is None and level:
                if level != float("inf"):
                    run_finder = finder.with_params(saturation=level)
            # saturated star cores stay usable for detection; the finders flag them
            usable_mask = frame.mask & ~frame.saturated
            for thr in thresholds:
                kwargs: dict[str, Any] = {"mask": usable_mask, "wcs": frame.wcs, "threshold": thr}
                if finder.name == "twomass":
                    kwargs["header"] = frame.header
                cat = run_finder(frame.data, **kwargs)
                cat.meta["frame"] = str(path)
                tag = "" if thr is None else f"_t{thr:g}"
                out = _write(
                    cat,
                    args.out / f"{frame_stem(path)}.{finder.name}{tag}.{args.format}",
                    args.format,
                )
                print(
                    f"{path.name}: {len(cat)} sources (threshold {cat.meta.get('threshold')}) -> {out}"
                )
        except BaselineUnavailable as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except (InputError, ValueError, RuntimeError, OSError) as err:
            msg = str(err) if isinstance(err, InputError) else f"{path}: {err}"
            failures.append(msg)
            print(f"error: {msg}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(args.frames)} frames failed", file=sys.stderr)
        return 1
    return 0


def run_twomass(args: argparse.Namespace) -> int:
    """Run the 2MASS pipeline per frame, then de-duplicate across frames."""
    from atd_dl.baselines.twomass import TwoMassFinder, deduplicate
    from atd_dl.io.fits_io import read_frame

    base = TwoMassFinder(
        threshold=args.n2,
        n1=args.n1,
        edge_y=args.edge[0],
        edge_x=args.edge[1],
        sharpness_norm=args.sharpness_norm,
    )
    catalogs = []
    failures: list[str] = []
    args.frames = _frame_paths(args.frames, failures)
    for path in args.frames:
        try:
            frame = read_frame(path, saturation=float("inf"))
            result = base.run(frame.data, mask=frame.mask, wcs=frame.wcs, header=frame.header)
            cat = result.catalog
            cat.meta["frame"] = str(path)
            out = _write(cat, args.out / f"{frame_stem(path)}.twomass.{args.format}", args.format)
            c = result.counts
            print(
                f"{path.name}: DAOFind {c['daofind']} -> edge {c['after_edge']} -> SNR>3 "
                f"{c['after_snr']} -> sharpness {c['after_sharpness']} -> saturation {c['final']} "
                f"(FWHM_img {result.params['fwhm_img_px']:.2f} px, SKYSIG {result.params['skysig']:.3g}) -> {out}"
            )
            if frame.wcs is not None:
                cat["frame_name"] = [path.name] * len(cat)
                catalogs.append(cat)
        except (InputError, ValueError, RuntimeError, OSError) as err:
            msg = str(err) if isinstance(err, InputError) else f"{path}: {err}"
            failures.append(msg)
            print(f"error: {msg}", file=sys.stderr)
    if len(catalogs) > 1:
        merged = deduplicate(catalogs, args.dedup_radius)
        n_in = sum(len(c) for c in catalogs)
        out = _write(merged, args.out / f"twomass_merged.{args.format}", args.format)
        print(
            f'merged: {n_in} detections -> {len(merged)} unique within {args.dedup_radius:g}" -> {out}'
        )
    if failures:
        print(f"{len(failures)} of {len(args.frames)} frames failed", file=sys.stderr)
        return 1
    return 0
