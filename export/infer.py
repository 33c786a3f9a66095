"""Batch inference over a folder, a CSV or a ``data.json`` dataset: the function behind ``polycolor infer``.

    report = colorize_dataset("runs/m1", "my_outlines/", "out/", colour="cyan")
    report = colorize_dataset("exports/m1", "jobs.csv", "out/")               # columns: image, colour
    report = colorize_dataset("exports/m1", "dataset/validation", "out/")     # data.json + inputs/

Layouts
  folder      every file in the folder (not recursive) with ``colour`` (one name, or several: one output per
              colour); outputs are ``<stem>_<colour>.png``.
  CSV         columns ``image`` and ``colour`` (``color`` also accepted), optional ``output``; relative image
              paths are resolved against the CSV's folder; outputs ``<stem>_<colour>.png`` unless ``output``.
  data.json   the original dataset layout: rows ``input_polygon`` / ``colour`` / ``output_image`` with the
              inputs under ``inputs/``; each output is written under its ``output_image`` name.

Nothing is silently wrong: unreadable or non-image files, missing files and colours the model cannot use are
skipped and reported per item; RGBA/grey/palette inputs are converted to RGB and images of another size are
letterboxed to the model's size (no squash) and back, and each of those is noted. ``output="composite"`` (the
default) writes a solid fill of the model's colour into each input image, everything else untouched;
``output="raw"`` the model's whole picture. The report is returned and written to ``out_dir/report.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


log = logging.getLogger("polycolor")

__all__ = ["colorize_dataset", "detect_layout", "REPORT_FILE"]

REPORT_FILE = "report.json"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


@dataclass
class _Item:
    label: str  # what the report calls the input (path relative to the data, or as given)
    source: Path | None
    colour: str
    output: str  # relative to out_dir
    notes: list[str] = field(default_factory=list)


def _slug(colour: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", colour.strip().lower()).strip("-") or "colour"


def _colours_arg(colour) -> list[str]:
    if colour is None:
        return []
    if isinstance(colour, str):
        return [c.strip() for c in colour.split(",") if c.strip()]
    return [str(c).strip() for c in colour if str(c).strip()]


def detect_layout(data: str | Path) -> tuple[str, Path]:
    """('folder' | 'csv' | 'data.json', path of the folder / CSV / data.json)."""
    p = Path(data).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"data not found: {p} (pass a folder of images, a CSV with columns image,colour, "
                                "or a dataset folder with data.json)")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv", p
        if p.suffix.lower() == ".json":
            return "data.json", p
        raise ValueError(f"{p} is neither a CSV (.csv) nor a data.json; pass a folder, a CSV or a data.json")
    if (p / "data.json").is_file():
        return "data.json", p / "data.json"
    return "folder", p


def _folder_items(folder: Path, colours: list[str]) -> tuple[list[_Item], list[dict], list[str]]:
    if not colours:
        raise ValueError(f"{folder} is a folder of images: give the colour to fill them with (--colour NAME, "
                         "or several: --colour red,blue)")
    items, skipped, notes = [], [], []
    files = sorted(f for f in folder.iterdir() if not f.name.startswith("."))
    for f in files:
        if f.is_dir():
            continue
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append({"input": f.name, "colour": ",".join(colours),
                            "reason": f"not an image file (suffix {f.suffix or 'none'!r}; expected one of "
                                      f"{', '.join(sorted(IMAGE_SUFFIXES))})"})
            continue
        for c in colours:
            items.append(_Item(f.name, f, c, f"{f.stem}_{_slug(c)}.png"))
    if len(colours) > 1:
        notes.append(f"{len(colours)} colours given: one output per image and colour")
    return items, skipped, notes


def _csv_items(path: Path, colours: list[str]) -> tuple[list[_Item], list[dict], list[str]]:
    items, skipped, notes = [], [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = {h.strip().lower(): h for h in (reader.fieldnames or []) if h}
        img_col = header.get("image")
        col_col = header.get("colour") or header.get("color")
        out_col = header.get("output") or header.get("output_image")
        if img_col is None or (col_col is None and not colours):
            raise ValueError(f"{path} needs the columns image,colour (found: {', '.join(reader.fieldnames or []) or 'none'})")
        if colours and col_col is None:
            notes.append(f"the CSV has no colour column: every image is filled with {colours[0]!r}")
        elif colours:
            notes.append(f"rows with an empty colour use {colours[0]!r}")
        for n, row in enumerate(reader, start=2):  # line 1 is the header
            image = (row.get(img_col) or "").strip()
            colour = ((row.get(col_col) if col_col else "") or "").strip() or (colours[0] if colours else "")
            if not image or not colour:
                skipped.append({"input": image or f"line {n}", "colour": colour,
                                "reason": f"line {n}: empty {'image' if not image else 'colour'} cell"})
                continue
            src = Path(image).expanduser()
            src = src if src.is_absolute() else path.parent / src
            out = ((row.get(out_col) or "").strip() if out_col else "") or f"{Path(image).stem}_{_slug(colour)}.png"
            items.append(_Item(image, src, colour, out))
    return items, skipped, notes


def _json_items(path: Path, colours: list[str]) -> tuple[list[_Item], list[dict], list[str]]:
    items, skipped, notes = [], [], []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise ValueError(f"{path} should be a list of rows with input_polygon, colour, output_image")
    inputs = path.parent / "inputs"
    for n, row in enumerate(rows):
        row = row if isinstance(row, dict) else {}
        inp, colour, out = (str(row.get(k) or "").strip() for k in ("input_polygon", "colour", "output_image"))
        colour = colour or (colours[0] if colours else "")
        if not (inp and colour and out):
            missing = [k for k, v in (("input_polygon", inp), ("colour", colour), ("output_image", out)) if not v]
            skipped.append({"input": inp or f"row {n}", "colour": colour, "reason": f"row {n} lacks {', '.join(missing)}"})
            continue
        items.append(_Item(f"inputs/{inp}", inputs / inp, colour, out))
    if colours:
        notes.append(f"rows without a colour use {colours[0]!r}")
    return items, skipped, notes


def _safe_output(name: str) -> str | None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or not p.name:
        return None
    return p.as_posix() if p.suffix.lower() in IMAGE_SUFFIXES else p.as_posix() + ".png"


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=False)


def colorize_dataset(
    model_path,
    data: str | Path,
    out_dir: str | Path,
    *,
    colour: str | Sequence[str] | None = None,
    backend: str = "auto",
    device: str = "cpu",
    batch_size: int = 16,
    precision: str = "auto",
    bf16: bool | None = None,
    threads: int | None = None,
    progress: bool = True,
    output: str = "composite",
) -> dict:
    """Colour every item of ``data`` with the model at ``model_path`` and write the outputs to ``out_dir``.

    model_path: a run / checkpoint / export folder (see ``Colorizer.from_pretrained``), or a ready ``Colorizer``.
    data: a folder of images, a CSV (image,colour[,output]) or a data.json dataset (file or its folder).
    colour: the colour(s) for a folder; for a CSV / data.json the fallback for rows without one.
    output: "composite" (the fill pasted into each input at its own resolution) or "raw" (the model's picture).
    Returns the report (also written to ``out_dir/report.json``): counts, written items with their notes,
    skipped items with the reason, and global notes.
    """
    from PIL import Image

    from ..polycolor_core.colours import UnknownColourError, resolve_colour
    from ..polycolor_core.imageio import ImageInputError, load_image
    from .colorizer import Colorizer

    from ..polycolor_core.composite import check_output

    check_output(output)
    t0 = time.perf_counter()
    layout, dpath = detect_layout(data)
    colours = _colours_arg(colour)
    for c in colours:
        resolve_colour(c)  # a typo in --colour is an error for the whole job, not 1000 skips
    make = {"folder": _folder_items, "csv": _csv_items, "data.json": _json_items}[layout]
    items, skipped, notes = make(dpath, colours)

    col = model_path if isinstance(model_path, Colorizer) else Colorizer.from_pretrained(
        model_path, backend=backend, device=device, precision=precision, batch_size=batch_size, bf16=bf16,
        threads=threads)
    size = col.image_size
    palette_warning = col.palette_warning([it.colour for it in items])  # colours the model was not trained on
    if palette_warning:
        notes.append(palette_warning)
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- per-item checks that need no pixels: colours (encodes each distinct colour once) and output names
    bad_colour: dict[str, str] = {}
    for c in sorted({it.colour for it in items}):
        try:
            resolve_colour(c)
            col.embeddings.numpy([c])
        except UnknownColourError as exc:
            bad_colour[c] = str(exc)
    todo: list[_Item] = []
    used: set[str] = set()
    for it in items:
        if it.colour in bad_colour:
            skipped.append({"input": it.label, "colour": it.colour, "reason": f"unknown colour: {bad_colour[it.colour]}"})
            continue
        out = _safe_output(it.output)
        if out is None:
            skipped.append({"input": it.label, "colour": it.colour,
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
        todo.append(it)

    written: list[dict] = []
    conversions: Counter = Counter()
    resized: Counter = Counter()
    n_done = 0
    with _progress(progress) as bar:
        task = bar.add_task("colorizing", total=len(todo), rate="")
        for start in range(0, len(todo), col.batch_size):
            chunk, arrays = [], []
            for it in todo[start : start + col.batch_size]:
                try:
                    img, note = load_image(it.source)
                except ImageInputError as exc:
                    skipped.append({"input": it.label, "colour": it.colour, "reason": str(exc)})
                    bar.advance(task)
                    continue
                if note:
                    it.notes.append(note.replace(str(it.source), it.label))
                    mode = re.search(r"converted (\S+) to RGB", note)
                    conversions[mode.group(1) if mode else "other"] += 1
                h, w = img.shape[:2]
                if (h, w) != (size, size):
                    it.notes.append(f"{w}x{h} resized to the model's {size}x{size} (letterboxed) and the output back "
                                    f"to {w}x{h}")
                    resized[f"{w}x{h}"] += 1
                if it.source is not None and (out_dir / it.output).resolve() == it.source.resolve():
                    skipped.append({"input": it.label, "colour": it.colour,
                                    "reason": f"output {it.output} would overwrite its input"})
                    bar.advance(task)
                    continue
                chunk.append(it)
                arrays.append(img)
            if not chunk:
                continue
            with warnings.catch_warnings():  # said once for the whole job (report["palette_warning"]), not per batch
                warnings.simplefilter("ignore", UserWarning)
                result = col.colorize(arrays, [it.colour for it in chunk], output=output)
            for it, img in zip(chunk, result.images):
                dest = out_dir / it.output
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(dest)
                except OSError as exc:
                    skipped.append({"input": it.label, "colour": it.colour, "reason": f"could not write {dest}: {exc}"})
                    continue
                written.append({"input": it.label, "colour": it.colour, "output": it.output, "notes": it.notes})
            n_done += len(chunk)
            rate = n_done / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=len(chunk), rate=f"{rate:.1f} img/s")

    if conversions:
        notes.append("converted to RGB (transparent pixels composited on white): "
                     + ", ".join(f"{n} {mode}" for mode, n in sorted(conversions.items())))
    if resized:
        notes.append(f"{sum(resized.values())} image(s) not at the model size {size}x{size} were resized to it "
                     f"(letterboxed, not squashed) and the outputs brought back to the input size ({', '.join(f'{n}x {s}' for s, n in resized.most_common(5))})")
    if skipped:
        reasons = Counter(s["reason"].split(":")[0] for s in skipped)
        notes.append(f"{len(skipped)} item(s) skipped; see 'skipped' for each reason")
        log.warning("skipped %d item(s): %s", len(skipped), "; ".join(f"{n}x {r}" for r, n in reasons.most_common(3)))
    seconds = time.perf_counter() - t0
    report = {
        "model": str(getattr(col, "source", "") or model_path),
        "backend": col.backend.name,
        "precision": getattr(col.backend, "precision", "fp32"),
        "image_size": size,
        "output": output,
        "data": str(dpath),
        "layout": layout,
        "out_dir": str(out_dir),
        "counts": {"items": len(written) + len(skipped), "written": len(written), "skipped": len(skipped)},
        "written": written,
        "skipped": skipped,
        "notes": notes,
        "palette_warning": palette_warning,
        "text_encoder": col.encoder_stats,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(written) / seconds, 3) if seconds > 0 else None,
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report
