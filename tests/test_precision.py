"""Precision ``auto`` (issue 14): one capability probe, mocked both ways; the precision a run used is recorded in
its checkpoint (and read back by ``ModelInfo``); checkpoints from before ``precision`` (``bf16`` in their
train_config) still load and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polycolor.polycolor_core import precision
from polycolor.polycolor_core.modelinfo import ModelInfo
from polycolor.polycolor_core.train import TrainConfig, config_from_profile, train


@pytest.mark.parametrize("flags, expected", [
    ({"fpu", "avx2", "fma"}, "fp32"),  # an AVX2-only EPYC: emulated bf16 is slower than fp32
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
    ({"avx2", "amx_bf16", "amx_tile"}, "bf16"),
    (set(), "fp32"),  # /proc/cpuinfo unreadable
])
def test_cpu_probe(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.native_bf16("cpu") is (expected == "bf16")
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("fp32", "cpu") == "fp32"  # an explicit choice is kept
    assert precision.resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize("capability, expected", [((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp32"), (None, "fp32")])
def test_cuda_probe(monkeypatch, capability, expected):
    monkeypatch.setattr(precision, "cuda_capability", lambda device="cuda": capability)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))  # the CPU does not decide for CUDA
    assert precision.resolve_precision("auto", "cuda") == expected
    assert precision.resolve_precision("auto", "cuda:1") == expected
    assert precision.resolve_precision("auto", "mps") == "fp32"


def test_probe_reads_cpuinfo_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\n")
    assert "avx512_bf16" in precision._read_cpu_flags(str(info))
    assert precision._read_cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_bad_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        precision.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(variant="m1", precision="half")


def test_profiles_use_auto_and_the_report_profile_is_the_studys():
    from polycolor.polycolor_core.profiles import PROFILES

    assert PROFILES["cpu"].train["precision"] == "auto" and PROFILES["tiny"].train["precision"] == "auto"
    report = PROFILES["report"].train
    assert report["precision"] == "fp32" and report["text_encoder"] == "clip-vit-b32" and report["lpips"] == "require"
    assert all("bf16" not in p.train for p in PROFILES.values())


def _tiny(tmp_path: Path, **kw) -> TrainConfig:
    kw.setdefault("epochs", 1)
    return config_from_profile("m1", "tiny", out=str(tmp_path / "m1"), samples_per_epoch=8, **kw)


@pytest.mark.parametrize("flags, expected", [({"avx2"}, "fp32"), ({"avx2", "avx512_bf16"}, "bf16")])
def test_the_precision_used_is_recorded(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    cfg = _tiny(tmp_path, device="cpu")
    assert cfg.precision == "auto"
    train(cfg, progress=False)
    meta = json.loads((tmp_path / "m1" / "checkpoint" / "config.json").read_text())
    assert meta["precision"] == expected and meta["train_config"]["precision"] == "auto"
    assert ModelInfo.read(tmp_path / "m1").precision == expected


def test_old_checkpoints_with_bf16_load_and_resume(tmp_path):
    cfg = _tiny(tmp_path, precision="fp32", epochs=2)
    train(cfg, progress=False, stop_after_steps=2)  # an unfinished run: epoch 1 of 2 saved
    cfg_file = tmp_path / "m1" / "checkpoint" / "config.json"
    meta = json.loads(cfg_file.read_text())
    # rewrite it as polycolor before `precision` wrote it: `bf16` in train_config, no top-level precision
    for key in ("precision", "variant_config", "palette", "lpips_source"):
        meta.pop(key, None)
    tc = meta["train_config"]
    tc.pop("precision")
    tc["bf16"] = False
    cfg_file.write_text(json.dumps(meta))
    info = ModelInfo.read(tmp_path / "m1")
    assert info.precision == "fp32" and info.variant_name == "m1-tiny" and not info.finished
    assert TrainConfig.from_dict(tc).precision == "fp32"
    assert TrainConfig.from_dict({**tc, "bf16": True}).precision == "bf16"
    result = train(_tiny(tmp_path, epochs=2), resume=True, progress=False)  # resumes with its saved settings
    assert result.finished and ModelInfo.read(tmp_path / "m1").precision == "fp32"


def test_colorizer_precision_auto_follows_the_probe(tmp_path, monkeypatch, tiny_checkpoint):
    from polycolor.export.colorizer import Colorizer

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert Colorizer.from_pretrained(tiny_checkpoint, precision="auto").backend.precision == "fp32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert Colorizer.from_pretrained(tiny_checkpoint, precision="auto").backend.precision == "bf16"
    assert Colorizer.from_pretrained(tiny_checkpoint, precision="fp32").backend.bf16 is False
    assert Colorizer.from_pretrained(tiny_checkpoint, bf16=True).backend.precision == "bf16"  # the old spelling
