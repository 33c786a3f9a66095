"""The user's cache folder for polycolor: converted weights, measured backend choices, cached exports.

``cache_dir("lpips")`` -> ``$POLYCOLOR_CACHE/lpips`` if that variable is set, else
``$XDG_CACHE_HOME/polycolor/lpips``, else ``~/.cache/polycolor/lpips`` (created on first use). Everything
written here can be deleted at any time: it is rebuilt on the next use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CACHE_ENV = "POLYCOLOR_CACHE"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "polycolor"


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the cache root, created if missing."""
    d = cache_root().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_entries(path: Path, schema: str) -> dict:
    """A measured-choice cache file (``{"schema": ..., "entries": {key: ...}}``); a missing, damaged or foreign
    file reads as empty, so it is measured again rather than trusted."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {"schema": schema, "entries": {}}
    if not isinstance(data, dict) or data.get("schema") != schema or not isinstance(data.get("entries"), dict):
        return {"schema": schema, "entries": {}}
    return data
