"""Colour names: the eight canonical colours of the original study, plus CSS names and ``#rrggbb``.

``resolve_colour`` is the one place a colour name becomes an RGB triple; every loader, the generator and
inference go through it so that "green" means the same thing everywhere.
"""

from __future__ import annotations

import difflib
import functools
import re

from PIL import ImageColor

__all__ = ["CANONICAL_COLOURS", "UnknownColourError", "colour_key", "palette", "resolve_colour", "is_canonical",
           "known_colour_names", "srgb_to_lab"]

# The exact RGB values found in the original dataset's targets. They win over CSS where the two disagree:
# CSS "green" is (0,128,0) but the study's green is (0,255,0) (CSS "lime").
CANONICAL_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "purple": (128, 0, 128),
    "orange": (255, 165, 0),
}

_HEX = re.compile(r"^#([0-9a-f]{6})$")


class UnknownColourError(ValueError):
    """A colour name that is neither canonical, a CSS name, nor ``#rrggbb``."""


def colour_key(name: str) -> str:
    """The one normal form of a colour name: lower case without spaces, ``_`` or ``-``.

    "Light Blue", "light_blue", "light-blue" and "lightblue" all give "lightblue" (the CSS name). Every
    embedding cache and colour table is keyed on it, and it is what the text encoders are given.
    """
    return re.sub(r"[\s_\-]+", "", str(name).strip().lower())


_normalise = colour_key


def known_colour_names() -> list[str]:
    """All accepted names (canonical first, then CSS), normalised (lower case, no spaces)."""
    return list(CANONICAL_COLOURS) + sorted(n for n in ImageColor.colormap if n not in CANONICAL_COLOURS)


def is_canonical(name: str) -> bool:
    """True when ``name`` is one of the eight colours of the original dataset (case/space-insensitive)."""
    return isinstance(name, str) and _normalise(name) in CANONICAL_COLOURS


def resolve_colour(name: str) -> tuple[int, int, int]:
    """RGB triple for a canonical name, a CSS colour name or ``#rrggbb`` (all case/space-insensitive)."""
    if not isinstance(name, str):
        raise UnknownColourError(f"colour must be a string such as 'red' or '#12ab34', got {name!r}")
    key = _normalise(name)
    if key in CANONICAL_COLOURS:
        return CANONICAL_COLOURS[key]
    match = _HEX.match(key)
    if match:
        h = match.group(1)
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if key in ImageColor.colormap:
        r, g, b = ImageColor.getrgb(key)[:3]
        return (r, g, b)
    if key in _xkcd_colours():  # XKCD survey names ("dark teal"); canonical and CSS keys win (checked above)
        return _xkcd_colours()[key]
    raise UnknownColourError(_unknown_message(name, key))


@functools.lru_cache(maxsize=1)
def _xkcd_colours() -> dict[str, tuple[int, int, int]]:
    """colour_key -> RGB of the XKCD table ("xkcd:" prefix dropped; the first of equal keys wins).

    The table ships with the package (``colourtables``: matplotlib's ``XKCD_COLORS``), so no matplotlib is needed."""
    from .colourtables import xkcd

    table: dict[str, tuple[int, int, int]] = {}
    for full, h in xkcd().items():
        table.setdefault(colour_key(full.split(":", 1)[1]), tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)))
    return table


def _unknown_message(name: str, key: str) -> str:
    if key.startswith("#"):
        hint = "hex colours need exactly six hex digits, e.g. '#12ab34'"
    else:
        close = difflib.get_close_matches(key, known_colour_names(), n=3, cutoff=0.6)
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?" if close else "no close name found"
    return (
        f"unknown colour {name!r}: {hint}. Accepted: the canonical names "
        f"({', '.join(CANONICAL_COLOURS)}), any CSS colour name (e.g. 'teal', 'navy', 'hotpink'), an XKCD "
        f"survey name (e.g. 'dark teal', 'dusty rose') "
        f"or a hex value '#rrggbb'."
    )


def palette(colours=None) -> list[tuple[str, tuple[int, int, int]]]:
    """[(name, rgb), ...] for ``colours`` (None: the 8 canonical); raises ``UnknownColourError`` naming a bad one."""
    return _palette_cached(None if colours is None else tuple(colours))


@functools.lru_cache(maxsize=64)
def _palette_cached(colours: tuple[str, ...] | None) -> list[tuple[str, tuple[int, int, int]]]:
    names = list(CANONICAL_COLOURS) if colours is None else list(colours)
    if not names:
        raise ValueError("colours must name at least one colour (or be None for the 8 canonical ones)")
    return [(n, resolve_colour(n)) for n in names]


def srgb_to_lab(rgb01) -> "np.ndarray":
    """sRGB in 0..1 (any shape ``[..., 3]``) -> CIE-LAB (D65, 2 degrees), float64 ``[..., 3]``.

    The one sRGB -> LAB conversion of the run-time code (the composite's mask, the colour token's features);
    it agrees with ``skimage.color.rgb2lab`` to ~1e-4 (``tests/test_comfyui_deps.py``), without needing scikit-image
    at run time (ComfyUI's Python has none). The scoring code in ``eval/`` keeps scikit-image's CIEDE2000.
    """
    import numpy as np

    c = np.asarray(rgb01, np.float64)
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]], np.float64)
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)
