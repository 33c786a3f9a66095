"""Fuzzing image input (issue 26), 200 deterministic hypothesis examples each: file bytes (every format Pillow writes
here, odd modes, truncated, bytes flipped, huge dimensions patched into the header) through ``load_image``, and
arrays of any shape and dtype through ``coerce_image``. Each gives RGB uint8 [H,W,3] or an ``ImageInputError``
naming the file; a header claiming more than ``POLYCOLOR_MAX_PIXELS`` is refused before decoding.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _fuzz import FUZZ, outcome, snapshot
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from polycolor.polycolor_core.data.imageio import ImageInputError, coerce_image, load_image

FORMATS = {"PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"), "JPEG": ("L", "RGB", "CMYK"),
           "GIF": ("L", "P"), "BMP": ("1", "L", "P", "RGB"), "TIFF": ("1", "L", "RGB", "RGBA", "CMYK", "I", "F"),
           "WEBP": ("RGB", "RGBA"), "ICO": ("RGBA",), "PPM": ("L", "RGB")}


def encode(fmt: str, mode: str, w: int, h: int) -> bytes:
    im = Image.new(mode, (w, h))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _writable(fmt: str, mode: str) -> bool:
    try:
        encode(fmt, mode, 2, 2)
        return True
    except (OSError, KeyError, ValueError):  # this Pillow cannot write that mode in that format
        return False


FORMATS = {fmt: tuple(m for m in modes if _writable(fmt, m)) for fmt, modes in FORMATS.items()}
FORMATS = {fmt: modes for fmt, modes in FORMATS.items() if modes}


def _patch_size(data: bytes, fmt: str, w: int, h: int) -> bytes:
    """Write (w, h) where the format's header keeps the size (the pixel data stays what it was)."""
    b = bytearray(data)
    if fmt == "PNG" and len(b) >= 33:
        b[16:24] = struct.pack(">II", w, h)
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))  # a valid IHDR: only its size is a lie
    elif fmt == "BMP" and len(b) >= 26:
        b[18:26] = struct.pack("<ii", w, h)
    elif fmt == "GIF" and len(b) >= 10:
        b[6:10] = struct.pack("<HH", min(w, 65535), min(h, 65535))
    return bytes(b)


@st.composite
def image_files(draw) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    data = encode(fmt, mode, draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.sampled_from(["truncate", "flip", "huge", "append"]))
        if how == "truncate":
            data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
        elif how == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
        elif how == "huge":
            data = _patch_size(data, fmt, draw(st.sampled_from([0, 1, 20000, 65535, 2**31 - 1])),
                               draw(st.sampled_from([0, 1, 20000, 65535, 2**31 - 1])))
        else:
            data += draw(st.binary(max_size=16))
    return f"{fmt}/{mode}", data


@FUZZ
@given(case=st.one_of(image_files(), st.binary(max_size=64).map(lambda b: ("bytes", b))))
@example(case=("PNG/RGB", _patch_size(encode("PNG", "RGB", 4, 4), "PNG", 20000, 20000)))  # 400 MP header: refused
@example(case=("PNG/I;16", encode("PNG", "I;16", 5, 3)))
@example(case=("TIFF/F", encode("TIFF", "F", 5, 3)))
@example(case=("PPM/L", b"P5\n1 1\n2"))  # was: ValueError (Reached EOF while reading header) leaked from Pillow
@example(case=("PPM/L", b"P5\n; 1\n255\n\x00"))  # was: ValueError (invalid literal for int())
def test_image_bytes(case):
    what, data = case
    tmp = Path(tempfile.mkdtemp(prefix="polycolor-fuzz-"))
    try:
        f = tmp / "input.png"
        f.write_bytes(data)
        before = snapshot(tmp)
        got = outcome(load_image, f, allowed=(ImageInputError,), names=[str(f)])
        if not isinstance(got, Exception):
            rgb, note = got
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[-1] == 3 and rgb.size > 0, (what, rgb.shape)
            assert isinstance(note, str)
        elif len(data) > 24 and data[16:24] == struct.pack(">II", 20000, 20000):
            assert "MP" in str(got)  # the size limit, not a decode error: refused from the header
        assert snapshot(tmp) == before
    finally:
        shutil.rmtree(tmp)


ARRAY = st.builds(
    lambda shape, dtype, fill: _full(shape, dtype, fill) if dtype != "object" else np.empty(shape, object),
    st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 7]), max_size=4).map(tuple),
    st.sampled_from(["uint8", "uint16", "int32", "float16", "float32", "float64", "bool", "complex64", "object"]),
    st.sampled_from([0, 1, 0.5, 2, -1, float("nan"), float("inf")])).filter(lambda a: a is not None)


def _full(shape, dtype, fill):
    try:
        return np.full(shape, fill, dtype=dtype)
    except (OverflowError, ValueError):  # -1 / nan / inf do not fit an integer dtype: zeros of it instead
        return np.zeros(shape, dtype=dtype)


@FUZZ
@given(arr=ARRAY, as_tensor=st.booleans())
@example(arr=np.full((4, 4, 3), np.nan, np.float32), as_tensor=False)
@example(arr=np.zeros((0, 5, 3), np.uint8), as_tensor=False)  # was accepted: an empty image, for later code to trip on
def test_arrays_and_tensors(arr, as_tensor):
    import torch

    obj = arr
    if as_tensor:
        try:
            obj = torch.from_numpy(arr.astype(np.float32) if arr.dtype in (np.float16, np.uint16) else arr)
        except TypeError:  # a dtype torch has no tensor for: the numpy array it is
            obj = arr
    got = outcome(coerce_image, obj, "the fuzzed image", allowed=(ImageInputError,), names=["the fuzzed image"])
    if not isinstance(got, Exception):
        rgb, _ = got
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[-1] == 3 and rgb.size > 0
