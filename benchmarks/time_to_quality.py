"""Time-to-quality benchmark: CPU minutes for a variant to reach a colour/mask quality target.

    python benchmarks/time_to_quality.py                       # m8, canonical shapes, the tuned recipe
    python benchmarks/time_to_quality.py --samples-per-epoch 96,160 --out runs/ttq   # two budgets, keep the runs
    python benchmarks/time_to_quality.py --size-schedule '' --image-size 64   # plain 64 px training

Trains with the core's ``train()`` (the same code as ``polycolor train``: warm-up/cosine, clipping, per-epoch
validation grid and checkpoint, all inside the timed region), then scores held-out samples rendered from a
generator seed that training never uses, at 128 px through the same ``Colorizer`` the leaderboard uses:
mean in-polygon CIEDE2000 and mask IoU. Each budget in ``--samples-per-epoch`` is a separate full run
(the cosine schedule makes a mid-run checkpoint unrepresentative). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from polycolor.eval.metrics import score_batch
from polycolor.polycolor_core.colour.colours import resolve_colour
from polycolor.export.colorizer import Colorizer
from polycolor.polycolor_core.data.synthetic import SyntheticDataset
from polycolor.polycolor_core.training.train import config_from_profile, parse_size_schedule, train

EVAL_SEED = 777_001  # training uses seed 0 (batches) and 10_000 (validation grid): never this one
TARGET_DE, TARGET_IOU = 2.0, 0.97
PROTOTYPE = {"minutes": 4.0, "de_polygon": 1.1, "iou": 0.975}  # issue 3: throwaway prototype on these 2 cores


def score(run_dir: Path, family: str, n: int, size: int = 128) -> dict:
    colorizer = Colorizer.from_pretrained(run_dir, backend="torch", device="cpu", precision="auto")
    ds = SyntheticDataset(families=(family,), n=n, seed=EVAL_SEED, size=size)
    samples = list(ds)
    preds = colorizer([s.input for s in samples], [s.colour for s in samples])
    scores = score_batch(np.stack([s.input for s in samples]), np.stack(preds),
                         np.stack([s.target for s in samples]), [resolve_colour(s.colour) for s in samples])
    return {k: float(scores[k].mean()) for k in ("de_polygon", "iou")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="m8")
    ap.add_argument("--data", default="synthetic:canonical", help="training data spec")
    ap.add_argument("--family", default="canonical", help="held-out family to score")
    ap.add_argument("--samples-per-epoch", default="184", help="comma list: one full run per budget")
    ap.add_argument("--epochs", type=int, default=0, help="0 = the variant's own (m8: 15)")
    ap.add_argument("--image-size", type=int, default=112, help="final (working) size; scored at 128")
    ap.add_argument("--size-schedule", default="32:0.8,64:0.12", help="progressive resizing ('' = off)")
    ap.add_argument("--later-stage-lr-scale", type=float, default=0.5)
    ap.add_argument("--ssim-warmup", type=float, default=0.0,
                    help="share of the steps over which SSIM ramps in (the recorded results use 0: constant SSIM)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", default="0", help="comma list of training seeds: one run per budget and seed")
    ap.add_argument("--eval-n", type=int, default=64)
    ap.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    ap.add_argument("--json", default="benchmarks/time_to_quality.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    root = Path(args.out or tempfile.mkdtemp(prefix="ttq-"))
    schedule = parse_size_schedule(args.size_schedule) if args.size_schedule else ()
    rows = []
    runs = [(int(b), int(s)) for b in args.samples_per_epoch.split(",") for s in args.seeds.split(",")]
    for spe, seed in runs:
        cfg = config_from_profile(args.variant, "cpu", out=str(root / f"{args.variant}-spe{spe}-seed{seed}"),
                                  data=args.data, seed=seed,
                                  samples_per_epoch=spe, epochs=args.epochs, image_size=args.image_size,
                                  size_schedule=schedule, batch_size=args.batch_size, lr=args.lr,
                                  later_stage_lr_scale=args.later_stage_lr_scale, ssim_warmup_frac=args.ssim_warmup)
        t0 = time.perf_counter()
        result = train(cfg, progress=True)
        minutes = (time.perf_counter() - t0) / 60
        q = score(result.checkpoint.parent, args.family, args.eval_n)
        met = q["de_polygon"] <= TARGET_DE and q["iou"] >= TARGET_IOU
        rows.append({"samples_per_epoch": spe, "seed": seed, "steps": result.step, "train_minutes": minutes, **q, "met": met,
                     "config": {k: getattr(cfg, k) for k in ("image_size", "size_schedule", "batch_size", "lr",
                                                             "later_stage_lr_scale", "ssim_warmup_frac", "precision", "data", "text_encoder",
                                                             "epochs")}})

    print(f"\n{args.variant} on {args.data}, scored on {args.eval_n} held-out '{args.family}' samples at 128 px "
          f"(seed {EVAL_SEED}); target dE00 <= {TARGET_DE}, IoU >= {TARGET_IOU}")
    print(f"{'pairs/epoch':>11} {'seed':>4} {'steps':>6} {'train min':>9} {'dE00 poly':>9} {'IoU':>6}  target")
    for r in rows:
        print(f"{r['samples_per_epoch']:>11} {r['seed']:>4} {r['steps']:>6} {r['train_minutes']:>9.2f} "
              f"{r['de_polygon']:>9.2f} {r['iou']:>6.3f}  {'met' if r['met'] else 'not met'}")
    for spe in dict.fromkeys(r["samples_per_epoch"] for r in rows):
        group = [r for r in rows if r["samples_per_epoch"] == spe]
        print(f"{spe} pairs/epoch: target met in {sum(r['met'] for r in group)} of {len(group)} seeds, "
              f"median {np.median([r['train_minutes'] for r in group]):.2f} CPU min, "
              f"median dE00 {np.median([r['de_polygon'] for r in group]):.2f}, "
              f"median IoU {np.median([r['iou'] for r in group]):.3f} "
              f"(prototype: {PROTOTYPE['de_polygon']} / {PROTOTYPE['iou']} in {PROTOTYPE['minutes']:.0f} min)")
    Path(args.json).write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "variant": args.variant, "family": args.family, "eval_n": args.eval_n, "eval_seed": EVAL_SEED,
        "target": {"de_polygon": TARGET_DE, "iou": TARGET_IOU}, "prototype": PROTOTYPE, "runs": rows,
    }, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
