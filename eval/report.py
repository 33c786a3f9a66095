"""Leaderboard outputs: value formatting shared by the terminal and markdown tables, and the JSON, CSV,
markdown and PNG contact-sheet writers (:func:`write_outputs` writes any of them; every file is written
atomically: a temporary name, then renamed).

Every function takes a :class:`polycolor.eval.leaderboard.Leaderboard` (``lb``). This module does not import
``leaderboard`` (``leaderboard`` imports this one for ``Leaderboard.markdown``); it reads only the record
types of :mod:`polycolor.eval.schema` (the ``Leaderboard`` annotations are never evaluated).
"""

from __future__ import annotations

import csv as _csv
import json as _json
import math
from pathlib import Path

import numpy as np

from ..polycolor_core.runtime.atomic import atomic_file, write_text_atomic
from .schema import METRIC_KEYS, METRICS, REFERENCE_NAME, TABLE_KEYS, ModelResult

__all__ = [
    "format_metric", "format_params", "format_rate", "TABLE_COLUMNS", "table_rows", "family_rows",
    "FAMILY_COLUMNS", "sort_text", "markdown_table", "family_markdown_table", "render_markdown", "write_json",
    "write_csv", "write_markdown", "contact_sheet_image", "write_contact_sheet", "CSV_FIELDS", "DEFAULT_FILENAMES",
    "write_outputs",
]

DASH = "—"


# ============================================================================================ formatting


def format_metric(key: str, value, lpips_cell: str = "n/a") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return lpips_cell if key == "lpips" else DASH
    return format(float(value), METRICS[key].fmt)


