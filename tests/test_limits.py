"""Resource limits (issue 26): an image above ``imageio.max_pixels()`` (a decompression bomb, a 20000x20000 input) is
refused with a clear message before its pixels are decoded or copied."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from polycolor.polycolor_core.data.imageio import ImageInputError, coerce_batch, coerce_image, load_image


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` grey pixels while the file holds a few bytes: what a
    decompression bomb looks like to a reader that trusts the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_a_huge_file_is_refused_from_its_header(tmp_path):
    big = _png_header_only(tmp_path / "big.png", 9000, 9000)  # above polycolor's 67 MP, below Pillow's own guard
    assert big.stat().st_size < 200
    with pytest.raises(ImageInputError, match=r"big\.png is 9000x9000 \(81 MP\), more than polycolor's limit of "
                                              r"67 MP: downscale it first.*POLYCOLOR_MAX_PIXELS"):
        load_image(big)
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # Pillow itself refuses it at open
    with pytest.raises(ImageInputError, match=r"bomb\.png is refused: more than polycolor's limit of 67 MP.*"
                                              r"400000000 pixels.*downscale it first"):
        coerce_image(str(bomb))


def test_refused_before_allocating(tmp_path):
    """In a fresh process the refusal costs no more memory than importing the package (a decoded 20000x20000 RGB
    image alone is 1.2 GB)."""
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    code = ("import resource, sys; from polycolor.polycolor_core.data.imageio import load_image, ImageInputError\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    load_image(sys.argv[1])\nexcept ImageInputError:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)")
    res = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) < 50_000  # KiB


def test_huge_arrays_and_batches_are_refused_without_a_copy():
    big = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 20000, 3))  # a view: nothing allocated
    with pytest.raises(ImageInputError, match="20000x20000"):
        coerce_image(big, "upload")
    batch = np.broadcast_to(np.zeros((1, 1, 1, 3), np.float32), (2, 9000, 9000, 3))
    with pytest.raises(ImageInputError, match="9000x9000 \\(81 MP\\)"):
        coerce_batch(batch)


def test_the_limit_is_configurable(monkeypatch, tmp_path):
    from PIL import Image

    monkeypatch.setenv("POLYCOLOR_MAX_PIXELS", str(16 * 16))
    small, large = tmp_path / "s.png", tmp_path / "l.png"
    Image.new("RGB", (16, 16), "white").save(small)
    Image.new("RGB", (17, 16), "white").save(large)
    assert load_image(small)[0].shape == (16, 16, 3)
    with pytest.raises(ImageInputError, match="17x16"):
        load_image(large)
