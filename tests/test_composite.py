"""Composite output (polycolor_core/model/composite.py) and the user-input families (polycolor_core/data/families.py).

A "perfect prediction" is the target letterboxed to the model's size: what a model that is right at its own
resolution outputs. The composite must then give the true polygon at full resolution and leave the rest of
the user's image bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from polycolor.polycolor_core.data import families as fam
from polycolor.polycolor_core.model.composite import composite, fill_mask, letterbox, unletterbox
from polycolor.polycolor_core.data.datasets import parse_synthetic
from polycolor.polycolor_core.data.synthetic import FAMILIES, check_families, make_sample

S = 112  # the cpu-profile m8's working size


def _true(inp, tgt):
    return (inp != tgt).any(-1)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _drawing(h, w, width=4.0, paper=None, aa=False, jpeg=None, colour=(255, 0, 0)):
    unit = fam._shapes.CANONICAL_SHAPES["octagon"]
    m = min(h, w)
    pts = fam._shapes.to_pixels(unit, m, 0.3) + np.array([(w - m) / 2, (h - m) / 2])
    return fam.Drawing(h, w, pts, width, (0, 0, 0), paper, 3, aa, jpeg, colour, "red", "octagon")


def _perfect(inp, tgt, size=S):
    li, t = letterbox(inp, size)
    lt, _ = letterbox(tgt, size, pad=t.pad)
    return li, lt, t


# ------------------------------------------------------------------------------------------ letterbox


def test_letterbox_keeps_the_aspect_ratio_and_inverts():
    img = np.full((384, 640, 3), 250, np.uint8)
    img[100:200, 300:400] = 0
    sq, t = letterbox(img, S)
    assert sq.shape == (S, S, 3)
    assert (t.ch, t.cw) == (67, 112) and t.top == (S - 67) // 2 and t.left == 0
    assert t.pad == (250, 250, 250)
    assert (sq[: t.top] == 250).all() and (sq[t.top + t.ch :] == 250).all()
    back = unletterbox(sq, t)
    assert back.shape == img.shape
    # the dark square comes back where it was (no squash): its centre is dark, far corners are not
    assert back[150, 350].max() < 60 and back[20, 20].min() > 240
    m = unletterbox(np.ones((S, S), bool), t)
    assert m.shape == (384, 640) and m.all()


# ------------------------------------------------------------------------------------------ composite


@pytest.mark.parametrize("hw", [(512, 512), (384, 640)])
def test_own_size_unsquashed_background_bit_identical(hw):
    h, w = hw
    inp, tgt = fam.render(_drawing(h, w, paper=(246, 240, 228)))
    li, lt, t = _perfect(inp, tgt)
    out, mask, colour = composite(inp, lt, t, li)
    assert out.shape == inp.shape and mask.shape == (h, w)
    assert colour == (255, 0, 0)
    true = _true(inp, tgt)
    assert _iou(mask, true) == 1.0  # a squashed round trip would move the edges
    assert np.array_equal(out[~mask], inp[~mask])  # every other pixel untouched (paper grain included)
    assert np.array_equal(out[5, 5], inp[5, 5]) and np.array_equal(out[h - 3, w - 3], inp[h - 3, w - 3])
    assert (out[true] == (255, 0, 0)).all()


def test_outline_pixels_are_filled():
    inp, tgt = fam.render(_drawing(300, 300, width=6.0))
    li, lt, t = _perfect(inp, tgt)
    out, mask, _ = composite(inp, lt, t, li)
    outline = (inp < 50).all(-1)
    assert outline.sum() > 500
    assert mask[outline].all() and (out[outline] == (255, 0, 0)).all()


@pytest.mark.parametrize("family", ["canonical", "pose", "shapes", "hires", "ink", "pens", "paper", "jpeg", "dark"])
def test_perfect_prediction_gives_the_true_polygon(family):
    ious = []
    for i in range(4):
        rng = np.random.default_rng([5, i])
        s = fam.make_family_sample(rng, family, native=True) if family in fam.USER_FAMILIES else make_sample(rng, family)
        li, lt, t = _perfect(s.input, s.target)
        out, mask, _ = composite(s.input, lt, t, li)
        true = _true(s.input, s.target)
        ious.append(_iou(mask, true))
        assert ((out != s.input).any(-1) & ~true).mean() <= 0.001  # background changed <= 0.1 %
    exact = family in ("canonical", "pose", "shapes", "hires", "ink", "pens")
    assert min(ious) == 1.0 if exact else min(ious) >= 0.99


def test_noisy_blobby_prediction_still_gives_the_true_polygon():
    rng = np.random.default_rng(0)
    inp, tgt = fam.render(_drawing(400, 600, width=5.0))
    li, lt, t = _perfect(inp, tgt)
    pred = lt.astype(np.int16)
    true_s = (li != lt).any(-1)
    ys, xs = np.nonzero(true_s)
    # a blob painted past the outline (touching the polygon), holes inside the fill, noise everywhere
    cy, cx = ys.max(), int(xs.mean())
    yy, xx = np.ogrid[:S, :S]
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
    pred[blob] = (250, 10, 10)
    holes = true_s & (rng.random((S, S)) < 0.05)
    pred[holes] = li[holes]
    pred += rng.integers(-8, 9, pred.shape)
    pred = np.clip(pred, 0, 255).astype(np.uint8)
    fm = fill_mask(inp, pred, t, li)
    assert fm.method == "snapped"
    assert _iou(fm.mask, _true(inp, tgt)) == 1.0
    assert max(abs(a - b) for a, b in zip(fm.colour, (255, 0, 0))) <= 6
    out, mask, _ = composite(inp, pred, t, li)
    assert np.array_equal(out[~mask], inp[~mask])


@pytest.mark.parametrize("family, seed", [("dark", 6), ("dark", 2), ("canonical", 3)])  # large polygons
def test_a_prediction_that_paints_only_the_outline_snaps_to_its_polygon(family, seed):
    from scipy import ndimage

    # A weak model on a dark noisy background colours the light line it sees and leaves the interior's noise:
    # a ring a few px wide that covers little of a large polygon's inside.
    s = make_sample(np.random.default_rng(seed), family, 128)
    li, lt, t = _perfect(s.input, s.target, 64)
    true_s = (li != lt).any(-1)
    ring = true_s & ~ndimage.binary_erosion(true_s, iterations=2)
    ring[:, int(np.nonzero(true_s)[1].mean()) + np.arange(-1, 2)] = False  # broken, so filling its holes fails
    assert ring.sum() < 0.3 * true_s.sum()
    pred = li.copy()
    pred[ring] = lt[true_s][0]
    fm = fill_mask(s.input, pred, t, li)
    assert fm.method == "outline"
    assert _iou(fm.mask, _true(s.input, s.target)) == 1.0


def test_a_blob_inside_a_large_polygon_is_not_taken_for_its_outline():
    inp, tgt = fam.render(_drawing(256, 256, width=3.0))
    li, lt, t = _perfect(inp, tgt)
    true_s = (li != lt).any(-1)
    ys, xs = np.nonzero(true_s)
    yy, xx = np.ogrid[:S, :S]
    blob = (yy - int(ys.mean())) ** 2 + (xx - int(xs.mean())) ** 2 < 49  # well inside, far from the outline
    pred = li.copy()
    pred[blob] = (255, 0, 0)
    fm = fill_mask(inp, pred, t, li)
    assert fm.method == "model" and fm.mask.sum() < 0.2 * _true(inp, tgt).sum()


def test_open_outline_falls_back_to_the_model_mask():
    inp, tgt = fam.render(_drawing(256, 256, width=3.0))
    inp[:, 120:136] = 255  # cut the outline: a flood from outside now reaches the interior
    li, lt, t = _perfect(inp, tgt)
    fm = fill_mask(inp, lt, t, li)
    assert fm.method == "model"
    assert _iou(fm.mask, _true(inp, tgt)) > 0.9


def test_no_fill_leaves_the_image_alone():
    inp, _ = fam.render(_drawing(200, 300))
    li, t = letterbox(inp, S)
    out, mask, colour = composite(inp, li.copy(), t, li)
    assert colour is None and not mask.any() and np.array_equal(out, inp)


def test_same_size_prediction_and_bad_inputs():
    s = make_sample(np.random.default_rng(1), "pose", 128)
    out, mask, colour = composite(s.input, s.target)  # a prediction at the image's own size
    assert _iou(mask, _true(s.input, s.target)) == 1.0
    with pytest.raises(ValueError, match="uint8 RGB"):
        composite(s.input.astype(np.float32), s.target)
    with pytest.raises(ValueError, match="square"):
        composite(s.input, s.target[:, :100])


def test_arbitrary_user_images_keep_their_size_and_pixels():
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    from polycolor.polycolor_core.data.imageio import coerce_image

    @hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
    @hypothesis.given(h=st.integers(3, 300), w=st.integers(3, 300), channels=st.sampled_from([0, 1, 3, 4]),
                      seed=st.integers(0, 2**16), size=st.sampled_from([32, 112]))
    def check(h, w, channels, seed, size):
        rng = np.random.default_rng(seed)
        shape = (h, w) if channels == 0 else (h, w, channels)
        img, _ = coerce_image(rng.integers(0, 256, shape, dtype=np.uint8))
        pred = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        out, mask, colour = composite(img, pred)
        assert out.shape == img.shape and mask.shape == img.shape[:2]
        assert np.array_equal(out[~mask], img[~mask])
        if colour is not None:
            assert (out[mask] == colour).all()

    check()


# ------------------------------------------------------------------------------------------ families


def test_families_are_registered_as_data_specs():
    assert set(fam.USER_FAMILIES) <= set(FAMILIES)
    assert check_families("canonical+antialias+jpeg") == ("canonical", "antialias", "jpeg")
    ds = parse_synthetic("synthetic:canonical+antialias+hires+user?n=8&seed=3&size=64").dataset()
    got = [ds[i] for i in range(8)]
    assert [s.family for s in got[:4]] == ["canonical", "antialias", "hires", "user"]
    assert all(s.input.shape == s.target.shape == (64, 64, 3) for s in got)
    again = ds[2]
    assert np.array_equal(again.input, got[2].input) and np.array_equal(again.target, got[2].target)


@pytest.mark.parametrize("family", fam.USER_FAMILIES)
def test_family_renders_deterministically_with_a_fill(family):
    a = fam.make_family_sample(np.random.default_rng([9, 4]), family, native=True)
    b = fam.make_family_sample(np.random.default_rng([9, 4]), family, native=True)
    assert np.array_equal(a.input, b.input) and np.array_equal(a.target, b.target)
    true = _true(a.input, a.target)
    assert 0.005 < true.mean() < 0.6
    assert (a.target[true] == a.target[true][0]).all()  # a solid fill


def _natives(family, n=12):
    return [fam.make_family_sample(np.random.default_rng([11, i]), family, native=True) for i in range(n)]


def test_hires_and_user_sizes_and_thicker_outlines():
    for family in ("hires", "user"):
        sizes = [s.input.shape[:2] for s in _natives(family)]
        assert all(256 <= h <= 1024 and 256 <= w <= 1024 and 0.5 <= h / w <= 2 for h, w in sizes)
        assert len(set(sizes)) > 6
    d = [fam.draw(np.random.default_rng([11, i]), "hires", [("red", (255, 0, 0))]) for i in range(20)]
    assert all(0.8 <= x.width / (min(x.h, x.w) / 128) <= 4.3 for x in d) and max(x.width for x in d) > 8


def test_pens_cover_1_to_10_px():
    widths = {fam.draw(np.random.default_rng([2, i]), "pens", [("red", (255, 0, 0))]).width for i in range(60)}
    assert widths == set(float(v) for v in range(1, 11))


def test_ink_colours_are_not_black():
    for s in _natives("ink", 6):
        ink = s.input[(s.input != 255).any(-1)]
        dark = ink[ink.sum(-1) < ink.sum(-1).min() + 30]
        assert dark.mean(0).max() > 60 or (dark.mean(0)[2] - dark.mean(0)[0]) > 40  # blue, grey or brown


def test_jpeg_inputs_carry_artefacts_and_targets_keep_them():
    for s in _natives("jpeg", 4):
        true = _true(s.input, s.target)
        bg = s.input[~true]
        assert len(np.unique(bg.reshape(-1, 3), axis=0)) > 10  # a hard render has 1 background colour
        assert np.array_equal(s.target[~true], s.input[~true])


def test_paper_is_off_white_and_textured():
    for s in _natives("paper", 6):
        border = np.concatenate([s.input[:3].reshape(-1, 3), s.input[-3:].reshape(-1, 3)]).astype(float)
        assert border.mean() < 252 and border.std(0).max() > 0.8
        assert not (s.input == 255).all(-1).any()


def test_antialias_has_intermediate_edge_values():
    s = _natives("antialias", 1)[0]
    levels = np.unique(s.input[..., 0])
    assert len(levels) > 8  # a hard black-on-white render has 2


@pytest.mark.parametrize("size", [32, 128])
def test_family_fill_regions_are_one_solid_polygon_at_every_size(size):
    from scipy import ndimage

    from polycolor.polycolor_core.colour.colours import resolve_colour
    from polycolor.polycolor_core.data.synthetic import SyntheticDataset

    for s in SyntheticDataset(fam.USER_FAMILIES, n=14, seed=4, size=size):
        assert s.input.shape == s.target.shape == (size, size, 3) and s.input.dtype == np.uint8
        region = _true(s.input, s.target)
        assert (s.target[region] == resolve_colour(s.colour)).all(), s.name  # exact colour, solid
        _, n = ndimage.label(region, structure=np.ones((3, 3), bool))
        assert n == 1 and np.array_equal(ndimage.binary_fill_holes(region), region), s.name


def test_finish_raw_is_unsquashed_with_the_composite_mask():
    from polycolor.polycolor_core.model.composite import check_output, finish

    inp, tgt = fam.render(_drawing(384, 640, width=5.0))
    li, lt, t = _perfect(inp, tgt)
    comp = finish(inp, lt, t, li, "composite")
    raw = finish(inp, lt, t, li, "raw")
    assert raw.image.shape == comp.image.shape == inp.shape
    assert np.array_equal(raw.mask, comp.mask) and raw.colour == comp.colour
    assert _iou(comp.mask, _true(inp, tgt)) == 1.0
    # the raw picture is the model's 112 px output scaled back: right place (no squash), soft edges
    true = _true(inp, tgt)
    assert (np.abs(raw.image.astype(int) - tgt.astype(int)).max(-1) < 40).mean() > 0.97
    assert np.abs(raw.image[true].astype(int) - (255, 0, 0)).max(-1).mean() < 30
    with pytest.raises(ValueError, match="composite, raw"):
        check_output("blend")


# ------------------------------------------------------------------------------------ Colorizer and node


class _PerfectBackend:
    """Stands in for a model that is right at its own resolution: fills what the black outline encloses."""

    name = "fake"

    def run(self, images, embeddings):
        from scipy import ndimage

        out = images.copy()
        for b in range(images.shape[0]):
            x = images[b].transpose(1, 2, 0)
            region = ndimage.binary_fill_holes(x.max(-1) < 0.5)
            out[b, 0][region], out[b, 1][region], out[b, 2][region] = 1.0, 0.0, 0.0
        return out


class _NoText:
    calls = encoded = 0

    def numpy(self, names):
        return np.zeros((len(names), 1, 4), np.float32)


@pytest.fixture
def perfect_colorizer():
    from polycolor.export.colorizer import Colorizer

    return Colorizer(_PerfectBackend(), _NoText(), S, batch_size=2)


@pytest.mark.parametrize("hw", [(512, 512), (384, 640)])
def test_colorizer_composite_default_own_size(perfect_colorizer, hw):
    inp, tgt = fam.render(_drawing(*hw, width=6.0, paper=(240, 236, 226)))
    res = perfect_colorizer.colorize([inp], "red")
    assert res.output == "composite" and res.images[0].shape == inp.shape
    assert _iou(res.masks[0], _true(inp, tgt)) == 1.0
    assert np.array_equal(res.images[0][~res.masks[0]], inp[~res.masks[0]])
    assert (res.images[0][4, 4] == inp[4, 4]).all() and res.fill_colours[0] == (255, 0, 0)
    raw = perfect_colorizer.colorize([inp], "red", output="raw")
    assert raw.images[0].shape == inp.shape and np.array_equal(raw.masks[0], res.masks[0])
    assert not np.array_equal(raw.images[0], res.images[0])  # the model's picture: paper grain is gone


class _SizeSensitiveBackend(_PerfectBackend):
    """Like _PerfectBackend, but a polygon small in its view gets a colour a little off (as m8 does on a
    900 px page: the polygon is ~6 px wide at 64 px); counts its calls."""

    def __init__(self):
        self.calls = []

    def run(self, images, embeddings):
        from scipy import ndimage

        self.calls.append(images.shape[0])
        out = super().run(images, embeddings)
        for b in range(images.shape[0]):
            region = ndimage.binary_fill_holes(images[b].transpose(1, 2, 0).max(-1) < 0.5)
            if region.mean() < 0.05:  # small in the frame: (255, 0, 0) comes out as (230, 30, 20)
                out[b, 0][region], out[b, 1][region], out[b, 2][region] = 230 / 255, 30 / 255, 20 / 255
        return out


def _small_polygon(h=900, w=800, at=(560, 220), side=110):
    unit = fam._shapes.CANONICAL_SHAPES["octagon"]
    pts = fam._shapes.to_pixels(unit, side, 0.45) + np.array(at, float)
    return fam.render(fam.Drawing(h, w, pts, 14.0, (0, 0, 0), None, 3, False, None, (255, 0, 0), "red", "octagon"))


def test_a_polygon_small_in_the_frame_gets_a_second_zoomed_pass():
    from polycolor.export.colorizer import Colorizer
    from polycolor.polycolor_core.model.composite import zoom_box

    inp, tgt = _small_polygon()
    true = _true(inp, tgt)
    rows, cols = zoom_box(true)
    assert true[rows, cols].sum() == true.sum()  # the crop holds the whole polygon ...
    assert (rows.stop - rows.start) < 0.3 * inp.shape[0] and not true[rows, cols][[0, -1]].any()  # ... with a margin
    backend = _SizeSensitiveBackend()
    res = Colorizer(backend, _NoText(), S, batch_size=4).colorize([inp, inp], "red")
    assert backend.calls == [2, 2]  # one pass on the whole images, one on the two crops
    for img, mask, colour in zip(res.images, res.masks, res.fill_colours):
        assert colour == (255, 0, 0)  # from the zoomed pass: (230, 30, 20) without it
        assert _iou(mask, true) == 1.0 and np.array_equal(img[~mask], inp[~mask])
    backend.calls.clear()
    one = Colorizer(backend, _NoText(), S, zoom=False).colorize([inp], "red")  # the one-pass path, on request
    assert backend.calls == [1] and one.fill_colours[0] == (230, 30, 20)


def test_a_polygon_that_fills_the_frame_gets_one_pass_and_a_disagreeing_zoom_is_not_taken():
    from polycolor.export.colorizer import Colorizer
    from polycolor.polycolor_core.model.composite import FillMask, adopt_zoom, zoom_box

    inp, tgt = fam.render(_drawing(512, 512, width=6.0))
    assert zoom_box(_true(inp, tgt)) is None and zoom_box(np.zeros((8, 8), bool)) is None
    backend = _SizeSensitiveBackend()
    Colorizer(backend, _NoText(), S).colorize([inp], "red")
    assert backend.calls == [1]
    first = FillMask(_true(inp, tgt), (255, 0, 0), "snapped")
    elsewhere = np.zeros((100, 100), bool)
    elsewhere[:10, :10] = True
    box = (slice(0, 100), slice(0, 100))
    assert adopt_zoom(first, box, FillMask(elsewhere, (0, 255, 0), "snapped")) is first
    assert adopt_zoom(first, box, FillMask(np.zeros((100, 100), bool), None, "empty")) is first


def test_node_mask_is_the_composite_mask(perfect_colorizer):
    import torch

    from polycolor.nodes import NODE_SPECS

    inp, tgt = fam.render(_drawing(512, 512, width=6.0))
    image = torch.from_numpy(inp[None].astype(np.float32) / 255.0)
    node = NODE_SPECS["PolycolorColorize"]  # what the V3 node's execute calls
    out, mask = node.run(perfect_colorizer, image, "red")
    ref = perfect_colorizer.colorize([inp], "red")
    assert out.shape == (1, 512, 512, 3) and mask.shape == (1, 512, 512)
    assert np.array_equal(mask[0].numpy() > 0.5, ref.masks[0]) and set(np.unique(mask.numpy())) <= {0.0, 1.0}
    got = (out[0].numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(got[0, 0], inp[0, 0]) and np.array_equal(got[-1, -1], inp[-1, -1])
    assert (got[256, 256] == (255, 0, 0)).all()
    raw_out, raw_mask = node.run(perfect_colorizer, image, "red", output="raw")
    assert torch.equal(raw_mask, mask) and raw_out.shape == out.shape


def test_a_model_that_also_smooths_a_dark_noisy_background_is_not_mistaken_for_the_fill():
    """On the dark family the model cleans the noise everywhere, so most changed pixels are background. The colour
    asked for (``hint``) tells the fill from the cleaned background; without it the background was painted."""
    from scipy import ndimage

    from polycolor.polycolor_core.colour.colours import resolve_colour
    from polycolor.polycolor_core.model.composite import finish, letterbox

    ious = []
    for i in range(4):
        s = make_sample(np.random.default_rng([11, i]), "dark")
        true = _true(s.input, s.target)
        li, t = letterbox(s.input, 32)
        lt, _ = letterbox(s.target, 32)
        pred = lt.copy()
        smooth = ndimage.uniform_filter(li.astype(np.float32), size=(9, 9, 1)).astype(np.uint8)  # noise cleaned
        inside = (lt != li).any(-1)
        pred[~inside] = smooth[~inside]
        out = finish(s.input, pred, t, li, "composite", hint=resolve_colour(s.colour))
        ious.append(_iou(out.mask, true))
        assert ((out.image != s.input).any(-1) & ~true).mean() <= 0.01  # the background is left alone
    assert min(ious) >= 0.9, ious
