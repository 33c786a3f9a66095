"""Training palettes: counts, the fixed held-out split, hex evaluation codes, and sampling that never leaks."""

import numpy as np
import pytest

from polycolor.polycolor_core.colour import palettes as P
from polycolor.polycolor_core.colour.colours import UnknownColourError, colour_key, resolve_colour


def test_parts_load_with_their_counts():
    assert len(P.names("canonical")) == 8
    assert len(P.names("css")) == 148
    # 949 XKCD survey names minus those whose key is a canonical/CSS name and XKCD's own near-duplicates
    assert len(P.names("xkcd")) == 839
    for part in ("canonical", "css", "xkcd"):
        assert len(P.train_names(part)) + len(P.heldout_names(part)) == len(P.names(part))


def test_heldout_split_is_fixed_and_disjoint():
    assert P.heldout_names("canonical") == ()
    assert len(P.heldout_names("css")) == 27 and len(P.heldout_names("xkcd")) == 168
    assert "azure" in P.heldout_names("css") and "cloudy blue" in P.heldout_names("xkcd")
    for part in ("css", "xkcd"):
        assert not set(P.train_names(part)) & set(P.heldout_names(part))
    # the rule is a property of the name alone (any spelling)
    assert P.is_heldout("Cloudy-Blue") and not P.is_heldout("red") and not P.is_heldout("#123456")


def test_xkcd_names_resolve_without_prefix_and_css_keys_win():
    assert resolve_colour("dark teal") == (1, 77, 78)
    assert resolve_colour("Dark Teal") == resolve_colour("dark_teal")
    assert resolve_colour("green") == (0, 255, 0)  # the study's green, not xkcd's (21, 176, 26)
    keys = [colour_key(n) for n in P.names("xkcd")]
    assert len(set(keys)) == len(keys)
    assert not set(keys) & {colour_key(n) for n in P.names("css")}
    for n in P.names("xkcd"):
        resolve_colour(n)
    with pytest.raises(UnknownColourError):
        resolve_colour("xkcd nonsense colour")


def test_hex_evaluation_codes_are_never_drawn_for_training():
    ev = P.heldout_hex(64, seed=3)
    assert len(set(ev)) == 64 and all(P.is_eval_hex(c) for c in ev)
    assert ev == P.heldout_hex(64, seed=3)
    rng = np.random.default_rng(0)
    drawn = [P.random_train_hex(rng) for _ in range(2000)]
    assert not any(P.is_eval_hex(c) for c in drawn)


def test_parse_palette_mixes_and_errors():
    pal = P.parse_palette("canonical+xkcd+hex")
    assert pal.parts == ("canonical", "xkcd", "hex") and pal.has_hex
    assert P.parse_palette(None).parts == ("canonical",)
    with pytest.raises(ValueError, match="canonical, css, xkcd, hex"):
        P.parse_palette("canonical+rainbow")
    assert pal.covers("#abcdef") and pal.covers("Dusty Rose") and pal.covers("red")
    assert not pal.covers("cloudy blue")  # held out
    assert not P.parse_palette("canonical").covers("#abcdef")


def test_draws_cover_every_part_and_never_a_heldout_name():
    pal = P.parse_palette("canonical+css+xkcd+hex")
    rng = np.random.default_rng(1)
    names = [pal.draw(rng)[0] for _ in range(3000)]
    held = set(P.heldout_names("css")) | set(P.heldout_names("xkcd"))
    assert not held & set(names)
    assert any(n.startswith("#") for n in names) and any(n in P.names("canonical") for n in names)
    assert sum(n in P.names("canonical") for n in names) > 3000 * 0.15  # a part is a quarter of the draws


def test_palette_dataset_is_deterministic_and_draws_from_the_palette():
    from polycolor.polycolor_core.data.synthetic import SyntheticDataset

    ds = P.PaletteDataset(SyntheticDataset("canonical+pose", n=40, size=32), "xkcd")
    again = P.PaletteDataset(SyntheticDataset("canonical+pose", n=40, size=32), "xkcd")
    for i in range(40):
        s = ds[i]
        assert s.colour == again[i].colour and np.array_equal(s.target, again[i].target)
        assert s.colour in P.train_names("xkcd")
        if s.family != "canonical":
            assert tuple(s.target[s.target.reshape(-1, 3).sum(1).reshape(32, 32) != 765][0]) == resolve_colour(s.colour)
