"""One polygon/colour pair (``Sample``), the data error, and the image reading every loader shares.

Split out of ``data.py`` so the generator (``synthetic.py``) and the Hugging Face loader (``hfdata.py``) can use
them without importing ``data`` (which imports both).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..colour.colours import UnknownColourError, resolve_colour
from .imageio import ImageInputError, load_image, pil_to_rgb

__all__ = ["Sample", "DataError"]

@dataclass(eq=False)  # arrays make field-wise == ambiguous; compare samples explicitly
class Sample:
    """One pair: ``input`` outline image and ``target`` filled image, uint8 HxWx3 RGB, plus its colour name."""

    input: np.ndarray
    target: np.ndarray
    colour: str
    name: str
    family: str = "folder"
    shape: str = ""


class DataError(ValueError):
    """Unreadable or inconsistent data; the message names the file and what to do about it."""


# --------------------------------------------------------------------------------------------- images


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    # the one RGB conversion (transparent pixels on white, the original background) shared with inference
    return pil_to_rgb(im)[0]


def _read_image(path: Path, where: str) -> np.ndarray:
    """A data file as RGB uint8 through ``imageio.load_image`` (the coercion inference uses)."""
    if not path.is_file():
        raise DataError(f"{where}: image file {path} does not exist; add it or fix the file name in the row")
    try:
        return load_image(path)[0]
    except ImageInputError as e:
        raise DataError(f"{where}: {path} is not a readable image ({e}); replace it with a PNG/JPEG") from e


def _size(a: np.ndarray) -> str:
    return f"{a.shape[1]}x{a.shape[0]}"


def _check_colour(colour, where: str) -> None:
    try:
        resolve_colour(colour)
    except UnknownColourError as e:
        raise DataError(f"{where}: {e}") from e

