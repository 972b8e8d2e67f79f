"""SExtractor baseline: runs the real ``source-extractor`` program on a temporary FITS file.

Configuration follows He et al. (2026) Table 3 (``data/atd_dl.sex``): DETECT_TYPE CCD,
DETECT_MINAREA 2, DEBLEND_NTHRESH 32, DEBLEND_MINCONT 0.005, SEEING_FWHM 1.2,
BACK_SIZE 64, BACK_FILTERSIZE 3, BACKPHOTO_TYPE GLOBAL. The finder's ``threshold`` sets
both DETECT_THRESH and ANALYSIS_THRESH (in units of the background RMS).

Positions: ``centroid="win"`` (default) uses XWIN_IMAGE/YWIN_IMAGE (falling back to the
isophotal barycentre X_IMAGE/Y_IMAGE where the windowed fit failed); ``"iso"`` uses the
barycentre; ``"segmentation"`` re-measures an intensity-weighted centroid over each
object's pixels in SExtractor's segmentation map (the paper's Table 8 experiment), with
the same Eq. 16 recipe ATD-DL applies to its own masks: weights = background-subtracted
intensities clipped at 0 (``seg_weights="subtracted"``, default) or the raw image values
(``"image"``).
SExtractor counts pixels from 1 (FITS convention); every position is converted to the
0-based numpy convention (subtract 1).

The executable is looked up as ``$ATD_DL_SEXTRACTOR``, then ``source-extractor`` (Debian,
Ubuntu, conda-forge ``astromatic-source-extractor``) and ``sex`` (older installs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage

from atd_dl.baselines.base import (
    FLAG_BLENDED,
    FLAG_EDGE,
    FLAG_MASKED,
    FLAG_SATURATED,
    BaseFinder,
    BaselineUnavailable,
    gaussian_kernel,
    make_catalog,
    prepare_image,
    sweep,
)

__all__ = ["SExtractorFinder", "SExtractorResult", "find_sextractor", "sextractor_version"]

_NNW_DIRS = ("/usr/share/source-extractor", "/usr/share/sextractor", "/usr/local/share/sextractor")

INSTALL_HINT = (
    "SExtractor executable not found (looked for $ATD_DL_SEXTRACTOR, 'source-extractor', "
    "'sex'). Install it: Debian/Ubuntu `apt-get install source-extractor`, conda "
    "`conda install -c conda-forge astromatic-source-extractor`, macOS `brew install "
    "sextractor`; or set ATD_DL_SEXTRACTOR=/path/to/binary. The in-process 'sep' "
    "baseline needs no executable."
)


def find_sextractor(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of the SExtractor executable; raises :class:`BaselineUnavailable` if absent.

    An explicit ``binary`` or a set ``$ATD_DL_SEXTRACTOR`` must work: when it does not,
    the error names it (no silent fall-back to another SExtractor on the PATH).
    """
    chosen = binary or os.environ.get("ATD_DL_SEXTRACTOR")
    if chosen:
        path = shutil.which(str(chosen))
        if path:
            return path
        what = "binary" if binary else "$ATD_DL_SEXTRACTOR"
        raise BaselineUnavailable(
            f"{what}={chosen}: not found or not executable"
            + (
                "; fix it or unset it to use 'source-extractor' / 'sex' from the PATH"
                if not binary
                else f". {INSTALL_HINT}"
            )
        )
    for cand in ("source-extractor", "sex"):
        if not cand:
            continue
        path = shutil.which(str(cand))
        if path:
            return path
    raise BaselineUnavailable(INSTALL_HINT)


def sextractor_version(binary: str | None = None) -> str:
    """Version string reported by ``source-extractor -v`` (e.g. ``"2.25.0"``)."""
    out = subprocess.run(
        [find_sextractor(binary), "-v"], capture_output=True, text=True, check=False
    )
    words = (out.stdout + out.stderr).split()
    return words[words.index("version") + 1] if "version" in words else "unknown"


