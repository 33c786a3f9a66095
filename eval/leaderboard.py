"""The leaderboard as plain functions: find models, build held-out data, score, rank, write outputs.

    from polycolor.eval.leaderboard import run_leaderboard, write_outputs
    lb = run_leaderboard("m1..m8", runs_dir="runs")          # -> Leaderboard (dataclasses, no printing)
    write_outputs(lb, out_dir="results")                       # leaderboard.json/.csv/.md + contact_sheet.png
    print(lb.markdown())                                       # the markdown table as a string

``polycolor-eval`` (``eval/cli.py``) and ``polycolor reproduce`` only parse options and render what these
functions return.

**Where models are found.** A variant name ``m3`` means the run folder ``<runs>/m3``, i.e. the checkpoint
``<runs>/m3/checkpoint/`` that ``polycolor train m3 --out runs/m3`` writes (an ONNX export folder with
``manifest.json`` at ``<runs>/m3`` also counts). ``<runs>`` is, in order: the ``runs_dir`` argument
(``--runs``), the environment variable ``POLYCOLOR_RUNS``, or ``runs/`` in the current directory. Any other
token of the selection is a path to a run folder, checkpoint folder or ONNX export. A missing model is not an
exception: it comes back in ``Leaderboard.missing`` with the command that trains it; a run whose training has
not finished is scored and flagged.

**Held-out data.** By default :func:`build_heldout`: ``SyntheticDataset`` with seed :data:`HELDOUT_SEED`
(= 2024_1129). Training draws its batches with seeds 0.. and its validation set with ``seed + 10000``; the
leaderboard seed is used by nothing else, so every posed / random-shape sample is one no model has seen
(the ``canonical`` family is the original format: 8 fixed shapes x 8 colours, which training sees by design).
Families (round-robin, so ``n`` splits evenly): canonical (the original format), shapes (random n-gons,
stars, crosses, arrows, irregular polygons), pose (the 8 shapes rotated/scaled/shifted, varied outline
widths), dark (dark noisy backgrounds with light outlines). Default ``n=96`` at ``size=128`` (the original
format's size). ``data_spec`` replaces it with a folder in the original layout or any ``load_data`` spec
(``hf:...``).

**Scores** (see ``eval/metrics.py`` for the definitions): LPIPS (AlexNet), SSIM, CIEDE2000 over the true
polygon (``de_polygon``) and the whole image (``de_image``), mask IoU, PSNR; plus the parameter count and
images/s (model inference only: the ``Colorizer.colorize`` call, after one warm-up image; loading and
scoring excluded). Predictions are made at the data's size (the Colorizer resizes to the model's working
size and back). The row :data:`REFERENCE_NAME` is the classical flood fill of ``eval/baseline.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..polycolor_core.colours import resolve_colour
from ..polycolor_core.data import DataError, Sample, load_data
from . import metrics as _metrics
from .selection import parse_models

__all__ = [
    "HELDOUT_SEED", "HELDOUT_FAMILIES", "DEFAULT_N", "DEFAULT_SIZE", "RUNS_ENV", "DEFAULT_RUNS_DIR",
    "REFERENCE_NAME", "METRICS", "SORT_KEYS", "DEFAULT_SORT", "SHEET_SAMPLES", "DEFAULT_FILENAMES",
    "MetricInfo", "EvalData", "ModelRef", "ModelResult", "Leaderboard", "LpipsInfo",
    "resolve_runs_dir", "train_command", "resolve_models", "build_heldout", "load_eval_data",
    "load_colorizer", "make_lpips_scorer", "score_predictions", "summarize", "score_model", "score_reference",
    "rank_rows", "pick_sheet_samples", "run_leaderboard", "write_outputs",
]

HELDOUT_SEED = 2024_1129
"""Seed of the default held-out set. Training uses seeds 0.. for batches and seed+10000 for validation."""
HELDOUT_FAMILIES = ("canonical", "shapes", "pose", "dark")
DEFAULT_N = 96
DEFAULT_SIZE = 128
RUNS_ENV = "POLYCOLOR_RUNS"
DEFAULT_RUNS_DIR = "runs"
REFERENCE_NAME = "flood-fill (reference)"
SHEET_SAMPLES = 8
DEFAULT_FILENAMES = {"json": "leaderboard.json", "csv": "leaderboard.csv", "markdown": "leaderboard.md",
                     "sheet": "contact_sheet.png"}
SCHEMA = "polycolor-leaderboard/1"


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str  # column header
    higher_is_better: bool
    fmt: str  # format spec for one value
    description: str


METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo("lpips", "LPIPS", False, ".4f", "LPIPS (AlexNet), lower is better"),
        MetricInfo("ssim", "SSIM", True, ".4f", "SSIM (Wang et al., 11x11 Gaussian), higher is better"),
        MetricInfo("de_polygon", "ΔE00 poly", False, ".2f", "mean CIEDE2000 over the true polygon, lower is better"),
        MetricInfo("de_image", "ΔE00 img", False, ".2f", "mean CIEDE2000 over the whole image, lower is better"),
        MetricInfo("iou", "IoU", True, ".3f", "IoU of predicted vs true polygon mask, higher is better"),
        MetricInfo("psnr", "PSNR", True, ".2f", "PSNR in dB (capped at 100), higher is better"),
    )
}
METRIC_KEYS = tuple(METRICS)
SORT_KEYS = (*METRIC_KEYS, "images_per_s")
DEFAULT_SORT = "de_polygon"

ProgressFn = Callable[[str, int, int], None]
"""``progress(description, completed, total)``; counts are images over all models and the reference."""


# ============================================================================================== models


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


# ================================================================================================ data


@dataclass
class EvalData:
    """The scored samples plus a description of where they came from."""

    samples: list[Sample]
    description: str
    spec: str
    seed: int | None = None
    size: int | None = None  # the common image size, None if sizes vary
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def inputs(self) -> list[np.ndarray]:
        return [s.input for s in self.samples]

    @property
    def targets(self) -> list[np.ndarray]:
        return [s.target for s in self.samples]

    @property
    def colours(self) -> list[str]:
        return [s.colour for s in self.samples]

    @property
    def families(self) -> list[str]:
        return [s.family for s in self.samples]

    def family_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.families:
            out[f] = out.get(f, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"description": self.description, "spec": self.spec, "n": len(self), "seed": self.seed,
                "size": self.size, "families": self.family_counts(), "notes": list(self.notes)}


def build_heldout(n: int = DEFAULT_N, size: int = DEFAULT_SIZE, seed: int = HELDOUT_SEED,
                  families: Sequence[str] = HELDOUT_FAMILIES) -> EvalData:
    """The default held-out split: ``n`` synthetic samples, split evenly (round-robin) across ``families``."""
    from ..polycolor_core.synthetic import SyntheticDataset

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ds = SyntheticDataset(tuple(families), n, seed, size)
    samples = list(ds)
    data = EvalData(samples, "", f"synthetic:{'+'.join(ds.families)}?n={n}&seed={seed}&size={size}", seed, size)
    counts = ", ".join(f"{f} {c}" for f, c in data.family_counts().items())
    data.description = (f"held-out synthetic split: {n} images at {size}x{size} px, seed {seed} (never used for "
                        f"training); {counts}")
    return data


def load_eval_data(data_spec: str | Path | None = None, n: int | None = None, size: int | None = None) -> EvalData:
    """The held-out split (``data_spec=None``), or ``n`` samples of a folder / ``load_data`` spec.

    For a spec, ``n`` caps the number of samples (default: all) and ``size`` resizes inputs and targets
    (bilinear; default: keep each image's own size). Raises ``DataError`` for unreadable data.
    """
    if data_spec is None or str(data_spec).strip() == "":
        return build_heldout(DEFAULT_N if n is None else n, DEFAULT_SIZE if size is None else size)
    from ..polycolor_core.imageio import resize_image

    src = load_data(data_spec)
    total = len(src)
    k = total if n is None else min(int(n), total)
    if k < 1:
        raise DataError(f"{data_spec}: no samples to score (the dataset is empty)")
    samples = [src[i] for i in range(k)]
    notes = []
    if size is not None:
        resized = 0
        for s in samples:
            if s.input.shape[:2] != (size, size) or s.target.shape[:2] != (size, size):
                s.input, s.target = resize_image(s.input, size), resize_image(s.target, size)
                resized += 1
        if resized:
            notes.append(f"{resized} of {k} images resized to {size}x{size} px (bilinear)")
    shapes = {s.input.shape[:2] for s in samples}
    common = next(iter(shapes))[0] if len(shapes) == 1 and len(set(next(iter(shapes)))) == 1 else None
    size_txt = f"{common}x{common} px" if common else "mixed sizes " + ", ".join(
        f"{w}x{h}" for h, w in sorted(shapes))
    desc = f"{data_spec}: {k} images" + (f" (of {total})" if k < total else "") + f" at {size_txt}"
    return EvalData(samples, desc, str(data_spec), None, common, notes)


# ============================================================================================= scoring


@dataclass
class LpipsInfo:
    enabled: bool
    available: bool
    status: str  # "ok", "unavailable (offline)", "disabled", ...
    reason: str | None = None

    @property
    def cell(self) -> str:
        """What the LPIPS column shows when there are no values."""
        if not self.enabled:
            return "n/a (disabled)"
        if "offline" in self.status:
            return "n/a (offline)"
        return "n/a"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_lpips_scorer(mode: str = "auto", device: str | None = "cpu"):
    """(scorer or None, LpipsInfo). ``mode``: ``auto`` (download the AlexNet weights if needed), ``local``
    (only weights already on disk, no network), ``off``."""
    if mode == "off":
        return None, LpipsInfo(False, False, "disabled", "LPIPS disabled (--lpips off)")
    if mode not in ("auto", "local"):
        raise ValueError(f"lpips mode must be auto, local or off, got {mode!r}")
    dev = None if device in (None, "auto") else device
    scorer = _metrics.LpipsScorer(device=dev, allow_download=(mode == "auto"))
    return (scorer if scorer.available else None), LpipsInfo(True, scorer.available, scorer.status, scorer.reason)


def _colour_rgbs(colours: Sequence[str]) -> list[tuple[int, int, int]]:
    cache: dict[str, tuple[int, int, int]] = {}
    for c in colours:
        if c not in cache:
            cache[c] = tuple(int(v) for v in resolve_colour(c))
    return [cache[c] for c in colours]


def score_predictions(data: EvalData, preds: Sequence[np.ndarray], lpips_scorer=None) -> dict[str, np.ndarray]:
    """Per-sample metrics ``{key: float64 [N]}`` for ``preds`` (uint8, one per sample, at the data's size).

    ``lpips`` is NaN everywhere when ``lpips_scorer`` is None. Raises if LPIPS scoring itself fails.
    """
    n = len(data)
    if len(preds) != n:
        raise ValueError(f"got {len(preds)} predictions for {n} samples")
    out = {k: np.full(n, np.nan) for k in METRIC_KEYS}
    rgbs = _colour_rgbs(data.colours)
    for i, (s, p) in enumerate(zip(data.samples, preds)):
        one = _metrics.score_pair(s.input, np.asarray(p, dtype=np.uint8), s.target, rgbs[i])
        for k, v in one.items():
            out[k][i] = v
    if lpips_scorer is not None:
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(data.samples):
            groups.setdefault(s.target.shape, []).append(i)
        for idx in groups.values():
            vals = lpips_scorer.score(np.stack([np.asarray(preds[i], np.uint8) for i in idx]),
                                      np.stack([data.samples[i].target for i in idx]))
            out["lpips"][idx] = vals
    return out


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def summarize(per_sample: dict[str, np.ndarray], families: Sequence[str]) -> tuple[dict, dict]:
    """(means over all samples, ``{family: means}``), NaNs ignored (``de_polygon`` of an empty polygon)."""
    means = {k: _nanmean(v) for k, v in per_sample.items()}
    fams = np.asarray(list(families))
    by_family = {}
    for f in dict.fromkeys(families):
        sel = fams == f
        by_family[f] = {k: _nanmean(np.asarray(v)[sel]) for k, v in per_sample.items()}
        by_family[f]["n"] = int(sel.sum())
    return means, by_family


@dataclass
class ModelResult:
    """One leaderboard row (a model or the reference), or a model that could not be scored."""

    name: str
    kind: str  # "model" | "reference"
    status: str  # "ok" | "unfinished" | "missing" | "error"
    source: str | None = None
    backend: str | None = None
    variant: str | None = None
    image_size: int | None = None  # the model's working resolution
    text_encoder: str | None = None
    lpips_training: str | None = None  # "used" | "dropped" | "not in loss" | None (unknown)
    lpips_training_note: str | None = None
    finished: bool | None = None
    step: int | None = None
    total_steps: int | None = None
    params: int | None = None
    images_per_s: float | None = None
    inference_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    by_family: dict[str, dict[str, float]] = field(default_factory=dict)
    per_sample: dict[str, list[float]] = field(default_factory=dict)
    rank: int | None = None
    message: str | None = None
    train_command: str | None = None
    warnings: list[str] = field(default_factory=list)
    predictions: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def scored(self) -> bool:
        return self.status in ("ok", "unfinished")

    def value(self, key: str) -> float:
        v = self.images_per_s if key == "images_per_s" else self.metrics.get(key)
        return float("nan") if v is None else float(v)

    def to_dict(self, per_sample: bool = False) -> dict:
        d = {k: v for k, v in dataclasses.asdict(
            dataclasses.replace(self, predictions=None, per_sample={})).items()
             if k not in ("predictions", "per_sample")}
        if per_sample:
            d["per_sample"] = self.per_sample
        return _jsonable(d)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) or math.isinf(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


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


def _model_meta(colorizer, source: Path) -> dict:
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


def _param_count(colorizer, meta: dict) -> int | None:
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


def _encoder_label(meta: dict) -> str | None:
    te = meta.get("text_encoder")
    if isinstance(te, dict):
        name, src = te.get("name"), te.get("source") or ""
        return f"{name}:{src}" if src and not src.startswith("openai/") else name
    return str(te) if te else None


def _lpips_training(meta: dict) -> tuple[str | None, str | None]:
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


def _finished(source: Path, meta: dict) -> bool | None:
    from ..polycolor_core.train import is_finished

    if is_finished(source):
        return True
    if "finished" in meta:
        return bool(meta["finished"])
    return None


def score_model(ref: ModelRef, data: EvalData, lpips_scorer=None, *, backend: str = "auto", device: str = "cpu",
                batch_size: int = 16, bf16: bool | None = None, text_encoders: dict | None = None,
                threads: int | None = None,
                progress: Callable[[int, int], None] | None = None, keep_predictions: bool = True) -> ModelResult:
    """Load one found model, predict every sample, score. Errors come back as ``status="error"``."""
    res = ModelResult(ref.name, "model", "error", source=str(ref.source))
    try:
        colorizer, note = load_colorizer(ref.source, backend, device, batch_size, bf16, text_encoders, threads)
    except Exception as exc:  # noqa: BLE001 - report, keep scoring the others
        res.message = f"{ref.name}: could not load {ref.source}: {type(exc).__name__}: {exc}"
        return res
    if note:
        res.warnings.append(note)
    meta = _model_meta(colorizer, ref.source)
    backend_obj = getattr(colorizer, "backend", None)
    res.backend = getattr(backend_obj, "name", None) or backend
    variant = meta.get("variant")
    res.variant = variant.get("name") if isinstance(variant, dict) else (str(variant) if variant else None)
    res.image_size = int(getattr(colorizer, "image_size", 0) or meta.get("image_size") or 0) or None
    res.text_encoder = _encoder_label(meta)
    res.lpips_training, res.lpips_training_note = _lpips_training(meta)
    res.finished = _finished(ref.source, meta)
    res.step = meta.get("step")
    res.total_steps = meta.get("total_steps")
    res.params = _param_count(colorizer, meta)
    try:
        colorizer.colorize([data.samples[0].input], [data.samples[0].colour])  # warm-up, not timed
        t0 = time.perf_counter()
        result = colorizer.colorize(data.inputs, data.colours, progress=progress)
        dt = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001
        res.message = f"{ref.name}: inference failed: {type(exc).__name__}: {exc}"
        return res
    preds = [np.asarray(p, dtype=np.uint8) for p in result.images]
    res.inference_s = dt
    res.images_per_s = len(data) / dt if dt > 0 else float("inf")
    try:
        per = score_predictions(data, preds, lpips_scorer)
    except Exception as exc:  # noqa: BLE001 - LPIPS is the only part that can fail on valid images
        if lpips_scorer is None:
            raise
        per = score_predictions(data, preds, None)
        res.warnings.append(f"LPIPS failed ({type(exc).__name__}: {exc}); its cell is empty")
    res.metrics, res.by_family = summarize(per, data.families)
    res.per_sample = {k: v.tolist() for k, v in per.items()}
    res.predictions = preds if keep_predictions else None
    if res.finished is False:
        res.status = "unfinished"
        steps = f" (step {res.step}/{res.total_steps})" if res.step is not None and res.total_steps else ""
        res.warnings.append(f"training not finished{steps}: scored as it stands")
    else:
        res.status = "ok"
    return res


def score_reference(data: EvalData, lpips_scorer=None, keep_predictions: bool = True,
                    progress: Callable[[int, int], None] | None = None) -> ModelResult:
    """The classical flood-fill row (``eval/baseline.py``): no parameters, no training."""
    from .baseline import flood_fill_colorize

    rgbs = _colour_rgbs(data.colours)
    preds = []
    t0 = time.perf_counter()
    for i, s in enumerate(data.samples):
        preds.append(flood_fill_colorize(s.input, rgbs[i]))
        if progress is not None and ((i + 1) % 16 == 0 or i + 1 == len(data)):
            progress(i + 1, len(data))
    dt = time.perf_counter() - t0
    per = score_predictions(data, preds, lpips_scorer)
    means, by_family = summarize(per, data.families)
    return ModelResult(REFERENCE_NAME, "reference", "ok", source="polycolor.eval.baseline.flood_fill_colorize",
                       backend="numpy", params=0, images_per_s=len(data) / dt if dt > 0 else float("inf"),
                       inference_s=dt, metrics=means, by_family=by_family,
                       per_sample={k: v.tolist() for k, v in per.items()}, finished=None,
                       predictions=preds if keep_predictions else None)


def rank_rows(rows: list[ModelResult], sort: str = DEFAULT_SORT) -> list[ModelResult]:
    """Sort scored rows by ``sort`` (ascending for lower-is-better metrics, descending otherwise; NaN last,
    ties keep the given order) and number the models 1..k. The reference row is sorted in but gets no rank."""
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}; choose one of {', '.join(SORT_KEYS)}")
    higher = True if sort == "images_per_s" else METRICS[sort].higher_is_better

    def key(r: ModelResult):
        v = r.value(sort)
        if math.isnan(v):
            return (1, 0.0)
        return (0, -v if higher else v)

    out = sorted(rows, key=key)
    k = 0
    for r in out:
        if r.kind == "model":
            k += 1
            r.rank = k
        else:
            r.rank = None
    return out


def pick_sheet_samples(data: EvalData, k: int = SHEET_SAMPLES) -> list[int]:
    """``k`` sample indices spread across families (evenly spaced within each), grouped by family."""
    by_fam: dict[str, list[int]] = {}
    for i, f in enumerate(data.families):
        by_fam.setdefault(f, []).append(i)
    fams = list(by_fam)
    k = min(k, len(data))
    quota = {f: 0 for f in fams}
    left = k
    while left:  # round-robin, skipping exhausted families
        progressed = False
        for f in fams:
            if left and quota[f] < len(by_fam[f]):
                quota[f] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    picks = []
    for f in fams:
        idx, q = by_fam[f], quota[f]
        picks.extend(idx[(j * len(idx)) // q] for j in range(q))
    return picks


# ========================================================================================= leaderboard


@dataclass
class Leaderboard:
    rows: list[ModelResult]  # scored rows (models + reference), ranked
    missing: list[ModelResult]  # requested but not scored (missing / error)
    data: EvalData
    sort: str
    lpips: LpipsInfo
    requested: list[str]
    runs_dir: str
    notes: list[str] = field(default_factory=list)  # what was dropped / changed, for the footer
    sheet_indices: list[int] = field(default_factory=list)
    created: str = ""
    elapsed_s: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every requested model was scored (unfinished runs count as scored)."""
        return not self.missing

    @property
    def models(self) -> list[ModelResult]:
        return [r for r in self.rows if r.kind == "model"]

    @property
    def reference(self) -> ModelResult | None:
        return next((r for r in self.rows if r.kind == "reference"), None)

    @property
    def ascending(self) -> bool:
        return not (self.sort == "images_per_s" or METRICS[self.sort].higher_is_better)

    def to_dict(self, per_sample: bool = False) -> dict:
        return _jsonable({
            "schema": SCHEMA,
            "created": self.created,
            "dataset": self.data.to_dict(),
            "sort": {"key": self.sort, "ascending": self.ascending},
            "metrics": {k: {"label": m.label, "higher_is_better": m.higher_is_better,
                            "description": m.description} for k, m in METRICS.items()},
            "lpips": self.lpips.to_dict(),
            "requested": self.requested,
            "runs_dir": self.runs_dir,
            "ok": self.ok,
            "rows": [r.to_dict(per_sample) for r in self.rows],
            "missing": [r.to_dict() for r in self.missing],
            "notes": self.notes,
            "settings": self.settings,
            "elapsed_s": self.elapsed_s,
        })

    def markdown(self, by_family: bool = False) -> str:
        """The whole markdown report (table, notes); see ``report.render_markdown``."""
        from .report import render_markdown

        return render_markdown(self, by_family=by_family)

    def markdown_table(self) -> str:
        from .report import markdown_table

        return markdown_table(self)


def run_leaderboard(
    models: str | Iterable[str | Path],
    runs_dir: str | Path | None = None,
    data_spec: str | Path | None = None,
    n: int | None = None,
    size: int | None = None,
    *,
    sort: str = DEFAULT_SORT,
    backend: str = "auto",
    device: str = "cpu",
    batch_size: int = 16,
    bf16: bool | None = None,
    lpips: str = "auto",
    reference: bool = True,
    threads: int | None = None,
    sheet_samples: int = SHEET_SAMPLES,
    progress: ProgressFn | None = None,
    data: EvalData | None = None,
) -> Leaderboard:
    """Score ``models`` on held-out data and rank them. Never prints.

    ``models``: a selection string (``"m1..m8"``, ``"m2,m4,m8"``, paths) or a list of names/paths; raises
    ``ValueError`` for an invalid one. ``runs_dir``: see :func:`resolve_runs_dir`. ``data_spec``/``n``/``size``:
    see :func:`load_eval_data` (or pass ready ``data``). ``lpips``: ``auto`` | ``local`` | ``off`` (see
    :func:`make_lpips_scorer`). ``threads``: CPU threads for torch / onnxruntime (process-wide
    ``torch.set_num_threads``; default: leave as is). ``progress(description, completed, total)`` is called
    while scoring.
    """
    t_start = time.perf_counter()
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}; choose one of {', '.join(SORT_KEYS)}")
    refs = resolve_models(models, runs_dir)
    runs = resolve_runs_dir(runs_dir)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    if data is None:
        data = load_eval_data(data_spec, n, size)
    scorer, lp_info = make_lpips_scorer(lpips, device)
    if scorer is not None:  # probe once: a failure here (e.g. images too small for AlexNet) drops the column
        try:
            t0 = data.samples[0].target
            scorer.score(t0[None], t0[None])
        except Exception as exc:  # noqa: BLE001
            scorer = None
            lp_info = LpipsInfo(True, False, "unavailable (error)",
                                f"LPIPS failed on these images ({type(exc).__name__}: {exc})")
    notes: list[str] = list(data.notes)
    if not lp_info.available:
        notes.append(f"LPIPS column {lp_info.cell}: {lp_info.reason}" if lp_info.reason else f"LPIPS {lp_info.cell}")

    found = [r for r in refs if r.found]
    n_rows = len(found) + (1 if reference else 0)
    total = n_rows * len(data)
    done_before = 0

    def sub(desc: str):
        if progress is None:
            return None
        base = done_before
        return lambda done, _tot: progress(desc, base + done, total)

    if progress is not None:
        progress("loading", 0, total)
    rows: list[ModelResult] = []
    missing: list[ModelResult] = []
    encoders: dict = {}
    for r in refs:
        if not r.found:
            missing.append(ModelResult(r.name, "model", "missing", source=r.requested, message=r.message,
                                       train_command=r.train_command))
            continue
        if progress is not None:
            progress(f"loading {r.name}", done_before, total)
        res = score_model(r, data, scorer, backend=backend, device=device, batch_size=batch_size, bf16=bf16,
                          text_encoders=encoders, threads=threads, progress=sub(f"scoring {r.name}"))
        done_before += len(data)
        if progress is not None:
            progress(f"scored {r.name}", done_before, total)
        (rows if res.scored else missing).append(res)
    if reference:
        rows.append(score_reference(data, scorer, progress=sub(f"scoring {REFERENCE_NAME}")))
        done_before += len(data)
        if progress is not None:
            progress("done", done_before, total)

    eff_sort = sort
    if sort == "lpips" and not lp_info.available:
        eff_sort = DEFAULT_SORT
        notes.append(f"--sort lpips: LPIPS is unavailable, sorted by {DEFAULT_SORT} instead")
    rows = rank_rows(rows, eff_sort)
    for r in rows:
        for w in r.warnings:
            notes.append(f"{r.name}: {w}")
    return Leaderboard(
        rows=rows, missing=missing, data=data, sort=eff_sort, lpips=lp_info,
        requested=[r.requested for r in refs], runs_dir=str(runs), notes=notes,
        sheet_indices=pick_sheet_samples(data, sheet_samples),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        elapsed_s=time.perf_counter() - t_start,
        settings={"backend": backend, "device": device, "batch_size": batch_size, "bf16": bf16, "lpips": lpips,
                  "reference": reference, "threads": threads},
    )


def write_outputs(lb: Leaderboard, *, json: str | Path | None = None, csv: str | Path | None = None,
                  markdown: str | Path | None = None, sheet: str | Path | None = None,
                  out_dir: str | Path | None = None, by_family: bool = False) -> dict[str, Path]:
    """Write the requested files; ``out_dir`` fills every unset one with :data:`DEFAULT_FILENAMES`.

    Returns ``{"json"|"csv"|"markdown"|"sheet": path}`` for what was written.
    """
    from . import report

    paths = {"json": json, "csv": csv, "markdown": markdown, "sheet": sheet}
    if out_dir is not None:
        for k, name in DEFAULT_FILENAMES.items():
            if paths[k] is None:
                paths[k] = Path(out_dir) / name
    writers = {"json": report.write_json, "csv": report.write_csv,
               "markdown": lambda lb_, p: report.write_markdown(lb_, p, by_family=by_family),
               "sheet": report.write_contact_sheet}
    written = {}
    for k, p in paths.items():
        if p is None:
            continue
        p = Path(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        writers[k](lb, p)
        written[k] = p
    return written
