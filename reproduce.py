"""``polycolor reproduce``: the eight-model study in one command.

Trains every requested variant that has no finished checkpoint (resuming unfinished ones), runs the
leaderboard on held-out shapes, and writes a report folder:

    OUT/runs/mN/...            one run per variant (checkpoint, metrics.jsonl, samples/epoch_NNN.png)
    OUT/report.md              setup, leaderboard, per-family breakdown, loss curves, sample grids, deviations
    OUT/report.json            the numbers behind it
    OUT/leaderboard.{json,csv,md}, OUT/contact_sheet.png, OUT/loss_curves.png

Interrupting and rerunning continues where it stopped without redoing finished models.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .polycolor_core.folderlock import folder_lock
from .polycolor_core.profiles import get_profile
from .polycolor_core.train import config_from_profile, is_finished, make_progress, stage_bounds, train
from .polycolor_core.variants import get_variant
from .reproduce_report import deviations, plot_loss_curves, write_report


@dataclass
class ReproduceResult:
    out: Path
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    complete: bool = False
    report: Path | None = None
    seconds: float = 0.0


def train_all(models: list[str], profile: str, runs: Path, jobs: int | None = None, followups=None,
              overrides: dict | None = None) -> tuple[list[str], list[str], dict[str, float], dict]:
    """Train the variants without a finished run; one overall bar plus a bar per model in training.

    ``jobs`` models train at once in worker processes (None = auto, see ``plan_jobs``); 1 trains them one after
    another in this process. ``followups(name) -> {key: (fn, args)}``: work to run in the same worker pool as soon
    as model ``name`` is trained (or at once for a finished one): ``polycolor reproduce`` scores each model there,
    so the cores that finish the short ablation models score them while m8 still trains. Returns (trained,
    skipped, seconds per model, {key: result} of the followups; empty when ``jobs`` is 1). ``overrides``:
    TrainConfig fields set for every model on top of the profile (``--text-encoder``).
    """
    todo = [m for m in models if not is_finished(runs / m)]
    skipped = [m for m in models if m not in todo]
    jobs, threads = plan_jobs(jobs, len(todo), profile)
    seconds: dict[str, float] = {}
    extra: dict = {}
    progress = make_progress()
    with progress:
        overall = progress.add_task(f"reproduce ({profile})", total=len(models), completed=len(skipped),
                                    info=f"models, {jobs} at a time" if jobs > 1 else "models")
        if jobs <= 1:
            for name in todo:
                seconds[name] = _train_one(name, profile, runs / name, progress, overrides)
                progress.advance(overall)
        else:
            seconds, extra = _train_in_workers(todo, skipped, profile, runs, jobs, threads, progress, overall,
                                               followups, overrides)
    return [m for m in todo if m in seconds], skipped, seconds, extra


def _train_one(name: str, profile: str, run: Path, progress, overrides: dict | None = None) -> float:
    """Train (or resume) one model with the profile's settings (and ``overrides``); returns its wall seconds."""
    t0 = time.perf_counter()
    train(config_from_profile(name, profile, out=str(run), **(overrides or {})), resume=True, progress=progress)
    return time.perf_counter() - t0


