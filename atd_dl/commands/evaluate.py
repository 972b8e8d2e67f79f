"""``atd-dl evaluate``: score one detection catalog against a truth table or a reference catalog."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from atd_dl.commands._validate import (
    DEVICE_HELP,
    check_sextractor_env,
    device_choice,
    int_at_least,
    nonneg_float,
    positive_float,
    probability,
    writable_out_path,
)
from atd_dl.errors import InputError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        "evaluate",
        help="precision / recall / F1 of a detection catalog against truth or a reference catalog",
        description=(
            "Cross-match DETECTIONS (a table with x, y pixel columns, 0-based) with a reference: "
            "either a truth table (x, y, snr_true) or a Gaia-like catalog (ra, dec, mag) projected "
            "through the WCS of --frame, whose 3x3-aperture SNR defines the ground-truth set "
            "(SNR >= --snr-min). Reports the ATD-DL paper protocol and the strict one-to-one "
            "variant side by side, recall per SNR bin, astrometric RMS and growth / "
            "false-positive rates. See docs/evaluation.md. "
            "With --negative FRAME ..., no catalog is needed: the catalog-free mirrored-frame "
            "test runs the model and SExtractor on each frame and on its reflection about "
            "the background (2B - D), where every detection is false."
        ),
    )
    p.add_argument(
        "detections",
        type=Path,
        nargs="?",
        default=None,
        help="detection table (ECSV, CSV, FITS, VOTable); not with --negative",
    )
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="truth table (x, y, snr_true; or a SExtractor / FITS-LDAC catalog: XWIN_IMAGE, "
        "YWIN_IMAGE, FLUX_AUTO/FLUXERR_AUTO) or reference catalog (ra, dec, mag; needs --frame)",
    )
    p.add_argument(
        "--frame", type=Path, default=None, help="FITS frame: shape, WCS and pixels for the 3x3 SNR"
    )
    p.add_argument(
        "--reference-kind",
        choices=("auto", "truth", "catalog"),
        default="auto",
        help="how to read --reference (auto: truth if it has x, y and an SNR column)",
    )
    p.add_argument("--x-col", default="x", help="x column of DETECTIONS (default x)")
    p.add_argument("--y-col", default="y", help="y column of DETECTIONS (default y)")
    p.add_argument(
        "--one-based", action="store_true", help="DETECTIONS positions are 1-based (e.g. X_IMAGE)"
    )
    p.add_argument(
        "--snr-col", default=None, help="SNR column of a truth table (default snr_true or snr)"
    )
    p.add_argument(
        "--radius", type=positive_float, default=3.0, help="match radius in px (default 3)"
    )
    p.add_argument(
        "--edge",
        type=nonneg_float,
        default=3.0,
        help="drop detections this close to the border, px (default 3)",
    )
    p.add_argument(
        "--snr-min",
        type=nonneg_float,
        default=2.0,
        help="SNR defining the ground-truth set G (default 2)",
    )
    p.add_argument(
        "--astrometry-radius",
        type=positive_float,
        default=2.0,
        help="match radius for the RMS, px (default 2)",
    )
    p.add_argument(
        "--shape",
        type=int_at_least(1),
        nargs=2,
        metavar=("NY", "NX"),
        default=None,
        help="image shape for the edge cut when no --frame is given",
    )
    p.add_argument(
        "--out",
        type=writable_out_path,
        default=None,
        help="folder for metrics.json and matched/missed tables (with --negative: a JSON file)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the metrics as JSON instead of tables"
    )
    neg = p.add_argument_group(
        "mirrored-frame test",
        "catalog-free estimate of false detections: n_mirror / n_frame per frame, for the "
        "model and for SExtractor at the threshold giving the same n_frame - n_mirror",
    )
    neg.add_argument(
        "--negative",
        nargs="+",
        default=None,
        metavar="FRAME",
        help="FITS frames, folders or glob patterns to run the mirrored-frame test on",
    )
    neg.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model folder or Lightning .ckpt (default: the model shipped with atd-dl)",
    )
    neg.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="model probability threshold in (0, 1) (default: the model's tuned one)",
    )
    neg.add_argument(
        "--device", type=device_choice, default=None, help=f"{DEVICE_HELP} (default: auto)"
    )
    neg.add_argument("--hdu", default=None, help="HDU index or EXTNAME (default: first image)")
    neg.add_argument(
        "--no-sextractor", action="store_true", help="report the model only (skip SExtractor)"
    )
    p.set_defaults(func=run, _evaluate_parser=p)


def _load_reference(args: argparse.Namespace, frame: Any) -> Any:
    from atd_dl.evaluate.references import (
        read_table,
        references_from_catalog,
        references_from_truth,
        sextractor_xy_columns,
    )

    kind = args.reference_kind
    table = None
    if kind in ("auto", "truth"):
        table = read_table(args.reference)
        lower = {c.lower() for c in table.colnames}
        has_truth = {"x", "y"} <= lower and (
            bool(lower & {"snr_true", "snr"}) or (args.snr_col and args.snr_col.lower() in lower)
        )
        # a SExtractor catalog (FITS-LDAC too): pixel positions XWIN_IMAGE/YWIN_IMAGE
        has_truth = has_truth or sextractor_xy_columns(table) is not None
        if kind == "auto":
            kind = "truth" if has_truth else "catalog"
    if kind == "truth":
        return references_from_truth(table, path=args.reference, snr_col=args.snr_col)
    if frame is None:
        raise InputError(
            args.reference, "a reference catalog needs --frame (WCS and pixels for the 3x3 SNR)"
        )
    from atd_dl.io.catalogs import read_reference_catalog

    return references_from_catalog(
        read_reference_catalog(args.reference), frame, path=args.reference
    )


def evaluate_files(args: argparse.Namespace) -> dict[str, Any]:
    """Do the work of ``atd-dl evaluate``; returns the metrics dict (also written with --out)."""
    import numpy as np

    from atd_dl.evaluate.metrics import evaluate_frame, growth_and_false_positive, pool_frames
    from atd_dl.evaluate.references import detections_xy, read_table

    frame = None
    if args.frame is not None:
        from atd_dl.io.fits_io import read_frame

        frame = read_frame(args.frame)
    det_table = read_table(args.detections)
    det_xy = detections_xy(
        det_table,
        x_col=args.x_col,
        y_col=args.y_col,
        one_based=args.one_based,
        path=args.detections,
    )
    refs = _load_reference(args, frame)
    shape = frame.shape if frame is not None else (tuple(args.shape) if args.shape else None)
    if shape is None and args.edge > 0:
        log.warning("no --frame or --shape: the %g px edge cut is not applied", args.edge)
    fe = evaluate_frame(
        det_xy,
        refs.xy,
        refs.snr,
        shape=shape,
        radius=args.radius,
        edge=args.edge,
        snr_min=args.snr_min,
        ref_target=refs.target,
        astrometry_radius=args.astrometry_radius,
        name=args.detections.stem,
    )
    pooled = pool_frames([fe])
    kept = det_xy[fe.det_index]
    growth = growth_and_false_positive(
        kept, refs.xy[refs.in_catalog & refs.target], refs.xy[refs.target], args.radius
    )
    metrics = {
        "detections": str(args.detections),
        "reference": str(args.reference),
        "reference_kind": refs.source,
        "frame": str(args.frame) if args.frame else None,
        "settings": {
            "radius": args.radius,
            "edge": args.edge if shape is not None else 0.0,
            "snr_min": args.snr_min,
            "astrometry_radius": args.astrometry_radius,
        },
        "n_detections": len(det_xy),
        "n_detections_kept": int(fe.det_index.size),
        "n_reference": len(refs),
        **pooled.to_dict(),
        "growth": growth.to_dict(),
    }
    metrics.pop("per_frame", None)
    if args.out is not None:
        _write_outputs(args.out, metrics, det_table, fe, refs, np)
    return metrics


def _write_outputs(out: Path, metrics: dict, det_table: Any, fe: Any, refs: Any, np: Any) -> None:
    from astropy.table import Table

    from atd_dl.evaluate.report import to_jsonable
    from atd_dl.io.atomic import atomic_output, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(to_jsonable(metrics), indent=1) + "\n")
    matched = det_table[fe.det_index]
    matched["tp_paper"] = fe.det_tp_paper
    matched["tp_strict"] = fe.det_tp_strict
    matched["ref_index"] = fe.det_ref
    matched["ref_dist"] = fe.det_dist
    with atomic_output(out / "matched.ecsv") as tmp:
        matched.write(tmp, format="ascii.ecsv")
    g = fe.g_index
    missed = ~fe.g_found_paper
    tab = Table(
        {
            "ref_index": g[missed],
            "x": refs.xy[g[missed], 0],
            "y": refs.xy[g[missed], 1],
            "snr": refs.snr[g[missed]],
            "mag": refs.mag[g[missed]],
        }
    )
    with atomic_output(out / "missed.ecsv") as tmp:
        tab.write(tmp, format="ascii.ecsv")


def print_metrics(metrics: dict[str, Any]) -> None:
    """Render the metrics as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    def pct(v: Any) -> str:
        return "–" if v is None or v != v else f"{100 * v:.2f}"

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    t = Table(
        title=f"{metrics['detections']} vs {metrics['reference']} ({metrics['reference_kind']})"
    )
    for col in (
        "rule",
        "TP",
        "FP",
        "FN",
        "|G|",
        "precision %",
        "recall %",
        "F1 %",
        "recall 2<SNR<5 %",
    ):
        t.add_column(col, justify="right")
    for rule in ("paper", "strict"):
        c = metrics[rule]
        t.add_row(
            rule,
            str(c["tp"]),
            str(c["fp"]),
            str(c["fn"]),
            str(c["n_ref"]),
            pct(c["precision"]),
            pct(c["recall"]),
            pct(c["f1"]),
            pct(metrics["faint"][rule]["recall"]),
        )
    console.print(t)
    b = Table(title="recall per SNR bin (paper rule / strict rule)")
    labels = list(metrics["snr_recall"]["paper"])
    b.add_column("")
    for lab in labels:
        b.add_column(lab, justify="right")
    for rule in ("paper", "strict"):
        b.add_row(rule, *[pct(metrics["snr_recall"][rule][lab]["recall"]) for lab in labels])
    b.add_row("n", *[str(metrics["snr_recall"]["paper"][lab]["n"]) for lab in labels])
    console.print(b)
    a, br, g = metrics["astrometry"], metrics["astrometry_bright"], metrics["growth"]

    def f(v: Any) -> str:
        return "–" if v is None or v != v else f"{v:.4f}"

    console.print(
        f"astrometry ({a['n']} pairs): RMS x {f(a['rms_x'])}  y {f(a['rms_y'])}  total {f(a['rms_total'])} px "
        f"(mean offset {f(a['mean_dx'])}, {f(a['mean_dy'])}); SNR>10: total {f(br['rms_total'])} px ({br['n']} pairs)"
    )
    console.print(
        f"growth rate {pct(g['growth_rate'])} % ({g['n_new']} new / {g['n_base']} catalogued), "
        f"false-positive rate {pct(g['fp_rate'])} % ({g['n_fp']} / {g['n_det']})"
    )


