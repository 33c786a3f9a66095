"""``Polygon Colorize``: ComfyUI IMAGE batch + colour name(s) -> coloured IMAGE batch + fill MASK.

The node only adapts tensors: ComfyUI's IMAGE (float32 ``[B,H,W,C]`` in 0..1, C = 3, or 4 / 1 from some
loaders) becomes a list of RGB uint8 arrays (RGBA composited on white, grey expanded, exactly as the core's
``imageio`` does for files), the core ``Colorizer`` does everything else (resize to the model size and back,
chunked batches, one text embedding per distinct colour), and the result goes back to ``[B,H,W,3]``. The
input tensor is never modified.

MASK (``[B,H,W]`` float 0..1) marks what the model filled. It is computed from input vs output, not by the
model: a pixel counts when the model changed it (RGB distance >= ``CHANGE_THRESHOLD``, 0..1 units) *towards*
the requested colour; its value is how far it moved, ``(d_in - d_out) / d_in`` clipped to 0..1, where
``d_in``/``d_out`` are the RGB distances of input/output pixel to the colour. So the polygon interior is ~1,
the untouched background 0, anti-aliased edges in between. A region that already had the colour in the input
is not "changed" and stays 0.
"""

from __future__ import annotations

import logging

log = logging.getLogger("polycolor")

CHANGE_THRESHOLD = 0.1  # RGB distance (0..1 per channel) below which a pixel counts as unchanged


# --------------------------------------------------------------------------------------- adapters


def parse_colours(colour: str, batch: int) -> list[str]:
    """One colour for the whole batch, or one per non-empty line (exactly ``batch`` lines)."""
    from ..polycolor_core.colours import UnknownColourError, resolve_colour

    if not isinstance(colour, str):
        raise ValueError(f"colour must be text such as 'cyan' or '#12ab34', got {type(colour).__name__}")
    lines = [ln.strip() for ln in colour.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("colour is empty: enter a colour name such as 'cyan', 'teal' or '#12ab34' "
                         "(one for the whole batch, or one per line per image)")
    if len(lines) not in (1, batch):
        raise ValueError(
            f"got {len(lines)} colour lines for a batch of {batch} image{'s' if batch != 1 else ''}: enter one colour "
            f"for the whole batch, or exactly {batch} lines (one per image, in batch order)")
    for i, name in enumerate(lines):
        try:
            resolve_colour(name)
        except UnknownColourError as exc:
            where = f"colour line {i + 1}: " if len(lines) > 1 else ""
            raise UnknownColourError(where + str(exc)) from None
    return lines * batch if len(lines) == 1 else lines


def image_batch_to_rgb(image) -> tuple[list[np.ndarray], list[str]]:
    """ComfyUI IMAGE ``[B,H,W,C]`` (torch or numpy) -> list of new RGB uint8 ``[H,W,3]`` arrays + notes.

    The one image coercion (``imageio.coerce_batch``) that the Colorizer and the data loaders use too.
    """
    from ..polycolor_core.imageio import coerce_batch

    return coerce_batch(image, what="a ComfyUI IMAGE tensor")


def fill_mask(inputs: np.ndarray, outputs: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """uint8 ``[B,H,W,3]`` x2 + RGB ``[B,3]`` -> float32 ``[B,H,W]`` in 0..1 (see the module docstring)."""
    import numpy as np

    x = inputs.astype(np.float32) / 255.0
    y = outputs.astype(np.float32) / 255.0
    c = colours.astype(np.float32)[:, None, None, :] / 255.0
    d_in = np.sqrt(((x - c) ** 2).sum(-1))
    d_out = np.sqrt(((y - c) ** 2).sum(-1))
    change = np.sqrt(((y - x) ** 2).sum(-1))
    moved = np.clip((d_in - d_out) / np.maximum(d_in, 1e-6), 0.0, 1.0)
    return np.where(change >= CHANGE_THRESHOLD, moved, 0.0).astype(np.float32)


def _progress_bar(total: int):
    """ComfyUI's progress bar (+ its cancel button) as a ``progress(done, total)`` callback, or None."""
    try:
        import comfy.model_management as mm
        import comfy.utils
    except ImportError:
        return None
    bar = comfy.utils.ProgressBar(total)

    def progress(done: int, total_: int) -> None:
        bar.update_absolute(done, total_)
        mm.throw_exception_if_processing_interrupted()

    return progress


# --------------------------------------------------------------------------------------- the node


class PolycolorColorize:
    """ComfyUI node: POLYCOLOR_MODEL + IMAGE + colour text -> IMAGE, MASK."""

    CATEGORY = "polycolor"
    FUNCTION = "colorize"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = (
        "The images with each polygon filled in its colour, at the input size.",
        "Where the model filled: 1 where a pixel changed to the colour, 0 where it was left as it was.",
    )
    DESCRIPTION = (
        "Fills the polygon outline in each image with a named colour (one of the 8 canonical colours, any CSS "
        "colour name, or #rrggbb). Any batch size and image size: images are resized to the model's size and "
        "back. RGBA images are composited on white, grey images expanded to RGB."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("POLYCOLOR_MODEL", {"tooltip": "A model from Polycolor Model Loader."}),
                "image": ("IMAGE", {
                    "tooltip": "Polygon outline image(s), e.g. a black outline on white. Any size; a batch is "
                               "coloured in one go.",
                }),
                "colour": ("STRING", {
                    "default": "cyan",
                    "multiline": True,
                    "placeholder": "one colour for all images, e.g. cyan\n"
                                   "or one line per image, in batch order\n"
                                   "each a name or #rrggbb, e.g. #12ab34",
                    "tooltip": "The fill colour. One line (e.g. cyan) colours every image in the batch; or one "
                               "line per image, in batch order. Each line is a colour name or #rrggbb. Today's "
                               "models know the study's 8 names reliably (red, green, blue, yellow, cyan, "
                               "magenta, purple, orange); other CSS names and #rrggbb are accepted, but the "
                               "fill may be off-colour.",
                }),
            }
        }

    def colorize(self, model, image, colour: str):
        import numpy as np
        import torch

        from ..polycolor_core.colours import resolve_colour

        if not callable(getattr(model, "colorize", None)):
            raise ValueError(f"model must come from Polycolor Model Loader, got {type(model).__name__}")
        rgb, notes = image_batch_to_rgb(image)
        names = parse_colours(colour, len(rgb))
        warning = getattr(model, "palette_warning", lambda _: None)(names)  # colours the model was not trained on
        if warning:
            log.warning("polycolor: %s", warning)  # the ComfyUI console (the Colorizer also raises a UserWarning)
        for note in notes:
            log.info("polycolor: %s", note)
        result = model.colorize(rgb, names, progress=_progress_bar(len(rgb)))
        out = np.stack(result.images)  # uint8 [B,H,W,3]
        mask = fill_mask(np.stack(rgb), out, np.array([resolve_colour(n) for n in names], dtype=np.uint8))
        out_t = torch.from_numpy(out).to(torch.float32).div_(255.0)  # [B,H,W,3]
        return (out_t, torch.from_numpy(mask))
