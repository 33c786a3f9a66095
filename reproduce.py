"""``polycolor reproduce``: the eight-model study in one command, and a verdict on each of its claims.

Trains every run of the study (``profiles.STUDY_RUNS``: m1-m7, the study's m8, the no-dark control m4-nodark and
the everyday m8) once per seed that has no finished checkpoint (resuming unfinished ones), scores them on the same
held-out images, judges the study's claims (``eval/claims.py``) and writes a report folder:

    OUT/runs/seed0/m3/...      one run per (seed, run): checkpoint, metrics.jsonl, samples/epoch_NNN.png
    OUT/runs/seed0/x4/m3/...   the budget sweep (``--sweep``): a claim's two runs at 4x the steps
    OUT/report.md              claims table and leaderboard first, then setup, deviations, per-family, pictures
    OUT/report.json            the numbers behind it
    OUT/leaderboard.{json,csv,md}, OUT/contact_sheet.png, OUT/loss_curves.png, OUT/budget_sweep.png

Interrupting and rerunning continues where it stopped without redoing finished runs; adding seeds to a finished
folder trains only the new seeds.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .polycolor_core.runtime.folderlock import folder_lock
from .polycolor_core.training.profiles import EVERYDAY, get_profile, parse_runs
from .polycolor_core.training.train import config_from_profile, is_finished, make_progress, stage_bounds, train
from .polycolor_core.training.trainconfig import TrainConfig
from .polycolor_core.model.variants import get_variant
from .reproduce_plots import plot_loss_curves, read_metrics
from .reproduce_report import deviations, write_report

SWEEP_SCALE = 4  # the budget sweep trains a claim's two runs at this multiple of the steps


@dataclass(frozen=True)
class RunJob:
    """One training run of the study: a run name (``m3``, ``m8-study``), a seed and a step multiple."""

    run: str
    seed: int
    folder: Path
    scale: int = 1

    @property
    def key(self) -> str:
        """``seed1/m3``, ``seed0/x4/m4``: its place under OUT/runs and its name in bars and logs."""
        return f"seed{self.seed}/" + (f"x{self.scale}/" if self.scale > 1 else "") + self.run

    def config(self, profile: str, overrides: dict | None = None) -> TrainConfig:
        cfg = config_from_profile(self.run, profile, out=str(self.folder), seed=self.seed, **(overrides or {}))
        if self.scale > 1:
            cfg = dataclasses.replace(cfg, samples_per_epoch=cfg.samples_per_epoch * self.scale)
        return cfg


def training_images(cfg: TrainConfig) -> int:
    """Images a run trains on: optimiser steps x batch size (the budget sweep's x axis)."""
    return max(1, cfg.samples_per_epoch // cfg.batch_size) * cfg.resolved_epochs() * cfg.batch_size


def plan_runs(runs_dir: Path, runs: list[str], seeds: list[int], scale: int = 1) -> list[RunJob]:
    """Every (seed, run) to train; the everyday model is trained for the first seed only (it is not in a claim)."""
    sub = (lambda seed: runs_dir / f"seed{seed}" / f"x{scale}") if scale > 1 else (lambda seed: runs_dir / f"seed{seed}")
    return [RunJob(r, s, sub(s) / r, scale) for s in seeds for r in runs if r != EVERYDAY or s == seeds[0]]


@dataclass
class ReproduceResult:
    out: Path
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    complete: bool = False
    report: Path | None = None
    seconds: float = 0.0
    claims: list = field(default_factory=list)


def train_all(jobs_todo: list[RunJob], profile: str, jobs: int | None = None, followups=None,
              overrides: dict | None = None) -> tuple[list[str], list[str], dict[str, float], dict]:
    """Train the runs without a finished checkpoint; one overall bar plus a bar per run in training.

    ``jobs`` runs train at once in worker processes (None = auto, see ``plan_jobs``); 1 trains them one after
    another in this process. ``followups(job) -> {key: (fn, args)}``: work to run in the same worker pool as soon
    as ``job`` is trained (or at once for a finished one): ``polycolor reproduce`` scores each run there, so the
    cores that finish the short ablation runs score them while the long ones still train. Returns (trained keys,
    skipped keys, seconds per key, {key: result} of the followups; empty when ``jobs`` is 1). ``overrides``:
    TrainConfig fields set for every run on top of the profile (``--text-encoder``, ``--precision``).
    """
    todo = [j for j in jobs_todo if not is_finished(j.folder)]
    skipped = [j for j in jobs_todo if j not in todo]
    jobs, threads = plan_jobs(jobs, len(todo), profile)
    seconds: dict[str, float] = {}
    extra: dict = {}
    progress = make_progress()
    with progress:
        overall = progress.add_task(f"reproduce ({profile})", total=len(jobs_todo), completed=len(skipped),
                                    info=f"runs, {jobs} at a time" if jobs > 1 else "runs")
        if jobs <= 1:
            for job in todo:
                seconds[job.key] = _train_one(job, profile, progress, overrides)
                progress.advance(overall)
        else:
            seconds, extra = _train_in_workers(todo, skipped, profile, jobs, threads, progress, overall,
                                               followups, overrides)
    return [j.key for j in todo if j.key in seconds], [j.key for j in skipped], seconds, extra


def _train_one(job: RunJob, profile: str, progress, overrides: dict | None = None) -> float:
    """Train (or resume) one run with the profile's settings (and ``overrides``); returns its wall seconds."""
    t0 = time.perf_counter()
    train(job.config(profile, overrides), resume=True, progress=progress)
    return time.perf_counter() - t0


def plan_jobs(jobs: int | None, n_models: int, profile: str) -> tuple[int, int]:
    """(models trained at once, torch threads each). Auto: on a GPU one at a time; on CPU one job per core.

    The CPU profile's models are small (32 px, batch 4) and use two cores poorly: on this project's 2-core
    reference machine two single-threaded runs side by side finish in ~0.6x the time of the same two runs one
    after another with two threads each (m1: 80 s single-threaded beside another run vs 64-70 s alone).
    """
    import torch

    from .export.ort_backend import physical_cores

    # the machine's cores, not torch.get_num_threads(): scoring in this process sets that to 1 (process-wide), and a
    # later train_all (the budget sweep) then trained one run at a time on one core
    cores = physical_cores()
    on_gpu = torch.cuda.is_available() and get_profile(profile).train.get("device", "auto") in ("auto", "cuda")
    if jobs is None:
        jobs = 1 if on_gpu else min(n_models, cores)
    jobs = max(1, min(int(jobs), max(1, n_models)))
    return jobs, max(1, cores // jobs)


def estimated_cost(job: RunJob, profile: str, overrides: dict | None = None) -> float:
    """A rough relative training cost (steps x pixels x sqrt(parameters)), to start the longest runs first."""
    from .polycolor_core.model.factory import count_parameters, create_model
    from .polycolor_core.model.text import text_dim

    cfg = job.config(profile, overrides)
    variant = get_variant(cfg.variant).tiny() if cfg.tiny_model else get_variant(cfg.variant)
    steps = max(1, cfg.samples_per_epoch // cfg.batch_size) * cfg.resolved_epochs()
    pixels = sum((end - start) * size * size for size, start, end in stage_bounds(cfg, steps))
    return pixels * count_parameters(create_model(variant, text_dim(cfg.text_encoder), device="meta")) ** 0.5


class _QueueProgress:
    """Stands in for a rich ``Progress`` inside a worker process: forwards the training bar to the parent."""

    def __init__(self, queue, name: str):
        self.queue, self.name = queue, name

    def add_task(self, description, total, completed=0, info=""):
        self.queue.put(("add", self.name, total, completed, info))
        return self.name

    def update(self, task, completed, info=""):
        self.queue.put(("update", self.name, None, completed, info))

    def remove_task(self, task):
        self.queue.put(("remove", self.name, None, None, ""))


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a worker ends when reproduce does, however it ends (``kill``, SIGKILL, a closed terminal).

    Otherwise an orphaned worker trains on, holding its run's folder lock, and the rerun stops at that lock. Linux
    asks the kernel for SIGTERM on the parent's death (``prctl(PR_SET_PDEATHSIG)``); a killed worker loses at most
    the epoch in progress (checkpoints are written atomically). Elsewhere orphans end at their next pool message.
    """
    import signal

    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def _train_worker(job: RunJob, profile: str, threads: int, queue, overrides=None) -> tuple[str, float]:
    """One run in a worker process; its prints (LPIPS notes, hub probes) go to RUN/train.log."""
    import contextlib

    import torch

    torch.set_num_threads(threads)
    job.folder.mkdir(parents=True, exist_ok=True)
    with open(job.folder / "train.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return job.key, _train_one(job, profile, _QueueProgress(queue, job.key), overrides)


def _train_in_workers(todo, skipped, profile, jobs, threads, progress, overall, followups=None,
                      overrides=None) -> tuple[dict[str, float], dict]:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing.managers import SyncManager

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    order = sorted(todo, key=lambda j: -estimated_cost(j, profile, overrides))  # longest first: the last to end is short
    seconds: dict[str, float] = {}
    bars: dict[str, int] = {}
    manager = SyncManager(ctx=ctx)  # the progress queue's server: a process too, so it also dies with reproduce
    manager.start(_die_with_parent, (os.getpid(),))
    with manager, ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        q = manager.Queue()
        pending = {pool.submit(_train_worker, j, profile, threads, q, overrides) for j in order}
        by_key = {j.key: j for j in todo + skipped}
        extra: dict = {}
        jobs_of: dict = {}  # followup future -> its key

        def follow(job: RunJob) -> None:
            for key, (fn, args) in (followups(job) if followups else {}).items():
                fut = pool.submit(fn, *args)
                jobs_of[fut] = key
                pending.add(fut)

        for job in skipped:
            follow(job)

        def drain():
            while True:
                try:
                    kind, name, total, completed, info = q.get_nowait()
                except queue_mod.Empty:
                    return
                if kind == "add":
                    bars[name] = progress.add_task(f"train {name}", total=total, completed=completed, info=info)
                elif kind == "update" and name in bars:
                    progress.update(bars[name], completed=completed, info=info)
                elif kind == "remove" and name in bars:
                    progress.remove_task(bars.pop(name))

        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            drain()
            for fut in done:
                if fut in jobs_of:
                    extra[jobs_of.pop(fut)] = fut.result()
                    continue
                name, secs = fut.result()  # a worker's exception surfaces here, with its traceback
                seconds[name] = secs
                if name in bars:
                    progress.remove_task(bars.pop(name))
                progress.advance(overall)
                follow(by_key[name])
        drain()
    return seconds, extra


def is_wide_palette(folder: Path) -> bool:
    """Whether a run's checkpoint records a training palette beyond the data spec's colours (``--colours``)."""
    from .polycolor_core.model.modelinfo import ModelInfo

    return (info := ModelInfo.find(folder)) is not None and bool(info.colours)


# The report's scoring:
USER_FAMILY_N = 2  # held-out images per user-input family for the everyday model's own table (128-1024 px each)
COLOUR_TABLE_LIMIT = 40  # the first 40 names of each colour set (all 8 canonical, 27 CSS, 40 of 168 XKCD, 32 hex);
# `python -m polycolor.eval.colours runs/m8` scores them all


def parse_seeds(text: str | None) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2] (order kept, duplicates dropped); a clear error for anything else."""
    try:
        seeds = [int(t) for t in str(text if text is not None else "0").split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated non-negative integers such as 0,1,2") from None
    if not seeds or any(x < 0 for x in seeds):
        raise ValueError(f"--seeds {text!r}: expected comma-separated non-negative integers such as 0,1,2")
    return list(dict.fromkeys(seeds))


def run_reproduce(profile: str = "cpu", out: Path = Path("reproduce-cpu"), models: list[str] | None = None,
                  eval_n: int | None = None, eval_size: int = 128, jobs: int | None = None,
                  text_encoder: str | None = None, precision: str | None = None, seeds: list[int] | None = None,
                  sweep: bool = False) -> ReproduceResult:
    """Train, score, judge and report (module docstring). ``models``: run names (``profiles.parse_runs``; default
    every run). ``seeds``: train each run once per seed (default [0]). ``sweep``: for each claim that does not hold,
    train its two runs at ``SWEEP_SCALE`` x the steps (same seeds) and report whether the verdict changes.
    ``text_encoder``: every model's, instead of the profile's (the report profile's CLIP needs a download;
    ``minilm-l6`` ships with the package); the report states it. ``precision``: every model's training precision
    instead of the profile's. ``out`` is locked meanwhile (``folderlock``): a second reproduce at the same folder
    stops with a clear error instead of training the same runs twice."""
    with folder_lock(out, "polycolor reproduce"):
        return _run_reproduce(profile, Path(out), parse_runs(",".join(models)) if models else parse_runs(None),
                              eval_n, eval_size, jobs, text_encoder, precision, list(seeds or [0]), sweep)


def _score_followups(data_args: dict, outputs: tuple[str, ...]):
    """``followups(job)`` for ``train_all``: score a run (and the everyday model's colour table) in the pool."""
    import functools

    from .eval.colours import colour_table_job
    from .eval.models import resolve_models
    from .eval.scoring import score_job

    colours_of = functools.partial(colour_table_job, threads=1, n_hex=32, limit=COLOUR_TABLE_LIMIT)

    def followups(job: RunJob) -> dict:
        ref = resolve_models([job.folder])[0]
        score = functools.partial(score_job, backend="torch", threads=1)  # one thread per worker, like training
        todo = {("score", job.key): (score, (ref, data_args, "auto", outputs))} if ref.found else {}
        if ref.found and job.scale == 1 and is_wide_palette(job.folder):
            todo[("colours", job.key)] = (colours_of, ([str(job.folder)],))
        return todo

    return followups, colours_of


def _boards(groups: dict, data, extra: dict, jobs: int | None, profile: str, outputs) -> dict:
    """One leaderboard per seed (or sweep seed) over its runs, reusing the rows scored in the training pool."""
    from .eval.leaderboard import run_leaderboard

    boards = {}
    for gkey, group in groups.items():
        scored = {j.run: extra[("score", j.key)][1] for j in group if ("score", j.key) in extra}
        boards[gkey] = run_leaderboard([j.folder for j in group], data=data, threads=1, backend="torch",
                                       outputs=outputs, jobs=plan_jobs(jobs, len(group), profile)[0], scored=scored)
    return boards


def _loss_spread(jobs: list[RunJob]) -> dict[str, list[float]]:
    """{run: per seed, the last epoch's step-to-step loss sd over its mean loss} (claim 4's loss-curve reading)."""
    spread: dict[str, list[float]] = {}
    for j in jobs:
        rows = read_metrics(j.folder)
        if rows and "loss_sd" in rows[-1] and rows[-1].get("loss"):
            spread.setdefault(j.run, []).append(rows[-1]["loss_sd"] / rows[-1]["loss"])
    return spread


def raw_scores(boards: dict) -> dict:
    """{seed: {run: {metric: per-image list}}} of the raw rows (the claims' input)."""
    return {seed: {r.name: r.per_sample for r in b.rows if r.kind == "model" and r.output == "raw"}
            for seed, b in boards.items()}


def _run_reproduce(profile, out, runs, eval_n, eval_size, jobs, text_encoder, precision, seeds, sweep) -> ReproduceResult:
    from rich.console import Console

    from .eval.claims import DOES_NOT_HOLD, NOT_TESTABLE, judge_claims
    from .eval.heldout import load_eval_data
    from .eval.leaderboard import run_leaderboard, write_outputs
    from .eval.render import render_terminal
    from .eval.colours import merge_colour_tables
    from .reproduce_plots import plot_budget_sweep

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    t0 = time.perf_counter()
    for r in runs:
        get_variant(config_from_profile(r, profile).variant)  # a bad run name or profile fails before any training
    prof = get_profile(profile)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]polycolor reproduce[/] profile [cyan]{profile}[/], seeds {','.join(map(str, seeds))}: "
                  f"{prof.description}")
    # Scoring: both outputs (the study's raw picture and the composite users get) on the held-out families the study
    # trains on, on the torch backend (which every checkpoint has); each run is scored in the training pool as soon
    # as it is trained, and the wide-palette everyday model gets the colour table there too.
    data_args = dict(n=eval_n or prof.eval_n, size=eval_size, user_n=0)
    outputs = ("raw", "composite")
    followups, colours_of = _score_followups(data_args, outputs)
    overrides = {k: v for k, v in (("text_encoder", text_encoder), ("precision", precision)) if v} or None
    plan = plan_runs(runs_dir, runs, seeds)
    trained, skipped, train_seconds, extra = train_all(plan, profile, jobs, followups, overrides)
    if skipped:
        console.print(f"already finished (kept): {', '.join(skipped)}")

    console.print("scoring on held-out shapes ...")
    data = load_eval_data(**data_args)
    boards = _boards({s: [j for j in plan if j.seed == s] for s in seeds}, data, extra, jobs, profile, outputs)
    claims = judge_claims(raw_scores(boards), data.families, _loss_spread(plan))

    everyday = next((j for j in plan if j.run == EVERYDAY), None)
    everyday_board = None
    if everyday is not None and is_finished(everyday.folder):
        # the everyday model on what people bring: each user-input family at its own size
        everyday_board = run_leaderboard([everyday.folder], data=load_eval_data(n=8, size=eval_size,
                                                                                user_n=USER_FAMILY_N),
                                         threads=1, backend="torch", outputs=outputs, reference=False)
    # the colour table of every wide-palette run (the everyday m8), computed in the pool or, if not there, here
    tables = [v for k, v in extra.items() if k[0] == "colours"]
    left = [j for j in plan if ("colours", j.key) not in extra and is_wide_palette(j.folder)]
    if left:
        tables.append(colours_of([str(j.folder) for j in left]))
    colour_table = merge_colour_tables(tables)
    first = boards[seeds[0]]
    written = write_outputs(first, out_dir=out, by_family=True)
    render_terminal(first, console, by_family=True, written=written)
    curves = plot_loss_curves([j for j in plan if j.seed == seeds[0]], out / "loss_curves.png")
    notes = deviations(runs_dir / f"seed{seeds[0]}", runs, profile)

    def report_now(sweep_claims=None, sweep_png=None, sweep_boards=None, pending=()) -> Path:
        return write_report(out, profile, plan, seeds, boards, claims, curves, notes, train_seconds,
                            time.perf_counter() - t0, colour_table, everyday_board, sweep_claims, sweep_png,
                            sweep_boards, sweep_pending=pending)

    failing = [c for c in claims if c.verdict == DOES_NOT_HOLD] if sweep else []
    # the claims and the leaderboard now, not hours later after a budget sweep (rewritten when the sweep ends)
    report = report_now(pending=[c.claim.id for c in failing])
    sweep_claims: dict = {}
    if sweep:
        pair_runs = list(dict.fromkeys(r for c in failing for r in (c.better, c.worse)))
        if pair_runs:
            console.print(f"report so far: {report}; budget sweep: {', '.join(pair_runs)} at {SWEEP_SCALE}x the "
                          f"steps for claims {', '.join(str(c.claim.id) for c in failing)}")
            splan = plan_runs(runs_dir, pair_runs, seeds, SWEEP_SCALE)
            t2, _, s2, extra2 = train_all(splan, profile, jobs, followups, overrides)
            trained += t2
            train_seconds.update(s2)
            sweep_boards = _boards({s: [j for j in splan if j.seed == s] for s in seeds}, data, extra2, jobs,
                                   profile, outputs)
            results = judge_claims(raw_scores(sweep_boards), data.families, _loss_spread(splan),
                                   claims=[c.claim for c in failing])
            for c, r in zip(failing, results):  # the same pair as at 1x (claim 7: the 1x runner-up)
                sweep_claims[c.claim.id] = r if (r.better, r.worse) == (c.better, c.worse) else judge_claims(
                    raw_scores(sweep_boards), data.families, claims=[dataclasses.replace(c.claim, worse=c.worse)])[0]
            images = {(j.run, j.scale): training_images(j.config(profile, overrides)) for j in plan + splan}

            png = plot_budget_sweep(claims, sweep_claims, raw_scores(boards), raw_scores(sweep_boards), images,
                                    out / "budget_sweep.png", data.families)
            report = report_now(sweep_claims, png, sweep_boards)
        else:
            console.print("budget sweep: every claim holds or cannot be tested here; nothing to sweep")

    complete = all(is_finished(j.folder) for j in plan) and all(b.ok for b in boards.values())
    for c in claims:
        console.print(f"claim {c.claim.id} ({c.claim.finding}): [bold]{c.verdict}[/]" +
                      (" (one seed)" if c.one_seed and c.verdict != NOT_TESTABLE else ""))
    console.print(f"report: {report}  ({time.perf_counter() - t0:.0f} s)")
    return ReproduceResult(out, trained, skipped, complete, report, time.perf_counter() - t0, claims)
