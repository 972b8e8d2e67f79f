"""Classification report (per-class precision / recall / F1, accuracy, macro and weighted
averages, as in Gezer et al. Table 2), confusion matrix, binned recall, and their files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atd_dl.binaries.stamps import CLASS_NAMES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Counts ``[true, predicted]`` (int64 ``[n_classes, n_classes]``)."""
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(yt * n_classes + yp, minlength=n_classes**2).reshape(n_classes, n_classes)


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str] = CLASS_NAMES
) -> dict[str, Any]:
    """Per-class ``precision, recall, f1, support`` plus ``accuracy``, ``macro avg`` and
    ``weighted avg`` (same definitions as scikit-learn; undefined ratios are 0.0)."""
    n = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n)
    tp = np.diag(cm).astype(float)
    pred = cm.sum(axis=0).astype(float)
    sup = cm.sum(axis=1).astype(float)
    prec = np.divide(tp, pred, out=np.zeros(n), where=pred > 0)
    rec = np.divide(tp, sup, out=np.zeros(n), where=sup > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(n), where=(prec + rec) > 0)
    total = sup.sum()
    out: dict[str, Any] = {}
    for i, name in enumerate(class_names):
        out[name] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(sup[i]),
        }
    out["accuracy"] = float(tp.sum() / total) if total else 0.0
    out["macro avg"] = {
        "precision": float(prec.mean()),
        "recall": float(rec.mean()),
        "f1": float(f1.mean()),
        "support": int(total),
    }
    w = sup / total if total else np.zeros(n)
    out["weighted avg"] = {
        "precision": float((prec * w).sum()),
        "recall": float((rec * w).sum()),
        "f1": float((f1 * w).sum()),
        "support": int(total),
    }
    out["confusion_matrix"] = cm.tolist()
    return out


def format_report(report: dict[str, Any], class_names: Sequence[str] = CLASS_NAMES) -> str:
    """Markdown table of a :func:`classification_report` result (Table 2 layout)."""
    lines = [
        "| class | precision | recall | f1-score | support |",
        "|---|---|---|---|---|",
    ]
    for i, name in enumerate(class_names):
        r = report[name]
        lines.append(
            f"| {i} ({name}) | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
        )
    tot = report["macro avg"]["support"]
    lines.append(f"| accuracy | | | {report['accuracy']:.3f} | {tot} |")
    for key in ("macro avg", "weighted avg"):
        r = report[key]
        lines.append(
            f"| {key} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
        )
    return "\n".join(lines) + "\n"


def binned_accuracy(
    values: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, edges: Sequence[float]
) -> list[dict[str, Any]]:
    """Fraction of correct predictions in bins of ``values`` (NaN values skipped):
    rows ``{lo, hi, n, accuracy}``; e.g. binary recall per separation/FWHM bin."""
    v = np.asarray(values, dtype=float)
    ok = np.asarray(y_true) == np.asarray(y_pred)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = np.isfinite(v) & (v >= lo) & (v < hi)
        n = int(sel.sum())
        rows.append({"lo": lo, "hi": hi, "n": n, "accuracy": float(ok[sel].mean()) if n else None})
    return rows


def plot_confusion_matrix(
    cm: np.ndarray, path: str | Path, class_names: Sequence[str] = CLASS_NAMES, title: str = ""
) -> Path:
    """Save the confusion matrix (counts and row fractions) as a PNG (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atd_dl.io.atomic import atomic_output

    cm = np.asarray(cm)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if frac[i, j] > 0.5 else "black"
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.2f}", ha="center", va="center", color=colour)
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "visual-binary classifier")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)


def write_classification_report(
    folder: str | Path,
    y_true: np.ndarray,
    p_binary: np.ndarray,
    *,
    threshold: float = 0.5,
    table: dict[str, np.ndarray] | None = None,
    title: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and ``confusion.png`` for stamps with known
    labels (``y_true`` in {0, 1}; others ignored). With simulation truth in ``table``
    (``sep_fwhm``, ``flux_ratio``, ``snr``, ``survey``) the binned accuracies are added.
    Returns the report dict."""
    from atd_dl.io.atomic import atomic_write_text

    folder = Path(folder)
    y_true = np.asarray(y_true)
    p = np.asarray(p_binary, dtype=float)
    known = y_true >= 0
    yt, yp = y_true[known], (p[known] >= threshold).astype(np.int64)
    rep = classification_report(yt, yp)
    rep["threshold"] = float(threshold)
    rep["n"] = int(known.sum())
    if table is not None:
        tab = {k: np.asarray(v)[known] for k, v in table.items()}
        by: dict[str, Any] = {}
        if "sep_fwhm" in tab:
            by["binary_recall_by_sep_fwhm"] = binned_accuracy(
                tab["sep_fwhm"], yt, yp, [0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 100.0]
            )
        if "flux_ratio" in tab:
            by["binary_recall_by_flux_ratio"] = binned_accuracy(
                tab["flux_ratio"], yt, yp, [0.0, 0.2, 0.4, 0.7, 1.01]
            )
        if "snr" in tab:
            by["accuracy_by_snr"] = binned_accuracy(
                tab["snr"].astype(float), yt, yp, [0, 30, 60, 120, 250, 1e9]
            )
        if "survey" in tab:
            by["accuracy_by_survey"] = {
                str(s): float((yt == yp)[tab["survey"] == s].mean())
                for s in sorted(set(tab["survey"].tolist()))
            }
        if "n_neighbours" in tab:
            single = yt == 0
            nb = tab["n_neighbours"].astype(float)
            by["single_accuracy_with_neighbours"] = (
                float((yp[single & (nb > 0)] == 0).mean()) if (single & (nb > 0)).any() else None
            )
        rep["breakdown"] = by
    if extra:
        rep.update(extra)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "report.json", json.dumps(rep, indent=2) + "\n")
    md = f"# {title or 'Visual-binary classification report'}\n\n"
    md += f"{rep['n']} stamps, threshold p_binary >= {threshold:.3f}\n\n" + format_report(rep)
    md += "\nPaper (Gezer et al., Table 2): precision / recall / F1 = 0.97 (real stamps, third group).\n"
    titles = {
        "binary_recall_by_sep_fwhm": ("Binary recall by separation / FWHM", "sep/FWHM", "recall"),
        "binary_recall_by_flux_ratio": ("Binary recall by flux ratio", "flux ratio", "recall"),
        "accuracy_by_snr": ("Accuracy by primary SNR", "SNR", "accuracy"),
    }
    for key, (head, col, what) in titles.items():
        rows = rep.get("breakdown", {}).get(key)
        if not rows:
            continue
        md += f"\n## {head}\n\n| {col} | n | {what} |\n|---|---|---|\n"
        for r in rows:
            acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            md += f"| {r['lo']:g}–{r['hi']:g} | {r['n']} | {acc} |\n"
    by_survey = rep.get("breakdown", {}).get("accuracy_by_survey")
    if by_survey:
        md += "\n## Accuracy by survey profile\n\n| survey | accuracy |\n|---|---|\n"
        md += "".join(f"| {k} | {v:.3f} |\n" for k, v in by_survey.items())
    atomic_write_text(folder / "report.md", md)
    plot_confusion_matrix(
        np.asarray(rep["confusion_matrix"]), folder / "confusion.png", title=title
    )
    return rep
