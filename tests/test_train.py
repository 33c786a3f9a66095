"""Training: schedule, clipping, convergence, bit-exact checkpoints, exact resume, clear checkpoint errors, DDP."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polycolor.polycolor_core.model import checkpoint as ck
from polycolor.polycolor_core.model.factory import create_model
from polycolor.polycolor_core.model.text import TinyRandomTextEncoder
from polycolor.polycolor_core.training.train import (TrainConfig, config_from_profile, is_finished, loss_weights_at,
                                            lr_multiplier, parse_size_schedule, stage_bounds, train, warmup_cosine)
from polycolor.polycolor_core.model.variants import ALL_FOUR, MSE_ONLY, VARIANTS, get_variant


def tiny_cfg(tmp_path, variant="m1", **kw):
    kw.setdefault("epochs", 2)
    kw.setdefault("samples_per_epoch", 16)
    return config_from_profile(variant, "tiny", out=str(tmp_path / variant), **kw)


# --- schedule ------------------------------------------------------------------------------------------------

def test_warmup_cosine_values():
    total = 100  # warm-up = 10 steps
    assert warmup_cosine(0, total) == pytest.approx(0.1)
    assert warmup_cosine(4, total) == pytest.approx(0.5)
    assert warmup_cosine(9, total) == pytest.approx(1.0)
    assert warmup_cosine(10, total) == pytest.approx(1.0)
    assert warmup_cosine(55, total) == pytest.approx(0.5)  # half-way through the cosine
    assert warmup_cosine(100, total) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(100, total, min_ratio=0.1) == pytest.approx(0.1)
    values = [warmup_cosine(s, total) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay after warm-up


def test_scheduler_drives_the_optimizer(tmp_path):
    lrs = []
    cfg = tiny_cfg(tmp_path, epochs=1, samples_per_epoch=40)  # 10 steps, warm-up 1 step
    train(cfg, progress=False, on_step=lambda s, l, p: None)
    rows = [json.loads(x) for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine reached ~0 at the last step


def test_progressive_resizing_stages_and_restarted_schedule(tmp_path):
    cfg = tiny_cfg(tmp_path, size_schedule=((16, 0.5), (24, 0.25)))  # image_size 32
    assert stage_bounds(cfg, 40) == [(16, 0, 20), (24, 20, 30), (32, 30, 40)]
    assert lr_multiplier(0, 40, cfg) == pytest.approx(warmup_cosine(0, 20))
    assert lr_multiplier(19, 40, cfg) == pytest.approx(warmup_cosine(19, 20))  # stage 1 decays to ~0 ...
    assert lr_multiplier(20, 40, cfg) == pytest.approx(0.5 * warmup_cosine(0, 10))  # ... and stage 2 restarts at half
    assert lr_multiplier(35, 40, cfg) == pytest.approx(0.5 * warmup_cosine(5, 10))
    plain = tiny_cfg(tmp_path)  # no schedule: exactly the one warm-up/cosine
    assert stage_bounds(plain, 40) == [(32, 0, 40)]
    assert [lr_multiplier(s, 40, plain) for s in range(41)] == [warmup_cosine(s, 40) for s in range(41)]


def test_ssim_weight_ramps_in_then_stays_at_the_studys_value():
    assert loss_weights_at(ALL_FOUR, 0, 100, 0.5).ssim == pytest.approx(0.2 / 50)  # never exactly 0: still logged
    assert loss_weights_at(ALL_FOUR, 24, 100, 0.5).ssim == pytest.approx(0.1)
    assert loss_weights_at(ALL_FOUR, 49, 100, 0.5) == ALL_FOUR  # full weight from the end of the ramp on
    assert loss_weights_at(ALL_FOUR, 80, 100, 0.5) == ALL_FOUR
    ramped = loss_weights_at(ALL_FOUR, 10, 100, 0.5)
    assert (ramped.mse, ramped.lpips, ramped.colour) == (1.0, 0.5, 0.3)  # only SSIM ramps
    assert loss_weights_at(ALL_FOUR, 0, 100, 0.0) == ALL_FOUR  # 0 = the study's constant weights
    assert loss_weights_at(MSE_ONLY, 0, 100, 0.5) == MSE_ONLY
    with pytest.raises(ValueError, match="ssim_warmup_frac"):
        TrainConfig(variant="m1", ssim_warmup_frac=1.0)


def test_lpips_weight_ramps_in_like_ssim():
    both = loss_weights_at(ALL_FOUR, 24, 100, 0.5, 0.5)
    assert (both.ssim, both.lpips) == (pytest.approx(0.1), pytest.approx(0.25))
    assert (both.mse, both.colour) == (1.0, 0.3)
    only_lpips = loss_weights_at(ALL_FOUR, 9, 100, 0.0, 0.2)
    assert only_lpips.ssim == 0.2 and only_lpips.lpips == pytest.approx(0.5 * 10 / 20)
    assert loss_weights_at(ALL_FOUR, 20, 100, 0.0, 0.2) == ALL_FOUR  # full weight after its ramp
    assert loss_weights_at(MSE_ONLY, 0, 100, 0.5, 0.5) == MSE_ONLY
    with pytest.raises(ValueError, match="lpips_warmup_frac"):
        TrainConfig(variant="m2", lpips_warmup_frac=1.0)
    assert config_from_profile("m2", "cpu").lpips_warmup_frac == 0.5
    assert config_from_profile("m2", "report").lpips_warmup_frac == 0.0  # the study keeps LPIPS constant


def test_training_applies_the_ssim_ramp(tmp_path):
    # tiny m3 (MSE + SSIM; LPIPS dropped by the tiny profile), 4 steps, ramp over the first half = 2 steps
    seen = []
    cfg = tiny_cfg(tmp_path, "m3", epochs=1, samples_per_epoch=16, ssim_warmup_frac=0.5)
    train(cfg, progress=False, on_step=lambda s, loss, parts: seen.append((s, loss, parts)))
    weights = {1: 0.1, 2: 0.2, 3: 0.2, 4: 0.2}  # on_step gets the count of steps done: step 1 = index 0
    for s, loss, parts in seen:
        assert loss == pytest.approx(parts["mse"] + weights[s] * parts["ssim"], rel=1e-4), s


def test_profile_gives_one_variant_its_own_settings():
    assert config_from_profile("m8", "cpu").image_size == 64
    assert config_from_profile("m8", "cpu").size_schedule == ((32, 0.72),)
    assert config_from_profile("m8", "cpu").samples_per_epoch == 200 and config_from_profile("m3", "cpu").samples_per_epoch == 800
    assert config_from_profile("m3", "demo").samples_per_epoch == 48  # the 10-minute tour that ranks nothing
    study_m8 = config_from_profile("m8-study", "cpu")  # the study's m8: the ablation's data, schedule, conditioning
    assert (study_m8.variant, study_m8.samples_per_epoch, study_m8.conditioning, study_m8.image_size) == ("m8", 800, "text", 32)
    assert config_from_profile("m4-nodark", "cpu").data == "synthetic:canonical+pose+shapes"
    assert config_from_profile("m7", "cpu").image_size == 32 and config_from_profile("m7", "cpu").size_schedule == ()
    assert config_from_profile("m8", "cpu", image_size=112).image_size == 112  # explicit settings still win
    assert config_from_profile("m5", "cpu").lr == 5e-4 and config_from_profile("m4", "cpu").lr == 1e-3
    assert config_from_profile("m8", "cpu").ssim_warmup_frac == 0.5
    assert config_from_profile("m8", "report").ssim_warmup_frac == 0.0  # the study's schedule keeps SSIM constant


def test_parse_size_schedule():
    assert parse_size_schedule("32:0.6,64:0.25") == ((32, 0.6), (64, 0.25))
    assert parse_size_schedule("") == ()
    for bad in ("32", "a:b", "30:0.5", "32:0.7,64:0.4", "32:1.5"):
        with pytest.raises(ValueError, match="--size-schedule"):
            parse_size_schedule(bad)


def test_progressive_training_changes_size_and_resumes_exactly(tmp_path):
    full, resumed = {}, {}
    kw = dict(epochs=2, samples_per_epoch=16, size_schedule=((16, 0.5),))  # 4 steps at 16 px, then 4 at 32 px
    cfg_a = tiny_cfg(tmp_path / "a", **kw)
    train(cfg_a, progress=False, on_step=lambda s, l, p: full.__setitem__(s, l))
    rows = [json.loads(x) for x in (Path(cfg_a.out) / "metrics.jsonl").read_text().splitlines()]
    assert [r["image_size"] for r in rows] == [16, 32]
    assert ck.load_checkpoint(cfg_a.out).image_size == 32  # the checkpoint works at the final size
    cfg_b = tiny_cfg(tmp_path / "b", **kw)
    train(cfg_b, progress=False, stop_after_steps=5)  # killed in the 32 px stage; checkpoint at step 4
    train(cfg_b, resume=True, progress=False, on_step=lambda s, l, p: resumed.__setitem__(s, l))
    assert min(resumed) == 5
    assert resumed[8] == pytest.approx(full[8], rel=1e-5, abs=1e-6)


def test_initial_weights_do_not_depend_on_lpips_loading(tmp_path, monkeypatch):
    """Building LPIPS (or failing to, offline) draws from the global RNG; the model's initial weights must not."""
    import polycolor.polycolor_core.training.train as T

    first = {}
    train(tiny_cfg(tmp_path / "a", epochs=1, samples_per_epoch=4), progress=False,
          on_step=lambda s, l, p: first.setdefault("a", l))
    real = T.resolve_lpips

    def rng_hungry(cfg, weights):
        torch.randn(10_000)  # what constructing a network does to the global generator
        return real(cfg, weights)

    monkeypatch.setattr(T, "resolve_lpips", rng_hungry)
    train(tiny_cfg(tmp_path / "b", epochs=1, samples_per_epoch=4), progress=False,
          on_step=lambda s, l, p: first.setdefault("b", l))
    assert first["a"] == first["b"]


