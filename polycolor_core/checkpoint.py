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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .model import PolyColorNet, create_model, unet_config
from .text import TextEncoderSpec
from .variants import Variant

FORMAT = "polycolor-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not match the model it describes."""


def package_version() -> str:
    from .. import __version__

    return __version__


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
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "variant": model.variant.to_dict(),
        "unet_config": unet_config(model.variant, model.cross_attention_dim),
        "text_encoder": vars(text_encoder) if not isinstance(text_encoder, dict) else text_encoder,
        "image_size": int(image_size),
        **extra,
    }


def _atomic_dir_write(dest: Path, write) -> None:
    """Write a folder via ``write(tmp_dir)`` then swap it into ``dest`` (never a half-written ``dest``)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


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
        save_file(weights, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if optimizer is not None:
            tensors, js = _flatten_optimizer(optimizer.state_dict())
            js["scheduler"] = scheduler.state_dict() if scheduler is not None else None
            js["extra"] = extra_state or {}
            save_file(tensors, str(tmp / STATE_TENSORS))
            (tmp / STATE_JSON).write_text(json.dumps(js, indent=2))

    _atomic_dir_write(Path(dest), write)
    return Path(dest)


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept a checkpoint folder, a run folder (uses ``run/checkpoint``) or the weights file itself."""
    p = Path(path).expanduser()
    if p.is_file() and p.name in (WEIGHTS, CONFIG):
        p = p.parent
    if (p / "checkpoint" / CONFIG).exists():
        p = p / "checkpoint"
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p} does not exist (pass a run folder or a checkpoint folder)")
    if not (p / CONFIG).exists():
        old = p.with_name(p.name + ".old")
        if (old / CONFIG).exists():  # killed between the two renames of an atomic save
            return old
        raise CheckpointError(
            f"{p} is not a polycolor checkpoint: it has no {CONFIG} (expected {WEIGHTS} + {CONFIG}; "
            "train one with `polycolor train m1 --out runs/m1`)"
        )
    return p


def read_meta(path: str | Path) -> dict:
    d = resolve_checkpoint_dir(path)
    try:
        meta = json.loads((d / CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{d / CONFIG} is corrupt (not valid JSON: {exc}); retrain or restore it") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{d / CONFIG} is not a polycolor checkpoint config (format={meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{d} was written by a newer polycolor ({meta.get('package_version')}); upgrade polycolor to read it"
        )
    for key in ("variant", "text_encoder", "image_size"):
        if key not in meta:
            raise CheckpointError(f"{d / CONFIG} lacks the key {key!r}; the checkpoint is incomplete")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from ``config.json`` and load its weights, checking names and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = resolve_checkpoint_dir(path)
    meta = read_meta(d)
    variant = Variant.from_dict(meta["variant"])
    model = create_model(variant, int(meta["text_encoder"]["dim"]))
    wfile = d / WEIGHTS
    if not wfile.exists():
        raise CheckpointError(f"{d} has {CONFIG} but no {WEIGHTS}; the checkpoint is incomplete")
    try:
        weights = load_file(str(wfile), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{wfile} is corrupt or not a safetensors file ({exc}); retrain or restore it") from exc
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

    d = resolve_checkpoint_dir(path)
    if not (d / STATE_JSON).exists():
        return None
    js = json.loads((d / STATE_JSON).read_text())
    tensors = load_file(str(d / STATE_TENSORS))
    return {"optimizer": _unflatten_optimizer(tensors, js), "scheduler": js.get("scheduler"), "extra": js.get("extra", {})}
