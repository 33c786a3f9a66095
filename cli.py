"""The ``polycolor`` command line. It only parses arguments and renders results; the work is in the core,
``export`` and ``eval``, and ``reproduce``.

    polycolor reproduce                      # the main job: train all eight (CPU profile), rank them, report
    polycolor train m8 --profile cpu --out runs/m8
    polycolor data make data/train --n 500 --family canonical+pose
    polycolor export runs/m8 --out exports/m8
    polycolor infer exports/m8 --data ../shared/data/ayna/validation --out out/
    polycolor-eval --models m1..m8           # the leaderboard (separate command)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .export.config import DEFAULT_BATCH_SIZE
from .polycolor_core.runtime.devices import BACKENDS
from .polycolor_core.runtime.precision import PRECISIONS

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=110)


def _fail(msg: str, code: int = 1) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {msg}", highlight=False)
    sys.exit(code)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="polycolor")
def main() -> None:
    """polycolor: fill a polygon outline with a named colour.

    Start with `polycolor reproduce` (trains the study's eight models on built-in data on this machine's CPU,
    ranks them and writes a report), or `polycolor train --help`.
    """


# --- data --------------------------------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def data() -> None:
    """Make datasets in the original study's folder layout (inputs/, outputs/, data.json)."""


@data.command("make", context_settings=CONTEXT)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", default=56, show_default=True, help="Number of pairs to write.")
@click.option("--family", default="canonical", show_default=True,
              help="Generator families joined by '+': canonical, pose, shapes, dark.")
@click.option("--seed", default=0, show_default=True, help="Generator seed (the same seed gives the same images).")
@click.option("--size", default=128, show_default=True, help="Image size in pixels (the original is 128).")
@click.option("--colours", default=None, help="Comma-separated colour names or #rrggbb (default: the 8 canonical).")
def data_make(out: Path, n: int, family: str, seed: int, size: int, colours: str | None) -> None:
    """Write N generated pairs to OUT in the original layout, with a progress bar.

    Example: polycolor data make data/dark --n 200 --family dark --seed 7
    """
    from .polycolor_core.data.datasets import write_split
    from .polycolor_core.data.synthetic import SyntheticDataset

    try:
        ds = SyntheticDataset(families=family.split("+"), n=n, seed=seed, size=size,
                              colours=colours.split(",") if colours else None)
    except ValueError as exc:
        _fail(str(exc), 2)
    path = write_split(ds, out, progress=True)
    click.echo(f"wrote {n} pairs to {path}")


# --- train -------------------------------------------------------------------------------------------------


def train_config_options(func):
    """One click option per ``TrainConfig`` field (its help text, type and choices), litgpt style.

    Every option defaults to None, meaning "the profile's value" (``config_from_profile`` ignores None).
    Older spellings stay: ``--bf16/--no-bf16`` (-> ``--precision bf16/fp32``), ``--drop-lpips`` (-> ``--lpips drop``).
    """
    import dataclasses
    import typing

    from .polycolor_core.training.trainconfig import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    options = []
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if meta.get("cli", True) is False:
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        kw: dict = {"default": None, "help": meta.get("help", "")}
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if kind is bool:
            decls = [f"{flag}/--no-{flag[2:]}", f.name]
        else:
            decls = [flag, f.name]
            if meta.get("choices"):
                kw["type"] = click.Choice(list(meta["choices"]))
            elif meta.get("parse") is None and kind in (int, float):
                kw["type"] = kind
        options.append(click.option(*decls, **kw))
    options.append(click.option("--bf16/--no-bf16", "bf16", default=None, hidden=True,
                                help="Deprecated: --precision bf16 / --precision fp32."))
    options.append(click.option("--drop-lpips", is_flag=True, default=None,
                                help="Train without the LPIPS term (= --lpips drop; recorded in the checkpoint and reports)."))
    for opt in reversed(options):
        func = opt(func)
    return func


