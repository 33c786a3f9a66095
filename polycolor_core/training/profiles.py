"""Training/evaluation profiles: named bundles of settings (``polycolor reproduce --list-profiles``), and the runs
of the study that ``polycolor reproduce`` trains with them.

The runs (:data:`STUDY_RUNS`): the study's ablation m1-m7 and **the study's m8** (``m8-study``: the m8 variant on
the ablation's data, schedule and text-only conditioning, so "m8 is best" is read from a like-for-like model); the
control **m4-nodark** (m4 trained without the dark noisy family, for the claim that augmentation is what makes dark
backgrounds work); and **m8-everyday**, the model the run leaves behind for daily use (``polycolor train m8`` trains
the same: every family, the wide palette, RGB token + FiLM). Each run's settings: the profile's shared ``train``,
then the run's own, then the profile's overrides for that run name (:func:`run_settings`).

- ``cpu``     the default: the study reproduced on 2 CPU cores (38.6 min on a 2-core Xeon without native bf16). m1-m7 and
              m8-study get 800 generated pairs per epoch (batch 4: 200 steps per epoch; the study's 5/10/15 epochs
              are 1000/2000/3000 steps) at 32 px, lr 1e-3 (m5, twice as wide and deep: 5e-4), SSIM and LPIPS ramped
              in over the first half, precision ``auto`` (per model the faster of fp32 and native bf16, timed once
              per machine, unless quality vetoes bf16: ``training_precision.py``), LPIPS when its weights load.
              Measured (issue 24, one process, one thread, 96 held-out images, raw output, all families, in-polygon
              dE00): m1 12.56 after 250 steps -> 5.36 after 1000; m3 10.65 -> 4.95; m4 21.36 -> 4.69. At 250 steps
              the ablation sits on its plateau and ranks noise; at 1000 the study's order appears.
              This schedule, seed 0, from a fresh clone on a 2-core Xeon without native bf16 (fp32), 44.5 min, with
              the LAB term in raw units: raw in-polygon dE00 m1 5.08, m2 5.52, m3 5.12, m4 7.61, m5 3.38, m6 3.32,
              m7 2.98, m8-study 2.78, m4-nodark 4.64. In raw units m4's LAB term outweighed the rest ~100x and
              m4 collapsed on the dark family (dE00 22.2, IoU 0.61). With ``lab_unit=100`` (trainconfig.py), from a
              fresh clone at 24dc503, same Xeon, 38.6 min: m1 5.08, m2 5.52, m3 5.12 (bit-identical: no LAB term),
              m4 4.39, m5 3.28, m6 3.88, m7 3.33, m8-study 2.85, m4-nodark 7.09 (dark: m4 8.55, m4-nodark 19.9).
              m8-everyday: 750 steps (the study's 15 epochs of 200 pairs), 72% at 32 px and the rest at 64 px, on
              every data family (dark drawn twice), on canonical+xkcd+hex colours with the RGB token and FiLM.
- ``demo``    the 10-minute tour (stop 11 to 23's default): the same runs at 48 pairs per epoch (60-180 steps). **It
              ranks nothing**: the ablation stays on its plateau (in-polygon dE00 26-51) and its order is noise; it
              shows the pipeline end to end and leaves a usable m8-everyday.
- ``report``  the study's setup: 128 px, batch 16, lr 1e-4, fp32 (the study's precision, kept explicit rather than
              ``auto`` so the report profile *is* the study and deviations are measured against it), the CLIP
              ViT-B/32 text encoder and LPIPS required, each variant's own epoch count. A GPU job. Both CLIP and
              LPIPS weights need a download: offline, both stop at once with the fix. ``--text-encoder minilm-l6``
              is the documented switch to the packaged offline encoder (recorded as a deviation).
- ``tiny``    seconds-long runs of test-sized models, for the test suite.

m8-everyday's settings, measured (one run each, 750 steps of 4, 32 -> 64 px at 72%, AVX2 EPYC, one core each;
composite dE00 on the dark family / the worst other family, held-out XKCD / hex dE00 of the colour table):
  text+rgb:                                  dark 52.7 / 2.7,  10.7 / 9.2   (509 s)
  text+rgb+film, Fourier features to 2^5 pi: dark 1.66 / 0.64, 5.4 / 5.2    (598 s beside another m8)
  text+rgb+film, to 2^2 pi:                  dark 3.65 / 0.27, 3.0 / 2.9
  text+rgb+film, pi only:                    dark 1.34 / 0.43, 2.3 / 2.0
  text+rgb+film, pi only, dark drawn twice:  dark 0.92 / 0.48, 2.6 / 2.6    (625 s beside another m8) <- kept
  text+rgb+film, no sin/cos (RGB, LAB):      dark 1.80 / 0.38, 2.5 / 2.5
Before FiLM (text+rgb) other schedules were tried and dropped: 32 -> 64 px at 85% (dark 29.4), 32 -> 96 px at 90%
(30.4), 32 -> 64 -> 112 px (6.8, but 698 s), dark drawn twice (13.1, and canonical 6.0). The composite snaps the
mask to the user's outline at full resolution, so m8 needs no 112 px finish for its IoU (a 64 px model's raw output
scores IoU ~0.95, its composite 1.000). Short ablation runs need the SSIM/LPIPS ramps: at full weight from step 0,
m3 paints every polygon one grey-brown mean colour after 250 steps (canonical dE00 42, ramped 8.0; m2 with LPIPS
42.9, ramped 9.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DATA_MIX = "synthetic:canonical+pose+shapes+dark"
# m8-everyday's mix: every family, with the dark noisy one drawn twice (2 of 11 draws, round-robin in this order),
# the family it learns last (composite dE00 on dark 1.34 drawn once, 0.92 twice; the others stay <= 0.5).
M8_DATA_MIX = "synthetic:canonical+pose+shapes+dark+antialias+jpeg+dark+ink+paper+pens+user"

ABLATION = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8-study")
"""The study's eight, as the study trained them: one data mix, one schedule, text-only conditioning."""
CONTROLS = ("m4-nodark",)
"""Runs that exist to test a claim: m4 without the dark family (claim 8)."""
EVERYDAY = "m8-everyday"
"""The model ``polycolor reproduce`` leaves behind for everyday use (trained for the first seed only)."""
STUDY_RUNS = ABLATION + CONTROLS + (EVERYDAY,)

