"""Batch inference over a folder, a CSV, a ``data.json`` dataset or a Hugging Face dataset: ``polycolor infer``.

    report = colorize_dataset("runs/m1", "my_outlines/", "out/", colour="cyan")
    report = colorize_dataset("exports/m1", "jobs.csv", "out/")               # columns: image, colour
    report = colorize_dataset("exports/m1", "dataset/validation", "out/")     # data.json + inputs/
    report = colorize_dataset("runs/m8", "hf:my_dataset_dir", "out/")         # a Hugging Face dataset
    report = colorize_dataset("runs/m8", "big/", "out/", colour="cyan", engine="ray")   # Ray Data actors

The layouts and output names are ``items.py``'s. Nothing is silently wrong: unreadable or non-image files, missing
files and colours the model cannot use are skipped and reported per item; RGBA/grey/palette inputs are converted
to RGB and images of another size are letterboxed to the model's size (no squash) and back, and each of those is
noted. ``output="composite"`` (the default) writes a solid fill of the model's colour into each input image,
everything else untouched; ``output="raw"`` the model's whole picture.

Resumable: every output is written atomically and recorded in ``OUT/infer_manifest.json`` (``outputs.py``); a
rerun keeps the outputs made by the same model, colour, input and output mode and redoes the rest, and the report
says how many it kept (``already_done``) and why it redid others (``redo_reasons``).

Engines: ``local`` runs in this process, or, launched by ``torchrun``/``accelerate launch``, as one rank of
several (``shards.py``: each rank its block of items, rank 0 merges one report); ``ray`` hands the items to a pool
of Ray Data actors (``ray_predictor.py``) and writes what they return. All of them colour through the one
``Colorizer``. The report is returned (on rank 0: the merged one) and written to ``out_dir/report.json``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..polycolor_core.runtime.folderlock import folder_lock
from .config import DEFAULT_BATCH_SIZE
from .items import detect_layout, input_digest, load_item, plan_items
from .outputs import OutputStore, encode_image, merge_manifest, model_digest, remove_stale_temporaries
from .shards import Shard, join, merge_reports, write_rank_report

log = logging.getLogger("polycolor")

__all__ = ["ENGINES", "REPORT_FILE", "colorize_dataset", "detect_layout"]

REPORT_FILE = "report.json"
ENGINES = ("local", "ray")


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=False)


def _check_items(col, plan, out_dir: Path) -> list:
    """The items that can run (colour known, output name inside out_dir and unique, not over its input);
    the others go to ``plan.skipped`` with the reason. Same result on every rank."""
    from ..polycolor_core.colour.colours import UnknownColourError, resolve_colour
    from .items import _safe_output

    bad_colour: dict[str, str] = {}
    for c in sorted({it.colour for it in plan.items}):
        try:
            resolve_colour(c)
            col.embeddings.numpy([c])
        except UnknownColourError as exc:
            bad_colour[c] = str(exc)
    todo, used = [], set()
    for it in plan.items:
        if it.colour in bad_colour:
            plan.skipped.append({"input": it.label, "colour": it.colour, "reason": f"unknown colour: {bad_colour[it.colour]}"})
            continue
        out = _safe_output(it.output)
        if out is None:
            plan.skipped.append({"input": it.label, "colour": it.colour,
                                 "reason": f"output name {it.output!r} would leave the output folder"})
            continue
        if out in used:
            stem, suffix = out.rsplit(".", 1)
            k = 1
            while f"{stem}_{k}.{suffix}" in used:
                k += 1
            it.notes.append(f"output name {out} already used by another item; written as {stem}_{k}.{suffix}")
            out = f"{stem}_{k}.{suffix}"
        used.add(out)
        it.output = out
        if it.source is not None and (out_dir / out).resolve() == Path(it.source).resolve():
            plan.skipped.append({"input": it.label, "colour": it.colour, "reason": f"output {out} would overwrite its input"})
            continue
        todo.append(it)
    return todo


def _note_image(it, img, note: str, size: int) -> None:
    if note:
        it.notes.append(note.replace(str(it.source), it.label) if it.source is not None else note)
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        it.notes.append(f"{w}x{h} resized to the model's {size}x{size} (letterboxed) and the output back to {w}x{h}")


def _run_local(col, pending: list, store: OutputStore, samples, output: str, progress: bool, t0: float):
    """Colour ``pending`` in batches of ``col.batch_size`` and write each output: (written, skipped)."""
    from ..polycolor_core.data.imageio import ImageInputError

    written, skipped, n_done = [], [], 0
    with _progress(progress) as bar:
        task = bar.add_task("colorizing", total=len(pending), rate="")
        for start in range(0, len(pending), col.batch_size):
            chunk, arrays = [], []
            for it in pending[start : start + col.batch_size]:
                try:
                    img, note = load_item(it, samples)
                except ImageInputError as exc:
                    skipped.append({"input": it.label, "colour": it.colour, "reason": str(exc)})
                    bar.advance(task)
                    continue
                _note_image(it, img, note, col.image_size)
                chunk.append(it)
                arrays.append(img)
            if not chunk:
                continue
            with warnings.catch_warnings():  # said once for the whole job (report["palette_warning"]), not per batch
                warnings.simplefilter("ignore", UserWarning)
                result = col.colorize(arrays, [it.colour for it in chunk], output=output)
            for it, img in zip(chunk, result.images):
                try:
                    store.write(it.output, encode_image(img, it.output), it.colour, it.digest, it.label)
                except OSError as exc:
                    skipped.append({"input": it.label, "colour": it.colour,
                                    "reason": f"could not write {store.out_dir / it.output}: {exc}"})
                    continue
                written.append({"input": it.label, "colour": it.colour, "output": it.output, "notes": it.notes})
            n_done += len(chunk)
            bar.update(task, advance=len(chunk), rate=f"{n_done / max(time.perf_counter() - t0, 1e-9):.1f} img/s")
    return written, skipped


def _summary_notes(written: list, skipped: list, size: int) -> list[str]:
    conversions, resized = Counter(), Counter()
    for w in written:
        for note in w["notes"]:
            if m := re.search(r"converted (\S+) to RGB", note):
                conversions[m.group(1)] += 1
            elif m := re.match(r"(\d+x\d+) resized to the model", note):
                resized[m.group(1)] += 1
    notes = []
    if conversions:
        notes.append("converted to RGB (transparent pixels composited on white): "
                     + ", ".join(f"{n} {mode}" for mode, n in sorted(conversions.items())))
    if resized:
        notes.append(f"{sum(resized.values())} image(s) not at the model size {size}x{size} were resized to it "
                     f"(letterboxed, not squashed) and the outputs brought back to the input size "
                     f"({', '.join(f'{n}x {s}' for s, n in resized.most_common(5))})")
    if skipped:
        notes.append(f"{len(skipped)} item(s) skipped; see 'skipped' for each reason")
    return notes


def colorize_dataset(
    model_path,
    data: str | Path,
    out_dir: str | Path,
    *,
    colour: str | Sequence[str] | None = None,
    backend: str = "auto",
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: str = "auto",
    bf16: bool | None = None,
    threads: int | None = None,
    progress: bool = True,
    output: str = "composite",
    engine: str = "local",
    resume: bool = True,
    workers: int | None = None,
) -> dict:
    """Colour every item of ``data`` with the model at ``model_path`` and write the outputs to ``out_dir``.

    model_path: a run / checkpoint / export folder (see ``Colorizer.from_pretrained``), or a ready ``Colorizer``.
    data: a folder of images, a CSV (image,colour[,output]), a data.json dataset (file or its folder) or
        ``hf:SPEC`` (a Hugging Face dataset, as ``data.load_data`` reads it).
    colour: the colour(s) for a folder; for a CSV / data.json / dataset the fallback for rows without one.
    output: "composite" (the fill pasted into each input at its own resolution) or "raw" (the model's picture).
    engine: "local" (this process; one rank of several under torchrun / accelerate launch) or "ray" (Ray Data
        actors: ``workers`` of them, default one per CPU, or one per GPU with a CUDA ``device``).
    resume: keep outputs already made by this model, colour, input and output mode (False: redo everything).
    Returns the report (also written to ``out_dir/report.json``): counts, written items with their notes, items
    kept from an earlier run, skipped items with the reason, redo reasons, per-rank img/s, and global notes.
    """
    from ..polycolor_core.colour.colours import resolve_colour
    from ..polycolor_core.model.composite import check_output
    from .colorizer import Colorizer

    check_output(output)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    t0 = time.perf_counter()
    plan = plan_items(data, colour)
    for c in ([colour] if isinstance(colour, str) else list(colour or [])):
        for name in str(c).split(","):
            if name.strip():
                resolve_colour(name.strip())  # a typo in --colour is an error for the whole job, not 1000 skips
    # one writer per --out: the job's rank 0 (or its only process) holds the folder's lock; a second job at the same
    # --out stops with a message naming the first (under torchrun its failure stops its own ranks too)
    lock = contextlib.ExitStack()
    if int(os.environ.get("RANK", "0") or 0) == 0:
        lock.enter_context(folder_lock(Path(out_dir).expanduser(), "polycolor infer"))
    try:
        shard = join() if engine == "local" else Shard()
    except BaseException:
        lock.close()
        raise
    try:
        device = shard.device(device)
        first = backend != "torch" and not isinstance(model_path, Colorizer)  # auto may time, onnx may export
        if first and not shard.main:
            shard.barrier()  # rank 0 loads first: auto-backend timing and onnx export caching happen once
        if isinstance(model_path, Colorizer):
            col = model_path
        else:
            col = Colorizer.from_pretrained(model_path, backend=backend, device=device, precision=precision,
                                            batch_size=batch_size, bf16=bf16, threads=shard.threads(device, threads))
        if first and shard.main:
            shard.barrier()
        t_loaded = time.perf_counter()
        notes = plan.notes
        palette_warning = col.palette_warning([it.colour for it in plan.items])  # colours outside its training
        if palette_warning:
            notes.append(palette_warning)
        out_dir = Path(out_dir).expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)
        todo = _check_items(col, plan, out_dir)
        model_id = model_digest(model_path if not isinstance(model_path, Colorizer) else
                                (col.source or col.info.path))  # what the user named, whatever the backend
        if shard.main:
            remove_stale_temporaries(out_dir)
        store = OutputStore(out_dir, model_id, output, part=f"rank{shard.rank}", resume=resume)
        shard.barrier()  # every rank has read the manifest before any rank writes

        pending, already, redo = [], [], Counter()
        for it in shard.take(todo):
            it.digest = input_digest(it, plan.samples)
            why = store.reason(it.output, it.colour, it.digest) if it.digest else "new"
            if why is None:
                already.append({"input": it.label, "colour": it.colour, "output": it.output})
            else:
                pending.append(it)
                if why != "new":
                    redo[why.split(" (")[0]] += 1
        t_run = time.perf_counter()
        if engine == "ray":
            from .ray_predictor import run_ray

            written, skipped, engine_stats = run_ray(model_path if not isinstance(model_path, Colorizer) else col.source, pending,
                                       store, plan, output=output, backend=backend, device=device,
                                       precision=precision, batch_size=batch_size, workers=workers,
                                       threads=threads, progress=progress)
        else:
            written, skipped = _run_local(col, pending, store, plan.samples, output, progress, t_run)
            engine_stats = {}
        store.close()
        run_s = time.perf_counter() - t_run
        skipped = (plan.skipped if shard.main else []) + skipped
        notes = notes + _summary_notes(written, skipped, col.image_size)
        if already:
            notes.append(f"{len(already)} output(s) already made by this model and colour were kept (resumed)")
        seconds = time.perf_counter() - t0
        report = {
            "model": str(getattr(col, "source", "") or model_path),
            "model_digest": model_id,
            "backend": col.backend.name,
            "precision": getattr(col.backend, "precision", "fp32"),
            "image_size": col.image_size,
            "output": output,
            "engine": engine if shard.world == 1 else f"{engine} x{shard.world} ranks",
            "data": plan.path,
            "layout": plan.layout,
            "out_dir": str(out_dir),
            "counts": {"items": len(written) + len(skipped) + len(already), "written": len(written),
                       "skipped": len(skipped), "already_done": len(already)},
            "written": written,
            "already_done": already,
            "skipped": skipped,
            "redo_reasons": dict(redo),
            "notes": notes,
            "palette_warning": palette_warning,
            "text_encoder": col.encoder_stats,
            "seconds": round(seconds, 3),
            "images_per_second": round(len(written) / seconds, 3) if seconds > 0 else None,
            "engine_stats": engine_stats,
            "rank_stats": {"rank": shard.rank, "device": device, "items": len(pending) + len(already),
                           "written": len(written), "already_done": len(already),
                           "load_s": round(t_loaded - t0, 3), "run_s": round(run_s, 3),
                           "images_per_second": round(len(written) / run_s, 3) if run_s > 0 else None},
        }
        if shard.world > 1:
            write_rank_report(out_dir, shard.rank, report)
            shard.barrier()  # every rank has written its outputs, journal and report
            if not shard.main:
                return report
            report = merge_reports(out_dir, shard.world)
        else:
            report["per_rank"] = [report.pop("rank_stats")]
        merge_manifest(out_dir)
        if report["skipped"]:
            reasons = Counter(s["reason"].split(":")[0] for s in report["skipped"])
            log.warning("skipped %d item(s): %s", len(report["skipped"]),
                        "; ".join(f"{n}x {r}" for r, n in reasons.most_common(3)))
        from ..polycolor_core.runtime.atomic import write_json_atomic

        write_json_atomic(out_dir / REPORT_FILE, report, sort_keys=False)
        return report
    finally:
        shard.close()
        lock.close()
