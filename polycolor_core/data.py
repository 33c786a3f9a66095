"""Loading and writing polygon/colour pairs: the original folder layout, Hugging Face datasets, specs.

Original layout (one split folder)::

    data.json   [{"input_polygon": "octagon.png", "colour": "cyan", "output_image": "cyan_octagon.png"}, ...]
    inputs/     outline images, shared between rows
    outputs/    filled targets

``load_data`` turns a spec string into samples: ``folder:PATH``, ``hf:ID_OR_PATH[:split][?input=..&target=..
&colour=..]``, ``synthetic:fam1+fam2?n=1000&seed=3&size=128&colours=red,teal`` or a bare path. Every failure
is a ``DataError`` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image, UnidentifiedImageError

from .imageio import pil_to_rgb
from .colours import UnknownColourError, resolve_colour

__all__ = ["Sample", "DataError", "HFSamples", "load_folder", "load_hf", "load_data", "write_split", "SPEC_HELP"]

ROW_KEYS = ("input_polygon", "colour", "output_image")
_ROW_EXAMPLE = '{"input_polygon": "octagon.png", "colour": "cyan", "output_image": "cyan_octagon.png"}'

SPEC_HELP = (
    "data specs: 'folder:PATH' (a split folder with data.json, inputs/, outputs/), "
    "'hf:HUB_ID_OR_PATH[:split][?input=COL&target=COL&colour=COL]' (hub id, save_to_disk folder, parquet, "
    "imagefolder), 'synthetic:FAMILY[+FAMILY]?n=1000&seed=0&size=128[&colours=red,teal]' "
    "(families: canonical, pose, shapes, dark), or a bare path to a split folder / saved dataset / parquet"
)


@dataclass(eq=False)  # arrays make field-wise == ambiguous; compare samples explicitly
class Sample:
    """One pair: ``input`` outline image and ``target`` filled image, uint8 HxWx3 RGB, plus its colour name."""

    input: np.ndarray
    target: np.ndarray
    colour: str
    name: str
    family: str = "folder"
    shape: str = ""


class DataError(ValueError):
    """Unreadable or inconsistent data; the message names the file and what to do about it."""


# --------------------------------------------------------------------------------------------- images


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    # the one RGB conversion (transparent pixels on white, the original background) shared with inference
    return pil_to_rgb(im)[0]


def _read_image(path: Path, where: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{where}: image file {path} does not exist; add it or fix the file name in the row")
    try:
        with Image.open(path) as im:
            return _pil_to_rgb(im)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{where}: {path} is not a readable image ({e}); replace it with a PNG/JPEG") from e


def _size(a: np.ndarray) -> str:
    return f"{a.shape[1]}x{a.shape[0]}"


def _check_colour(colour, where: str) -> None:
    try:
        resolve_colour(colour)
    except UnknownColourError as e:
        raise DataError(f"{where}: {e}") from e


# --------------------------------------------------------------------------------------------- folder


def load_folder(path: str | Path) -> list[Sample]:
    """Samples of one split in the original layout; ``path`` is the split folder or its data.json."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p} does not exist; pass a split folder holding data.json, inputs/ and outputs/")
    json_path, root = (p / "data.json", p) if p.is_dir() else (p, p.parent)
    if not json_path.is_file():
        splits = sorted(d.name for d in p.iterdir() if (d / "data.json").is_file())
        hint = (
            f"it holds split folders {splits}: pass one of them, e.g. {p / splits[0]}"
            if splits
            else "expected the original layout: data.json, inputs/, outputs/ (for a Hugging Face dataset, "
            "parquet or imagefolder use 'hf:PATH')"
        )
        raise DataError(f"no data.json in {p}; {hint}")
    try:
        rows = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(
            f"{json_path} is not valid JSON ({e}); fix it so it holds a list of rows like {_ROW_EXAMPLE}"
        ) from e
    if not isinstance(rows, list):
        raise DataError(f"{json_path} must hold a JSON list of rows like {_ROW_EXAMPLE}, got a {type(rows).__name__}")

    decoded: dict[Path, np.ndarray] = {}  # inputs are shared by many rows: decode each file once

    def read(f: Path, where: str) -> np.ndarray:
        if f not in decoded:
            decoded[f] = _read_image(f, where)
        return decoded[f].copy()  # copies: a consumer editing one sample must not edit its siblings

    samples = []
    for i, row in enumerate(rows):
        where = f"{json_path} row {i}"
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"{where} lacks {', '.join(map(repr, missing))}; every row needs {_ROW_EXAMPLE}")
        bad = [k for k in ROW_KEYS if not isinstance(row[k], str)]
        if bad:
            raise DataError(f"{where}: {', '.join(map(repr, bad))} must be a string; rows look like {_ROW_EXAMPLE}")
        _check_colour(row["colour"], where)
        inp = read(root / "inputs" / row["input_polygon"], where)
        tgt = read(root / "outputs" / row["output_image"], where)
        if inp.shape != tgt.shape:
            raise DataError(
                f"{where}: input inputs/{row['input_polygon']} is {_size(inp)} but target outputs/"
                f"{row['output_image']} is {_size(tgt)}; input and target must have the same size (resize one)"
            )
        samples.append(Sample(inp, tgt, row["colour"], row["output_image"], "folder", Path(row["input_polygon"]).stem))
    return samples


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
    from .hub import hub_reachable

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


