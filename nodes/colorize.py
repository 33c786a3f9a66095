"""``Polygon Colorize``: ComfyUI IMAGE batch + colour name(s) -> coloured IMAGE batch + fill MASK.

The node only adapts tensors: ComfyUI's IMAGE (float32 ``[B,H,W,C]`` in 0..1, C = 3, or 4 / 1 from some
loaders) becomes a list of RGB uint8 arrays (RGBA composited on white, grey expanded, exactly as the core's
``imageio`` does for files), the core ``Colorizer`` does everything else (letterbox to the model size, chunked
batches, one text embedding per distinct colour, and the output: ``composite`` by default - a solid fill of the
model's colour pasted into the input at its own resolution, every other pixel untouched - or ``raw``, the
model's whole picture), and the result goes back to ``[B,H,W,3]``. The input tensor is never modified.

MASK (``[B,H,W]`` float, 1 inside the fill, 0 elsewhere) is the very mask the composite painted
(``composite.fill_mask``: the model's fill region snapped to the drawn outline), in both output modes.

``colorize`` is the node's one implementation; ``SPEC`` declares its interface (``spec.NodeSpec``), from which
``v3.py`` builds the ComfyUI V3 node.
"""

from __future__ import annotations

import logging

from .spec import Input, NodeSpec, Output

log = logging.getLogger("polycolor")


# --------------------------------------------------------------------------------------- adapters


def parse_colours(colour: str, batch: int) -> list[str]:
    """One colour for the whole batch, or one per non-empty line (exactly ``batch`` lines)."""
    from ..polycolor_core.colour.colours import UnknownColourError, resolve_colour

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
    from ..polycolor_core.data.imageio import coerce_batch

    return coerce_batch(image, what="a ComfyUI IMAGE tensor")


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

COLOUR_TOOLTIP = (
    "The fill colour. One line (e.g. cyan) colours every image in the batch; or one line per image, in batch "
    "order. Each line is a colour name (the study's 8, any CSS name such as teal, or an XKCD survey name such as "
    "dark teal) or #rrggbb. A model trained on a wide palette (Polycolor Train's default m8, or `polycolor "
    "reproduce`'s m8) paints colours it never saw in training too: held-out CSS names, XKCD names and hex codes "
    "come out within about 2-3 CIEDE2000 of the asked colour (barely visible). Models trained on the study's 8 "
    "names only are reliable for those 8 and warn in the console for anything else."
)


def colorize(model, image, colour: str, output: str = "composite"):
    """The node: POLYCOLOR_MODEL + ComfyUI IMAGE + colour text -> (IMAGE ``[B,H,W,3]``, MASK ``[B,H,W]``)."""
    import numpy as np
    import torch

    if not callable(getattr(model, "colorize", None)):
        raise ValueError(f"model must come from Polycolor Model Loader or Polycolor Train, got {type(model).__name__}")
    rgb, notes = image_batch_to_rgb(image)
    names = parse_colours(colour, len(rgb))
    warning = getattr(model, "palette_warning", lambda _: None)(names)  # colours the model was not trained on
    if warning:
        log.warning("polycolor: %s", warning)  # the ComfyUI console (the Colorizer also raises a UserWarning)
    for note in notes:
        log.info("polycolor: %s", note)
    result = model.colorize(rgb, names, progress=_progress_bar(len(rgb)), output=output)
    out = np.stack(result.images)  # uint8 [B,H,W,3]
    mask = np.stack(result.masks).astype(np.float32)  # [B,H,W]: the mask the composite painted
    out_t = torch.from_numpy(out).to(torch.float32).div_(255.0)  # [B,H,W,3]
    return (out_t, torch.from_numpy(mask))


SPEC = NodeSpec(
    node_id="PolycolorColorize",
    display_name="Polygon Colorize",
    description=(
        "Fills the polygon outline in each image with a colour: a name (the 8 canonical colours, any CSS or XKCD "
        "colour name) or #rrggbb. Any batch size, image size and aspect ratio (letterboxed, never squashed). "
        "Output composite (default): the fill is pasted into your image at full resolution and every other pixel "
        "is left exactly as it was; raw: the model's whole picture. RGBA images are composited on white, grey "
        "images expanded to RGB."
    ),
    inputs=(
        Input("model", "POLYCOLOR_MODEL", "A model from Polycolor Model Loader or Polycolor Train."),
        Input("image", "IMAGE", "Polygon outline image(s), e.g. a black outline on white. Any size; a batch is "
                                "coloured in one go."),
        Input("colour", "STRING", COLOUR_TOOLTIP, default="cyan", multiline=True,
              placeholder="one colour for all images, e.g. cyan\n"
                          "or one line per image, in batch order\n"
                          "each a name or #rrggbb, e.g. dark teal or #12ab34"),
        Input("output", "COMBO", "composite: the fill pasted into your image at its own resolution, every other "
                                 "pixel left exactly as it was. raw: the model's whole picture, scaled back to the "
                                 "image size (the study's figures).",
              default="composite", options=("composite", "raw"), optional=True),
    ),
    outputs=(
        Output("IMAGE", "image", "The images with each polygon filled in its colour, at the input size."),
        Output("MASK", "mask", "The fill region the composite painted: 1 inside the polygon (outline included), "
                               "0 elsewhere."),
    ),
    run=colorize,
)
