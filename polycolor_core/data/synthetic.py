"""Seeded synthetic polygon/colour pairs in the original dataset's format, plus harder families.

Families:
  canonical  the original format exactly: the 8 shapes at their original place and size, 2 px black outline
             (scaled with the image size) on white, no anti-aliasing, target = interior AND outline painted
             in the exact colour on the unchanged background; canonical colours only.
  pose       the 8 shapes with random rotation/scale/shift and a 1-4 px outline (at 128 px).
  shapes     n-gons, k-point stars, crosses, arrows, irregular convex/concave polygons, random pose.
  dark       any shape on a dark noisy background with a light outline; the target keeps that background.
  antialias, hires, jpeg, ink, paper, pens, user: the inputs people make (``families.py``, issue 13).

Every sample is rendered by PIL's polygon rasteriser, the same one that drew the original images, so the
canonical family matches them pixel for pixel (checked in tests/test_data.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from . import shapes as _shapes
from ..colour.colours import is_canonical, palette
from .families import USER_FAMILIES, make_family_sample
from .sample import Sample

__all__ = ["FAMILIES", "make_sample", "render_pair", "SyntheticDataset", "synthetic_stream", "check_families"]

FAMILIES = ("canonical", "pose", "shapes", "dark") + USER_FAMILIES

_BLACK = (0, 0, 0)


def check_families(families: str | Sequence[str]) -> tuple[str, ...]:
    """Validate family names (a name, a ``"a+b"`` string or a sequence) and return them as a tuple."""
    if isinstance(families, str):
        families = [f for f in families.split("+") if f]
    fams = tuple(families)
    bad = [f for f in fams if f not in FAMILIES]
    if bad or not fams:
        raise ValueError(
            f"unknown synthetic famil{'y' if len(bad) == 1 else 'ies'} {', '.join(map(repr, bad)) or '(none given)'}; "
            f"valid families: {', '.join(FAMILIES)}"
        )
    return fams


_palette = palette  # colours.palette: [(name, rgb)] for a colour list (None: the canonical 8)


def render_pair(
    pts: np.ndarray,
    size: int,
    colour: tuple[int, int, int],
    width: int = 2,
    background: np.ndarray | tuple[int, int, int] = (255, 255, 255),
    outline: tuple[int, int, int] = _BLACK,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise pixel-space vertices ``pts`` into (input, target) uint8 HxWx3 arrays.

    Input: ``outline`` drawn ``width`` px wide inside the polygon on ``background``.
    Target: every polygon pixel (interior and outline) set to ``colour``; the background is left as is.
    """
    lab_img = Image.new("P", (size, size), 0)
    # One call: fill with index 1, then the outline with index 2. For width > 1 PIL masks the outline by the
    # fill, so the outline lies inside the polygon exactly as in the original data.
    xy = [tuple(p) for p in np.asarray(pts, dtype=float).tolist()]
    ImageDraw.Draw(lab_img).polygon(xy, fill=1, outline=2, width=width)
    if isinstance(background, np.ndarray):
        lab = np.asarray(lab_img)
        inp = background.copy()
        tgt = background.copy()
        inp[lab == 2] = outline
        tgt[lab > 0] = colour
        # Keep the contract "target differs from input exactly on the polygon": where the noisy background
        # happens to equal the fill colour inside the polygon, nudge that input pixel by one level.
        same = (lab > 0) & (inp[..., 0] == colour[0]) & (inp[..., 1] == colour[1]) & (inp[..., 2] == colour[2])
        if same.any():
            inp[same, 0] ^= 1
        return inp, tgt
    background, outline, colour = tuple(background), tuple(outline), tuple(colour)
    # Palette indices: 0 outside, 1 interior, 2 outline. If the fill colour equals the background or outline,
    # shift that colour by one level on the polygon's input pixels so the contract above still holds.
    bump = lambda c: (c[0] ^ 1, c[1], c[2]) if c == colour else c  # noqa: E731
    # Palette images convert to RGB in C: much faster than numpy fancy indexing.
    lab_img.putpalette([*background, *bump(background), *bump(outline)])
    inp = np.array(lab_img.convert("RGB"))
    lab_img.putpalette([*background, *colour, *colour])
    tgt = np.array(lab_img.convert("RGB"))
    return inp, tgt


def _random_pose(
    rng: np.random.Generator, unit: np.ndarray, size: int, width: int, scale_range=(0.16, 0.46)
) -> np.ndarray:
    """Random rotation, scale and shift that keep the polygon (and its outline) fully inside the image."""
    rot = float(rng.uniform(0.0, 360.0))
    scale = float(rng.uniform(*scale_range))
    pts = _shapes.to_pixels(unit, size, scale, rot)
    margin = width + 1
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    room = (size - 1 - 2 * margin) / max(float((hi - lo).max()), 1e-6)
    if room < 1.0:  # too big for this rotation: shrink about the centre (0.999: float slack)
        pts = size / 2.0 + (pts - size / 2.0) * (0.999 * room)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    # Uniform shift over every position that keeps the bounding box within the margins.
    low = margin - lo
    return pts + rng.uniform(low, np.maximum(low, (size - 1 - margin) - hi))


@functools.lru_cache(maxsize=64)
def _canonical_part(colours: tuple[str, ...] | None) -> list[tuple[str, tuple[int, int, int]]]:
    """The canonical colours of the palette; a palette with none (``?colours=teal``) is used as given, so
    ``synthetic:canonical?colours=teal`` paints the original shapes teal."""
    pal = _palette(colours)
    return [c for c in pal if is_canonical(c[0])] or pal


