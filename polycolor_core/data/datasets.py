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
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image

from .hfdata import HFSamples, load_hf
from .sample import DataError, Sample, _check_colour, _read_image, _size

__all__ = ["Sample", "DataError", "HFSamples", "SyntheticSpec", "load_folder", "load_hf", "load_data", "parse_synthetic",
           "spec_colours", "write_split", "SPEC_HELP"]

ROW_KEYS = ("input_polygon", "colour", "output_image")
_ROW_EXAMPLE = '{"input_polygon": "octagon.png", "colour": "cyan", "output_image": "cyan_octagon.png"}'

SPEC_HELP = (
    "data specs: 'folder:PATH' (a split folder with data.json, inputs/, outputs/), "
    "'hf:HUB_ID_OR_PATH[:split][?input=COL&target=COL&colour=COL]' (hub id, save_to_disk folder, parquet, "
    "imagefolder), 'synthetic:FAMILY[+FAMILY]?n=1000&seed=0&size=128[&colours=red,teal]' "
    "(families: canonical, pose, shapes, dark), or a bare path to a split folder / saved dataset / parquet"
)


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


# --------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class SyntheticSpec:
    """A parsed ``synthetic:FAM+FAM?n=&seed=&size=&colours=`` spec; ``given`` names the options written out."""

    families: tuple[str, ...] = ("canonical",)
    n: int = 1000
    seed: int = 0
    size: int = 128
    colours: tuple[str, ...] | None = None
    given: frozenset = field(default_factory=frozenset)

    def dataset(self, **override):
        """The ``SyntheticDataset`` this spec describes (``override``: e.g. ``n=`` for a training stream)."""
        from .synthetic import SyntheticDataset

        kw = dict(n=self.n, seed=self.seed, size=self.size, colours=list(self.colours) if self.colours else None)
        kw.update(override)
        return SyntheticDataset(self.families, **kw)


def parse_synthetic(spec: str | Path) -> SyntheticSpec | None:
    """The one parser of synthetic data specs; None for a spec of another kind. Raises ``DataError``."""
    s = str(spec)
    scheme, sep, rest = s.partition(":")
    if not sep or scheme != "synthetic":
        return None
    from .synthetic import check_families

    fams, _, query = rest.partition("?")
    kw: dict = {"n": 1000, "seed": 0, "size": 128, "colours": None}
    given = set()
    for key, val in parse_qsl(query, keep_blank_values=True):
        key = {"colors": "colours"}.get(key, key)
        if key not in kw:
            raise DataError(f"{s!r}: unknown option {key!r}; synthetic options are n, seed, size, colours")
        given.add(key)
        if key == "colours":
            kw[key] = tuple(c for c in val.split(",") if c)
            continue
        try:
            kw[key] = int(val)
        except ValueError:
            raise DataError(f"{s!r}: {key} must be an integer, got {val!r}") from None
    try:
        families = check_families([f for f in fams.split("+") if f] or "canonical")
    except ValueError as e:
        raise DataError(f"{s!r}: {e}") from e
    return SyntheticSpec(families, kw["n"], kw["seed"], kw["size"], kw["colours"] or None, frozenset(given))


def spec_colours(spec: str | Path) -> list[str] | None:
    """The colour names a data spec fixes (``synthetic:...?colours=a,b``); None when it fixes none."""
    parsed = parse_synthetic(spec)
    return list(parsed.colours) if parsed is not None and parsed.colours else None


def _parse_synthetic(rest: str, spec: str):
    parsed = parse_synthetic(spec)
    try:
        return parsed.dataset()
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