@main.command(context_settings=CONTEXT)
@click.argument("variant")
@click.option("--profile", default="cpu", show_default=True, help="Settings bundle: report (the study's, GPU), cpu, tiny.")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last checkpoint, exactly.")
@train_config_options
def train(variant, profile, resume, bf16, drop_lpips, **settings) -> None:
    """Train VARIANT (m1..m8, or one of reproduce's runs: m8-study, m4-nodark, m8-everyday) with the study's loss,
    optimiser and schedule.

    Every TrainConfig field is an option; unset options take the profile's value
    (`polycolor reproduce --list-profiles` shows them).
    Writes RUN/checkpoint (safetensors + config.json), RUN/metrics.jsonl and RUN/samples/epoch_NNN.png.
    Multi-GPU / multi-node: `torchrun --nproc_per_node 4 -m polycolor.cli train m8 ...`.

    Example: polycolor train m8 --profile cpu --out runs/m8
    """
    import dataclasses

    from .polycolor_core.training.losses import LpipsUnavailable
    from .polycolor_core.model.text import TextEncoderUnavailable
    from .polycolor_core.training.train import config_from_profile, train as run_train
    from .polycolor_core.training.trainconfig import TrainConfig
    from .polycolor_core.model.variants import get_variant

    try:
        from .polycolor_core.training.profiles import RUNS

        key = variant.strip().lower()
        name = key if key in RUNS else get_variant(variant).name  # a study run (m8-study, m4-nodark) or a variant
        parsers = {f.name: f.metadata["parse"] for f in dataclasses.fields(TrainConfig) if f.metadata.get("parse")}
        values = {k: (parsers[k](v) if k in parsers and v is not None else v) for k, v in settings.items()}
        if bf16 is not None and values.get("precision") is None:
            values["precision"] = "bf16" if bf16 else "fp32"
        if drop_lpips:
            values["lpips"] = "drop"
        values["out"] = values.get("out") or f"runs/{name}"
        cfg = config_from_profile(name, profile, **values)
        ckpt = run_train(cfg, resume=resume).checkpoint
    except (LpipsUnavailable, TextEncoderUnavailable, ValueError, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    click.echo(f"checkpoint: {ckpt}")


@main.command("variants", context_settings=CONTEXT)
def variants_cmd() -> None:
    """List the eight variants (widths, depth, heads, loss terms, epochs)."""
    from rich.console import Console
    from rich.table import Table

    from .polycolor_core.model.variants import VARIANTS

    t = Table(title="polycolor variants")
    for c in ("name", "block_out_channels", "layers", "heads", "loss terms", "epochs", "note"):
        t.add_column(c)
    for v in VARIANTS.values():
        t.add_row(v.name, str(v.block_out_channels), str(v.layers_per_block), str(v.heads),
                  " + ".join(v.loss.active()), str(v.epochs), v.description)
    Console().print(t)


# --- export / infer ----------------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Export folder.")
@click.option("--fp16", is_flag=True, help="fp16 weights (for GPU inference).")
@click.option("--text-encoder/--no-text-encoder", "with_text_encoder", default=True,
              help="Also export the text encoder (else only the precomputed colour table).")
@click.option("--colour-table", "colours", default="",
              help="Extra colour names (CSS or #rrggbb) for the precomputed table, comma-separated; the 8 canonical are always in.")
@click.option("--no-check", is_flag=True, help="Skip the onnxruntime-vs-PyTorch parity check (not recommended).")
def export(model: Path, out: Path, fp16: bool, with_text_encoder: bool, colours: str, no_check: bool) -> None:
    """Export MODEL (a run or checkpoint folder) to ONNX with a manifest and a colour-embedding table.

    Every export is checked (onnx checker + onnxruntime vs PyTorch parity) and fails with the numbers if not.

    Example: polycolor export runs/m8 --out exports/m8
    """
    from .export.onnx_export import ExportParityError, export_model
    from .polycolor_core.model.text import TextEncoderUnavailable

    extra = [c.strip() for c in colours.split(",") if c.strip()]
    try:
        path = export_model(model, out, fp16=fp16, with_text_encoder=with_text_encoder, colour_table=extra,
                            check=not no_check)
    except ExportParityError as exc:
        _fail(f"export failed its parity check: {exc}", 1)
    except (ValueError, FileExistsError, TextEncoderUnavailable) as exc:
        _fail(str(exc), 2)
    click.echo(f"exported to {path}")


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--data", "data_path", required=True,
              help="A folder of images, a CSV with image,colour columns, a data.json in the original layout, or "
                   "hf:SPEC (a Hugging Face dataset: hf:DIR, hf:FILE.parquet, hf:HUB_ID[:split]).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--colour", default=None,
              help="Colour for every image (needed for a plain folder of images); 'red,blue' colours each image twice.")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, cuda:N or auto; under torchrun/accelerate 'cuda' means each rank's cuda:LOCAL_RANK.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="auto", show_default=True,
              help="torch backend: auto = bf16 only where the hardware has native bf16, else fp32.")
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Images per model call: any number of inputs is coloured in chunks of this many.")
@click.option("--output", "output", type=click.Choice(["composite", "raw"]), default="composite", show_default=True,
              help="composite: a solid fill of the model's colour pasted into each image at its own size, every "
                   "other pixel untouched; raw: the model's whole picture scaled back (the study's figures).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process (or one rank each under torchrun / accelerate launch); ray: a pool of Ray "
                   "Data actors on the running Ray cluster (RAY_ADDRESS) or a local one (pip install 'polycolor[ray]').")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="--engine ray: actors in the pool [default: one per CPU, or per GPU with --device cuda].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per process or actor [default: the physical cores shared by the local ranks; 1 per Ray actor].")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Keep outputs an earlier run made with the same model, colour and input (OUT/infer_manifest.json); "
                   "--no-resume redoes every item.")
