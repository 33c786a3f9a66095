"""onnxruntime backends: the UNet (``OrtBackend``, the core ``Backend`` protocol) and the text encoder.

Providers are chosen TensorRT > CUDA > CPU from what the installed onnxruntime build offers (``onnxruntime``
has only the CPU provider; ``onnxruntime-gpu`` adds CUDA/TensorRT: ``pip install "polycolor[gpu]"``). When a
GPU was asked for and cannot be used, one log line says so and the CPU is used.

Session options are set deliberately rather than left to defaults: all graph optimisations (constant folding,
Conv+activation and attention fusions, layout transforms), ``intra_op_num_threads`` = the physical cores
available to this process (hyper-threads slow convolutions down), one inter-op thread and sequential
execution (the UNet is a chain; parallel execution only adds scheduling overhead).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..polycolor_core.runtime.devices import DEVICES
from .config import EXPORT_CONFIG, TEXT_ENCODER_FILE, TOKENIZER_DIR, read_manifest

log = logging.getLogger("polycolor")

__all__ = ["OrtBackend", "OrtTextEncoder", "make_session", "select_providers", "physical_cores"]


def physical_cores() -> int:
    """Physical cores this process may use (affinity-aware; hyper-thread siblings counted once)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - macOS / Windows
        allowed = set(range(os.cpu_count() or 1))
    try:
        cores, cpu = set(), None
        with open("/proc/cpuinfo") as f:
            phys = core = None
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                if not line.strip() and cpu is not None:
                    if cpu in allowed:
                        cores.add((phys, core if core is not None else cpu))
                    cpu = phys = core = None
            if cpu is not None and cpu in allowed:
                cores.add((phys, core if core is not None else cpu))
        if cores:
            return max(1, min(len(cores), len(allowed)))
    except (OSError, ValueError):
        pass
    try:
        import psutil

        return max(1, min(psutil.cpu_count(logical=False) or len(allowed), len(allowed)))
    except ImportError:
        return max(1, len(allowed))


def select_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device`` in priority order; logs one line when a GPU cannot be used."""
    import onnxruntime as ort

    device = str(device).lower()
    if device.startswith("cuda:"):
        device = "cuda"
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (got {device!r})")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if gpu:
        return gpu + ["CPUExecutionProvider"]
    level = logging.WARNING if device == "cuda" else logging.INFO
    log.log(level, "onnxruntime: no CUDA/TensorRT provider in this build (available: %s); running on the CPU%s",
             ", ".join(available), " - install onnxruntime-gpu instead of onnxruntime for GPU inference"
             if device == "cuda" else "")
    return ["CPUExecutionProvider"]


def session_options(threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads) if threads else physical_cores()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only; provider fallbacks are reported by us, once
    return so


def make_session(path: str | Path, device: str = "auto", threads: int | None = None):
    """An ``InferenceSession`` for ``path`` with the options above; reports a provider that did not load."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    providers = select_providers(device)
    sess = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=providers)
    used = sess.get_providers()
    if used and used[0] != providers[0]:
        log.warning("onnxruntime: %s could not be initialised (missing CUDA/TensorRT libraries?); running %s on %s",
                    providers[0], path.name, used[0])
    return sess


class OrtBackend:
    """Runs ``unet.onnx``: float32 images [B,3,S,S] 0..1 + embeddings [B,L,D] -> float32 [B,3,S,S] 0..1."""

    name = "onnx"

    def __init__(self, onnx_path: str | Path, device: str = "auto", threads: int | None = None):
        self.path = Path(onnx_path)
        self.session = make_session(self.path, device, threads)
        self.providers = self.session.get_providers()
        self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else "cuda"
        names = [i.name for i in self.session.get_inputs()]
        expected = list(EXPORT_CONFIG.unet.inputs)
        if names != expected:
            raise ValueError(f"{self.path} has inputs {names}; a polycolor UNet export has {expected}")
        self._emb_shape = self.session.get_inputs()[1].shape  # ["batch", L, D]

    def __repr__(self) -> str:
        return f"OrtBackend({str(self.path)!r}, providers={self.providers})"

    def run(self, images: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be float32 [B,3,H,W]; got {list(images.shape)}")
        m = EXPORT_CONFIG.size_multiple
        if images.shape[2] % m or images.shape[3] % m:
            raise ValueError(f"height and width must be multiples of {m} for this UNet; got {images.shape[2]}x{images.shape[3]}")
        fixed = [d for d in self._emb_shape[1:] if isinstance(d, int)]
        if embeddings.ndim != 3 or embeddings.shape[0] != images.shape[0] or (
            len(fixed) == 2 and list(embeddings.shape[1:]) != fixed
        ):
            raise ValueError(f"embeddings must be float32 [B,L,D] = [{images.shape[0]}, {', '.join(map(str, self._emb_shape[1:]))}]; "
                             f"got {list(embeddings.shape)}")
        y = self.session.run(None, {"images": images, "text_embeddings": embeddings})[0]
        return np.clip(y, 0.0, 1.0, out=y)


class OrtTextEncoder:
    """``text_encoder.onnx`` + the saved tokenizer: ``encode(prompts) -> float32 [N,L,D]``.

    ``calls`` counts encoder runs and ``encoded`` the prompts encoded (use it behind a cache).
    """

    def __init__(self, onnx_path: str | Path, tokenizer_dir: str | Path, seq_len: int, device: str = "cpu",
                 threads: int | None = None):
        from transformers import AutoTokenizer

        self.path = Path(onnx_path)
        tokenizer_dir = Path(tokenizer_dir)
        if not tokenizer_dir.is_dir():
            raise FileNotFoundError(f"tokenizer folder not found: {tokenizer_dir} (re-export with the text encoder)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.session = make_session(self.path, device, threads)
        self.seq_len = int(seq_len)
        self.calls = 0
        self.encoded = 0

    @classmethod
    def from_export_dir(cls, path: str | Path, device: str = "cpu", threads: int | None = None) -> "OrtTextEncoder":
        path = Path(path)
        manifest = read_manifest(path)
        files = manifest["files"]
        if not files.get("text_encoder"):
            raise FileNotFoundError(f"{path} has no exported text encoder ({manifest['text_encoder'].get('note', '')})")
        return cls(path / files.get("text_encoder", TEXT_ENCODER_FILE), path / (files.get("tokenizer") or TOKENIZER_DIR),
                   manifest["text_encoder"]["seq_len"], device, threads)

    def encode(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = list(prompts)
        tok = self.tokenizer(prompts, padding="max_length", max_length=self.seq_len, truncation=True, return_tensors="np")
        feeds = {"input_ids": tok["input_ids"].astype(np.int64), "attention_mask": tok["attention_mask"].astype(np.int64)}
        self.calls += 1
        self.encoded += len(prompts)
        return self.session.run(None, feeds)[0].astype(np.float32, copy=False)
