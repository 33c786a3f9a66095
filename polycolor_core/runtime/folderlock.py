"""One writer per output folder: a lock file that names its holder, taken over when that holder is gone.

Two ``polycolor train`` runs pointed at one run folder (or two ``polycolor reproduce`` at one folder, or two
single-process ``polycolor infer`` at one ``--out``) would interleave checkpoints, metrics rows and outputs. So each
takes ``folder_lock(folder, what)`` first:

- the lock is ``<folder>/.polycolor.lock``, created atomically (``O_CREAT | O_EXCL``) and holding the holder's pid,
  host, start time and command;
- a lock whose holder is alive on this host makes the second writer stop with ``FolderLockedError``, which names
  that process and the fix;
- a lock whose holder is gone (a run killed with SIGKILL leaves one behind) is stale: it is taken over, and the
  caller is told so;
- a lock written on another host cannot be checked, so it is respected, and the message says how to remove it.

The lock is released (deleted) when the ``with`` block ends, whether it ends normally or by an exception.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger("polycolor")

LOCK_NAME = ".polycolor.lock"


class FolderLockedError(RuntimeError):
    """Another live process is writing to the folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # torn or foreign: a writer killed while writing it


def _describe(h: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.get("started", 0))) if h.get("started") else "?"
    return f"pid {h.get('pid', '?')} on {h.get('host', '?')} ({h.get('what', '?')}, since {started})"


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "polycolor") -> Iterator[Path]:
    """Hold ``<folder>/.polycolor.lock`` for the ``with`` block (see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
          "what": what, "command": " ".join(sys.argv)[:300]}
    for _ in range(3):  # a stale lock removed by a competitor between our checks: try again
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:
                continue  # released meanwhile
            same_host = holder.get("host") == me["host"]
            pid = holder.get("pid")
            if holder and same_host and isinstance(pid, int) and pid != me["pid"] and _alive(pid):
                raise FolderLockedError(
                    f"{folder} is in use by another polycolor process: {_describe(holder)}. Wait for it to finish, "
                    f"stop it, or choose another folder; if that process is gone, delete {path}") from None
            if holder and not same_host:
                raise FolderLockedError(
                    f"{folder} is locked by {_describe(holder)}, which cannot be checked from here; if that run is "
                    f"over, delete {path}") from None
            log.warning("taking over the stale lock of %s (%s)", folder, _describe(holder) if holder else "unreadable")
            print(f"[polycolor] {folder}: taking over a stale lock ({_describe(holder) if holder else 'unreadable'}: "
                  "that process is gone)", file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise FolderLockedError(f"could not lock {folder}: {path} keeps reappearing; another process is starting there")
    try:
        yield path
    finally:
        if (_holder(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
