"""The variant registry and the one model factory: names, errors, the study's exact parameter totals."""

import pytest
import torch

from polycolor.polycolor_core.model.factory import count_parameters, create_model, unet_config
from polycolor.polycolor_core.model.variants import VARIANTS, UnknownVariantError, Variant, get_variant

NAMES = sorted(VARIANTS)

# The study's totals: UNet + CLIP ViT-B/32 text encoder.
STUDY_TOTALS = {"m1": 68_148_747, "m2": 68_148_747, "m3": 68_148_747, "m4": 68_148_747,
                "m5": 89_723_811, "m6": 68_395_939, "m7": 68_395_939, "m8": 65_212_403}


def clip_text_params() -> int:
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):  # the architecture only: no weights, no download
        return count_parameters(CLIPTextModel(CLIPTextConfig()))


def test_registry_has_the_eight():
    assert NAMES == [f"m{i}" for i in range(1, 9)]
    assert get_variant("M8") is VARIANTS["m8"]


@pytest.mark.parametrize("bad", ["m9", "m0", "", "unet"])
def test_unknown_variant_lists_valid_names(bad):
    with pytest.raises(UnknownVariantError) as e:
        get_variant(bad)
    assert "m1, m2, m3, m4, m5, m6, m7, m8" in str(e.value)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_totals_match_the_study(name):
    clip = clip_text_params()
    assert clip == 63_165_952
    unet = count_parameters(create_model(name, 512, device="meta"))
    assert unet + clip == STUDY_TOTALS[name]


@pytest.mark.parametrize("name", NAMES)
def test_variant_config_round_trip(name):
    v = get_variant(name)
    assert Variant.from_dict(v.to_dict()) == v
    cfg = unet_config(v, 384)
    assert cfg["only_cross_attention"] is True and cfg["attention_head_dim"] == v.heads
    assert cfg["block_out_channels"] == v.block_out_channels


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_shapes(name):
    torch.manual_seed(0)
    model = create_model(get_variant(name).tiny(), 32)
    x = torch.rand(2, 3, 32, 48)  # non-square: any H, W that are multiples of 4
    y = model(x, torch.randn(2, 8, 32))
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_loss_terms_per_variant():
    assert VARIANTS["m1"].loss.active() == ("mse",)
    assert VARIANTS["m2"].loss.active() == ("mse", "lpips")
    assert VARIANTS["m3"].loss.active() == ("mse", "lpips", "ssim")
    for n in ("m4", "m5", "m6", "m7", "m8"):
        w = VARIANTS[n].loss
        assert (w.mse, w.lpips, w.ssim, w.colour) == (1.0, 0.5, 0.2, 0.3)
    assert [VARIANTS[n].epochs for n in NAMES] == [5, 5, 5, 5, 5, 10, 15, 15]


def test_unknown_config_key_is_an_error():
    d = get_variant("m1").to_dict()
    d["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        Variant.from_dict(d)
