"""``Polycolor Model Loader``: pick a checkpoint or an ONNX export from ComfyUI's ``models/polycolor/``.

What the dropdown lists (paths relative to any ``polycolor`` model folder, searched recursively):

* ``<name>/config.json`` for every **checkpoint** folder, i.e. a folder holding ``config.json`` *and*
  ``model.safetensors`` (what ``polycolor train`` writes to ``runs/<name>/checkpoint/``; copying a whole run
  folder gives ``<run>/checkpoint/config.json``);
* ``<name>/manifest.json`` for every **ONNX export** folder (what ``polycolor export`` writes).

Half-written folders of an interrupted save (``*.tmp``/``*.old``) are skipped. The ``polycolor`` folder is
registered with ComfyUI's ``folder_paths`` by *merging*: paths from ``extra_model_paths.yaml`` (applied
before custom nodes load) are kept and ``<models_dir>/polycolor`` is appended. Without ComfyUI (plain Python,
the unit tests) the folders in ``$POLYCOLOR_MODELS_DIR`` (``os.pathsep``-separated) are listed instead, and an
absolute path to a model folder / ``config.json`` / ``manifest.json`` is always accepted.

Loaded models are cached per process (key: resolved folder, backend, device; reloaded when the model's files
change on disk), so a workflow that runs many times, or several workflows using the same model, load it once.
No torch at import time: every heavy import is inside a function. ``load`` is the node's one implementation,
``SPEC`` its interface (``spec.NodeSpec``; ``v3.py`` builds the ComfyUI V3 node from it).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("polycolor")

from ..polycolor_core.runtime.devices import BACKENDS, DEVICES, check_backend
from ..polycolor_core.model.modelinfo import CONFIG as CHECKPOINT_CONFIG
from ..polycolor_core.model.modelinfo import MANIFEST as ONNX_MANIFEST
from ..polycolor_core.model.modelinfo import WEIGHTS as CHECKPOINT_WEIGHTS
from ..polycolor_core.model.modelinfo import find_kind
from .spec import Input, NodeSpec, Output

MODEL_FOLDER = "polycolor"  # ComfyUI model folder name: models/polycolor/
MODEL_EXTENSIONS = {".json", ".safetensors", ".onnx"}
ENV_MODELS_DIR = "POLYCOLOR_MODELS_DIR"
CACHE_SIZE = 4  # models kept loaded at once (least recently used is dropped first)

ONNXRUNTIME_HINT = (
    "the ONNX backend needs ONNX Runtime, which polycolor's requirements.txt deliberately does not install "
    "(it would clash with an existing onnxruntime-gpu). Install exactly one of: `pip install onnxruntime` "
    "(CPU) or `pip install onnxruntime-gpu` (CUDA) into ComfyUI's Python, then restart ComfyUI; "
    "or choose backend 'torch' with a checkpoint folder"
)


class PolycolorModelError(ValueError):
    """A model name that does not resolve, or a folder that cannot be loaded with the chosen backend."""


# --------------------------------------------------------------------------------------- ComfyUI folders


def _folder_paths():
    """ComfyUI's ``folder_paths`` module when running inside ComfyUI, else None."""
    try:
        import folder_paths  # ComfyUI's top-level module; absent in plain Python
    except ImportError:
        return None
    return folder_paths if hasattr(folder_paths, "folder_names_and_paths") else None


def register_model_folder() -> bool:
    """Make ``models/polycolor`` a ComfyUI model folder without dropping paths added before us.

    Idempotent. Returns False outside ComfyUI.
    """
    fp = _folder_paths()
    if fp is None:
        return False
    default = os.path.join(fp.models_dir, MODEL_FOLDER)
    existing = fp.folder_names_and_paths.get(MODEL_FOLDER)
    if existing is None:
        fp.folder_names_and_paths[MODEL_FOLDER] = ([default], set(MODEL_EXTENSIONS))
        return True
    paths, exts = existing
    paths = list(paths)
    if default not in paths:
        paths.append(default)
    fp.folder_names_and_paths[MODEL_FOLDER] = (paths, set(exts) | MODEL_EXTENSIONS)
    return True


