"""Peak memory of colouring one large batch (issue 26): 64 images at 512x512 through the ComfyUI node path
(``nodes.colorize.colorize`` on a float IMAGE tensor) and through ``Colorizer`` (a list of uint8 arrays), with
the real m8 architecture (randomly initialised: memory does not depend on the weights' values), torch backend,
fp32, the chunk size ``export.config.DEFAULT_BATCH_SIZE`` and, for comparison, the whole batch in one call.

Each row runs in a fresh process and reports its peak RSS (``ru_maxrss``), the RSS before the call (model loaded,
inputs built) and the difference; prints a table and writes JSON.

    python benchmarks/batch_memory.py [--n 64] [--size 512] [--out batch_memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _checkpoint(dest: Path) -> Path:
    import torch

    from polycolor.polycolor_core.model.checkpoint import build_meta, save_checkpoint
    from polycolor.polycolor_core.model.conditioning import attach_colour_token
    from polycolor.polycolor_core.model.factory import create_model
    from polycolor.polycolor_core.model.text import get_text_encoder
    from polycolor.polycolor_core.model.variants import get_variant

    torch.manual_seed(0)
    spec = get_text_encoder("test-tiny-random").spec
    variant = get_variant("m8")  # the real m8 widths/depth/heads
    model = attach_colour_token(create_model(variant, spec.dim, conditioning="text+rgb+film"), "text+rgb+film")
    tc = {"conditioning": "text+rgb+film", "data": "synthetic:canonical"}
    return save_checkpoint(dest, model, build_meta(model, spec, image_size=64, step=0, train_config=tc))


def _images(n: int, size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    out = np.full((n, size, size, 3), 255, np.uint8)
    for i in range(n):
        y0, x0 = rng.integers(size // 8, size // 3, 2)
        y1, x1 = y0 + size // 2, x0 + size // 2
        out[i, y0:y1, [x0, x1]] = 0
        out[i, [y0, y1], x0:x1] = 0
    return out


def child(path: str, how: str, batch_size: int, n: int, size: int) -> dict:
    import torch

    from polycolor.export.colorizer import Colorizer

    torch.set_num_threads(os.cpu_count() or 1)
    col = Colorizer.from_pretrained(path, backend="torch", precision="fp32", batch_size=batch_size)
    images = _images(n, size)
    if how == "node":
        from polycolor.nodes.colorize import colorize

        batch = torch.from_numpy(images).float().div_(255.0)  # ComfyUI IMAGE: float32 [B,H,W,3]
        del images
        before = _rss_mb()
        t0 = time.perf_counter()
        out, mask = colorize(col, batch, "cyan")
        shape = list(out.shape)
    else:
        arrays = list(images)
        before = _rss_mb()
        t0 = time.perf_counter()
        out = col(arrays, "cyan")
        shape = [len(out), *out[0].shape]
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"path": how, "batch_size": batch_size, "n": n, "size": size, "rss_before_mb": round(before, 1),
            "peak_rss_mb": round(peak, 1), "call_mb": round(peak - before, 1), "seconds": round(seconds, 2),
            "output_shape": shape}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default="batch_memory.json")
    ap.add_argument("--child", nargs=3, metavar=("CKPT", "PATH", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        ckpt, how, bs = args.child
        print(json.dumps(child(ckpt, how, int(bs), args.n, args.size)))
        return
    from polycolor.export.config import DEFAULT_BATCH_SIZE

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import machine_info

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _checkpoint(Path(tmp) / "m8")
        for how in ("node", "colorizer"):
            for bs in (DEFAULT_BATCH_SIZE, args.n):
                res = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--size", str(args.size),
                                      "--child", str(ckpt), how, str(bs)], capture_output=True, text=True,
                                     env={**os.environ, "POLYCOLOR_AUTOTUNE": "0"})
                if res.returncode:
                    raise SystemExit(res.stderr[-3000:])
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    info = machine_info(peaks=False)
    print(f"\n{args.n} images at {args.size}x{args.size}, m8 architecture (random weights), torch fp32, "
          f"CPU: {info.get('cpu', '?')}")
    print(f"{'path':<10} {'chunk':>5} {'RSS before MB':>14} {'peak RSS MB':>12} {'call MB':>8} {'s':>7}")
    for r in rows:
        print(f"{r['path']:<10} {r['batch_size']:>5} {r['rss_before_mb']:>14} {r['peak_rss_mb']:>12} "
              f"{r['call_mb']:>8} {r['seconds']:>7}")
    Path(args.out).write_text(json.dumps({"machine": info, "rows": rows}, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
