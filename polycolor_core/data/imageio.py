"""Turning whatever a user hands us into an RGB uint8 image, and resizing it the one way the models expect.

The one image coercion of the package. Accepted: PIL images, numpy arrays (uint8 0..255 or float 0..1; [H,W],
[H,W,1|3|4]), torch tensors ([C,H,W] or [H,W,C], any float dtype incl. bf16/fp16), file paths, and with
``coerce_batch`` whole batches [B,H,W,C] such as ComfyUI's IMAGE (float32 0..1). RGBA, grey and palette images
are converted to RGB and the conversion is reported, never silently. Used by ``data`` (files), the
``Colorizer`` (anything) and the ComfyUI node (batches).

``resize_image`` is shared by training and inference: a model trained at 64 px sees inputs downscaled
exactly as the training data were.

Size limit: an image of more than ``max_pixels()`` pixels (64 MP, 8192 x 8192; ``POLYCOLOR_MAX_PIXELS`` changes
it) is refused with a clear message. A file is checked from its header, before anything is decoded, so a
decompression bomb (a tiny PNG that inflates to gigabytes) never allocates its pixels.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageInputError(ValueError):
    """An input that cannot be used as an image (unreadable file, wrong shape or dtype, ...)."""


MAX_PIXELS_ENV = "POLYCOLOR_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 8192 * 8192  # 64 MP: the largest image polycolor takes without being told otherwise


def max_pixels() -> int:
    try:
        return int(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def check_size(width: int, height: int, source: str = "image") -> None:
    """Refuse an empty image, or one larger than ``max_pixels()``, before its pixels are decoded or copied."""
    if int(width) <= 0 or int(height) <= 0:
        raise ImageInputError(f"{source} is empty ({width}x{height} pixels): pass an image with at least one pixel")
    limit = max_pixels()
    if int(width) * int(height) > limit:
        raise ImageInputError(
            f"{source} is {width}x{height} ({width * height / 1e6:.0f} MP), more than polycolor's limit of "
            f"{limit / 1e6:.0f} MP: downscale it first (the models work at 32-128 px; the composite is painted at "
            f"your size), or raise the limit with {MAX_PIXELS_ENV}=<pixels> if you have the memory")


def load_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a file as RGB uint8 [H,W,3]; returns (array, note about any mode conversion)."""
    p = Path(path)
    if not p.exists():
        raise ImageInputError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageInputError(f"{p} is a folder, not an image file")
    try:
        with Image.open(p) as im:  # reads the header only
            check_size(*im.size, source=str(p))
            im.load()
            return pil_to_rgb(im, source=str(p))
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires at open, above 2x its 89 MP warning
        raise ImageInputError(f"{p} is refused: more than polycolor's limit of {max_pixels() / 1e6:.0f} MP and than "
                              f"Pillow's decompression-bomb guard ({exc}); downscale it first") from exc
    except ImageInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError) as exc:
        # a corrupt file: Pillow's decoders answer with any of these (a truncated PPM header: ValueError)
        raise ImageInputError(f"{p} is not a readable image ({exc.__class__.__name__}: {exc}); pass a PNG or JPEG "
                              "file") from exc


def pil_to_rgb(im: Image.Image, source: str = "image") -> tuple[np.ndarray, str]:
    check_size(*im.size, source=source)
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
    check_size(a.shape[1], a.shape[0], source)  # before the uint8 / RGB copies
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
        obj = _torch_to_numpy(obj)
    if isinstance(obj, np.ndarray):
        return array_to_rgb(obj, source)
    raise ImageInputError(
        f"{source}: cannot use a {type(obj).__name__} as an image; pass a PIL image, a numpy array, a torch tensor "
        "or a file path"
    )


def _torch_to_numpy(t) -> np.ndarray:
    t = t.detach().cpu()
    if t.is_floating_point() and t.element_size() < 4:  # float16 / bfloat16: numpy has no bfloat16
        t = t.float()
    return t.numpy()  # may share memory with the input: only read from it


def coerce_batch(images, what: str = "an image batch") -> tuple[list[np.ndarray], list[str]]:
    """A batch ``[B,H,W,C]`` (torch or numpy; float 0..1 or uint8; C = 1, 3 or 4) -> new RGB uint8 ``[H,W,3]``
    arrays + conversion notes. ComfyUI's IMAGE is this layout in float32."""
    if type(images).__module__.startswith("torch"):
        arr = _torch_to_numpy(images)
    elif isinstance(images, np.ndarray):
        arr = images
    else:
        raise ImageInputError(f"image must be {what} [B,H,W,C], got {type(images).__name__}")
    if arr.ndim != 4:
        raise ImageInputError(f"image must be a batch [B,H,W,C] ({what}), got shape {list(arr.shape)}")
    b, h, w, c = arr.shape
    if c not in (1, 3, 4):
        raise ImageInputError(f"image must have 1 (grey), 3 (RGB) or 4 (RGBA) channels in the last axis, got "
                              f"shape {list(arr.shape)} ({c} channels)")
    if b == 0 or h == 0 or w == 0:
        raise ImageInputError(f"image batch is empty (shape {list(arr.shape)})")
    check_size(w, h, what)  # before the uint8 copy of the whole batch
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise ImageInputError(f"image must be float 0..1 or uint8, got dtype {arr.dtype}")
    rgb, notes = [], []
    for i in range(b):  # one image at a time: float temporaries of one image, never of the whole batch
        if arr.dtype == np.uint8:
            u8 = arr[i].copy()
        else:
            if not np.isfinite(arr[i]).all():
                raise ImageInputError("image contains NaN or infinite values; fix the node that produced it")
            u8 = (np.clip(arr[i].astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # a new array
        img, note = array_to_rgb(u8, source=f"image {i}")
        rgb.append(np.ascontiguousarray(img))
        if note:
            notes.append(note)
    return rgb, notes


def resize_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear (area-aware when shrinking) resize of uint8 [H,W,3] to ``size`` (int = square, or (H, W))."""
    h, w = (size, size) if isinstance(size, int) else size
    if img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