def _data_file(name: str) -> str:
    return resources.files("atd_dl.baselines").joinpath("data", name).read_text()


def _conv_text(fwhm: float) -> str:
    """SExtractor filter file for a Gaussian of ``fwhm`` px (``CONV NORM``)."""
    k = gaussian_kernel(fwhm)
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in k)
    return f"CONV NORM\n# Gaussian, FWHM = {fwhm:g} px, {k.shape[0]}x{k.shape[1]} (written by ATD-DL)\n{rows}\n"


def _find_nnw() -> Path | None:
    for folder in _NNW_DIRS:
        p = Path(folder) / "default.nnw"
        if p.is_file():
            return p
    return None


@dataclass
class SExtractorResult:
    """Everything one SExtractor run produced.

    ``catalog``: standard ATD-DL table; ``raw``: SExtractor's own table (1-based
    positions, untouched); ``segmentation``: int32 label image (object NUMBER, 0 = sky)
    and ``background``: SExtractor's background map (ADU), both only for
    ``centroid="segmentation"``, else None.
    """

    catalog: Table
    raw: Table
    segmentation: np.ndarray | None
    background: np.ndarray | None


@dataclass
class SExtractorFinder(BaseFinder):
    """SExtractor with the paper's Table 3 settings; ``threshold`` = DETECT/ANALYSIS_THRESH (σ).

    ``filter_fwhm``: FWHM (px) of the Gaussian detection filter, ``None`` for no
    filtering, ``"default"`` for SExtractor's classic 3×3 pyramid (FWHM ≈ 2 px).
    ``seeing_fwhm`` (SEEING_FWHM) only influences CLASS_STAR, which is measured when
    SExtractor's ``default.nnw`` is installed; detection does not depend on it. The
    image is written without WCS and PIXEL_SCALE = ``pixel_scale`` (default 1), so
    ``seeing_fwhm`` is effectively in pixels. ``gain`` (e-/ADU) and ``saturation`` (ADU)
    are passed to GAIN / SATUR_LEVEL; fluxes are returned in electrons when ``gain`` is
    set. ``extra_config`` adds or overrides any SExtractor keyword.
    """

    name: ClassVar[str] = "sextractor"
    SWEEP_DENSE: ClassVar[tuple[float, ...]] = tuple(sweep(0.5, 2.0, 0.1))
    SWEEP_PAPER: ClassVar[tuple[float, ...]] = tuple(sweep(0.1, 1.0, 0.1))

    threshold: float = 1.5
    minarea: int = 2
    deblend_nthresh: int = 32
    deblend_mincont: float = 0.005
    seeing_fwhm: float = 1.2
    back_size: int = 64
    back_filtersize: int = 3
    backphoto_type: str = "GLOBAL"
    detect_type: str = "CCD"
    filter_fwhm: float | str | None = "default"
    clean: bool = True
    clean_param: float = 1.0
    gain: float | None = None
    saturation: float | None = None
    pixel_scale: float = 1.0
    centroid: str = "win"
    seg_weights: str = "subtracted"
    edge: int = 3
    nthreads: int = 1
    binary: str | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.centroid not in ("win", "iso", "segmentation"):
            raise ValueError(
                f"centroid must be 'win', 'iso' or 'segmentation', got {self.centroid!r}"
            )
        if self.seg_weights not in ("image", "subtracted"):
            raise ValueError(
                f"seg_weights must be 'image' or 'subtracted', got {self.seg_weights!r}"
            )

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
    ) -> Table:
        """Detect sources; returns the standard catalog (0-based x, y)."""
        return self.extract(data, mask=mask, wcs=wcs, threshold=threshold).catalog

    def extract(
        self,
        data: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        wcs: WCS | None = None,
        threshold: float | None = None,
        keep_dir: str | os.PathLike[str] | None = None,
    ) -> SExtractorResult:
        """Run SExtractor and return catalog, raw table and check images.

        ``keep_dir``: copy the generated image, config, parameter and filter files
        there (to rerun SExtractor by hand).
        """
        thresh = self._threshold(threshold)
        binary = find_sextractor(self.binary)
        img, bad = prepare_image(data, mask, name="sextractor input")
        want_seg = self.centroid == "segmentation"
        with tempfile.TemporaryDirectory(prefix="atd_dl_sex_") as tmp:
            work = Path(tmp)
            args = self._write_inputs(work, img, bad, thresh, want_seg)
            proc = subprocess.run(
                [binary, "image.fits", *args], cwd=work, capture_output=True, text=True, check=False
            )
            cat_path = work / "catalog.fits"
            if proc.returncode != 0 or not cat_path.exists():
                msg = (proc.stderr or proc.stdout).strip().splitlines()
                tail = (
                    " | ".join(line.strip() for line in msg[-3:]) or f"exit code {proc.returncode}"
                )
                raise RuntimeError(f"SExtractor failed: {tail}")
            raw = Table.read(cat_path, hdu=1)
            seg = bkg = rms = None
            if want_seg:
                seg = fits.getdata(work / "seg.fits").astype(np.int32)
                bkg = fits.getdata(work / "back.fits").astype(np.float32)
                rms = fits.getdata(work / "back_rms.fits").astype(np.float32)
            if keep_dir is not None:
                dest = Path(keep_dir)
                dest.mkdir(parents=True, exist_ok=True)
                for p in work.iterdir():
                    shutil.copy2(p, dest / p.name)
                (dest / "command.txt").write_text(" ".join([binary, "image.fits", *args]) + "\n")
        catalog = self._catalog(raw, img, bad, seg, bkg, rms, wcs, thresh)
        return SExtractorResult(catalog=catalog, raw=raw, segmentation=seg, background=bkg)

    # ------------------------------------------------------------------ internals
    def _write_inputs(
        self,
        work: Path,
        img: np.ndarray,
        bad: np.ndarray,
        thresh: float,
        want_seg: bool,
    ) -> list[str]:
        fits.PrimaryHDU(img).writeto(work / "image.fits")
        (work / "atd_dl.sex").write_text(_data_file("atd_dl.sex"))
        params = [
            ln for ln in _data_file("default.param").splitlines() if ln and not ln.startswith("#")
        ]
        nnw = _find_nnw()
        opts: dict[str, str] = {
            "CATALOG_NAME": "catalog.fits",
            "DETECT_THRESH": f"{thresh:g}",
            "ANALYSIS_THRESH": f"{thresh:g}",
            "DETECT_TYPE": self.detect_type,
            "DETECT_MINAREA": str(int(self.minarea)),
            "DEBLEND_NTHRESH": str(int(self.deblend_nthresh)),
            "DEBLEND_MINCONT": f"{self.deblend_mincont:g}",
            "CLEAN": "Y" if self.clean else "N",
            "CLEAN_PARAM": f"{self.clean_param:g}",
            "SEEING_FWHM": f"{self.seeing_fwhm:g}",
            "PIXEL_SCALE": f"{self.pixel_scale:g}",
            "BACK_SIZE": str(int(self.back_size)),
            "BACK_FILTERSIZE": str(int(self.back_filtersize)),
            "BACKPHOTO_TYPE": self.backphoto_type,
            "GAIN": f"{self.gain:g}" if self.gain else "0.0",
            "SATUR_LEVEL": f"{self.saturation:g}" if self.saturation else "1e20",
            "NTHREADS": str(int(self.nthreads)),
        }
        if self.filter_fwhm is None:
            opts["FILTER"] = "N"
        else:
            opts["FILTER"] = "Y"
            conv = (
                _data_file("default.conv")
                if self.filter_fwhm == "default"
                else _conv_text(float(self.filter_fwhm))
            )
            (work / "filter.conv").write_text(conv)
            opts["FILTER_NAME"] = "filter.conv"
        if bad.any():
            weight = (~bad).astype(np.float32)
            fits.PrimaryHDU(weight).writeto(work / "weight.fits")
            fits.PrimaryHDU(bad.astype(np.int16)).writeto(work / "flags.fits")
            opts.update(
                WEIGHT_TYPE="MAP_WEIGHT", WEIGHT_IMAGE="weight.fits", FLAG_IMAGE="flags.fits"
            )
            params.append("IMAFLAGS_ISO")
        if nnw is not None:
            opts["STARNNW_NAME"] = str(nnw)
            params.append("CLASS_STAR")
        if want_seg:
            checks = (
                ("SEGMENTATION", "seg.fits"),
                ("BACKGROUND", "back.fits"),
                ("BACKGROUND_RMS", "back_rms.fits"),
            )
            opts["CHECKIMAGE_TYPE"] = ",".join(c[0] for c in checks)
            opts["CHECKIMAGE_NAME"] = ",".join(c[1] for c in checks)
        for key, value in self.extra_config.items():
            opts[str(key).upper()] = str(value)
        (work / "default.param").write_text("\n".join(params) + "\n")
        args = ["-c", "atd_dl.sex"]
        for key, value in opts.items():
            args += [f"-{key}", value]
        return args

    def _catalog(
        self,
        raw: Table,
        img: np.ndarray,
        bad: np.ndarray,
        seg: np.ndarray | None,
        bkg: np.ndarray | None,
        rms: np.ndarray | None,
        wcs: WCS | None,
        thresh: float,
    ) -> Table:
        n = len(raw)
        col = {
            name: np.asarray(raw[name], dtype=float) for name in raw.colnames if raw[name].ndim == 1
        }
        x_iso, y_iso = col["X_IMAGE"] - 1.0, col["Y_IMAGE"] - 1.0
        win_ok = (np.asarray(raw["FLAGS_WIN"]) == 0) & np.isfinite(col["XWIN_IMAGE"])
        x_win = np.where(win_ok, col["XWIN_IMAGE"] - 1.0, x_iso)
        y_win = np.where(win_ok, col["YWIN_IMAGE"] - 1.0, y_iso)
        x_err = np.sqrt(np.where(win_ok, col["ERRX2WIN_IMAGE"], col["ERRX2_IMAGE"]))
        y_err = np.sqrt(np.where(win_ok, col["ERRY2WIN_IMAGE"], col["ERRY2_IMAGE"]))
        area = col["ISOAREA_IMAGE"]
        circ = np.divide(
            col["B_IMAGE"], col["A_IMAGE"], out=np.full(n, np.nan), where=col["A_IMAGE"] > 0
        )
        if self.centroid == "win":
            x, y = x_win, y_win
        elif self.centroid == "iso":
            x, y = x_iso, y_iso
        else:
            assert seg is not None and bkg is not None and rms is not None
            weights = img if self.seg_weights == "image" else img - bkg
            x, y, x_err, y_err, area, circ = _segment_centroids(
                seg, weights, rms.astype(float) ** 2, bad, np.asarray(raw["NUMBER"], int)
            )
        se_flags = np.asarray(raw["FLAGS"], dtype=np.int32)
        flags = np.zeros(n, dtype=np.int32)
        flags[(se_flags & 2) != 0] |= FLAG_BLENDED
        flags[(se_flags & 4) != 0] |= FLAG_SATURATED
        flags[(se_flags & 8) != 0] |= FLAG_EDGE
        if "IMAFLAGS_ISO" in raw.colnames:
            flags[np.asarray(raw["IMAFLAGS_ISO"]) != 0] |= FLAG_MASKED
        flux, ferr = col["FLUX_AUTO"], col["FLUXERR_AUTO"]
        snr = np.divide(flux, ferr, out=np.full(n, np.nan), where=ferr > 0)
        extra: dict[str, Any] = {
            "x_win": x_win,
            "y_win": y_win,
            "x_iso": x_iso,
            "y_iso": y_iso,
            "flux_iso": col["FLUX_ISO"] * (self.gain or 1.0),
            "fwhm_image": col["FWHM_IMAGE"],
            "flux_radius": col["FLUX_RADIUS"],
            "se_number": np.asarray(raw["NUMBER"], dtype=np.int64),
            "se_flags": se_flags,
        }
        if "CLASS_STAR" in raw.colnames:
            extra["class_star"] = col["CLASS_STAR"]
        return make_catalog(
            x,
            y,
            flux=flux,
            flux_err=ferr,
            snr=snr,
            x_err=x_err,
            y_err=y_err,
            area=area,
            circularity=circ,
            peak=col["FLUX_MAX"],
            flags=flags,
            shape=img.shape,
            mask=bad,
            edge=self.edge,
            wcs=wcs,
            gain=self.gain,
            extra=extra,
            meta={"finder": self.name, "threshold": thresh, "centroid": self.centroid},
        )

    def params(self) -> dict[str, Any]:
        out = super().params()
        out["extra_config"] = dict(self.extra_config)
        return out


