"""The pictures of ``polycolor reproduce``'s report: loss curves per run, and the budget sweep of the claims that
did not hold (the metric against training images, at 1x and 4x the steps, mean ± sd over seeds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["read_metrics", "plot_loss_curves", "plot_budget_sweep"]


def read_metrics(run: Path) -> list[dict]:
    """A run's ``metrics.jsonl`` rows (one per epoch); [] when it has none yet."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curves(jobs, dest: Path) -> Path | None:
    """One PNG: training loss and validation in-polygon ΔE per epoch, one line per run (``RunJob``s of one seed)."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for job in jobs:
        rows = read_metrics(job.folder)
        if not rows:
            continue
        drawn = True
        ep = [r["epoch"] for r in rows]
        a.plot(ep, [r["loss"] for r in rows], marker="o", label=job.run)
        b.plot(ep, [r.get("val_de76_polygon", float("nan")) for r in rows], marker="o", label=job.run)
    if not drawn:
        plt.close(fig)
        return None
    a.set(title="training loss (composite)", xlabel="epoch", yscale="log")
    b.set(title="validation ΔE76 inside the polygon", xlabel="epoch", yscale="log")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)
    return dest


def _seed_means(scores: dict, run: str, metric: str, sel) -> list[float]:
    """Per seed, the run's mean metric over the (selected) held-out images."""
    out = []
    for seed in sorted(scores):
        vals = scores[seed].get(run, {}).get(metric)
        if vals is not None:
            v = np.asarray(vals, np.float64)
            out.append(float(np.nanmean(v[sel] if sel is not None else v)))
    return out


def plot_budget_sweep(claims, sweep: dict, scores1: dict, scores4: dict, images: dict, dest: Path,
                      families=None) -> Path | None:
    """One panel per swept claim: its metric against training images for both runs, at 1x and the sweep's steps.

    ``claims``: the 1x ``ClaimResult``s; ``sweep``: {claim id: the swept ``ClaimResult``}; ``scores1``/``scores4``:
    {seed: {run: {metric: per image}}}; ``images``: {(run, scale): training images}; ``families``: each held-out
    image's family (for claims on one family)."""
    from .eval.schema import METRICS

    swept = [c for c in claims if c.claim.id in sweep]
    if not swept:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(swept), figsize=(4.6 * len(swept), 3.8), squeeze=False)
    fams = np.asarray(list(families)) if families is not None else None
    for ax, c in zip(axes[0], swept):
        sel = (fams == c.claim.family) if (c.claim.family and fams is not None) else None
        scale = max(s for (_, s) in images)
        for run, colour in ((c.better, "tab:blue"), (c.worse, "tab:orange")):
            xs, ys, es = [], [], []
            for sc, scores in ((1, scores1), (scale, scores4)):
                m = _seed_means(scores, run, c.claim.metric, sel)
                if m and (run, sc) in images:
                    xs.append(images[(run, sc)])
                    ys.append(float(np.mean(m)))
                    es.append(float(np.std(m, ddof=1)) if len(m) > 1 else 0.0)
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=colour, label=run)
        s = sweep[c.claim.id]
        ax.set(xscale="log", xlabel="training images", ylabel=METRICS[c.claim.metric].label
               + (f" on {c.claim.family}" if c.claim.family else ""),
               title=f"claim {c.claim.id}: {c.verdict} -> {s.verdict}")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if any(math.isnan(y) for y in ax.get_ylim()):
            ax.set_ylim(0, 1)
    fig.suptitle("budget sweep: the claims that did not hold, at 1x and 4x the steps (mean ± sd over seeds)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)
    return dest
