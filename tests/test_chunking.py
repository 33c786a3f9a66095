"""Bounded memory for any batch (issue 26): the Colorizer and the ComfyUI node colour a batch of any length in chunks
of ``batch_size`` (one home: ``export.config.DEFAULT_BATCH_SIZE``), and the chunks change nothing in the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polycolor.export.colorizer import Colorizer
from polycolor.export.config import DEFAULT_BATCH_SIZE
from polycolor.polycolor_core.model.text import CachedTextEncoder, get_text_encoder


class RecordingBackend:
    """A stand-in model: per image, a fixed function of its pixels and colour embedding; records each call's size."""

    name = "recording"

    def __init__(self):
        self.calls: list[int] = []

    def run(self, images: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        self.calls.append(images.shape[0])
        tint = embeddings.mean(axis=(1, 2))[:, None, None, None]  # [b,1,1,1]: depends on the colour only
        return np.clip(1.0 - images + 0.1 * np.tanh(tint), 0, 1).astype(np.float32)


def _colorizer(batch_size: int) -> tuple[Colorizer, RecordingBackend]:
    backend = RecordingBackend()
    return Colorizer(backend, CachedTextEncoder(get_text_encoder("test-tiny-random")), 32, batch_size), backend


def _batch(n: int, seed: int = 0) -> np.ndarray:
    """n outline drawings of different sizes' worth of content on one canvas: uint8 [n,48,40,3]."""
    rng = np.random.default_rng(seed)
    out = np.full((n, 48, 40, 3), 255, np.uint8)
    for i in range(n):
        y0, x0 = rng.integers(2, 12, 2)
        y1, x1 = y0 + rng.integers(12, 30), x0 + rng.integers(12, 24)
        out[i, y0:y1, [x0, x1]] = 0
        out[i, [y0, y1], x0:x1] = 0
    return out


def test_default_chunk_size_is_the_one_home():
    col, _ = _colorizer(DEFAULT_BATCH_SIZE)
    assert Colorizer.__init__.__defaults__[0] == DEFAULT_BATCH_SIZE == col.batch_size
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        _colorizer(0)


@pytest.mark.parametrize("chunk", [1, 5, 8])
def test_colorizer_chunks_a_large_batch_and_changes_nothing(chunk):
    images = _batch(37)
    colours = ["red", "cyan", "#12ab34", "orange"] * 9 + ["blue"]
    whole, whole_backend = _colorizer(64)
    ref = whole.colorize(list(images), colours)
    col, backend = _colorizer(chunk)
    got = col.colorize(list(images), colours)
    assert max(backend.calls) <= chunk and max(whole_backend.calls) > chunk
    assert sum(backend.calls) == sum(whole_backend.calls)  # the same images, zoom passes included
    for a, b, ma, mb in zip(got.images, ref.images, got.masks, ref.masks):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ma, mb)


def test_comfyui_node_colours_a_large_batch_in_chunks():
    from polycolor.nodes.colorize import colorize

    images = torch.from_numpy(_batch(21, seed=1)).float() / 255.0  # ComfyUI IMAGE [B,H,W,3] float
    col, backend = _colorizer(4)
    out, mask = colorize(col, images, "cyan")
    ref_col, _ = _colorizer(64)
    ref_out, ref_mask = colorize(ref_col, images, "cyan")
    assert max(backend.calls) <= 4 and len(backend.calls) >= 6
    assert out.shape == (21, 48, 40, 3) and mask.shape == (21, 48, 40)
    assert torch.equal(out, ref_out) and torch.equal(mask, ref_mask)
