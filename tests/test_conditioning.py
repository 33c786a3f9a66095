"""The RGB conditioning token: shapes, what it carries, its numpy twin and its place in the checkpoint."""

import numpy as np
import pytest
import torch

from polycolor.polycolor_core.conditioning import (ColourToken, attach_colour_token, colour_token_numpy, condition,
                                                   fourier_features, load_token_weights, model_conditioning,
                                                   resolve_rgbs, token_weights)
from polycolor.polycolor_core.model import create_model
from polycolor.polycolor_core.variants import get_variant


def _tiny(dim=32):
    torch.manual_seed(0)
    return create_model(get_variant("m1").tiny(), dim)


def test_resolve_rgbs_marks_unknown_names():
    rgb, ok = resolve_rgbs(["red", "#00ff80", "dark teal", "not a colour"])
    assert ok.tolist() == [True, True, True, False]
    assert np.allclose(rgb[1], [0, 1, 128 / 255]) and np.allclose(rgb[3], 0)


def test_fourier_features_separate_close_colours():
    f = fourier_features(np.array([[0.5, 0.5, 0.5], [0.52, 0.5, 0.5]], np.float32))
    assert f.shape == (2, 6 + 12 * 6) and np.abs(f[0] - f[1]).max() > 0.1


def test_text_model_is_unchanged_and_rgb_model_appends_one_token():
    model = _tiny()
    emb = torch.randn(3, 8, 32)
    assert model_conditioning(model) == "text" and condition(model, emb, ["red"] * 3) is emb
    attach_colour_token(model, "text+rgb")
    assert model_conditioning(model) == "text+rgb"
    out = condition(model, emb, ["red", "#102030", "nonsense"])
    assert out.shape == (3, 9, 32) and torch.equal(out[:, :8], emb)
    assert torch.equal(out[2, 8], model.colour_token.unknown)  # unresolvable: the learned unknown token
    assert not torch.allclose(out[0, 8], out[1, 8])
    # the UNet takes the longer sequence as it is
    assert model(torch.rand(3, 3, 32, 32), out).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="text, text\\+rgb"):
        attach_colour_token(model, "rgb-only")


def test_token_gets_gradients_from_the_unet_loss():
    model = attach_colour_token(_tiny(), "text+rgb")
    pred = model(torch.rand(2, 3, 32, 32), condition(model, torch.randn(2, 8, 32), ["teal", "gold"]))
    pred.square().mean().backward()
    assert model.colour_token.proj.weight.grad is not None and model.colour_token.proj.weight.grad.abs().sum() > 0


def test_numpy_twin_matches_torch():
    tok = ColourToken(32)
    holder = type("M", (), {"colour_token": tok})()
    names = ["red", "dusty rose", "#abcdef", "??"]
    with torch.no_grad():
        ref = tok(names).numpy()
    assert np.abs(colour_token_numpy(token_weights(holder), names) - ref).max() < 1e-5


def test_token_weights_round_trip_into_a_fresh_model():
    model = attach_colour_token(_tiny(), "text+rgb")
    with torch.no_grad():
        model.colour_token.unknown.fill_(0.25)
    saved = {**{k: v.clone() for k, v in model.unet.state_dict().items()}, **token_weights(model)}
    fresh = _tiny()
    rest = load_token_weights(fresh, saved)
    assert set(rest) == set(model.unet.state_dict())
    assert model_conditioning(fresh) == "text+rgb"
    assert torch.equal(fresh.colour_token.unknown, model.colour_token.unknown)
    assert load_token_weights(_tiny(), dict(model.unet.state_dict())).keys() == rest.keys()
