"""Text encoders: the offline default, the test encoder, the cache, and CLIP's offline message."""

import time

import pytest
import torch

from polycolor.polycolor_core.model import text


def test_tiny_random_is_deterministic_and_named_as_a_test_encoder():
    a = text.get_text_encoder("test-tiny-random").encode(["cyan", "red"])
    b = text.TinyRandomTextEncoder().encode(["cyan", "red"])
    assert a.shape == (2, text.DEFAULT_SEQ_LEN, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])
    assert "test" in text.TinyRandomTextEncoder().name


def test_minilm_loads_offline_from_the_pip_package():
    enc = text.get_text_encoder("minilm-l6")
    e = enc.encode(["cyan", "light goldenrod yellow"])
    assert e.shape == (2, text.DEFAULT_SEQ_LEN, 384) and enc.dim == 384
    # a real encoder: different colour names give clearly different sequences
    assert (e[0] - e[1]).abs().mean() > 0.05
    assert all(not p.requires_grad for p in enc.parameters())


def test_cache_encodes_each_colour_once():
    calls = []

    class Counting(text.TinyRandomTextEncoder):
        def encode(self, prompts):
            calls.append(list(prompts))
            return super().encode(prompts)

    cached = text.CachedTextEncoder(Counting())
    first = cached(["red", "cyan", "red"])
    second = cached(["cyan", "Red ", "red"])
    assert calls == [["cyan", "red"]] and cached.calls == 1
    assert torch.equal(first[0], second[1]) and torch.equal(first[1], second[0])


def test_unknown_encoder_name_lists_choices():
    with pytest.raises(ValueError, match="clip-vit-b32, minilm-l6, test-tiny-random"):
        text.get_text_encoder("bert")


def test_clip_offline_fails_fast_and_names_the_offline_choice(monkeypatch, tmp_path):
    monkeypatch.setattr(text, "_load_clip", text._load_clip)  # the real loader
    import polycolor.polycolor_core.model.hub as hub

    hub.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    t = time.perf_counter()
    with pytest.raises(text.TextEncoderUnavailable) as e:
        text.get_text_encoder("clip-vit-b32")
    assert time.perf_counter() - t < 60
    msg = str(e.value)
    assert "minilm-l6" in msg and "clip-vit-b32:DIR" in msg and "openai/clip-vit-base-patch32" in msg
    hub.hub_reachable.cache_clear()


def test_clip_from_a_local_folder(tmp_path):
    """The offline CLIP route: a folder saved by save_pretrained (here a tiny random CLIP, not real weights)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    import json

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "c": 2, "y": 3, "a": 4, "n": 5, "cyan</w>": 6, "n</w>": 7}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(tmp_path)
    cfg = CLIPTextConfig(vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16)
    CLIPTextModel(cfg).save_pretrained(tmp_path)
    enc = text.get_text_encoder(f"clip-vit-b32:{tmp_path}")
    assert enc.dim == 16 and enc.encode(["cyan"]).shape == (1, text.DEFAULT_SEQ_LEN, 16)
    assert enc.spec.source == str(tmp_path.resolve())


def test_text_dim_without_weights():
    assert text.text_dim("clip-vit-b32") == 512
    assert text.text_dim("minilm-l6") == 384
    assert text.text_dim("clip-vit-b32:/some/dir") == 512


def test_colour_key_is_the_one_normal_form_of_every_cache_and_table():
    import numpy as np

    from polycolor.polycolor_core.colour.colours import colour_key
    from polycolor.polycolor_core.model.text import CachedTextEncoder, TinyRandomTextEncoder

    assert colour_key("light-blue") == colour_key("Light Blue") == colour_key("lightblue") == colour_key(" LIGHT_blue ")
    assert colour_key("#12AB34") == "#12ab34"
    # a table entry stored as "light blue" is hit by every spelling, without any encoder
    row = np.ones((8, 32), np.float32)
    table = CachedTextEncoder(None, table={"light blue": row})
    for spelling in ("light-blue", "Light Blue", "lightblue"):
        np.testing.assert_array_equal(table.numpy([spelling])[0], row)
    assert table.calls == 0
    # the encoder cache too: three spellings, one encoding
    enc = CachedTextEncoder(TinyRandomTextEncoder())
    out = enc(["light blue", "Light-Blue", "lightblue"])
    assert enc.calls == 1 and enc.encoded == 1 and torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
