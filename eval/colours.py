"""The colour-generalisation table (issue 16): how well a model paints colours beyond the ones it trained on.

    python -m polycolor.eval.colours runs/m8 [more models] [--hex 32] [--json out.json]

Four colour sets, one generated polygon each (``pose`` and ``shapes`` families, seed ``SEED``, rendered at the
leaderboard's 128 px; the Colorizer letterboxes them to the model's size): (1) the 8 canonical names, (2) the held-out CSS names, (3) the held-out XKCD names (both from
``palettes.heldout_names``: never trained on by any palette), (4) ``--hex`` random evaluation hex codes
(``palettes.heldout_hex``: training never draws them). Per set: the mean in-polygon CIEDE2000 of the output the
user gets (``composite``) and the share of images with dE00 < 5.

Two reference rows per text encoder, painted straight into the target polygon (no model):
- ``nearest trained name``: the RGB of the trained name whose (mean-pooled) text embedding is closest in cosine to
  the asked name's: what a model could do that only tells its training names apart;
- ``resolved RGB``: the exact colour (the ceiling; 0 by construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..polycolor_core.colour import palettes
from ..polycolor_core.colour.colours import resolve_colour
from .metrics import ciede2000_map, true_mask

__all__ = ["COLOUR_SETS", "SEED", "ColourRow", "colour_sets", "render_samples", "score_colorizer",
           "reference_rows", "colour_table", "colour_table_job", "merge_colour_tables", "render_markdown",
           "main"]

COLOUR_SETS = ("canonical", "css held-out", "xkcd held-out", "hex")
SEED = 4242
RENDER_SIZE = 128  # like the leaderboard's held-out split: the Colorizer letterboxes to the model's size and back
THRESHOLD = 5.0


@dataclass
class ColourRow:
    name: str  # a model, or "nearest trained name" / "resolved RGB"
    cells: dict = field(default_factory=dict)  # set -> {"de00": mean, "share_lt5": share, "n": count}
    note: str = ""


def colour_sets(n_hex: int = 32, limit: int | None = None) -> dict[str, list[str]]:
    """The four sets; ``limit`` keeps the first names of each (quick checks; the table uses them all)."""
    sets = {"canonical": list(palettes.names("canonical")), "css held-out": list(palettes.heldout_names("css")),
            "xkcd held-out": list(palettes.heldout_names("xkcd")), "hex": palettes.heldout_hex(n_hex)}
    return {k: v[:limit] for k, v in sets.items()}


def render_samples(names, size: int):
    """(inputs, targets, masks) for one polygon per name, rendered at ``size`` (crisp edges: no resize)."""
    from ..polycolor_core.data.synthetic import _sample_at

    samples = [_sample_at(("pose", "shapes"), SEED, i, size, (n,)) for i, n in enumerate(names)]
    inputs = [s.input for s in samples]
    targets = [s.target for s in samples]
    return inputs, targets, [true_mask(x, y) for x, y in zip(inputs, targets)]


def _cell(des) -> dict:
    d = np.asarray(des, dtype=np.float64)
    return {"de00": round(float(np.nanmean(d)), 2), "share_lt5": round(float(np.mean(d < THRESHOLD)), 3), "n": len(d)}


def _score(preds, targets, masks) -> list[float]:
    return [float(ciede2000_map(p, t)[m].mean()) for p, t, m in zip(preds, targets, masks)]


def _paint(targets, masks, rgbs):
    out = []
    for t, m, c in zip(targets, masks, rgbs):
        img = t.copy()
        img[m] = c
        out.append(img)
    return out


def score_colorizer(col, name: str, sets: dict[str, list[str]], output: str = "composite",
                    size: int = RENDER_SIZE) -> ColourRow:
    """A ``Colorizer``'s row; a set it cannot embed (a table-only export) is left out with a note."""
    import warnings

    from ..polycolor_core.colour.colours import UnknownColourError

    row = ColourRow(name)
    for key, names in sets.items():
        inputs, targets, masks = render_samples(names, size)
        try:
            with warnings.catch_warnings():  # out-of-palette warnings are the point of this table
                warnings.simplefilter("ignore", UserWarning)
                preds = col(inputs, names, output=output)
        except UnknownColourError as exc:
            row.note += f"{key}: n/a ({str(exc).split(':')[0]}); "
            continue
        row.cells[key] = _cell(_score(preds, targets, masks))
    return row


