"""The polycolor nodes in a real ComfyUI (0.3.75): registration, model dropdown, the example workflows, pixels.

A tiny m1 is overfitted (``polycolor_core.training.train``) on the shipped example image filled cyan
(``_comfyui_example.py``), put into the server's ``polycolor`` model folder as a run folder
(``m1/checkpoint/config.json``, the name the example workflow uses), and the API-format example
``docs/polycolor_api.json`` (LoadImage -> Polycolor Model Loader -> Polygon Colorize -> SaveImage) runs on
that image. The saved image must be cyan inside the polygon and white outside, and equal to what
the node gives when called directly in this process; the same drawing at 512x512 comes back 512x512 with
its centre cyan and its corners bit-identical to the input. The UI-format template
``example_workflows/polycolor.json`` must be the only one listed and describe the same graph.

ComfyUI runs in the Python a ComfyUI-Manager user has (``.ci/prepare_comfyui_env.sh``: ComfyUI's requirements and
the pack's requirements.txt only, never the dev environment), with the repository linked into its custom_nodes.
Skipped when ComfyUI or that Python is not prepared, except under CI (env ``CI`` set), where that fails. Every wait is bounded; the server is stopped in ``finally``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.comfyui]


import _comfyui as H  # noqa: E402 (the test harness: tests/conftest.py puts tests/ on sys.path)
import _comfyui_example as X  # noqa: E402
SIZE = Image.open(X.INPUT_IMAGE).size[0]  # the shipped example image (square)
CYAN, MODEL_NAME = X.CYAN, X.MODEL_NAME


def _skip_or_fail(msg: str):
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def comfy():
    """(ComfyUI folder, the Manager-built Python it runs in): never this test process's own environment."""
    return H.require_comfyui(_skip_or_fail)


# ----------------------------------------------------------------------------------------- UI -> API

_ui_to_api = X.ui_to_api


def _strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


# ----------------------------------------------------------------------------------------- the test


def _direct_reference(ckpt: Path, inp: Image.Image) -> np.ndarray:
    """The node called in this process on the same image: what ComfyUI must save (up to 1 level)."""
    import torch

    from polycolor.nodes import NODE_SPECS

    (model,) = NODE_SPECS["PolycolorModelLoader"].run(str(ckpt), "auto", "cpu")
    image = torch.from_numpy(np.asarray(inp, dtype=np.float32) / 255.0)[None]
    out, _ = NODE_SPECS["PolycolorColorize"].run(model, image, "cyan")
    return (out[0].numpy() * 255.0 + 0.5).astype(np.uint8)


