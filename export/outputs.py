"""Resumable outputs of a batch job: every output appears whole or not at all, and a manifest says who made it.

``polycolor infer`` (every engine: one process, torchrun/accelerate ranks, Ray Data) writes through one
``OutputStore`` per writing process:

- each output is encoded in memory (``encode_image``), written to a temporary name beside its destination and
  renamed over it (``atomic.atomic_file``), so a SIGKILL leaves the old file or the new one, never half of one;
- after the rename one JSON line is appended to that process's journal ``OUT/.infer_parts/<part>.jsonl``:
  output name -> model (a hash of the model folder's files), colour, input hash, output mode and the output's
  own size and hash. A line cut short by a kill is ignored when read; an output renamed but not yet journalled
  is simply redone;
- ``merge_manifest(out_dir)`` (the single writer: the one process, or rank 0 after the others finished) folds
  the journals into ``OUT/infer_manifest.json`` atomically and removes them.

A rerun reads the manifest and any journals a killed run left and skips exactly the items whose output exists,
still has the recorded size and hash, and was made by the same model, colour, input and output mode
(``OutputStore.reason``); everything else is (re)done, and the report says why (another model, ...).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from ..polycolor_core.runtime.atomic import atomic_file, write_json_atomic

__all__ = ["MANIFEST_FILE", "PARTS_DIR", "OutputStore", "array_digest", "encode_image", "file_digest",
           "merge_manifest", "model_digest", "read_manifest"]

MANIFEST_FILE = "infer_manifest.json"
PARTS_DIR = ".infer_parts"  # per-process journals (and, in a multi-process run, per-rank reports)
MANIFEST_VERSION = 1
_TMP = re.compile(r"^\..+\.(\d+)\.tmp(\.[A-Za-z0-9]+)?$")  # atomic_file's temporary names


def _blake(data: bytes = b"") -> "hashlib.blake2b":
    return hashlib.blake2b(data, digest_size=16)


def file_digest(path: str | Path) -> str:
    h = _blake()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def array_digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return _blake(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()


def model_digest(path: str | Path) -> str:
    """A hash of every file in the model folder ``ModelInfo.read(path)`` resolves to (a run -> its checkpoint):
    weights, config or manifest, colour table. Two folders with the same files hash the same."""
    from ..polycolor_core.model.modelinfo import ModelInfo

    folder = ModelInfo.read(path).path
    h = _blake()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + file_digest(f).encode())
    return h.hexdigest()


def encode_image(img: np.ndarray, name: str) -> bytes:
    """The bytes of ``img`` (RGB uint8) in the format ``name``'s suffix asks for (PNG by default)."""
    from PIL import Image

    fmt = Image.registered_extensions().get(Path(name).suffix.lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def _read_jsonl(path: Path) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return entries
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:  # the line a kill cut short: that output is redone
            continue
        if isinstance(e, dict) and isinstance(e.get("output"), str):
            entries[e["output"]] = e
    return entries


def read_manifest(out_dir: str | Path) -> dict[str, dict]:
    """output name -> entry, from the manifest and then any journals (later records win)."""
    out_dir = Path(out_dir)
    entries: dict[str, dict] = {}
    try:
        data = json.loads((out_dir / MANIFEST_FILE).read_text())
        if isinstance(data, dict) and isinstance(data.get("outputs"), dict):
            entries.update(data["outputs"])
    except (OSError, json.JSONDecodeError):
        pass
    parts = out_dir / PARTS_DIR
    if parts.is_dir():
        for journal in sorted(parts.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
            entries.update(_read_jsonl(journal))
    return entries


def merge_manifest(out_dir: str | Path) -> Path:
    """Fold the journals into ``infer_manifest.json`` (atomically) and delete them. Call from one process only,
    after every writer has finished."""
    out_dir = Path(out_dir)
    parts = out_dir / PARTS_DIR
    journals = sorted(parts.glob("*.jsonl")) if parts.is_dir() else []
    entries = read_manifest(out_dir)
    path = write_json_atomic(out_dir / MANIFEST_FILE, {"version": MANIFEST_VERSION, "outputs": entries})
    for j in journals:
        j.unlink(missing_ok=True)
    try:
        parts.rmdir()  # only when empty
    except OSError:
        pass
    return path


def remove_stale_temporaries(out_dir: str | Path) -> int:
    """Delete temporary files that a killed writer left (``atomic_file`` names whose process is gone)."""
    n = 0
    for root, dirs, files in os.walk(out_dir):
        dirs[:] = [d for d in dirs if d != PARTS_DIR]
        for f in files:
            m = _TMP.match(f)
            if m and not _alive(int(m.group(1))):
                Path(root, f).unlink(missing_ok=True)
                n += 1
    return n


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputStore:
    """The outputs of one job in ``out_dir``, as seen and written by one process (journal ``part``).

    model: ``model_digest`` of the model; output: "composite" | "raw". Read the manifest once at start
    (before any process of the job writes), then ``reason(...)`` says whether an item must be (re)done and
    ``write(...)`` writes one output atomically and journals it.
    """

    def __init__(self, out_dir: str | Path, model: str, output: str, part: str = "main", resume: bool = True):
        self.out_dir = Path(out_dir)
        self.model, self.output, self.part = model, output, part
        self.entries = read_manifest(self.out_dir) if resume else {}
        self.resume = resume
        self._journal = None

    def reason(self, output: str, colour: str, input_digest: str) -> str | None:
        """None when ``output`` is complete and was made from this input by this model, colour and mode;
        otherwise why it must be (re)done ("new" for an output never made)."""
        if not self.resume:
            return "redo requested (--no-resume)"
        dest = self.out_dir / output
        e = self.entries.get(output)
        if e is None:
            return "output exists but no manifest records it" if dest.exists() else "new"
        if not dest.is_file():
            return "output recorded but missing"
        for key, what in (("model", "another model"), ("colour", "another colour"), ("output_mode", "another --output")):
            want = {"model": self.model, "colour": colour, "output_mode": self.output}[key]
            if e.get(key) != want:
                return f"made by {what} ({e.get(key)!s:.16} != {want:.16})"
        if e.get("input") != input_digest:
            return "input changed since it was made"
        if dest.stat().st_size != e.get("size") or file_digest(dest) != e.get("digest"):
            return "output differs from what the manifest recorded (incomplete or edited)"
        return None

    def write(self, output: str, data: bytes, colour: str, input_digest: str, label: str = "") -> None:
        """Write ``data`` to ``out_dir/output`` atomically, then journal it (OSError on a failed write)."""
        dest = self.out_dir / output
        with atomic_file(dest) as tmp:
            tmp.write_bytes(data)
        entry = {"output": output, "input": input_digest, "label": label, "colour": colour, "model": self.model,
                 "output_mode": self.output, "size": len(data), "digest": _blake(data).hexdigest()}
        if self._journal is None:
            (self.out_dir / PARTS_DIR).mkdir(parents=True, exist_ok=True)
            self._journal = open(self.out_dir / PARTS_DIR / f"{self.part}.jsonl", "a", encoding="utf-8")
        self._journal.write(json.dumps(entry) + "\n")
        self._journal.flush()  # in the page cache: survives a killed process
        self.entries[output] = entry

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
