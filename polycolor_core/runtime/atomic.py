"""Atomic writes: every file or folder the project writes appears whole or not at all.

A killed process (SIGKILL mid-epoch, Ctrl-C in a leaderboard run) must never leave a half-written output
that a later reader trusts. So outputs are written to a temporary name in the same folder (same file
system) and renamed over the destination with ``os.replace``, which is atomic on POSIX and Windows.

- ``atomic_file(path)``: a context manager yielding the temporary path to write; renamed on success,
  removed on error.
- ``write_json_atomic(path, data)`` / ``write_text_atomic(path, text)``: the common cases.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that pick a format by suffix work);
    on success rename it over ``path``; on any exception delete it and re-raise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, data, **kw) -> Path:
    kw.setdefault("indent", 2)
    kw.setdefault("sort_keys", True)
    return write_text_atomic(path, json.dumps(data, **kw))