def _env_roots() -> list[Path]:
    raw = os.environ.get(ENV_MODELS_DIR, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def _skipped(rel: str) -> bool:
    parts = rel.replace("\\", "/").split("/")
    return any(p.endswith((".tmp", ".old")) or p.startswith(".") for p in parts[:-1])


def _model_kind(file: Path) -> str | None:
    """"checkpoint", "export" or None for a listed ``config.json`` / ``manifest.json`` (``modelinfo.find_kind``)."""
    if file.name not in (CHECKPOINT_CONFIG, ONNX_MANIFEST) or not file.is_file():
        return None
    return find_kind(file)


def _scan(root: Path) -> list[str]:
    out = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not d.endswith((".tmp", ".old")))
        for name in filenames:
            if name in (CHECKPOINT_CONFIG, ONNX_MANIFEST):
                f = Path(dirpath) / name
                if _model_kind(f):
                    out.append(f.relative_to(root).as_posix())
    return out


def list_models() -> list[str]:
    """Names for the loader's dropdown (relative paths; see the module docstring)."""
    fp = _folder_paths()
    names: set[str] = set()
    if fp is not None:
        register_model_folder()
        for rel in fp.get_filename_list(MODEL_FOLDER):
            base = os.path.basename(rel)
            if base not in (CHECKPOINT_CONFIG, ONNX_MANIFEST) or _skipped(rel):
                continue
            full = fp.get_full_path(MODEL_FOLDER, rel)
            if full and _model_kind(Path(full)):
                names.add(rel)
    else:
        for root in _env_roots():
            names.update(_scan(root))
    return sorted(names)


def resolve_model_file(name: str) -> Path:
    """The ``config.json`` / ``manifest.json`` a dropdown name (or an absolute path) refers to."""
    if not isinstance(name, str) or not name.strip():
        raise PolycolorModelError("no model selected: put a checkpoint or ONNX export into models/polycolor/ "
                                  "and pick it in Polycolor Model Loader")
    name = name.strip()
    candidates: list[Path] = []
    p = Path(name).expanduser()
    if p.is_absolute():
        candidates.append(p)
    else:
        fp = _folder_paths()
        if fp is not None:
            register_model_folder()
            full = fp.get_full_path(MODEL_FOLDER, name)
            if full:
                candidates.append(Path(full))
            roots = [Path(r) for r in fp.get_folder_paths(MODEL_FOLDER)]
        else:
            roots = _env_roots()
        candidates.extend(r / name for r in roots)
    for c in candidates:
        if c.is_dir():  # a folder: checkpoint, run folder, or export
            for inner in (c / ONNX_MANIFEST, c / CHECKPOINT_CONFIG, c / "checkpoint" / CHECKPOINT_CONFIG):
                if _model_kind(inner):
                    return inner
        elif c.is_file():
            if c.name == CHECKPOINT_WEIGHTS and (c.parent / CHECKPOINT_CONFIG).is_file():
                return c.parent / CHECKPOINT_CONFIG
            if _model_kind(c):
                return c
            raise PolycolorModelError(
                f"{c} is not a polycolor model: pick a checkpoint's {CHECKPOINT_CONFIG} (next to "
                f"{CHECKPOINT_WEIGHTS}) or an ONNX export's {ONNX_MANIFEST}")
    available = ", ".join(list_models()) or (
        "(none: copy a checkpoint folder with config.json + model.safetensors, or an ONNX export folder with "
        "manifest.json)")
    raise PolycolorModelError(f"polycolor model {name!r} not found. Available in models/{MODEL_FOLDER}/: {available}")


