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

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .polycolor_core.profiles import get_profile, profile_train_settings
from .polycolor_core.train import config_from_profile, is_finished, make_progress, stage_bounds, train
from .polycolor_core.variants import get_variant


@dataclass
class ReproduceResult:
    out: Path
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    complete: bool = False
    report: Path | None = None
    seconds: float = 0.0


def train_all(models: list[str], profile: str, runs: Path, jobs: int | None = None
              ) -> tuple[list[str], list[str], dict[str, float]]:
    """Train the variants without a finished run; one overall bar plus a bar per model in training.

    ``jobs`` models train at once in worker processes (None = auto, see ``plan_jobs``); 1 trains them one after
    another in this process.
    """
    todo = [m for m in models if not is_finished(runs / m)]
    skipped = [m for m in models if m not in todo]
    jobs, threads = plan_jobs(jobs, len(todo), profile)
    seconds: dict[str, float] = {}
    progress = make_progress()
    with progress:
        overall = progress.add_task(f"reproduce ({profile})", total=len(models), completed=len(skipped),
                                    info=f"models, {jobs} at a time" if jobs > 1 else "models")
        if jobs <= 1:
            for name in todo:
                seconds[name] = _train_one(name, profile, runs / name, progress)
                progress.advance(overall)
        else:
            seconds = _train_in_workers(todo, profile, runs, jobs, threads, progress, overall)
    return [m for m in todo if m in seconds], skipped, seconds


def _train_one(name: str, profile: str, run: Path, progress) -> float:
    """Train (or resume) one model with the profile's settings; returns its wall seconds."""
    t0 = time.perf_counter()
    train(config_from_profile(name, profile, out=str(run)), resume=True, progress=progress)
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


def estimated_cost(name: str, profile: str) -> float:
    """A rough relative training cost (steps x pixels x sqrt(parameters)), to start the longest runs first."""
    from .polycolor_core.model import count_parameters, create_model
    from .polycolor_core.text import text_dim

    cfg = config_from_profile(name, profile)
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


