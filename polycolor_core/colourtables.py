"""The CSS and XKCD colour-name tables, shipped with the package (``colourtables.json``), so no run-time
dependency provides them.

They are exactly matplotlib's ``CSS4_COLORS`` and ``XKCD_COLORS`` (``matplotlib/_color_data.py``, public
domain / CC0), in matplotlib's order: the XKCD order matters (of two names with one ``colour_key`` the first
wins). ComfyUI's Python has no matplotlib, and a colour-name lookup must not need one: the node resolves
"dark teal" from this file. ``python -m polycolor.polycolor_core.colourtables`` regenerates the file from an
installed matplotlib (atomic write); ``tests/test_comfyui_deps.py`` checks it still equals matplotlib's tables
wherever matplotlib is installed.

- ``css4()`` -> ``{name: "#rrggbb"}`` (148 names, lower case);
- ``xkcd()`` -> ``{"xkcd:name": "#rrggbb"}`` (949 names, matplotlib's order).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

TABLES_FILE = Path(__file__).with_name("colourtables.json")

__all__ = ["TABLES_FILE", "css4", "xkcd", "from_matplotlib", "write_tables"]


@functools.lru_cache(maxsize=1)
def _tables() -> dict:
    try:
        data = json.loads(TABLES_FILE.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FileNotFoundError(f"{TABLES_FILE} is missing from the polycolor package (reinstall it, or run "
                                "`python -m polycolor.polycolor_core.colourtables` with matplotlib installed)") from exc
    return {"css4": dict(data["css4"]), "xkcd": dict(data["xkcd"])}  # JSON arrays of pairs keep the order


def css4() -> dict[str, str]:
    """CSS colour name -> ``#rrggbb`` (matplotlib's ``CSS4_COLORS``)."""
    return dict(_tables()["css4"])


def xkcd() -> dict[str, str]:
    """``xkcd:<name>`` -> ``#rrggbb`` in matplotlib's order (matplotlib's ``XKCD_COLORS``)."""
    return dict(_tables()["xkcd"])


def from_matplotlib() -> dict:
    """The same tables read from an installed matplotlib (``ImportError`` without it)."""
    from matplotlib.colors import CSS4_COLORS, XKCD_COLORS

    return {"css4": {k: v.lower() for k, v in CSS4_COLORS.items()}, "xkcd": {k: v.lower() for k, v in XKCD_COLORS.items()}}


def write_tables(path: str | Path = TABLES_FILE) -> Path:
    """Write matplotlib's tables to ``path`` (atomically); the pairs are kept as lists so the order survives."""
    from .atomic import write_text_atomic

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
