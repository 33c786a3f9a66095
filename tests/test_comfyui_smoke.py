"""Smoke test: a real ComfyUI server loads a throwaway node pack and runs LoadImage -> node -> SaveImage.

Proves the harness in ``tests/_comfyui.py`` (custom-node loading, the ``polycolor`` model folder
via extra_model_paths, prompt queueing, history polling, ``/view``). Skipped when ComfyUI is not
prepared (``bash .ci/prepare_comfyui.sh``), except under CI (env ``CI`` set), where that fails.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.comfyui]


def _load_helpers():
    name = "polycolor_tests_comfyui"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_comfyui.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


H = _load_helpers()

NODE = "PolycolorSmokeInvert"

# The pack deliberately mirrors what the real polycolor pack must do: relative imports only (ComfyUI
# imports the folder under a path-derived module name, not as a top-level package), and registering
# the "polycolor" model folder without clobbering paths that extra_model_paths.yaml added first.
PACK_INIT = '''
import os

import folder_paths

from ._impl import invert

_FOLDER = "polycolor"
_EXTS = {".onnx", ".safetensors", ".txt"}


def _register_model_folder():
    default = os.path.join(folder_paths.models_dir, _FOLDER)
    if _FOLDER in folder_paths.folder_names_and_paths:  # e.g. from extra_model_paths.yaml
        paths, exts = folder_paths.folder_names_and_paths[_FOLDER]
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths[_FOLDER] = (paths, set(exts) | _EXTS)
    else:
        folder_paths.folder_names_and_paths[_FOLDER] = ([default], set(_EXTS))


_register_model_folder()


class PolycolorSmokeInvert:
    CATEGORY = "polycolor/test"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "model": (folder_paths.get_filename_list(_FOLDER),),
        }}

    def run(self, image, model):
        path = folder_paths.get_full_path_or_raise(_FOLDER, model)
        with open(path, encoding="utf-8") as f:
            assert f.read().strip() == "polycolor-smoke-model", path
        return (invert(image),)


NODE_CLASS_MAPPINGS = {"PolycolorSmokeInvert": PolycolorSmokeInvert}
NODE_DISPLAY_NAME_MAPPINGS = {"PolycolorSmokeInvert": "Polycolor Smoke Invert"}
'''

PACK_IMPL = '''
def invert(image):
    # IMAGE is a float tensor [B, H, W, C] in [0, 1]
    return (1.0 - image).clamp(0.0, 1.0)
'''


@pytest.fixture(scope="module")
def comfy_dir():
    found = H.find_comfyui()
    if found is None:
        msg = (f"ComfyUI is not prepared (set {H.ENV_VAR} or run `bash .ci/prepare_comfyui.sh`, "
               f"looked in {os.environ.get(H.ENV_VAR) or H.DEFAULT_COMFYUI_DIR})")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def test_comfyui_runs_custom_node(comfy_dir, tmp_path):
    pack = tmp_path / "polycolor_smoke"
    pack.mkdir()
    (pack / "__init__.py").write_text(textwrap.dedent(PACK_INIT), encoding="utf-8")
    (pack / "_impl.py").write_text(textwrap.dedent(PACK_IMPL), encoding="utf-8")
    models = tmp_path / "models"
    models.mkdir()
    (models / "smoke.txt").write_text("polycolor-smoke-model\n", encoding="utf-8")

    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    src[0, 0] = (0, 0, 0)
    src[0, 1] = (255, 255, 255)

    server = H.start_server(comfy_dir, pack, models, timeout=180, work_dir=tmp_path / "comfy_run")
    try:
        Image.fromarray(src).save(server.input_dir / "smoke_in.png")

        info = H.object_info(server.url, NODE)
        assert NODE in info, f"{NODE} not registered; log:\n{server.log_tail()}"
        assert info[NODE]["category"] == "polycolor/test"
        # the models folder from extra_model_paths.yaml is what the node's combo lists
        assert info[NODE]["input"]["required"]["model"][0] == ["smoke.txt"]
        assert "LoadImage" in H.object_info(server.url, "LoadImage")

        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "smoke_in.png"}},
            "2": {"class_type": NODE, "inputs": {"image": ["1", 0], "model": "smoke.txt"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "polycolor_smoke"}},
        }
        prompt_id = H.queue_prompt(server.url, prompt)
        entry = H.wait_history(server.url, prompt_id, timeout=120, server=server)
        images = H.get_output_images(server.url, entry)

        assert len(images) == 1, entry.get("outputs")
        out = images[0]
        assert out.node_id == "3" and out.filename.startswith("polycolor_smoke")
        assert (server.output_dir / out.subfolder / out.filename).is_file()
        got = np.asarray(out.to_pil().convert("RGB")).astype(np.int16)
        expected = 255 - src.astype(np.int16)
        assert got.shape == expected.shape
        # SaveImage truncates 255*x to uint8, so float round-off may cost one level
        assert np.abs(got - expected).max() <= 1
        assert tuple(got[0, 0]) == (255, 255, 255) and tuple(got[0, 1]) == (0, 0, 0)
    finally:
        rc = server.stop()
    assert rc is not None, f"ComfyUI (pid {server.pid}) did not stop"
