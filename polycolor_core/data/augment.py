"""Paired augmentation: one geometric transform for input and target, colour changes off the fill.

The learning signal is "fill the outlined region with colour X", so every change must keep
``changed = (input != target)`` equal to the (transformed) polygon and the target's polygon pixels equal to
the exact fill colour. Geometry uses nearest-neighbour sampling (no new colours, no anti-aliasing, like the
data); colour jitter and background replacement touch only background/outline pixels, identically in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["PairedAugment", "Geometry", "BACKGROUNDS"]

BACKGROUNDS = ("solid", "noise", "gradient")


@dataclass(frozen=True)
class Geometry:
    """One drawn geometric transform: rotate by ``angle`` degrees, then ``k`` quarter turns, then mirror."""

    angle: float = 0.0
    k: int = 0
    flip: bool = False


class PairedAugment:
    """Callable ``(input, target, rng) -> (input, target)`` on uint8 HxWx3 arrays.

    flip / rot90: random mirror and quarter turns (the 8 symmetries of the square).
    rotate_degrees: extra rotation drawn from [-d, d] (nearest neighbour; corners filled with the border colour).
    colour_jitter: strength in [0, 1] of a per-channel gain/offset applied to outline and background pixels.
    background: None, one of ``BACKGROUNDS`` or a sequence of them; replaces the background (applied with
    probability ``background_p``) and recolours the outline if it would no longer stand out.
    """

    def __init__(
        self,
        flip: bool = True,
        rot90: bool = True,
        rotate_degrees: float = 0.0,
        colour_jitter: float = 0.0,
        background: str | Sequence[str] | None = None,
        background_p: float = 0.5,
        outline_threshold: int = 64,
    ):
        modes = () if background is None else ((background,) if isinstance(background, str) else tuple(background))
        bad = [m for m in modes if m not in BACKGROUNDS]
        if bad:
            raise ValueError(f"unknown background mode(s) {bad}; valid: {', '.join(BACKGROUNDS)} (or None)")
        if not 0.0 <= colour_jitter <= 1.0:
            raise ValueError(f"colour_jitter must be in [0, 1], got {colour_jitter}")
        self.flip, self.rot90, self.rotate_degrees = bool(flip), bool(rot90), float(rotate_degrees)
        self.colour_jitter, self.backgrounds, self.background_p = float(colour_jitter), modes, float(background_p)
        self.outline_threshold = int(outline_threshold)

    def __repr__(self) -> str:
        return (
            f"PairedAugment(flip={self.flip}, rot90={self.rot90}, rotate_degrees={self.rotate_degrees}, "
            f"colour_jitter={self.colour_jitter}, background={self.backgrounds or None}, "
            f"background_p={self.background_p})"
        )

    # ------------------------------------------------------------------ geometry

    def sample_geometry(self, rng: np.random.Generator) -> Geometry:
        angle = float(rng.uniform(-self.rotate_degrees, self.rotate_degrees)) if self.rotate_degrees else 0.0
        k = int(rng.integers(4)) if self.rot90 else 0
        flip = bool(rng.random() < 0.5) if self.flip else False
        return Geometry(angle, k, flip)

    @staticmethod
    def apply_geometry(img: np.ndarray, geom: Geometry, fill: tuple[int, ...] = (255, 255, 255)) -> np.ndarray:
        """Apply ``geom`` to one image (the same call on input, target or a mask keeps them aligned)."""
        out = img
        if geom.angle:
            mode = "RGB" if img.ndim == 3 else "L"
            pil = Image.fromarray(np.ascontiguousarray(img), mode)
            fillcolor = tuple(fill) if mode == "RGB" else fill[0]
            out = np.asarray(pil.rotate(geom.angle, resample=Image.NEAREST, fillcolor=fillcolor))
        if geom.k:
            out = np.rot90(out, geom.k)
        if geom.flip:
            out = out[:, ::-1]
        # Always a fresh, writable, contiguous array: the caller (and __call__) may edit it in place without
        # touching the stored sample; PIL-backed arrays are read-only.
        return np.array(out, order="C")

    # ------------------------------------------------------------------ colour

    def _background(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        mode = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        base = rng.uniform(0, 255, 3).astype(np.float32)
        bg = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
        if mode == "gradient":
            other = rng.uniform(0, 255, 3).astype(np.float32)
            t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
            bg = bg * (1 - t) + other * t
            if rng.random() < 0.5:
                bg = bg.transpose(1, 0, 2) if h == w else bg
        elif mode == "noise":
            # Uniform noise from raw bytes (std = amp / sqrt(3)): far cheaper than float normals.
            amp = np.float32(rng.uniform(6, 40) / 127.5)
            raw = np.frombuffer(rng.bytes(h * w * 3), np.uint8).reshape(h, w, 3)
            bg = bg + (raw.astype(np.float32) - np.float32(127.5)) * amp
        return np.clip(bg, 0, 255).astype(np.uint8)

    def __call__(self, inp: np.ndarray, tgt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if inp.shape != tgt.shape or inp.ndim != 3 or inp.shape[-1] != 3:
            raise ValueError(f"input and target must be HxWx3 of one size, got {inp.shape} and {tgt.shape}")
        geom = self.sample_geometry(rng)
        border = np.concatenate([inp[0], inp[-1], inp[:, 0], inp[:, -1]])
        # The dominant border colour fills rotated-in corners (colours packed into ints: np.unique(axis=0) is slow).
        values, counts = np.unique(border.astype(np.int32) @ np.array([65536, 256, 1], np.int32), return_counts=True)
        v = int(values[counts.argmax()])
        fill = (v >> 16, (v >> 8) & 255, v & 255)
        bg_ref = border.mean(axis=0)  # typical background colour, to tell outline pixels from background
        inp = self.apply_geometry(inp, geom, fill)
        tgt = self.apply_geometry(tgt, geom, fill)

        do_bg = bool(self.backgrounds) and rng.random() < self.background_p
        if not (do_bg or self.colour_jitter):
            return inp, tgt
        region = _differs(inp, tgt)  # the polygon: its target pixels are the fill and are never touched
        keep_tgt = region[..., None]

        if do_bg:
            # Per-channel lookup "far from the background", OR-ed: cheaper than an int16 distance image.
            far = np.abs(np.arange(256)[:, None] - bg_ref[None, :]) > self.outline_threshold  # [256, 3]
            outline = region & (far[inp[..., 0], 0] | far[inp[..., 1], 1] | far[inp[..., 2], 2])
            new_bg = self._background(rng, *inp.shape[:2])
            if outline.any():
                # Keep the outline visible: if it is now close in brightness to the background, use black/white.
                lum_bg = float(new_bg.mean())
                if abs(float(inp[outline].mean()) - lum_bg) < 80:
                    inp[outline] = 0 if lum_bg > 127 else 255  # inp is apply_geometry's fresh copy
            inp = np.where(outline[..., None], inp, new_bg)
            tgt = np.where(keep_tgt, tgt, new_bg)

        if self.colour_jitter:
            s = self.colour_jitter
            gain = rng.uniform(1 - s, 1 + s, 3)
            offset = rng.uniform(-64 * s, 64 * s, 3)
            # One lookup table per channel: the same pointwise map on both images keeps equal pixels equal.
            lut = np.clip(np.arange(256)[None, :] * gain[:, None] + offset[:, None], 0, 255).astype(np.uint8)
            table = lut.reshape(-1).tolist()  # PIL's point() applies a per-band table in C
            inp = np.array(Image.fromarray(inp).point(table))
            tgt = np.where(keep_tgt, tgt, np.asarray(Image.fromarray(tgt).point(table)))

        # A jittered/replaced input pixel inside the polygon may now equal the fill: nudge it by one level so the
        # changed-pixel mask is still exactly the polygon.
        same = region & ~_differs(inp, tgt)
        if same.any():
            inp[same, 0] ^= 1
        return inp, tgt


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """HxW mask of pixels whose RGB differ (three 2-D ORs beat a reduce over a length-3 axis)."""
    d = a != b
    return d[..., 0] | d[..., 1] | d[..., 2]
