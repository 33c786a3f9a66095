"""Tests for the data layer: colours, shapes, the synthetic generator, loaders/writers and paired augmentation.

The canonical family is checked against the original dataset (/work/shared/data/ayna, located relative to the
repository); those tests skip when it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polycolor.polycolor_core.data import augment

from polycolor.polycolor_core.colour import colours

from polycolor.polycolor_core.data import datasets as data

from polycolor.polycolor_core.data import families

from polycolor.polycolor_core.data import shapes

from polycolor.polycolor_core.data import synthetic
from polycolor.polycolor_core.colour.colours import CANONICAL_COLOURS, UnknownColourError, resolve_colour
from polycolor.polycolor_core.data.datasets import DataError, Sample

AYNA = Path(__file__).resolve().parents[1].parent / "shared/data/ayna"
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


@pytest.fixture(scope="module")
def ayna() -> Path:
    if not (AYNA / "training" / "data.json").is_file():
        pytest.skip(f"original dataset not found at {AYNA}")
    return AYNA


@pytest.fixture(scope="module")
def ayna_train(ayna) -> list[Sample]:
    return data.load_folder(ayna / "training")


# ----------------------------------------------------------------------------------------------- helpers


def changed(s: Sample) -> np.ndarray:
    return (s.input != s.target).any(axis=-1)


def enclosed(outline: np.ndarray) -> np.ndarray:
    """Pixels not reachable from the image border through non-outline pixels (4-connected flood fill)."""
    free = ~outline
    reach = np.zeros_like(free)
    reach[0], reach[-1], reach[:, 0], reach[:, -1] = free[0], free[-1], free[:, 0], free[:, -1]
    while True:
        grown = reach.copy()
        grown[1:] |= reach[:-1]
        grown[:-1] |= reach[1:]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= free
        if (grown == reach).all():
            return ~reach
        reach = grown


def outline_mask(s: Sample) -> np.ndarray:
    if s.family == "dark":  # dark backgrounds stay <= 100, light outlines >= 140
        return s.input.max(axis=-1) >= 140
    return (s.input != WHITE).any(axis=-1)


def colour_set(img: np.ndarray) -> set[tuple[int, int, int]]:
    packed = np.unique(img.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32))
    return {(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255) for v in packed}


def median_run(mask: np.ndarray) -> float:
    """Median length of horizontal runs of outline pixels: the outline width on mostly vertical edges."""
    runs = []
    for row in mask:
        d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        runs += list(np.nonzero(d == -1)[0] - np.nonzero(d == 1)[0])
    return float(np.median(runs))


def mini_split(tmp_path: Path, n: int = 3) -> Path:
    out = tmp_path / "split"
    data.write_split(synthetic.SyntheticDataset("canonical", n=n, seed=0, size=32), out, progress=False)
    return out


# ----------------------------------------------------------------------------------------------- colours


def test_canonical_colours_exact():
    assert CANONICAL_COLOURS == {
        "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
        "cyan": (0, 255, 255), "magenta": (255, 0, 255), "purple": (128, 0, 128), "orange": (255, 165, 0),
    }  # fmt: skip


def test_resolve_colour_forms():
    assert resolve_colour("green") == (0, 255, 0)  # canonical beats CSS green (0,128,0)
    assert resolve_colour(" Light Blue ") == (173, 216, 230)
    assert resolve_colour("teal") == (0, 128, 128)
    assert resolve_colour("#12AB34") == (0x12, 0xAB, 0x34)
    assert colours.is_canonical("Cyan") and not colours.is_canonical("teal")


def test_unknown_colour_message():
    with pytest.raises(UnknownColourError) as e:
        resolve_colour("reed")
    msg = str(e.value)
    assert "'reed'" in msg and "'red'" in msg and "#rrggbb" in msg and "CSS" in msg
    assert isinstance(e.value, ValueError)
    with pytest.raises(UnknownColourError, match="six hex digits"):
        resolve_colour("#12ab3")


# ----------------------------------------------------------------------------------------------- shapes


def test_shape_families():
    assert sorted(shapes.CANONICAL_SHAPES) == sorted(
        ["circle", "diamond", "hexagon", "octagon", "pentagon", "square", "star", "triangle"]
    )
    for n in range(3, 13):
        p = shapes.regular_polygon(n)
        assert p.shape == (n, 2) and shapes.is_convex(p) and np.allclose(np.hypot(*p.T), 1)
    for k in (3, 5, 8):
        assert shapes.star(k).shape == (2 * k, 2) and not shapes.is_convex(shapes.star(k))
    assert not shapes.is_convex(shapes.cross()) and not shapes.is_convex(shapes.arrow())
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert shapes.is_convex(shapes.irregular_convex(rng, 7))
        assert not shapes.is_convex(shapes.irregular_concave(rng, 8))
        name, p = shapes.random_extra_shape(rng)
        assert name and abs(shapes.polygon_area(p)) > 0.05


# ----------------------------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("family", synthetic.FAMILIES)
def test_generator_deterministic_per_seed_and_index(family):
    a = synthetic.SyntheticDataset(family, n=6, seed=3, size=48)
    b = synthetic.SyntheticDataset(family, n=6, seed=3, size=48)
    late = b[5]  # drawn first here, last in `a`: must not matter
    first = [a[i] for i in range(6)]
    assert np.array_equal(first[5].input, late.input) and np.array_equal(first[5].target, late.target)
    for i, s in enumerate(first):
        t = b[i]
        assert np.array_equal(s.input, t.input) and np.array_equal(s.target, t.target) and s.name == t.name
    other = synthetic.SyntheticDataset(family, n=6, seed=4, size=48)
    assert any(not np.array_equal(s.target, other[i].target) for i, s in enumerate(first))


def test_stream_matches_dataset():
    fams = ("canonical", "pose", "shapes", "dark")
    ds = synthetic.SyntheticDataset(fams, n=8, seed=7, size=32)
    stream = synthetic.synthetic_stream(fams, seed=7, size=32)
    for i in range(8):
        s = next(stream)
        assert s.family == fams[i % 4] and np.array_equal(s.target, ds[i].target)
    assert len(ds) == 8 and len(ds[2:5]) == 3 and ds[-1].name == ds[7].name


# The original-format families: binary outline on a plain background. The user-input families (anti-aliased,
# JPEG, coloured ink, paper) break those two properties by design; tests/test_composite.py checks them.
@pytest.mark.parametrize("family", [f for f in synthetic.FAMILIES if f not in families.USER_FAMILIES])
@pytest.mark.parametrize("size", [128, 64])
def test_every_family_renders_valid_pairs(family, size):
    allowed = set(CANONICAL_COLOURS.values())
    for s in synthetic.SyntheticDataset(family, n=12, seed=11, size=size):
        assert s.input.shape == s.target.shape == (size, size, 3)
        assert s.input.dtype == s.target.dtype == np.uint8 and s.family == family and s.shape
        region = changed(s)
        # Target differs from input exactly on the polygon: the region enclosed by the drawn outline.
        assert np.array_equal(region, enclosed(outline_mask(s))), s.name
        assert (s.target[region] == resolve_colour(s.colour)).all()  # exact fill colour, no anti-aliasing
        assert resolve_colour(s.colour) in allowed  # canonical colours are the default for every family
        if family != "dark":
            assert colour_set(s.input) == {WHITE, BLACK}
        else:
            assert s.target[~region].max() <= 100 and s.target[~region].std() > 2  # noisy dark background kept


def test_extra_colours_and_family_errors():
    ds = synthetic.SyntheticDataset(("pose", "canonical"), n=8, seed=0, size=32, colours=["teal", "#123456", "red"])
    assert {s.colour for s in ds[0::2]} <= {"teal", "#123456", "red"}
    assert {s.colour for s in ds[1::2]} == {"red"}  # canonical keeps canonical colours
    with pytest.raises(ValueError, match="valid families: canonical, pose, shapes, dark"):
        synthetic.make_sample(np.random.default_rng(0), "posed")
    with pytest.raises(ValueError, match="valid families"):
        synthetic.SyntheticDataset("canonical+bogus")
    with pytest.raises(UnknownColourError, match="'tael'"):
        synthetic.SyntheticDataset("pose", colours=["tael"])


# ----------------------------------------------------------------------------------------------- vs original


def test_canonical_family_reproduces_original_pixels(ayna_train):
    """Every (shape, colour) of the original training split is rendered pixel for pixel."""
    for real in ayna_train:
        unit = shapes.CANONICAL_SHAPES[real.shape]
        inp, tgt = synthetic.render_pair(shapes.to_pixels(unit, 128), 128, resolve_colour(real.colour), width=2)
        assert np.array_equal(inp, real.input), real.shape
        assert np.array_equal(tgt, real.target), real.name


def test_canonical_family_statistics_match_original(ayna_train):
    synth = list(synthetic.SyntheticDataset("canonical", n=64, seed=0))
    # Colours: inputs are pure black on white; targets hold white plus exactly the canonical colours.
    for group in (ayna_train, synth):
        assert set().union(*(colour_set(s.input) for s in group)) == {WHITE, BLACK}
        target_colours = set().union(*(colour_set(s.target) for s in group))
        assert target_colours == {WHITE} | set(CANONICAL_COLOURS.values())
    real_by_shape = {s.shape: s for s in ayna_train}
    synth_by_shape = {s.shape: s for s in synth}  # same shape => same input at 128 px: check each once
    assert set(synth_by_shape) == set(real_by_shape)
    for s in synth_by_shape.values():
        r = real_by_shape[s.shape]
        om_s, om_r = outline_mask(s), outline_mask(r)
        assert median_run(om_s) == median_run(om_r)  # same outline thickness...
        if s.shape in ("square", "hexagon", "octagon", "circle"):  # ...which is 2 px on vertical edges
            assert median_run(om_s) == 2.0
        ys, xs = np.nonzero(om_s)
        yr, xr = np.nonzero(om_r)
        assert (ys.min(), ys.max(), xs.min(), xs.max()) == (yr.min(), yr.max(), xr.min(), xr.max())  # placement
        # Fill rule: the target differs from the input exactly on the enclosed polygon (outline included).
        assert np.array_equal(changed(s), enclosed(om_s)) and np.array_equal(changed(r), enclosed(om_r))
        assert changed(s).sum() == changed(r).sum()


def test_load_folder_reads_original(ayna):
    train = data.load_folder(ayna / "training")
    val = data.load_folder(ayna / "validation" / "data.json")
    assert len(train) + len(val) == 61
    s = train[0]
    assert (s.colour, s.name, s.shape, s.family) == ("cyan", "cyan_octagon.png", "octagon", "folder")
    assert s.input.shape == (128, 128, 3) and s.input.dtype == np.uint8
    assert data.load_data(f"folder:{ayna / 'validation'}")[0].name == val[0].name
    assert len(data.load_data(str(ayna / "training"))) == 56
    with pytest.raises(DataError, match="split folders"):
        data.load_folder(ayna)


# ----------------------------------------------------------------------------------------------- write / load


def test_write_split_round_trip(tmp_path):
    ds = synthetic.SyntheticDataset(("canonical", "pose"), n=10, seed=2, size=32)
    out = data.write_split(ds, tmp_path / "out", progress=False)
    rows = json.loads((out / "data.json").read_text())
    assert len(rows) == 10 and set(rows[0]) == set(data.ROW_KEYS)
    by_shape = {}
    for r, s in zip(rows, ds):
        if s.family == "canonical":  # identical inputs are written once and shared, like the original
            assert by_shape.setdefault(s.shape, r["input_polygon"]) == r["input_polygon"]
    assert len(list((out / "inputs").iterdir())) == len({r["input_polygon"] for r in rows}) == 5 + len(by_shape)
    canonical_only = synthetic.SyntheticDataset("canonical", n=12, seed=2, size=32)
    canon = data.write_split(canonical_only, tmp_path / "c", progress=False)
    names = {r["input_polygon"] for r in json.loads((canon / "data.json").read_text())}
    assert names <= {f"{k}.png" for k in shapes.CANONICAL_SHAPES}  # shape.png, as in the original
    back = data.load_folder(out)
    for a, b in zip(ds, back):
        assert np.array_equal(a.input, b.input) and np.array_equal(a.target, b.target) and a.colour == b.colour


def _tiny_hf(n=3, **names):
    import datasets

    samples = list(synthetic.SyntheticDataset("pose", n=n, seed=1, size=32))
    cols = {
        names.get("input", "input_polygon"): [Image.fromarray(s.input) for s in samples],
        names.get("target", "output_image"): [Image.fromarray(s.target) for s in samples],
        names.get("colour", "colour"): [s.colour for s in samples],
    }
    features = datasets.Features(
        {k: datasets.Image() if k != names.get("colour", "colour") else datasets.Value("string") for k in cols}
    )
    return datasets.Dataset.from_dict(cols, features=features), samples


def test_load_hf_saved_dataset(tmp_path):
    ds, samples = _tiny_hf()
    ds.save_to_disk(str(tmp_path / "saved"))
    saved = tmp_path / "saved"
    for loaded in (data.load_hf(saved), data.load_data(f"hf:{saved}"), data.load_data(str(saved))):
        assert len(loaded) == 3 and loaded[0].family == "hf"
        for s, t in zip(samples, loaded):
            assert np.array_equal(s.input, t.input) and np.array_equal(s.target, t.target) and s.colour == t.colour


def test_load_hf_dict_split_columns_and_parquet(tmp_path):
    import datasets

    ds, samples = _tiny_hf(input="cond", target="result", colour="prompt")
    datasets.DatasetDict({"train": ds, "validation": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    cols = {"input": "cond", "target": "result"}  # "prompt" is a known alternative for the colour
    val = data.load_hf(tmp_path / "dd", split="val", columns=cols)  # "val" is an alias of "validation"
    assert len(val) == 1 and np.array_equal(val[0].target, samples[0].target) and val[0].colour == samples[0].colour
    with pytest.raises(DataError, match="no column for 'input'.*columns are \\['cond', 'result', 'prompt'\\]"):
        data.load_hf(tmp_path / "dd")
    custom = data.load_data(f"hf:{tmp_path / 'dd'}:train?input=cond&target=result")
    assert len(custom) == 3
    with pytest.raises(DataError, match="available splits"):
        data.load_hf(tmp_path / "dd", split="test", columns=cols)
    with pytest.raises(DataError, match="'nope' \\(for input\\) not found"):
        data.load_hf(tmp_path / "dd", columns={"input": "nope"})
    ds.to_parquet(str(tmp_path / "pairs.parquet"))
    pq = data.load_data(f"hf:{tmp_path / 'pairs.parquet'}?input=cond&target=result")
    assert len(pq) == 3 and np.array_equal(pq[2].input, samples[2].input)


def test_load_hf_hub_offline_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as e:
        data.load_data("hf:someone/polygons")
    msg = str(e.value)
    assert "'someone/polygons'" in msg and "hub" in msg and "save_to_disk" in msg and "offline" in msg


def test_load_data_specs():
    ds = data.load_data("synthetic:canonical+pose?n=5&seed=2&size=64&colours=red,teal")
    assert isinstance(ds, synthetic.SyntheticDataset) and len(ds) == 5 and ds[1].input.shape == (64, 64, 3)
    with pytest.raises(DataError, match="valid families"):
        data.load_data("synthetic:canonical+poses?n=5")
    with pytest.raises(DataError, match="unknown option 'count'"):
        data.load_data("synthetic:pose?count=5")
    with pytest.raises(DataError, match="no such file.*synthetic:"):
        data.load_data("/nonexistent/place")


# ----------------------------------------------------------------------------------------------- errors


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no data.json"):
        data.load_folder(tmp_path / "empty")

    split = mini_split(tmp_path)
    js = split / "data.json"
    rows = json.loads(js.read_text())

    js.write_text("[{not json")
    with pytest.raises(DataError, match=r"data\.json is not valid JSON"):
        data.load_folder(split)

    js.write_text(json.dumps([{"input_polygon": "x.png", "colour": "red"}]))
    with pytest.raises(DataError, match="row 0 lacks 'output_image'"):
        data.load_folder(split)

    js.write_text(json.dumps([dict(rows[0], colour="reed")]))
    with pytest.raises(DataError, match="unknown colour 'reed'.*did you mean 'red'"):
        data.load_folder(split)

    js.write_text(json.dumps([dict(rows[0], input_polygon="gone.png")]))
    with pytest.raises(DataError, match=r"gone\.png does not exist"):
        data.load_folder(split)

    (split / "inputs" / "notes.png").write_text("not an image")
    js.write_text(json.dumps([dict(rows[0], input_polygon="notes.png")]))
    with pytest.raises(DataError, match=r"notes\.png is not a readable image"):
        data.load_folder(split)

    Image.new("RGB", (16, 16), WHITE).save(split / "inputs" / "small.png")
    js.write_text(json.dumps([dict(rows[0], input_polygon="small.png")]))
    with pytest.raises(DataError, match="is 16x16 but target .* is 32x32"):
        data.load_folder(split)


# ----------------------------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("family", synthetic.FAMILIES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"rotate_degrees": 30},
        {"colour_jitter": 0.5, "background": ["solid", "noise", "gradient"], "background_p": 1.0},
    ],
)
def test_augment_keeps_pairs_aligned(family, kwargs):
    aug = augment.PairedAugment(**kwargs)
    for i, s in enumerate(synthetic.SyntheticDataset(family, n=4, seed=5, size=48)):
        mask = changed(s)
        geom = aug.sample_geometry(np.random.default_rng(i))  # the same draw __call__ makes first
        inp, tgt = aug(s.input, s.target, np.random.default_rng(i))
        assert inp.shape == tgt.shape == s.input.shape and inp.dtype == np.uint8
        expected = aug.apply_geometry(mask.astype(np.uint8) * 255, geom, fill=(0,)) > 0
        out_mask = (inp != tgt).any(axis=-1)
        assert np.array_equal(out_mask, expected)
        assert (tgt[out_mask] == resolve_colour(s.colour)).all()  # fill colour never altered
        assert np.array_equal(inp[~out_mask], tgt[~out_mask])


def test_augment_changes_background_only():
    s = synthetic.SyntheticDataset("canonical", n=1, seed=0, size=48)[0]
    aug = augment.PairedAugment(flip=False, rot90=False, background="noise", background_p=1.0)
    inp, tgt = aug(s.input, s.target, np.random.default_rng(0))
    mask = changed(s)
    assert np.array_equal((inp != tgt).any(-1), mask)
    assert not np.array_equal(tgt[~mask], s.target[~mask])  # background replaced...
    assert np.array_equal(tgt[mask], s.target[mask])  # ...fill untouched
    with pytest.raises(ValueError, match="valid: solid, noise, gradient"):
        augment.PairedAugment(background="stripes")
