"""Precision ``auto`` (issues 14, 22): one capability probe, mocked both ways, and its documented override
``POLYCOLOR_NATIVE_BF16``; training's auto decided by measurement and quality vetoes (``training_precision``); the
precision a run used is recorded in its checkpoint (and read back by ``ModelInfo``), and a resumed run keeps it;
checkpoints from before ``precision`` (``bf16`` in their train_config) still load and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polycolor.polycolor_core.runtime import precision

from polycolor.polycolor_core.training import training_precision
from polycolor.polycolor_core.model.modelinfo import ModelInfo
from polycolor.polycolor_core.training.train import TrainConfig, config_from_profile, train


@pytest.fixture(autouse=True)
def _probe_decides(monkeypatch):
    """These tests mock the hardware; CI may run the suite with the override set either way."""
    monkeypatch.delenv(precision.NATIVE_BF16_ENV, raising=False)


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


@pytest.mark.parametrize("value, flags, expected", [
    ("1", set(), True), ("true", {"avx2"}, True), (" 0 ", {"avx512_bf16"}, False), ("off", {"amx_bf16"}, False),
    ("", {"avx512_bf16"}, True), ("", set(), False),  # empty: the probe decides
])
def test_the_override_pins_the_decision(monkeypatch, value, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(precision, "cuda_capability", lambda device="cuda": (7, 0))
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, value)
    assert precision.native_bf16("cpu") is expected
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if expected else "fp32")
    assert precision.native_bf16("cuda") is False  # a GPU is always asked (capability 7.0 here)
    if value.strip():
        assert precision.describe("cpu")["override"] == f"POLYCOLOR_NATIVE_BF16={value.strip()}"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"  # an explicit choice still wins


def test_a_bad_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match=r"POLYCOLOR_NATIVE_BF16='maybe' is not a decision: set it to 1 .* or unset"):
        precision.native_bf16("cpu")


def test_the_override_changes_the_machine_key(monkeypatch):
    """Choices measured under one decision are not reused under the other."""
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "0")
    off = precision.machine_key("cpu", 2)
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "1")
    assert precision.machine_key("cpu", 2) != off


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
    from polycolor.polycolor_core.training.profiles import PROFILES

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


# --- training's auto: measured, vetoed on quality, cached, recorded -------------------------------------------


def _never(p):
    raise AssertionError(f"{p} must not be timed")


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setenv("POLYCOLOR_AUTOTUNE", "1")


def test_training_choice_explicit_and_single_candidates_time_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "c.json"
    for p in ("fp32", "bf16"):
        c = training_precision.choose(p, "cpu", "m1", "k", _never, cache)
        assert (c.precision, c.requested, c.measured, dict(c.rates)) == (p, p, False, {})
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    c = training_precision.choose("auto", "cpu", "m1", "k", _never, cache)
    assert c.precision == "fp32" and "only native precision" in c.reason and not cache.exists()


@pytest.mark.parametrize("rates, expected", [({"fp32": 10.0, "bf16": 14.0}, "bf16"),
                                              ({"fp32": 34.3, "bf16": 28.6}, "fp32")])  # issue 22's m1 at 32 px
def test_training_auto_picks_the_faster_and_caches_it(tmp_path, native, rates, expected):
    cache, calls = tmp_path / "c.json", []

    def timer(p):
        calls.append(p)
        return rates[p]

    c = training_precision.choose("auto", "cpu", "m1", "key-a", timer, cache)
    assert c.precision == expected and c.measured and dict(c.rates) == rates
    assert sorted(set(calls)) == ["bf16", "fp32"] and len(calls) == 2 * training_precision.ROUNDS  # interleaved
    again = training_precision.choose("auto", "cpu", "m1", "key-a", _never, cache)  # read back, nothing timed
    assert again.precision == expected and not again.measured and dict(again.rates) == rates
    assert "measured earlier" in again.reason
    other = training_precision.choose("auto", "cpu", "m1", "key-b", lambda p: {"fp32": 1.0, "bf16": 2.0}[p], cache)
    assert other.precision == "bf16" and other.measured  # another shape is measured on its own


def test_a_damaged_cache_is_measured_again(tmp_path, native):
    cache = tmp_path / "c.json"
    cache.write_text("{not json")
    c = training_precision.choose("auto", "cpu", "m1", "k", lambda p: {"fp32": 2.0, "bf16": 1.0}[p], cache)
    assert c.precision == "fp32" and c.measured and json.loads(cache.read_text())["entries"]["k"]["choice"] == "fp32"


def test_quality_vetoes_a_faster_precision(tmp_path, native):
    c = training_precision.choose("auto", "cpu", "m8", "k", _never, tmp_path / "c.json")
    assert c.precision == "fp32" and "bf16" in c.vetoed and "vetoed on quality" in c.reason
    assert training_precision.quality_vetoes("m8-tiny") == training_precision.quality_vetoes("m8")
    assert training_precision.choose("bf16", "cpu", "m8", "k", _never).precision == "bf16"  # asked for: kept
    assert training_precision.quality_vetoes("m1") == {}  # other variants are timed as usual


def test_timing_off_falls_back_to_the_probe(tmp_path, native, monkeypatch):
    monkeypatch.setenv("POLYCOLOR_AUTOTUNE", "0")
    c = training_precision.choose("auto", "cpu", "m1", "k", _never, tmp_path / "c.json")
    assert c.precision == "bf16" and not c.measured and "timing off" in c.reason


def test_schedule_rate_weights_each_size_by_its_steps():
    assert training_precision.schedule_rate({32: 40.0, 64: 10.0}, {32: 0.5, 64: 0.5}) == pytest.approx(16.0)
    assert training_precision.schedule_rate({32: 40.0}, {32: 1.0}) == pytest.approx(40.0)


def test_step_timer_leaves_the_model_and_the_rng_alone():
    import torch

    from polycolor.polycolor_core.model.factory import create_model
    from polycolor.polycolor_core.model.variants import get_variant

    model = create_model(get_variant("m1").tiny(), 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    timer = training_precision.StepTimer(model, lambda pred, y: (pred - y).pow(2).mean(), torch.randn(1, 3, 8),
                                         {32: 0.75, 16: 0.25}, batch=2, grad_clip=1.0, device=torch.device("cpu"),
                                         budget_s=0.05)
    rng = torch.random.get_rng_state()
    assert timer("fp32") > 0 and timer("bf16") > 0
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_choice_is_recorded_and_a_resumed_run_keeps_its_precision(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYCOLOR_AUTOTUNE", "1")
    monkeypatch.setenv("POLYCOLOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(training_precision.StepTimer, "__call__", lambda self, p: {"fp32": 5.0, "bf16": 9.0}[p])
    cfg = _tiny(tmp_path, device="cpu", epochs=2)
    train(cfg, progress=False, stop_after_steps=2)  # killed after epoch 1 of 2
    meta = json.loads((tmp_path / "m1" / "checkpoint" / "config.json").read_text())
    assert meta["precision"] == "bf16"
    assert meta["precision_choice"]["rates"] == {"fp32": 5.0, "bf16": 9.0} and meta["precision_choice"]["measured"]
    # the machine now says fp32 (another CPU, or the override): the resumed run still finishes in bf16
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    result = train(_tiny(tmp_path, device="cpu", epochs=2), resume=True, progress=False)
    meta = json.loads((tmp_path / "m1" / "checkpoint" / "config.json").read_text())
    assert result.finished and meta["precision"] == "bf16" and meta["precision_choice"]["precision"] == "bf16"