def infer(model: Path, data_path: str, out: Path, colour, backend, device, precision, batch_size, output, engine,
          workers, threads, resume) -> None:
    """Colour every image in --data with MODEL (a run, checkpoint or ONNX export folder).

    Any size and aspect ratio: images are letterboxed to the model's square, never squashed. Outputs keep the
    data.json `output_image` names; bad items are skipped and listed in OUT/report.json. Each output is written
    atomically and recorded in OUT/infer_manifest.json, so a rerun after a crash does only what is missing.

    Example: polycolor infer runs/m8 --data ../shared/data/ayna/validation --out colored/

    At scale: torchrun --nproc_per_node 4 -m polycolor.cli infer ... (or accelerate launch -m polycolor.cli
    infer ...) splits the items across ranks; --engine ray runs Ray Data actors.
    """
    from .export.infer import colorize_dataset

    try:
        report = colorize_dataset(model, data_path, out, colour=colour, backend=backend, device=device,
                                  precision=precision, batch_size=batch_size, progress=True, output=output,
                                  engine=engine, workers=workers, threads=threads, resume=resume)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        _fail(str(exc), 2)
    if "per_rank" not in report:  # a rank other than 0 under torchrun: rank 0 prints the job's summary
        sys.exit(1 if report["skipped"] else 0)
    kept = report["counts"].get("already_done", 0)
    ranks = f" by {len(report['per_rank'])} ranks" if len(report["per_rank"]) > 1 else ""
    click.echo(f"wrote {len(report['written'])} images to {out} ({report.get('backend', '')}{ranks}); "
               f"skipped {kept} already done (same model, colour and input); "
               f"skipped {len(report['skipped'])} that could not be made; details in {out / 'report.json'}")
    for why, n in sorted(report.get("redo_reasons", {}).items()):
        click.echo(f"  redid {n}: {why}")
    for item in report["skipped"]:
        click.echo(f"  skipped {item['input']} ({item.get('colour')}): {item['reason']}")
    if report.get("palette_warning"):
        click.echo(f"warning: {report['palette_warning']}", err=True)
    sys.exit(1 if report["skipped"] else 0)


# --- reproduce ---------------------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.option("--profile", default="cpu", show_default=True,
              help="cpu: the study reproduced on 2 CPU cores (~45 min without native bf16); demo: a 10-minute tour "
                   "that ranks nothing; report: the study's own schedule (GPU); tiny: tests.")
@click.option("--out", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: reproduce-PROFILE].")
@click.option("--models", default="all", show_default=True,
              help="Which runs: all, or names and ranges such as m1..m4,m4-nodark. The runs: m1..m7 and m8-study "
                   "(the study's ablation), m4-nodark (claim 8's control), m8-everyday (the model left for daily use).")
@click.option("--seeds", default="0", show_default=True, metavar="S,S,...",
              help="Train every run once per seed (e.g. 0,1,2); tables show mean ± sd and the claims' paired test "
                   "spans the seeds. Adding seeds to a finished folder trains only the new ones.")
@click.option("--sweep", is_flag=True,
              help="For each claim that does not hold, train its two runs at 4x the steps (same seeds), plot the "
                   "metric against training images and say whether the verdict changes.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Runs trained at once, each in its own process [default: one per CPU core on CPU, 1 on a GPU].")
@click.option("--text-encoder", default=None, metavar="NAME[:PATH]",
              help="Every model's text encoder instead of the profile's, e.g. minilm-l6 (ships with the package: "
                   "the report profile offline) or clip-vit-b32:/path/to/clip; the report states it as a deviation.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=None,
              help="Every model's training precision instead of the profile's: auto (per model, the fastest native "
                   "precision measured here that quality allows), bf16 or fp32 [default: the profile's].")
@click.option("--list-profiles", is_flag=True, help="Describe the profiles and exit.")
def reproduce(profile: str, out: Path | None, models: str, seeds: str, sweep: bool, jobs: int | None,
              text_encoder: str | None, precision: str | None, list_profiles: bool) -> None:
    """Train every run of the study once per seed (resuming unfinished ones), score them on held-out shapes, test
    each of the study's claims (holds / does not hold / not testable here, with a paired test) and write
    OUT/report.md: the claims table and the leaderboard first, then setup, deviations, plots and sample grids.
    Rerun to continue after an interruption.

    Examples: polycolor reproduce;  polycolor reproduce --seeds 0,1,2 --sweep;  polycolor reproduce --profile demo;
    polycolor reproduce --profile report --text-encoder minilm-l6 (the study's schedule offline, e.g. on a GPU)
    """
    from .polycolor_core.training.profiles import PROFILES

    if list_profiles:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="polycolor reproduce profiles")
        for c in ("profile", "description", "settings"):
            t.add_column(c)
        for p in PROFILES.values():
            own = "".join(f"\n{name} only: " + ", ".join(f"{k}={v}" for k, v in extra.items())
                          for name, extra in p.variants.items())
            t.add_row(p.name, p.description, ", ".join(f"{k}={v}" for k, v in p.train.items()) + own)
        Console().print(t)
        return
    from .polycolor_core.training.profiles import get_profile, parse_runs
    from .reproduce import parse_seeds, run_reproduce

    try:
        get_profile(profile)
        names = parse_runs(models)
        result = run_reproduce(profile=profile, out=out or Path(f"reproduce-{profile}"), models=names, jobs=jobs,
                               text_encoder=text_encoder, precision=precision, seeds=parse_seeds(seeds), sweep=sweep)
    except ValueError as exc:
        _fail(str(exc), 2)
    sys.exit(0 if result.complete else 1)


if __name__ == "__main__":
    main()
