"""``backend="auto"`` by measurement: time each usable backend once per (model, machine) and remember the winner;
and the once-per-checkpoint ONNX export (``cached_export``) that lets a checkpoint run on onnxruntime.

Which backend is fastest depends on the CPU, not on the code: on an AVX512-BF16 EPYC the PyTorch bf16 path
beat onnxruntime, on an AVX2-only one onnxruntime fp32 beat PyTorch fp32 (m8 at 112 px: 6.4 vs 4.6 img/s)
and bf16 autocast was 5-9x slower than both. So the first ``auto`` use of a model architecture on a machine
runs each candidate for about 1.5 s (three interleaved rounds, the best rate kept) on a batch of 8 inputs of the
model's size and stores the rates in ``<cache>/backend_choice.json``; later uses read the stored winner and
measure nothing. An explicit backend (``polycolor infer --backend torch``) never reads or writes the cache.

Keys:
- machine: CPU model name, its SIMD/bf16 flags, core count, torch and onnxruntime versions, device
  (a new CPU or a library upgrade measures again);
- model: a hash of what sets the cost (UNet config, working size, embedding shape), not the weights, so
  every checkpoint of one architecture shares one measurement.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..polycolor_core.runtime.atomic import write_json_atomic
from ..polycolor_core.runtime.cache import cache_dir, read_entries
from ..polycolor_core.runtime.precision import cpu_description
from ..polycolor_core.runtime.precision import AUTOTUNE_ENV, BUDGET_ENV, autotune_budget_s, autotune_enabled  # noqa: F401
from ..polycolor_core.runtime.precision import machine_key as _machine_key

log = logging.getLogger("polycolor")

CACHE_FILE = "backend_choice.json"
SCHEMA = "polycolor-backend-choice/1"


def machine_key(device: str = "cpu", threads: int | None = None) -> str:
    """``precision.machine_key`` plus the onnxruntime version (an ORT upgrade measures the backends again)."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        ort_version = "none"
    return _machine_key(device, threads, f"onnxruntime={ort_version}")


