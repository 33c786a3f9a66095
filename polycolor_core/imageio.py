"""Turning whatever a user hands us into an RGB uint8 image, and resizing it the one way the models expect.

Accepted: PIL images, numpy arrays (uint8 0..255 or float 0..1; [H,W], [H,W,1|3|4]), torch tensors ([C,H,W]
or [H,W,C]), and file paths. RGBA, grey and palette images are converted to RGB and the conversion is
reported, never silently.

``resize_image`` is shared by training and inference: a model trained at 64 px sees inputs downscaled
exactly as the training data were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageInputError(ValueError):
    """An input that cannot be used as an image (unreadable file, wrong shape or dtype, ...)."""


def load_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a file as RGB uint8 [H,W,3]; returns (array, note about any mode conversion)."""
    p = Path(path)
    if not p.exists():
        raise ImageInputError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageInputError(f"{p} is a folder, not an image file")
    try:
        with Image.open(p) as im:
            im.load()
            return pil_to_rgb(im, source=str(p))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageInputError(f"{p} is not a readable image ({exc.__class__.__name__}); pass a PNG or JPEG file") from exc


def pil_to_rgb(im: Image.Image, source: str = "image") -> tuple[np.ndarray, str]:
    note = ""
    if im.mode != "RGB":
        note = f"{source}: converted {im.mode} to RGB"
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            # composite on white: the study's outlines are drawn on a white background
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, rgba)
            note += " (transparent pixels composited on white)"
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy(), note


def array_to_rgb(a: np.ndarray, source: str = "array") -> tuple[np.ndarray, str]:
    """numpy [H,W] / [H,W,C] (uint8 or float 0..1) -> RGB uint8 [H,W,3]."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # [C,H,W] -> [H,W,C]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4)):
        raise ImageInputError(f"{source}: expected an image of shape [H,W], [H,W,3] or [H,W,4], got {list(a.shape)}")
    if a.dtype == np.uint8:
        u8 = a
    elif np.issubdtype(a.dtype, np.floating):
        if a.size and (np.nanmin(a) < -1e-3 or np.nanmax(a) > 1 + 1e-3):
            raise ImageInputError(f"{source}: float images must be in 0..1 (got {np.nanmin(a):.3g}..{np.nanmax(a):.3g})")
        u8 = (np.clip(np.nan_to_num(a), 0, 1) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ImageInputError(f"{source}: unsupported dtype {a.dtype}; use uint8 0..255 or float 0..1")
    if u8.ndim == 2 or u8.shape[-1] == 1:
        mode = "L" if u8.ndim == 2 else "L"
        return pil_to_rgb(Image.fromarray(u8.reshape(u8.shape[:2]), mode), source)
    if u8.shape[-1] == 4:
        return pil_to_rgb(Image.fromarray(u8, "RGBA"), source)
    return np.ascontiguousarray(u8), ""


def coerce_image(obj, source: str = "image") -> tuple[np.ndarray, str]:
    """Any supported input -> (RGB uint8 [H,W,3], conversion note or "")."""
    if isinstance(obj, (str, Path)):
        return load_image(obj)
    if isinstance(obj, Image.Image):
        return pil_to_rgb(obj, source)
    if type(obj).__module__.startswith("torch"):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return array_to_rgb(obj, source)
    raise ImageInputError(
        f"{source}: cannot use a {type(obj).__name__} as an image; pass a PIL image, a numpy array, a torch tensor "
        "or a file path"
    )


def resize_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear (area-aware when shrinking) resize of uint8 [H,W,3] to ``size`` (int = square, or (H, W))."""
    h, w = (size, size) if isinstance(size, int) else size
    if img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
