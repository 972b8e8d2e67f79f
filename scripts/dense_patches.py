"""Write domain-randomised training patches drawn from a narrower PSF-width and density range.

The randomised generator draws FWHM log-uniform in 1-6 px and density log-uniform in
30-40,000 stars per 10^6 px, so undersampled crowded fields (FWHM 1-2 px, thousands of
stars per 10^6 px, the paper camera's regime) are ~6 % of its patches. This script writes
extra patches from that corner (everything else drawn as usual: noise regime, defects,
galaxies, nebulosity) for a fine-tuning mix; files are named like ``atd-dl simulate
--patches`` writes them (``patch_<seed>_<index>.npz``), so the same data module reads them.

    python scripts/dense_patches.py --out data/random/train --n 3000 --seed 106
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from atd_dl.sim.randomized import patch_path, training_sample, write_patch


def corner_draw(seed: int, index: int, fwhm: tuple[float, float], density: tuple[float, float]):
    """FWHM (px) and density (stars with optimal SNR >= 3 per 10^6 px), log-uniform."""
    rng = np.random.default_rng([seed, index, 31337])
    lo, hi = np.log(fwhm)
    dlo, dhi = np.log(density)
    return float(np.exp(rng.uniform(lo, hi))), float(np.exp(rng.uniform(dlo, dhi)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--fwhm", type=float, nargs=2, default=(1.0, 2.2))
    ap.add_argument("--density", type=float, nargs=2, default=(800.0, 25000.0))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for index in range(args.n):
        path = patch_path(args.out, args.seed, index)
        if path.exists():
            continue
        fw, dens = corner_draw(args.seed, index, tuple(args.fwhm), tuple(args.density))
        write_patch(path, training_sample(args.seed, index, 256, fwhm=fw, density=dens))
    print(f"{args.n} patches in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