# The everyday m8 (also what `polycolor train m8 --profile cpu|demo` trains): see the module docstring. Its
# settings and every number measured on it (the table above, the README's) are with the LAB term in raw units, so it
# keeps them (lab_unit=1) until it is measured again with the study runs' unit.
_EVERYDAY = dict(data=M8_DATA_MIX, colours="canonical+xkcd+hex", conditioning="text+rgb+film", lab_unit=1.0)
_EVERYDAY_CPU = dict(variant="m8", image_size=64, size_schedule=((32, 0.72),), samples_per_epoch=200, **_EVERYDAY)
# What every profile's runs add on top of the profile: their variant and, for the control, its data.
RUNS: dict[str, dict] = {"m8-study": dict(variant="m8"), "m4-nodark": dict(variant="m4", drop_family="dark"),
                         EVERYDAY: dict(variant="m8")}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    train: dict = field(default_factory=dict)  # TrainConfig overrides
    variants: dict = field(default_factory=dict)  # {"m5": {...}, "m8-everyday": {...}}: overrides per run name
    eval_n: int = 96  # held-out images per leaderboard run (split across the four held-out families)
    ranks: bool = True  # False: the schedule is too short for the ablation's order to mean anything (demo)


_CPU_TRAIN = dict(image_size=32, batch_size=4, lr=1e-3, epoch_scale=1.0, samples_per_epoch=800, precision="auto",
                  ssim_warmup_frac=0.5, lpips_warmup_frac=0.5, lpips="auto", data=DATA_MIX, text_encoder="minilm-l6",
                  conditioning="text")

