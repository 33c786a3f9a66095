"""The study's composite loss: MSE + 0.5 LPIPS + 0.2 (1 - SSIM) + 0.3 L1 in CIE-LAB.

One function per term; ``composite_loss`` combines them with a ``LossWeights`` and returns the parts so each
can be logged. All image tensors are [B,3,H,W] in 0..1.

LPIPS uses the ``lpips`` package (AlexNet). Its linear heads ship with the package, but the AlexNet backbone
comes from torchvision's download, which fails offline: ``load_lpips`` then raises ``LpipsUnavailable``
with the way to provide the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from .variants import LossWeights

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"


class LpipsUnavailable(RuntimeError):
    """LPIPS was asked for but its AlexNet backbone weights cannot be loaded."""


def alexnet_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_help() -> str:
    return (
        f"LPIPS needs torchvision's AlexNet weights ({ALEXNET_FILE}), which are downloaded on first use. "
        f"Offline, copy that file to {alexnet_weights_path()} (download it from {ALEXNET_URL} on a machine "
        "with network; set TORCH_HOME to use another cache), or drop the LPIPS term explicitly "
        "(`--drop-lpips`; the choice is recorded in the checkpoint and shown in every report)."
    )


def load_lpips(pretrained_backbone: bool = True) -> torch.nn.Module:
    """The frozen LPIPS(AlexNet) network. ``pretrained_backbone=False`` is a random backbone, for tests only."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation chatter about `pretrained=`
        try:
            net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=not pretrained_backbone, verbose=False)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError; a truncated file is a RuntimeError
            raise LpipsUnavailable(f"{lpips_help()}\n(cause: {exc.__class__.__name__}: {exc})") from exc
    return net.eval().requires_grad_(False)


# --- the four terms ---------------------------------------------------------------------------------------


def mse_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def lpips_term(pred: torch.Tensor, target: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
    # LPIPS expects -1..1 inputs; it returns [B,1,1,1] distances
    return net(pred * 2 - 1, target * 2 - 1).mean()


def ssim_term(pred: torch.Tensor, target: torch.Tensor, window: int = 11) -> torch.Tensor:
    """1 - mean SSIM (Gaussian window 11, sigma 1.5, as in Wang et al.); 0 for identical images."""
    from kornia.metrics import ssim

    return 1.0 - ssim(pred.clamp(0, 1), target, window_size=window).mean()


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """sRGB [B,3,H,W] in 0..1 -> CIE-LAB (D65): L in 0..100, a/b roughly -128..127."""
    from kornia.color import rgb_to_lab as _rgb_to_lab

    return _rgb_to_lab(images.clamp(0, 1).float())


def colour_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference in CIE-LAB units (so 1.0 ≈ one just-noticeable step)."""
    return (rgb_to_lab(pred) - rgb_to_lab(target)).abs().mean()


def composite_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: LossWeights,
    lpips_net: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the active terms; returns ``(total, {"mse": .., "lpips": .., "ssim": .., "colour": ..})``.

    A term with weight 0 is skipped (not computed). LPIPS with weight > 0 needs ``lpips_net``.
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
        parts["colour"] = colour_term(pred, target)
    total = sum(getattr(weights, k) * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
