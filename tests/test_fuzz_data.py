"""Fuzzing the data and text loaders (issue 26), 200 deterministic hypothesis examples each: ``data.json`` rows (the
original layout), Hugging Face rows and column maps, ``synthetic:`` data specs, colour strings, palettes and
``--size-schedule``.

Each must give a result or the project's own error (``DataError``, ``UnknownColourError``, or the ValueError the
CLI shows as a usage error) naming the file or text it was given; never a bare traceback, never a write.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _fuzz import FUZZ, json_values, outcome, snapshot
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from polycolor.polycolor_core.colour.colours import UnknownColourError, colour_key, resolve_colour
from polycolor.polycolor_core.data.sample import DataError


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    assert not any(tmp_path.iterdir()), "a loader wrote into the working directory"


# --- data.json (the original layout) ------------------------------------------------------------------------

FILE_NAMES = st.sampled_from(["a.png", "b.png", "big.png", "bad.png", "missing.png", "", ".", "..", "../a.png",
                              "/nonexistent/x.png", "a.png\x00", "inputs", "ä.png"])
ROW_KEYS = ("input_polygon", "colour", "output_image")
row = st.dictionaries(st.sampled_from(ROW_KEYS + ("extra",)),
                      st.one_of(FILE_NAMES, st.sampled_from(["red", "cyan", "#12ab34", "Light Blue", "nope", ""]),
                                json_values), max_size=4)
rows_json = st.one_of(st.lists(st.one_of(row, json_values), max_size=4).map(lambda r: json.dumps(r).encode()),
                      json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=40))


def _layout(tmp: Path) -> Path:
    for sub, name, size in (("inputs", "a.png", 16), ("outputs", "b.png", 16), ("inputs", "big.png", 20),
                            ("outputs", "big.png", 20)):
        (tmp / sub).mkdir(exist_ok=True)
        Image.new("RGB", (size, size), "white").save(tmp / sub / name)
    for sub in ("inputs", "outputs"):
        (tmp / sub / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return tmp


@FUZZ
@given(content=rows_json)
@example(content=json.dumps([{"input_polygon": "a.png", "colour": "red", "output_image": "b.png"}]).encode())
def test_data_json_rows(content):
    from polycolor.polycolor_core.data.datasets import load_data, load_folder

    tmp = _layout(Path(tempfile.mkdtemp(prefix="polycolor-fuzz-")))
    try:
        (tmp / "data.json").write_bytes(content)
        before = snapshot(tmp)
        got = outcome(load_folder, tmp, allowed=(DataError,), names=["data.json"])
        if isinstance(got, list):
            assert all(s.input.dtype == np.uint8 and s.input.shape == s.target.shape and s.input.shape[-1] == 3
                       for s in got)
            resolve_colour(got[0].colour) if got else None
        assert type(outcome(load_data, f"folder:{tmp}", allowed=(DataError,))) is type(got)
        assert snapshot(tmp) == before
    finally:
        shutil.rmtree(tmp)


# --- Hugging Face rows and column maps ------------------------------------------------------------------------


class RowTable:
    """The part of a ``datasets.Dataset`` that ``HFSamples`` uses: column_names, len, ds[column], ds[i]."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.column_names = list(dict.fromkeys(k for r in rows for k in r))

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        return [r.get(key) for r in self.rows] if isinstance(key, str) else self.rows[key]


def _png_bytes(size=8, mode="RGB") -> bytes:
    import io

    buf = io.BytesIO()
    Image.new(mode, (size, size)).save(buf, format="PNG")
    return buf.getvalue()


CELL = st.one_of(
    st.sampled_from(["a.png", "missing.png", "", "red", "#00ff00"]),
    st.builds(lambda s, m: Image.new(m, (s, s)), st.integers(1, 12), st.sampled_from(["RGB", "L", "RGBA", "P", "1", "I", "F"])),
    st.builds(lambda s: {"bytes": _png_bytes(s), "path": None}, st.integers(1, 12)),
    st.builds(lambda b: {"bytes": b, "path": "x.png"}, st.binary(min_size=1, max_size=30)),
    st.builds(lambda shape, dt: np.zeros(shape, dtype=dt), st.lists(st.integers(0, 5), max_size=4).map(tuple),
              st.sampled_from(["uint8", "float32", "int64", "bool", "complex64"])),
    json_values,
)
COLUMN_NAMES = st.sampled_from(["input_polygon", "output_image", "colour", "image", "target", "text", "color", "x", ""])


@FUZZ
@given(rows=st.lists(st.dictionaries(COLUMN_NAMES, CELL, max_size=4), max_size=3),
       columns=st.one_of(st.none(), st.dictionaries(st.sampled_from(["input", "target", "colour", "bogus"]),
                                                    COLUMN_NAMES, max_size=3)))
@example(rows=[{"input_polygon": "a.png", "output_image": {"bytes": b"\x00", "path": "x.png"}, "colour": "red"}],
         columns=None)
