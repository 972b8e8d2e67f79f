"""Time the visual-binary classifier: stamp simulation, stamp cutting, training and inference.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_binaries.py [--threads 1] [--repeat 3]
                                                          [--device cpu] [--json out.json]

Measures (best of ``--repeat``, wall and CPU seconds):
- ``simulate``: 500 simulated systems (1000 stamps, 32 px, default survey profiles);
- ``cut``: 10 000 stamps cut + normalised from a 2048² frame at zoom 1 and zoom 0.4;
- ``train_step``: stamps/s of one AdamW step, batch 128, for widths 16 (shipped) and 64
  (ResNet34 proper);
- ``infer``: stamps/s of the shipped model (or width 16 untrained) on 4096 stamps, and
  ``classify_detections`` on 2000 detections of a 2048² frame.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import best_of


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import torch
    from astropy.table import Table

    from atd_dl.binaries.classify import classify_detections, predict_binary_proba
    from atd_dl.binaries.model import BinaryResNet, default_binary_model_dir, load_binary_model
    from atd_dl.binaries.stamps import StampGeometry, cut_stamps, normalize_stamps
    from atd_dl.binaries.synth import SynthConfig, simulate_binary_stamps

    torch.set_num_threads(args.threads)
    res: dict[str, dict] = {}
    rng = np.random.default_rng(0)

    _, w, c = best_of(lambda: simulate_binary_stamps(SynthConfig(n_sources=500)), args.repeat)
    res["simulate_1000_stamps"] = {"wall_s": w, "cpu_s": c}

    frame = rng.normal(100.0, 5.0, (2048, 2048)).astype(np.float32)
    xs, ys = rng.uniform(0, 2047, 10_000), rng.uniform(0, 2047, 10_000)
    for zoom in (1.0, 0.4):
        _, w, c = best_of(
            lambda z=zoom: normalize_stamps(cut_stamps(frame, xs, ys, 32, zoom=z)[0]), args.repeat
        )
        res[f"cut_10000_zoom{zoom}"] = {"wall_s": w, "cpu_s": c, "stamps_per_s": 10_000 / w}

    dev = torch.device(args.device)
    for width in (16, 64):
        net = BinaryResNet(1, width=width, extra_convs=1 if width == 16 else 2).to(dev)
        opt = torch.optim.AdamW(net.parameters())
        x = torch.randn(128, 1, 32, 32, device=dev)
        y = torch.randint(0, 2, (128,), device=dev)

        def step(net=net, opt=opt, x=x, y=y):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        step()
        _, w, c = best_of(step, args.repeat)
        res[f"train_step_width{width}"] = {"wall_s": w, "stamps_per_s": 128 / w}

    if (default_binary_model_dir() / "model.safetensors").is_file():
        net, meta = load_binary_model(device=dev)
    else:
        net = BinaryResNet(1, width=16, extra_convs=1).eval()
        meta = {"input": StampGeometry().to_dict(), "threshold": 0.5}
    stamps = rng.normal(size=(4096, 1, 32, 32)).astype(np.float32)
    _, w, c = best_of(lambda: predict_binary_proba(net, stamps, device=dev), args.repeat)
    res["infer_4096"] = {"wall_s": w, "stamps_per_s": 4096 / w}
    cat = Table({"x": xs[:2000], "y": ys[:2000]})
    _, w, c = best_of(
        lambda: classify_detections(frame, cat, net, meta, pixel_scale=0.25, device=dev),
        args.repeat,
    )
    res["classify_detections_2000"] = {"wall_s": w, "cpu_s": c}

    for k, v in res.items():
        print(f"{k:28s} " + "  ".join(f"{kk}={vv:.3g}" for kk, vv in v.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "device": args.device, **res}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
