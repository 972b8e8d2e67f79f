"""Is a frame inside what the model was trained on? One-line warnings when it is not.

The model folder states its training domain: ``config.json`` ``"domain"`` (written for the
generalist model: FWHM range in px and the largest source density per 10^6 px) or, for
models trained on an ``atd-dl prep`` dataset, its ``fingerprint.json`` (PSF FWHM of the
training frames and the labelled sources per frame). :func:`domain_warnings` compares a
frame's measured FWHM and detected source density with it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["training_domain", "domain_warnings"]


def training_domain(meta: dict[str, Any]) -> dict[str, Any] | None:
    """``{"fwhm_px": [lo, hi], "max_per_mpx": n}`` of a model's meta, or None when unknown."""
    config = meta.get("config") or {}
    if isinstance(config.get("domain"), dict):
        return dict(config["domain"])
    fp = meta.get("fingerprint") or {}
    psf = fp.get("psf_fwhm_px") or {}
    if not psf:
        return None
    lo, hi = (
        float(psf.get("min", psf.get("median", 0))),
        float(psf.get("max", psf.get("median", 0))),
    )
    dom: dict[str, Any] = {"fwhm_px": [0.75 * lo, 1.3 * hi]}
    frames = fp.get("frames") or []
    if frames:
        dens = [
            f["n_kept"] / (f["shape"][0] * f["shape"][1] / 1e6)
            for f in frames
            if f.get("n_kept") and f.get("shape")
        ]
        if dens:
            dom["max_per_mpx"] = 2.0 * max(dens)
            dom["min_per_mpx"] = 0.3 * min(dens)
    return dom


def domain_warnings(
    meta: dict[str, Any],
    fwhm_px: float | None,
    fwhm_source: str,
    n_sources: int,
    shape: tuple[int, int],
    name: str = "frame",
) -> list[str]:
    """Warnings for a frame whose FWHM or source density lies outside the model's domain."""
    dom = training_domain(meta)
    if not dom:
        return []
    out = []
    model = meta.get("name", "model")
    lo, hi = dom.get("fwhm_px", [0.0, float("inf")])
    if fwhm_px is not None and fwhm_source != "default" and not lo <= fwhm_px <= hi:
        out.append(
            f"{name}: FWHM {fwhm_px:.2f} px is outside the {model} training range "
            f"{lo:.2f}-{hi:.2f} px; detections may be unreliable (rebin the frame or fine-tune)"
        )
    per_mpx = n_sources / max(shape[0] * shape[1] / 1e6, 1e-9)
    if "max_per_mpx" in dom and per_mpx > dom["max_per_mpx"]:
        out.append(
            f"{name}: {per_mpx:.0f} sources per 10^6 px exceeds the {model} training density "
            f"(<= {dom['max_per_mpx']:.0f}); crowding may merge sources"
        )
    if "min_per_mpx" in dom and per_mpx < dom["min_per_mpx"] and "fwhm_px" in dom:
        out.append(
            f"{name}: {per_mpx:.0f} sources per 10^6 px is far below the {model} training "
            f"density (>= {dom['min_per_mpx']:.0f}); false alarms may dominate"
        )
    return out
