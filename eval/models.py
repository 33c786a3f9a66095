"""Which models the leaderboard scores: finding them (selection -> folders), loading and describing them.

**Where models are found.** A variant name ``m3`` means the run folder ``<runs>/m3``, i.e. the checkpoint
``<runs>/m3/checkpoint/`` that ``polycolor train m3 --out runs/m3`` writes (an ONNX export folder with
``manifest.json`` at ``<runs>/m3`` also counts). ``<runs>`` is, in order: the ``runs_dir`` argument
(``--runs``), the environment variable ``POLYCOLOR_RUNS``, or ``runs/`` in the current directory. Any other
token of the selection is a path to a run folder, checkpoint folder or ONNX export. A missing model is not an
exception: :func:`resolve_models` returns it as a :class:`ModelRef` with ``kind="missing"`` and the command
that trains it.

:func:`load_colorizer` loads a found model for inference; :func:`model_meta`, :func:`param_count`,
:func:`encoder_label`, :func:`lpips_training` and :func:`finished` describe it for its table row.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .selection import parse_models

__all__ = [
    "RUNS_ENV", "DEFAULT_RUNS_DIR", "ModelRef", "resolve_runs_dir", "train_command", "resolve_models",
    "load_colorizer", "model_meta", "param_count", "encoder_label", "lpips_training", "finished",
]

RUNS_ENV = "POLYCOLOR_RUNS"
DEFAULT_RUNS_DIR = "runs"


def resolve_runs_dir(runs_dir: str | Path | None = None) -> Path:
    """``runs_dir`` if given, else ``$POLYCOLOR_RUNS``, else ``runs`` (relative to the current directory)."""
    if runs_dir is not None and str(runs_dir) != "":
        return Path(runs_dir).expanduser()
    env = os.environ.get(RUNS_ENV, "").strip()
    return Path(env).expanduser() if env else Path(DEFAULT_RUNS_DIR)


def train_command(name: str, runs_dir: str | Path | None = None, profile: str = "cpu") -> str:
    """The exact command that trains variant ``name`` where the leaderboard looks for it."""
    out = resolve_runs_dir(runs_dir) / name
    return f"polycolor train {name} --profile {profile} --out {shlex.quote(out.as_posix())}"


@dataclass
class ModelRef:
    """One requested model: where it is (``source``), or why it is not there."""

    name: str  # the label in the table: the variant name, or the folder's name for a path
    requested: str  # the token as requested ("m3" or "runs/m4-long")
    source: Path | None  # the folder handed to the Colorizer (None when missing)
    kind: str  # "checkpoint" | "onnx" | "missing"
    message: str = ""
    train_command: str | None = None

    @property
    def found(self) -> bool:
        return self.source is not None


def _model_kind(folder: Path) -> str | None:
    if (folder / "manifest.json").is_file():
        return "onnx"
    if (folder / "checkpoint" / "config.json").is_file() or (folder / "config.json").is_file():
        return "checkpoint"
    return None


def _label_for_path(p: Path) -> str:
    p = Path(p)
    if p.is_file():  # config.json / model.safetensors / manifest.json
        p = p.parent
    return p.parent.name if p.name == "checkpoint" and p.parent.name else (p.name or str(p))


def resolve_models(models: str | Iterable[str | Path], runs_dir: str | Path | None = None) -> list[ModelRef]:
    """Turn a selection (``"m1..m8"``, ``"m2,m4"``, paths, or a parsed list) into :class:`ModelRef` s.

    Raises ``ValueError`` (from :func:`polycolor.eval.selection.parse_models`) for an invalid selection.
    """
    items = parse_models(models) if isinstance(models, str) else [
        x for m in models for x in (parse_models(m) if isinstance(m, str) else [Path(m)])
    ]
    runs = resolve_runs_dir(runs_dir)
    refs: list[ModelRef] = []
    for it in items:
        if isinstance(it, Path):
            p = it
            label = _label_for_path(p)
            if not p.exists():
                refs.append(ModelRef(label, str(it), None, "missing", f"{p} does not exist (expected a run folder, "
                                     "a checkpoint folder or an ONNX export folder)"))
                continue
            folder = p.parent if p.is_file() else p
            kind = _model_kind(folder)
            if kind is None:
                refs.append(ModelRef(label, str(it), None, "missing",
                                     f"{p} holds no model: expected checkpoint/config.json (run folder), "
                                     "config.json + model.safetensors (checkpoint) or manifest.json (ONNX export)"))
                continue
            refs.append(ModelRef(label, str(it), folder, kind))
            continue
        run = runs / it
        kind = _model_kind(run) if run.is_dir() else None
        if kind is not None:
            refs.append(ModelRef(it, it, run, kind))
            continue
        cmd = train_command(it, runs)
        where = run / "checkpoint"
        if not runs.is_dir():
            why = f"the runs folder {runs} does not exist (set --runs DIR or ${RUNS_ENV})"
        elif run.is_dir():
            why = f"{run} exists but holds no checkpoint ({where}/config.json is missing; training may not have " \
                  f"saved its first epoch yet)"
        else:
            why = f"no checkpoint at {where}"
        refs.append(ModelRef(it, it, None, "missing", f"{it}: {why}. Train it with: {cmd}", cmd))
    # Labels must be unique in a table: a path whose folder name collides is labelled by the path as given.
    counts: dict[str, int] = {}
    for r in refs:
        counts[r.name] = counts.get(r.name, 0) + 1
    for r in refs:
        if counts[r.name] > 1 and r.requested != r.name:
            r.name = r.requested
    return refs



def _export_colorizer_cls():
    """``polycolor.export.colorizer.Colorizer`` or None when this build has no export module."""
    try:
        from ..export.colorizer import Colorizer
    except ModuleNotFoundError as exc:
        if (exc.name or "").endswith("export.colorizer") or (exc.name or "").endswith("export"):
            return None
        raise
    return Colorizer if hasattr(Colorizer, "from_pretrained") else None


def load_colorizer(source: str | Path, backend: str = "auto", device: str = "cpu", batch_size: int = 16,
                   bf16: bool | None = None, text_encoders: dict | None = None, threads: int | None = None):
    """(Colorizer, note). ``export.colorizer.Colorizer.from_pretrained`` when it exists, else the core's
    PyTorch ``Colorizer.from_checkpoint`` (then ``text_encoders``, a dict, shares encoders between models)."""
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    note = None
    try:
        exported = _export_colorizer_cls()
    except ImportError as exc:  # the export module exists but cannot import (e.g. onnxruntime broken)
        if backend == "onnx":
            raise RuntimeError(f"backend 'onnx' needs polycolor.export, which failed to import: {exc}") from exc
        exported, note = None, f"polycolor.export unavailable ({exc}); used the PyTorch Colorizer"
    if exported is not None:
        kw = {"threads": threads} if threads else {}
        return exported.from_pretrained(str(source), backend=backend, device=device, batch_size=batch_size,
                                        bf16=bf16, **kw), note
    if backend == "onnx" or (Path(source) / "manifest.json").is_file():
        raise RuntimeError(f"cannot load {source} with backend {backend!r}: this polycolor build has no ONNX "
                           "support (polycolor/export/colorizer.py is missing); use a checkpoint and --backend torch")
    from ..polycolor_core.checkpoint import read_meta
    from ..polycolor_core.inference import Colorizer
    from ..polycolor_core.text import CachedTextEncoder, TextEncoderSpec, encoder_from_spec

    enc = None
    if text_encoders is not None:
        spec = TextEncoderSpec(**read_meta(source)["text_encoder"])
        key = (spec.name, spec.source, spec.dim, spec.seq_len)
        if key not in text_encoders:
            text_encoders[key] = CachedTextEncoder(encoder_from_spec(spec))
        enc = text_encoders[key]
    return Colorizer.from_checkpoint(source, device=device, bf16=bf16, batch_size=batch_size,
                                     text_encoder=enc), note


def model_meta(colorizer, source: Path) -> dict:
    """The checkpoint meta of a loaded model, normalised: ``variant`` (dict), ``text_encoder`` (dict),
    ``image_size``, ``step``, and where known ``total_steps``, ``finished``, ``lpips_dropped``.

    For an ONNX export the manifest is the Colorizer's meta (``variant`` is a name, ``variant_config`` the
    dict); training facts come from the checkpoint it was exported from, when that still exists."""
    from ..polycolor_core.checkpoint import read_meta

    meta = dict(getattr(colorizer, "meta", None) or {})
    if "variant_config" in meta or (Path(source) / "manifest.json").is_file():  # ONNX export manifest
        if not meta:
            try:
                import json

                meta = json.loads((Path(source) / "manifest.json").read_text())
            except Exception:
                meta = {}
        src = meta.get("source") if isinstance(meta.get("source"), dict) else {}
        ck: dict = {}
        if src.get("path"):
            try:
                ck = read_meta(src["path"])
            except Exception:
                ck = {}
        out = {**ck}
        out.update({k: meta[k] for k in ("text_encoder", "image_size") if k in meta})
        if isinstance(meta.get("variant_config"), dict):
            out["variant"] = meta["variant_config"]
        if src.get("step") is not None:
            out["step"] = src["step"]
        return out
    if isinstance(meta.get("variant"), dict) and "text_encoder" in meta:
        return meta
    try:
        return {**read_meta(source), **meta}
    except Exception:
        return meta


def param_count(colorizer, meta: dict) -> int | None:
    model = getattr(getattr(colorizer, "backend", None), "model", None)
    if model is not None and hasattr(model, "parameters"):
        try:
            return int(sum(p.numel() for p in model.parameters()))
        except Exception:
            pass
    for key in ("params", "parameters", "num_parameters", "param_count"):
        if isinstance(meta.get(key), (int, float)):
            return int(meta[key])
    try:
        from ..polycolor_core.model import count_parameters, create_model
        from ..polycolor_core.variants import Variant

        m = create_model(Variant.from_dict(meta["variant"]), int(meta["text_encoder"]["dim"]), device="meta")
        return int(count_parameters(m))
    except Exception:
        return None


def encoder_label(meta: dict) -> str | None:
    te = meta.get("text_encoder")
    if isinstance(te, dict):
        name, src = te.get("name"), te.get("source") or ""
        return f"{name}:{src}" if src and not src.startswith("openai/") else name
    return str(te) if te else None


def lpips_training(meta: dict) -> tuple[str | None, str | None]:
    note = meta.get("lpips_note") or None
    if meta.get("lpips_dropped"):
        return "dropped", note
    try:
        w = float(meta["variant"]["loss"]["lpips"])
    except Exception:
        return None, note
    if w <= 0:
        return "not in loss", note
    return ("used" if "lpips_dropped" in meta else None), note


def finished(source: Path, meta: dict) -> bool | None:
    from ..polycolor_core.train import is_finished

    if is_finished(source):
        return True
    if "finished" in meta:
        return bool(meta["finished"])
    return None

