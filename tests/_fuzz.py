"""Test-only helpers of the fuzz tests (tests/test_fuzz_*.py): one outcome check for every loader.

A loader given anything must return a result or raise one of the project's own error types whose message names
the file (or the text) it was given; a leaked KeyError/TypeError/AttributeError/IndexError/UnicodeDecodeError is a
bug, and so is any write outside the output folder (the fuzz tests run in an empty working directory and compare
folder snapshots before and after).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# >= 200 examples per loader, the same examples on every run (CI), no per-example deadline (first calls import)
FUZZ = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

# errors that are never an answer: Python's own complaints about the loader's code, not about the input
LEAKS = (KeyError, TypeError, AttributeError, IndexError, UnicodeError, AssertionError, ZeroDivisionError,
         RecursionError, OverflowError, MemoryError, NameError)

# JSON values a hand-edited or corrupted file may hold (small numbers: a fuzzed model config must stay cheap to build)
json_scalars = (st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                              max_size=4),
                           max_leaves=8)


def outcome(fn, *args, allowed: tuple[type[BaseException], ...], names=(), **kw):
    """``fn(*args, **kw)``'s result, or the ``allowed`` exception it raised (returned, not raised) after checking that
    its message names every string in ``names``; anything else propagates (and fails the test)."""
    try:
        return fn(*args, **kw)
    except allowed as exc:
        if isinstance(exc, LEAKS):
            raise
        msg = str(exc)
        for name in names:
            assert str(name) in msg, f"{type(exc).__name__} does not name {name!r}: {msg}"
        assert len(msg) > 25, f"{type(exc).__name__} says too little to act on: {msg!r}"
        return exc


def snapshot(folder: str | Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: relative path -> (size, mtime_ns)."""
    folder = Path(folder)
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = Path(root) / f
            st_ = p.stat()
            out[str(p.relative_to(folder))] = (st_.st_size, st_.st_mtime_ns)
    return out