def plan_jobs(jobs: int | None, n_models: int, profile: str) -> tuple[int, int]:
    """(models trained at once, torch threads each). Auto: on a GPU one at a time; on CPU one job per core.

    The CPU profile's models are small (32 px, batch 4) and use two cores poorly: on this project's 2-core
    reference machine two single-threaded runs side by side finish in ~0.6x the time of the same two runs one
    after another with two threads each (m1: 80 s single-threaded beside another run vs 64-70 s alone).
    """
    import torch

    cores = max(1, torch.get_num_threads())
    on_gpu = torch.cuda.is_available() and get_profile(profile).train.get("device", "auto") in ("auto", "cuda")
    if jobs is None:
        jobs = 1 if on_gpu else min(n_models, cores)
    jobs = max(1, min(int(jobs), max(1, n_models)))
    return jobs, max(1, cores // jobs)


def estimated_cost(name: str, profile: str, overrides: dict | None = None) -> float:
    """A rough relative training cost (steps x pixels x sqrt(parameters)), to start the longest runs first."""
    from .polycolor_core.model import count_parameters, create_model
    from .polycolor_core.text import text_dim

    cfg = config_from_profile(name, profile, **(overrides or {}))
    variant = get_variant(name).tiny() if cfg.tiny_model else get_variant(name)
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


def _train_worker(name: str, profile: str, run: str, threads: int, queue, overrides=None) -> tuple[str, float]:
    """One model in a worker process; its prints (LPIPS notes, hub probes) go to RUN/train.log."""
    import contextlib

    import torch

    torch.set_num_threads(threads)
    Path(run).mkdir(parents=True, exist_ok=True)
    with open(Path(run) / "train.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return name, _train_one(name, profile, Path(run), _QueueProgress(queue, name), overrides)


def _train_in_workers(todo, skipped, profile, runs, jobs, threads, progress, overall, followups=None,
                      overrides=None) -> tuple[dict[str, float], dict]:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    order = sorted(todo, key=lambda m: -estimated_cost(m, profile, overrides))  # longest first: the last to end is short
    seconds: dict[str, float] = {}
    bars: dict[str, int] = {}
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        q = manager.Queue()
        pending = {pool.submit(_train_worker, m, profile, str(runs / m), threads, q, overrides) for m in order}
        extra: dict = {}
        jobs_of: dict = {}  # followup future -> its key

        def follow(name: str) -> None:
            for key, (fn, args) in (followups(name) if followups else {}).items():
                fut = pool.submit(fn, *args)
                jobs_of[fut] = key
                pending.add(fut)

        for name in skipped:
            follow(name)

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
                follow(name)
        drain()
    return seconds, extra


def wide_palette_models(runs: Path, models: list[str]) -> list[str]:
    """The models whose checkpoint records a training palette beyond the data spec's colours (``--colours``)."""
    from .polycolor_core.modelinfo import ModelInfo

    return [m for m in models if (info := ModelInfo.find(runs / m)) is not None and info.colours]


# The report's scoring is sized to the cpu profile's 12-minute budget (it runs beside and after m8's training):
USER_FAMILY_N = 1  # held-out images per user-input family (each 0.03-0.9 s to score per row: they are 128-1024 px)
COLOUR_TABLE_LIMIT = 40  # the first 40 names of each colour set (all 8 canonical, 27 CSS, 40 of 168 XKCD, 32 hex);
# `python -m polycolor.eval.colours runs/m8` scores them all


def run_reproduce(profile: str = "cpu", out: Path = Path("reproduce-cpu"), models: list[str] | None = None,
                  eval_n: int | None = None, eval_size: int = 128, jobs: int | None = None,
                  text_encoder: str | None = None, precision: str | None = None) -> ReproduceResult:
    """Train, score and report (module docstring). ``text_encoder``: every model's, instead of the profile's (the
    report profile's CLIP needs a download; ``minilm-l6`` ships with the package); the report states it.
    ``precision``: every model's training precision instead of the profile's (``auto`` decides per model by
    measurement: ``polycolor_core/training_precision.py``). ``out`` is locked meanwhile (``folderlock``): a second
    reproduce at the same folder stops with a clear error instead of training the same models twice."""
    with folder_lock(out, "polycolor reproduce"):
        return _run_reproduce(profile, Path(out), models, eval_n, eval_size, jobs, text_encoder, precision)


def _run_reproduce(profile, out, models, eval_n, eval_size, jobs, text_encoder, precision) -> ReproduceResult:
    import functools

    from rich.console import Console

    from .eval.colours import colour_table_job, merge_colour_tables
    from .eval.heldout import load_eval_data
    from .eval.leaderboard import run_leaderboard, write_outputs
    from .eval.render import render_terminal

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    t0 = time.perf_counter()
    models = [get_variant(m).name for m in (models or [f"m{i}" for i in range(1, 9)])]
    prof = get_profile(profile)
    out = Path(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]polycolor reproduce[/] profile [cyan]{profile}[/]: {prof.description}")
    # Scoring: both outputs (the study's raw picture and the composite users get) and a few of each user-input family
    # at its own size, on the torch backend (which every checkpoint has; auto would export each model to ONNX
    # first). Each model is scored in the training pool as soon as it is trained, and the wide-palette models get
    # the colour-generalisation table there too; whatever is left (one job at a time, a failed job) is scored below.
    data_args = dict(n=eval_n or prof.eval_n, size=eval_size, user_n=USER_FAMILY_N)
    outputs = ("raw", "composite")
    colours_of = functools.partial(colour_table_job, threads=1, n_hex=32, limit=COLOUR_TABLE_LIMIT)  # [paths] -> table

    def followups(name: str) -> dict:
        from .eval.models import resolve_models
        from .eval.scoring import score_job

        ref = resolve_models([name], runs)[0]
        score = functools.partial(score_job, backend="torch", threads=1)  # one thread per worker, like training
        jobs_for = {("score", name): (score, (ref, data_args, "auto", outputs))} if ref.found else {}
        if ref.found and wide_palette_models(runs, [name]):
            jobs_for[("colours", name)] = (colours_of, ([str(runs / name)],))
        return jobs_for

    overrides = {k: v for k, v in (("text_encoder", text_encoder), ("precision", precision)) if v} or None
    trained, skipped, train_seconds, extra = train_all(models, profile, runs, jobs, followups, overrides)
    if skipped:
        console.print(f"already finished (kept): {', '.join(skipped)}")

    console.print("scoring on held-out shapes ...")
    scored = {key[1]: value[1] for key, value in extra.items() if key[0] == "score"}  # value: (name, rows)
    board = run_leaderboard(models, runs_dir=runs, data=load_eval_data(**data_args), threads=1, backend="torch",
                            outputs=outputs, jobs=plan_jobs(jobs, len(models), profile)[0], scored=scored)
    tables = [v for k, v in extra.items() if k[0] == "colours"]
    left = [m for m in wide_palette_models(runs, models) if ("colours", m) not in extra]
    if left:
        tables.append(colours_of([str(runs / m) for m in left]))
    colour_generalisation = merge_colour_tables(tables)
    written = write_outputs(board, out_dir=out, by_family=True)
    render_terminal(board, console, by_family=True, written=written)
    curves = plot_loss_curves(runs, models, out / "loss_curves.png")
    notes = deviations(runs, models, profile)
    report = write_report(out, profile, models, board, curves, notes, runs, train_seconds,
                          time.perf_counter() - t0, colour_generalisation)
    complete = all(is_finished(runs / m) for m in models) and board.ok
    console.print(f"report: {report}  ({time.perf_counter() - t0:.0f} s)")
    return ReproduceResult(out, trained, skipped, complete, report, time.perf_counter() - t0)


