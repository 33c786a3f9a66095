"""The study's findings as testable claims, and the verdict our runs give each one.

One :class:`Claim` per finding (:data:`CLAIMS`): which run should beat which, on which metric (and which held-out
family), measured on the models' raw output (the study's picture). :func:`judge_claims` turns per-image scores
(``{seed: {run: {metric: [N]}}}``, the same held-out images for every run and seed) into one
:class:`ClaimResult` each:

- **the test**: a paired bootstrap of the mean difference. Each resample draws the seeds (with replacement, when
  there are two or more) and the held-out images (with replacement), keeping every image paired across the two
  runs and every run paired within a seed, so both the images and the training seeds' spread are in the interval;
  :data:`N_BOOT` resamples, a 95% percentile interval.
- **the verdict**: *holds* when the whole interval lies on the claimed side of zero; *does not hold* otherwise
  (*reversed* when it lies wholly on the other side); *not testable here* when a run or the metric is missing, with
  why. With one seed the verdict is marked as a one-seed indication: the interval then only covers the images.

Claim 4 (m5 unstable) also needs the loss curve: m5's step-to-step loss spread in its last epoch (``loss_sd /
loss`` from ``metrics.jsonl``) above m4's, beside m5 scoring worse. Claim 7 compares the study's m8 with the best
of the other seven by mean (the runner-up). The numbers are never hard-coded: everything comes from the runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .schema import METRICS

__all__ = ["Claim", "ClaimResult", "CLAIMS", "N_BOOT", "HOLDS", "DOES_NOT_HOLD", "NOT_TESTABLE", "paired_bootstrap",
           "verdict", "judge_claims", "claims_markdown"]

N_BOOT = 4000
HOLDS, DOES_NOT_HOLD, NOT_TESTABLE = "holds", "does not hold", "not testable here"
TEST_NAME = (f"paired bootstrap over held-out images and seeds ({N_BOOT} resamples), 95% CI of the mean "
             "difference")


@dataclass(frozen=True)
class Claim:
    id: int
    finding: str  # the study's words, shortened
    better: str  # the run that should come out better
    worse: str  # the run it should beat; "*" = the best of the rest of the ablation (by mean)
    metric: str  # the metric that tests it (a ``schema.METRICS`` key)
    family: str | None = None  # score on this held-out family only
    shown: tuple[str, ...] = ()  # further metrics shown beside it (not part of the verdict)
    unstable: str | None = None  # claim 4: this run's loss curve must also be the noisier one


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "LPIPS sharpens edges over MSE alone, while colour stays weak", "m2", "m1", "de_edge",
          shown=("iou", "lpips", "de_polygon")),
    Claim(2, "SSIM gives a marginal structural gain", "m3", "m2", "ssim", shown=("de_edge",)),
    Claim(3, "the LAB colour loss is what fixes colour", "m4", "m3", "de_polygon", shown=("de_image",)),
    Claim(4, "the deeper m5 is unstable in 5 epochs", "m4", "m5", "de_polygon", unstable="m5"),
    Claim(5, "the refined architecture at 10 epochs beats 5 epochs of the baseline", "m6", "m4", "de_polygon",
          shown=("iou",)),
    Claim(6, "15 epochs refine further", "m7", "m6", "de_polygon", shown=("iou",)),
    Claim(7, "the study's m8 is the best of the eight", "m8-study", "*", "de_polygon", shown=("iou",)),
    Claim(8, "augmentation is what makes dark noisy backgrounds work", "m4", "m4-nodark", "de_polygon",
          family="dark", shown=("iou",)),
)

ABLATION_RUNS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8-study")


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str
    why: str = ""  # the reason for "not testable here", or the rule's reading
    better: str = ""
    worse: str = ""
    seeds: int = 0
    images: int = 0
    mean_better: float = float("nan")  # mean over seeds of the per-seed means
    sd_better: float = float("nan")  # sd over seeds of the per-seed means (nan with one seed)
    mean_worse: float = float("nan")
    sd_worse: float = float("nan")
    gain: float = float("nan")  # mean improvement of ``better`` over ``worse`` (positive = the claimed direction)
    ci: tuple[float, float] = (float("nan"), float("nan"))
    shown: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (better mean, worse mean)
    unstable: dict[str, float] | None = None  # claim 4: loss spread per run

    @property
    def one_seed(self) -> bool:
        return self.seeds == 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["claim"] = dataclasses.asdict(self.claim)
        d["test"] = TEST_NAME
        d["one_seed"] = self.one_seed
        return d


def paired_bootstrap(better: np.ndarray, worse: np.ndarray, higher_is_better: bool, n_boot: int = N_BOOT,
                     seed: int = 0) -> tuple[float, tuple[float, float], int]:
    """(mean gain, 95% CI, images used) of ``better`` over ``worse``, both ``[seeds, images]`` on the same images.

    Gain = worse - better for a lower-is-better metric (and better - worse otherwise), so positive always means
    the claimed direction. Images where either run has no value (NaN in any seed) are left out of every resample.
    """
    b, w = np.atleast_2d(np.asarray(better, np.float64)), np.atleast_2d(np.asarray(worse, np.float64))
    if b.shape != w.shape:
        raise ValueError(f"paired scores must have the same shape [seeds, images], got {b.shape} and {w.shape}")
    d = (b - w) if higher_is_better else (w - b)  # [S, N]
    keep = ~np.isnan(d).any(axis=0)
    d = d[:, keep]
    s, n = d.shape
    if n == 0:
        return float("nan"), (float("nan"), float("nan")), 0
    rng = np.random.default_rng(seed)
    seeds = rng.integers(s, size=(n_boot, s)) if s > 1 else np.zeros((n_boot, 1), int)  # [B, S]
    images = rng.integers(n, size=(n_boot, n))  # [B, N]
    # mean over the drawn seeds of each drawn seed's mean over the drawn images: [B]
    stats = np.stack([d[seeds[:, j][:, None], images].mean(axis=1) for j in range(seeds.shape[1])], 1).mean(1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(d.mean()), (float(lo), float(hi)), int(n)


def verdict(gain: float, ci: tuple[float, float], missing: str = "", unstable_ok: bool | None = None) -> tuple[str, str]:
    """(verdict, reading) from a paired test's interval; ``missing`` names what makes it untestable;
    ``unstable_ok``: claim 4's loss-curve condition (None = not part of the claim)."""
    if missing:
        return NOT_TESTABLE, missing
    lo, hi = ci
    if any(math.isnan(v) for v in (gain, lo, hi)):
        return NOT_TESTABLE, "no image has a value for both runs"
    if lo > 0:
        if unstable_ok is False:
            return DOES_NOT_HOLD, "it scores worse, but its loss curve is not the noisier one"
        return HOLDS, "the 95% interval of the gain lies above zero"
    if hi < 0:
        return DOES_NOT_HOLD, "reversed: the 95% interval lies below zero (the other run is better)"
    return DOES_NOT_HOLD, "the 95% interval of the gain includes zero"


