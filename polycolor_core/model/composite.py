"""Composite output: the model decides *where* and *which colour*; the user's own image gets a solid fill.

The model works at its own small square size (e.g. 112 px). Instead of upscaling its whole output (which blurs
lines, replaces paper texture and squashes non-square images), :func:`composite`

1. derives the fill mask at the model's resolution (:func:`model_mask`): pixels the model changed and moved at
   least half way towards its fill colour; the largest 8-connected component, holes filled;
2. brings it to full resolution (``unletterbox``, bilinear, threshold 0.5) and snaps it to the user's outline
   (:func:`snap_to_outline`): ink pixels are those far from the border colour (noise-adaptive); a 4-connected
   flood from the image border over non-ink pixels is the outside; the enclosed non-ink regions that the model
   mask covers by at least half are selected, and the fill is the connected part of "not outside" holding them
   (interior *and* outline, as in the original data). Blobs the model painted past the outline lie outside and
   are dropped. If no interior is covered but the model painted most of its fill on one polygon's outline (a
   weak model on a dark noisy background colours the light line and leaves the inside), that polygon is taken.
   If no enclosed region is covered (an open outline) or the snapped region disagrees with the model mask
   (IoU < ``min_iou``), the upsampled model mask is used as it is;
3. paints that mask with the fill colour (median of the model's clearly changed pixels inside its mask) and
   copies every other pixel of the original, bit for bit.

Any size and aspect ratio: :func:`letterbox` pads the image to a square with its own border colour and resizes
it to the model's size (no squashing); :func:`unletterbox` undoes it. Pure numpy + scipy + scikit-image + PIL.
Shapes: full-resolution images uint8 ``[H,W,3]``, model-resolution images uint8 ``[s,s,3]``, masks bool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..data.imageio import resize_image

__all__ = ["Letterbox", "letterbox", "unletterbox", "border_colour", "model_mask", "ink_mask", "snap_to_outline",
           "fill_mask", "composite", "paint", "Composite", "FillMask", "Snap", "zoom_box", "adopt_zoom", "OUTPUTS",
           "check_output", "finish"]


# --------------------------------------------------------------------------------------------- letterbox


@dataclass(frozen=True)
class Letterbox:
    """Where an ``h`` x ``w`` image sits in its ``size`` x ``size`` letterbox: rows ``top:top+ch``, columns
    ``left:left+cw`` (the image resized by ``size / max(h, w)``); ``pad`` is the fill colour of the rest."""

    h: int
    w: int
    size: int
    top: int
    left: int
    ch: int
    cw: int
    pad: tuple[int, int, int] = (255, 255, 255)

    @property
    def identity(self) -> bool:
        return self.h == self.w == self.size

    def content(self, square: np.ndarray) -> np.ndarray:
        """The image part of a ``[size,size,...]`` array (model resolution, not resized)."""
        return square[self.top:self.top + self.ch, self.left:self.left + self.cw]


def border_colour(img: np.ndarray, width: int = 2) -> tuple[int, int, int]:
    """Per-channel median of a ``width``-px frame along the border of uint8 ``[H,W,3]`` (the background)."""
    return tuple(int(v) for v in np.median(_frame(img, width).astype(np.float32), axis=0))


def _frame(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    k = max(1, min(width, h // 2 or 1, w // 2 or 1))
    c = img.shape[-1]
    return np.concatenate([img[:k].reshape(-1, c), img[h - k:].reshape(-1, c), img[:, :k].reshape(-1, c),
                           img[:, w - k:].reshape(-1, c)])


def letterbox(img: np.ndarray, size: int, pad: tuple[int, int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """uint8 ``[H,W,3]`` -> (uint8 ``[size,size,3]``, transform): resized by ``size / max(H, W)`` (the one
    ``imageio.resize_image``), centred, padded with ``pad`` (default: the image's :func:`border_colour`)."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"letterbox expects a uint8 RGB image [H,W,3], got {img.dtype} {list(img.shape)}")
    h, w = img.shape[:2]
    f = size / max(h, w)
    ch, cw = min(size, max(1, round(h * f))), min(size, max(1, round(w * f)))
    top, left = (size - ch) // 2, (size - cw) // 2
    pad = border_colour(img) if pad is None else tuple(int(v) for v in pad)
    t = Letterbox(h, w, int(size), top, left, ch, cw, pad)
    if (ch, cw) == (size, size):
        return resize_image(img, size), t
    out = np.empty((size, size, 3), np.uint8)
    out[:] = pad
    out[top:top + ch, left:left + cw] = resize_image(img, (ch, cw))
    return out, t


def unletterbox(square: np.ndarray, t: Letterbox) -> np.ndarray:
    """Inverse of :func:`letterbox`: the content of a ``[size,size,3]`` uint8 image resized back to ``[h,w,3]``,
    or of a bool ``[size,size]`` mask -> bool ``[h,w]`` (bilinear on 0/1, threshold 0.5: edges follow the
    mask's sub-pixel boundary instead of blocky nearest-neighbour steps)."""
    part = t.content(np.asarray(square))
    if part.dtype == bool:
        if part.shape == (t.h, t.w):
            return part.copy()
        f = Image.fromarray(part.astype(np.float32), "F").resize((t.w, t.h), Image.BILINEAR)
        return np.asarray(f) >= 0.5
    return resize_image(np.ascontiguousarray(part), (t.h, t.w))


# ------------------------------------------------------------------------------------- model-resolution mask


def _lab(img: np.ndarray) -> np.ndarray:
    from ..colour.colours import srgb_to_lab  # no scikit-image at run time: ComfyUI's Python has none

    return srgb_to_lab(np.asarray(img, np.float32) / np.float32(255.0))


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def model_mask(model_input: np.ndarray, pred: np.ndarray, change_de: float = 12.0, towards: float = 0.5,
               min_px: int = 4, hint=None) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """(bool ``[s,s]`` fill mask, fill colour or None) from what the model saw and what it predicted.

    Both uint8 ``[s,s,3]``. Distances are CIE76 in LAB. ``changed`` = moved more than ``change_de``; the first
    colour estimate is the median of the changed pixels; the mask is changed pixels that moved at least
    ``towards`` of the way to that colour, largest 8-connected component, holes filled; the colour is then the
    median of the mask's clearly changed pixels (away from its edge when enough remain). No fill (fewer than
    ``min_px`` pixels) -> an empty mask and None.

    ``hint``: the colour asked for (RGB). When given, the first estimate is that colour rather than the median
    of the changed pixels: on a dark noisy background the model also smooths the noise, so most changed pixels
    are background and their median is a background colour (m8 composite on the dark family: IoU 0.00, 46% of
    the background painted). If no pixel moved towards the hint (a colour the model did not learn), the median
    estimate is used as before. The fill colour is always the model's own, from inside the mask.
    """
    from scipy import ndimage

    li, lp = _lab(model_input), _lab(pred)
    moved = np.linalg.norm(lp - li, axis=-1)
    changed = moved > change_de
    if int(changed.sum()) < min_px:
        return np.zeros(changed.shape, bool), None
    def towards_colour(c) -> np.ndarray:  # changed pixels that moved at least `towards` of the way to colour c
        lc = _lab(np.clip(np.rint(c), 0, 255).astype(np.uint8).reshape(1, 1, 3)).reshape(3)
        return changed & (np.linalg.norm(lp - lc, axis=-1) <= towards * np.linalg.norm(li - lc, axis=-1))

    mask = towards_colour(np.asarray(hint, np.float32)) if hint is not None else np.zeros(changed.shape, bool)
    if int(mask.sum()) < min_px:
        mask = towards_colour(np.median(pred[changed].astype(np.float32), axis=0))
    if int(mask.sum()) < min_px:
        return np.zeros(changed.shape, bool), None
    mask = ndimage.binary_fill_holes(_largest(mask))
    core = ndimage.binary_erosion(mask) & changed
    pick = core if int(core.sum()) >= min_px else (mask & changed)
    colour = np.median(pred[pick].astype(np.float32), axis=0)
    return mask, tuple(int(v) for v in np.clip(np.rint(colour), 0, 255))


# ------------------------------------------------------------------------------------- full-resolution snap


def _ink(img: np.ndarray, tol: float, noise_k: float, clean_noise: float, speck_px: int):
    from scipy import ndimage

    f = np.asarray(img, np.float32)
    bg = np.asarray(border_colour(img), np.float32)
    dist = np.sqrt(((f - bg) ** 2).sum(-1))
    fd = np.sqrt(((_frame(f, 2) - bg) ** 2).sum(-1))
    noisy = float(np.median(fd)) > clean_noise
    thr = max(float(tol), noise_k * float(np.quantile(fd, 0.999))) if noisy else float(tol)
    ink = dist > thr
    if noisy:
        lab, n = ndimage.label(ink, structure=np.ones((3, 3), bool))
        if n:
            keep = np.bincount(lab.ravel()) >= speck_px
            keep[0] = False
            ink = keep[lab]
        ink |= ndimage.binary_closing(ink, structure=np.ones((3, 3), bool))
    return ink, dist, noisy


def ink_mask(img: np.ndarray, tol: float = 48.0, noise_k: float = 1.25, clean_noise: float = 2.0,
             speck_px: int = 4) -> np.ndarray:
    """Bool ``[H,W]``: pixels farther (RGB) than a threshold from the :func:`border_colour` - the outline ink
    (and anything else drawn). Threshold ``max(tol, noise_k * q99.9 of the border's distances)``; on noisy
    backgrounds (median border distance > ``clean_noise``) specks under ``speck_px`` are dropped and 1-px gaps
    closed, so a flood cannot leak through a noise-broken line."""
    return _ink(img, tol, noise_k, clean_noise, speck_px)[0]


class Snap(NamedTuple):
    region: np.ndarray  # bool [H,W]: a polygon, interior + outline
    how: str  # "covered": the seed covers its interior; "outline": the seed lies on it and traces its outline


def snap_to_outline(img: np.ndarray, seed: np.ndarray, cover: float = 0.5, peel: int = 3,
                    peel_frac: float = 0.5, inside_share: float = 0.5, trace: float = 0.3) -> Snap | None:
    """The polygon (interior + outline) the full-resolution ``seed`` mask points at, or None.

    ``img`` uint8 ``[H,W,3]``, ``seed`` bool ``[H,W]`` (the upsampled model mask). Enclosed non-ink regions
    (4-connected, not touching the border) covered by ``seed`` for at least ``cover`` of their area are
    selected (if none is, the best-covered one when covered by at least ``cover / 2``); the result is the
    8-connected part of "not reached from the border" containing them (``how="covered"``).

    If no interior is covered, the model may have painted the outline and left the inside: on a dark noisy
    background m8 colours the light line it sees (a ring a few px wide) and keeps the interior's noise, so the
    seed covers under a tenth of a large polygon's interior. Then the polygon holding at least ``inside_share``
    of the seed, whose ink the seed (grown by 2 px) traces for at least ``trace`` of its pixels, is the one it
    points at (``how="outline"``); a blob inside a large frame does not trace the frame, so it is not taken. Its outer
    fringe is then peeled (up to ``peel`` px deep) of weak ink - pixels less than ``peel_frac`` of the way from
    the background to the ink (anti-aliasing coverage < 1/2, JPEG ringing) - so those keep the input.
    """
    from scipy import ndimage

    ink, dist, noisy = _ink(img, 48.0, 1.25, 2.0, 4)
    free, n = ndimage.label(~ink)  # 4-connected: a flood cannot cross an 8-connected 1-px line
    if n == 0:
        return None
    edge = np.unique(np.concatenate([free[0], free[-1], free[:, 0], free[:, -1]]))
    area = np.bincount(free.ravel(), minlength=n + 1).astype(np.float64)
    hit = np.bincount(free.ravel(), weights=seed.ravel().astype(np.float64), minlength=n + 1)
    frac = hit / np.maximum(area, 1)
    frac[0] = 0.0
    frac[edge] = 0.0
    chosen = frac >= cover
    if not chosen.any():  # a small polygon the model only half found: its best-covered enclosed region
        best = int(frac.argmax())
        if frac[best] >= cover / 2:
            chosen[best] = True
    outside = np.isin(free, edge[edge > 0])
    inside, m = ndimage.label(~outside, structure=np.ones((3, 3), bool))
    how = "covered"
    if chosen.any():
        keep = np.unique(inside[chosen[free]])
        keep = keep[keep > 0]
    else:  # the outline-only case (docstring): the polygon the seed lies on and traces
        share = np.bincount(inside[seed], minlength=m + 1)
        share[0] = 0
        best = int(share.argmax())
        line = ink & (inside == best)
        near = ndimage.binary_dilation(seed, iterations=2)
        if best == 0 or share[best] < inside_share * int(seed.sum()) or not line.any() \
                or int((near & line).sum()) < trace * int(line.sum()):
            return None
        keep, how = np.array([best]), "outline"
    region = np.isin(inside, keep)
    if peel > 0 and not noisy and ink.any():
        weak = region & ink & (dist < peel_frac * float(np.percentile(dist[ink & region], 90)))
        if weak.any():
            out = ~region
            for _ in range(peel):
                drop = weak & ndimage.binary_dilation(out, structure=ndimage.generate_binary_structure(2, 1))
                if not drop.any():
                    break
                region &= ~drop
                weak &= ~drop
                out |= drop
    return Snap(region, how)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = int(np.logical_or(a, b).sum())
    return 1.0 if u == 0 else int(np.logical_and(a, b).sum()) / u


class FillMask(NamedTuple):
    mask: np.ndarray  # bool [H,W]
    colour: tuple[int, int, int] | None  # None: the model filled nothing
    method: str  # "snapped" | "outline" (snapped to the outline the model traced) | "model" (its mask) | "empty"


def fill_mask(input_full: np.ndarray, pred: np.ndarray, transform: Letterbox | None = None,
              model_input: np.ndarray | None = None, snap: bool = True, min_iou: float = 0.6, hint=None) -> FillMask:
    """The full-resolution fill mask and colour for ``pred`` (see the module docstring).

    ``input_full`` uint8 ``[H,W,3]``; ``pred`` uint8 ``[H,W,3]`` (same size) or ``[s,s,3]`` letterboxed;
    ``transform`` / ``model_input``: the letterbox the model saw (default: :func:`letterbox` of the input at
    ``s``, exactly what the Colorizer feeds the model). ``hint``: the RGB asked for (see :func:`model_mask`).
    """
    input_full, pred = np.asarray(input_full), np.asarray(pred)
    for what, a in (("input", input_full), ("prediction", pred)):
        if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise ValueError(f"composite: the {what} must be uint8 RGB [H,W,3], got {a.dtype} {list(a.shape)}")
    h, w = input_full.shape[:2]
    if pred.shape[:2] == (h, w) and transform is None:
        t = Letterbox(h, w, max(h, w), 0, 0, h, w)
        seen = input_full if model_input is None else model_input
        m_s, colour = model_mask(seen, pred, hint=hint)
        seed = m_s
    else:
        if pred.shape[0] != pred.shape[1]:
            raise ValueError(f"composite: a prediction at the model's size must be square, got {list(pred.shape)}")
        s = pred.shape[0]
        if transform is None or model_input is None:
            li, lt = letterbox(input_full, s)
            transform, model_input = transform or lt, li if model_input is None else model_input
        t = transform
        m_s, colour = model_mask(t.content(model_input), t.content(pred), hint=hint)
        full = np.zeros((s, s), bool)
        full[t.top:t.top + t.ch, t.left:t.left + t.cw] = m_s
        seed = unletterbox(full, t)
    if colour is None or not seed.any():
        return FillMask(np.zeros((h, w), bool), None, "empty")
    if snap:
        snapped = snap_to_outline(input_full, seed)
        if snapped is not None and snapped.how == "outline":
            return FillMask(snapped.region, colour, "outline")
        if snapped is not None and _iou(snapped.region, seed) >= min_iou:
            return FillMask(snapped.region, colour, "snapped")
    return FillMask(seed, colour, "model")


# ---------------------------------------------------------------------------------------------- zoomed pass

ZOOM_BELOW = 0.5  # a fill spanning less than half of the image's longer side gets a second pass on a crop
ZOOM_MARGIN = 0.35  # the crop: the fill's bounding square plus this share of its side on every side


def zoom_box(mask: np.ndarray, below: float = ZOOM_BELOW, margin: float = ZOOM_MARGIN):
    """``(rows, cols)`` slices of a crop around the fill ``mask`` (bool ``[H,W]``) for a second, zoomed model pass,
    or None when the fill is empty or already spans ``below`` of the image's longer side.

    Why: the model sees the whole image letterboxed to its square (64 px for the cpu-profile m8), so a polygon that
    covers a tenth of a 900 px page is ~6 px wide there and its fill colour is off (m8 on the hires family: orange
    painted (255, 180, 0), in-polygon dE00 5.4); on a crop it fills the model's view as in training.
    """
    if not mask.any():
        return None
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = max(y1 - y0, x1 - x0)
    if side >= below * max(h, w):
        return None
    half = side * (0.5 + margin)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    rows = slice(max(0, int(np.floor(cy - half))), min(h, int(np.ceil(cy + half))))
    cols = slice(max(0, int(np.floor(cx - half))), min(w, int(np.ceil(cx + half))))
    return rows, cols


def adopt_zoom(first: FillMask, box, zoomed: FillMask, min_iou: float = 0.5) -> FillMask:
    """The zoomed pass's mask (pasted back at full size) and colour, when it found a fill that agrees with the
    first pass's (IoU >= ``min_iou``); otherwise the first pass's, unchanged."""
    if zoomed.colour is None or not zoomed.mask.any():
        return first
    full = np.zeros_like(first.mask)
    full[box] = zoomed.mask
    if _iou(full, first.mask) < min_iou:
        return first
    return FillMask(full, zoomed.colour, zoomed.method)


def paint(input_full: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    """A copy of ``input_full`` with ``mask`` set to ``colour``; every other pixel is the input's, bit for bit."""
    out = np.array(input_full, dtype=np.uint8, copy=True)
    if colour is not None:
        out[mask] = np.asarray(colour, np.uint8)
    return out


class Composite(NamedTuple):
    image: np.ndarray  # uint8 [H,W,3]
    mask: np.ndarray  # bool [H,W]: the painted pixels
    colour: tuple[int, int, int] | None


def composite(input_full: np.ndarray, pred: np.ndarray, transform: Letterbox | None = None,
              model_input: np.ndarray | None = None, snap: bool = True, hint=None) -> Composite:
    """(out uint8 ``[H,W,3]``, mask bool ``[H,W]``, colour) - a solid fill of the model's colour over its
    full-resolution mask, the rest of ``input_full`` untouched. Arguments as :func:`fill_mask`."""
    fm = fill_mask(input_full, pred, transform, model_input, snap, hint=hint)
    return Composite(paint(input_full, fm.mask, fm.colour), fm.mask, fm.colour)


OUTPUTS = ("composite", "raw")
"""What inference returns: ``composite`` (the default: a solid fill over the user's own image, everything else
untouched) or ``raw`` (the model's whole output, unletterboxed to the input's size: the study's figures)."""


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)} (composite: the fill pasted into your own "
                         f"image, raw: the model's whole picture), got {output!r}")
    return output


def finish(input_full: np.ndarray, pred: np.ndarray, transform: Letterbox, model_input: np.ndarray,
           output: str = "composite", hint=None, fill: FillMask | None = None) -> Composite:
    """The one place inference turns a model output into what the user gets. ``pred`` uint8 ``[s,s,3]`` is the
    model's output on ``model_input`` (= ``letterbox(input_full, s)``). ``composite`` -> :func:`composite`;
    ``raw`` -> the model's picture unletterboxed to ``[H,W,3]``, with the same mask and colour a composite
    would use (so a MASK output is the same in both modes). ``hint``: the RGB asked for. ``fill``: the mask and
    colour when already found (the Colorizer's zoomed pass, :func:`adopt_zoom`)."""
    fm = fill if fill is not None else fill_mask(input_full, pred, transform, model_input, hint=hint)
    if check_output(output) == "raw":
        return Composite(unletterbox(pred, transform), fm.mask, fm.colour)
    return Composite(paint(input_full, fm.mask, fm.colour), fm.mask, fm.colour)
