"""The precomputed colour-embedding table of an export (``colour_table.safetensors``): names + [N,L,D].

Written by the exporter, read by the Colorizer's ONNX backend, so it lives apart from both: the runtime never
imports the exporter for it. Names are stored as given (lower case); readers key them by ``colours.colour_key``
(``text.CachedTextEncoder``), so "Light-Blue" finds the row stored as "light blue".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import COLOUR_TABLE_NAMES_KEY, COLOUR_TABLE_TENSOR

__all__ = ["colour_table_names", "save_colour_table", "load_colour_table"]


def colour_table_names(extra: Sequence[str] | None = None) -> list[str]:
    """The 8 canonical colours followed by ``extra`` names (validated, lower-cased, de-duplicated by ``colour_key``:
    "Light Blue" after "light blue" adds nothing)."""
    from ..polycolor_core.colour.colours import CANONICAL_COLOURS, colour_key, resolve_colour

    names = list(CANONICAL_COLOURS)
    keys = {colour_key(n) for n in names}
    if isinstance(extra, str):
        extra = [e for e in extra.split(",")]
    for name in extra or ():
        resolve_colour(name)  # UnknownColourError with suggestions for a typo
        spelled, key = str(name).strip().lower(), colour_key(name)
        if key and key not in keys:
            names.append(spelled)
            keys.add(key)
    return names


def save_colour_table(path: Path, names: Sequence[str], embeddings: np.ndarray) -> None:
    """float32 [N,L,D] + the row names as safetensors metadata (never pickle)."""
    from safetensors.numpy import save_file

    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 3 or emb.shape[0] != len(names):
        raise ValueError(f"colour table must be [N,L,D] with one row per name; got {list(emb.shape)} for {len(names)} names")
    save_file({COLOUR_TABLE_TENSOR: emb}, str(path), metadata={COLOUR_TABLE_NAMES_KEY: json.dumps(list(names))})


def load_colour_table(path: str | Path) -> dict[str, np.ndarray]:
    """name -> float32 [L,D] from a ``colour_table.safetensors``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        names = json.loads((f.metadata() or {})[COLOUR_TABLE_NAMES_KEY])
        emb = f.get_tensor(COLOUR_TABLE_TENSOR).astype(np.float32)
    if emb.shape[0] != len(names):
        raise ValueError(f"{path}: {len(names)} names but {emb.shape[0]} embeddings; re-export the model")
    return dict(zip(names, emb))