def _hdu(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.strip().lstrip("-").isdigit() else value


def _fmt_fraction(v: float) -> str:
    if v != v:
        return "–"
    if v == float("inf"):
        return "inf"
    return f"{100 * v:.1f}"


def format_negative_table(results: list[Any]) -> str:
    """The mirrored-frame results as a compact fixed-width text table."""
    head = (
        f"{'frame':<34} {'detector':<19} {'thresh':>7} {'n_frame':>8} {'n_mirror':>8} "
        f"{'false %':>8} {'n_real':>7}"
    )
    lines = [head, "-" * len(head)]
    for res in results:
        name = Path(res.path).name if res.path else "frame"
        for r in res.rows:
            thr = f"{r.threshold:.3g}" + ("σ" if r.threshold_unit == "sigma" else "")
            lines.append(
                f"{name[:34]:<34} {r.detector:<19} {thr:>7} {r.n_frame:>8} {r.n_mirror:>8} "
                f"{_fmt_fraction(r.false_fraction):>8} {r.n_real:>7}"
            )
            name = ""
        if res.sextractor_note:
            lines.append(f"{'':<34} {res.sextractor_note}")
        verdict = res.model_within_sextractor
        if verdict is not None:
            sex = res.sextractor_false_at_model_real
            need = "never as many real" if sex is None else f"{sex:.1f} false for as many real"
            mark = "ok" if verdict else "MORE FALSE THAN SEXTRACTOR"
            lines.append(f"{'':<34} SExtractor: {need}: {mark}")
    return "\n".join(lines)


def run_negative(args: argparse.Namespace) -> int:
    """``atd-dl evaluate --negative``: 0 when every frame worked, 1 when any failed."""
    import sys

    from atd_dl.detect.batch import expand_inputs
    from atd_dl.evaluate.negative import (
        SEXTRACTOR_REFERENCE,
        SEXTRACTOR_SCAN,
        negative_test,
    )
    from atd_dl.evaluate.report import to_jsonable

    def fail(msg: str) -> None:
        failures.append(msg)
        print(f"error: {msg}", file=sys.stderr)

    out = args.out
    if out is not None and not out.is_dir() and out.exists() and not args.overwrite:
        raise InputError(None, f"{out}: output file exists; pass --overwrite to replace it")
    failures: list[str] = []
    paths, problems = expand_inputs(args.negative)
    for _item, msg in problems:
        fail(msg)
    results = []
    detector = None
    if paths:
        from atd_dl.detect.inference import load_detector
        from atd_dl.detect.pipeline import DetectConfig, Detector

        model, meta = load_detector(args.model, device=args.device)
        detector = Detector(model, meta, DetectConfig(threshold=args.threshold, device=args.device))
    for path in paths:
        assert detector is not None
        try:
            results.append(
                negative_test(path, detector, sextractor=not args.no_sextractor, hdu=_hdu(args.hdu))
            )
        except InputError as err:
            fail(str(err))
        except Exception as err:  # noqa: BLE001 - one bad frame must not stop the batch
            first = str(err).splitlines()[0] if str(err) else ""
            fail(f"{path}: {type(err).__name__}: {first}".rstrip(": "))
            log.debug("frame failed", exc_info=True)
    report = {
        "test": "mirrored frame (2*B - D about the 2-D background); detections there are false",
        "model": None
        if detector is None
        else {
            "name": detector.meta.get("name"),
            "path": detector.meta.get("path"),
            "threshold": detector.threshold,
            "threshold_source": detector.threshold_source,
        },
        "sextractor_scan_sigma": list(SEXTRACTOR_SCAN),
        "sextractor_reference_sigma": SEXTRACTOR_REFERENCE,
        "frames": [r.to_dict() for r in results],
        "failures": failures,
    }
    if args.json:
        print(json.dumps(to_jsonable(report), indent=1))
    else:
        if results:
            print(format_negative_table(results))
        for res in results:
            for note in res.notes:
                log.info(note)
    if args.out is not None:
        from atd_dl.io.atomic import atomic_write_text

        out = args.out / "negative.json" if args.out.is_dir() else args.out
        atomic_write_text(out, json.dumps(to_jsonable(report), indent=1) + "\n")
        print(f"wrote {out}")
    if failures:
        if len(failures) > 1:
            print(f"{len(failures)} inputs failed", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """Evaluate and print; returns 0 (``--negative``: see :func:`run_negative`)."""
    parser = getattr(args, "_evaluate_parser", None)
    if args.negative is not None:
        if args.detections is not None or args.reference is not None:
            msg = "--negative takes FITS frames; DETECTIONS and --reference are not used with it"
            if parser is None:
                raise InputError(None, msg)
            parser.error(msg)
        if not args.no_sextractor:
            check_sextractor_env()
        return run_negative(args)
    missing = [
        name
        for name, value in (("detections", args.detections), ("--reference", args.reference))
        if value is None
    ]
    if missing:
        msg = f"the following arguments are required: {', '.join(missing)}"
        if parser is None:
            raise InputError(None, msg)
        parser.error(msg)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        msg = f"argument --out: {args.out}: exists and is not a folder"
        if parser is None:
            raise InputError(None, msg)
        parser.error(msg)
    metrics = evaluate_files(args)
    if args.json:
        from atd_dl.evaluate.report import to_jsonable

        print(json.dumps(to_jsonable(metrics), indent=1))
    else:
        print_metrics(metrics)
    if args.out is not None:
        print(f"wrote {args.out / 'metrics.json'}, matched.ecsv, missed.ecsv")
    return 0
