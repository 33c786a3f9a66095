"""Hugging Face datasets as polycolor samples: hub ids, ``save_to_disk`` folders, parquet, imagefolder.

``load_hf`` is re-exported by ``data`` (``data.load_data("hf:...")`` is the usual way in).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .sample import DataError, Sample, _check_colour, _pil_to_rgb, _read_image, _size

__all__ = ["HFSamples", "load_hf"]

# --------------------------------------------------------------------------------------------- Hugging Face

_COLUMN_CANDIDATES = {
    "input": ("input_polygon", "input", "input_image", "polygon", "source", "conditioning_image", "image"),
    "target": ("output_image", "target", "output", "target_image", "edited_image", "filled"),
    "colour": ("colour", "color", "colour_name", "color_name", "prompt", "text", "caption"),
}
_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}


def _resolve_columns(available: Sequence[str], columns: Mapping[str, str] | None, source: str) -> dict[str, str]:
    columns = dict(columns or {})
    unknown = set(columns) - set(_COLUMN_CANDIDATES)
    if unknown:
        raise DataError(f"columns= keys must be among {sorted(_COLUMN_CANDIDATES)}, got {sorted(unknown)}")
    out = {}
    for field, candidates in _COLUMN_CANDIDATES.items():
        if field in columns:
            if columns[field] not in available:
                raise DataError(
                    f"{source}: column {columns[field]!r} (for {field}) not found; columns: {list(available)}"
                )
            out[field] = columns[field]
            continue
        found = [c for c in candidates if c in available and c not in out.values()]
        if not found:
            raise DataError(
                f"{source}: no column for {field!r} (looked for {', '.join(candidates)}); columns are "
                f"{list(available)}. Name it, e.g. columns={{'{field}': '{available[0] if available else 'col'}'}} "
                f"or 'hf:...?{field}=COLUMN'"
            )
        out[field] = found[0]
    return out


def _value_to_rgb(value, base: Path | None, where: str) -> np.ndarray:
    if isinstance(value, Image.Image):
        return _pil_to_rgb(value)
    if isinstance(value, dict) and value.get("bytes"):
        try:
            with Image.open(io.BytesIO(value["bytes"])) as im:
                return _pil_to_rgb(im)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{where}: the stored bytes are not an image ({e})") from e
    if isinstance(value, dict) and value.get("path"):
        value = value["path"]
    if isinstance(value, (str, Path)):
        f = Path(value)
        return _read_image(f if f.is_absolute() or base is None else base / f, where)
    if isinstance(value, (np.ndarray, list)):
        a = np.asarray(value)
        if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
            a = a.transpose(1, 2, 0)  # CHW -> HWC
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.shape[-1] not in (1, 3):
            raise DataError(f"{where}: array of shape {a.shape} is not an HxWx3 image")
        if a.dtype != np.uint8:
            a = np.clip(a * 255.0 if a.max() <= 1.0 else a, 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.broadcast_to(a, a.shape[:2] + (3,)))
    raise DataError(f"{where}: cannot read an image from a {type(value).__name__}")


def _file_name(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("path")
    if isinstance(value, (str, Path)) and str(value):
        return Path(value).name
    return None


class HFSamples(Sequence):
    """A Hugging Face dataset seen as a lazy sequence of ``Sample`` (rows are decoded on access)."""

    def __init__(self, ds, columns: Mapping[str, str] | None = None, base: Path | None = None, source: str = "dataset"):
        self.ds, self.base, self.source = ds, base, source
        self.columns = _resolve_columns(list(ds.column_names), columns, source)
        # Colours are cheap to read as one column: check them all now instead of failing mid-training.
        self._colours = [str(c) for c in ds[self.columns["colour"]]]
        for i, c in enumerate(self._colours):
            _check_colour(c, f"{source} row {i} (column {self.columns['colour']!r})")

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} rows")
        row = self.ds[i]
        where = f"{self.source} row {i}"
        raw_in, raw_tgt = row[self.columns["input"]], row[self.columns["target"]]
        inp = _value_to_rgb(raw_in, self.base, f"{where} column {self.columns['input']!r}")
        tgt = _value_to_rgb(raw_tgt, self.base, f"{where} column {self.columns['target']!r}")
        if inp.shape != tgt.shape:
            raise DataError(f"{where}: input is {_size(inp)} but target is {_size(tgt)}; they must have the same size")
        colour = self._colours[i]
        in_name = _file_name(raw_in)
        name = _file_name(raw_tgt) or f"{i:06d}_{re.sub(r'[^A-Za-z0-9]+', '', colour) or 'colour'}.png"
        return Sample(inp, tgt, colour, name, "hf", Path(in_name).stem if in_name else "")

    def __repr__(self) -> str:
        return f"HFSamples({self.source!r}, rows={len(self)}, columns={self.columns})"


def _pick_split(dd, split: str, source: str):
    names = list(dd.keys())
    for alias in next((a for a in _SPLIT_ALIASES.values() if split in a), (split,)):
        if alias in names:
            return dd[alias]
    raise DataError(f"{source} has no split {split!r}; available splits: {names}")


def _open_hf(spec: str, split: str):
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a hard dependency, but say so clearly
        raise DataError("loading Hugging Face data needs the 'datasets' package: pip install datasets") from e
    p = Path(spec).expanduser()
    if p.is_file():
        if p.suffix != ".parquet":
            raise DataError(f"{p}: a single file must be .parquet; for data.json use 'folder:{p.parent}'")
        return datasets.load_dataset("parquet", data_files=str(p), split="train"), p.parent
    if p.is_dir():
        if (p / "dataset_dict.json").is_file():
            return _pick_split(datasets.load_from_disk(str(p)), split, str(p)), p
        if (p / "state.json").is_file():
            return datasets.load_from_disk(str(p)), p
        parquet = sorted(p.rglob("*.parquet"))
        if parquet:

            def of_split(f: Path, names) -> bool:  # hub layout: train-0000.parquet or train/0000.parquet
                return any(n in f.relative_to(p).parts[:-1] or f.name.startswith(n) for n in names)

            aliases = next((a for a in _SPLIT_ALIASES.values() if split in a), (split,))
            chosen = [f for f in parquet if of_split(f, aliases)]
            if not chosen and any(of_split(f, sum(_SPLIT_ALIASES.values(), ())) for f in parquet):
                found = sorted({str(f.relative_to(p)) for f in parquet})
                raise DataError(f"{p} has no parquet files for split {split!r}; files: {found[:8]}")
            return datasets.load_dataset("parquet", data_files=[str(f) for f in chosen or parquet], split="train"), p
        try:
            dd = datasets.load_dataset("imagefolder", data_dir=str(p))
        except Exception as e:
            raise DataError(
                f"{p} is neither a save_to_disk dataset, a parquet folder nor a readable imagefolder ({e}); "
                f"for the original data.json layout use 'folder:{p}'"
            ) from e
        return _pick_split(dd, split, str(p)), p
    from ..model.hub import hub_reachable

    try:
        if not hub_reachable():
            # offline: let datasets use its cache only, instead of minutes of retries with back-off
            import huggingface_hub.constants as hub_constants

            saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
            datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
            try:
                return datasets.load_dataset(spec, split=split), None
            finally:
                datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved
        return datasets.load_dataset(spec, split=split), None
    except Exception as e:
        raise DataError(
            f"could not load {spec!r}: it is not a local file or folder, and loading it from the Hugging Face hub "
            f"failed ({type(e).__name__}: {e}). If this machine is offline (or HF_HUB_OFFLINE=1) hub downloads "
            f"cannot work: on a connected machine run `datasets.load_dataset({spec!r}).save_to_disk('DIR')`, copy "
            f"DIR here and use 'hf:DIR' (a parquet file or folder works too)."
        ) from e


def load_hf(spec: str | Path, split: str = "train", columns: Mapping[str, str] | None = None) -> HFSamples:
    """Samples from a hub id, a ``save_to_disk`` folder, a parquet file/folder or an imagefolder.

    ``columns`` maps our fields ``input``/``target``/``colour`` to the dataset's column names; by default the
    original names (input_polygon, output_image, colour) or common alternatives are looked up.
    """
    ds, base = _open_hf(str(spec), split)
    return HFSamples(ds, columns, base, source=str(spec))


