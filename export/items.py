"""The items of a batch job: what to colour, with which colour, into which output name (no pixels read).

Layouts (``detect_layout``)
  folder      every file in the folder (not recursive) with ``colour`` (one name, or several: one output per
              colour); outputs are ``<stem>_<colour>.png``.
  CSV         columns ``image`` and ``colour`` (``color`` also accepted), optional ``output``; relative image
              paths are resolved against the CSV's folder; outputs ``<stem>_<colour>.png`` unless ``output``.
  data.json   the original dataset layout: rows ``input_polygon`` / ``colour`` / ``output_image`` with the
              inputs under ``inputs/``; each output is written under its ``output_image`` name.
  hf:SPEC     a Hugging Face dataset (hub id, ``save_to_disk`` folder, parquet; ``data.load_data``'s spec, e.g.
              ``hf:DIR:validation``); outputs are ``<row>_<colour>.png`` (row numbered from 0, six digits).

``plan_items`` turns any of them into one deterministic list (the same on every rank of a multi-process run);
``load_item`` reads one item's pixels (the local loop and the Ray actors alike).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "Plan", "detect_layout", "load_item", "plan_items"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


@dataclass
class _Item:
    label: str  # what the report calls the input (path relative to the data, or as given)
    source: Path | None
    colour: str
    output: str  # relative to out_dir
    notes: list[str] = field(default_factory=list)
    row: int = -1  # a Hugging Face dataset's row (source is None)
    digest: str = ""  # input_digest, set when the job decides whether the item is already done


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


def _hf_items(spec: str, colours: list[str]):
    from ..polycolor_core.data.datasets import load_data
    from ..polycolor_core.data.hfdata import HFSamples

    samples = load_data(spec)
    if not isinstance(samples, HFSamples):
        raise ValueError(f"{spec} is not a Hugging Face dataset; pass hf:DIR, hf:FILE.parquet or hf:HUB_ID")
    items, notes = [], []
    for i, c in enumerate(samples._colours):  # read as one column by HFSamples; no image decoded here
        colour = c or (colours[0] if colours else "")
        items.append(_Item(f"row {i}", None, colour, f"{i:06d}_{_slug(colour)}.png", row=i))
    if colours:
        notes.append(f"the dataset's colours are used; --colour {colours[0]!r} only for rows without one")
    return items, [], notes, samples


@dataclass
class Plan:
    layout: str  # folder | csv | data.json | hf
    path: str  # the folder / CSV / data.json / hf spec
    items: list[_Item]
    skipped: list[dict]
    notes: list[str]
    samples: object = None  # the HFSamples of an hf: layout


def plan_items(data, colour=None) -> Plan:
    """Every item of ``data`` (a folder, CSV, data.json or ``hf:SPEC``), in a fixed order, plus the rows that
    cannot be items (and why) and notes. Reads no pixels."""
    colours = _colours_arg(colour)
    if str(data).startswith("hf:"):
        items, skipped, notes, samples = _hf_items(str(data), colours)
        return Plan("hf", str(data), items, skipped, notes, samples)
    layout, dpath = detect_layout(data)
    make = {"folder": _folder_items, "csv": _csv_items, "data.json": _json_items}[layout]
    items, skipped, notes = make(dpath, colours)
    return Plan(layout, str(dpath), items, skipped, notes)


def input_digest(it: _Item, samples=None) -> str:
    """A hash of the item's input (file bytes, or a dataset row's pixels); "" when it cannot be read."""
    from .outputs import array_digest, file_digest

    try:
        if it.source is not None:
            return file_digest(it.source)
        return array_digest(samples[it.row].input)
    except Exception:  # noqa: BLE001 - unreadable: load_item says why, and the item is never skipped as done
        return ""


def load_item(it: _Item, samples=None) -> tuple[np.ndarray, str]:
    """(RGB uint8 [H,W,3], note) for one item; ``ImageInputError`` if it cannot be used."""
    from ..polycolor_core.data.imageio import ImageInputError, array_to_rgb, load_image

    if it.source is not None:
        return load_image(it.source)
    try:
        return array_to_rgb(samples[it.row].input, source=it.label)
    except ImageInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken row is one skipped item, not a failed job
        raise ImageInputError(f"{it.label}: {exc}") from exc