# --- clipping ------------------------------------------------------------------------------------------------

def test_gradient_clipping_is_applied(tmp_path, monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        norm = real(params, max_norm, *a, **k)
        after = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        calls.append((max_norm, float(norm), float(after)))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    cfg = tiny_cfg(tmp_path, epochs=1, samples_per_epoch=12, lr=1.0)  # a huge lr makes big gradients likely
    train(cfg, progress=False)
    assert len(calls) == 3 and all(c[0] == 1.0 for c in calls)
    for max_norm, before, after in calls:
        assert after <= max_norm * (1 + 1e-4) or before <= max_norm


# --- convergence ---------------------------------------------------------------------------------------------

def test_tiny_variant_loss_falls(tmp_path):
    losses = []
    cfg = tiny_cfg(tmp_path, epochs=1, samples_per_epoch=4 * 40, augment=False)
    train(cfg, progress=False, on_step=lambda s, l, p: losses.append(l))
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)


# --- checkpoints ---------------------------------------------------------------------------------------------

def make_ckpt(path, variant="m1", step=3):
    torch.manual_seed(0)
    model = create_model(get_variant(variant).tiny(), 32)
    meta = ck.build_meta(model, TinyRandomTextEncoder().spec, 32, step=step, finished=True)
    ck.save_checkpoint(path, model, meta)
    return model


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_checkpoint_round_trip_is_bit_exact(tmp_path, variant):
    model = make_ckpt(tmp_path / "ck", variant)
    loaded = ck.load_checkpoint(tmp_path / "ck")
    a, b = model.unet.state_dict(), loaded.model.unet.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.meta["variant"]["name"] == f"{variant}-tiny"
    assert loaded.meta["text_encoder"]["name"] == "test-tiny-random"
    assert loaded.meta["package_version"] and loaded.meta["step"] == 3
    x, e = torch.rand(1, 3, 32, 32), torch.randn(1, 8, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x, e), loaded.model(x, e))


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    make_ckpt(tmp_path / "ck")
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["config.json", "model.safetensors"]
    json.loads((tmp_path / "ck" / "config.json").read_text())


