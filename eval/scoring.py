"""Scoring: predict with one model (or the flood-fill reference), compute per-sample metrics, average them.

**Scores** (see ``eval/metrics.py`` for the definitions): LPIPS (AlexNet), SSIM, CIEDE2000 over the true
polygon (``de_polygon``) and the whole image (``de_image``), mask IoU, PSNR; plus the parameter count and
images/s (model inference only: the ``Colorizer.colorize`` call, after one warm-up image; loading and
scoring excluded). Predictions are made at the data's size (the Colorizer resizes to the model's working
size and back). The row :data:`~polycolor.eval.schema.REFERENCE_NAME` is the classical flood fill of
``eval/baseline.py``. Every function returns :class:`~polycolor.eval.schema.ModelResult` rows or plain
arrays; nothing here ranks, prints or writes files.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import numpy as np

from ..polycolor_core.colour.colours import resolve_colour
from . import metrics as _metrics
from . import models
from .heldout import EvalData
from .models import ModelRef
from .schema import METRIC_KEYS, REFERENCE_NAME, LpipsInfo, ModelResult

__all__ = ["OUTPUTS", "make_lpips_scorer", "score_predictions", "summarize", "row_name", "load_model", "score_outputs",
           "score_ref", "score_job", "score_in_workers", "score_reference"]


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
        p = np.asarray(p, dtype=np.uint8)
        one = _metrics.score_pair(s.input, p, s.target, rgbs[i])
        one["bg_changed"] = _metrics.background_changed(s.input, p, s.target)
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



OUTPUTS = ("raw", "composite")
"""What a model row scores: ``raw`` (the model's whole picture, resized back: the row named after the model)
or ``composite`` (what ``Colorizer`` users get by default: the fill pasted into their own image; the row
``"<name> composite"``)."""


def row_name(name: str, output: str) -> str:
    return name if output == "raw" else f"{name} {output}"


def load_model(ref: ModelRef, *, backend: str = "auto", device: str = "cpu", batch_size: int = 16,
               bf16: bool | None = None, threads: int | None = None):
    """(colorizer, the row's model facts as a ``ModelResult``), or an ``status="error"`` row alone."""
    res = ModelResult(ref.name, "model", "error", source=str(ref.source))
    try:
        colorizer = models.load_colorizer(ref.source, backend, device, batch_size, bf16, threads)
        facts = models.describe_model(ref.source, colorizer)
    except Exception as exc:  # noqa: BLE001 - report, keep scoring the others
        res.message = f"{ref.name}: could not load {ref.source}: {type(exc).__name__}: {exc}"
        return res
    res.backend = getattr(getattr(colorizer, "backend", None), "name", None) or backend
    for key, value in facts.items():
        setattr(res, key, value)
    return colorizer, res


def score_outputs(colorizer, base: ModelResult, data: EvalData, lpips_scorer=None, outputs: Sequence[str] = ("raw",),
                  progress: Callable[[int, int], None] | None = None, keep_predictions: bool = True
                  ) -> list[ModelResult]:
    """One row per ``outputs`` entry (copies of ``base``, from :func:`load_model`), from *one* inference pass.

    ``colorizer.colorize(..., output="raw")`` already computes the mask and colour a composite uses (``finish``),
    so the composite is ``paint(input, mask, colour)`` of that same pass, bit for bit what ``output="composite"``
    returns (tests/test_leaderboard.py checks it); the model runs once per sample, not once per output. Both rows
    report the pass's images/s. Errors come back as ``status="error"`` rows.
    """
    from ..polycolor_core.model.composite import paint

    bad = [o for o in outputs if o not in OUTPUTS]
    if bad:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {bad[0]!r}")
    rows = [dataclasses.replace(base, name=row_name(base.name, o), output=o, warnings=list(base.warnings))
            for o in outputs]
    try:
        colorizer.colorize([data.samples[0].input], [data.samples[0].colour], output="raw")  # warm-up, not timed
        t0 = time.perf_counter()
        result = colorizer.colorize(data.inputs, data.colours, progress=progress, output="raw")
        dt = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001
        for res in rows:
            res.message = f"{res.name}: inference failed: {type(exc).__name__}: {exc}"
        return rows
    raw = [np.asarray(p, dtype=np.uint8) for p in result.images]
    for res in rows:
        preds = raw if res.output == "raw" else [
            paint(s.input, m, c) for s, m, c in zip(data.samples, result.masks, result.fill_colours)]
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
    return rows


def score_ref(ref: ModelRef, data: EvalData, lpips_scorer=None, outputs: Sequence[str] = ("raw",), *,
              backend: str = "auto", device: str = "cpu", batch_size: int = 16, bf16: bool | None = None,
              threads: int | None = None, progress: Callable[[int, int], None] | None = None,
              keep_predictions: bool = True) -> list[ModelResult]:
    """Load one found model and score every output from one pass; a model that fails to load is one error row."""
    loaded = load_model(ref, backend=backend, device=device, batch_size=batch_size, bf16=bf16, threads=threads)
    if isinstance(loaded, ModelResult):
        return [loaded]
    colorizer, base = loaded
    return score_outputs(colorizer, base, data, lpips_scorer, outputs, progress, keep_predictions)


_WORKER: dict = {}  # per worker process: the eval data and the LPIPS scorer, built once


def _worker_init(data: EvalData, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["pool data"] = data  # sent once per worker process, not once per model


def score_job(ref: ModelRef, data: EvalData | dict, lpips_mode: str, outputs: Sequence[str], **kwargs
              ) -> tuple[str, list[ModelResult]]:
    """:func:`score_ref` for any worker process (``polycolor reproduce`` scores each model in the training pool as
    soon as it is trained). ``data``: the EvalData, or the keyword arguments of ``heldout.load_eval_data`` that
    build it (deterministic: the worker builds the same split once instead of receiving it). The data and the
    LPIPS scorer are built once per process and kept."""
    from .heldout import load_eval_data

    if isinstance(data, dict):
        dkey = ("data", tuple(sorted(data.items())))
        if dkey not in _WORKER:
            _WORKER[dkey] = load_eval_data(**data)
        data = _WORKER[dkey]
    key = ("scorer", lpips_mode, kwargs.get("device", "cpu"))
    if key not in _WORKER:
        _WORKER[key] = make_lpips_scorer(lpips_mode, kwargs.get("device", "cpu"))[0]
    return ref.name, score_ref(ref, data, _WORKER[key], outputs, **kwargs)


def _worker_score(ref: ModelRef, lpips_mode: str, outputs, kwargs) -> tuple[str, list[ModelResult]]:
    return score_job(ref, _WORKER["pool data"], lpips_mode, outputs, **kwargs)


def score_in_workers(refs: Sequence[ModelRef], data: EvalData, lpips_mode: str, outputs: Sequence[str], jobs: int,
                     **kwargs):
    """Yield ``(name, rows)`` as each model is scored, ``jobs`` models at a time in spawned worker processes
    (each with ``cores // jobs`` torch threads, the data and its own LPIPS scorer). Same rows as :func:`score_ref`;
    on a 2-core CPU two single-threaded scorers finish the eight-model leaderboard in about half the time."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // jobs)
    kwargs = {**kwargs, "threads": threads}
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(data, threads)) as pool:
        futures = [pool.submit(_worker_score, r, lpips_mode, tuple(outputs), kwargs) for r in refs]
        for fut in as_completed(futures):
            yield fut.result()


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