def _segment_centroids(
    seg: np.ndarray, weights: np.ndarray, variance: np.ndarray, bad: np.ndarray, numbers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intensity-weighted centroid (paper Eq. 16) of each segment, as ATD-DL measures its own.

    Weights are clipped at zero and masked pixels get none; a segment without positive
    weight falls back to its geometric centre. Errors propagate ``variance`` (ADU²):
    ``var(x_c) = Σ (x − x_c)² var_i / (Σ w)²``. Area is the pixel count; circularity
    4πA/P² uses :func:`atd_dl.detect.deblend.mask_circularity` (half-pixel-dilated
    outline), the definition of ATD-DL's own catalog. Returns arrays aligned with
    ``numbers`` (SExtractor NUMBER = segment value).
    """
    from atd_dl.detect.deblend import mask_circularity

    m = int(max(seg.max(), numbers.max() if len(numbers) else 0)) + 1
    fg = np.flatnonzero(seg)
    lab = seg.ravel()[fg]
    yy, xx = np.divmod(fg, seg.shape[1])
    w = np.where(bad.ravel()[fg], 0.0, np.clip(weights.ravel()[fg].astype(float), 0.0, None))
    area = np.bincount(lab, minlength=m).astype(float)
    sw = np.bincount(lab, weights=w, minlength=m)
    ok = sw > 0
    gx = np.bincount(lab, weights=xx, minlength=m) / np.maximum(area, 1.0)
    gy = np.bincount(lab, weights=yy, minlength=m) / np.maximum(area, 1.0)
    safe = np.where(ok, sw, 1.0)
    xc = np.where(ok, np.bincount(lab, weights=w * xx, minlength=m) / safe, gx)
    yc = np.where(ok, np.bincount(lab, weights=w * yy, minlength=m) / safe, gy)
    var = variance.ravel()[fg]
    vx = np.bincount(lab, weights=(xx - xc[lab]) ** 2 * var, minlength=m)
    vy = np.bincount(lab, weights=(yy - yc[lab]) ** 2 * var, minlength=m)
    x_err = np.where(ok, np.sqrt(vx) / safe, np.sqrt(1.0 / 12.0))
    y_err = np.where(ok, np.sqrt(vy) / safe, np.sqrt(1.0 / 12.0))
    circ = np.full(m, np.nan)
    # loop over objects (small cut-outs), not pixels
    for label, sl in enumerate(ndimage.find_objects(seg), start=1):
        if sl is not None:
            circ[label] = mask_circularity(seg[sl] == label)
    idx = np.asarray(numbers, dtype=np.intp)
    return xc[idx], yc[idx], x_err[idx], y_err[idx], area[idx], circ[idx]
