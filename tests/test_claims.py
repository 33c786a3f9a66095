"""The claims' verdict logic on hand-made numbers: holds, does not hold (within noise, reversed, unstable curve not
the noisier one), not testable here (missing run, missing metric, missing family), the runner-up of claim 7, and the
paired bootstrap itself."""

import numpy as np
import pytest

from polycolor.eval.claims import (CLAIMS, DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, claims_markdown, judge_claims,
                                   paired_bootstrap, verdict)

FAMS = ["canonical", "shapes", "pose", "dark"] * 12  # 48 held-out images


def _scores(runs: dict[str, float], seeds=(0, 1, 2), noise=0.3, metric="de_polygon", seed=0, extra=None):
    """{seed: {run: {metric: [48]}}}: each run's per-image values around its given mean, with shared image
    difficulty (what the pairing cancels) and a little independent noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.gamma(2.0, 2.0, size=len(FAMS))  # [N], the same images for every run and seed
    out = {}
    for s in seeds:
        out[s] = {}
        for run, mean in runs.items():
            vals = difficulty + mean + rng.normal(0, noise, size=len(FAMS))
            out[s][run] = {metric: vals.tolist(), **(extra or {})}
    return out


def _one(claim_id: int):
    return [c for c in CLAIMS if c.id == claim_id]


def test_there_are_eight_claims_each_on_a_known_metric():
    from polycolor.eval.schema import METRICS

    assert [c.id for c in CLAIMS] == list(range(1, 9))
    assert all(c.metric in METRICS and all(k in METRICS for k in c.shown) for c in CLAIMS)
    assert {c.better for c in CLAIMS} | {c.worse for c in CLAIMS} >= {"m1", "m2", "m3", "m4", "m5", "m6", "m7",
                                                                    "m8-study", "m4-nodark"}


def test_a_clear_gain_holds_and_noise_does_not():
    r = judge_claims(_scores({"m4": 2.0, "m3": 4.0}), FAMS, claims=_one(3))[0]
    assert r.verdict == HOLDS and r.gain == pytest.approx(2.0, abs=0.2) and r.ci[0] > 0
    assert r.seeds == 3 and r.images == 48 and not r.one_seed
    assert r.mean_better < r.mean_worse and r.sd_better > 0  # mean ± sd over the seeds' means
    same = judge_claims(_scores({"m4": 3.0, "m3": 3.0}, noise=1.0), FAMS, claims=_one(3))[0]
    assert same.verdict == DOES_NOT_HOLD and same.ci[0] < 0 < same.ci[1] and "includes zero" in same.why


def test_a_reversed_difference_does_not_hold_and_says_reversed():
    r = judge_claims(_scores({"m7": 5.0, "m6": 3.0}), FAMS, claims=_one(6))[0]
    assert r.verdict == DOES_NOT_HOLD and r.ci[1] < 0 and "reversed" in r.why


def test_higher_is_better_metrics_turn_the_sign():
    r = judge_claims(_scores({"m3": 0.9, "m2": 0.5}, metric="ssim", noise=0.01), FAMS, claims=_one(2))[0]
    assert r.verdict == HOLDS and r.gain == pytest.approx(0.4, abs=0.01)


def test_missing_run_metric_or_family_is_not_testable_with_why():
    r = judge_claims(_scores({"m4": 2.0}), FAMS, claims=_one(3))[0]
    assert r.verdict == NOT_TESTABLE and "m3 not trained" in r.why
    nan = {s: {run: {"de_edge": [float("nan")] * len(FAMS)} for run in ("m1", "m2")} for s in (0, 1)}
    r = judge_claims(nan, FAMS, claims=_one(1))[0]
    assert r.verdict == NOT_TESTABLE and "no ΔE00 edge values" in r.why
    no_dark = [f for f in FAMS if f != "dark"] + ["canonical"] * 12
    r = judge_claims(_scores({"m4": 1.0, "m4-nodark": 9.0}), no_dark, claims=_one(8))[0]
    assert r.verdict == NOT_TESTABLE and "no 'dark' images" in r.why


def test_claim_8_is_scored_on_the_dark_family_only():
    s = _scores({"m4": 3.0, "m4-nodark": 3.0})
    for seed in s:  # m4-nodark is only worse on the dark images
        v = np.asarray(s[seed]["m4-nodark"]["de_polygon"])
        v[np.asarray(FAMS) == "dark"] += 10
        s[seed]["m4-nodark"]["de_polygon"] = v.tolist()
    r = judge_claims(s, FAMS, claims=_one(8))[0]
    assert r.verdict == HOLDS and r.images == 12 and r.gain == pytest.approx(10, abs=0.5)


def test_claim_7_compares_with_the_runner_up():
    runs = {"m1": 9.0, "m2": 8.0, "m3": 7.0, "m4": 5.0, "m5": 6.0, "m6": 4.5, "m7": 4.0, "m8-study": 2.0}
    r = judge_claims(_scores(runs), FAMS, claims=_one(7))[0]
    assert r.worse == "m7" and r.verdict == HOLDS
    runs["m8-study"] = 4.2  # second best by mean: it is not the best of the eight
    r = judge_claims(_scores(runs), FAMS, claims=_one(7))[0]
    assert r.worse == "m7" and r.verdict == DOES_NOT_HOLD


def test_claim_4_needs_the_noisier_loss_curve_too():
    s = _scores({"m4": 3.0, "m5": 6.0})
    held = judge_claims(s, FAMS, loss_spread={"m5": [0.4, 0.5, 0.45], "m4": [0.1, 0.1, 0.12]}, claims=_one(4))[0]
    assert held.verdict == HOLDS and held.unstable == {"m4": pytest.approx(0.1067, abs=1e-3), "m5": 0.45}
    calm = judge_claims(s, FAMS, loss_spread={"m5": [0.1] * 3, "m4": [0.2] * 3}, claims=_one(4))[0]
    assert calm.verdict == DOES_NOT_HOLD and "loss curve is not the noisier" in calm.why
    unlogged = judge_claims(s, FAMS, loss_spread={}, claims=_one(4))[0]
    assert unlogged.verdict == NOT_TESTABLE and "loss_sd" in unlogged.why


def test_one_seed_is_marked_as_an_indication():
    r = judge_claims(_scores({"m4": 2.0, "m3": 4.0}, seeds=(0,)), FAMS, claims=_one(3))
    assert r[0].one_seed and r[0].verdict == HOLDS
    md = claims_markdown(r)
    assert "**holds** (one seed: an indication)" in md and "paired bootstrap" in md


def test_paired_bootstrap_uses_the_pairing():
    rng = np.random.default_rng(1)
    hard = rng.gamma(2, 5, size=(2, 200))  # large image-to-image spread
    gain, (lo, hi), n = paired_bootstrap(hard + 1.0, hard + 1.5, higher_is_better=False)
    assert n == 200 and gain == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    b = hard.copy()
    b[0, 3] = np.nan  # an image without a value in one seed is left out everywhere
    assert paired_bootstrap(b, hard, higher_is_better=False)[2] == 199
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(hard[:, :5], hard, higher_is_better=False)


def test_verdict_rule_directly():
    assert verdict(1.0, (0.2, 1.8))[0] == HOLDS
    assert verdict(0.1, (-0.2, 0.4))[0] == DOES_NOT_HOLD
    assert verdict(-1.0, (-1.5, -0.5)) == (DOES_NOT_HOLD, "reversed: the 95% interval lies below zero "
                                                         "(the other run is better)")
    assert verdict(1.0, (0.2, 1.8), missing="m5 not trained")[0] == NOT_TESTABLE
    assert verdict(float("nan"), (float("nan"), float("nan")))[0] == NOT_TESTABLE
    assert verdict(1.0, (0.2, 1.8), unstable_ok=False)[0] == DOES_NOT_HOLD
