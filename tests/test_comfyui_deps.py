"""What the ComfyUI nodes need holds in the Python a ComfyUI-Manager user has.

* **The import walk** (fast, no imports executed): every import reachable from ``nodes/*.py`` through the
  pack's own relative imports, at module level or inside functions, is followed; each third-party top-level
  module must come from ComfyUI's requirements.txt, the pack's requirements.txt, or what pip installs with
  them (their dependencies, read from the installed distributions' metadata), unless it is a declared
  optional path (:data:`OPTIONAL`): those must be imported inside a function or under ``try/except
  ImportError``, never at a module's top level, and each answers with a message naming its fix.
* **The tables and the LAB conversion that replaced matplotlib and scikit-image** equal them where installed.
* **The nodes with the optional and dropped modules made unimportable** (a subprocess where ``import
  matplotlib`` etc. raise ImportError): typed XKCD colours resolve, the loader + Polygon Colorize colour a
  drawing (composite), Polycolor Train trains a step; the onnx backend and hf: data say what to install.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip always vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
COMFY_REQUIREMENTS = REPO / ".ci" / "_comfyui" / "requirements.txt"
# ComfyUI 0.3.75's requirements.txt (used when .ci/prepare_comfyui.sh has not run)
COMFY_0375 = ("comfyui-frontend-package comfyui-workflow-templates comfyui-embedded-docs torch torchsde torchvision "
              "torchaudio numpy einops transformers tokenizers sentencepiece safetensors aiohttp yarl pyyaml Pillow "
              "scipy tqdm psutil alembic SQLAlchemy av kornia spandrel pydantic pydantic-settings").split()
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server",
                 "execution", "node_helpers", "latent_preview"}
ALIASES = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml", "cv2": "opencv-python",
           "sklearn": "scikit-learn", "huggingface_hub": "huggingface-hub"}
# Declared optional paths: module -> what answers when it is missing (the nodes never need it).
OPTIONAL = {
    "onnxruntime": "the onnx backend: Polycolor Model Loader says to install onnxruntime or onnxruntime-gpu",
    "onnx": "ONNX export (the backend auto-tuner's export of a checkpoint) only runs when onnxruntime is there",
    "datasets": "hf: data only (polycolor_core/data/hfdata.py raises DataError: pip install datasets)",
    "rich": "terminal progress bars only (train(progress=True) from the CLI; the nodes pass progress=False)",
}
OPTIONAL_MATCH = {"onnxruntime": "pip install onnxruntime", "datasets": "pip install datasets"}


def _requirement_names(lines) -> set[str]:
    out = set()
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.add(canonicalize_name(Requirement(line).name))
    return out


def _provided() -> set[str]:
    """Distributions a Manager install puts in ComfyUI's Python: both requirement files and their dependencies."""
    comfy = (COMFY_REQUIREMENTS.read_text().splitlines() if COMFY_REQUIREMENTS.is_file() else COMFY_0375)
    todo = list(_requirement_names(comfy) | _requirement_names((REPO / "requirements.txt").read_text().splitlines()))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for r in requires:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def walk_imports(repo: Path = REPO) -> dict[str, list[tuple[str, int, bool]]]:
    """Third-party top-level module -> [(file, line, guarded)] over every file reachable from nodes/.

    ``guarded``: inside a function body or a ``try`` whose handlers catch ImportError/ModuleNotFoundError."""
    todo = sorted((repo / "nodes").glob("*.py"))
    seen: set[Path] = set()
    found: dict[str, list[tuple[str, int, bool]]] = {}
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        seen.add(f)
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        guarded_ids: set[int] = set()
        for node in ast.walk(tree):
            bodies = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                bodies = node.body
            elif isinstance(node, ast.Try) and any(
                    re.search(r"ImportError|ModuleNotFoundError|Exception", ast.unparse(h.type or ast.Name("x")))
                    for h in node.handlers):
                bodies = node.body
            for stmt in bodies:
                guarded_ids.update(id(n) for n in ast.walk(stmt))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = f.parent
                for _ in range(node.level - 1):
                    base = base.parent
                target = base.joinpath(*(node.module or "").split(".")) if node.module else base
                todo += [target.with_suffix(".py"), target / "__init__.py"]
                todo += [target / f"{a.name}.py" for a in node.names] + [target / a.name / "__init__.py" for a in node.names]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for n in names:
                    top = n.split(".")[0]
                    if top and top not in sys.stdlib_module_names and top not in COMFY_MODULES and top != "polycolor":
                        found.setdefault(top, []).append((str(f.relative_to(repo)), node.lineno, id(node) in guarded_ids))
    return found