def _stamp(file: Path) -> tuple:
    """Changes when the model on disk changes (retrained / re-exported)."""
    out = []
    for f in sorted(file.parent.iterdir()):
        if f.is_file():
            st = f.stat()
            out.append((f.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


# --------------------------------------------------------------------------------------- devices / loading


def resolve_device(device: str) -> str:
    """``auto`` -> ComfyUI's torch device when running inside ComfyUI, else ``devices.resolve_device``."""
    device = (device or "auto").strip().lower()
    if device not in DEVICES:
        raise PolycolorModelError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        try:
            import comfy.model_management as mm

            return str(mm.get_torch_device())
        except Exception:  # not inside ComfyUI (ImportError), or ComfyUI could not pick a device
            pass
    from ..polycolor_core.runtime.devices import resolve_device as core_resolve

    try:
        return core_resolve(device, "torch")
    except ValueError as exc:
        raise PolycolorModelError(str(exc)) from exc


def _build(folder: Path, kind: str, backend: str, device: str, precision: str = "auto"):
    onnx = backend == "onnx" or (kind == "export" and backend == "auto")
    if onnx and importlib.util.find_spec("onnxruntime") is None:
        extra = (" (backend 'torch' also works on an ONNX export while the checkpoint it was exported from "
                 "still exists)") if kind == "export" else ""
        raise PolycolorModelError(f"cannot load {folder} with backend {backend!r}: {ONNXRUNTIME_HINT}{extra}")
    from ..export.colorizer import Colorizer

    # ONNX Runtime knows "cpu"/"cuda"; torch takes any device string ComfyUI gives ("cuda:1", "mps", ...)
    dev = ("cuda" if device.startswith("cuda") else "cpu") if onnx else device
    return Colorizer.from_pretrained(str(folder), backend=backend, device=dev, precision=precision)


_CACHE: "OrderedDict[tuple, tuple[tuple, object]]" = OrderedDict()
_LOCK = threading.Lock()


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def forget_listing() -> None:
    """Drop ComfyUI's cached file list of ``models/polycolor`` (a model was just written there), so the next
    ``/object_info`` (the frontend's refresh) lists it."""
    fp = _folder_paths()
    cache = getattr(fp, "filename_list_cache", None) if fp is not None else None
    if isinstance(cache, dict):
        cache.pop(MODEL_FOLDER, None)


def load_model(name: str, backend: str = "auto", device: str = "auto", precision: str = "auto"):
    """A ``Colorizer`` for a dropdown name / path; cached per (folder, backend, device, precision)."""
    try:
        backend = check_backend(backend)
    except ValueError as exc:
        raise PolycolorModelError(str(exc)) from exc
    file = resolve_model_file(name)
    kind = _model_kind(file)
    assert kind is not None
    folder = file.parent.resolve()
    dev = resolve_device(device)
    key = (str(folder), backend, dev, precision)
    stamp = _stamp(file)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stamp:
            _CACHE.move_to_end(key)
            return hit[1]
        colorizer = _build(folder, kind, backend, dev, precision)
        _CACHE[key] = (stamp, colorizer)
        _CACHE.move_to_end(key)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    log.info("polycolor: loaded %s (%s, backend %s, device %s)", folder, kind, backend, dev)
    return colorizer


# --------------------------------------------------------------------------------------- the node


def load(model_name: str, backend: str = "auto", device: str = "auto"):
    """The node: a dropdown name -> ``(POLYCOLOR_MODEL,)`` (a cached ``Colorizer``)."""
    return (load_model(model_name, backend, device),)


def fingerprint(model_name: str, backend: str = "auto", device: str = "auto"):
    """Changes when the model's files change on disk, so ComfyUI reloads a retrained model (V1 ``IS_CHANGED``)."""
    try:
        return repr(_stamp(resolve_model_file(model_name))) + f"|{backend}|{device}"
    except (OSError, ValueError):
        return float("nan")  # never equal: ComfyUI re-runs the node and it reports the error


SPEC = NodeSpec(
    node_id="PolycolorModelLoader",
    display_name="Polycolor Model Loader",
    description=(
        "Loads a polycolor model from ComfyUI's models/polycolor/ folder: a checkpoint folder (config.json + "
        "model.safetensors, listed by its config.json; Polycolor Train writes one) or an ONNX export (listed by "
        "its manifest.json). The model is loaded once and reused by later runs."
    ),
    inputs=(
        Input("model_name", "COMBO", "The model under models/polycolor/: <folder>/config.json is a PyTorch "
                                     "checkpoint (config.json + model.safetensors), <folder>/manifest.json an ONNX "
                                     "export. A model Polycolor Train finished appears here by itself.",
              options=list_models),
        Input("backend", "COMBO", "auto: ONNX Runtime for an ONNX export when onnxruntime is installed, PyTorch "
                                  "otherwise. onnx / torch force one (onnx needs `pip install onnxruntime` or "
                                  "onnxruntime-gpu).", default="auto", options=BACKENDS),
        Input("device", "COMBO", "auto uses ComfyUI's device (the GPU unless ComfyUI runs with --cpu); cpu / cuda "
                                 "force one.", default="auto", options=DEVICES),
    ),
    outputs=(Output("POLYCOLOR_MODEL", "model", "The loaded polycolor model; connect it to Polygon Colorize."),),
    run=load,
    fingerprint=fingerprint,
)