Scores = Mapping[int, Mapping[str, Mapping[str, Sequence[float]]]]  # {seed: {run: {metric: per image}}}


def _stack(scores: Scores, run: str, metric: str, sel: np.ndarray | None) -> np.ndarray | None:
    """[seeds, images] of one run's metric, or None when a seed lacks the run or the metric."""
    rows = []
    for seed in sorted(scores):
        vals = scores[seed].get(run, {}).get(metric)
        if vals is None:
            return None
        v = np.asarray(vals, np.float64)
        rows.append(v[sel] if sel is not None else v)
    return np.stack(rows) if rows else None


def _seed_mean_sd(x: np.ndarray) -> tuple[float, float]:
    per_seed = np.nanmean(x, axis=1)  # [S]
    return float(per_seed.mean()), (float(per_seed.std(ddof=1)) if per_seed.size > 1 else float("nan"))


def judge_claims(scores: Scores, families: Sequence[str], loss_spread: Mapping[str, Sequence[float]] | None = None,
                 claims: Sequence[Claim] = CLAIMS) -> list[ClaimResult]:
    """One :class:`ClaimResult` per claim. ``families``: the held-out family of each image (the same order as the
    scores); ``loss_spread``: ``{run: per-seed last-epoch loss_sd / loss}`` for claim 4."""
    fams = np.asarray(list(families))
    seeds = sorted(scores)
    out = []
    for c in claims:
        sel = None
        missing = ""
        if c.family is not None:
            sel = fams == c.family
            if not sel.any():
                missing = f"the held-out data has no {c.family!r} images"
        worse = c.worse
        if worse == "*":
            rivals = {r: np.nanmean(x) for r in ABLATION_RUNS if r != c.better
                      and (x := _stack(scores, r, c.metric, sel)) is not None}
            if not rivals:
                missing = missing or "none of the other seven study models was scored"
                worse = "the other seven"
            else:
                pick = max if METRICS[c.metric].higher_is_better else min
                worse = pick(rivals, key=rivals.get)
        res = ClaimResult(c, NOT_TESTABLE, better=c.better, worse=worse, seeds=len(seeds))
        b = _stack(scores, c.better, c.metric, sel) if not missing else None
        w = _stack(scores, worse, c.metric, sel) if not missing else None
        absent = [r for r, x in ((c.better, b), (worse, w)) if x is None]
        if not missing and absent:
            missing = f"{' and '.join(absent)} not trained and scored for every seed ({', '.join(map(str, seeds))})"
        if not missing and (np.isnan(b).all() or np.isnan(w).all()):
            missing = f"no {METRICS[c.metric].label} values (e.g. LPIPS unavailable)"
        unstable_ok = None
        if not missing:
            res.mean_better, res.sd_better = _seed_mean_sd(b)
            res.mean_worse, res.sd_worse = _seed_mean_sd(w)
            res.gain, res.ci, res.images = paired_bootstrap(b, w, METRICS[c.metric].higher_is_better)
            for k in c.shown:
                xb, xw = _stack(scores, c.better, k, sel), _stack(scores, worse, k, sel)
                if xb is not None and xw is not None and not (np.isnan(xb).all() or np.isnan(xw).all()):
                    res.shown[k] = (float(np.nanmean(xb)), float(np.nanmean(xw)))
            if c.unstable:
                spread = {r: float(np.mean(loss_spread[r])) for r in (c.better, worse)
                          if loss_spread and loss_spread.get(r)}
                if len(spread) < 2:
                    missing = "the loss curves' step-to-step spread was not logged (metrics.jsonl loss_sd)"
                else:
                    res.unstable = spread
                    other = c.better if c.unstable == worse else worse
                    unstable_ok = spread[c.unstable] > spread[other]
        res.verdict, res.why = verdict(res.gain, res.ci, missing, unstable_ok)
        out.append(res)
    return out


