"""Training palettes: which colour names (and hex codes) a model is trained on, and which are held out.

A palette spec is one or more of these parts joined by ``+`` (``--colours canonical+xkcd+hex``):

- ``canonical``  the study's 8 names (``colours.CANONICAL_COLOURS``); nothing held out: they *are* the task.
- ``css``        the 148 CSS names (``matplotlib.colors.CSS4_COLORS`` = PIL's table;
                 shipped as ``colourtables.json``). A CSS name whose key is
                 canonical ("green", "red", ...) means the study's colour (canonical wins, as in ``resolve_colour``).
- ``xkcd``       the XKCD colour-survey names (``matplotlib.colors.XKCD_COLORS``, 949). Prompt form: the bare name as
                 a person types it, *without* the ``xkcd:`` prefix ("dark teal", "blue/green"); the text encoder
                 sees it lower-cased with its spaces. A name whose ``colour_key`` is already a canonical or CSS
                 name ("green", "dark blue" -> "darkblue") is dropped here: that key means the CSS/study colour
                 everywhere (one name, one RGB); of XKCD's own near-duplicates ("blue green" / "bluegreen") the
                 first in matplotlib's order is kept. That leaves ``len(names("xkcd"))`` (839) names.
- ``hex``        random ``#rrggbb`` codes.

Held out (never drawn for training, used by the colour-generalisation evaluation): a name is held out when
``blake2b("polycolor-heldout:" + colour_key(name))`` mod 100 < 20 (:data:`HELDOUT_PERCENT`): a fixed rule of the
name alone, so it does not move when a list grows. A hex code is an *evaluation* code when the same hash of the
code mod 8 is 0 (:data:`HEX_EVAL_MODULUS`); training draws only codes outside that set, so a random training
code never equals an evaluation code. ``heldout_hex(n, seed)`` gives a seeded list of evaluation codes.

Sampling for training (``TrainingPalette.draw``): each part is equally likely, then a uniform name (or code)
within it, so the 8 canonical names keep a third of the draws in ``canonical+xkcd+hex``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from .colours import CANONICAL_COLOURS, colour_key, resolve_colour

__all__ = ["PALETTE_PARTS", "CONDITIONINGS", "HELDOUT_PERCENT", "HEX_EVAL_MODULUS", "TrainingPalette", "parse_palette", "names",
           "train_names", "heldout_names", "is_heldout", "is_eval_hex", "heldout_hex", "random_train_hex",
           "xkcd_table", "PaletteDataset", "HEX_ENTRY", "recorded_palette", "covers", "palette_warning"]

PALETTE_PARTS = ("canonical", "css", "xkcd", "hex")
def uses_rgb(conditioning: str) -> bool:
    """Whether ``conditioning`` gives the UNet the resolved RGB (every conditioning but the study's "text")."""
    return conditioning.startswith("text+rgb")


CONDITIONINGS = ("text", "text+rgb", "text+rgb+film")  # see conditioning.py (kept here, torch-free, for TrainConfig and ModelInfo)
HELDOUT_PERCENT = 20
HEX_EVAL_MODULUS = 8
_SALT = b"polycolor-heldout:"


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(_SALT + text.encode("utf-8"), digest_size=8).digest(), "big")


def is_heldout(name: str) -> bool:
    """Whether a *name* is in the fixed held-out set (canonical names and hex codes never are)."""
    key = colour_key(name)
    if key in CANONICAL_COLOURS or key.startswith("#"):
        return False
    return _hash(key) % 100 < HELDOUT_PERCENT


def is_eval_hex(code: str) -> bool:
    """Whether ``#rrggbb`` is reserved for evaluation (training never draws it)."""
    return _hash(colour_key(code)) % HEX_EVAL_MODULUS == 0


@functools.lru_cache(maxsize=1)
def _css_names() -> tuple[str, ...]:
    from .colourtables import css4  # matplotlib's CSS4_COLORS, shipped with the package

    return tuple(sorted(css4()))


