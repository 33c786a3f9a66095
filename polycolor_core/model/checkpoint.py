"""Self-describing checkpoints: safetensors weights with a JSON config beside them.

A checkpoint folder holds
  model.safetensors        UNet weights (no pickle anywhere)
  config.json              variant, full UNet config, text encoder, image size, step, loss weights, whether
                           LPIPS was dropped, the training config, package version
  training_state.*         (optional) optimizer/scheduler state for ``--resume``: tensors in safetensors,
                           the rest in JSON
The model is always rebuilt from ``config.json`` through ``create_model``, never from CLI defaults.
Folders are written next to the destination and swapped in, so a killed run never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from .conditioning import load_token_weights, model_conditioning, token_weights
from .factory import PolyColorNet, create_model, unet_config
from .modelinfo import CHECKPOINT_FORMAT as FORMAT
from .modelinfo import CHECKPOINT_FORMAT_VERSION as FORMAT_VERSION
from .modelinfo import CONFIG, WEIGHTS, CheckpointError, ModelInfo, locate, shared_fields
from .text import TextEncoderSpec
from .variants import Variant

__all__ = ["CheckpointError", "LoadedCheckpoint", "atomic_dir_write", "build_meta", "load_checkpoint",
           "load_training_state", "package_version", "recover_dir_swap", "restore_training_state", "save_checkpoint", "checkpoint_dir"]

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


def package_version() -> str:
    return __version__


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder ``path`` names (via ``ModelInfo``'s locator); an export folder is an error."""
    kind, folder = locate(path)
    if kind != "checkpoint":
        raise CheckpointError(f"{folder} is an ONNX export, not a PyTorch checkpoint; pass the checkpoint folder "
                              "it was exported from (its manifest.json names it under source.path)")
    return folder


@dataclass
class LoadedCheckpoint:
    model: PolyColorNet
    meta: dict
    path: Path

    @property
    def variant(self) -> Variant:
        return self.model.variant

    @property
    def text_encoder(self) -> TextEncoderSpec:
        return TextEncoderSpec(**self.meta["text_encoder"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])


def build_meta(model: PolyColorNet, text_encoder: TextEncoderSpec, image_size: int, **extra) -> dict:
    """A checkpoint's config.json: the shared schema (``modelinfo.SHARED_KEYS``) + checkpoint-only keys.

    ``extra`` may set any shared key (step, finished, precision, train_config, ...) and add others (metrics,
    epoch, ...). ``palette`` defaults to the colours of ``train_config["data"]``.
    """
    from ..data.datasets import spec_colours

    shared_args = {k: extra.pop(k) for k in ("step", "total_steps", "finished", "precision", "palette",
                                             "train_config", "loss_weights", "lpips_dropped", "lpips_note",
                                             "lpips_source")
                   if k in extra}
    tc = shared_args.get("train_config") or {}
    shared_args.setdefault("palette", spec_colours(tc.get("data", "")) if tc.get("data") else None)
    if "precision" not in shared_args:
        shared_args["precision"] = "bf16" if tc.get("bf16") or tc.get("precision") == "bf16" else "fp32"
    shared = shared_fields(model.variant, text_encoder, image_size, package_version=package_version(),
                           **shared_args)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **shared,
        "variant": model.variant.to_dict(),
        "unet_config": unet_config(model.variant, model.cross_attention_dim, model_conditioning(model)),
        **extra,
    }


