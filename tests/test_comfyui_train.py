"""Polycolor Train: the node's logic without ComfyUI, and the node queued in a real ComfyUI.

Without ComfyUI (``nodes/train.py`` called through its ``NodeSpec``, the way the V3 class calls it): the
default settings are the cpu profile's m8 (750 steps), ``steps`` becomes equal epochs, a bad name is refused
with the fix, ComfyUI's progress bar sees every step and its cancel stops the run, and queuing again continues
from the saved checkpoint to the end.

In the real ComfyUI 0.3.75, in the Python a ComfyUI-Manager user has (``.ci/prepare_comfyui_env.sh``), the
"train then colour" template (``example_workflows/polycolor_train.json``) is queued through the API on a tiny
budget: it trains m8 (the cpu profile's settings) into ``models/polycolor/<name>/``, colours the example image
with the trained model (same size back), the loader's dropdown lists the new model, and a run cancelled through
``POST /interrupt`` (the cancel button) continues from its checkpoint when queued again.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types

import numpy as np
import pytest

from polycolor.nodes import NODE_SPECS
from polycolor.nodes import train as T
from polycolor.nodes.loader import PolycolorModelError

TRAIN = NODE_SPECS["PolycolorTrain"]


import _comfyui as H  # noqa: E402 (the test harness: tests/conftest.py puts tests/ on sys.path)
import _comfyui_example as X  # noqa: E402
TRAIN_WORKFLOW = X.EXAMPLE_DIR / "polycolor_train.json"


# ----------------------------------------------------------------------------------------- without ComfyUI


def test_defaults_are_the_cpu_profile_m8(tmp_path):
    from polycolor.polycolor_core.training.trainconfig import config_from_profile

    spec = TRAIN.input_types()["required"]
    assert spec["variant"][1]["default"] == "m8" and spec["steps"][1]["default"] == T.DEFAULT_STEPS == 750
    assert all(opts.get("tooltip") for _, opts in spec.values())
    cfg = T.train_config("m8", T.DEFAULT_STEPS, tmp_path / "run", "cpu")
    ref = config_from_profile("m8", "cpu")
    same = {k: v for k, v in vars(ref).items() if k not in ("epochs", "out", "device")}
    assert {k: getattr(cfg, k) for k in same} == same  # the profile's m8: palette, conditioning, schedule, data
    assert cfg.resolved_epochs() * cfg.samples_per_epoch // cfg.batch_size == 750 == ref.resolved_epochs() * 50
    small = T.train_config("m8", 7, tmp_path / "run", "cpu")
    assert (small.resolved_epochs(), small.samples_per_epoch // small.batch_size) == (7, 1)


@pytest.mark.parametrize("name", ["", "a/b", "../up", "x.tmp", " "])
def test_bad_names_are_refused_with_the_fix(name, tmp_path, monkeypatch):
    monkeypatch.setenv("POLYCOLOR_MODELS_DIR", str(tmp_path))
    with pytest.raises(PolycolorModelError, match="plain folder name"):
        TRAIN.run(name, "m8", 4, "cpu")


def test_no_model_folder_outside_comfyui_names_the_fix(monkeypatch):
    monkeypatch.setenv("POLYCOLOR_MODELS_DIR", "")
    with pytest.raises(PolycolorModelError, match="POLYCOLOR_MODELS_DIR"):
        TRAIN.run("x", "m8", 4, "cpu")


class _Cancelled(Exception):
    pass


@pytest.fixture
def fake_comfy(monkeypatch):
    """comfy.utils.ProgressBar and comfy.model_management's cancel check, recording what the node does."""
    calls = {"progress": [], "cancel_at": None}
    comfy = types.ModuleType("comfy")
    comfy.__path__ = []
    utils, mm = types.ModuleType("comfy.utils"), types.ModuleType("comfy.model_management")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            calls["progress"].append((value, total))

    def throw_exception_if_processing_interrupted():
        if calls["cancel_at"] is not None and calls["progress"] and calls["progress"][-1][0] >= calls["cancel_at"]:
            raise _Cancelled()

    utils.ProgressBar, mm.throw_exception_if_processing_interrupted = ProgressBar, throw_exception_if_processing_interrupted
    mm.get_torch_device = lambda: "cpu"
    comfy.utils, comfy.model_management = utils, mm
    for name, mod in (("comfy", comfy), ("comfy.utils", utils), ("comfy.model_management", mm)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


@pytest.mark.slow
def test_progress_cancel_and_resume(fake_comfy, tmp_path, monkeypatch):
    from polycolor.polycolor_core.model.modelinfo import ModelInfo

    monkeypatch.setenv("POLYCOLOR_MODELS_DIR", str(tmp_path))
    fake_comfy["cancel_at"] = 2
    with pytest.raises(_Cancelled):
        TRAIN.run("run", "m1", 4, "cpu")  # the cpu profile's m1 (32 px), 4 epochs of 1 step
    assert fake_comfy["progress"] == [(1, 4), (2, 4)]
    info = ModelInfo.read(tmp_path / "run" / "checkpoint")
    assert (info.step, info.finished) == (1, False)  # the cancelled step's epoch was not saved
    fake_comfy.update(progress=[], cancel_at=None)
    (model,) = TRAIN.run("run", "m1", 4, "cpu")  # queued again: continues from the checkpoint at step 1
    assert fake_comfy["progress"] == [(2, 4), (3, 4), (4, 4)]
    assert ModelInfo.read(tmp_path / "run" / "checkpoint").finished and callable(model.colorize)
    (again,) = TRAIN.run("run", "m1", 4, "cpu")  # finished: only loaded (the loader's cache)
    assert again is model and fake_comfy["progress"] == [(2, 4), (3, 4), (4, 4)]
    from polycolor.nodes.loader import list_models

    assert "run/checkpoint/config.json" in list_models()


# ----------------------------------------------------------------------------------------- real ComfyUI


def _skip_or_fail(msg: str):
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _wait_for(pred, timeout: float, what: str, server=None):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{server.log_tail()}" if server else ""))
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.comfyui
def test_train_then_colour_in_real_comfyui(tmp_path):
    comfy_dir, python = H.require_comfyui(_skip_or_fail)
    models = tmp_path / "models"
    inp, _, _, _ = X.example()
    server = H.start_server(comfy_dir, X.REPO_ROOT, models, timeout=180, node_name="polycolor",
                            work_dir=tmp_path / "comfy", python=python, env={"OMP_NUM_THREADS": "1"})
    try:
        inp.save(server.input_dir / "polygon.png")
        info = H.object_info(server.url)
        assert info["PolycolorTrain"]["display_name"] == "Polycolor Train"
        assert info["PolycolorTrain"]["output"] == ["POLYCOLOR_MODEL"]
        assert X.combo_options(info["PolycolorModelLoader"]["input"]["required"]["model_name"]) == []
        ui = json.loads(TRAIN_WORKFLOW.read_text())
        assert H.get_json(server.url, "/api/workflow_templates/polycolor/polycolor_train.json") == ui
        prompt = X.ui_to_api(ui, info)
        train_id = next(k for k, v in prompt.items() if v["class_type"] == "PolycolorTrain")
        save_id = next(k for k, v in prompt.items() if v["class_type"] == "SaveImage")
        assert prompt[train_id]["inputs"] == {"name": "m8-everyday", "variant": "m8", "steps": 750, "device": "auto"}

        # --- a tiny budget: m8 (the cpu profile's settings) for 3 steps, then colour with it ---
        prompt[train_id]["inputs"].update(name="tiny", steps=3)
        t0 = time.monotonic()
        entry = H.wait_history(server.url, H.queue_prompt(server.url, prompt), timeout=400, server=server)
        t_tiny = time.monotonic() - t0
        (saved,) = H.get_output_images(server.url, entry, node_ids=[save_id])
        got = np.asarray(saved.to_pil().convert("RGB"))
        assert got.shape == np.asarray(inp).shape  # coloured with the trained model, at the input's size (3 steps
        # teach it nothing yet: what it paints is the 750-step run's business, scored in the closing note)
        cfg = json.loads((models / "tiny" / "checkpoint" / "config.json").read_text())
        assert cfg["step"] == 3 and cfg["finished"] and cfg["train_config"]["variant"] == "m8"
        assert cfg["train_config"]["colours"] == "canonical+xkcd+hex" and cfg["train_config"]["conditioning"] == "text+rgb+film"
        names = H.object_info(server.url, "PolycolorModelLoader")["PolycolorModelLoader"]["input"]["required"]
        assert X.combo_options(names["model_name"]) == ["tiny/checkpoint/config.json"]  # the loader's list, refreshed

        # --- cancel mid-run (the cancel button is POST /interrupt), queue again: it continues, not restarts ---
        prompt[train_id]["inputs"].update(name="resumed", steps=30)  # 15 epochs of 2 steps
        ckpt = models / "resumed" / "checkpoint" / "config.json"
        pid = H.queue_prompt(server.url, prompt)
        _wait_for(ckpt.is_file, 300, "the first checkpoint", server)
        status, _ = H._request(server.url + "/interrupt", data=b"{}", headers={"Content-Type": "application/json"})
        assert status == 200
        with pytest.raises(H.ComfyUIError, match="(?i)interrupt"):
            H.wait_history(server.url, pid, timeout=300, server=server)
        stopped = json.loads(ckpt.read_text())["step"]
        assert 0 < stopped < 30 and not json.loads(ckpt.read_text())["finished"]
        H.wait_history(server.url, H.queue_prompt(server.url, prompt), timeout=400, server=server)
        done = json.loads(ckpt.read_text())
        assert done["step"] == 30 and done["finished"]
        log = server.log_tail(400000)
        assert f"continuing m8 into {models / 'resumed'}" in log, log[-3000:]
    finally:
        rc = server.stop()
    assert rc is not None
    print(f"\n[polycolor] Polycolor Train in ComfyUI: 3-step m8 + colour {t_tiny:.1f}s; cancelled at step {stopped}")
