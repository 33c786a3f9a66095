"""Precision ``auto``: bf16 only where the hardware does it natively, fp32 everywhere else.

One capability probe (``native_bf16``) decides for training, the Colorizer, the ComfyUI nodes and the
benchmarks:

- CPU: the ``/proc/cpuinfo`` flags ``avx512_bf16`` or ``amx_bf16``. Without them bf16 is emulated, and bf16
  autocast measured 4.7-9.4x *slower* than fp32 on a 2-core AVX2 EPYC (issue 14); with them bf16 autocast +
  channels_last is 1.4-2.2x faster than fp32.
- CUDA: compute capability >= 8.0 (Ampere and later have bf16 tensor cores).

``resolve_precision("auto"|"bf16"|"fp32", device) -> "bf16"|"fp32"``; an explicit choice is kept as given.
"""

from __future__ import annotations

import functools

PRECISIONS = ("auto", "bf16", "fp32")
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CUDA_BF16_CAPABILITY = (8, 0)


@functools.lru_cache(maxsize=None)
def _read_cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_flags() -> frozenset:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo is unreadable, e.g. macOS)."""
    return _read_cpu_flags()


def cpu_has_native_bf16() -> bool:
    """True when the CPU runs bf16 dot products natively (AVX512-BF16 or AMX)."""
    return bool(CPU_BF16_FLAGS & cpu_flags())


def cuda_capability(device: str = "cuda") -> tuple[int, int] | None:
    """(major, minor) of the CUDA device, or None without a usable CUDA GPU."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - a broken CUDA install means: no native bf16
        return None


def native_bf16(device: str = "cpu") -> bool:
    """THE capability probe: does ``device`` ("cpu", "cuda", "cuda:1", ...) run bf16 natively?"""
    kind = str(device).split(":", 1)[0].lower()
    if kind == "cpu":
        return cpu_has_native_bf16()
    if kind == "cuda":
        cap = cuda_capability(str(device))
        return cap is not None and tuple(cap) >= CUDA_BF16_CAPABILITY
    return False  # mps and others: fp32


def check_precision(requested: str) -> str:
    p = str(requested or "auto").strip().lower()
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    return p


def resolve_precision(requested: str, device: str = "cpu") -> str:
    """"bf16" | "fp32" for a requested "auto" | "bf16" | "fp32" on ``device``."""
    p = check_precision(requested)
    if p == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return p


def from_bf16_flag(bf16: bool | None, precision: str = "auto") -> str:
    """The deprecated ``bf16=True/False/None`` argument as a precision (None keeps ``precision``)."""
    if bf16 is None:
        return check_precision(precision)
    return "bf16" if bf16 else "fp32"


def describe(device: str = "cpu") -> dict:
    """The probe's inputs and decision, for benchmark JSON and reports."""
    kind = str(device).split(":", 1)[0].lower()
    out = {"device": str(device), "native_bf16": native_bf16(device), "auto": resolve_precision("auto", device)}
    if kind == "cpu":
        out["bf16_flags"] = sorted(CPU_BF16_FLAGS & cpu_flags())
    elif kind == "cuda":
        out["cuda_capability"] = cuda_capability(str(device))
    return out