def test_every_module_the_nodes_reach_is_provided():
    found = walk_imports()
    assert {"torch", "numpy", "diffusers"} <= set(found), sorted(found)  # the walk reaches the core
    provided = _provided()
    dist_of = metadata.packages_distributions()
    missing = []
    for mod, where in sorted(found.items()):
        dists = {canonicalize_name(d) for d in dist_of.get(mod, [ALIASES.get(mod, mod)])}
        if dists & provided:
            continue
        if mod in OPTIONAL:
            unguarded = [f"{f}:{line}" for f, line, guarded in where if not guarded]
            assert not unguarded, f"optional {mod} ({OPTIONAL[mod]}) is imported unguarded at {unguarded}"
            continue
        missing.append(f"{mod} ({'/'.join(sorted(dists))}) imported at "
                       + ", ".join(f"{f}:{line}" for f, line, _ in where))
    assert not missing, ("modules the ComfyUI nodes reach that neither ComfyUI's requirements.txt nor the pack's "
                         "requirements.txt provides (add them to requirements.txt, or make the import an optional "
                         "path and declare it in OPTIONAL):\n" + "\n".join(missing))


def test_dropped_dependencies_are_not_on_the_node_path():
    found = walk_imports()
    assert "skimage" not in found and "matplotlib" not in found, {k: found.get(k) for k in ("skimage", "matplotlib")}


def test_shipped_colour_tables_equal_matplotlibs():
    pytest.importorskip("matplotlib")
    from polycolor.polycolor_core.colour import colourtables
    from polycolor.polycolor_core.colour import colourtables_build

    ref = colourtables_build.from_matplotlib()
    assert colourtables.css4() == ref["css4"] and len(ref["css4"]) == 148
    assert list(colourtables.xkcd().items()) == list(ref["xkcd"].items())  # the order decides near-duplicates


def test_own_lab_matches_scikit_image():
    np = pytest.importorskip("numpy")
    skcolor = pytest.importorskip("skimage.color")
    from polycolor.polycolor_core.colour.colours import srgb_to_lab

    rgb = np.random.default_rng(0).random((64, 48, 3)).astype(np.float32)
    rgb[0, :8] = [[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [0.5, 0.5, 0.5]]
    assert np.abs(srgb_to_lab(rgb) - skcolor.rgb2lab(rgb, channel_axis=-1)).max() < 0.01


BLOCKED = ("matplotlib", "skimage", "onnx", "onnxruntime", "datasets", "rich")
_SCRIPT = r"""
import json, sys
BLOCKED = set(json.loads(sys.argv[1]))
for name in BLOCKED:  # `import name` raises ModuleNotFoundError, importlib.util.find_spec(name) is None
    sys.modules[name] = None
import numpy as np, torch
from polycolor.nodes import NODE_SPECS
from polycolor.polycolor_core.colour.colours import resolve_colour
from polycolor.polycolor_core.colour.palettes import names
out = {"dark teal": resolve_colour("dark teal"), "xkcd": len(names("xkcd")), "css": len(names("css"))}
(model,) = NODE_SPECS["PolycolorModelLoader"].run(sys.argv[2], "auto", "cpu")
img = torch.ones(1, 48, 64, 3); img[0, 10:38, 12] = 0; img[0, 10:38, 50] = 0; img[0, 10, 12:51] = 0; img[0, 37, 12:51] = 0
image, mask = NODE_SPECS["PolycolorColorize"].run(model, img, "dark teal")
out["shape"] = list(image.shape); out["corner"] = image[0, :3, :3].tolist()
for what, call in (("onnx", lambda: NODE_SPECS["PolycolorModelLoader"].run(sys.argv[2], "onnx", "cpu")),
                   ("hf", lambda: __import__("polycolor.polycolor_core.data.hfdata", fromlist=["x"])._open_hf("x", "train"))):
    try:
        call()
        out[what] = "no error"
    except Exception as exc:
        out[what] = str(exc)
(trained,) = NODE_SPECS["PolycolorTrain"].run("t", "m1", 1, "cpu")
out["trained"] = callable(trained.colorize)
out["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m] is not None)
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_nodes_work_without_the_optional_modules(checkpoint_factory, tmp_path):
    ckpt = checkpoint_factory(tmp_path / "ckpt")
    env = {**os.environ, "POLYCOLOR_MODELS_DIR": str(tmp_path / "models"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(BLOCKED), str(ckpt)], capture_output=True,
                         text=True, timeout=600, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    out = json.loads(res.stdout.split("RESULT", 1)[1])
    assert out["dark teal"] == [1, 77, 78] and out["xkcd"] == 839 and out["css"] == 148
    assert out["shape"] == [1, 48, 64, 3] and out["corner"] == [[[1.0] * 3] * 3] * 3
    assert OPTIONAL_MATCH["onnxruntime"] in out["onnx"], out["onnx"]
    assert OPTIONAL_MATCH["datasets"] in out["hf"], out["hf"]
    assert out["trained"] and out["loaded"] == []