def format_params(n: int | None) -> str:
    if n is None:
        return "?"
    if n == 0:
        return DASH
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def format_rate(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    if math.isinf(v):
        return "inf"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def _status(r: ModelResult) -> str:
    if r.kind == "reference":
        return "reference"
    if r.status == "unfinished":
        steps = f" {r.step}/{r.total_steps}" if r.step is not None and r.total_steps else ""
        return f"unfinished{steps}"
    return r.status


TABLE_COLUMNS = ("Rank", "Model", *(METRICS[k].label for k in TABLE_KEYS), "Params", "img/s",
                 "Text encoder", "LPIPS in training", "Status")
"""Headers of the main table (terminal and markdown), in order; ``table_rows`` yields cells in this order."""


def table_rows(lb: Leaderboard) -> list[list[str]]:
    """Display cells of every scored row, in rank order (see :data:`TABLE_COLUMNS`)."""
    out = []
    for r in lb.rows:
        out.append([
            str(r.rank) if r.rank is not None else "ref",
            r.name,
            *(format_metric(k, r.metrics.get(k), lb.lpips.cell) for k in TABLE_KEYS),
            format_params(r.params),
            format_rate(r.images_per_s),
            r.text_encoder or DASH,
            (r.lpips_training or "?") if r.kind == "model" else DASH,
            _status(r),
        ])
    return out


FAMILY_COLUMNS = ("Family", "n", "Model", *(METRICS[k].label for k in TABLE_KEYS))


def family_rows(lb: Leaderboard) -> list[list[str]]:
    """Per-family breakdown cells: for each family (data order), every scored row in rank order."""
    fams = list(lb.data.family_counts())
    out = []
    for f in fams:
        for r in lb.rows:
            m = r.by_family.get(f)
            if m is None:
                continue
            out.append([f, str(m.get("n", "")), r.name,
                        *(format_metric(k, m.get(k), lb.lpips.cell) for k in TABLE_KEYS)])
    return out


def sort_text(lb: Leaderboard) -> str:
    label = "images/s" if lb.sort == "images_per_s" else METRICS[lb.sort].label
    return f"{label} ({lb.sort}), {'ascending: lower is better' if lb.ascending else 'descending: higher is better'}"


# ============================================================================================= markdown


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


_TEXT_COLUMNS = {"Model", "Family", "Text encoder", "LPIPS in training", "Status"}


def _md_table(headers, rows) -> str:
    align = ["---" if h.split(" [^")[0] in _TEXT_COLUMNS else "---:" for h in headers]
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(lb: Leaderboard) -> str:
    """The ranked table as a GitHub-flavoured markdown string (the LPIPS footnote marker included)."""
    headers = list(TABLE_COLUMNS)
    rows = table_rows(lb)
    if not lb.lpips.available:
        i = headers.index(METRICS["lpips"].label)
        headers[i] += " [^lpips]"
    return _md_table(headers, rows)


def family_markdown_table(lb: Leaderboard) -> str:
    """The per-family breakdown as a markdown table."""
    return _md_table(FAMILY_COLUMNS, family_rows(lb))


def render_markdown(lb: Leaderboard, by_family: bool = False, title: str = "polycolor leaderboard") -> str:
    """The full markdown report: dataset, sort order, table, per-family table (optional), notes, missing."""
    parts = [f"# {title}", "",
             f"**Data:** {lb.data.description}  ",
             f"**Sorted by:** {sort_text(lb)}; rank counts models only, `ref` is the classical "
             f"{REFERENCE_NAME.split(' (')[0]} reference.  ",
             f"**Created:** {lb.created}", "", markdown_table(lb), ""]
    if by_family:
        parts += ["## Per family", "", family_markdown_table(lb), ""]
    if lb.missing:
        parts += ["## Not scored", ""]
        for r in lb.missing:
            cmd = f" Train it with: `{r.train_command}`" if r.train_command else ""
            msg = (r.message or r.status).split(" Train it with:")[0]
            parts.append(f"- **{r.name}** ({r.status}): {msg}{cmd}")
        parts.append("")
    notes = [n for n in lb.notes if not (not lb.lpips.available and n.startswith("LPIPS column"))]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if not lb.lpips.available:
        parts += [f"[^lpips]: {lb.lpips.cell}: {lb.lpips.reason or lb.lpips.status}", ""]
    return "\n".join(parts)


# ============================================================================================== writers


def write_json(lb: Leaderboard, path: str | Path, per_sample: bool = False) -> Path:
    return write_text_atomic(path, _json.dumps(lb.to_dict(per_sample=per_sample), indent=2, allow_nan=False) + "\n")


CSV_FIELDS = ("rank", "model", "kind", "status", *METRIC_KEYS, "params", "images_per_s", "text_encoder",
              "lpips_training", "finished", "step", "total_steps", "variant", "image_size", "backend", "output",
              "source", "message")


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def write_csv(lb: Leaderboard, path: str | Path) -> Path:
    """One line per scored row (rank order), then the models that were not scored (empty metrics)."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        w = _csv.DictWriter(fh, fieldnames=list(CSV_FIELDS))
        w.writeheader()
        for r in [*lb.rows, *lb.missing]:
            row = {"rank": r.rank, "model": r.name, "kind": r.kind, "status": r.status,
                   **{k: r.metrics.get(k) for k in METRIC_KEYS}, "params": r.params,
                   "images_per_s": r.images_per_s, "text_encoder": r.text_encoder,
                   "lpips_training": r.lpips_training, "finished": r.finished, "step": r.step,
                   "total_steps": r.total_steps, "variant": r.variant, "image_size": r.image_size,
                   "backend": r.backend, "output": r.output, "source": r.source, "message": r.message}
            w.writerow({k: _csv_value(v) for k, v in row.items()})
    return path


def write_markdown(lb: Leaderboard, path: str | Path, by_family: bool = False) -> Path:
    return write_text_atomic(path, render_markdown(lb, by_family=by_family))


# ========================================================================================= contact sheet


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet_image(lb: Leaderboard, cell: int | None = None):
    """A PIL image: rows ``input``, ``target``, then every scored row in rank order (the reference included);
    columns the same :attr:`Leaderboard.sheet_indices` samples, captioned with colour and family."""
    from PIL import Image, ImageDraw

    from ..polycolor_core.colour.colours import resolve_colour
    from ..polycolor_core.data.imageio import resize_image

    idx = list(lb.sheet_indices) or list(range(min(8, len(lb.data))))
    samples = [lb.data.samples[i] for i in idx]
    if cell is None:
        native = max((s.input.shape[0] for s in samples), default=128)
        cell = int(min(160, max(96, native)))
    pad, label_w, head_h, title_h = 4, 190, 36, 26
    rows: list[tuple[str, str, list[np.ndarray | None]]] = [
        ("input", "outline + colour name", [s.input for s in samples]),
        ("target", "ground truth", [s.target for s in samples]),
    ]
    for r in lb.rows:
        first = "ref" if r.rank is None else f"#{r.rank}"
        if lb.sort in METRICS:  # the bitmap fallback font has no Greek: "dE00"
            sub = f"{first}  {METRICS[lb.sort].label.replace('Δ', 'd')} {format_metric(lb.sort, r.value(lb.sort))}"
        else:
            sub = f"{first}  {format_rate(r.images_per_s)} img/s"
        preds = [r.predictions[i] if r.predictions is not None else None for i in idx]
        rows.append((r.name, sub, preds))

    ncol = len(samples)
    w = label_w + ncol * (cell + pad) + pad
    h = title_h + head_h + len(rows) * (cell + pad) + pad
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    f_title, f_main, f_small = _font(14), _font(13), _font(11)
    d.text((pad, 5), _fit(d, f"polycolor leaderboard: {lb.data.description}", f_title, w - 2 * pad), fill=(0, 0, 0),
           font=f_title)
    for j, s in enumerate(samples):
        x = label_w + pad + j * (cell + pad)
        try:
            rgb = tuple(int(v) for v in resolve_colour(s.colour))
        except Exception:
            rgb = (128, 128, 128)
        d.rectangle([x, title_h + 3, x + 12, title_h + 15], fill=rgb, outline=(0, 0, 0))
        d.text((x + 16, title_h + 2), _fit(d, s.colour, f_main, cell - 16), fill=(0, 0, 0), font=f_main)
        d.text((x, title_h + 18), _fit(d, s.family, f_small, cell), fill=(90, 90, 90), font=f_small)
    for i, (name, sub, ims) in enumerate(rows):
        y = title_h + head_h + i * (cell + pad)
        if i == 2:
            d.line([pad, y - pad // 2 - 1, w - pad, y - pad // 2 - 1], fill=(160, 160, 160), width=1)
        d.text((pad, y + cell // 2 - 16), _fit(d, name, f_main, label_w - 2 * pad), fill=(0, 0, 0), font=f_main)
        d.text((pad, y + cell // 2 + 2), _fit(d, sub, f_small, label_w - 2 * pad), fill=(90, 90, 90), font=f_small)
        for j, im in enumerate(ims):
            x = label_w + pad + j * (cell + pad)
            if im is None:
                d.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(220, 220, 220))
                continue
            a = np.asarray(im, dtype=np.uint8)
            if a.shape[:2] != (cell, cell):
                a = (np.asarray(Image.fromarray(a).resize((cell, cell), Image.NEAREST))
                     if a.shape[0] < cell else resize_image(a, cell))
            img.paste(Image.fromarray(a), (x, y))
            d.rectangle([x - 1, y - 1, x + cell, y + cell], outline=(200, 200, 200))
    return img


def write_contact_sheet(lb: Leaderboard, path: str | Path) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp:
        contact_sheet_image(lb).save(tmp)
    return path


# ========================================================================================= all outputs

DEFAULT_FILENAMES = {"json": "leaderboard.json", "csv": "leaderboard.csv", "markdown": "leaderboard.md",
                     "sheet": "contact_sheet.png"}


def write_outputs(lb: Leaderboard, *, json: str | Path | None = None, csv: str | Path | None = None,
                  markdown: str | Path | None = None, sheet: str | Path | None = None,
                  out_dir: str | Path | None = None, by_family: bool = False) -> dict[str, Path]:
    """Write the requested files; ``out_dir`` fills every unset one with :data:`DEFAULT_FILENAMES`.

    Returns ``{"json"|"csv"|"markdown"|"sheet": path}`` for what was written.
    """
    paths = {"json": json, "csv": csv, "markdown": markdown, "sheet": sheet}
    if out_dir is not None:
        for k, name in DEFAULT_FILENAMES.items():
            if paths[k] is None:
                paths[k] = Path(out_dir) / name
    writers = {"json": write_json, "csv": write_csv,
               "markdown": lambda lb_, p: write_markdown(lb_, p, by_family=by_family),
               "sheet": write_contact_sheet}
    written = {}
    for k, p in paths.items():
        if p is None:
            continue
        p = Path(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        writers[k](lb, p)
        written[k] = p
    return written
