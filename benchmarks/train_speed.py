"""Training throughput: images/s per variant, size and native precision, and the levers of `polycolor reproduce`.

    python benchmarks/train_speed.py                 # m1, m5, m8 at 32 and 64 px, batch 4 (~4 min on 2 cores)
    python benchmarks/train_speed.py --quick         # m1 and m8 at 32 px (< 3 min on 2 cores)
    python benchmarks/train_speed.py --levers        # + the reproduce levers on m1/m8 at 32 px (below)
    python benchmarks/train_speed.py --levers --compile --json out.json

One step = forward + the variant's composite loss (LPIPS included when ``--lpips`` and its weights load)
+ backward + gradient clipping at 1.0 + AdamW, as in ``polycolor_core/training/train.py``. GFLOP/img counts
forward+backward (torch's FlopCounterMode); "% peak" divides the achieved GFLOP/s by the peak of the same
precision (below). Only the precisions this CPU does natively are timed (the
table says which were skipped and why). Ratios are meaningful within one run only: quote them with the CPU
line printed at the top.

The "auto" column marks the precision ``polycolor train --precision auto`` picks for that row and why
(``polycolor_core/training/training_precision.py``: the fastest native precision that no quality veto rules out), fed with
the rates of this run. "% peak" is of an honest ceiling (``_machine.py``: the higher of the best matmul over
several shapes and thread counts and the theoretical figure from flags and clock; a faster row raises it).

Levers (``--levers``), each on m1 and m8 at 32 px, batch 4 unless stated:
  layout    fp32 contiguous vs channels_last
  batch     4 vs 8 images per step (img/s; the cpu profile's steps are batch 4)
  workers   one process with 2 threads vs two processes with 1 thread each (summed img/s): what
            `polycolor reproduce --jobs` trades
  lpips     the step with and without the LPIPS term (AlexNet), when its weights load
  data      milliseconds to build one batch of the cpu profile's data mix (generator + resize + augment)
            against the step's milliseconds: the most that loading off the training thread could save
  compile   (``--compile``) torch.compile of the UNet: compile seconds and img/s
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _machine import ceiling, describe_line, machine_info  # noqa: E402

DIM = 384  # minilm-l6's embedding width (the profiles' text encoder)


def step_flops(model, x, emb) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        model(x, emb).float().mean().backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / x.shape[0]


def bench(variant: str, size: int, precision: str = "fp32", batch: int = 4, steps: int = 3, channels_last=None,
          lpips: bool = False, compile: bool = False, threads: int | None = None) -> dict:
    """Images/s of training steps of ``variant`` (real architecture, random data) on this CPU."""
    from polycolor.polycolor_core.training.losses import composite_loss
    from polycolor.polycolor_core.model.factory import create_model
    from polycolor.polycolor_core.model.variants import get_variant

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    v = get_variant(variant)
    model = create_model(v, DIM).train()
    channels_last = (precision == "bf16") if channels_last is None else channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    net, weights = None, v.loss.without("lpips")
    if lpips and v.loss.lpips > 0:
        from polycolor.polycolor_core.training.lpips_loader import load_lpips

        net, weights = load_lpips(), v.loss
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=fmt)  # [B,3,S,S]
    y = torch.rand(batch, 3, size, size)
    emb = torch.randn(batch, 8, DIM)  # [B,L,D]
    flops = step_flops(model, x[:1], emb[:1])
    fwd = model
    compile_s = None
    if compile:
        fwd = torch.compile(model)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext

    def one_step():
        with ctx():
            pred = fwd(x, emb)
        loss, _ = composite_loss(pred.float(), y, weights, net)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t = time.perf_counter()
    one_step()  # warm-up (allocations, oneDNN primitives; the compile itself with --compile)
    if compile:
        compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        one_step()
    dt = time.perf_counter() - t
    ips = steps * batch / dt
    return {"variant": variant, "size": size, "precision": precision, "batch": batch,
            "layout": "channels_last" if channels_last else "contiguous", "threads": torch.get_num_threads(),
            "lpips": net is not None, "compile_s": compile_s, "images_per_s": ips, "ms_per_step": 1000 * dt / steps,
            "gflop_per_image": flops / 1e9, "gflops": ips * flops / 1e9}


def auto_choice(variant: str, size: int, timed: dict) -> dict:
    """What training's ``precision="auto"`` picks for this row: the real decision (native candidates, quality
    vetoes) fed with the rates just measured (``timed``: precision -> bench row), not a stored choice."""
    import tempfile

    from polycolor.polycolor_core.training.training_precision import choose

    with tempfile.TemporaryDirectory() as tmp:
        c = choose("auto", "cpu", variant, f"bench:{variant}:{size}", lambda p: timed[p]["images_per_s"],
                   cache_path=Path(tmp) / "choice.json")
    rate = timed[c.precision]["images_per_s"]
    return {"variant": variant, "size": size, "precision": c.precision, "reason": c.reason,
            "vetoed": dict(c.vetoed), "images_per_s": rate,
            "vs_fp32": rate / timed["fp32"]["images_per_s"],
            "rates": {p: r["images_per_s"] for p, r in timed.items()}}


def _worker(args, queue) -> None:
    queue.put(bench(*args[:5], threads=1))


def two_workers(variant: str, size: int, batch: int, steps: int) -> dict:
    """Two processes with one thread each, running at the same time: their summed images/s."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=((variant, size, "fp32", batch, steps), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    rows = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return {**rows[0], "threads": "2 x 1 (two processes)", "images_per_s": sum(r["images_per_s"] for r in rows),
            "gflops": sum(r["gflops"] for r in rows)}