def _pooled(embeddings, names) -> np.ndarray:
    e = np.asarray(embeddings.numpy(list(names)), dtype=np.float64).mean(1)  # [N,D]
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def reference_rows(embeddings, trained: list[str], sets: dict[str, list[str]], size: int) -> list[ColourRow]:
    """The two reference rows for an embedding source (``text.CachedTextEncoder``) and the trained names."""
    trained = [n for n in trained if n != palettes.HEX_ENTRY]
    train_emb = _pooled(embeddings, trained)
    train_rgb = [resolve_colour(n) for n in trained]
    nearest, exact = ColourRow("nearest trained name", note=f"{len(trained)} trained names"), ColourRow("resolved RGB")
    for key, names in sets.items():
        _, targets, masks = render_samples(names, size)
        idx = (_pooled(embeddings, names) @ train_emb.T).argmax(1)
        nearest.cells[key] = _cell(_score(_paint(targets, masks, [train_rgb[i] for i in idx]), targets, masks))
        exact.cells[key] = _cell(_score(_paint(targets, masks, [resolve_colour(n) for n in names]), targets, masks))
    return [nearest, exact]


def colour_table(models, n_hex: int = 32, backend: str = "auto", limit: int | None = None) -> dict:
    """Rows for ``models`` (paths or ``(name, Colorizer)``) plus the reference rows of the first model's encoder
    and palette. Returns ``{"sets": {set: n}, "rows": [...], "palettes": {model: spec}}`` (JSON-ready)."""
    from ..export.colorizer import Colorizer

    sets = colour_sets(n_hex, limit)
    rows, pals, first = [], {}, None
    for m in models:
        name, col = m if isinstance(m, tuple) else (str(m), Colorizer.from_pretrained(m, backend=backend))
        first = first or col
        info = col.info
        pals[name] = (getattr(info, "colours", "") or "canonical") + f" / {getattr(info, 'conditioning', 'text')}"
        rows.append(score_colorizer(col, name, sets))
    if first is not None:
        trained = list(first.info.palette) if first.info is not None else list(palettes.names("canonical"))
        rows += reference_rows(first.embeddings, trained, sets, RENDER_SIZE)
    return {"sets": {k: len(v) for k, v in sets.items()}, "palettes": pals,
            "rows": [{"name": r.name, "cells": r.cells, "note": r.note} for r in rows]}


def colour_table_job(paths: list[str], threads: int = 1, n_hex: int = 32, limit: int | None = None) -> dict:
    """:func:`colour_table` on the torch backend with ``threads`` torch threads: what ``polycolor reproduce`` runs in
    a worker process (picklable arguments, a JSON-ready result)."""
    import torch

    torch.set_num_threads(threads)
    return colour_table(paths, n_hex, backend="torch", limit=limit)


REFERENCE_ROWS = ("nearest trained name", "resolved RGB")


def merge_colour_tables(tables: list[dict]) -> dict | None:
    """One table from several :func:`colour_table` results on the same sets: every model row, the reference rows
    once (the first table's). None for no tables."""
    tables = [t for t in tables if t]
    if not tables:
        return None
    rows = [r for t in tables for r in t["rows"] if r["name"] not in REFERENCE_ROWS]
    rows += [r for r in tables[0]["rows"] if r["name"] in REFERENCE_ROWS]
    return {"sets": tables[0]["sets"], "palettes": {k: v for t in tables for k, v in t.get("palettes", {}).items()},
            "rows": rows}


def render_markdown(table: dict) -> str:
    sets = list(table["sets"])
    head = "| model | " + " | ".join(f"{s} ({table['sets'][s]}) dE00 / <5" for s in sets) + " |"
    lines = [head, "|" + "---|" * (len(sets) + 1)]
    for r in table["rows"]:
        cells = [f"{r['cells'][s]['de00']:.1f} / {100 * r['cells'][s]['share_lt5']:.0f}%" if s in r["cells"] else "n/a"
                 for s in sets]
        label = r["name"] + (f" ({table['palettes'][r['name']]})" if r["name"] in table.get("palettes", {}) else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m polycolor.eval.colours", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--hex", type=int, default=32, help="evaluation hex codes (default 32)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    table = colour_table(a.models, a.hex, a.backend)
    print(render_markdown(table))
    if a.json:
        from ..polycolor_core.runtime.atomic import write_json_atomic

        write_json_atomic(a.json, table)


if __name__ == "__main__":
    main()
