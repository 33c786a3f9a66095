"""``Polycolor Train``: train a polycolor model from inside ComfyUI, into ``models/polycolor/<name>/``.

The node adapts and calls the core trainer (``polycolor_core.training.train.train``) and nothing else:

* settings: the ``cpu`` profile's settings for the chosen variant (for m8, the everyday model: every data
  family, the wide palette canonical+xkcd+hex, text+rgb+film conditioning, 32 -> 64 px, batch 4), with the
  number of steps from the widget (750 = the profile's m8 schedule). ``steps`` is laid out as whole epochs of
  equal length (the profile's epoch count at most), so a run checkpoints once per epoch;
* where: ``<first polycolor model folder>/<name>/`` (a run folder: ``checkpoint/``, ``metrics.jsonl``,
  ``samples/``), which the loader lists as ``<name>/checkpoint/config.json``;
* ComfyUI's progress bar moves every step, and its cancel button stops the run at the next step
  (``comfy.model_management.throw_exception_if_processing_interrupted``);
* queued again with the same name it continues where it stopped (the core's ``resume``: from the last saved
  epoch, with the run's own saved settings); a finished run is only loaded;
* afterwards the model folder listing is refreshed (ComfyUI's file-list cache is dropped and the page is told
  to re-read its dropdowns: ``web/polycolor.js``), and the output is the trained model as a
  ``POLYCOLOR_MODEL`` (the loader's cached ``Colorizer``), ready for Polygon Colorize.

``train_node`` is the node's one implementation, ``SPEC`` its interface (``spec.NodeSpec``).
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

from .loader import ENV_MODELS_DIR, MODEL_FOLDER, PolycolorModelError, _env_roots, _folder_paths, forget_listing
from .loader import load_model, register_model_folder, resolve_device
from .spec import Input, NodeSpec, Output

log = logging.getLogger("polycolor")

PROFILE = "cpu"
DEFAULT_NAME = "m8-everyday"
DEFAULT_STEPS = 750  # the cpu profile's m8: 15 epochs of 50 steps (tests/test_comfyui_train.py pins it)
VARIANT_NAMES = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
MODELS_CHANGED_EVENT = "polycolor.models_changed"  # web/polycolor.js refreshes the dropdowns on it
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def models_root() -> Path:
    """Where new runs go: ComfyUI's first ``polycolor`` model folder, else the first ``$POLYCOLOR_MODELS_DIR``."""
    fp = _folder_paths()
    if fp is not None:
        register_model_folder()
        return Path(fp.get_folder_paths(MODEL_FOLDER)[0])
    roots = _env_roots()
    if not roots:
        raise PolycolorModelError(f"no model folder to train into: run inside ComfyUI (models/{MODEL_FOLDER}/) "
                                  f"or set {ENV_MODELS_DIR}")
    return roots[0]


def run_folder(name: str) -> Path:
    name = (name or "").strip()
    if not _NAME.match(name) or name.endswith((".tmp", ".old")):
        raise PolycolorModelError(
            f"model name {name!r} is not a plain folder name: use letters, digits, '.', '_' or '-' (up to 64), e.g. "
            f"{DEFAULT_NAME}")
    return models_root() / name


def train_config(variant: str, steps: int, out: Path, device: str):
    """The cpu profile's settings for ``variant`` with ``steps`` laid out as equal epochs."""
    from ..polycolor_core.training.trainconfig import config_from_profile

    if variant not in VARIANT_NAMES:
        raise PolycolorModelError(f"variant must be one of {', '.join(VARIANT_NAMES)}, got {variant!r}")
    steps = int(steps)
    if steps < 1:
        raise PolycolorModelError(f"steps must be at least 1, got {steps}")
    base = config_from_profile(variant, PROFILE)
    epochs = max(1, min(base.resolved_epochs(), steps))
    per_epoch = math.ceil(steps / epochs)
    return config_from_profile(variant, PROFILE, out=str(out), device=device, epochs=epochs,
                               samples_per_epoch=per_epoch * base.batch_size)


def _comfy_hooks():
    """(ProgressBar class, interrupt check) inside ComfyUI, else (None, None)."""
    try:
        import comfy.model_management as mm
        import comfy.utils
    except ImportError:
        return None, None
    return comfy.utils.ProgressBar, mm.throw_exception_if_processing_interrupted