PROFILES: dict[str, Profile] = {
    "cpu": Profile(
        "cpu",
        "the study reproduced on 2 CPU cores (~45 min without native bf16): m1-m7 and the study's m8 at 800 pairs per "
        "epoch (the study's 5/10/15 epochs = 1000/2000/3000 steps of 4) at 32 px, lr 1e-3 (m5: 5e-4), SSIM and LPIPS "
        "ramped in over the first half, precision auto, LPIPS if available; m4 without the dark family (claim 8); "
        "m8-everyday 750 steps at 32 -> 64 px on every family and the wide palette",
        _CPU_TRAIN,
        variants={"m8": _EVERYDAY_CPU, EVERYDAY: _EVERYDAY_CPU, "m5": dict(lr=5e-4)},
        eval_n=96,
    ),
    "demo": Profile(
        "demo",
        "a 10-minute tour that RANKS NOTHING: the same runs at 48 pairs per epoch (60-180 steps), where the ablation "
        "sits on its plateau (in-polygon dE00 26-51) and its order is noise; m8-everyday as in cpu",
        {**_CPU_TRAIN, "samples_per_epoch": 48},
        variants={"m8": _EVERYDAY_CPU, EVERYDAY: _EVERYDAY_CPU, "m5": dict(lr=5e-4)},
        eval_n=64,
        ranks=False,
    ),
    "report": Profile(
        "report",
        "the study's schedule: 128 px, batch 16, lr 1e-4, fp32, CLIP ViT-B/32 text encoder, 5/10/15 epochs of 4096 "
        "generated pairs, LPIPS required (GPU)",
        dict(image_size=128, batch_size=16, lr=1e-4, epoch_scale=1.0, samples_per_epoch=4096, precision="fp32",
             lpips="require", data=DATA_MIX, text_encoder="clip-vit-b32", conditioning="text"),
        variants={EVERYDAY: _EVERYDAY},
        eval_n=384,
    ),
    "tiny": Profile(
        "tiny",
        "test-sized models for a few steps at 32 px (the test suite; not a real model)",
        dict(image_size=32, batch_size=4, lr=3e-3, epochs=1, samples_per_epoch=8, precision="auto", lpips="drop",
             data="synthetic:canonical", text_encoder="test-tiny-random", tiny_model=True, val_samples=4,
             conditioning="text"),
        eval_n=8,
        ranks=False,
    ),
}


def run_variant(run: str) -> str:
    """The registered variant a run trains: ``m8-study`` -> ``m8``; a variant name is its own run."""
    return RUNS.get(run, {}).get("variant", run)


def without_family(data: str, family: str) -> str:
    """A ``synthetic:`` data spec without one family: ``synthetic:canonical+dark?n=8`` -> ``synthetic:canonical?n=8``.

    Other specs (folders, HF datasets) cannot be split by family: a clear error says so."""
    if not data.startswith("synthetic:"):
        raise ValueError(f"the {family!r}-free control run needs a synthetic: data spec to drop the family from, not "
                         f"{data!r}; train it with --data synthetic:FAM+FAM")
    fams, _, query = data[len("synthetic:"):].partition("?")
    kept = [f for f in fams.split("+") if f and f != family]
    if not kept:
        raise ValueError(f"{data!r} has no family left without {family!r}")
    return "synthetic:" + "+".join(kept) + (f"?{query}" if query else "")


def run_settings(profile: Profile, run: str) -> dict:
    """The TrainConfig overrides ``profile`` gives ``run`` (a variant name or one of :data:`RUNS`): the shared ones,
    the run's own (:data:`RUNS`), then the profile's for that run name; ``variant`` names the registered variant
    it trains."""
    own = dict(RUNS.get(run, {}))
    variant = own.pop("variant", run)
    drop = own.pop("drop_family", None)
    # Overrides are keyed by run, never inherited from the variant: the profile's "m8" is the everyday model, which
    # m8-study must not pick up.
    settings = {**profile.train, **own, **profile.variants.get(run, {})}
    if drop:
        settings["data"] = without_family(settings["data"], drop)
    settings["variant"] = variant
    return settings


def parse_runs(text: str | None) -> list[str]:
    """``--models`` of ``polycolor reproduce``: run names and ranges over :data:`STUDY_RUNS`' order, comma-separated
    (``m1..m4,m4-nodark``; ``all`` or empty = every run). Variant names not in the list (``m8``) are runs too."""
    from ..model.variants import VARIANTS

    if not text or text.strip().lower() == "all":
        return list(STUDY_RUNS)
    order = list(STUDY_RUNS)
    valid = list(dict.fromkeys(order + list(VARIANTS)))
    out: list[str] = []
    for token in (t.strip().lower() for t in text.split(",") if t.strip()):
        if ".." in token:
            a, _, b = token.partition("..")
            b = "m8-study" if b == "m8" else b
            if a not in order or b not in order or order.index(a) > order.index(b):
                raise ValueError(f"--models {text!r}: bad range {token!r}; ranges run forward over "
                                 f"{', '.join(order)}")
            out += order[order.index(a):order.index(b) + 1]
        elif token in valid:
            out.append(token)
        else:
            raise ValueError(f"--models {text!r}: unknown run {token!r}; valid runs are {', '.join(valid)} "
                             "(m8 alone is the everyday m8's settings under the name m8)")
    return list(dict.fromkeys(out))


def profile_train_settings(profile: Profile, variant: str) -> dict:
    """:func:`run_settings` without the ``variant`` key (the TrainConfig fields alone)."""
    settings = run_settings(profile, variant)
    settings.pop("variant")
    return settings


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)} "
                         "(`polycolor reproduce --list-profiles` describes them)")
    return PROFILES[name]
