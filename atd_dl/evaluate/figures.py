"""Figures of the benchmark report, drawn from a ``summary.json`` dict (paper Figs. 11–13).

Every function takes the summary dict written by :func:`atd_dl.evaluate.report.write_report`
and returns a matplotlib ``Figure`` built without pyplot (no global state, works under any
backend; save it with ``fig.savefig(path)``), so the notebook
``notebooks/paper_figures.ipynb`` and the report share one implementation.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "fig_ablation",
    "fig_centroid_residuals",
    "fig_injection",
    "fig_metrics_vs_operating_point",
    "fig_pr_curves",
    "fig_snr_heatmap",
    "fig_top3",
    "method_order",
]

_COLORS = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def method_order(summary: dict[str, Any]) -> list[str]:
    """Method names with models first, then baselines, in insertion order."""
    methods = summary.get("methods", {})
    models = [k for k, v in methods.items() if v.get("kind") == "model"]
    return models + [k for k in methods if k not in models]


def _valid(summary: dict[str, Any]) -> list[str]:
    return [k for k in method_order(summary) if summary["methods"][k].get("sweep", {}).get("paper")]


def _label(m: dict[str, Any]) -> str:
    return str(m.get("label") or m.get("name"))


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def fig_metrics_vs_operating_point(summary: dict[str, Any], rule: str = "paper") -> Figure:
    """Precision, recall and F1 against the operating point, plus P–R (paper Fig. 11).

    The x axis is the sweep index ordered from the loosest to the strictest setting, so
    methods with different parameters share one axis.
    """
    fig = Figure(figsize=(16, 3.8))
    axes = fig.subplots(1, 4)
    for i, name in enumerate(_valid(summary)):
        m = summary["methods"][name]
        sw = m["sweep"][rule]
        order = np.argsort(m["values"])
        if not m.get("higher_is_stricter", True):
            order = order[::-1]
        idx = np.arange(len(order))
        for ax, key in zip(axes[:3], ("precision", "recall", "f1")):
            ax.plot(idx, np.asarray(sw[key])[order], "o-", ms=3, color=_color(i), label=_label(m))
        axes[3].plot(sw["recall"], sw["precision"], "o-", ms=3, color=_color(i), label=_label(m))
    for ax, title in zip(axes, ("Precision", "Recall", "F1", "Precision–recall")):
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[:3]:
        ax.set_xlabel("operating point (loose → strict)")
    axes[3].set_xlabel("recall")
    axes[3].set_ylabel("precision")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Metrics vs operating point ({rule} rule)")
    fig.tight_layout()
    return fig


def fig_pr_curves(summary: dict[str, Any]) -> Figure:
    """Precision–recall curves, paper rule (solid) and strict rule (dashed)."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    target = summary.get("settings", {}).get("target_precision")
    for i, name in enumerate(_valid(summary)):
        m = summary["methods"][name]
        for rule, ls in (("paper", "-"), ("strict", "--")):
            sw = m["sweep"].get(rule)
            if not sw:
                continue
            o = np.argsort(sw["recall"])
            ax.plot(
                np.asarray(sw["recall"])[o],
                np.asarray(sw["precision"])[o],
                ls,
                marker=".",
                color=_color(i),
                label=f"{_label(m)} ({rule})",
            )
    if target:
        ax.axhline(target, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_top3(summary: dict[str, Any], rule: str = "paper") -> Figure:
    """Mean ± std of P, R, F1 over each method's three best-F1 points (paper Fig. 12)."""
    names = _valid(summary)
    fig = Figure(figsize=(max(5.0, 1.4 * len(names) + 2), 4))
    ax = fig.subplots()
    keys = ("precision", "recall", "f1")
    width = 0.8 / len(keys)
    x = np.arange(len(names))
    for j, key in enumerate(keys):
        means = [summary["methods"][n]["top3"][rule][key] for n in names]
        stds = [summary["methods"][n]["top3"][rule][f"{key}_std"] for n in names]
        bars = ax.bar(x + (j - 1) * width, means, width, yerr=stds, capsize=3, label=key)
        for b, v in zip(bars, means):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center", fontsize=6)
    ax.set_xticks(x, [_label(summary["methods"][n]) for n in names])
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Mean of the top-3 F1 points ({rule} rule)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_snr_heatmap(summary: dict[str, Any], rule: str = "paper", *, top3: bool = True) -> Figure:
    """Recall per SNR bin for each method (paper Fig. 13); top-3 mean or best point."""
    names = _valid(summary)
    key = "snr_recall_top3" if top3 else "snr_recall"
    labels: list[str] = []
    rows = []
    for n in names:
        d = summary["methods"][n][key][rule]
        if not labels:
            labels = list(d.keys())
        rows.append([(v if top3 else v["recall"]) for v in (d[lab] for lab in labels)])
    data = np.asarray(rows, dtype=float) if rows else np.zeros((0, 0))
    fig = Figure(figsize=(1.0 * max(len(labels), 3) + 2, 0.6 * max(len(names), 1) + 1.5))
    ax = fig.subplots()
    if data.size:
        im = ax.imshow(np.ma.masked_invalid(data), cmap="Reds", vmin=0, vmax=1, aspect="auto")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = data[i, j]
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if v > 0.6 else "black",
                    )
        fig.colorbar(im, ax=ax, label="recall")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(names)), [_label(summary["methods"][n]) for n in names])
    ref = summary.get("reference")
    ax.set_xlabel("3×3-aperture SNR bin" if ref == "catalog" else "true SNR bin")
    ax.set_title(f"Recall vs SNR ({'top-3 mean' if top3 else 'best F1'}, {rule} rule)")
    fig.tight_layout()
    return fig


