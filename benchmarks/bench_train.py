"""Training throughput and peak memory of the registered networks (+ a params/FLOPs table).

Each (model, width) runs in a fresh subprocess so its peak memory is its own:
forward + CE/Dice loss + backward + Adam step on random patches with a few
random "stars" in the mask. Reported: seconds per step, patches per second, peak
memory (CPU: peak resident set of the process, and its growth over the idle
baseline; CUDA: ``torch.cuda.max_memory_allocated``).

    python benchmarks/bench_train.py                       # all models, width 64, 256², CPU
    python benchmarks/bench_train.py --models atd_unet --widths 16 32 64 --size 256 --batch 4
    python benchmarks/bench_train.py --device cuda --size 512 --batch 8 --steps 20
    python benchmarks/bench_train.py --table-only          # params / GFLOPs per 512² input
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(args: argparse.Namespace) -> None:
    import torch

    from atd_dl.losses import CEDiceLoss
    from atd_dl.models import build_model
    from atd_dl.models.flops import count_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kw = {} if args.width is None else {"base_width": args.width}
    net = build_model(args.model, **kw).to(device).train()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = CEDiceLoss()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, generator=g)
    y = (torch.rand(args.batch, 1, args.size, args.size, generator=g) > 0.99).float()
    x, y = x.to(device), y.to(device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(x)
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    cpu = (time.process_time() - c0) / args.steps
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "model": args.model,
        "width": net.model_spec["kwargs"]["base_width"],
        "params": count_parameters(net),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "size": args.size,
        "batch": args.batch,
        "s_per_step": dt,
        # CPU seconds of this process per step: on a busy machine, cpu_s / threads estimates
        # the step time the same threads would take on an idle one
        "cpu_s_per_step": cpu,
        "patches_per_s": args.batch / dt,
        "peak_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss
        ),
        "growth_mb": None if device.type == "cuda" else peak_rss - base_rss,
    }
    print("RESULT " + json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="+", default=None, help="registry names (default: all)")
    p.add_argument(
        "--widths", nargs="+", type=int, default=[64], help="base widths; 0 = model default"
    )
    p.add_argument("--size", type=int, default=256, help="square patch side (px)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--table-only", action="store_true", help="only the params/GFLOPs table")
    p.add_argument("--json", help="also write the results to this JSON file")
    # internal: one measurement in this process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return 0

    import torch

    from atd_dl.models import list_models
    from atd_dl.models.flops import format_table, model_table

    print("## Parameters and forward GFLOPs (default widths, 512×512, 1 channel)\n")
    print(format_table(model_table(size=512)))
    if args.table_only:
        return 0
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for name in args.models or list_models():
        for width in args.widths:
            cmd = [sys.executable, __file__, "--child", "--model", name, "--device", device]
            cmd += [
                "--size",
                str(args.size),
                "--batch",
                str(args.batch),
                "--steps",
                str(args.steps),
            ]
            cmd += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
            if width:
                cmd += ["--width", str(width)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if res.returncode != 0 or line is None:
                print(f"{name} width {width}: failed\n{res.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(line[7:]))
            r = rows[-1]
            print(f"  {name} w={r['width']}: {r['s_per_step']:.3f} s/step", file=sys.stderr)
    print(f"\n## Training step on {device} ({args.size}², batch {args.batch}, Adam, CE + Dice)\n")
    print(
        "| model | width | params | threads | s / step | CPU s / step | patches / s | peak MB | growth MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        growth = "" if r["growth_mb"] is None else f"{r['growth_mb']:.0f}"
        print(
            f"| {r['model']} | {r['width']} | {r['params'] / 1e6:.2f} M | {r['threads']} "
            f"| {r['s_per_step']:.3f} | {r['cpu_s_per_step']:.3f} | {r['patches_per_s']:.2f} "
            f"| {r['peak_mb']:.0f} | {growth} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
