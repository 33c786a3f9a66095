"""CPU inference speed: images/s, GFLOP/s, share of the machine's matmul peak and accuracy, per backend path.

    python benchmarks/infer_speed.py                        # m1 + m8 at 128 px, batch 1/8/32, + the 512 px rows
    python benchmarks/infer_speed.py --quick                # m1 only, batch 1/8, one repeat (< 3 min on 2 cores)
    python benchmarks/infer_speed.py --models m8 --batches 8 --int8 --json out.json

Models are the real architectures with random weights (perturbed so every layer does work), conditioned on
384-d embeddings (minilm-l6's width) of canonical colour names. Only the precisions this CPU does natively
are timed: bf16 rows appear only where the precision probe (``polycolor_core.runtime.precision.native_bf16``) says
bf16 is native; the table says what was skipped.

Paths
  torch-fp32        PyTorch eager fp32 (``TorchBackend(fast_cpu=False)``)
  torch-fp32-fast   + short-key cross-attention and micro-batches (``TorchBackend``'s CPU fast path)
  torch-bf16-fast   bf16 autocast + channels_last + bf16 weights (native-bf16 CPUs only)
  ort-fp32          onnxruntime on the exported unet.onnx, all graph optimisations (``OrtBackend``)
  ort-int8          (``--int8``) static QDQ int8, per-channel weights, calibrated on generated polygons
  default           what ``Colorizer.from_pretrained(checkpoint)`` picks here (``backend="auto"`` measures once
                    per machine and model: ``export/autotune.py``)

Engines (``--engine torchrun,ray``): the whole ``polycolor infer`` job on --engine-items generated images of the
first model (torch backend, folder in, PNGs out), timed end to end as a user runs it, one process with every
thread beside ``torchrun --nproc_per_node P`` and ``--engine ray --workers P`` (P = --engine-procs, threads split
between them); img/s end to end and during the colouring itself (the slowest rank's / the Ray pipeline's), their
ratio to the one-process row, and the start-up seconds (imports, model loads, rendezvous, Ray start).

Columns: img/s is wall-clock (best of --repeats); GFLOP/img counts the fp32 graph with FlopCounterMode;
"% peak" divides GFLOP/s by the peak of the best native precision (int8 rows too: it is the same work done
faster); the peak is an honest ceiling (``_machine.py``: the higher of the best matmul over several shapes and
thread counts and the theoretical figure from flags and clock; a faster row raises it), never passed. dE is the mean CIEDE2000 between the path's 8-bit output and
torch-fp32's on the same inputs. The goal line checks the default path at batch 8 reaches >= 50% of that peak.
The 512 px rows time the whole ``Colorizer.colorize`` call (letterbox to the model's size, the model, and the
composite written into the 512 px image) beside the same call on 128 px images.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import ceiling, describe_line, machine_info  # noqa: E402

GOAL_SHARE = 0.50
GOAL_BATCH = 8
DIM, SEQ = 384, 8


def count_gflop(model, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model(torch.rand(1, 3, size, size), torch.randn(1, SEQ, DIM))
    return fc.get_total_flops() / 1e9


def mean_de(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIEDE2000 between two uint8 [N,H,W,3] batches."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    return float(np.mean(deltaE_ciede2000(rgb2lab(a), rgb2lab(b))))


def to_u8(y: np.ndarray) -> np.ndarray:
    return (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def time_call(fn, repeats: int):
    """(best wall seconds, last output) after one warm-up call."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def build(name: str, workdir: Path, size: int):
    """A random-weight checkpoint of variant ``name`` (minilm-sized embeddings) and its ONNX export."""
    import torch

    from polycolor.export.onnx_export import export_model
    from polycolor.polycolor_core.model.checkpoint import build_meta, save_checkpoint
    from polycolor.polycolor_core.model.factory import create_model
    from polycolor.polycolor_core.model.text import TextEncoderSpec

    spec = TextEncoderSpec("minilm-l6", "", DIM, SEQ)
    torch.manual_seed(0)
    model = create_model(name, DIM).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ck = save_checkpoint(workdir / f"{name}-ckpt", model, build_meta(model, spec, image_size=size, step=0))
    ex = export_model(ck, workdir / f"{name}-onnx", with_text_encoder=False, check=False)
    return ck, ex, model


