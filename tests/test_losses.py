"""Each loss term on known inputs, the weights dataclass, and the LPIPS offline message."""

import pytest
import torch

from polycolor.polycolor_core import losses
from polycolor.polycolor_core.variants import ALL_FOUR, MSE_ONLY, LossWeights


@pytest.fixture(scope="module")
def lpips_random():
    # TEST ONLY: random AlexNet backbone (the real weights need a download); the linear heads ship with lpips.
    return losses.load_lpips(pretrained_backbone=False)


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)


def test_terms_are_zero_for_identical_images(pair, lpips_random):
    a, _ = pair
    assert losses.mse_term(a, a) == 0
    assert losses.ssim_term(a, a).abs() < 1e-5
    assert losses.colour_term(a, a) == 0
    assert losses.lpips_term(a, a, lpips_random).abs() < 1e-6


def test_terms_are_positive_for_different_images(pair, lpips_random):
    a, b = pair
    assert losses.mse_term(a, b) > 0
    assert losses.ssim_term(a, b) > 0.5  # random noise images are nearly uncorrelated
    assert losses.colour_term(a, b) > 1
    assert losses.lpips_term(a, b, lpips_random) > 0


def test_colour_term_is_in_lab_units():
    white = torch.ones(1, 3, 4, 4)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    # CIE-LAB (D65): white = (100, 0, 0), red = (53.24, 80.09, 67.20) -> mean |diff| over L, a, b
    expected = (100 - 53.24 + 80.09 + 67.20) / 3
    assert losses.colour_term(white, red).item() == pytest.approx(expected, abs=0.05)


def test_mse_value():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert losses.mse_term(a, b).item() == pytest.approx(0.25)


def test_composite_combines_weighted_parts(pair, lpips_random):
    a, b = pair
    total, parts = losses.composite_loss(a, b, ALL_FOUR, lpips_random)
    assert set(parts) == {"mse", "lpips", "ssim", "colour"}
    expected = parts["mse"] + 0.5 * parts["lpips"] + 0.2 * parts["ssim"] + 0.3 * parts["colour"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total, parts = losses.composite_loss(a, b, MSE_ONLY)
    assert set(parts) == {"mse"}  # zero-weight terms are not computed


def test_lpips_weight_without_network_is_a_clear_error(pair):
    a, b = pair
    with pytest.raises(losses.LpipsUnavailable, match="--drop-lpips"):
        losses.composite_loss(a, b, LossWeights())


def test_missing_alexnet_weights_message(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: the backbone must be downloaded

    import torchvision.models as tvm

    def offline(*a, **k):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(tvm, "alexnet", offline)
    import lpips.pretrained_networks as pn

    monkeypatch.setattr(pn.tv, "alexnet", offline)
    with pytest.raises(losses.LpipsUnavailable) as e:
        losses.load_lpips()
    msg = str(e.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path) in msg and "--drop-lpips" in msg


def test_gradients_flow_through_every_term(pair, lpips_random):
    a, b = pair
    a = a.clone().requires_grad_(True)
    total, _ = losses.composite_loss(a, b, ALL_FOUR, lpips_random)
    total.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