def model_key(unet_config: Mapping, image_size: int, embedding_shape: tuple[int, int]) -> str:
    blob = json.dumps({"unet": unet_config, "size": int(image_size), "emb": list(embedding_shape)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Choice:
    backend: str  # the winner's name
    rates: dict[str, float]  # images/s per candidate (empty when read from the cache without rates)
    measured: bool  # True when measured now, False when read from the cache


def _cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def read_cache(path: Path | None = None) -> dict:
    return read_entries(path or _cache_path(), SCHEMA)


ROUNDS = 3  # interleaved timing rounds per candidate (choose_backend)


def time_backend(backend, images: np.ndarray, embeddings: np.ndarray, budget_s: float = 1.0) -> float:
    """Images/s of ``backend.run`` on one batch, repeated for ~``budget_s`` (at least one call; the caller warms
    the backend up first)."""
    n, t0 = 0, time.perf_counter()
    while True:
        backend.run(images, embeddings)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= budget_s or n >= 50:
            return n * len(images) / elapsed


def choose_backend(
    candidates: Mapping[str, Callable[[], object]],
    machine: str,
    model: str,
    probe: tuple[np.ndarray, np.ndarray],
    budget_s: float = 1.0,
    cache_path: Path | None = None,
    timer: Callable[[object, np.ndarray, np.ndarray, float], float] | None = None,
) -> Choice:
    """The fastest of ``candidates`` (name -> factory building a backend with ``.run``) for this machine/model.

    A stored winner that is still among the candidates is returned without building or timing anything.
    Otherwise every candidate is built and timed on ``probe`` = (images [B,3,S,S], embeddings [B,L,D]); a
    candidate that fails to build or run is skipped with a log line. The rates are stored atomically.
    """
    if not candidates:
        raise ValueError("no backend candidates to choose from")
    timer = timer or time_backend
    if len(candidates) == 1:
        return Choice(next(iter(candidates)), {}, False)
    path = cache_path or _cache_path()
    data = read_cache(path)
    key = f"{machine}:{model}"
    stored = data["entries"].get(key)
    if stored and stored.get("backend") in candidates:
        return Choice(stored["backend"], dict(stored.get("rates", {})), False)
    images, embeddings = probe
    built: dict[str, object] = {}
    for name, factory in candidates.items():
        try:
            backend = factory()
            backend.run(images, embeddings)  # warm-up: allocations, oneDNN primitives, ORT arena
            built[name] = backend
        except Exception as exc:  # a backend that cannot run here is simply not a candidate
            log.info("backend auto: %s skipped (%s: %s)", name, type(exc).__name__, exc)
    # Interleaved rounds, best rate per candidate: a burst of load from another process hits one round of one
    # candidate, not one candidate's whole measurement (a single 1 s probe per backend picked torch over a
    # 26% faster onnxruntime on a busy 2-core machine).
    rates: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, backend in list(built.items()):
            try:
                rate = float(timer(backend, images, embeddings, budget_s / ROUNDS))
            except Exception as exc:  # noqa: BLE001
                log.info("backend auto: %s skipped (%s: %s)", name, type(exc).__name__, exc)
                built.pop(name)
                rates.pop(name, None)
                continue
            rates[name] = max(rates.get(name, 0.0), rate)
    if not rates:
        raise RuntimeError(f"none of the backends {', '.join(candidates)} could run on this machine")
    winner = max(rates, key=rates.get)
    data["entries"][key] = {"backend": winner, "rates": rates, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "cpu": cpu_description()[0]}
    write_json_atomic(path, data)
    log.info("backend auto: measured %s -> %s (stored in %s)",
             ", ".join(f"{k} {v:.1f} img/s" for k, v in rates.items()), winner, path)
    return Choice(winner, rates, True)


# ----------------------------------------------------------------------------- the Colorizer's auto choice
# POLYCOLOR_AUTOTUNE=0 turns measuring off (auto = onnx for export folders, torch for checkpoints); the switch and
# POLYCOLOR_AUTOTUNE_SECONDS are shared with training's precision choice (polycolor_core/runtime/precision.py).
enabled = autotune_enabled
budget_s = autotune_budget_s


def auto_candidates(info, precision: str, device: str) -> list[str]:
    """The backends ``backend="auto"`` may choose between for ``info`` (a ModelInfo) on ``device``:
    torch-fp32 (+ torch-bf16 where the device has native bf16 and ``precision`` is "auto") when PyTorch
    weights exist (a checkpoint, or an export whose source checkpoint is still there), and onnx (an export
    folder, or a checkpoint exported once into the user cache by ``cached_export``)."""
    from ..polycolor_core.runtime.precision import native_bf16

    names = []
    if info.kind == "checkpoint" or info.source_checkpoint() is not None:
        if precision == "auto":
            names += ["torch-fp32"] + (["torch-bf16"] if native_bf16(device) else [])
        else:
            names.append(f"torch-{precision}")
    names.append("onnx")
    return names


def probe_inputs(image_size: int, seq_len: int, dim: int, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch of the model's shape to time on: images [B,3,S,S] 0..1, embeddings [B,L,D]."""
    rng = np.random.default_rng(0)
    return (rng.random((batch, 3, image_size, image_size), dtype=np.float32),
            rng.standard_normal((batch, seq_len, dim), dtype=np.float32))


def cached_export(checkpoint_dir: Path) -> Path:
    """The ONNX export of a checkpoint, made once per (weights, polycolor version) into ``<cache>/exports/``.

    ``backend="onnx"`` on a checkpoint, and ``auto`` when it measures onnxruntime, use it, so a later process
    does not export again. The folder is written atomically by the exporter (parity-checked as always).
    """
    from ..polycolor_core import __version__
    from .onnx_export import export_model

    checkpoint_dir = Path(checkpoint_dir)
    h = hashlib.sha256(__version__.encode())
    for name in ("model.safetensors", "config.json"):
        with open(checkpoint_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    dest = cache_dir("exports") / h.hexdigest()[:16]
    if not (dest / "manifest.json").is_file():
        log.info("exporting %s to ONNX once, into %s (reused by later runs)", checkpoint_dir, dest)
        export_model(checkpoint_dir, dest)
    return dest