def _pm(mean: float, sd: float, fmt: str) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:{fmt}}" + ("" if math.isnan(sd) else f" ± {sd:{fmt}}")


def claims_markdown(results: Sequence[ClaimResult], sweep: Mapping[int, ClaimResult] | None = None) -> str:
    """The claims table: one row per finding, our numbers (mean ± sd over seeds), the test and the verdict;
    ``sweep``: the same claims at 4x the steps (budget sweep), shown in their own column."""
    head = "| # | the study's finding | metric | ours: better vs worse (mean ± sd over seeds) | gain [95% CI] | verdict |"
    cols = "|---|---|---|---|---|---|"
    if sweep:
        head += " at 4x steps |"
        cols += "---|"
    lines = [head, cols]
    for r in results:
        m = METRICS[r.claim.metric]
        metric = m.label + (f" on {r.claim.family}" if r.claim.family else "") + (" + loss spread" if r.claim.unstable else "")
        if r.verdict == NOT_TESTABLE and math.isnan(r.mean_better):
            ours, gain = "-", "-"
        else:
            ours = (f"{r.better} {_pm(r.mean_better, r.sd_better, m.fmt)} vs {r.worse} "
                    f"{_pm(r.mean_worse, r.sd_worse, m.fmt)}")
            extra = [f"{METRICS[k].label} {a:{METRICS[k].fmt}} vs {b:{METRICS[k].fmt}}" for k, (a, b) in r.shown.items()]
            if r.unstable:
                extra.append("loss spread " + " vs ".join(f"{k} {v:.3f}" for k, v in r.unstable.items()))
            ours += ("; " + "; ".join(extra)) if extra else ""
            gain = f"{r.gain:+{m.fmt}} [{r.ci[0]:+{m.fmt}}, {r.ci[1]:+{m.fmt}}]" if not math.isnan(r.gain) else "-"
        word = f"**{r.verdict}**" + (" (one seed: an indication)" if r.one_seed and r.verdict != NOT_TESTABLE else "")
        row = f"| {r.claim.id} | {r.claim.finding} | {metric} | {ours} | {gain} | {word}: {r.why} |"
        if sweep:
            s = sweep.get(r.claim.id)
            row += (f" {s.verdict} ({s.gain:+{m.fmt}} [{s.ci[0]:+{m.fmt}}, {s.ci[1]:+{m.fmt}}]) |" if s else " - |")
        lines.append(row)
    lines += ["", f"Test: {TEST_NAME}; n = held-out images x seeds. Gain is positive in the claimed direction "
                  "(lower ΔE00, higher SSIM/IoU). Raw model output, the study's picture."]
    return "\n".join(lines)
