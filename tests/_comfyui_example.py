"""The shipped ComfyUI example as test data: its input image, the expected fill, and a model that knows it.

Shared by ``test_comfyui_integration.py``, ``test_comfyui_browser.py`` and ``test_comfyui_train.py`` (not collected by pytest; load it
by path like ``_comfyui.py``). The input is the pack's own ``example_workflows/polygon.png`` (the image the
example workflow loads); the target is that outline filled with cyan, outline included (as in the study's
data). :func:`train_overfit` memorises that one pair with a tiny m1 (~25 s on 2 CPU cores) and stores it in
a ComfyUI model folder under the name the example workflow's loader widget uses (once per session).
:func:`ui_to_api` turns a UI-format workflow into the API prompt the frontend would queue.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO_ROOT / "example_workflows"
UI_WORKFLOW = EXAMPLE_DIR / "polycolor.json"
INPUT_IMAGE = EXAMPLE_DIR / "polygon.png"
API_WORKFLOW = REPO_ROOT / "docs" / "polycolor_api.json"
CYAN = (0, 255, 255)
MODEL_NAME = "m1/checkpoint/config.json"  # what the example's Polycolor Model Loader selects
MODEL_SIZE = 32  # the model works at 32 px; the Colorizer resizes both ways


def example() -> tuple[Image.Image, Image.Image, np.ndarray, np.ndarray]:
    """(outline input, cyan-filled target, inside mask, outside mask); masks keep 5 px off the outline."""
    from scipy import ndimage

    inp = Image.open(INPUT_IMAGE).convert("RGB")
    dark = np.asarray(inp.convert("L")) < 128
    filled = ndimage.binary_fill_holes(dark)
    assert filled.sum() > 4 * dark.sum(), f"{INPUT_IMAGE} is not a closed outline"
    tgt = np.asarray(inp).copy()
    tgt[filled] = CYAN
    inside = ndimage.binary_erosion(filled & ~dark, iterations=5)
    outside = ndimage.binary_erosion(~filled, iterations=5, border_value=1)
    return inp, Image.fromarray(tgt), inside, outside


_TRAINED: list[Path] = []  # the first run folder trained in this pytest session (training is seeded)


def train_overfit(work: Path, models_dir: Path) -> Path:
    """Overfit m1-tiny on the example (folder data in the original layout) into ``models_dir/m1``.

    Training is deterministic (seed 0, no augmentation), so later calls in the same session copy the first
    run folder instead of training again.
    """
    import shutil

    from polycolor.polycolor_core.training.train import config_from_profile, train

    if _TRAINED and (_TRAINED[0] / "checkpoint" / "model.safetensors").is_file():
        shutil.copytree(_TRAINED[0], Path(models_dir) / "m1")
        return Path(models_dir) / "m1" / "checkpoint"
    inp, tgt, _, _ = example()
    data = Path(work) / "data"
    (data / "inputs").mkdir(parents=True)
    (data / "outputs").mkdir()
    inp.save(data / "inputs" / "polygon.png")
    tgt.save(data / "outputs" / "cyan_polygon.png")
    steps = 30  # one pair repeated: an "epoch" of 30 batches of 1 (no augmentation: memorise it exactly)
    rows = [{"input_polygon": "polygon.png", "colour": "cyan", "output_image": "cyan_polygon.png"}] * steps
    (data / "data.json").write_text(json.dumps(rows))
    cfg = config_from_profile(
        "m1", "tiny", data=f"folder:{data}", out=str(Path(models_dir) / "m1"), epochs=1, batch_size=1,
        image_size=MODEL_SIZE, lr=1e-2, augment=False, val_samples=1, device="cpu", seed=0,
    )
    result = train(cfg, progress=False)
    ckpt = Path(getattr(result, "checkpoint", result))
    assert (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file()
    assert ckpt == Path(models_dir) / "m1" / "checkpoint" and MODEL_NAME.startswith("m1/checkpoint/")
    _TRAINED.append(ckpt.parent)
    return ckpt


def fill_errors(rgb: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> tuple[float, float]:
    """Mean |diff| (0..255) from cyan inside the polygon and from white outside it."""
    got = np.asarray(rgb).astype(np.int16)
    return (float(np.abs(got[inside] - np.array(CYAN)).mean()), float(np.abs(got[outside] - 255).mean()))


def example_model(work: Path, models_dir: Path) -> Path:
    """The model the example runs with: ``$POLYCOLOR_EXAMPLE_MODEL`` (a run folder or its ``checkpoint/``,
    copied into ``models_dir/m1``; e.g. a trained m8 to render the template thumbnail), else :func:`train_overfit`."""
    import os
    import shutil

    given = os.environ.get("POLYCOLOR_EXAMPLE_MODEL")
    if not given:
        return train_overfit(work, models_dir)
    src = Path(given).expanduser()
    src = src / "checkpoint" if (src / "checkpoint" / "config.json").is_file() else src
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"POLYCOLOR_EXAMPLE_MODEL={given} holds no config.json nor checkpoint/config.json")
    dest = Path(models_dir) / "m1" / "checkpoint"
    shutil.copytree(src, dest)
    return dest


# ----------------------------------------------------------------------------------------- UI -> API


def combo_options(entry) -> list:
    """The choices of a combo input as ``/object_info`` lists it: V1 ``[[...], {...}]`` or V3 ``["COMBO", {"options": [...]}]``."""
    typ, *rest = entry
    return list(typ) if isinstance(typ, list) else list((rest[0] if rest else {}).get("options", []))


def ui_to_api(ui: dict, info: dict) -> dict:
    """The API prompt the frontend would queue for a UI-format workflow (widgets in INPUT_TYPES order)."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        if node["type"] not in info:  # frontend-only nodes (notes)
            continue
        assert node.get("mode", 0) == 0, node
        spec = info[node["type"]]
        connected = {i["name"]: i["link"] for i in node["inputs"] if i.get("link") is not None}
        values = iter(node["widgets_values"])
        inputs = {}
        for section in ("required", "optional"):
            for name in spec["input_order"].get(section, []):
                typ = spec["input"][section][name][0]
                if name in connected:
                    link = links[connected[name]]
                    inputs[name] = [str(link[1]), link[2]]
                elif isinstance(typ, list) or typ in ("COMBO", "STRING", "INT", "FLOAT", "BOOLEAN"):
                    inputs[name] = next(values)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
