"""Synthetic families of the inputs people actually make (issue 13), registered in ``synthetic.FAMILIES``.

  antialias  anti-aliased outline (4x4 supersampled coverage), black on white, 128 px, 1-4 px pens.
  hires      256-1024 px per side, any aspect ratio (0.5-2), outline 1-4 px at 128 px scaled with the short
             side (2-32 px), hard-edged (PIL raster), black on white.
  jpeg       128-256 px per side, hard-edged black outline, input JPEG-compressed at quality 30-90.
  ink        dark-blue, grey or brown outline (jittered), white, 128 px, hard-edged.
  paper      off-white paper (cream / ivory / grey-white) with a faint blotchy grain, black or coloured ink.
  pens       256 px, pens of 1-10 px, hard-edged, black on white.
  user       all of it at once: 256-1024 px, any aspect, anti-aliased, any ink, paper half the time, 1-10 px
             pens (at 256 px, scaled), JPEG half the time.

A sample is a deterministic function of the generator it is handed (``synthetic`` seeds it by (seed, index)).
Every drawing has a *native* size; :func:`make_family_sample` with ``native=True`` renders it there (the
leaderboard scores at the image's own resolution). With ``native=False`` (training, and any fixed-size
``SyntheticDataset``) it is rendered as the model sees it at inference, letterboxed into ``size`` x ``size``
(``composite.letterbox``, padded with the border colour): drawn straight at the reduced scale with 4x4
supersampling (what downscaling gives, without rendering 1024 px first; JPEG, if any, is applied at that
scale), so the target's fill stays solid at every size.

Targets: every polygon pixel (interior and outline) in the fill colour, the rest of the input exactly as it
is (JPEG artefacts and paper grain included). Anti-aliased edges: a pixel is in the polygon when at least half
of it is covered (the fill is solid; thinner fringe pixels keep the input), so a perfect solid fill scores IoU 1.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from . import shapes as _shapes
from ..model.composite import letterbox
from .sample import Sample

__all__ = ["USER_FAMILIES", "AA_FAMILIES", "INKS", "Drawing", "draw", "render", "make_family_sample"]

USER_FAMILIES = ("antialias", "hires", "jpeg", "ink", "paper", "pens", "user")
AA_FAMILIES = ("antialias", "user")  # anti-aliased edges (the mask-IoU target is 0.975 there, 0.99 elsewhere)
INKS = {"black": (0, 0, 0), "darkblue": (25, 35, 120), "grey": (110, 110, 110), "brown": (110, 65, 30)}
PAPERS = {"cream": (250, 244, 226), "ivory": (248, 246, 236), "greywhite": (238, 238, 233), "warm": (244, 236, 222)}
_SS = 4  # supersampling factor for anti-aliased rendering


@dataclass
class Drawing:
    """Everything one sample is made of, at its native size (pixel units)."""

    h: int
    w: int
    pts: np.ndarray  # [K,2] x, y
    width: float  # pen width in native px
    ink: tuple[int, int, int]
    paper: tuple[int, int, int] | None  # None: pure white
    grain: int  # texture seed
    aa: bool
    jpeg: int | None  # quality
    colour: tuple[int, int, int]
    colour_name: str
    shape: str


# --------------------------------------------------------------------------------------------- drawing


def _pose_rect(rng: np.random.Generator, unit: np.ndarray, h: int, w: int, width: float) -> np.ndarray:
    """Random rotation/scale (relative to the short side) and shift keeping the polygon inside ``h`` x ``w``."""
    m = min(h, w)
    pts = _shapes.to_pixels(unit, m, float(rng.uniform(0.16, 0.46)), float(rng.uniform(0.0, 360.0)))
    margin = width + 2
    lo, hi = pts.min(0), pts.max(0)
    room = (m - 1 - 2 * margin) / max(float((hi - lo).max()), 1e-6)
    if room < 1.0:
        pts = m / 2.0 + (pts - m / 2.0) * (0.999 * room)
        lo, hi = pts.min(0), pts.max(0)
    low = margin - lo
    high = np.array([w - 1 - margin, h - 1 - margin]) - hi
    return pts + rng.uniform(low, np.maximum(low, high))


def _side_pair(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int]:
    """(h, w) in [lo, hi] with aspect ratio within 0.5..2."""
    while True:
        h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
        if 0.5 <= h / w <= 2.0:
            return h, w


def draw(rng: np.random.Generator, family: str, palette: list[tuple[str, tuple[int, int, int]]]) -> Drawing:
    """Draw the parameters of one ``family`` sample; ``palette`` = [(name, rgb)]."""
    if family not in USER_FAMILIES:
        raise ValueError(f"unknown family {family!r}; these are {', '.join(USER_FAMILIES)}")
    cname, rgb = palette[int(rng.integers(len(palette)))]
    if rng.random() < 0.5:
        names = list(_shapes.CANONICAL_SHAPES)
        shape = names[int(rng.integers(len(names)))]
        unit = _shapes.CANONICAL_SHAPES[shape]
    else:
        shape, unit = _shapes.random_extra_shape(rng)
    h = w = 128
    ink, paper, aa, jpeg = INKS["black"], None, False, None
    w128 = float(rng.integers(1, 5))  # outline width at 128 px
    width = w128
    if family == "antialias":
        aa = True
    elif family == "hires":
        h, w = _side_pair(rng, 256, 1024)
        width = max(1.0, round(w128 * min(h, w) / 128.0))
    elif family == "jpeg":
        h, w = _side_pair(rng, 128, 256)
        width = max(1.0, round(w128 * min(h, w) / 128.0))
        jpeg = int(rng.integers(30, 91))
    elif family == "ink":
        ink = _ink(rng, non_black=True)
    elif family == "paper":
        paper = _paper(rng)
        ink = _ink(rng, non_black=rng.random() < 0.3)
    elif family == "pens":
        h = w = 256
        width = float(rng.integers(1, 11))
    elif family == "user":
        h, w = _side_pair(rng, 256, 1024)
        width = max(1.0, float(rng.integers(1, 11)) * min(h, w) / 256.0)
        aa = True
        ink = _ink(rng, non_black=rng.random() < 0.5)
        paper = _paper(rng) if rng.random() < 0.5 else None
        jpeg = int(rng.integers(50, 96)) if rng.random() < 0.5 else None
    pts = _pose_rect(rng, unit, h, w, width)
    grain = int(rng.integers(0, 2**31 - 1))
    return Drawing(h, w, pts, float(width), ink, paper, grain, aa, jpeg, tuple(int(v) for v in rgb), cname, shape)


def _ink(rng: np.random.Generator, non_black: bool) -> tuple[int, int, int]:
    if not non_black:
        return INKS["black"]
    base = np.array(INKS[("darkblue", "grey", "brown")[int(rng.integers(3))]])
    return tuple(int(v) for v in np.clip(base + rng.integers(-15, 16, 3), 0, 255))


def _paper(rng: np.random.Generator) -> tuple[int, int, int]:
    base = np.array(list(PAPERS.values())[int(rng.integers(len(PAPERS)))])
    return tuple(int(v) for v in np.clip(base + rng.integers(-5, 4, 3), 0, 252))


def _paper_image(d: Drawing, h: int, w: int) -> np.ndarray:
    """float32 [h,w,3]: pure white, or the paper colour with a low-frequency blotch (+-4) and grain (+-3)."""
    if d.paper is None:
        return np.full((h, w, 3), 255.0, np.float32)
    rng = np.random.default_rng(d.grain)
    coarse = rng.uniform(-4.0, 4.0, (6, 6)).astype(np.float32)
    blotch = np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.BILINEAR))[..., None]
    grain = rng.uniform(-3.0, 3.0, (h, w, 1)).astype(np.float32)
    return np.clip(np.asarray(d.paper, np.float32) + blotch + grain, 0.0, 252.0)


def _coverage(d: Drawing, h: int, w: int, scale: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(polygon coverage, ink coverage), float32 [h,w] in 0..1, from a ``k``-times supersampled label image."""
    lab = Image.new("L", (w * k, h * k), 0)
    xy = [(float(x), float(y)) for x, y in (np.asarray(d.pts) * scale * k + (k - 1) / 2.0).tolist()]
    width = max(1, int(round(d.width * scale * k)))
    ImageDraw.Draw(lab).polygon(xy, fill=1, outline=2, width=width)
    a = np.asarray(lab)
    if k == 1:
        return (a > 0).astype(np.float32), (a == 2).astype(np.float32)
    poly = (a > 0).reshape(h, k, w, k).mean(axis=(1, 3), dtype=np.float32)
    ink = (a == 2).reshape(h, k, w, k).mean(axis=(1, 3), dtype=np.float32)
    return poly, ink


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def render(d: Drawing, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) uint8 ``[round(h*scale), round(w*scale), 3]``; supersampled when anti-aliased or
    reduced (``scale < 1``), hard PIL raster otherwise."""
    h, w = max(1, round(d.h * scale)), max(1, round(d.w * scale))
    k = _SS if (d.aa or scale < 1.0) else 1
    poly, ink = _coverage(d, h, w, scale, k)
    paper = _paper_image(d, h, w)
    ink_c = np.asarray(d.ink, np.float32)
    inp = np.rint(paper * (1 - ink[..., None]) + ink_c * ink[..., None]).astype(np.uint8)
    if d.jpeg is not None:
        inp = _jpeg(inp, d.jpeg)
    # Hard-edged fill: a pixel belongs to the polygon when at least half of it is covered (anti-aliased
    # edges included), so a solid fill over the right mask reproduces the target exactly.
    tgt = np.where((poly >= 0.5)[..., None], np.asarray(d.colour, np.uint8), inp)
    # The contract of render_pair: target differs from input on every (fully covered) polygon pixel.
    same = (poly >= 0.5) & (inp == tgt).all(-1)
    if same.any():
        inp[same, 0] ^= 1
    return inp, tgt


def make_family_sample(rng: np.random.Generator, family: str, size: int = 128,
                       palette: list[tuple[str, tuple[int, int, int]]] | None = None, native: bool = False) -> Sample:
    """One sample of a family in :data:`USER_FAMILIES`: at its native size (``native=True``), else as the model
    sees it, letterboxed into ``size`` x ``size``."""
    if palette is None:
        from ..colour.colours import palette as _palette

        palette = _palette(None)
    d = draw(rng, family, palette)
    if native:
        inp, tgt = render(d)
    else:
        inp, tgt = render(d, size / max(d.h, d.w))  # long side = size: letterbox only pads
        inp, t = letterbox(inp, size)
        tgt, _ = letterbox(tgt, size, pad=t.pad)
    stem = "".join(ch for ch in d.colour_name if ch.isalnum()) or "colour"
    return Sample(input=inp, target=tgt, colour=d.colour_name, name=f"{stem}_{d.shape}.png", family=family,
                  shape=d.shape)