def _train_worker(name: str, profile: str, run: str, threads: int, queue) -> tuple[str, float]:
    """One model in a worker process; its prints (LPIPS notes, hub probes) go to RUN/train.log."""
    import contextlib

    import torch

    torch.set_num_threads(threads)
    Path(run).mkdir(parents=True, exist_ok=True)
    with open(Path(run) / "train.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return name, _train_one(name, profile, Path(run), _QueueProgress(queue, name))


def _train_in_workers(todo, profile, runs, jobs, threads, progress, overall) -> dict[str, float]:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    order = sorted(todo, key=lambda m: -estimated_cost(m, profile))  # longest first: the last to end is short
    seconds: dict[str, float] = {}
    bars: dict[str, int] = {}
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        q = manager.Queue()
        pending = {pool.submit(_train_worker, m, profile, str(runs / m), threads, q) for m in order}

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
                name, secs = fut.result()  # a worker's exception surfaces here, with its traceback
                seconds[name] = secs
                if name in bars:
                    progress.remove_task(bars.pop(name))
                progress.advance(overall)
        drain()
    return seconds


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curves(runs: Path, models: list[str], dest: Path) -> Path | None:
    """One PNG: training loss and validation in-polygon ΔE per epoch, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for name in models:
        rows = read_metrics(runs / name)
        if not rows:
            continue
        drawn = True
        ep = [r["epoch"] for r in rows]
        a.plot(ep, [r["loss"] for r in rows], marker="o", label=name)
        b.plot(ep, [r.get("val_de76_polygon", float("nan")) for r in rows], marker="o", label=name)
    if not drawn:
        plt.close(fig)
        return None
    a.set(title="training loss (composite)", xlabel="epoch", yscale="log")
    b.set(title="validation ΔE76 inside the polygon", xlabel="epoch", yscale="log")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)
    return dest


def deviations(runs: Path, models: list[str], profile: str) -> list[str]:
    """Plain statements of every way this run differs from the study's setup (the ``report`` profile), from
    each model's saved settings (``ModelInfo``); the profile's settings stand in for a model not trained yet."""
    from .polycolor_core.modelinfo import ModelInfo

    notes: list[str] = []
    prof = get_profile(profile)
    study = get_profile("report").train
    for name in models:
        info = ModelInfo.find(runs / name)
        # a model's own saved settings win; the profile's are the fallback for a model with no checkpoint yet
        t = (info.train_config if info is not None else {}) or profile_train_settings(prof, name)
        weights = (info.loss_weights if info is not None else None) or dataclasses.asdict(get_variant(name).loss)
        precision = info.precision if info is not None else None
        has_lpips = weights.get("lpips", 0) > 0 and not (info is not None and info.lpips_dropped)
        notes += [f"{name}: {n}" for n in _setting_notes(t, has_ssim=weights.get("ssim", 0) > 0,
                                                         precision=precision, has_lpips=has_lpips)]
        if info is None:
            continue
        if info.lpips_dropped:
            notes.append(f"{name}: {info.lpips_note or 'LPIPS term dropped'}")
        enc = info.text_encoder.name
        study_enc = str(study.get("text_encoder", "clip-vit-b32")).split(":", 1)[0]
        if enc and enc != study_enc:
            notes.append(f"{name}: text encoder {enc} ({info.text_encoder.dim}-d) instead of CLIP ViT-B/32 "
                         f"(the `report` profile's {study_enc}; CLIP weights need a download; see `polycolor train "
                         "--help`).")
    return _dedupe_model_notes(notes, models)


def _setting_notes(t: dict, has_ssim: bool = True, precision: str | None = None,
                   has_lpips: bool = False) -> list[str]:
    """Deviations of one model's settings ``t`` from the study's (``PROFILES["report"]``)."""
    study = get_profile("report").train
    size, lr, batch = study["image_size"], study["lr"], study["batch_size"]
    notes = []
    if t.get("image_size", size) != size:
        notes.append(f"works at {t['image_size']} px (the study: {size} px); the leaderboard scores at 128 px by "
                     "resizing inputs down and predictions back up.")
    if t.get("size_schedule"):
        stages = ", ".join(f"{share:.0%} at {sz} px" for sz, share in t["size_schedule"])
        notes.append(f"progressive resizing: {stages}, the rest at {t['image_size']} px (the study: every step at "
                     f"{size} px), each stage with its own warm-up/cosine.")
    if t.get("lr", lr) != lr:
        notes.append(f"peak learning rate {t['lr']:g} (the study: {lr:g}), to converge within the CPU budget.")
    if t.get("batch_size", batch) != batch:
        notes.append(f"batch size {t['batch_size']} (the `report` profile: {batch}): more optimiser steps in the CPU "
                     "budget.")
    if precision is None and t.get("bf16"):  # settings of a run written before `precision`
        precision = "bf16"
    if precision is not None and precision != study.get("precision", "fp32"):
        why = " (chosen by precision 'auto': this hardware has native bf16)" if t.get("precision") == "auto" else ""
        notes.append(f"{precision} autocast in training{why} (the study: {study.get('precision', 'fp32')}).")
    if t.get("conditioning", "text") != study.get("conditioning", "text"):
        notes.append(f"conditioning {t['conditioning']}: the text embedding plus one token of the resolved RGB (the "
                     "study: the text embedding only); it measured best on held-out colour names and hex codes.")
    if t.get("colours"):
        notes.append(f"training palette {t['colours']} (the study: its 8 colour names); held-out names are never "
                     "drawn.")
    if t.get("lpips_warmup_frac") and has_lpips:
        notes.append(f"the LPIPS term's weight ramps from 0 to its value over the first {t['lpips_warmup_frac']:.0%} "
                     "of the steps (the study: constant). At its full weight from step 0, m2 stalls with every "
                     "polygon one mean colour (canonical dE00 42.9 vs 9.7 ramped).")
    if t.get("ssim_warmup_frac") and has_ssim:
        notes.append(f"the SSIM term's weight ramps from 0 to its value over the first {t['ssim_warmup_frac']:.0%} of "
                     "the steps (the study: constant). Short runs with SSIM at full weight from step 0 stall with "
                     "every polygon one mean colour.")
    return notes


def _dedupe_model_notes(notes: list[str], models: list[str]) -> list[str]:
    """Collapse "m1: X", "m2: X" ... into "m1, m2: X" ("all models: X" when every model shares it)."""
    grouped: dict[str, list[str]] = {}
    plain: list[str] = []
    for n in notes:
        head, sep, rest = n.partition(": ")
        if sep and head.startswith("m") and head[1:].isdigit():
            names = grouped.setdefault(rest, [])
            if head not in names:
                names.append(head)
        else:
            plain.append(n)
    out = []
    for rest, names in grouped.items():
        who = "all models" if len(models) > 1 and names == list(models) else ", ".join(names)
        out.append(f"{who}: {rest}")
    return plain + out


USER_FAMILY_N = 2  # held-out images per user-input family in the report (each ~0.6 s to score per row)


def run_reproduce(profile: str = "cpu", out: Path = Path("reproduce-cpu"), models: list[str] | None = None,
                  eval_n: int | None = None, eval_size: int = 128, jobs: int | None = None) -> ReproduceResult:
    from rich.console import Console

    from .eval.render import render_terminal
    from .eval.leaderboard import run_leaderboard, write_outputs

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    t0 = time.perf_counter()
    models = [get_variant(m).name for m in (models or [f"m{i}" for i in range(1, 9)])]
    prof = get_profile(profile)
    out = Path(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]polycolor reproduce[/] profile [cyan]{profile}[/]: {prof.description}")
    trained, skipped, train_seconds = train_all(models, profile, runs, jobs)
    if skipped:
        console.print(f"already finished (kept): {', '.join(skipped)}")

    console.print("scoring on held-out shapes ...")
    # both outputs (the study's raw picture and the composite users get) and a few of each user-input family at
    # its own size; the torch backend, which every checkpoint has (auto would export each model to ONNX first);
    # models scored in parallel processes like training (one per core, one thread each)
    board = run_leaderboard(models, runs_dir=runs, n=eval_n or prof.eval_n, size=eval_size, threads=1, backend="torch",
                            outputs=("raw", "composite"), user_n=USER_FAMILY_N,
                            jobs=plan_jobs(jobs, len(models), profile)[0])
    written = write_outputs(board, out_dir=out, by_family=True)
    render_terminal(board, console, by_family=True, written=written)
    curves = plot_loss_curves(runs, models, out / "loss_curves.png")
    notes = deviations(runs, models, profile)
    report = write_report(out, profile, models, board, curves, notes, runs, train_seconds,
                          time.perf_counter() - t0)
    complete = all(is_finished(runs / m) for m in models) and board.ok
    console.print(f"report: {report}  ({time.perf_counter() - t0:.0f} s)")
    return ReproduceResult(out, trained, skipped, complete, report, time.perf_counter() - t0)


def _lpips_lines(runs: Path, models: list[str]) -> list[str]:
    """Which models trained with the LPIPS term and where its weights came from (each model's saved settings)."""
    from .polycolor_core.modelinfo import ModelInfo

    infos = {m: ModelInfo.find(runs / m) for m in models}
    used = [m for m, i in infos.items() if i is not None and i.lpips_source]
    if not used:
        return []
    sources = sorted({infos[m].lpips_source for m in used})
    return [f"LPIPS used in training for {', '.join(used)}; weights: {'; '.join(sources)}.", ""]


def write_report(out: Path, profile: str, models: list[str], board, curves: Path | None, notes: list[str],
                 runs: Path, train_seconds: dict[str, float], seconds: float) -> Path:
    from .polycolor_core import __version__
    from .polycolor_core.modelinfo import ModelInfo
    from .eval.report import family_markdown_table, markdown_table

    prof = get_profile(profile)
    lines = [
        "# polycolor: the eight-model study, reproduced",
        "",
        f"polycolor {__version__}, profile `{profile}` ({prof.description}). Total wall time {seconds / 60:.1f} min.",
        "",
        "## Setup",
        "",
        "Eight conditional UNets (diffusers `UNet2DConditionModel`, cross-attention on a frozen text embedding of "
        "the colour name) trained with the composite loss (MSE + 0.5 LPIPS + 0.2 (1-SSIM) + 0.3 L1 in CIE-LAB, "
        "per variant), AdamW (wd 1e-4), 10% linear warm-up then cosine decay, gradient clipping at 1.0, "
        "paired flips/rotations. Training data: " + prof.train.get("data", "") + ".",
        "",
        "Profile settings: " + ", ".join(f"`{k}={v}`" for k, v in prof.train.items()) + ".",
        "",
        *[f"{name} only: " + ", ".join(f"`{k}={v}`" for k, v in extra.items()) + "." for name, extra in
          prof.variants.items() if name in models],
        "",
        "## Deviations from the study",
        "",
        *([f"- {n}" for n in notes] or ["- none"]),
        "",
        *_lpips_lines(runs, models),
        f"## Leaderboard (held-out shapes, scored at {board.data.size or 128} px; user-input families at their own size)",
        "",
        f"Data: {board.data.description}. Sorted by in-polygon CIEDE2000 (lower is better).",
        "",
        markdown_table(board),
        "",
        "The `flood-fill (reference)` row is a classical algorithm (flood fill from the border, paint the rest "
        "with the named colour): it shows the ceiling on these clean images.",
        "",
        "## Per-family breakdown",
        "",
        family_markdown_table(board),
        "",
        "## Pictures",
        "",
        "Contact sheet (rows = models, columns = the same held-out samples):",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
    ]
    if curves is not None:
        lines += ["Loss curves:", "", f"![loss curves]({curves.name})", ""]
    lines += ["## Per-model training", "",
              "| model | epochs | steps | precision | train time (s) | last loss | val ΔE76 polygon | sample grids |",
              "|---|---|---|---|---|---|---|---|"]
    for name in models:
        rows = read_metrics(runs / name)
        grids = sorted((runs / name / "samples").glob("epoch_*.png"))
        links = " ".join(f"[{g.stem.split('_')[1]}]({g.relative_to(out).as_posix()})" for g in grids)
        last = rows[-1] if rows else {}
        info = ModelInfo.find(runs / name)
        lines.append(f"| {name} | {last.get('epoch', '-')} | {last.get('step', '-')} | "
                     f"{info.precision if info else '-'} | "
                     f"{train_seconds.get(name, float('nan')):.0f} | {last.get('loss', float('nan')):.4f} | "
                     f"{last.get('val_de76_polygon', float('nan')):.2f} | {links} |")
    lines += ["", "Each model's last sample grid (input | prediction | target):", ""]
    for name in models:
        grids = sorted((runs / name / "samples").glob("epoch_*.png"))
        if grids:
            lines.append(f"**{name}** ![{name}]({grids[-1].relative_to(out).as_posix()})")
            lines.append("")
    report = out / "report.md"
    report.write_text("\n".join(lines))
    summary = {"profile": profile, "models": models, "seconds": seconds, "train_seconds": train_seconds,
               "precision": {m: (i.precision if (i := ModelInfo.find(runs / m)) else None) for m in models},
               "deviations": notes, "leaderboard": board.to_dict(),
               "training": {m: read_metrics(runs / m) for m in models}}
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    return report
