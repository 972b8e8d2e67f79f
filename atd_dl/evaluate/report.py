"""Benchmark report: ``summary.json`` with every number, ``report.md`` and PNG figures.

The summary dict is the single source: tables and figures are rendered from it, so a
saved ``summary.json`` can be re-rendered (``render_report``) or plotted in a notebook.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atd_dl import __version__
from atd_dl.errors import InputError
from atd_dl.evaluate.sweep import EvalSettings, SweepResult, summarize_sweep
from atd_dl.io.atomic import atomic_write_text

__all__ = [
    "ablation_table",
    "to_jsonable",
    "build_summary",
    "load_summary",
    "matched_precision_pairs",
    "render_markdown",
    "write_report",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- summary


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays; NaN/inf become None (valid JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def matched_precision_pairs(
    prec_a: Sequence[float], prec_b: Sequence[float], n: int = 5
) -> list[tuple[int, int]]:
    """Up to ``n`` pairs (i, j) of sweep points with the closest precisions.

    Greedy over all pairs by ``|prec_a[i] − prec_b[j]|``, each point used once; the pairs
    are returned in order of increasing precision (paper Table 7's "matched precision").
    """
    a = np.asarray(prec_a, float)
    b = np.asarray(prec_b, float)
    if a.size == 0 or b.size == 0:
        return []
    diff = np.abs(a[:, None] - b[None, :])
    order = np.argsort(diff, axis=None, kind="stable")
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for flat in order:
        i, j = np.unravel_index(flat, diff.shape)
        if i in used_a or j in used_b:
            continue
        used_a.add(int(i))
        used_b.add(int(j))
        pairs.append((int(i), int(j)))
        if len(pairs) == n:
            break
    return sorted(pairs, key=lambda p: (a[p[0]] + b[p[1]]) / 2)


def ablation_table(
    base: dict[str, Any], enhanced: dict[str, Any], *, n: int = 5, rule: str = "paper"
) -> dict[str, Any]:
    """FEM ablation (paper Table 7) from two method summaries.

    For ``n`` matched-precision pairs of operating points, the recovered faint
    (2 < SNR < 5) references of each model and the lift
    ``(TP_enhanced − TP_base) / TP_base`` in percent.
    """
    sa, sb = base["sweep"][rule], enhanced["sweep"][rule]
    rows = []
    for k, (i, j) in enumerate(matched_precision_pairs(sa["precision"], sb["precision"], n), 1):
        ta, tb = int(sa["faint_found"][i]), int(sb["faint_found"][j])
        rows.append(
            {
                "set": k,
                "base_value": base["values"][i],
                "base_precision": sa["precision"][i],
                "base_faint_tp": ta,
                "enhanced_value": enhanced["values"][j],
                "enhanced_precision": sb["precision"][j],
                "enhanced_faint_tp": tb,
                "lift_pct": 100.0 * (tb - ta) / ta if ta else float("nan"),
            }
        )
    return {"base": base["name"], "enhanced": enhanced["name"], "rule": rule, "rows": rows}


def build_summary(
    results: Mapping[str, SweepResult],
    settings: EvalSettings | None = None,
    *,
    test_set: str | Path | None = None,
    n_frames: int | None = None,
    reference: str = "truth",
    ablation: tuple[str, str] | None = None,
    injection: dict[str, Any] | None = None,
    pixel_scale_arcsec: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the JSON-ready summary of a benchmark.

    ``ablation=(base_name, enhanced_name)`` adds Table 7 for two model sweeps.
    ``pixel_scale_arcsec`` converts astrometric RMS to arcsec in the report.
    """
    settings = settings or EvalSettings()
    methods = {name: summarize_sweep(r, settings) for name, r in results.items()}
    summary: dict[str, Any] = {
        "atd_dl_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "test_set": str(test_set) if test_set else None,
        "n_frames": n_frames,
        "reference": reference,
        "pixel_scale_arcsec": pixel_scale_arcsec,
        "settings": settings.to_dict(),
        "methods": methods,
        "ablation": None,
        "injection": injection,
    }
    if ablation:
        a, b = ablation
        if methods.get(a, {}).get("sweep") and methods.get(b, {}).get("sweep"):
            summary["ablation"] = ablation_table(methods[a], methods[b])
        else:
            log.warning("ablation skipped: %s or %s has no results", a, b)
    if extra:
        summary.update(extra)
    return to_jsonable(summary)


def load_summary(path: str | Path) -> dict[str, Any]:
    """Read a ``summary.json`` (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    if not path.is_file():
        raise InputError(path, "summary file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict) or "methods" not in data:
        raise InputError(path, "not an atd-dl summary (no 'methods' key)")
    return data


# ----------------------------------------------------------------------------- markdown


def _pct(v: Any, nd: int = 2) -> str:
    return (
        "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.{nd}f}"
    )


def _num(v: Any, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _ok(summary: dict[str, Any]) -> list[str]:
    from atd_dl.evaluate.figures import method_order

    return [n for n in method_order(summary) if summary["methods"][n].get("sweep", {}).get("paper")]


def _table5(summary: dict[str, Any], rule: str) -> str:
    rows = []
    for n in _ok(summary):
        m = summary["methods"][n]
        b, a = m["best"][rule], m["aligned"][rule]
        rows.append(
            [
                m["label"],
                _pct(b["precision"]),
                _pct(b["recall"]),
                _pct(b["f1"]),
                f"{_num(a['value'], 3)}",
                _pct(a["precision"]),
                _pct(a["recall"]),
                _pct(a["faint_recall"]),
                _pct(a.get("interpolated_recall")),
            ]
        )
    tgt = summary["settings"]["target_precision"]
    return _table(
        [
            "Method",
            "P (%)",
            "R (%)",
            "F1 (%)",
            "aligned at",
            f"P≈{100 * tgt:.0f} (%)",
            "R (%)",
            "R 2<SNR<5 (%)",
            "R interp. (%)",
        ],
        rows,
    )


def _table_top3(summary: dict[str, Any]) -> str:
    rows = []
    for n in _ok(summary):
        m = summary["methods"][n]
        r = []
        for rule in ("paper", "strict"):
            t = m["top3"][rule]
            r += [
                f"{_pct(t['precision'])} ± {_pct(t['precision_std'])}",
                f"{_pct(t['recall'])} ± {_pct(t['recall_std'])}",
                f"{_pct(t['f1'])} ± {_pct(t['f1_std'])}",
            ]
        rows.append([m["label"], *r])
    return _table(
        ["Method", "P paper", "R paper", "F1 paper", "P strict", "R strict", "F1 strict"], rows
    )


def _table6(summary: dict[str, Any]) -> str:
    scale = summary.get("pixel_scale_arcsec")
    rows = []
    for n in _ok(summary):
        m = summary["methods"][n]
        a, br = m["astrometry"]["all"], m["astrometry"]["bright"]

        def fmt(v: Any) -> str:
            s = _num(v)
            return (
                f"{s} ({v * scale:.3f}″)"
                if scale and isinstance(v, float) and math.isfinite(v)
                else s
            )

        rows.append(
            [
                m["label"],
                fmt(a["rms_total"]),
                fmt(a["rms_x"]),
                fmt(a["rms_y"]),
                a["n"],
                _num(a["mean_dx"]),
                _num(a["mean_dy"]),
                fmt(br["rms_total"]),
                br["n"],
            ]
        )
    bright = summary["settings"].get("bright_snr", 10)
    return _table(
        [
            "Method",
            "total RMS (px)",
            "RMS x",
            "RMS y",
            "pairs",
            "mean dx",
            "mean dy",
            f"total RMS SNR>{bright:g}",
            "pairs",
        ],
        rows,
    )


def _table7(summary: dict[str, Any]) -> str:
    ab = summary.get("ablation")
    if not ab or not ab.get("rows"):
        return ""
    rows = [
        [
            r["set"],
            _pct(r["base_precision"]),
            r["base_faint_tp"],
            _pct(r["enhanced_precision"]),
            r["enhanced_faint_tp"],
            _num(r["lift_pct"], 2),
        ]
        for r in ab["rows"]
    ]
    return _table(
        [
            "Set",
            f"{ab['base']} P (%)",
            "TP (2–5)",
            f"{ab['enhanced']} P (%)",
            "TP (2–5)",
            "Lift (%)",
        ],
        rows,
    )


def _sweep_table(m: dict[str, Any], rule: str = "paper") -> str:
    sw = m["sweep"][rule]
    rows = [
        [
            _num(v, 3),
            _num(sw["precision"][i]),
            _num(sw["recall"][i]),
            _num(sw["f1"][i]),
            sw["tp"][i],
            sw["fp"][i],
            sw["fn"][i],
            _pct(sw["faint_recall"][i]),
        ]
        for i, v in enumerate(m["values"])
    ]
    return _table([m["param"], "Precision", "Recall", "F1", "TP", "FP", "FN", "R faint (%)"], rows)


def _snr_table(summary: dict[str, Any], rule: str) -> str:
    names = _ok(summary)
    if not names:
        return ""
    labels = list(summary["methods"][names[0]]["snr_recall_top3"][rule].keys())
    rows = []
    for n in names:
        m = summary["methods"][n]
        rows.append([m["label"], *[_pct(m["snr_recall_top3"][rule][lab], 1) for lab in labels]])
    counts = summary["methods"][names[0]]["snr_recall"][rule]
    rows.append(["(references)", *[counts[lab]["n"] for lab in labels]])
    return _table(["Method", *labels], rows)


def _growth_table(summary: dict[str, Any]) -> str:
    rows = []
    for n in _ok(summary):
        m = summary["methods"][n]
        g = m.get("growth", {})
        rows.append(
            [
                m["label"],
                g.get("n_det"),
                g.get("n_base"),
                g.get("n_new"),
                g.get("n_fp"),
                _pct(g.get("growth_rate")),
                _pct(g.get("fp_rate")),
            ]
        )
    return _table(["Method", "N_det", "N_catalog", "N_new", "N_FP", "GR (%)", "FP (%)"], rows)


def _injection_lines(inj: dict[str, Any]) -> list[str]:
    """Completeness tables (methods as columns) by SNR and by magnitude, plus 50/90 % levels."""
    names = list(inj["methods"])
    lines = [
        "## Injection–recovery completeness",
        "",
        f"{inj.get('n_injected')} artificial stars; magnitudes {inj.get('mag_system')} "
        f"(zeropoint {_num(inj.get('zeropoint'), 3)}). Completeness in %.",
        "",
    ]
    for key, label in (("by_snr", "SNR"), ("by_mag", "mag")):
        bins: dict[tuple[float, float], dict[str, Any]] = {}
        for n in names:
            for r in inj["methods"][n].get(key, []):
                hi = r["hi"] if r["hi"] is not None else float("inf")
                row = bins.setdefault((r["lo"], hi), {"n": r["n"]})
                row[n] = r["completeness"]
        rows = [
            [f"{lo:g}–{hi:g}" if math.isfinite(hi) else f"≥{lo:g}", row["n"]]
            + [_pct(row.get(n), 1) for n in names]
            for (lo, hi), row in sorted(bins.items())
        ]
        lines += [_table([label, "injected", *names], rows), ""]
    rows = [
        [lev, *[_num(inj["methods"][n].get(k), 2) for n in names]]
        for lev, k in (("SNR at 50 %", "snr50"), ("SNR at 90 %", "snr90"), ("mag at 50 %", "mag50"))
    ]
    lines += [_table(["level", *names], rows), ""]
    return lines


def render_markdown(summary: dict[str, Any], figures: Mapping[str, str] | None = None) -> str:
    """The report as Markdown (tables like the paper's Tables 5–8 and figure links)."""
    figures = figures or {}
    s = summary["settings"]
    lines = [
        "# ATD-DL benchmark report",
        "",
        f"- test set: `{summary.get('test_set')}` ({summary.get('n_frames')} frames), "
        f"references: {summary.get('reference')}",
        f"- matching radius {s['radius']} px, edge cut {s['edge']} px, G = SNR ≥ {s['snr_min']}, "
        f"astrometry radius {s['astrometry_radius']} px, precision target {s['target_precision']} "
        f"({s['align_mode']})",
        f"- atd-dl {summary.get('atd_dl_version')}, {summary.get('created')}",
        "",
        "**Paper rule**: a detection with any reference within the radius is a TP (several "
        "detections may share one); unmatched G members are FN. **Strict rule**: one-to-one "
        "pairing, nearest first; recall = recovered G / |G|. See docs/evaluation.md.",
        "",
    ]
    skipped = [n for n in summary["methods"] if n not in _ok(summary)]
    if skipped:
        lines += [f"Methods without results: {', '.join(skipped)}", ""]
    lines += [
        "## Table 5 — best F1 and precision alignment (paper rule)",
        "",
        _table5(summary, "paper"),
        "",
    ]
    lines += [
        "## Table 5b — the same with the strict one-to-one rule",
        "",
        _table5(summary, "strict"),
        "",
    ]
    lines += ["## Mean of the three best-F1 points (Fig. 12)", "", _table_top3(summary), ""]
    lines += [
        "## Table 6 — astrometric RMS after removing the mean offset (best-F1 point)",
        "",
        _table6(summary),
        "",
    ]
    t7 = _table7(summary)
    if t7:
        lines += [
            "## Table 7 — ablation at matched precision (faint TP = recovered 2<SNR<5 references)",
            "",
            t7,
            "",
        ]
    segs = [n for n in _ok(summary) if summary["methods"][n].get("segmentation_centroid")]
    for n in segs:
        lines += [
            f"## Table 8 — segmentation-map centroids: {summary['methods'][n]['label']}",
            "",
            _sweep_table(summary["methods"][n]),
            "",
        ]
    snr_kind = "3×3-SNR" if summary.get("reference") == "catalog" else "true-SNR"
    lines += [
        f"## Recall per {snr_kind} bin, mean of the top-3 F1 points (Fig. 13, paper rule)",
        "",
        _snr_table(summary, "paper"),
        "",
    ]
    lines += [f"## Recall per {snr_kind} bin (strict rule)", "", _snr_table(summary, "strict"), ""]
    lines += [
        "## Growth rate and false-positive rate against the input catalog (best-F1 point)",
        "",
        _growth_table(summary),
        "",
    ]
    inj = summary.get("injection")
    if inj and inj.get("methods"):
        lines += _injection_lines(inj)
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{k}]({v})" for k, v in figures.items()]
        lines += [""]
    lines += [
        "## Timing",
        "",
        _table(
            ["Method", "frames", "s / frame (incl. all sweep values)"],
            [
                [
                    summary["methods"][n]["label"],
                    summary["methods"][n]["n_frames"],
                    _num(summary["methods"][n]["timing"]["seconds_per_frame"], 3),
                ]
                for n in summary["methods"]
            ],
        ),
        "",
    ]
    lines += ["## Full sweeps (paper rule)", ""]
    for n in _ok(summary):
        lines += [
            f"### {summary['methods'][n]['label']}",
            "",
            _sweep_table(summary["methods"][n]),
            "",
        ]
    fails = {n: m["failures"] for n, m in summary["methods"].items() if m.get("failures")}
    if fails:
        lines += ["## Failures", ""]
        for n, f in fails.items():
            lines += [f"- **{n}**: " + "; ".join(f[:20]) + (" …" if len(f) > 20 else "")]
        lines += [""]
    return "\n".join(lines)


def _save(fig: Any, path: Path, dpi: int) -> None:
    from atd_dl.io.atomic import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def write_report(
    summary: dict[str, Any], out_dir: str | Path, *, figures: bool = True, dpi: int = 110
) -> Path:
    """Write ``summary.json``, figures ``fig_*.png`` and ``report.md`` into ``out_dir``.

    Returns the path of ``report.md``. Files are written atomically; a figure that fails
    to draw is logged and skipped.
    """
    from atd_dl.evaluate import figures as F

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = to_jsonable(summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    figs: dict[str, str] = {}
    if figures and _ok(summary):
        jobs: list[tuple[str, Any]] = [
            ("fig_metrics_vs_point.png", lambda: F.fig_metrics_vs_operating_point(summary)),
            ("fig_pr_curves.png", lambda: F.fig_pr_curves(summary)),
            ("fig_top3.png", lambda: F.fig_top3(summary)),
            ("fig_recall_snr.png", lambda: F.fig_snr_heatmap(summary)),
            ("fig_centroid_residuals.png", lambda: F.fig_centroid_residuals(summary)),
        ]
        if summary.get("ablation") and summary["ablation"].get("rows"):
            jobs.append(("fig_ablation.png", lambda: F.fig_ablation(summary)))
        if summary.get("injection") and summary["injection"].get("methods"):
            jobs.append(
                ("fig_injection_snr.png", lambda: F.fig_injection(summary["injection"], by="snr"))
            )
            jobs.append(
                ("fig_injection_mag.png", lambda: F.fig_injection(summary["injection"], by="mag"))
            )
        for fname, make in jobs:
            try:
                _save(make(), out / fname, dpi)
                figs[fname.removesuffix(".png")] = fname
            except Exception as err:  # a broken figure must not lose the tables
                log.warning("figure %s failed: %s", fname, err)
    report = out / "report.md"
    atomic_write_text(report, render_markdown(summary, figs) + "\n")
    return report
