"""What the Colorizer's zoomed second pass costs and buys, with a trained model on the leaderboard's held-out data.

    python benchmarks/zoom_cost.py                                   # reproduce-cpu/runs/seed0/m8-everyday, 96 + 8 per user family
    python benchmarks/zoom_cost.py --model runs/m8 --user-families 4 --rounds 3 --json zoom.json

A fill spanning less than half of the image's longer side gets a second model pass on a crop around it
(``polycolor_core/composite.zoom_box``): on a crop the polygon fills the model's view, as in training. This times
``Colorizer.colorize`` (letterbox, model, composite at each image's own size) with ``zoom=True`` (the default) and
``zoom=False`` in interleaved rounds (best round kept, so a burst of other load hits both alike), counts the images
that got a second pass and scores the in-polygon CIEDE2000 / mask IoU per family both ways. A random-weight model
would say nothing here: its masks, and so what gets zoomed, are noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_line, machine_info  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="reproduce-cpu/runs/seed0/m8-everyday", help="a run, checkpoint or export folder")
    ap.add_argument("--n", type=int, default=96, help="held-out images at 128 px (the leaderboard's split)")
    ap.add_argument("--user-families", type=int, default=8, help="images per user-input family, at their own size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default="zoom_cost.json")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from polycolor.eval.heldout import load_eval_data
    from polycolor.eval.metrics import ciede2000_map, true_mask
    from polycolor.export.colorizer import Colorizer
    from polycolor.polycolor_core.runtime.atomic import write_json_atomic
    from polycolor.polycolor_core.model.composite import zoom_box

    console = Console(highlight=False)
    info = machine_info(peaks=False)
    console.print(describe_line(info))
    data = load_eval_data(n=args.n, size=128, user_n=args.user_families)
    col = Colorizer.from_pretrained(args.model, backend=args.backend, threads=args.threads)
    images, colours = data.inputs, data.colours
    col.colorize(images[:2], colours[:2])  # warm-up
    best = {True: float("inf"), False: float("inf")}
    results = {}
    for _ in range(args.rounds):
        for zoom in (True, False):
            col.zoom = zoom
            t = time.perf_counter()
            results[zoom] = col.colorize(images, colours)
            best[zoom] = min(best[zoom], time.perf_counter() - t)
    col.zoom = False
    zoomed = sum(zoom_box(m) is not None for m in col.colorize(images, colours, output="raw").masks)

    fams = list(dict.fromkeys(data.families))
    scores = {}
    for zoom, res in results.items():
        per = {}
        for s, img, mask in zip(data.samples, res.images, res.masks):
            true = true_mask(s.input, s.target)
            de = float(ciede2000_map(img, s.target)[true].mean())
            iou = float((mask & true).sum() / max((mask | true).sum(), 1))
            per.setdefault(s.family, []).append((de, iou))
        scores[zoom] = {f: (float(np.mean([d for d, _ in v])), float(np.mean([i for _, i in v])), len(v))
                        for f, v in per.items()}

    t = Table(title=f"Colorizer.colorize on {len(images)} held-out images ({col.backend.name}), "
                    f"{zoomed} of them zoomed; in-polygon dE00 / mask IoU")
    for c in ("family", "n", "zoom on", "zoom off"):
        t.add_column(c, justify="left" if c == "family" else "right")
    for f in fams:
        on, off = scores[True][f], scores[False][f]
        t.add_row(f, str(on[2]), f"{on[0]:.2f} / {on[1]:.3f}", f"{off[0]:.2f} / {off[1]:.3f}")
    t.add_row("img/s", "", f"{len(images) / best[True]:.2f}", f"{len(images) / best[False]:.2f}")
    console.print(t)
    out = write_json_atomic(args.json, {
        "args": vars(args), "machine": info, "images": len(images), "zoomed": zoomed,
        "images_per_s": {"zoom": len(images) / best[True], "no_zoom": len(images) / best[False]},
        "by_family": {f: {"zoom": scores[True][f], "no_zoom": scores[False][f]} for f in fams}}, sort_keys=False)
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
