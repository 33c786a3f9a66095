"""The data the leaderboard scores on: the default held-out synthetic split, or a folder / data spec.

**Held-out data.** By default :func:`build_heldout`: ``SyntheticDataset`` with seed :data:`HELDOUT_SEED`
(= 2024_1129). Training draws its batches with seeds 0.. and its validation set with ``seed + 10000``; the
leaderboard seed is used by nothing else, so every posed / random-shape sample is one no model has seen
(the ``canonical`` family is the original format: 8 fixed shapes x 8 colours, which training sees by design).
Families (round-robin, so ``n`` splits evenly): canonical (the original format), shapes (random n-gons,
stars, crosses, arrows, irregular polygons), pose (the 8 shapes rotated/scaled/shifted, varied outline
widths), dark (dark noisy backgrounds with light outlines). Default ``n=96`` at ``size=128`` (the original
format's size). ``user_n`` adds that many samples of each user-input family of issue 13 (anti-aliased,
high-resolution, JPEG, coloured ink, paper, thick pens, all at once), each scored at its own native size.
:func:`load_eval_data` with a ``data_spec`` replaces it with a folder in the original
layout or any ``load_data`` spec (``hf:...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..polycolor_core.data.datasets import DataError, Sample, load_data

__all__ = ["HELDOUT_SEED", "HELDOUT_FAMILIES", "DEFAULT_N", "DEFAULT_SIZE", "EvalData", "build_heldout",
           "user_samples", "load_eval_data"]

HELDOUT_SEED = 2024_1129
"""Seed of the default held-out set. Training uses seeds 0.. for batches and seed+10000 for validation."""
HELDOUT_FAMILIES = ("canonical", "shapes", "pose", "dark")
DEFAULT_N = 96
DEFAULT_SIZE = 128


@dataclass
class EvalData:
    """The scored samples plus a description of where they came from."""

    samples: list[Sample]
    description: str
    spec: str
    seed: int | None = None
    size: int | None = None  # the common image size, None if sizes vary
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def inputs(self) -> list[np.ndarray]:
        return [s.input for s in self.samples]

    @property
    def targets(self) -> list[np.ndarray]:
        return [s.target for s in self.samples]

    @property
    def colours(self) -> list[str]:
        return [s.colour for s in self.samples]

    @property
    def families(self) -> list[str]:
        return [s.family for s in self.samples]

    def family_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.families:
            out[f] = out.get(f, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"description": self.description, "spec": self.spec, "n": len(self), "seed": self.seed,
                "size": self.size, "families": self.family_counts(), "notes": list(self.notes)}


def build_heldout(n: int = DEFAULT_N, size: int = DEFAULT_SIZE, seed: int = HELDOUT_SEED,
                  families: Sequence[str] = HELDOUT_FAMILIES, user_n: int = 0) -> EvalData:
    """The default held-out split: ``n`` synthetic samples, split evenly (round-robin) across ``families``;
    plus, when ``user_n > 0``, ``user_n`` samples of every user-input family (``families.USER_FAMILIES``:
    anti-aliased, 256-1024 px, JPEG, coloured ink, paper, thick pens) at their own native size."""
    from ..polycolor_core.data.synthetic import SyntheticDataset

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if user_n < 0:
        raise ValueError(f"user_n must be 0 or more, got {user_n}")
    ds = SyntheticDataset(tuple(families), n, seed, size)
    samples = list(ds)
    samples += user_samples(user_n, seed)
    data = EvalData(samples, "", f"synthetic:{'+'.join(ds.families)}?n={n}&seed={seed}&size={size}", seed,
                    None if user_n else size)
    counts = ", ".join(f"{f} {c}" for f, c in data.family_counts().items())
    user = f" plus {user_n} per user-input family at its native size (up to 1024 px)" if user_n else ""
    data.description = (f"held-out synthetic split: {n} images at {size}x{size} px{user}, seed {seed} (never "
                        f"used for training); {counts}")
    return data


USER_STREAM = 13
"""Second seed word of the user-family samples: ``rng([seed, USER_STREAM, family index, j])``, a stream no
``SyntheticDataset`` draws from (those use ``rng([seed, index])``)."""


def user_samples(per_family: int, seed: int = HELDOUT_SEED) -> list[Sample]:
    """``per_family`` samples of every family in ``families.USER_FAMILIES``, each at its native size."""
    from ..polycolor_core.data.families import USER_FAMILIES, make_family_sample

    return [make_family_sample(np.random.default_rng([int(seed), USER_STREAM, fi, j]), fam, native=True)
            for fi, fam in enumerate(USER_FAMILIES) for j in range(int(per_family))]


def load_eval_data(data_spec: str | Path | None = None, n: int | None = None, size: int | None = None,
                   user_n: int = 0) -> EvalData:
    """The held-out split (``data_spec=None``; ``user_n``: see :func:`build_heldout`), or ``n`` samples of a
    folder / ``load_data`` spec.

    For a spec, ``n`` caps the number of samples (default: all) and ``size`` resizes inputs and targets
    (bilinear; default: keep each image's own size). Raises ``DataError`` for unreadable data.
    """
    if data_spec is None or str(data_spec).strip() == "":
        return build_heldout(DEFAULT_N if n is None else n, DEFAULT_SIZE if size is None else size,
                             user_n=user_n)
    if user_n:
        raise ValueError("user-input families are part of the held-out split only; drop --user-families "
                         "or --data")
    from ..polycolor_core.data.imageio import resize_image

    src = load_data(data_spec)
    total = len(src)
    k = total if n is None else min(int(n), total)
    if k < 1:
        raise DataError(f"{data_spec}: no samples to score (the dataset is empty)")
    samples = [src[i] for i in range(k)]
    notes = []
    if size is not None:
        resized = 0
        for s in samples:
            if s.input.shape[:2] != (size, size) or s.target.shape[:2] != (size, size):
                s.input, s.target = resize_image(s.input, size), resize_image(s.target, size)
                resized += 1
        if resized:
            notes.append(f"{resized} of {k} images resized to {size}x{size} px (bilinear)")
    shapes = {s.input.shape[:2] for s in samples}
    common = next(iter(shapes))[0] if len(shapes) == 1 and len(set(next(iter(shapes)))) == 1 else None
    size_txt = f"{common}x{common} px" if common else "mixed sizes " + ", ".join(
        f"{w}x{h}" for h, w in sorted(shapes))
    desc = f"{data_spec}: {k} images" + (f" (of {total})" if k < total else "") + f" at {size_txt}"
    return EvalData(samples, desc, str(data_spec), None, common, notes)