# --------------------------------------------------------------------------------------------- specs


def _parse_synthetic(rest: str, spec: str):
    from .synthetic import SyntheticDataset  # synthetic imports Sample from here: import late

    fams, _, query = rest.partition("?")
    kw: dict = {"n": 1000, "seed": 0, "size": 128, "colours": None}
    for key, val in parse_qsl(query, keep_blank_values=True):
        key = {"colors": "colours"}.get(key, key)
        if key not in kw:
            raise DataError(f"{spec!r}: unknown option {key!r}; synthetic options are n, seed, size, colours")
        if key == "colours":
            kw[key] = [c for c in val.split(",") if c]
            continue
        try:
            kw[key] = int(val)
        except ValueError:
            raise DataError(f"{spec!r}: {key} must be an integer, got {val!r}") from None
    try:
        return SyntheticDataset(fams or "canonical", **kw)
    except ValueError as e:
        raise DataError(f"{spec!r}: {e}") from e


def _parse_hf(rest: str):
    target, _, query = rest.partition("?")
    split = "train"
    if not Path(target).expanduser().exists() and ":" in target:
        # Hub ids never contain ':'; the split may ('train[:10%]'), so cut at the first one.
        target, _, split = target.partition(":")
    columns = dict(parse_qsl(query))
    return load_hf(target, split or "train", columns or None)


def _looks_like_hf_dir(p: Path) -> bool:
    markers = ("dataset_dict.json", "state.json", "metadata.jsonl", "metadata.csv")  # save_to_disk, imagefolder
    return any((p / f).is_file() for f in markers) or any(p.glob("**/*.parquet"))


def load_data(spec: str | Path):
    """Samples for a spec string (see ``SPEC_HELP``): a list, an ``HFSamples`` or a ``SyntheticDataset``."""
    s = str(spec)
    scheme, sep, rest = s.partition(":")
    if sep and scheme == "folder":
        return load_folder(rest)
    if sep and scheme == "hf":
        return _parse_hf(rest)
    if sep and scheme == "synthetic":
        return _parse_synthetic(rest, s)
    p = Path(s).expanduser()
    if p.is_file() and p.name.endswith(".json"):
        return load_folder(p)
    if p.is_file() and p.suffix == ".parquet":
        return load_hf(p)
    if p.is_dir():
        if (p / "data.json").is_file():
            return load_folder(p)
        if _looks_like_hf_dir(p):
            return load_hf(p)
        return load_folder(p)  # raises a DataError that lists split sub-folders, if any
    raise DataError(f"cannot read data spec {s!r}: no such file or folder. {SPEC_HELP}")


# --------------------------------------------------------------------------------------------- writing


def _safe(stem: str, fallback: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or fallback


def _unique(name: str, used: set[str], index: int) -> str:
    stem = name[:-4]
    k = 0
    while name in used:
        name = f"{stem}_{index}.png" if k == 0 else f"{stem}_{index}_{k}.png"
        k += 1
    used.add(name)
    return name


def write_split(samples: Iterable[Sample], out_dir: str | Path, progress: bool = True) -> Path:
    """Write samples in the original layout (inputs/, outputs/, data.json) and return ``out_dir``.

    Identical inputs are written once and shared by name, like the original (``octagon.png``); an input
    whose name is taken by a different image gets the sample index appended (``octagon_17.png``).
    """
    out = Path(out_dir).expanduser()
    (out / "inputs").mkdir(parents=True, exist_ok=True)
    (out / "outputs").mkdir(parents=True, exist_ok=True)
    rows, by_content, used_in, used_out = [], {}, set(), set()
    items = samples
    if progress:
        from rich.progress import track  # only when asked: rich costs import time

        total = len(samples) if hasattr(samples, "__len__") else None
        items = track(samples, description=f"writing {out}", total=total)
    for i, s in enumerate(items):
        key = hashlib.blake2b(s.input.tobytes() + repr(s.input.shape).encode(), digest_size=16).hexdigest()
        stem = _safe(s.shape or Path(s.name).stem, "input")
        if key not in by_content:
            by_content[key] = _unique(f"{stem}.png", used_in, i)
            Image.fromarray(np.ascontiguousarray(s.input, dtype=np.uint8)).save(out / "inputs" / by_content[key])
        out_name = _unique(_safe(Path(s.name).stem, f"{s.colour}_{stem}") + ".png", used_out, i)
        Image.fromarray(np.ascontiguousarray(s.target, dtype=np.uint8)).save(out / "outputs" / out_name)
        rows.append({"input_polygon": by_content[key], "colour": s.colour, "output_image": out_name})
    (out / "data.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return out
