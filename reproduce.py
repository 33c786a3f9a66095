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

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .polycolor_core.profiles import get_profile
from .polycolor_core.train import config_from_profile, is_finished, make_progress, train
from .polycolor_core.variants import get_variant


@dataclass
class ReproduceResult:
    out: Path
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    complete: bool = False
    report: Path | None = None
    seconds: float = 0.0


def train_all(models: list[str], profile: str, runs: Path) -> tuple[list[str], list[str], dict[str, float]]:
    """Train the variants without a finished run; one overall bar plus a bar for the model in training."""
    trained, skipped, seconds = [], [], {}
    progress = make_progress()
    with progress:
        overall = progress.add_task(f"reproduce ({profile})", total=len(models), info="models")
        for name in models:
            run = runs / name
            if is_finished(run):
                skipped.append(name)
                progress.advance(overall)
                continue
            cfg = config_from_profile(name, profile, out=str(run))
            t0 = time.perf_counter()
            train(cfg, resume=True, progress=progress)
            seconds[name] = time.perf_counter() - t0
            trained.append(name)
            progress.advance(overall)
    return trained, skipped, seconds


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
    """Plain statements of every way this run differs from the study's setup."""
    notes: list[str] = []
    prof = get_profile(profile)
    t = prof.train
    if t.get("image_size", 128) != 128:
        notes.append(f"Models work at {t['image_size']} px (the study: 128 px); the leaderboard scores at 128 px "
                     "by resizing inputs down and predictions back up.")
    if t.get("size_schedule"):
        stages = ", ".join(f"{share:.0%} at {size} px" for size, share in t["size_schedule"])
        notes.append(f"Progressive resizing: {stages}, the rest at {t['image_size']} px (the study: every step at "
                     "128 px), each stage with its own warm-up/cosine.")
    if t.get("lr", 1e-4) != 1e-4:
        notes.append(f"Peak learning rate {t['lr']:g} (the study: 1e-4), to converge within the CPU budget.")
    if t.get("batch_size", 16) != 16:
        notes.append(f"Batch size {t['batch_size']} (the `report` profile: 16): more optimiser steps in the CPU budget.")
    if t.get("bf16"):
        notes.append("bf16 autocast in training (the study: fp32).")
    for name in models:
        ck = runs / name / "checkpoint" / "config.json"
        if not ck.exists():
            continue
        meta = json.loads(ck.read_text())
        if meta.get("lpips_dropped"):
            notes.append(f"{name}: {meta.get('lpips_note') or 'LPIPS term dropped'}")
        enc = meta["text_encoder"]["name"]
        if enc != "clip-vit-b32":
            notes.append(f"{name}: text encoder {enc} ({meta['text_encoder']['dim']}-d) instead of CLIP ViT-B/32 "
                         "(CLIP weights need a download; see `polycolor train --help`).")
    return _dedupe_model_notes(notes)


def _dedupe_model_notes(notes: list[str]) -> list[str]:
    """Collapse "m1: X", "m2: X" ... into "m1, m2: X"."""
    grouped: dict[str, list[str]] = {}
    plain: list[str] = []
    for n in notes:
        head, sep, rest = n.partition(": ")
        if sep and head.startswith("m") and head[1:].isdigit():
            grouped.setdefault(rest, []).append(head)
        else:
            plain.append(n)
    return plain + [f"{', '.join(names)}: {rest}" for rest, names in grouped.items()]


def run_reproduce(profile: str = "cpu", out: Path = Path("reproduce-cpu"), models: list[str] | None = None,
                  eval_n: int | None = None, eval_size: int = 128) -> ReproduceResult:
    from rich.console import Console

    from .eval.cli import render_terminal
    from .eval.leaderboard import run_leaderboard, write_outputs

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    t0 = time.perf_counter()
    models = [get_variant(m).name for m in (models or [f"m{i}" for i in range(1, 9)])]
    prof = get_profile(profile)
    out = Path(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]polycolor reproduce[/] profile [cyan]{profile}[/]: {prof.description}")
    trained, skipped, train_seconds = train_all(models, profile, runs)
    if skipped:
        console.print(f"already finished (kept): {', '.join(skipped)}")

    console.print("scoring on held-out shapes ...")
    board = run_leaderboard(models, runs_dir=runs, n=eval_n or prof.eval_n, size=eval_size, threads=1)
    written = write_outputs(board, out_dir=out, by_family=True)
    render_terminal(board, console, by_family=True, written=written)
    curves = plot_loss_curves(runs, models, out / "loss_curves.png")
    notes = deviations(runs, models, profile)
    report = write_report(out, profile, models, board, curves, notes, runs, train_seconds,
                          time.perf_counter() - t0)
    complete = all(is_finished(runs / m) for m in models) and board.ok
    console.print(f"report: {report}  ({time.perf_counter() - t0:.0f} s)")
    return ReproduceResult(out, trained, skipped, complete, report, time.perf_counter() - t0)


def write_report(out: Path, profile: str, models: list[str], board, curves: Path | None, notes: list[str],
                 runs: Path, train_seconds: dict[str, float], seconds: float) -> Path:
    from . import __version__
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
        "## Deviations from the study",
        "",
        *([f"- {n}" for n in notes] or ["- none"]),
        "",
        f"## Leaderboard (held-out shapes, scored at {board.data.size} px)",
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
    lines += ["## Per-model training", "", "| model | epochs | steps | train time (s) | last loss | val ΔE76 polygon | sample grids |",
              "|---|---|---|---|---|---|---|"]
    for name in models:
        rows = read_metrics(runs / name)
        grids = sorted((runs / name / "samples").glob("epoch_*.png"))
        links = " ".join(f"[{g.stem.split('_')[1]}]({g.relative_to(out).as_posix()})" for g in grids)
        last = rows[-1] if rows else {}
        lines.append(f"| {name} | {last.get('epoch', '-')} | {last.get('step', '-')} | "
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
               "deviations": notes, "leaderboard": board.to_dict(),
               "training": {m: read_metrics(runs / m) for m in models}}
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    return report