class _Calibration:
    """onnxruntime CalibrationDataReader over generated polygon inputs (canonical colours' embeddings)."""

    def __init__(self, images: np.ndarray, emb: np.ndarray, batch: int = 4):
        self.items = iter([{"images": images[i:i + batch], "text_embeddings": emb[i:i + batch]}
                           for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self.items, None)


def quantize_int8(src: Path, dst: Path, images: np.ndarray, emb: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_name("pre.onnx")
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # the quantiser warns once per norm weight it leaves in fp32
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), _Calibration(images, emb), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        root.setLevel(level)
    return dst


def engine_rows(ck: Path, tmp: Path, args, threads: int, console) -> list[dict]:
    """Time ``polycolor infer`` as one process, under torchrun and with --engine ray (``--engine``)."""
    import socket
    import subprocess

    from PIL import Image

    from polycolor.polycolor_core.data.synthetic import SyntheticDataset

    data = tmp / "engine-data"
    data.mkdir()
    for i, s in enumerate(SyntheticDataset(("canonical", "pose", "shapes"), n=args.engine_items, seed=2, size=args.size)):
        Image.fromarray(s.input).save(data / f"{i:05d}.png")
    procs = max(1, args.engine_procs)
    each = str(max(1, threads // procs))
    common = ["infer", str(ck), "--data", str(data), "--colour", "cyan", "--backend", "torch", "--batch-size", "8"]
    env = {**os.environ, "POLYCOLOR_AUTOTUNE": "0", "RAY_AUTH_MODE": "disabled"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    jobs = [("one process", 1, ["-m", "polycolor.cli", *common, "--threads", str(threads)])]
    for engine in [e.strip() for e in args.engine.split(",") if e.strip()]:
        if engine == "torchrun":
            jobs.append(("torchrun", procs, ["-m", "torch.distributed.run", "--nproc_per_node", str(procs),
                                             "--master_addr", "127.0.0.1", "--master_port", port,
                                             "-m", "polycolor.cli", *common, "--threads", each]))
        elif engine == "ray":
            jobs.append(("ray", procs, ["-m", "polycolor.cli", *common, "--engine", "ray", "--workers", str(procs),
                                        "--threads", each]))
        else:
            raise SystemExit(f"--engine {engine!r}: use torchrun, ray or torchrun,ray")
    out = []
    for label, n, cmd in jobs:
        dest = tmp / f"engine-out-{label.replace(' ', '-')}"
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, *cmd, "--out", str(dest)], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"{label} job failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        report = json.loads((dest / "report.json").read_text())
        run_s = max(r["run_s"] for r in report["per_rank"])
        written = report["counts"]["written"]
        ray_stats = report.get("engine_stats") or {}
        if ray_stats.get("steady_images_per_s"):  # Ray: the driver's run phase includes starting Ray and its actors
            run_s = written / ray_stats["steady_images_per_s"]
        out.append({"engine": label, "procs": n, "wall_s": wall, "startup_s": wall - run_s, "images": written,
                    "images_per_s": written / wall, "run_images_per_s": written / run_s,
                    "per_rank": [r["images_per_second"] or 0.0 for r in report["per_rank"]],
                    "load_s": [r["load_s"] for r in report["per_rank"]], "engine_stats": ray_stats})
        base = out[0]
        out[-1]["ratio"] = out[-1]["images_per_s"] / base["images_per_s"]
        out[-1]["run_ratio"] = out[-1]["run_images_per_s"] / base["run_images_per_s"]
        console.print(f"  engine {label} x{n}: {written} images in {wall:.1f} s ({out[-1]['images_per_s']:.2f} img/s end "
                      f"to end, {out[-1]['run_images_per_s']:.2f} while colouring)", highlight=False)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="m1,m8", help="comma-separated variants (default m1,m8)")
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    ap.add_argument("--size", type=int, default=128, help="model working size in px (default 128)")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats after one warm-up (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    ap.add_argument("--int8", action="store_true", help="also static int8 (QDQ) onnxruntime")
    ap.add_argument("--no-512", dest="big", action="store_false", help="skip the 512 px end-to-end rows")
    ap.add_argument("--quick", action="store_true", help="m1 only, batches 1,8, one repeat (< 3 min)")
    ap.add_argument("--json", default="benchmarks/infer_speed.json", help="where to write the results")
    ap.add_argument("--engine", default="", help="also time whole infer jobs: torchrun, ray or torchrun,ray")
    ap.add_argument("--engine-items", type=int, default=96, help="images per engine job (default 96)")
    ap.add_argument("--engine-procs", type=int, default=2, help="ranks / Ray actors per engine job (default 2)")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.repeats = "m1", "1,8", 1

    warnings.simplefilter("ignore")
    logging.getLogger("polycolor").setLevel(logging.WARNING)
    import torch
    from rich.console import Console
    from rich.table import Table

    from polycolor.export.colorizer import Colorizer
    from polycolor.export.ort_backend import OrtBackend, physical_cores
    from polycolor.export.torch_backend import TorchBackend
    from polycolor.polycolor_core.data.synthetic import SyntheticDataset
    from polycolor.polycolor_core.model.text import TextEncoderSpec, encoder_from_spec

    console = Console(width=max(140, Console().width))
    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    info = machine_info("cpu")
    best = "bf16" if "bf16" in info["native_precisions"] else "fp32"
    peak = info["peak_gflops"][best]
    console.print(f"[bold]infer_speed[/] on {describe_line(info)}; {threads} threads; % peak is of {best} "
                  f"{peak:.0f} GFLOP/s", highlight=False)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]

    ds = SyntheticDataset(("canonical", "pose", "shapes", "dark"), n=max(batches + [16]), seed=0, size=args.size)
    images = np.ascontiguousarray(np.stack([s.input for s in ds]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    colours = [s.colour for s in ds]
    try:
        emb_all = encoder_from_spec(TextEncoderSpec("minilm-l6", "", DIM, SEQ)).encode(colours).numpy()
    except Exception:  # noqa: BLE001 - no minilm package: random embeddings of the same shape time the same
        emb_all = np.random.default_rng(0).standard_normal((len(colours), SEQ, DIM)).astype(np.float32)
    emb_all = np.ascontiguousarray(emb_all, dtype=np.float32)
    rows, meta, e2e, engines = [], {}, [], []
    with tempfile.TemporaryDirectory(prefix="polycolor-bench-") as tmp:
        for name in models:
            ck, ex, model = build(name, Path(tmp), args.size)
            if args.engine and not engines:
                engines = engine_rows(ck, Path(tmp), args, threads, console)
            gflop = count_gflop(model, args.size)
            default = Colorizer.from_pretrained(ck)  # what a script gets on this machine (measured once, cached)
            meta[name] = {"gflop_per_image": gflop, "default_backend": default.backend.name,
                          "default_precision": getattr(default.backend, "precision", "fp32")}
            paths = {
                "torch-fp32": TorchBackend(copy.deepcopy(model), "cpu", "fp32", fast_cpu=False),
                "torch-fp32-fast": TorchBackend(copy.deepcopy(model), "cpu", "fp32", fast_cpu=True),
                "ort-fp32": OrtBackend(ex / "unet.onnx", "cpu", threads),
                "default": default.backend,
            }
            if "bf16" in info["native_precisions"]:
                paths["torch-bf16-fast"] = TorchBackend(copy.deepcopy(model), "cpu", "bf16", fast_cpu=True)
            if args.int8:
                q = quantize_int8(ex / "unet.onnx", Path(tmp) / f"{name}-int8.onnx", images[:16], emb_all[:16])
                paths["ort-int8"] = OrtBackend(q, "cpu", threads)
            ref: dict[int, np.ndarray] = {}
            for b in batches:
                x, e = images[:b], emb_all[:b]
                for pname, backend in paths.items():
                    reps = max(args.repeats, -(-8 // b))  # small batches: more repeats (>= 8 images timed)
                    wall, y = time_call(lambda: backend.run(x, e), reps)
                    u8 = to_u8(y)
                    ref.setdefault(b, u8)  # torch-fp32 comes first
                    ips = b / wall
                    rows.append({"model": name, "path": pname, "batch": b, "images_per_s": ips,
                                 "gflop_per_s": ips * gflop, "share_peak": ips * gflop / peak,
                                 "delta_e_vs_fp32": mean_de(u8, ref[b]), "default": pname == "default"})
                    console.print(f"  {name} b={b:<3} {pname:<16} {ips:7.2f} img/s  {100 * ips * gflop / peak:4.0f}% peak  "
                                  f"dE {rows[-1]['delta_e_vs_fp32']:.3f}", highlight=False)
            if args.big:
                for px in (args.size, 512):
                    pics = [np.asarray(SyntheticDataset(("canonical",), n=8, seed=1, size=px)[i].input) for i in range(8)]
                    wall, _ = time_call(lambda: default.colorize(pics, "cyan"), max(1, args.repeats - 1))
                    e2e.append({"model": name, "input_px": px, "batch": 8, "images_per_s": 8 / wall,
                                "backend": default.backend.name, "output": default.output})
                    console.print(f"  {name} colorize {px}px x8 ({default.output}): {8 / wall:.2f} img/s", highlight=False)
            del paths, default

    peak, peak_note = ceiling(peak, [r["gflop_per_s"] for r in rows])
    for r in rows:
        r["share_peak"] = r["gflop_per_s"] / peak
    table = Table(title=f"CPU inference at {args.size} px, {threads} threads (% of {best} peak {peak:.0f} GFLOP/s: "
                        f"{peak_note or info['peak_source'][best]})")
    for col in ("model", "GFLOP/img", "path", "batch", "img/s", "GFLOP/s", "% peak", "dE2000 vs fp32"):
        table.add_column(col, justify="left" if col in ("model", "path") else "right")
    for r in rows:
        table.add_row(r["model"], f"{meta[r['model']]['gflop_per_image']:.2f}", r["path"], str(r["batch"]),
                      f"{r['images_per_s']:.2f}", f"{r['gflop_per_s']:.1f}", f"{100 * r['share_peak']:.0f}%",
                      f"{r['delta_e_vs_fp32']:.3f}")
    for p, why in info["skipped_precisions"].items():
        table.add_row("all", "-", f"torch-{p}*", "-", "skipped", "-", "-", why)
    console.print(table)
    if e2e:
        t2 = Table(title="end to end: Colorizer.colorize on 8 images (letterbox + model + composite at the input's size)")
        for col in ("model", "input px", "backend", "output", "img/s"):
            t2.add_column(col, justify="right")
        for r in e2e:
            t2.add_row(r["model"], str(r["input_px"]), r["backend"], r["output"], f"{r['images_per_s']:.2f}")
        console.print(t2)
    if engines:
        t3 = Table(title=f"whole `polycolor infer` jobs: {models[0]}, {args.engine_items} images of {args.size} px, "
                         f"torch backend, {threads} threads in all")
        for col in ("engine", "procs", "wall s", "start-up s", "img/s end to end", "ratio", "img/s colouring", "ratio",
                    "per rank/actor img/s"):
            t3.add_column(col, justify="right")
        for r in engines:
            t3.add_row(r["engine"], str(r["procs"]), f"{r['wall_s']:.1f}", f"{r['startup_s']:.1f}",
                       f"{r['images_per_s']:.2f}", f"{r['ratio']:.2f}", f"{r['run_images_per_s']:.2f}",
                       f"{r['run_ratio']:.2f}", ", ".join(f"{x:.1f}" for x in r["per_rank"]))
        console.print(t3)
    goal = {}
    for name in models:
        r = next((r for r in rows if r["model"] == name and r["default"] and r["batch"] == GOAL_BATCH), None)
        if r is None:
            continue
        goal[name] = r["share_peak"] >= GOAL_SHARE
        console.print(f"goal {name}: default path ({meta[name]['default_backend']}, {meta[name]['default_precision']}) "
                      f">= {GOAL_SHARE:.0%} of the {best} peak at batch {GOAL_BATCH}: "
                      f"{'PASS' if goal[name] else 'FAIL'} ({100 * r['share_peak']:.0f}%)", highlight=False)
    from polycolor.polycolor_core.runtime.atomic import write_json_atomic

    out = write_json_atomic(args.json, {"args": vars(args), "machine": info, "threads": threads, "peak_precision": best,
                                        "peak_used": peak, "peak_note": peak_note,
                                        "models": meta, "results": rows, "end_to_end": e2e, "engines": engines,
                                        "goal": {"share_peak": GOAL_SHARE, "batch": GOAL_BATCH, "met": goal}},
                            sort_keys=False)
    console.print(f"wrote {out}; load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
