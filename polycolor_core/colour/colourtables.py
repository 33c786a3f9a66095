"""The CSS and XKCD colour-name tables, shipped with the package (``colourtables.json``), so no run-time
dependency provides them.

They are exactly matplotlib's ``CSS4_COLORS`` and ``XKCD_COLORS`` (``matplotlib/_color_data.py``, public
domain / CC0), in matplotlib's order: the XKCD order matters (of two names with one ``colour_key`` the first
wins). ComfyUI's Python has no matplotlib, and a colour-name lookup must not need one: the node resolves
"dark teal" from this file. ``python -m polycolor.polycolor_core.colour.colourtables_build`` regenerates the file from
an installed matplotlib (atomic write; a separate module, so nothing the nodes import mentions matplotlib); ``tests/test_comfyui_deps.py`` checks it still equals matplotlib's tables
wherever matplotlib is installed.

- ``css4()`` -> ``{name: "#rrggbb"}`` (148 names, lower case);
- ``xkcd()`` -> ``{"xkcd:name": "#rrggbb"}`` (949 names, matplotlib's order).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

TABLES_FILE = Path(__file__).with_name("colourtables.json")

__all__ = ["TABLES_FILE", "css4", "xkcd"]


@functools.lru_cache(maxsize=1)
def _tables() -> dict:
    try:
        data = json.loads(TABLES_FILE.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FileNotFoundError(f"{TABLES_FILE} is missing from the polycolor package (reinstall it, or run "
                                "`python -m polycolor.polycolor_core.colour.colourtables` with matplotlib installed)") from exc
    return {"css4": dict(data["css4"]), "xkcd": dict(data["xkcd"])}  # JSON arrays of pairs keep the order


def css4() -> dict[str, str]:
    """CSS colour name -> ``#rrggbb`` (matplotlib's ``CSS4_COLORS``)."""
    return dict(_tables()["css4"])


def xkcd() -> dict[str, str]:
    """``xkcd:<name>`` -> ``#rrggbb`` in matplotlib's order (matplotlib's ``XKCD_COLORS``)."""
    return dict(_tables()["xkcd"])