def test_example_workflow_in_real_comfyui(comfy, tmp_path):
    comfy_dir, python = comfy
    t0 = time.monotonic()
    models = tmp_path / "models"
    ckpt = X.train_overfit(tmp_path / "train", models)
    t_train = time.monotonic() - t0
    inp, _, inside, outside = X.example()
    reference = _direct_reference(ckpt, inp)

    server = H.start_server(comfy_dir, X.REPO_ROOT, models, timeout=180, node_name="polycolor",
                            work_dir=tmp_path / "comfy", python=python)
    try:
        inp.save(server.input_dir / "polygon.png")
        failed = [ln for ln in server.log_tail(200000).splitlines()
                  if ("IMPORT FAILED" in ln or "Cannot import" in ln) and "polycolor" in ln]
        assert not failed, server.log_tail()

        # --- registration, metadata, the model dropdown ---
        info = H.object_info(server.url)
        for name, display in (("PolycolorModelLoader", "Polycolor Model Loader"),
                              ("PolycolorColorize", "Polygon Colorize"), ("PolycolorTrain", "Polycolor Train")):
            assert name in info, f"{name} not registered; log:\n{server.log_tail()}"
            assert info[name]["display_name"] == display
            assert info[name]["category"] == "polycolor" and info[name]["description"]
            for inp_name, (_typ, *opts) in info[name]["input"]["required"].items():
                assert opts and opts[0].get("tooltip"), f"{name}.{inp_name} has no tooltip"
        # the V3 nodes show exactly the interface their NodeSpec declares (what the unit tests check without ComfyUI)
        from polycolor.nodes import NODE_SPECS

        for name, spec in NODE_SPECS.items():
            served = info[name]["input"]
            for section, inputs in spec.input_types().items():
                assert list(served[section]) == list(inputs), (name, section)
                for inp_name, (typ, opts) in inputs.items():
                    got_typ, got_opts = served[section][inp_name]
                    want = {k: v for k, v in opts.items() if not (inp_name == "model_name" and k == "options")}
                    assert got_typ == typ and want.items() <= got_opts.items(), (name, inp_name, got_opts, want)
            assert info[name]["output"] == list(spec.return_types) and info[name]["output_name"] == list(spec.return_names)
        loader = info["PolycolorModelLoader"]
        assert X.combo_options(loader["input"]["required"]["model_name"]) == [MODEL_NAME]
        assert loader["output"] == ["POLYCOLOR_MODEL"]
        col = info["PolycolorColorize"]
        assert col["output"] == ["IMAGE", "MASK"] and col["output_name"] == ["image", "mask"]
        assert col["input"]["required"]["colour"][1]["multiline"] is True

        # --- the workflows saved before the V3 schema (UI template and API file, unchanged) load and run under V3:
        # only the UI examples are templates (API format would open as an empty graph), and the first is the
        # same graph as the API example kept for scripts ---
        templates = H.get_json(server.url, "/workflow_templates")
        assert sorted(templates.get("polycolor")) == ["polycolor", "polycolor_train"], templates
        ui = H.get_json(server.url, "/api/workflow_templates/polycolor/polycolor.json")
        assert ui == json.loads(X.UI_WORKFLOW.read_text())
        api = json.loads(X.API_WORKFLOW.read_text())
        assert _ui_to_api(ui, info) == _strip_meta(api)

        # --- run the API example with the listed model, plus MASK -> image -> SaveImage to see the mask ---
        prompt = json.loads(json.dumps(api))
        loader_id = next(k for k, v in prompt.items() if v["class_type"] == "PolycolorModelLoader")
        col_id = next(k for k, v in prompt.items() if v["class_type"] == "PolycolorColorize")
        save_id = next(k for k, v in prompt.items() if v["class_type"] == "SaveImage")
        prompt[loader_id]["inputs"]["model_name"] = X.combo_options(loader["input"]["required"]["model_name"])[0]
        prompt["90"] = {"class_type": "MaskToImage", "inputs": {"mask": [col_id, 1]}}
        prompt["91"] = {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "polycolor_mask"}}
        entry = H.wait_history(server.url, H.queue_prompt(server.url, prompt), timeout=240, server=server)
        images = {o.node_id: o for o in H.get_output_images(server.url, entry)}
        assert set(images) == {save_id, "91"}, entry.get("outputs")
        saved = images[save_id]
        assert saved.filename.startswith("polycolor") and (server.output_dir / saved.subfolder / saved.filename).is_file()
        got = np.asarray(saved.to_pil().convert("RGB")).astype(np.int16)
        assert got.shape == (SIZE, SIZE, 3)
        err_in, err_out = X.fill_errors(got, inside, outside)
        assert err_in < 20, f"inside the polygon is not cyan: mean |diff| {err_in:.1f}"
        assert err_out < 20, f"the background changed: mean |diff| {err_out:.1f}"
        # Same model, same image, same node: ComfyUI's file matches the direct call. Not bit for bit: SaveImage
        # truncates 255*x (one level), and on CPUs with native bf16 the model runs in bf16 autocast, whose
        # kernels may round differently from process to process.
        diff = np.abs(got - reference.astype(np.int16))
        assert diff.mean() <= 1.0 and diff.max() <= 24, (diff.mean(), diff.max())
        mask = np.asarray(images["91"].to_pil().convert("L")).astype(np.float32) / 255.0
        assert mask.shape == (SIZE, SIZE)
        assert mask[inside].mean() > 0.8 and mask[outside].mean() < 0.05, (mask[inside].mean(), mask[outside].mean())

        # --- a user's own 512x512 drawing comes back 512x512: centre in the colour, far corners bit-identical to the
        # input (the composite writes the fill into the user's image and leaves every other pixel as it was) ---
        big = inp.resize((512, 512), Image.NEAREST)  # the same outline drawn 4x larger, with a 4x thicker pen
        big.save(server.input_dir / "polygon512.png")
        load_id = next(k for k, v in prompt.items() if v["class_type"] == "LoadImage")
        prompt512 = json.loads(json.dumps(prompt))
        del prompt512["90"], prompt512["91"]
        prompt512[load_id]["inputs"]["image"] = "polygon512.png"
        entry = H.wait_history(server.url, H.queue_prompt(server.url, prompt512), timeout=240, server=server)
        saved512 = next(o for o in H.get_output_images(server.url, entry) if o.node_id == save_id)
        got512 = np.asarray(saved512.to_pil().convert("RGB"))
        assert got512.shape == (512, 512, 3), got512.shape
        centre = got512[224:288, 224:288].reshape(-1, 3)
        assert len(np.unique(centre, axis=0)) == 1, "the fill is not one solid colour"  # the composite's solid fill
        assert np.abs(centre[0].astype(int) - CYAN).mean() < 20, centre[0]  # the model's cyan (same bound as above)
        src = np.asarray(big)
        for ys, xs in ((slice(0, 32), slice(0, 32)), (slice(0, 32), slice(480, 512)), (slice(480, 512), slice(0, 32)),
                       (slice(480, 512), slice(480, 512))):  # 32x32 corner blocks, far from the polygon
            assert np.array_equal(got512[ys, xs], src[ys, xs]), (ys, xs)

        # --- a second prompt (device cpu == what auto resolved to) reuses the loaded model ---
        prompt[loader_id]["inputs"]["device"] = "cpu"
        del prompt["90"], prompt["91"]
        H.wait_history(server.url, H.queue_prompt(server.url, prompt), timeout=120, server=server)
        loads = [ln for ln in server.log_tail(200000).splitlines() if "polycolor: loaded" in ln]
        assert len(loads) == 1, loads

        # --- a bad colour fails the prompt with the node's message ---
        prompt[col_id]["inputs"]["colour"] = "cyna"
        with pytest.raises(H.ComfyUIError, match=r"cyna.*did you mean 'cyan'"):
            H.wait_history(server.url, H.queue_prompt(server.url, prompt), timeout=120, server=server)
    finally:
        rc = server.stop()
    assert rc is not None, f"ComfyUI (pid {server.pid}) did not stop"
    print(f"\n[polycolor] overfit training {t_train:.1f}s, whole test {time.monotonic() - t0:.1f}s, "
          f"direct-vs-ComfyUI |diff| mean {diff.mean():.3f} max {diff.max()}")
