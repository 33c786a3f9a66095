"""Training/evaluation profiles: named bundles of settings (``polycolor reproduce --list-profiles``).

- ``report``  the study's setup: 128 px, batch 16, lr 1e-4, fp32 (the study's precision, kept explicit rather than
              ``auto`` so the report profile *is* the study and deviations are measured against it), the CLIP
              ViT-B/32 text encoder and LPIPS required, each variant's own epoch count. A GPU job. Both CLIP and
              LPIPS weights need a download: offline, both stop at once with the fix. ``--text-encoder minilm-l6``
              is the documented switch to the packaged offline encoder (recorded as a deviation).
- ``cpu``     tuned for 2 CPU cores (``polycolor reproduce`` in 10.2 min from a fresh clone on an AVX2-only EPYC,
              training two models at a time, one thread each, and scoring each as it is done): batch 4, precision ``auto`` (per model the
              faster of fp32 and native bf16, timed once per machine, unless quality vetoes bf16: see
              ``training_precision.py``; emulated bf16 is never a candidate), lr 1e-3, LPIPS used
              when its weights are present and otherwise dropped *and recorded*, and the SSIM and LPIPS weights ramped
              in over the first half (at full weight from step 0, m3 paints every polygon one grey-brown mean colour
              after 250 steps: canonical dE00 42, ramped 8.0; m2 with LPIPS 42.9, ramped 9.7).
              Two budgets. **m8**, the model the run leaves behind for everyday use, gets half the machine: 750 steps
              (the study's 15 epochs of 200 pairs), 72% at 32 px and the rest at 64 px, on every data family including
              the user-input ones (dark drawn twice), on canonical+xkcd+hex colours with the RGB token and FiLM
              (``text+rgb+film``). **m1-m7**, the study's ablation,
              share the other half and score the models as they finish: 48 pairs per epoch (the study's 5/10/15
              epochs: 60-180 steps), 32 px. At that budget the ablation is on its plateau (in-polygon dE00 33-51;
              the 25-minute profile of stop 11, with 200 pairs per epoch, reached 9-23): it shows the pipeline and
              ranks little. m5, twice as wide, trains at lr 5e-4 (27.9 at 1e-3 -> 14.7 with 250 steps).
- ``tiny``    seconds-long runs of test-sized models, for the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DATA_MIX = "synthetic:canonical+pose+shapes+dark"
# m8's mix: every family, with the dark noisy one drawn twice (2 of 11 draws, round-robin in this order), the
# family it learns last (composite dE00 on dark 1.34 drawn once, 0.92 twice; the others stay <= 0.5).
M8_DATA_MIX = "synthetic:canonical+pose+shapes+dark+antialias+jpeg+dark+ink+paper+pens+user"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    train: dict = field(default_factory=dict)  # TrainConfig overrides
    variants: dict = field(default_factory=dict)  # {"m8": {...}}: per-variant overrides on top of `train`
    eval_n: int = 96  # held-out images per leaderboard run (split across families)


PROFILES: dict[str, Profile] = {
    "report": Profile(
        "report",
        "the study's schedule: 128 px, batch 16, lr 1e-4, fp32, CLIP ViT-B/32 text encoder, 5/10/15 epochs of 4096 "
        "generated pairs, LPIPS required (GPU)",
        dict(image_size=128, batch_size=16, lr=1e-4, epoch_scale=1.0, samples_per_epoch=4096, precision="fp32",
             lpips="require", data=DATA_MIX, text_encoder="clip-vit-b32", conditioning="text"),
        eval_n=384,
    ),
    "cpu": Profile(
        "cpu",
        "all eight on 2 CPU cores in 10.2 min on an AVX2-only EPYC (two models at a time): m8 750 steps at 32 -> 64 px on "
        "every family and the wide palette; m1-m7 (the study's ablation) 48 pairs per epoch at 32 px; batch 4, precision "
        "auto (the faster native precision, timed here, unless quality vetoes it), lr 1e-3 (m5: 5e-4), SSIM and LPIPS ramped in over the first half, "
        "LPIPS if available",
        dict(image_size=32, batch_size=4, lr=1e-3, epoch_scale=1.0, samples_per_epoch=48, precision="auto",
             ssim_warmup_frac=0.5, lpips_warmup_frac=0.5, lpips="auto", data=DATA_MIX, text_encoder="minilm-l6",
             conditioning="text"),
        # m8 (one run each, 750 steps of 4, 32 -> 64 px at 72%, AVX2 EPYC, one core each; composite dE00 on the dark
        # family / the worst other family, held-out XKCD / hex dE00 of the colour table):
        #   text+rgb:                                 dark 52.7 / 2.7,  10.7 / 9.2   (509 s)
        #   text+rgb+film, Fourier features to 2^5 pi: dark 1.66 / 0.64, 5.4 / 5.2   (598 s beside another m8)
        #   text+rgb+film, to 2^2 pi:                 dark 3.65 / 0.27, 3.0 / 2.9
        #   text+rgb+film, pi only:                   dark 1.34 / 0.43, 2.3 / 2.0
        #   text+rgb+film, pi only, dark drawn twice: dark 0.92 / 0.48, 2.6 / 2.6   (625 s beside another m8) <- kept
        #   text+rgb+film, no sin/cos (RGB, LAB):     dark 1.80 / 0.38, 2.5 / 2.5
        # Before FiLM (text+rgb) other schedules were tried and dropped: 32 -> 64 px at 85% (dark 29.4), 32 -> 96 px
        # at 90% (30.4), 32 -> 64 -> 112 px (6.8, but 698 s), dark drawn twice (13.1, and canonical 6.0).
        # The composite snaps the mask to the user's outline at full resolution, so m8 needs no 112 px finish for its
        # IoU (a 64 px model's raw output scores IoU ~0.95, its composite 1.000). m8 is the model `polycolor
        # reproduce` leaves behind for everyday use, so it alone trains on what people bring (the user-input
        # families: anti-aliased, JPEG, coloured ink, paper, 1-10 px pens, all at once) and on colours beyond the
        # eight (a third of the draws canonical, a third XKCD names, a third hex codes, with the resolved RGB as a
        # conditioning token that also modulates every block); m1-m7 stay the study's ablation.
        variants={"m8": dict(image_size=64, size_schedule=((32, 0.72),), samples_per_epoch=200, data=M8_DATA_MIX,
                             colours="canonical+xkcd+hex", conditioning="text+rgb+film"),
                  "m5": dict(lr=5e-4)},
        eval_n=64,  # + 1 image per user-input family (reproduce.USER_FAMILY_N): scoring fits the 12-minute budget
    ),
    "tiny": Profile(
        "tiny",
        "test-sized models for a few steps at 32 px (the test suite; not a real model)",
        dict(image_size=32, batch_size=4, lr=3e-3, epochs=1, samples_per_epoch=8, precision="auto", lpips="drop",
             data="synthetic:canonical", text_encoder="test-tiny-random", tiny_model=True, val_samples=4,
             conditioning="text"),
        eval_n=8,
    ),
}


def profile_train_settings(profile: Profile, variant: str) -> dict:
    """The TrainConfig overrides ``profile`` gives ``variant``: the shared ones, then the variant's own."""
    return {**profile.train, **profile.variants.get(variant, {})}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)} "
                         "(`polycolor reproduce --list-profiles` describes them)")
    return PROFILES[name]
