"""``polycolor-eval``: the leaderboard command (click parses, ``render.py`` prints; the logic is in leaderboard.py).

    polycolor-eval --models m1..m8                       # runs/m1 .. runs/m8, held-out synthetic split
    polycolor-eval --models m2,m4,m8 --by-family --out results/
    polycolor-eval --models runs/m4-long,exports/m8-onnx --data ../shared/data/ayna/validation

Exit status: 0 when every requested model was scored (unfinished runs included, flagged), 1 when any was
missing or failed (the message names the command that trains it), 2 for usage errors (bad --models etc.).
"""

from __future__ import annotations

import click

from .heldout import DEFAULT_N, DEFAULT_SIZE, HELDOUT_FAMILIES, load_eval_data
from .leaderboard import run_leaderboard
from .models import DEFAULT_RUNS_DIR, RUNS_ENV
from .render import render_terminal
from .report import write_outputs
from .schema import DEFAULT_SORT, SORT_KEYS

__all__ = ["main"]


def _parse_models(ctx, param, value):
    from .selection import parse_models

    if not value:
        raise click.BadParameter("give at least one model, e.g. --models m1..m8", ctx=ctx, param=param)
    try:
        return parse_models(list(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--models", "-m", multiple=True, required=True, callback=_parse_models, metavar="SELECTION",
              help="Models to score: m3, a range m1..m8, a list m2,m4,m8, 'all', or paths to run folders / "
                   "checkpoints / ONNX exports (repeatable).")
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False), envvar=RUNS_ENV, default=None,
              show_envvar=True, help=f"Folder holding <name>/checkpoint/ for each model name "
                                     f"[default: ./{DEFAULT_RUNS_DIR}].")
@click.option("--data", "data_spec", default=None, metavar="SPEC",
              help="Score on this instead of the held-out synthetic split: a folder in the original layout "
                   "(data.json, inputs/, outputs/) or a data spec (hf:ID[:split], synthetic:...).")
@click.option("--n", type=click.IntRange(min=1), default=None,
              help=f"Number of images (held-out split: default {DEFAULT_N}, split evenly across "
                   f"{', '.join(HELDOUT_FAMILIES)}; --data: at most this many, default all).")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help=f"Image size in px (held-out split: default {DEFAULT_SIZE}, the original format; "
                   "--data: resize to this, default keep).")
@click.option("--user-families", "user_n", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Add N held-out images of each user-input family (anti-aliased, 256-1024 px, JPEG, coloured "
                   "ink, paper, thick pens, all at once), each scored at its own size.")
@click.option("--output", "output", type=click.Choice(["raw", "composite", "both"]), default="both", show_default=True,
              help="What each model row scores: raw = the model's whole picture (row 'm8'); composite = what "
                   "Colorizer users get, the fill pasted into their own image (row 'm8 composite'); both.")
@click.option("--by-family", is_flag=True, help="Add a per-family breakdown table.")
@click.option("--sort", type=click.Choice(SORT_KEYS), default=DEFAULT_SORT, show_default=True,
              help="Rank by this metric (lower-is-better metrics ascending, the others descending).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the table as CSV.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False), help="Write the table as markdown.")
@click.option("--sheet", "sheet_path", type=click.Path(dir_okay=False),
              help="Write a PNG contact sheet (rows: input, target, each model; columns: samples).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write all four: leaderboard.json, leaderboard.csv, leaderboard.md, contact_sheet.png.")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnx"]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Inference precision (auto: the Colorizer's choice).")
@click.option("--lpips", "lpips_mode", type=click.Choice(["auto", "local", "off"]), default="auto",
              show_default=True, help="auto: use/download AlexNet weights; local: only weights already on "
                                      "disk (no network); off: skip LPIPS.")
@click.option("--reference/--no-reference", default=True, show_default=True,
              help="Include the classical flood-fill reference row.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch / onnxruntime (default: their choice). On a CPU shared with other jobs, 1 can be "
                   "much faster than oversubscribed threads.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Models scored at once, each in its own process with its share of the cores (2 on a 2-core CPU "
                   "roughly halves the time of a many-model leaderboard; the numbers do not change).")
def main(models, runs_dir, data_spec, n, size, user_n, output, by_family, sort, json_path, csv_path, md_path, sheet_path,
         out_dir, backend, device, batch_size, precision, lpips_mode, reference, threads, jobs):
    """Score trained polycolor models on held-out data and rank them.

    Model names are looked up as <runs>/<name>/checkpoint/ (what `polycolor train m3 --out runs/m3` writes);
    <runs> is --runs, else $POLYCOLOR_RUNS, else ./runs. The default data are a held-out synthetic split
    (seed 20241129, never used for training) covering the canonical, shapes, pose and dark families.
    """
    import os
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..polycolor_core.data.datasets import DataError

    # our own progress bar replaces the text encoder's "Loading weights" tqdm bars (one per model)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        try:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        except Exception:  # noqa: BLE001 - cosmetic only
            pass

    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(highlight=False, width=180)
    err = Console(stderr=True, highlight=False)

    try:
        data = load_eval_data(data_spec, n, size, user_n=user_n)
    except (DataError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--data" if data_spec else "--n/--size") from exc

    bf16 = {"auto": None, "fp32": False, "bf16": True}[precision]
    progress = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)
    task = progress.add_task("loading", total=None)

    def on_progress(desc: str, done: int, total: int) -> None:
        progress.update(task, description=desc, completed=done, total=total)

    with progress:
        lb = run_leaderboard(models, runs_dir, data=data, sort=sort, backend=backend, device=device,
                             batch_size=batch_size, bf16=bf16, lpips=lpips_mode, reference=reference,
                             threads=threads, progress=on_progress, jobs=jobs,
                             outputs=("raw", "composite") if output == "both" else (output,))
    written = write_outputs(lb, json=json_path, csv=csv_path, markdown=md_path, sheet=sheet_path,
                            out_dir=out_dir, by_family=by_family)
    render_terminal(lb, console, by_family=by_family, written=written)
    click.get_current_context().exit(0 if lb.ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
