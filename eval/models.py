"""Which models the leaderboard scores: finding them (selection -> folders), loading and describing them.

**Where models are found.** A variant name ``m3`` means the run folder ``<runs>/m3``, i.e. the checkpoint
``<runs>/m3/checkpoint/`` that ``polycolor train m3 --out runs/m3`` writes (an ONNX export folder with
``manifest.json`` at ``<runs>/m3`` also counts). ``<runs>`` is, in order: the ``runs_dir`` argument
(``--runs``), the environment variable ``POLYCOLOR_RUNS``, or ``runs/`` in the current directory. Any other
token of the selection is a path to a run folder, checkpoint folder or ONNX export. A missing model is not an
exception: :func:`resolve_models` returns it as a :class:`ModelRef` with ``kind="missing"`` and the command
that trains it.

:func:`load_colorizer` loads a found model through the one ``Colorizer.from_pretrained``;
:func:`describe_model` reads its folder once with ``ModelInfo.read`` (the one model-folder reader) and
returns the facts of its table row.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..polycolor_core.model.modelinfo import ModelFolderError, ModelInfo, locate
from .selection import parse_models

__all__ = [
    "RUNS_ENV", "DEFAULT_RUNS_DIR", "ModelRef", "resolve_runs_dir", "train_command", "resolve_models",
    "load_colorizer", "describe_model", "param_count", "encoder_label", "lpips_training", "finished",
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
    """"checkpoint" | "onnx" for a folder ``ModelInfo.read`` accepts, else None."""
    try:
        kind, _ = locate(folder)
    except (ModelFolderError, OSError):
        return None
    return "onnx" if kind == "export" else kind


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



def load_colorizer(source: str | Path, backend: str = "auto", device: str = "cpu", batch_size: int = 16,
                   bf16: bool | None = None, threads: int | None = None):
    """A found model, loaded through the one front end ``polycolor.export.colorizer.Colorizer.from_pretrained``.

    ``bf16``: None = the Colorizer's choice (``precision="auto"``), True / False = ``"bf16"`` / ``"fp32"``.
    """
    from ..export.colorizer import Colorizer

    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    precision = "auto" if bf16 is None else ("bf16" if bf16 else "fp32")
    kw = {"threads": threads} if threads else {}
    return Colorizer.from_pretrained(str(source), backend=backend, device=device, precision=precision,
                                     batch_size=batch_size, **kw)


def describe_model(source: str | Path, colorizer=None) -> dict:
    """The table-row facts of the model folder ``source`` (read once, by ``ModelInfo.read``): ``variant``,
    ``image_size``, ``text_encoder``, ``lpips_training`` (+ ``_note``), ``finished``, ``step``,
    ``total_steps``, ``params``. ``colorizer`` (loaded from it) gives the working size and the parameter count
    of a PyTorch model. Raises ``ModelFolderError`` for an unreadable folder."""
    info = ModelInfo.read(source)
    lp, note = lpips_training(info)
    return {"variant": info.variant_name or None,
            "image_size": int(getattr(colorizer, "image_size", 0) or info.image_size or 0) or None,
            "text_encoder": encoder_label(info), "lpips_training": lp, "lpips_training_note": note,
            "finished": finished(info), "step": info.step, "total_steps": info.total_steps,
            "params": param_count(info, colorizer)}


def _recorded(info: ModelInfo, key: str) -> bool:
    """Whether the folder (or, for an export, the checkpoint it came from) states ``key`` at all."""
    if key in info.meta:
        return True
    src = info.source_checkpoint() if info.kind == "export" else None
    return src is not None and key in src.meta


def param_count(info: ModelInfo, colorizer=None) -> int | None:
    """Parameters of the loaded PyTorch model, else as recorded, else counted on a meta-device copy."""
    model = getattr(getattr(colorizer, "backend", None), "model", None)
    if model is not None and hasattr(model, "parameters"):
        return int(sum(p.numel() for p in model.parameters()))
    for key in ("params", "parameters", "num_parameters", "param_count"):
        if isinstance(info.meta.get(key), (int, float)):
            return int(info.meta[key])
    if info.variant is None or not info.text_encoder.dim:
        return None
    from ..polycolor_core.model.factory import count_parameters, create_model

    return int(count_parameters(create_model(info.variant, int(info.text_encoder.dim), device="meta")))


def encoder_label(info: ModelInfo) -> str | None:
    """The text encoder's name, with its source unless that is an ``openai/`` hub id."""
    name, src = info.text_encoder.name, info.text_encoder.source or ""
    return f"{name}:{src}" if src and not src.startswith("openai/") else (name or None)


def lpips_training(info: ModelInfo) -> tuple[str | None, str | None]:
    """("used" | "dropped" | "not in loss" | None when unknown, the recorded note or None)."""
    note = info.lpips_note or None
    if info.lpips_dropped:
        return "dropped", note
    if info.variant is None:
        return None, note
    if info.variant.loss.lpips <= 0:
        return "not in loss", note
    return ("used" if _recorded(info, "lpips_dropped") else None), note


def finished(info: ModelInfo) -> bool | None:
    """True / False as recorded; None when the folder does not say."""
    if info.finished:
        return True
    return False if _recorded(info, "finished") else None