def _width(px_at_128: float, size: int) -> int:
    # Outline widths are specified at 128 px and scale with the image so that a 64 px sample looks like a
    # downsized 128 px one.
    return max(1, int(round(px_at_128 * size / 128.0)))


def _dark_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark flat colour + linear gradient + uniform noise, values in 0..100 (so light outlines stand out)."""
    base = rng.integers(0, 61, 3).astype(np.int16)
    amp = int(rng.integers(5, 27))  # noise amplitude: uniform in [-amp, amp], std 3..15
    ramp = np.linspace(-1.0, 1.0, size)
    gx, gy = rng.uniform(-15.0, 15.0, 2)
    grad = np.rint(gx * ramp)[None, :, None].astype(np.int16) + np.rint(gy * ramp)[:, None, None].astype(np.int16)
    # Integer noise from raw bytes: ~10x faster than float normals, and this feeds CPU training.
    noise = np.frombuffer(rng.bytes(size * size * 3), np.uint8).reshape(size, size, 3).astype(np.int16)
    noise = (noise * (2 * amp + 1) >> 8) - amp
    return np.clip(noise + grad + base, 0, 100).astype(np.uint8)


def make_sample(
    rng: np.random.Generator, family: str, size: int = 128, colours: Sequence[str] | None = None
) -> Sample:
    """Draw one sample of ``family`` using ``rng``; ``colours`` is the palette (default: the 8 canonical)."""
    (family,) = check_families([family])
    palette = _palette(colours)
    if family in USER_FAMILIES:
        return make_family_sample(rng, family, size, palette)
    if family == "canonical":
        # The original data only has canonical colours; use the canonical part of the palette (or the palette itself
        # when it names no canonical colour).
        palette = _canonical_part(None if colours is None else tuple(colours))
    cname, rgb = palette[int(rng.integers(len(palette)))]

    if family in ("canonical", "pose") or (family == "dark" and rng.random() < 0.5):
        shape = list(_shapes.CANONICAL_SHAPES)[int(rng.integers(len(_shapes.CANONICAL_SHAPES)))]
        unit = _shapes.CANONICAL_SHAPES[shape]
    else:
        shape, unit = _shapes.random_extra_shape(rng)

    if family == "canonical":
        width = _width(2, size)
        inp, tgt = render_pair(_shapes.to_pixels(unit, size), size, rgb, width)
    else:
        width = _width(float(rng.integers(1, 5)), size)
        pts = _random_pose(rng, unit, size, width)
        if family == "dark":
            light = int(rng.integers(170, 256))
            outline = tuple(int(v) for v in np.clip(light - rng.integers(0, 30, 3), 140, 255))
            inp, tgt = render_pair(pts, size, rgb, width, _dark_background(rng, size), outline)
        else:
            inp, tgt = render_pair(pts, size, rgb, width)
    stem = re.sub(r"[^A-Za-z0-9]+", "", cname) or "colour"  # "#12ab34" -> "12ab34": file-name safe
    return Sample(input=inp, target=tgt, colour=cname, name=f"{stem}_{shape}.png", family=family, shape=shape)


def _sample_at(families: tuple[str, ...], seed: int, index: int, size: int, colours) -> Sample:
    # A generator seeded by (seed, index) alone: sample i never depends on which other samples were drawn.
    rng = np.random.default_rng([int(seed), int(index)])
    family = families[index % len(families)]  # round-robin keeps mixed datasets balanced
    s = make_sample(rng, family, size, colours)
    if family != "canonical":  # posed samples are all different: keep their file names unique
        s.name = f"{s.name[:-4]}_{index:06d}.png"
    return s


class SyntheticDataset(Sequence):
    """Fixed-size, indexable synthetic dataset; ``ds[i]`` is a deterministic function of (seed, i)."""

    def __init__(
        self,
        families: str | Sequence[str] = ("canonical",),
        n: int = 1000,
        seed: int = 0,
        size: int = 128,
        colours: Sequence[str] | None = None,
    ):
        if n < 0 or size < 8 or seed < 0:
            raise ValueError(f"need n >= 0, size >= 8 and seed >= 0, got n={n}, size={size}, seed={seed}")
        from .imageio import check_size

        check_size(size, size, f"synthetic size={size}")  # before the first render asks for size x size pixels
        self.families = check_families(families)
        self.n, self.seed, self.size = int(n), int(seed), int(size)
        self.colours = None if colours is None else list(colours)
        _palette(self.colours)  # fail now, not at the first __getitem__

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        i = int(index)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"index {index} out of range for SyntheticDataset of {self.n} samples")
        return _sample_at(self.families, self.seed, i, self.size, self.colours)

    def __repr__(self) -> str:
        return (
            f"SyntheticDataset(families={'+'.join(self.families)!r}, n={self.n}, seed={self.seed}, "
            f"size={self.size}, colours={self.colours!r})"
        )


def synthetic_stream(
    families: str | Sequence[str] = ("canonical",),
    seed: int = 0,
    size: int = 128,
    colours: Sequence[str] | None = None,
) -> Iterator[Sample]:
    """Endless iterator; its first n samples equal ``SyntheticDataset(families, n, seed, size, colours)``."""
    fams = check_families(families)
    _palette(colours)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    i = 0
    while True:
        yield _sample_at(fams, seed, i, size, colours)
        i += 1
