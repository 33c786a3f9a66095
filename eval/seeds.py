"""Leaderboards of several training seeds as one: each row's metrics as mean ± sd over the seeds.

``polycolor reproduce --seeds 0,1,2`` scores every seed's runs on the same held-out images (one
:class:`~polycolor.eval.leaderboard.Leaderboard` per seed); :func:`aggregate` folds them into rows of
``{metric: (mean, sd, seeds)}`` (the sd is over the seeds' per-model means: the spread training adds), overall
and per family, ranked by the mean in-polygon ΔE00. A row missing from a seed (the everyday model is trained for
the first seed only) is averaged over the seeds that have it, and the table says how many.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from .schema import DEFAULT_SORT, METRICS

__all__ = ["aggregate", "seeds_markdown", "family_seeds_markdown", "SHOWN"]

SHOWN = ("de_polygon", "de_edge", "iou", "ssim", "lpips", "bg_changed")


def _mean_sd(values: list[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else float("nan")), int(v.size)


def aggregate(boards: Mapping[int, object]) -> list[dict]:
    """[{name, kind, seeds, metrics: {key: (mean, sd, n)}, by_family: {family: {key: (mean, sd, n)}}}] ranked by
    the mean of the default sort key (lower is better), the reference last."""
    rows: dict[str, dict] = {}
    for seed in sorted(boards):
        for r in boards[seed].rows:
            row = rows.setdefault(r.name, {"name": r.name, "kind": r.kind, "seeds": [], "metrics": {}, "by_family": {}})
            row["seeds"].append(seed)
            for k in METRICS:
                row["metrics"].setdefault(k, []).append(r.metrics.get(k, float("nan")))
            for fam, vals in r.by_family.items():
                for k in METRICS:
                    row["by_family"].setdefault(fam, {}).setdefault(k, []).append(vals.get(k, float("nan")))
    out = []
    for row in rows.values():
        row["metrics"] = {k: _mean_sd(v) for k, v in row["metrics"].items()}
        row["by_family"] = {f: {k: _mean_sd(v) for k, v in d.items()} for f, d in row["by_family"].items()}
        out.append(row)
    key = DEFAULT_SORT
    return sorted(out, key=lambda r: (r["kind"] == "reference", math.isnan(r["metrics"][key][0]),
                                      r["metrics"][key][0] if not math.isnan(r["metrics"][key][0]) else 0.0))


def _cell(key: str, m: tuple[float, float, int]) -> str:
    mean, sd, _ = m
    if math.isnan(mean):
        return "n/a"
    fmt = METRICS[key].fmt
    return f"{mean:{fmt}}" + ("" if math.isnan(sd) else f" ± {sd:{fmt}}")


def seeds_markdown(rows: list[dict], n_seeds: int) -> str:
    """The mean ± sd leaderboard as a markdown table (``seeds`` column: how many seeds a row has)."""
    head = ["rank", "model", "seeds", *[METRICS[k].label for k in SHOWN]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rank = 0
    for r in rows:
        rank_cell = "ref" if r["kind"] == "reference" else str(rank := rank + 1)
        seeds = "-" if r["kind"] == "reference" else f"{len(r['seeds'])}/{n_seeds}"
        lines.append("| " + " | ".join([rank_cell, r["name"], seeds, *[_cell(k, r["metrics"][k]) for k in SHOWN]])
                     + " |")
    return "\n".join(lines)


def family_seeds_markdown(rows: list[dict], key: str = "de_polygon") -> str:
    """One metric (mean ± sd over seeds) per family and model."""
    fams = list(dict.fromkeys(f for r in rows for f in r["by_family"]))
    lines = ["| model | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(_cell(key, r["by_family"].get(f, {}).get(key, (math.nan,) * 3))
                                                      for f in fams) + " |")
    return "\n".join(lines)