def _announce(name: str) -> None:
    """Tell the open ComfyUI pages that models/polycolor changed (they re-read the loader's dropdown)."""
    try:
        from server import PromptServer
    except ImportError:
        return
    server = getattr(PromptServer, "instance", None)
    if server is not None:
        server.send_sync(MODELS_CHANGED_EVENT, {"name": name})


def train_node(name: str = DEFAULT_NAME, variant: str = "m8", steps: int = DEFAULT_STEPS, device: str = "auto"):
    """The node: train (or continue, or just load) ``models/polycolor/<name>/`` -> ``(POLYCOLOR_MODEL,)``."""
    from ..polycolor_core.training.train import is_finished, train

    out = run_folder(name)
    dev = resolve_device(device)
    cfg = train_config(variant, steps, out, dev)
    ckpt = out / "checkpoint"
    if not is_finished(out):
        bar_cls, check_interrupt = _comfy_hooks()
        state = {"bar": None}

        def on_step(step: int, loss: float, parts: dict) -> None:
            if bar_cls is not None:
                if state["bar"] is None:
                    state["bar"] = bar_cls(total)
                state["bar"].update_absolute(step, total)
            if check_interrupt is not None:
                check_interrupt()  # the cancel button: raises; the last saved epoch is kept for the next run

        total = cfg.resolved_epochs() * (cfg.samples_per_epoch // cfg.batch_size)
        resumed = (ckpt / "config.json").is_file()
        log.info("polycolor: %s %s into %s (%d steps, %s)", "continuing" if resumed else "training", variant, out,
                 total, dev)
        import torch

        # ComfyUI runs every node under torch.inference_mode(); training needs autograd back (as its own
        # training nodes do, comfy_extras/nodes_train.py)
        with torch.inference_mode(False), torch.enable_grad():
            result = train(cfg, resume=True, progress=False, on_step=on_step)
        log.info("polycolor: %s stopped at step %d (finished: %s)", out, result.step, result.finished)
        forget_listing()
        _announce(f"{out.name}/checkpoint/config.json")
    return (load_model(str(ckpt / "config.json"), "auto", device),)


def fingerprint(name: str = DEFAULT_NAME, variant: str = "m8", steps: int = DEFAULT_STEPS, device: str = "auto"):
    """Re-run when the run folder's checkpoint changed (or is gone); the inputs are part of ComfyUI's key anyway."""
    try:
        cfg = run_folder(name) / "checkpoint" / "config.json"
        st = cfg.stat()
        return f"{cfg}|{st.st_mtime_ns}|{st.st_size}"
    except (OSError, ValueError):
        return f"{name}|none|{os.getpid()}"


SPEC = NodeSpec(
    node_id="PolycolorTrain",
    display_name="Polycolor Train",
    description=(
        "Trains a polycolor model on built-in generated data (no downloads of data; offline apart from the LPIPS "
        "weights' first fetch) into models/polycolor/<name>/, with the cpu profile's settings: m8, the everyday "
        "model, takes 7-10 minutes on one CPU core (408 s on a Xeon with AVX-512) and fills outlines in any colour name or #rrggbb (held-out "
        "colours within about 2-3 CIEDE2000). Cancel stops it; queue it again to continue where it stopped. The "
        "trained model appears in Polycolor Model Loader and comes out here for Polygon Colorize."
    ),
    inputs=(
        Input("name", "STRING", "The run folder under models/polycolor/ (letters, digits, . _ -). The same name "
                                "continues that run; a finished run is just loaded. Pick a new name to train anew.",
              default=DEFAULT_NAME),
        Input("variant", "COMBO", "m8 (default): the everyday model, trained on every drawing family and on "
                                  "canonical, XKCD and hex colours. m1-m7: the study's ablation variants (8 colour "
                                  "names, canonical drawings).", default="m8", options=VARIANT_NAMES),
        Input("steps", "INT", "Training steps of 4 images (750 = the cpu profile's m8: 7-10 min on one CPU core), "
                              "laid out in equal epochs (at most the variant's own count); a checkpoint is saved "
                              "after each epoch, which is where a cancelled run continues from.",
              default=DEFAULT_STEPS, min=1, max=1_000_000),
        Input("device", "COMBO", "auto uses ComfyUI's device (the GPU unless ComfyUI runs with --cpu); cpu / cuda "
                                 "force one.", default="auto", options=("auto", "cpu", "cuda")),
    ),
    outputs=(Output("POLYCOLOR_MODEL", "model", "The trained model; connect it to Polygon Colorize."),),
    run=train_node,
    fingerprint=fingerprint,
)
