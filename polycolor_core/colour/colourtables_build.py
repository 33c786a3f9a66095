"""Regenerate ``colourtables.json`` from an installed matplotlib: ``python -m polycolor.polycolor_core.colour.colourtables_build``.

Development only (matplotlib is a dependency of the full install, not of ComfyUI's Python); the run-time reader
is ``colourtables.py``, which never imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path

from .colourtables import TABLES_FILE, _tables


def from_matplotlib() -> dict:
    """The same tables read from an installed matplotlib (``ImportError`` without it)."""
    from matplotlib.colors import CSS4_COLORS, XKCD_COLORS

    return {"css4": {k: v.lower() for k, v in CSS4_COLORS.items()}, "xkcd": {k: v.lower() for k, v in XKCD_COLORS.items()}}


def write_tables(path: str | Path = TABLES_FILE) -> Path:
    """Write matplotlib's tables to ``path`` (atomically); the pairs are kept as lists so the order survives."""
    from ..runtime.atomic import write_text_atomic

    tables = from_matplotlib()
    def pairs(table: dict) -> str:  # one [name, hex] per line: readable diffs when matplotlib's tables change
        return "[\n" + ",\n".join(json.dumps([k, v]) for k, v in table.items()) + "\n]"

    text = ('{"source": "matplotlib.colors CSS4_COLORS / XKCD_COLORS",\n'
            f'"css4": {pairs(tables["css4"])},\n"xkcd": {pairs(tables["xkcd"])}}}\n')
    write_text_atomic(path, text)
    _tables.cache_clear()
    return Path(path)


if __name__ == "__main__":
    print(write_tables())