def atomic_dir_write(dest: Path, write) -> Path:
    """Write a folder via ``write(tmp_dir)`` then swap it into ``dest`` (never a half-written ``dest``).

    The one atomic folder swap: checkpoints and ONNX exports both go through it. A failing ``write`` leaves
    ``dest`` untouched and removes the temporary folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_dir_swap(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        _test_pause("write")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        _test_pause("swap")  # the one moment with no `dest`: recover_dir_swap puts `old` back if killed here
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def recover_dir_swap(dest: str | Path) -> bool:
    """Undo a swap that ``atomic_dir_write`` was killed in the middle of: between its two renames ``dest`` is gone
    and the previous folder waits at ``dest.old``; put it back (True). Writers call this before reading or
    writing ``dest`` (``atomic_dir_write`` itself, ``train --resume``)."""
    dest = Path(dest)
    old = dest.with_name(dest.name + ".old")
    if dest.exists() or not old.is_dir():
        return False
    os.replace(old, dest)
    return True


def _test_pause(point: str) -> None:
    """Test-only hook: ``POLYCOLOR_TEST_CHECKPOINT_PAUSE=write:SECONDS`` (after the temporary folder is written) or
    ``swap:SECONDS`` (between the two renames) sleeps there, so tests/test_crash.py can SIGKILL a run inside a
    checkpoint write deterministically. Unset (always, outside that test) it costs one environment lookup."""
    spec = os.environ.get("POLYCOLOR_TEST_CHECKPOINT_PAUSE", "")
    if spec.partition(":")[0] == point:
        import time

        time.sleep(float(spec.partition(":")[2] or 1.0))


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"opt.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], js: dict) -> dict:
    state: dict[int, dict] = {}
    for name, t in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = t
    for name, v in js.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    return {"state": state, "param_groups": js["param_groups"]}


def save_checkpoint(
    dest: str | Path,
    model: PolyColorNet,
    meta: dict,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    extra_state: dict | None = None,
) -> Path:
    """Write ``dest/`` atomically: weights, config, and (if given) resumable optimizer/scheduler state."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.unet.state_dict().items()}
        weights.update(token_weights(model))  # text+rgb models: the colour token's colour_token.* tensors
        save_file(weights, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if optimizer is not None:
            tensors, js = _flatten_optimizer(optimizer.state_dict())
            js["scheduler"] = scheduler.state_dict() if scheduler is not None else None
            js["extra"] = extra_state or {}
            save_file(tensors, str(tmp / STATE_TENSORS))
            (tmp / STATE_JSON).write_text(json.dumps(js, indent=2))

    atomic_dir_write(Path(dest), write)
    return Path(dest)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from ``config.json`` and load its weights, checking names and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = checkpoint_dir(path)
    info = ModelInfo.read(d)
    meta = info.meta
    try:
        variant = Variant.from_dict(meta["variant"])
        model = create_model(variant, int(meta["text_encoder"]["dim"]), conditioning=info.conditioning)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"{d / CONFIG} does not describe a model polycolor can build ({type(exc).__name__}: "
                              f"{exc}); its variant or text_encoder was edited or corrupted: retrain, or restore "
                              "the config.json saved with these weights") from exc
    wfile = d / WEIGHTS
    if not wfile.exists():
        raise CheckpointError(f"{d} has {CONFIG} but no {WEIGHTS}; the checkpoint is incomplete")
    try:
        weights = load_file(str(wfile), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{wfile} is corrupt or not a safetensors file ({exc}); retrain or restore it") from exc
    weights = load_token_weights(model, weights)  # colour_token.* -> the model's ColourToken (text+rgb)
    expected = model.unet.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
            if keys
        )
        raise CheckpointError(
            f"{wfile} does not match the model described by {d / CONFIG} (variant {variant.name}): {detail}. "
            "The weights and config come from different models; use the config.json saved with these weights."
        )
    model.unet.load_state_dict(weights)
    return LoadedCheckpoint(model.to(device).eval(), meta, d)


def load_training_state(path: str | Path) -> dict | None:
    """Optimizer/scheduler state saved beside a checkpoint, or None if it has none."""
    from safetensors.torch import load_file

    from safetensors import SafetensorError

    d = checkpoint_dir(path)
    if not (d / STATE_JSON).exists():
        return None
    fix = ("so --resume cannot continue this run exactly: restore the checkpoint folder from a copy, or delete "
           f"{STATE_JSON} and {STATE_TENSORS} to resume with a fresh optimiser (not bit-exact)")
    try:
        js = json.loads((d / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(str(d / STATE_TENSORS))
    except (ValueError, OSError, SafetensorError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{d / STATE_JSON} or {STATE_TENSORS} is unreadable ({type(exc).__name__}: {exc}), "
                              + fix) from exc
    try:
        if not isinstance(js, dict) or not isinstance(js.get("param_groups"), list) \
                or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in js["param_groups"]) \
                or not isinstance(js.get("scalars", {}), dict) or not isinstance(js.get("scheduler"), (dict, type(None))) \
                or not isinstance(js.get("extra", {}), dict):
            raise ValueError("expected {param_groups: [{params: [...], ...}], scalars: {}, scheduler: {...}, extra: {}}")
        optimizer = _unflatten_optimizer(tensors, js)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{d / STATE_JSON} is corrupt ({type(exc).__name__}: {exc}), " + fix) from exc
    return {"optimizer": optimizer, "scheduler": js.get("scheduler"), "extra": js.get("extra", {})}


def restore_training_state(path: str | Path, optimizer: torch.optim.Optimizer, scheduler=None) -> dict | None:
    """Load the optimizer/scheduler state saved beside a checkpoint into ``optimizer``/``scheduler`` (``--resume``);
    returns the state (None when the checkpoint has none). A state that does not fit them is a ``CheckpointError``."""
    state = load_training_state(path)
    if state is None:
        return None
    try:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        d = checkpoint_dir(path)
        raise CheckpointError(f"{d / STATE_JSON} does not fit this model's optimiser ({type(exc).__name__}: {exc}); "
                              "restore the checkpoint folder from a copy, or delete its training_state.* files to "
                              "resume with a fresh optimiser (not bit-exact)") from exc
    return state
