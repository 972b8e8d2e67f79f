"""Shared inputs for the detection tests: synthetic stars, simulated frames, oracle maps.

Everything is real and deterministic: stars are pixel-integrated Moffat profiles with
Poisson + read noise, simulated frames come from :func:`atd_dl.sim.simulate_field`, and
the "network" for pipeline tests is a fixed matched filter (a real ``nn.Module``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

SKY_E = 20.0
READ_E = 3.5
RMS_E = float(np.sqrt(SKY_E + READ_E**2))


def moffat_image(
    shape: tuple[int, int],
    xs: np.ndarray | list[float],
    ys: np.ndarray | list[float],
    fluxes: np.ndarray | list[float],
    *,
    fwhm: float = 1.5,
    beta: float = 3.0,
    oversample: int = 5,
    radius: int = 15,
) -> np.ndarray:
    """Noiseless image (electrons) of pixel-integrated Moffat stars at 0-based ``(x, y)``.

    Each star is rendered in a ``(2 radius + 1)^2`` box (``oversample^2`` samples a pixel).
    """
    ny, nx = shape
    img = np.zeros(shape)
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    for x0, y0, f in zip(np.atleast_1d(xs), np.atleast_1d(ys), np.atleast_1d(fluxes)):
        xa, xb = max(int(round(x0)) - radius, 0), min(int(round(x0)) + radius + 1, nx)
        ya, yb = max(int(round(y0)) - radius, 0), min(int(round(y0)) + radius + 1, ny)
        if xa >= xb or ya >= yb:
            continue
        xx = (np.arange(xa, xb)[:, None] + sub[None, :]).ravel()
        yy = (np.arange(ya, yb)[:, None] + sub[None, :]).ravel()
        r2 = (xx[None, :] - x0) ** 2 + (yy[:, None] - y0) ** 2
        p = f * (beta - 1.0) / (np.pi * alpha**2) * (1.0 + r2 / alpha**2) ** (-beta)
        img[ya:yb, xa:xb] += p.reshape(yb - ya, oversample, xb - xa, oversample).mean(axis=(1, 3))
    return img


def noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Background-subtracted noisy version (Poisson sky + source, Gaussian read noise)."""
    return (
        rng.poisson(image + SKY_E).astype(np.float64) - SKY_E + rng.normal(0.0, READ_E, image.shape)
    ).astype(np.float32)


def disc_map(shape: tuple[int, int], xs, ys, radius: float = 1.6) -> np.ndarray:
    """Oracle probability map: 1 inside discs of ``radius`` px at ``(x, y)``, else 0."""
    ny, nx = shape
    prob = np.zeros(shape, dtype=np.float32)
    k = int(np.ceil(radius)) + 1
    off = np.arange(-k, k + 1)
    for x, y in zip(np.atleast_1d(xs), np.atleast_1d(ys)):
        xi, yi = int(round(x)), int(round(y))
        X = xi + off[None, :]
        Y = yi + off[:, None]
        inside = ((X - x) ** 2 + (Y - y) ** 2 <= radius**2) & (X >= 0) & (X < nx)
        inside &= (Y >= 0) & (Y < ny)
        prob[np.broadcast_to(Y, inside.shape)[inside], np.broadcast_to(X, inside.shape)[inside]] = 1
    return prob


def calibrated_sim(sim) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_e, rms_e, saturated)`` of a :class:`SimulatedField` (bias, dark, flat applied)."""
    from atd_dl.prep.enhance import enhance_frame

    raw = sim.image.astype(np.float32)
    sat = raw >= sim.config.saturate_adu
    cal = (raw - sim.bias - sim.dark) / sim.flat
    enh = enhance_frame(cal, sat)
    g = np.float32(sim.config.gain_e_per_adu)
    return enh.subtracted * g, enh.background_rms * g, sat


class MatchedFilterNet(nn.Module):
    """Deterministic detector: Gaussian matched filter of the stretched image -> 2-class logits.

    ``logit_1 - logit_0 = gain * (filtered - level)``: a real local network (5x5 conv), so
    tiled prediction can be compared with whole-frame prediction pixel for pixel.
    """

    def __init__(self, level: float = 0.55, gain: float = 40.0, sigma: float = 0.9):
        super().__init__()
        g = np.arange(-2, 3)
        k = np.exp(-(g[:, None] ** 2 + g[None, :] ** 2) / (2 * sigma**2))
        k /= k.sum()
        self.conv = nn.Conv2d(1, 1, 5, padding=2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(k, dtype=torch.float32)[None, None])
        self.level = level
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gain * (self.conv(x[:, :1]) - self.level)
        return torch.cat([torch.zeros_like(s), s], dim=1)


MATCHED_META = {"name": "matched_filter", "kwargs": {"in_channels": 1}, "threshold": 0.5}


def tiny_model_folder(path: Path, threshold: float = 0.5) -> Path:
    """A real (untrained) base_width-4 ATD U-Net saved as a model folder."""
    from atd_dl.models.model_folder import save_model_folder
    from atd_dl.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("atd_unet", base_width=4)
    return save_model_folder(path, model, threshold=threshold)