def fig_centroid_residuals(summary: dict[str, Any], *, lim: float = 2.0) -> Figure:
    """Centroid residuals (detection − reference) per method: scatter + histograms."""
    names = [n for n in _valid(summary) if summary["methods"][n].get("residuals", {}).get("dx")]
    ncol = max(len(names), 1)
    fig = Figure(figsize=(3.2 * ncol, 6.0))
    axes = fig.subplots(2, ncol, squeeze=False)
    bins = np.linspace(-lim, lim, 41)
    for j, n in enumerate(names):
        m = summary["methods"][n]
        dx = np.asarray(m["residuals"]["dx"], float)
        dy = np.asarray(m["residuals"]["dy"], float)
        ast = m.get("astrometry", {}).get("all", {})
        ax = axes[0, j]
        ax.scatter(dx, dy, s=2, alpha=0.3, color=_color(j))
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(f"{_label(m)}\nRMS {ast.get('rms_total', float('nan')):.3f} px", fontsize=9)
        ax.set_xlabel("dx (px)")
        ax.set_ylabel("dy (px)")
        h = axes[1, j]
        h.hist(dx - np.mean(dx) if dx.size else dx, bins=bins, histtype="step", label="x")
        h.hist(dy - np.mean(dy) if dy.size else dy, bins=bins, histtype="step", label="y")
        h.set_xlabel("residual − mean (px)")
        h.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_ablation(summary: dict[str, Any]) -> Figure:
    """Faint (2 < SNR < 5) TP counts at matched precision, base vs enhanced (Table 7)."""
    ab = summary.get("ablation") or {}
    rows = ab.get("rows", [])
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["base_faint_tp"] for r in rows], 0.4, label=ab.get("base", "base"))
    ax.bar(
        x + 0.2, [r["enhanced_faint_tp"] for r in rows], 0.4, label=ab.get("enhanced", "enhanced")
    )
    for i, r in enumerate(rows):
        ax.text(
            i,
            max(r["base_faint_tp"], r["enhanced_faint_tp"]),
            "n/a" if r.get("lift_pct") is None else f"{r['lift_pct']:+.1f}%",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(x, [f"P≈{100 * (r['enhanced_precision'] or 0):.2f}%" for r in rows], fontsize=7)
    ax.set_ylabel("faint TP (2 < SNR < 5)")
    ax.set_title("Ablation at matched precision")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_injection(injection: dict[str, Any], *, by: str = "snr") -> Figure:
    """Completeness of injected stars vs SNR (``by="snr"``) or magnitude (``"mag"``)."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for i, (name, res) in enumerate(injection.get("methods", {}).items()):
        tab = res.get(f"by_{by}", [])
        if not tab:
            continue
        centers = [
            0.5 * (r["lo"] + r["hi"]) if np.isfinite(r["hi"]) else r["lo"] + 0.5 for r in tab
        ]
        comp = [r["completeness"] for r in tab]
        ax.plot(centers, comp, "o-", color=_color(i), label=name)
    ax.set_xlabel("injected SNR" if by == "snr" else "injected magnitude")
    ax.set_ylabel("completeness")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Injection–recovery")
    fig.tight_layout()
    return fig