@functools.lru_cache(maxsize=1)
def xkcd_table() -> dict[str, tuple[str, tuple[int, int, int]]]:
    """colour_key -> (prompt name, rgb) for the XKCD names kept in the ``xkcd`` part (see module docstring)."""
    from .colourtables import xkcd  # matplotlib's XKCD_COLORS, shipped with the package

    taken = set(CANONICAL_COLOURS) | {colour_key(n) for n in _css_names()}
    table: dict[str, tuple[str, tuple[int, int, int]]] = {}
    for full, hexcode in xkcd().items():
        name = full.split(":", 1)[1]
        key = colour_key(name)
        if key in taken or key in table:
            continue
        h = hexcode.lstrip("#")
        table[key] = (name, (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)))
    return table


def names(part: str) -> tuple[str, ...]:
    """Every name of one named part (``canonical``, ``css``, ``xkcd``), held-out ones included."""
    if part == "canonical":
        return tuple(CANONICAL_COLOURS)
    if part == "css":
        return _css_names()
    if part == "xkcd":
        return tuple(name for name, _ in xkcd_table().values())
    raise ValueError(f"palette part {part!r} has no name list; named parts are canonical, css, xkcd")


def train_names(part: str) -> tuple[str, ...]:
    """The names of ``part`` that training may draw."""
    return tuple(n for n in names(part) if not is_heldout(n))


def heldout_names(part: str) -> tuple[str, ...]:
    """The names of ``part`` that are never trained on (empty for ``canonical``)."""
    return tuple(n for n in names(part) if is_heldout(n))


def random_train_hex(rng: np.random.Generator) -> str:
    """A uniformly random ``#rrggbb`` outside the evaluation codes."""
    while True:
        code = "#%02x%02x%02x" % tuple(int(v) for v in rng.integers(0, 256, 3))
        if not is_eval_hex(code):
            return code


def heldout_hex(n: int = 32, seed: int = 0) -> list[str]:
    """``n`` seeded random evaluation codes (each ``is_eval_hex``): never drawn by training."""
    rng = np.random.default_rng([seed, 0x4E7])
    out: list[str] = []
    while len(out) < n:
        code = "#%02x%02x%02x" % tuple(int(v) for v in rng.integers(0, 256, 3))
        if is_eval_hex(code) and code not in out:
            out.append(code)
    return out


@dataclass(frozen=True)
class TrainingPalette:
    """A parsed palette spec: its parts, and the training names of each named part."""

    parts: tuple[str, ...]

    @property
    def spec(self) -> str:
        return "+".join(self.parts)

    @property
    def has_hex(self) -> bool:
        return "hex" in self.parts

    @functools.cached_property
    def _by_part(self) -> dict[str, tuple[str, ...]]:
        return {p: train_names(p) for p in self.parts if p != "hex"}

    def trained_names(self) -> list[str]:
        """All names training may draw (hex codes excluded), in part order."""
        return [n for p in self.parts if p != "hex" for n in self._by_part[p]]

    def draw(self, rng: np.random.Generator) -> tuple[str, tuple[int, int, int]]:
        """One training colour: a part uniformly, then a name (or a non-evaluation hex code) in it."""
        part = self.parts[int(rng.integers(len(self.parts)))]
        if part == "hex":
            name = random_train_hex(rng)
        else:
            pool = self._by_part[part]
            name = pool[int(rng.integers(len(pool)))]
        return name, resolve_colour(name)

    def covers(self, name: str) -> bool:
        """Whether ``name`` is a colour this palette trains on (a trained name, or any hex code for ``hex``)."""
        key = colour_key(name)
        if key.startswith("#"):
            return self.has_hex
        return key in {colour_key(n) for n in self.trained_names()}

    def describe(self) -> str:
        counts = [f"{p} ({'random #rrggbb' if p == 'hex' else len(self._by_part[p])})" for p in self.parts]
        return " + ".join(counts)