def test_missing_checkpoint_error(tmp_path):
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ck.CheckpointError, match="no config.json"):
        ck.load_checkpoint(tmp_path / "empty")


def test_corrupt_weights_error(tmp_path):
    make_ckpt(tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.load_checkpoint(tmp_path / "ck")


def test_corrupt_config_error(tmp_path):
    make_ckpt(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(ck.CheckpointError, match="not valid (UTF-8 )?JSON"):
        ck.load_checkpoint(tmp_path / "ck")


def test_mismatched_checkpoint_error(tmp_path):
    make_ckpt(tmp_path / "a", "m1")
    make_ckpt(tmp_path / "b", "m5")
    # weights of m5 with the config of m1: the names/shapes must be checked, not silently loaded
    (tmp_path / "a" / "model.safetensors").write_bytes((tmp_path / "b" / "model.safetensors").read_bytes())
    with pytest.raises(ck.CheckpointError, match="does not match the model") as e:
        ck.load_checkpoint(tmp_path / "a")
    assert "m1-tiny" in str(e.value)


# --- resume --------------------------------------------------------------------------------------------------

def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full, resumed = {}, {}
    cfg_a = tiny_cfg(tmp_path / "a", epochs=3, samples_per_epoch=16)  # 4 steps per epoch, 12 steps
    train(cfg_a, progress=False, on_step=lambda s, l, p: full.__setitem__(s, l))

    cfg_b = tiny_cfg(tmp_path / "b", epochs=3, samples_per_epoch=16)
    # "kill" the run after 6 steps: the last checkpoint is the end of epoch 1 (step 4)
    r = train(cfg_b, progress=False, stop_after_steps=6)
    assert r.step == 6 and not r.finished and not is_finished(cfg_b.out)
    assert json.loads((Path(cfg_b.out) / "checkpoint" / "config.json").read_text())["step"] == 4
    r = train(cfg_b, resume=True, progress=False, on_step=lambda s, l, p: resumed.__setitem__(s, l))
    assert min(resumed) == 5  # continued after the checkpoint's step
    assert resumed[5] == pytest.approx(full[5], rel=1e-6, abs=1e-7)
    assert resumed[12] == pytest.approx(full[12], rel=1e-5, abs=1e-6)
    assert r.finished and is_finished(cfg_b.out)


def test_resume_logs_each_epoch_once_after_a_kill_between_log_and_checkpoint(tmp_path):
    """A kill after an epoch's metrics row was appended but before its checkpoint landed (and one mid-append) must
    not leave that epoch logged twice, or a torn line, once the run is resumed (issue 26)."""
    cfg = tiny_cfg(tmp_path, epochs=3, samples_per_epoch=8)  # 2 steps per epoch
    train(cfg, progress=False, stop_after_steps=4)  # epochs 1 and 2 logged and checkpointed
    log = Path(cfg.out) / "metrics.jsonl"
    rows = log.read_text().splitlines()
    # the checkpoint goes back to epoch 1 (as if epoch 2's commit was killed), and a third row was half written
    meta_file = Path(cfg.out) / "checkpoint" / "config.json"
    train(tiny_cfg(tmp_path / "one", epochs=3, samples_per_epoch=8), progress=False, stop_after_steps=2)
    for name in ("config.json", "model.safetensors", "training_state.safetensors", "training_state.json"):
        src = tmp_path / "one" / "m1" / "checkpoint" / name
        if src.exists():
            (meta_file.parent / name).write_bytes(src.read_bytes())
    log.write_text("\n".join(rows) + '\n{"epoch": 3, "st')
    r = train(cfg, resume=True, progress=False)
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert r.finished and epochs == [1, 2, 3]  # no repeat, no gap, no torn line


def test_resume_refuses_a_different_run(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=1, samples_per_epoch=4)
    train(cfg, progress=False)
    other = config_from_profile("m1", "tiny", out=cfg.out, data="synthetic:dark", epochs=1, samples_per_epoch=4)
    with pytest.raises(ValueError, match="different --out"):
        train(other, resume=True, progress=False)


def test_resume_keeps_the_runs_saved_schedule(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=2, samples_per_epoch=8)
    train(cfg, progress=False, stop_after_steps=2)  # epoch 1 of 2 done
    changed = tiny_cfg(tmp_path, epochs=5, samples_per_epoch=8, lr=0.5)  # new CLI values are not applied
    r = train(changed, resume=True, progress=False)
    assert r.finished and r.step == 4
    meta = json.loads((Path(cfg.out) / "checkpoint" / "config.json").read_text())
    assert meta["train_config"]["epochs"] == 2 and meta["train_config"]["lr"] == cfg.lr


# --- data-parallel -------------------------------------------------------------------------------------------

DDP_SCRIPT = """
import hashlib, sys, torch
from polycolor.polycolor_core.training.train import config_from_profile, train
cfg = config_from_profile("m1", "tiny", out=sys.argv[1], epochs=1, samples_per_epoch=16, augment=False)
r = train(cfg, progress=False)
rank = torch.distributed.get_rank()
h = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in r.model.parameters())).hexdigest()
open(f"{sys.argv[1]}/digest_{rank}.txt", "w").write(f"{h} {r.step}")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_on_cpu_keep_the_same_weights(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(script), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d0 = (out / "digest_0.txt").read_text().split()
    d1 = (out / "digest_1.txt").read_text().split()
    assert d0 == d1  # same weights on both ranks after all-reduced updates
    assert d0[1] == "2"  # 16 samples / (batch 4 x 2 ranks) = 2 steps
    meta = json.loads((out / "checkpoint" / "config.json").read_text())
    assert meta["world_size"] == 2


# --- one data-spec parser, one model-folder reader -----------------------------------------------------------

def test_synthetic_spec_options_reach_the_training_batches(tmp_path):
    from polycolor.polycolor_core.model.modelinfo import ModelInfo
    from polycolor.polycolor_core.training.trainio import TrainBatches, ValidationSet

    batches = TrainBatches("synthetic:canonical?colours=teal", 32, 4, seed=0, augment=False)
    for step in range(3):
        _, targets, colours = batches.batch(step)
        assert colours == ["teal"] * 4
        assert (targets.reshape(-1, 3) == (0, 128, 128)).all(-1).any()  # CSS teal is painted, not a canonical colour
    assert set(ValidationSet.build("synthetic:canonical?colours=teal,navy", 32, 8, seed=1).colours) == {"teal", "navy"}
    cfg = tiny_cfg(tmp_path, epochs=1, samples_per_epoch=8, data="synthetic:canonical?colours=teal")
    train(cfg, progress=False)
    info = ModelInfo.read(tmp_path / "m1")
    assert info.palette == ("teal",) and info.train_config["data"] == "synthetic:canonical?colours=teal"


def test_model_info_reads_run_checkpoint_and_file_paths_alike(tmp_path, bf16_decision):
    from polycolor.polycolor_core.model.modelinfo import SHARED_KEYS, ModelInfo

    cfg = tiny_cfg(tmp_path, epochs=1, samples_per_epoch=8)
    train(cfg, progress=False)
    run = tmp_path / "m1"
    infos = [ModelInfo.read(p) for p in (run, run / "checkpoint", run / "checkpoint" / "config.json",
                                         run / "checkpoint" / "model.safetensors")]
    assert all(i == infos[0] for i in infos)
    info = infos[0]
    assert info.kind == "checkpoint" and info.path == run / "checkpoint" and info.variant_name == "m1-tiny"
    assert info.variant == get_variant("m1").tiny() and info.text_encoder.name == "test-tiny-random"
    assert info.image_size == 32 and info.step == info.total_steps == 2 and info.finished and is_finished(run)
    # auto with timing off (the suite's setting) follows the probe: each decision is recorded as made
    assert info.precision == bf16_decision and info.palette[:2] == ("red", "green") and info.train_config["lr"] == 3e-3
    meta = json.loads((run / "checkpoint" / "config.json").read_text())
    assert set(SHARED_KEYS) <= set(meta)  # the checkpoint is written to the shared schema
    assert ModelInfo.find(tmp_path / "nowhere") is None and not is_finished(tmp_path / "nowhere")
