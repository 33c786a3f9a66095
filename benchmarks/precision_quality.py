"""Does a lower training precision cost quality? Train one variant per (precision, seed), score all of them on the
held-out families, and say whether the lower precision should be vetoed (``training_precision.QUALITY_VETOES``).

    python benchmarks/precision_quality.py                       # everyday m8, cpu profile, fp32 vs bf16, seeds 0,1
    python benchmarks/precision_quality.py --seeds 0,1,2 --jobs 2 --out runs/precision-quality

Each run is ``polycolor train VARIANT --profile P --precision X --seed S`` in its own process with one thread
(resumable: a finished run is not trained again), so the weights are exactly what ``polycolor train`` gives.
Scoring: ``polycolor-eval``'s leaderboard (``run_leaderboard``) on the held-out split plus ``--user-families`` images
per user-input family, every run scored with the same fp32 torch inference, on both outputs: the composite (what
users get) and the raw picture (the model itself, before the composite snaps its mask to the outline). Training
precision is the only difference between the two groups of runs.

Verdict (per the lower precision and output): *veto* when its mean in-polygon dE00 over seeds is worse than fp32's
on more than half of the families *and* its all-families mean is worse by more than the larger of the two groups'
seed sd; otherwise *no measurable cost*. A veto on either output vetoes the precision. bf16 on a CPU without native bf16 is emulated (slow) but computes the same
bf16-rounded products accumulated in fp32, so the quality verdict carries over; the times do not.
Writes ``--json`` (default benchmarks/precision_quality.json) and prints a table per family.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_line, machine_info  # noqa: E402

KEY = "de_polygon"


def train_run(variant: str, profile: str, precision: str, seed: int, run: Path) -> dict:
    from polycolor.polycolor_core.training.train import is_finished

    if is_finished(run):
        return {"run": str(run), "trained_s": None, "skipped": True}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "polycolor.cli", "train", variant, "--profile", profile, "--precision", precision,
           "--seed", str(seed), "--out", str(run), "--resume"]
    run.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(run / "train.log", "a") as log:
        subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return {"run": str(run), "trained_s": time.perf_counter() - t, "skipped": False}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def verdict(by_precision: dict[str, dict[str, list[float]]], low: str, base: str = "fp32") -> dict:
    """``by_precision[p][family] = [score per seed]`` (lower is better; family "all" included) -> the veto verdict."""
    fams = [f for f in by_precision[base] if f != "all"]
    worse = [f for f in fams if statistics.fmean(by_precision[low][f]) > statistics.fmean(by_precision[base][f])]
    m_low, sd_low = mean_sd(by_precision[low]["all"])
    m_base, sd_base = mean_sd(by_precision[base]["all"])
    veto = len(worse) > len(fams) / 2 and (m_low - m_base) > max(sd_low, sd_base)
    return {"precision": low, "veto": veto, "families_worse": worse, "n_families": len(fams),
            "all_mean": {low: m_low, base: m_base}, "all_sd": {low: sd_low, base: sd_base},
            "text": (f"{low}: worse than {base} on {len(worse)} of {len(fams)} families, all-families dE00 "
                     f"{m_low:.2f} +- {sd_low:.2f} vs {m_base:.2f} +- {sd_base:.2f} -> "
                     + ("veto" if veto else "no measurable cost"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="m8")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--precisions", default="fp32,bf16", help="the first one is the reference (default fp32,bf16)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", default="runs/precision-quality", help="run folders (resumable)")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once, one thread each")
    ap.add_argument("--n", type=int, default=96, help="held-out images (split across the families)")
    ap.add_argument("--user-families", type=int, default=8, help="images per user-input family")
    ap.add_argument("--json", default="benchmarks/precision_quality.json")
    args = ap.parse_args(argv)
    precisions, seeds = args.precisions.split(","), [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    info = machine_info("cpu", peaks=False)
    print(f"precision_quality on {describe_line(info)}", flush=True)

    plan = [(p, s, out / f"{args.variant}-{p}-seed{s}") for p in precisions for s in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        trained = list(pool.map(lambda t: train_run(args.variant, args.profile, t[0], t[1], t[2]), plan))
    for (p, s, _), t in zip(plan, trained):
        print(f"  trained {args.variant} {p} seed {s}: " + ("already finished" if t["skipped"] else f"{t['trained_s']:.0f} s"))

    from polycolor.eval.leaderboard import run_leaderboard

    outputs = ("composite", "raw")
    lb = run_leaderboard([str(r) for _, _, r in plan], n=args.n, user_n=args.user_families, backend="torch",
                         bf16=False, outputs=outputs, reference=False, threads=2, lpips="off")
    scores: dict[str, dict[str, dict[str, list[float]]]] = {o: {p: {} for p in precisions} for o in outputs}
    for p, _, run in plan:
        for row in lb.rows:
            if row.kind == "model" and row.source and Path(row.source).resolve().is_relative_to(run.resolve()):
                for fam, metrics in {**row.by_family, "all": row.metrics}.items():
                    scores[row.output][p].setdefault(fam, []).append(float(metrics[KEY]))
    verdicts = [dict(verdict(scores[o], p, precisions[0]), output=o) for o in outputs for p in precisions[1:]]

    for o in outputs:
        print(f"\nin-polygon dE00 of the {o} output, mean +- sd over seeds {args.seeds} ({args.variant}, {args.profile}):")
        print("| family | " + " | ".join(precisions) + " |\n|---|" + "---|" * len(precisions))
        for f in scores[o][precisions[0]]:
            print(f"| {f} | " + " | ".join("{:.2f} +- {:.2f}".format(*mean_sd(scores[o][p][f])) for p in precisions)
                  + " |")
    for v in verdicts:
        print(f"{v['output']}: {v['text']}")
    vetoed = sorted({v["precision"] for v in verdicts if v["veto"]})
    print("veto: " + (", ".join(vetoed) if vetoed else f"none (add none to QUALITY_VETOES for {args.variant})"))
    result = {"machine": info, "variant": args.variant, "profile": args.profile, "seeds": seeds,
              "metric": f"{KEY} per output", "trained": dict(zip([r.name for _, _, r in plan], trained)),
              "scores": scores, "verdicts": verdicts, "vetoed": vetoed}
    from polycolor.polycolor_core.runtime.atomic import write_json_atomic

    print(f"wrote {write_json_atomic(args.json, result, sort_keys=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
