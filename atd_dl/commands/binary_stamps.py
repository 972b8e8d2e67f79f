"""``atd-dl binary-stamps``: simulate a labelled visual-binary stamp set."""

from __future__ import annotations

import argparse
from pathlib import Path

from atd_dl.commands._validate import (
    float_in,
    int_at_least,
    positive_float,
    writable_out_dir,
)
from atd_dl.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``binary-stamps`` sub-command."""
    p = subparsers.add_parser(
        "binary-stamps",
        help="simulate labelled single / binary stamps",
        description=(
            "Simulate labelled stamps for the visual-binary classifier: singles and pairs "
            "within the radius (resolved or not) at several survey pixel scales and seeings, "
            "with noise, sky and unrelated neighbours. Writes .npz shards, stamps.csv "
            "(truth + split) and stampset.json; see docs/binaries.md."
        ),
    )
    p.add_argument("out", type=writable_out_dir, help="output folder")
    p.add_argument(
        "--n-sources", type=int_at_least(1), default=3000, help="simulated systems (default 3000)"
    )
    p.add_argument(
        "--views", type=int_at_least(1), default=2, help="survey views per system (default 2)"
    )
    p.add_argument(
        "--size", type=int_at_least(8), default=32, help="stamp side in px, >= 8 (default 32)"
    )
    p.add_argument("--stamp-arcsec", type=positive_float, default=8.0, help="stamp side on the sky")
    p.add_argument("--radius", type=positive_float, default=2.5, help="binary radius in arcsec")
    p.add_argument("--bands", type=int_at_least(1), default=1, help="stacked bands (channels)")
    p.add_argument(
        "--profiles",
        default="ps1_like,sdss_like,decam_like,hst_like,lco_like,poor_seeing",
        help="survey presets, comma separated (also twomass_like, ztf_like)",
    )
    p.add_argument("--binary-fraction", type=float_in(0.0, 1.0), default=0.5, help="in [0, 1]")
    p.add_argument(
        "--sep-min", type=positive_float, default=0.3, help="smallest separation (arcsec)"
    )
    p.add_argument(
        "--q-min",
        type=float_in(0.0, 1.0, lo_open=True),
        default=0.1,
        help="smallest companion flux ratio, in (0, 1]",
    )
    p.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (default 0)")
    p.add_argument("--no-preview", action="store_true", help="skip preview.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate and write the stamp set; exit code 0."""
    from atd_dl.binaries.splits import group_split
    from atd_dl.binaries.stamps import StampGeometry, write_stamp_set
    from atd_dl.binaries.synth import SynthConfig, profiles_from_names, simulate_binary_stamps

    if args.radius >= args.stamp_arcsec / 2:
        raise InputError(None, f"--radius {args.radius} must be < half of --stamp-arcsec")
    try:
        profiles = profiles_from_names([s.strip() for s in args.profiles.split(",") if s.strip()])
    except KeyError as err:
        raise InputError(None, f"--profiles: {err.args[0]}") from None
    geo = StampGeometry(args.size, args.stamp_arcsec, args.radius, args.bands)
    cfg = SynthConfig(
        n_sources=args.n_sources,
        binary_fraction=args.binary_fraction,
        views_per_source=args.views,
        profiles=profiles,
        geometry=geo,
        sep_arcsec=(args.sep_min, None),
        flux_ratio=(args.q_min, 1.0),
        seed=args.seed,
    )
    stamps = simulate_binary_stamps(cfg, progress=True)
    stamps.table["split"] = group_split(stamps.labels, stamps.groups, seed=args.seed)
    write_stamp_set(args.out, stamps)
    if not args.no_preview:
        _preview(stamps, args.out / "preview.png")
    n_bin = int((stamps.labels == 1).sum())
    print(f"binary-stamps: {len(stamps)} stamps ({n_bin} binary) -> {args.out}")
    return 0


def _preview(stamps, path: Path, n: int = 32) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atd_dl.io.atomic import atomic_output

    n = min(n, len(stamps))
    cols = 8
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(stamps.images[i].mean(axis=0), origin="lower", cmap="gray")
        t = stamps.table
        txt = "binary" if stamps.labels[i] else "single"
        if stamps.labels[i]:
            txt += f' {t["sep_arcsec"][i]:.1f}" q{t["flux_ratio"][i]:.2f}'
        ax.set_title(f"{txt}\n{t['survey'][i]}", fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
