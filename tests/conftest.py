"""Shared fixtures: tiny models made once per session.

- ``tiny_run`` / ``tiny_checkpoint``: m1's test-sized copy trained for two steps by the ``tiny`` profile (the same
  ``train()`` as ``polycolor train m1 --profile tiny``), 32 px, the test text encoder.
- ``tiny_export``: that checkpoint exported to ONNX (skipped without onnxruntime).
- ``make_checkpoint(dest, variant=..., spec=..., seed=..., image_size=...)``: a random-weight checkpoint (weights
  nudged by ``seed`` so outputs differ), for tests that need several distinct models or a given encoder.
"""

from __future__ import annotations

import importlib.util
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
    model = create_model(variant, spec.dim)
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
