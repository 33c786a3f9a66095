"""Data plumbing for training: deterministic batches, the fixed validation set, and sample-grid PNGs.

A batch is a pure function of (seed, step, rank): generated data is indexed by sample number, folder and
Hugging Face data by a per-epoch permutation, and augmentation draws from a generator seeded with the same
numbers. That is what makes ``--resume`` exact and DDP ranks disjoint without any saved data-loader state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.augment import PairedAugment
from ..data.datasets import Sample, load_data, parse_synthetic
from ..data.imageio import resize_image


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float32 [B,3,H,W] in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_images(t: torch.Tensor) -> np.ndarray:
    """float [B,3,H,W] 0..1 -> uint8 [B,H,W,3] (rounded, clamped)."""
    return (t.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def resize_pair(sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize both images exactly as inference resizes inputs (``imageio.resize_image``)."""
    return resize_image(sample.input, size), resize_image(sample.target, size)


class TrainBatches:
    """``batch(step) -> (inputs uint8 [B,H,W,3], targets uint8 [B,H,W,3], colours list[str])``."""

    def __init__(self, spec: str, size: int, batch_size: int, seed: int, augment: bool, rank: int = 0,
                 world: int = 1, samples_per_epoch: int = 1024, source_size: int = 128, colours: str = ""):
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.augment = PairedAugment() if augment else None
        syn = parse_synthetic(spec)  # the one spec parser: ?colours=/size=/seed= given in the spec are honoured
        global_batch = batch_size * world
        if syn is not None:
            self.synthetic = syn.dataset(n=2**31 - 1, seed=syn.seed if "seed" in syn.given else seed,
                                         size=syn.size if "size" in syn.given else source_size)
            if colours:  # a training palette (--colours): names drawn per sample, held-out names never
                from ..colour.palettes import PaletteDataset

                self.synthetic = PaletteDataset(self.synthetic, colours)
            self.samples = None
            self.steps_per_epoch = max(1, samples_per_epoch // global_batch)
        else:
            if colours:
                raise ValueError(f"--colours {colours} draws colours for generated data; {spec!r} is not a "
                                 "synthetic: spec (its colours are the dataset's own): drop --colours")
            self.synthetic = None
            self.samples = list(load_data(spec))
            if not self.samples:
                raise ValueError(f"training data {spec!r} is empty")
            self.steps_per_epoch = max(1, math.ceil(len(self.samples) / global_batch))

    def _sample(self, step: int, i: int) -> Sample:
        global_index = (step * self.world + self.rank) * self.batch_size + i
        if self.synthetic is not None:
            return self.synthetic[global_index]
        n = len(self.samples)
        epoch, offset = divmod(global_index, self.steps_per_epoch * self.batch_size * self.world)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n)
        return self.samples[perm[offset % n]]

    def batch(self, step: int, size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The batch for ``step``, resized to ``size`` (default: the size given at construction)."""
        inputs, targets, colours = [], [], []
        for i in range(self.batch_size):
            s = self._sample(step, i)
            x, y = resize_pair(s, size or self.size)
            if self.augment is not None:
                x, y = self.augment(x, y, np.random.default_rng([self.seed, step, self.rank, i]))
            inputs.append(x)
            targets.append(y)
            colours.append(s.colour)
        return np.stack(inputs), np.stack(targets), colours


@dataclass
class ValidationSet:
    """Fixed samples scored and drawn every epoch: inputs/targets float [N,3,H,W], their colours."""

    inputs: torch.Tensor
    targets: torch.Tensor
    colours: list[str]

    @classmethod
    def build(cls, spec: str, size: int, n: int, seed: int, source_size: int = 128) -> "ValidationSet":
        syn = parse_synthetic(spec)
        if syn is not None:  # the spec's colours and size; its own seed offset so validation != training
            ds = syn.dataset(n=n, seed=seed, size=syn.size if "size" in syn.given else source_size)
            samples = [ds[i] for i in range(n)]
        else:
            samples = list(load_data(spec))[:n]
        pairs = [resize_pair(s, size) for s in samples]
        return cls(images_to_tensor(np.stack([p[0] for p in pairs])),
                   images_to_tensor(np.stack([p[1] for p in pairs])), [s.colour for s in samples])


def save_sample_grid(path: Path, val: ValidationSet, pred: torch.Tensor, title: str = "", cell: int = 128) -> Path:
    """A PNG with one row per sample: input | prediction | target, captioned with the colour."""
    rows = [tensor_to_images(t) for t in (val.inputs, pred, val.targets)]  # 3 x [N,H,W,3]
    n, pad, head = len(val.colours), 4, 18
    grid = Image.new("RGB", (3 * (cell + pad) + 90, head + n * (cell + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(("input", "prediction", "target")):
        draw.text((90 + c * (cell + pad) + 4, 2), label, fill="black")
    for r in range(n):
        top = head + r * (cell + pad)
        draw.text((4, top + cell // 2 - 6), val.colours[r], fill="black")
        for c in range(3):
            img = Image.fromarray(rows[c][r]).resize((cell, cell), Image.NEAREST)
            grid.paste(img, (90 + c * (cell + pad), top))
    if title:
        draw.text((4, 2), title[:14], fill="gray")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    grid.save(tmp)
    tmp.replace(path)
    return path