def data_ms(size: int = 32, batch: int = 4, n: int = 20) -> float:
    """Milliseconds to build one training batch of the cpu profile's data mix at ``size``."""
    from polycolor.polycolor_core.training.profiles import DATA_MIX
    from polycolor.polycolor_core.training.trainio import TrainBatches

    batches = TrainBatches(DATA_MIX, size, batch, seed=0, augment=True, samples_per_epoch=200)
    batches.batch(0)
    t = time.perf_counter()
    for step in range(1, n + 1):
        batches.batch(step)
    return 1000 * (time.perf_counter() - t) / n


def levers(models, batch: int, steps: int, compile: bool, lpips: bool, say) -> list[dict]:
    rows = []
    for m in models:
        for cl in (False, True):
            rows.append({"lever": "layout", **bench(m, 32, "fp32", batch, steps, channels_last=cl)})
            say(rows[-1])
        rows.append({"lever": "batch", **bench(m, 32, "fp32", 2 * batch, steps)})
        say(rows[-1])
        rows.append({"lever": "workers", **bench(m, 32, "fp32", batch, steps, threads=2)})
        say(rows[-1])
        rows.append({"lever": "workers", **two_workers(m, 32, batch, steps)})
        say(rows[-1])
        torch.set_num_threads(2)
        if lpips:
            try:
                rows.append({"lever": "lpips", **bench(m if m != "m1" else "m2", 32, "fp32", batch, steps, lpips=True)})
                say(rows[-1])
            except Exception as exc:  # weights unavailable: say so rather than time something else
                rows.append({"lever": "lpips", "variant": m, "skipped": f"{type(exc).__name__}: {exc}"[:200]})
        if compile:
            rows.append({"lever": "compile", **bench(m, 32, "fp32", batch, steps, compile=True)})
            say(rows[-1])
    ms = data_ms(32, batch)
    rows.append({"lever": "data", "variant": "-", "size": 32, "batch": batch, "ms_per_batch": ms})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="m1,m5,m8", help="comma-separated variants (default m1,m5,m8)")
    ap.add_argument("--sizes", default="32,64", help="comma-separated sizes in px (default 32,64)")
    ap.add_argument("--batch", type=int, default=4, help="images per step (default 4, the cpu profile's)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up (default 3)")
    ap.add_argument("--quick", action="store_true", help="m1 and m8 at 32 px only (< 3 min on 2 cores)")
    ap.add_argument("--levers", action="store_true", help="also time the reproduce levers (see below)")
    ap.add_argument("--lpips", action="store_true", help="levers: include the LPIPS term row")
    ap.add_argument("--compile", action="store_true", help="levers: include torch.compile (slow to compile)")
    ap.add_argument("--json", default="benchmarks/train_speed.json", help="where to write the results")
    args = ap.parse_args(argv)
    models, sizes = args.models.split(","), [int(s) for s in args.sizes.split(",")]
    if args.quick:
        models, sizes = ["m1", "m8"], [32]

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    info = machine_info("cpu")
    console.print(f"[bold]train_speed[/] on {describe_line(info)}", highlight=False)
    peaks = info["peak_gflops"]

    def say(r):
        console.print(f"  {r['variant']} {r['size']}px b{r['batch']} {r['precision']} {r['layout']} "
                      f"threads {r['threads']}{' +lpips' if r.get('lpips') else ''}: {r['images_per_s']:.1f} img/s",
                      highlight=False)

    rows, auto_rows = [], []
    for m in models:
        for s in sizes:
            here = {}
            for p in info["native_precisions"]:
                rows.append(bench(m, s, p, args.batch, args.steps))
                here[p] = rows[-1]
                say(rows[-1])
            auto_rows.append(auto_choice(m, s, here))
    lever_rows = levers(["m1", "m8"], args.batch, args.steps, args.compile, args.lpips, say) if args.levers else []
    peak_notes = {}
    for p in info["native_precisions"]:  # an honest ceiling: no kernel of this run above the peak
        peaks[p], peak_notes[p] = ceiling(peaks[p], [r["gflops"] for r in rows + lever_rows
                                                     if r.get("precision") == p and "gflops" in r])
    for r in rows + lever_rows:
        if "gflops" in r:
            r["pct_peak"] = 100 * r["gflops"] / peaks["fp32" if r["precision"] == "fp32" else "bf16"]

    table = Table(title=f"training throughput (batch {args.batch}, {torch.get_num_threads()} threads); "
                        "auto = what `polycolor train --precision auto` picks here (training_precision.py)")
    for col in ("variant", "px", "precision", "layout", "img/s", "ms/step", "GFLOP/img", "GFLOP/s", "% peak", "auto"):
        table.add_column(col, justify="right")
    for r in rows:
        a = next(a for a in auto_rows if a["variant"] == r["variant"] and a["size"] == r["size"])
        mark = f"<- {a['reason']}" if a["precision"] == r["precision"] else ""
        table.add_row(r["variant"], str(r["size"]), r["precision"], r["layout"], f"{r['images_per_s']:.1f}",
                      f"{r['ms_per_step']:.0f}", f"{r['gflop_per_image']:.3f}", f"{r['gflops']:.1f}",
                      f"{r['pct_peak']:.0f}%", mark)
    for p, why in info["skipped_precisions"].items():
        table.add_row("all", ",".join(map(str, sizes)), p, "-", "skipped", "-", "-", "-", "-", why)
    console.print(table)
    for p, v in peaks.items():
        console.print(f"% peak of {p}: {v:.0f} GFLOP/s ({peak_notes[p] or info['peak_source'][p]})", highlight=False)
    if lever_rows:
        lt = Table(title="reproduce levers (32 px, fp32)")
        for col in ("lever", "variant", "batch", "layout", "threads", "img/s", "ms/step", "note"):
            lt.add_column(col, justify="right")
        for r in lever_rows:
            if r["lever"] == "data":
                lt.add_row("data", "-", str(r["batch"]), "-", "1", "-", f"{r['ms_per_batch']:.1f}",
                           "ms to build one batch (generator + resize + augment)")
            elif "skipped" in r:
                lt.add_row(r["lever"], r["variant"], "-", "-", "-", "-", "-", r["skipped"])
            else:
                note = (f"compile {r['compile_s']:.0f} s" if r.get("compile_s") else
                        "with LPIPS" if r.get("lpips") else "")
                lt.add_row(r["lever"], r["variant"], str(r["batch"]), r["layout"], str(r["threads"]),
                           f"{r['images_per_s']:.1f}", f"{r['ms_per_step']:.0f}", note)
        console.print(lt)
    out = {"machine": info, "peaks_used": peaks, "peak_notes": peak_notes, "batch": args.batch, "steps": args.steps,
           "rows": rows, "auto": auto_rows, "levers": lever_rows}
    from polycolor.polycolor_core.runtime.atomic import write_json_atomic

    path = write_json_atomic(args.json, out, sort_keys=False)
    console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
