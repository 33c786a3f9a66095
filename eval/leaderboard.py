"""The leaderboard: score every requested model on held-out data and rank them (no printing, no files).

    from polycolor.eval.leaderboard import run_leaderboard, write_outputs
    lb = run_leaderboard("m1..m8", runs_dir="runs")          # -> Leaderboard (dataclasses, no printing)
    write_outputs(lb, out_dir="results")                       # leaderboard.json/.csv/.md + contact_sheet.png
    print(lb.markdown())                                       # the markdown table as a string

``polycolor-eval`` (``eval/cli.py``) and ``polycolor reproduce`` only parse options and render what these
functions return. The jobs live in their own modules, which this one composes:

* :mod:`~polycolor.eval.models`   - where models are found (``m3`` -> ``<runs>/m3/checkpoint``), loading them;
  a missing model comes back in ``Leaderboard.missing`` with the command that trains it, a run whose
  training has not finished is scored and flagged;
* :mod:`~polycolor.eval.heldout`  - the held-out synthetic split (seed ``HELDOUT_SEED``) or a data spec;
* :mod:`~polycolor.eval.scoring`  - predictions and metrics per model and for the flood-fill reference;
* :mod:`~polycolor.eval.report`   - JSON / CSV / markdown / contact sheet (``write_outputs`` is re-exported
  here), :mod:`~polycolor.eval.render` - the rich terminal table;
* :mod:`~polycolor.eval.schema`   - the metric table, sort keys and row records shared by all of them.

This module holds the ranking (:func:`rank_rows`), the contact-sheet sample choice
(:func:`pick_sheet_samples`), the :class:`Leaderboard` record and :func:`run_leaderboard`.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from . import scoring
from .heldout import EvalData, load_eval_data
from .models import resolve_models, resolve_runs_dir
from .report import markdown_table, render_markdown, write_outputs
from .schema import (DEFAULT_SORT, METRICS, REFERENCE_NAME, SCHEMA, SORT_KEYS, LpipsInfo, ModelResult,
                     ProgressFn, jsonable)

__all__ = ["SHEET_SAMPLES", "Leaderboard", "rank_rows", "pick_sheet_samples", "run_leaderboard", "write_outputs"]

SHEET_SAMPLES = 8


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
        return jsonable({
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
        return render_markdown(self, by_family=by_family)

    def markdown_table(self) -> str:
        """The ranked table alone; see ``report.markdown_table``."""
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
    user_n: int = 0,
    outputs: Sequence[str] = ("raw",),
    jobs: int = 1,
    scored: Mapping[str, list[ModelResult]] | None = None,
) -> Leaderboard:
    """Score ``models`` on held-out data and rank them. Never prints.

    ``models``: a selection string (``"m1..m8"``, ``"m2,m4,m8"``, paths) or a list of names/paths; raises
    ``ValueError`` for an invalid one. ``runs_dir``: see :func:`~polycolor.eval.models.resolve_runs_dir`.
    ``data_spec``/``n``/``size``/``user_n``: see :func:`~polycolor.eval.heldout.load_eval_data` (or pass ready
    ``data``).
    ``lpips``: ``auto`` | ``local`` | ``off`` (see :func:`~polycolor.eval.scoring.make_lpips_scorer`).
    ``threads``: CPU threads for torch / onnxruntime (process-wide ``torch.set_num_threads``; default: leave as
    is). ``outputs``: what each model row scores (:data:`~polycolor.eval.scoring.OUTPUTS`): ``("raw",)`` the
    model's whole picture (rows named after the model); add ``"composite"`` for a second row per model,
    ``"<name> composite"``, scoring what ``Colorizer`` users get by default. ``progress(description, completed,
    total)`` is called while scoring. ``jobs``: models scored at once in worker processes (one thread each share of
    the cores; 1 = in this process). Results do not depend on it. ``scored``: rows already scored elsewhere on
    this same ``data`` and ``outputs`` (``scoring.score_job``), by model name; those models are not scored again.
    """
    t_start = time.perf_counter()
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}; choose one of {', '.join(SORT_KEYS)}")
    outputs = tuple(dict.fromkeys(outputs))
    bad = [o for o in outputs if o not in scoring.OUTPUTS]
    if bad or not outputs:
        raise ValueError(f"outputs must be a non-empty subset of {', '.join(scoring.OUTPUTS)}, got {outputs!r}")
    refs = resolve_models(models, runs_dir)
    runs = resolve_runs_dir(runs_dir)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    if data is None:
        data = load_eval_data(data_spec, n, size, user_n=user_n)
    scorer, lp_info = scoring.make_lpips_scorer(lpips, device)
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
    n_rows = len(found) + (1 if reference else 0)  # one inference pass per model, whatever the outputs
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
    scored = dict(scored or {})
    done_before += len(data) * sum(1 for r in found if r.name in scored)
    todo = [r for r in found if r.name not in scored]
    jobs = max(1, min(int(jobs or 1), len(todo)))
    if jobs > 1:  # whole models in worker processes; rows are put back in the requested order below
        for name, results in scoring.score_in_workers(todo, data, lpips, outputs, jobs, backend=backend,
                                                      device=device, batch_size=batch_size, bf16=bf16):
            scored[name] = results
            done_before += len(data)
            if progress is not None:
                progress(f"scored {name}", done_before, total)
    for r in refs:
        if not r.found:
            missing.append(ModelResult(r.name, "model", "missing", source=r.requested, message=r.message,
                                       train_command=r.train_command))
            continue
        if r.name not in scored:
            if progress is not None:
                progress(f"loading {r.name}", done_before, total)
            scored[r.name] = scoring.score_ref(r, data, scorer, outputs, backend=backend, device=device,
                                               batch_size=batch_size, bf16=bf16, threads=threads,
                                               progress=sub(f"scoring {r.name}"))
            done_before += len(data)
            if progress is not None:
                progress(f"scored {r.name}", done_before, total)
        for res in scored[r.name]:
            (rows if res.scored else missing).append(res)
    if reference:
        rows.append(scoring.score_reference(data, scorer, progress=sub(f"scoring {REFERENCE_NAME}")))
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
                  "reference": reference, "threads": threads, "outputs": list(outputs), "jobs": jobs},
    )
