"""Training throughput benchmark: images/s for m1, m5, m8 at 64 and 128 px, fp32 and bf16 autocast.

    python benchmarks/train_speed.py                 # full grid (a few minutes on 2 cores)
    python benchmarks/train_speed.py --quick         # m1 and m8 at 64 px only
    python benchmarks/train_speed.py --json out.json

One training step = forward + composite loss (the variant's terms minus LPIPS, whose AlexNet weights
may be absent offline) + backward + gradient clipping + AdamW. GFLOP per image counts forward+backward with
torch's FlopCounterMode; "% peak" compares achieved GFLOP/s with this machine's matmul peak measured in the
same run (fp32 for fp32 rows, bf16 for bf16 rows). Ratios are meaningful within one run only.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import nullcontext

import torch

from polycolor.polycolor_core.losses import composite_loss
from polycolor.polycolor_core.model import create_model
from polycolor.polycolor_core.variants import get_variant


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of an n x n matmul in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def step_flops(model, x, emb) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        model(x, emb).float().mean().backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / x.shape[0]


def bench(variant: str, size: int, bf16: bool, batch: int, steps: int, dim: int = 384) -> dict:
    torch.manual_seed(0)
    v = get_variant(variant)
    model = create_model(v, dim)
    model.train()
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    weights = v.loss.without("lpips")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.rand(batch, 3, size, size)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch, 3, size, size)
    emb = torch.randn(batch, 8, dim)
    flops = step_flops(model, x[:1], emb[:1])
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext

    def one_step():
        with ctx():
            pred = model(x, emb)
        loss, _ = composite_loss(pred.float(), y, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    one_step()  # warm-up (allocations, oneDNN primitive creation)
    t = time.perf_counter()
    for _ in range(steps):
        one_step()
    dt = time.perf_counter() - t
    ips = steps * batch / dt
    return {"variant": variant, "size": size, "precision": "bf16" if bf16 else "fp32", "batch": batch,
            "images_per_s": ips, "gflop_per_image": flops / 1e9, "gflops": ips * flops / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="m1,m5,m8")
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="m1,m8 at 64 px")
    ap.add_argument("--json", default="benchmarks/train_speed.json")
    args = ap.parse_args()
    models, sizes = args.models.split(","), [int(s) for s in args.sizes.split(",")]
    if args.quick:
        models, sizes = ["m1", "m8"], [64]

    from rich.console import Console
    from rich.table import Table

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    for m in models:
        for s in sizes:
            for bf16 in (False, True):
                r = bench(m, s, bf16, args.batch, args.steps)
                r["pct_peak"] = 100 * r["gflops"] / peaks[r["precision"]]
                rows.append(r)
                print(f"  {m} {s}px {r['precision']}: {r['images_per_s']:.1f} img/s", flush=True)

    table = Table(title=f"training throughput (batch {args.batch}, {torch.get_num_threads()} threads)")
    for col in ("variant", "px", "precision", "img/s", "GFLOP/img", "GFLOP/s", "% matmul peak"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["variant"], str(r["size"]), r["precision"], f"{r['images_per_s']:.1f}",
                      f"{r['gflop_per_image']:.2f}", f"{r['gflops']:.0f}", f"{r['pct_peak']:.0f}%")
    console = Console()
    console.print(table)
    console.print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    out = {"peaks_gflops": peaks, "rows": rows, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "machine": platform.processor() or platform.machine(), "batch": args.batch, "steps": args.steps}
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2)
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