def parse_palette(spec: str | None) -> TrainingPalette:
    """``"canonical+xkcd+hex"`` -> ``TrainingPalette``; ``None``/``""`` is ``canonical``. ValueError names the parts."""
    parts = tuple(p.strip().lower() for p in str(spec or "canonical").split("+") if p.strip())
    bad = [p for p in parts if p not in PALETTE_PARTS]
    if bad or not parts:
        raise ValueError(f"unknown colour palette part(s) {', '.join(map(repr, bad)) or '(none)'} in {spec!r}; "
                         f"use parts of {', '.join(PALETTE_PARTS)} joined by '+', e.g. canonical+xkcd+hex")
    return TrainingPalette(tuple(dict.fromkeys(parts)))


class PaletteDataset:
    """A synthetic dataset whose colours come from a ``TrainingPalette``: ``ds[i]`` is a pure function of (seed, i).

    Wraps a ``synthetic.SyntheticDataset`` (same families, seed, size, length): sample ``i`` is drawn exactly as
    there, but with a one-name colour list drawn from the palette by a generator seeded with (seed, i, 0xC0102),
    so held-out names and evaluation hex codes can never appear (the ``canonical`` family too: its outlines
    are the original ones, painted in the drawn colour).
    """

    def __init__(self, base, palette: "TrainingPalette | str"):
        self.base = base
        self.palette = palette if isinstance(palette, TrainingPalette) else parse_palette(palette)
        self.families, self.n, self.seed, self.size = base.families, base.n, base.seed, base.size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        from ..data.synthetic import _sample_at

        i = int(index)
        name, _ = self.palette.draw(np.random.default_rng([self.seed, i, 0xC0102]))
        return _sample_at(self.families, self.seed, i, self.size, (name,))

    def __repr__(self) -> str:
        return f"PaletteDataset({self.base!r}, palette={self.palette.spec!r})"


HEX_ENTRY = "#rrggbb"  # in a recorded palette: "any hex code" (the model was trained on random codes)


def recorded_palette(spec: str) -> list[str]:
    """The palette a checkpoint records (config.json ``palette``): every trained name, plus ``#rrggbb`` for hex."""
    pal = parse_palette(spec)
    return pal.trained_names() + ([HEX_ENTRY] if pal.has_hex else [])


def covers(palette, name: str) -> bool:
    """Whether a recorded palette (``ModelInfo.palette``) includes ``name`` (any hex code when it has ``#rrggbb``)."""
    key = colour_key(name)
    if key.startswith("#") and HEX_ENTRY in palette:
        return True
    return key in {colour_key(n) for n in palette}


def _resolves(name: str) -> bool:
    try:
        resolve_colour(name)
        return True
    except ValueError:
        return False


def palette_warning(info, names) -> str | None:
    """A warning naming the model's palette for the colours in ``names`` it was not trained on; None if all are.

    ``info``: a ``ModelInfo`` (its ``palette`` and ``colours``). Held-out names of a palette the model trained on
    are reported too: the model has not been shown those names (the generalisation table measures how it does).
    """
    pal = tuple(getattr(info, "palette", ()) or CANONICAL_COLOURS)
    # A text+rgb(+film) model trained on random hex codes paints any colour that resolves from its exact RGB (measured on
    # the held-out names and evaluation codes): only names that do not resolve are outside what it was shown.
    rgb_any = uses_rgb(getattr(info, "conditioning", "text")) and HEX_ENTRY in pal
    outside = list(dict.fromkeys(str(n) for n in names if not covers(pal, n) and not (rgb_any and _resolves(n))))
    if not outside:
        return None
    spec = getattr(info, "colours", "") or ""
    shown = ", ".join(n for n in pal[:8]) + (f", ... ({len(pal)} names)" if len(pal) > 8 else "")
    what = f"palette {spec!r}: {shown}" if spec else f"palette: {shown}"
    return (f"colour{'s' if len(outside) > 1 else ''} {', '.join(map(repr, outside[:5]))}"
            f"{' ...' if len(outside) > 5 else ''} not in the colours this model was trained on ({what}); "
            "the fill may be a different colour. Use a trained name, or a model trained with --colours "
            "canonical+xkcd+hex --conditioning text+rgb+film for any name or hex code.")