def test_hf_rows_and_column_maps(rows, columns):
    from polycolor.polycolor_core.data.hfdata import HFSamples

    tmp = _layout(Path(tempfile.mkdtemp(prefix="polycolor-fuzz-")))
    try:
        before = snapshot(tmp)
        got = outcome(HFSamples, RowTable(rows), columns, tmp / "inputs", "fuzzset", allowed=(DataError,),
                      names=["fuzzset"] if columns is None or set(columns) <= {"input", "target", "colour"} else [])
        if isinstance(got, HFSamples):
            for i in range(len(got)):
                s = outcome(got.__getitem__, i, allowed=(DataError,), names=["fuzzset"])
                if not isinstance(s, Exception):
                    assert s.input.dtype == np.uint8 and s.input.ndim == 3 and s.input.shape[-1] == 3
                    assert s.input.shape == s.target.shape
        assert snapshot(tmp) == before
    finally:
        shutil.rmtree(tmp)


# --- data specs ------------------------------------------------------------------------------------------------

SPEC_VALUE = st.one_of(st.integers(-3, 2**40).map(str), st.sampled_from(["", "x", "1e3", "0x10", "red,cyan", "nope",
                                                                          "red,,#12ab34", "٣", " 4", "nan"]))
SPEC = st.builds(
    lambda fams, opts: "synthetic:" + "+".join(fams) + ("?" + "&".join(f"{k}={v}" for k, v in opts) if opts else ""),
    st.lists(st.sampled_from(["canonical", "pose", "shapes", "dark", "user", "pens", "bogus", "", "Canonical"]),
             max_size=3),
    st.lists(st.tuples(st.sampled_from(["n", "seed", "size", "colours", "colors", "bogus"]), SPEC_VALUE), max_size=3))


@FUZZ
@given(spec=st.one_of(SPEC, st.text(max_size=30).map(lambda t: "synthetic:" + t)))
@example(spec="synthetic:canonical?size=0")
@example(spec="synthetic:canonical?n=-1")
@example(spec="synthetic:canonical?size=1099511627776")  # was accepted: the first sample asked for 10^24 pixels
def test_synthetic_data_specs(spec):
    from polycolor.polycolor_core.data.datasets import load_data, parse_synthetic

    parsed = outcome(parse_synthetic, spec, allowed=(DataError,), names=[repr(spec)])
    ds = outcome(load_data, spec, allowed=(DataError,), names=[repr(spec)])
    if isinstance(parsed, Exception) or isinstance(ds, Exception):
        assert isinstance(ds, DataError)
        return
    assert 8 <= parsed.size <= 8192 and parsed.n >= 0  # refused above 64 MP, before anything is drawn
    if len(ds) and parsed.size <= 256:
        s = ds[0]
        assert s.input.shape == (parsed.size, parsed.size, 3)
        resolve_colour(s.colour)


# --- colours, palettes, --size-schedule -----------------------------------------------------------------------

COLOUR = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["red", "Light Blue", "light_blue", "dark teal", "#12ab34", "#12AB34", "#fff", "#12ab3", "＃12ab34",
                     "ｒｅｄ", "red\u200b", "r\u0301ed", "İ", "ß", "\U0001F534", "#" + "0" * 6 + "\x00", " ", "-_-"]),
    st.builds(lambda a, b: a + b, st.sampled_from(["red", "#12ab34", "cyan"]), st.text(max_size=3)),
)


@FUZZ
@given(name=COLOUR)
def test_colour_strings(name):
    got = outcome(resolve_colour, name, allowed=(UnknownColourError,))
    if isinstance(got, Exception):
        assert repr(name) in str(got) or name.strip() in str(got) or colour_key(name) in str(got), str(got)
    else:
        assert len(got) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in got)


PALETTE = st.one_of(st.text(max_size=20), st.lists(st.sampled_from(["canonical", "css", "xkcd", "hex", "HEX", " css ",
                                                                   "bogus", ""]), max_size=4).map("+".join))


@FUZZ
@given(spec=PALETTE, names=st.lists(COLOUR, max_size=3))
def test_palettes(spec, names):
    from polycolor.polycolor_core.colour.palettes import parse_palette, recorded_palette, palette_warning

    pal = outcome(parse_palette, spec, allowed=(ValueError,), names=[repr(spec)])
    if isinstance(pal, Exception):
        return
    rec = recorded_palette(spec)
    assert rec and all(isinstance(n, str) for n in rec)
    for n in pal.trained_names()[:20]:
        resolve_colour(n)
    info = type("Info", (), {"palette": tuple(rec), "colours": pal.spec, "conditioning": "text+rgb+film"})()
    warning = palette_warning(info, names)
    assert warning is None or isinstance(warning, str)


SCHEDULE = st.one_of(
    st.text(max_size=20),
    st.lists(st.tuples(st.sampled_from(["32", "64", "0", "-32", "33", "3_2", "٣٢", "1e2", "", "x", "2" * 30]),
                       st.sampled_from(["0.5", "0.3", "0", "1", "nan", "inf", "-0.1", "1e-400", "", "x", "0.2:1"])),
             max_size=3).map(lambda pairs: ",".join(f"{a}:{b}" for a, b in pairs)))


@FUZZ
@given(text=SCHEDULE)
@example(text="32:nan")
def test_size_schedule(text):
    from polycolor.polycolor_core.training.trainconfig import parse_size_schedule

    got = outcome(parse_size_schedule, text, allowed=(ValueError,), names=["--size-schedule"])
    if not isinstance(got, Exception):
        assert all(size > 0 and size % 4 == 0 and 0 < share < 1 for size, share in got)
        assert sum(share for _, share in got) < 1
