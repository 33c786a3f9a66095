"""Parsing the leaderboard's model selection (``--models``).

Accepted syntax (comma-separated tokens, whitespace ignored, case-insensitive names)::

    m3              one variant
    m1..m8          an inclusive ascending range of variants
    m2,m4,m8        a list
    m1..m3,m8       ranges and names mixed
    all             every variant (m1..m8)
    runs/m4-long    a path: a run folder, an export folder or a checkpoint dir

A token is a *path* when it contains a path separator (``/``, or the OS's own) or names something that
exists on disk - except that a bare variant name (``m4``) always means the variant; write ``./m4`` for a
folder that happens to be called ``m4``. Paths come back as :class:`pathlib.Path`, variant names as ``str``.
Duplicates are dropped (first occurrence wins, order otherwise kept). Anything else raises ``ValueError``
with the valid names and this syntax.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..polycolor_core.model.variants import VARIANTS

__all__ = ["ACCEPTED_SYNTAX", "valid_names", "is_path_token", "parse_range", "parse_models"]

ACCEPTED_SYNTAX = (
    "a name (m3), an ascending range (m1..m8), a comma-separated list (m2,m4,m8), a mix (m1..m3,m8), "
    "'all', or a path to a run folder / export / checkpoint dir (anything containing '/')"
)


def valid_names() -> tuple[str, ...]:
    """The variant names in registry order (``m1``..``m8``)."""
    return tuple(VARIANTS)


def _names_text() -> str:
    names = valid_names()
    return f"{names[0]}..{names[-1]} ({', '.join(names)})"


def _error(msg: str) -> ValueError:
    return ValueError(f"{msg}. Valid model names: {_names_text()}. Accepted syntax: {ACCEPTED_SYNTAX}.")


def _name(token: str, spec: str) -> str:
    key = token.strip().lower()
    if key not in VARIANTS:
        raise _error(f"unknown model {token!r} in {spec!r}")
    return key


def is_path_token(token: str) -> bool:
    """True when ``token`` means a path (see the module docstring); bare variant names never do."""
    t = token.strip()
    if not t:
        return False
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if any(s in t for s in seps):
        return True
    if t.lower() in VARIANTS:
        return False
    return Path(t).expanduser().exists()


def parse_range(token: str) -> list[str]:
    """``"m2..m5"`` -> ``["m2", "m3", "m4", "m5"]`` (inclusive, ascending, registry order).

    A single name is returned as a one-element list. Raises ``ValueError`` on unknown ends, descending
    ranges or malformed tokens.
    """
    t = token.strip()
    if not t:
        raise _error("empty model selection")
    if ".." not in t:
        return [_name(t, token)]
    parts = t.split("..")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise _error(f"malformed range {token!r} (expected START..END, e.g. m1..m8)")
    lo, hi = _name(parts[0], token), _name(parts[1], token)
    names = list(valid_names())
    i, j = names.index(lo), names.index(hi)
    if i > j:
        raise _error(f"range {token!r} is descending; write {hi}..{lo}")
    return names[i:j + 1]


def parse_models(spec: str | Iterable[str]) -> list[str | Path]:
    """Parse a model selection into variant names (``str``) and paths (``Path``), duplicates dropped.

    ``spec`` is a string (``"m1..m3,m8"``) or an iterable of such strings (e.g. a repeated CLI option).
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[str | Path] = []
    seen: set = set()
    n_tokens = 0
    for s in specs:
        for raw in str(s).split(","):
            token = raw.strip()
            if not token:
                continue
            n_tokens += 1
            if is_path_token(token):
                items: list[str | Path] = [Path(token).expanduser()]
            elif token.lower() == "all":
                items = list(valid_names())
            else:
                items = list(parse_range(token))
            for it in items:
                key = ("p", str(it)) if isinstance(it, Path) else ("n", it)
                if key not in seen:
                    seen.add(key)
                    out.append(it)
    if n_tokens == 0:
        raise _error(f"empty model selection {spec!r}")
    return out
