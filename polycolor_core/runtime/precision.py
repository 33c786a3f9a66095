"""Precision ``auto``: bf16 only where the hardware does it natively, fp32 everywhere else.

One capability probe (``native_bf16``) decides for training, the Colorizer, the ComfyUI nodes and the
benchmarks:

- CPU: the ``/proc/cpuinfo`` flags ``avx512_bf16`` or ``amx_bf16``. Without them bf16 is emulated, and bf16
  autocast measured 4.7-9.4x *slower* than fp32 on a 2-core AVX2 EPYC (issue 14); with them bf16 autocast +
  channels_last is 1.4-2.2x faster than fp32.
- CUDA: compute capability >= 8.0 (Ampere and later have bf16 tensor cores).

``POLYCOLOR_NATIVE_BF16=1`` (or ``0``) overrides the CPU probe: it pins the decision on a machine (and lets the
test suite run both decisions on any CPU; CI runs the suite each way). Unset or empty, the flags decide. GPUs are
always asked (a CUDA capability is not a guess).

``resolve_precision("auto"|"bf16"|"fp32", device) -> "bf16"|"fp32"`` is the *capability* decision, used where
nothing is measured. Training's ``auto`` also times the native candidates (``training_precision.py``), and
inference's ``backend="auto"`` times backends (``export/autotune.py``); both start from this probe.
"""

from __future__ import annotations

import functools
import os

PRECISIONS = ("auto", "bf16", "fp32")
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CUDA_BF16_CAPABILITY = (8, 0)
NATIVE_BF16_ENV = "POLYCOLOR_NATIVE_BF16"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


# Measured choices (training's precision, inference's backend): POLYCOLOR_AUTOTUNE=0 turns measuring off (each
# falls back to its rule without timing); POLYCOLOR_AUTOTUNE_SECONDS sets the time per candidate.
AUTOTUNE_ENV = "POLYCOLOR_AUTOTUNE"
BUDGET_ENV = "POLYCOLOR_AUTOTUNE_SECONDS"
DEFAULT_BUDGET_S = 1.5  # per candidate, in interleaved rounds, after one warm-up


def autotune_enabled() -> bool:
    return os.environ.get(AUTOTUNE_ENV, "1").strip().lower() not in _FALSE


def autotune_budget_s() -> float:
    try:
        return max(0.05, float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_S)))
    except ValueError:
        return DEFAULT_BUDGET_S


def native_bf16_override() -> bool | None:
    """``POLYCOLOR_NATIVE_BF16`` as True/False, or None when unset or empty (the probe decides)."""
    raw = os.environ.get(NATIVE_BF16_ENV, "")
    value = raw.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{NATIVE_BF16_ENV}={raw!r} is not a decision: set it to 1 (treat bf16 as native), 0 (treat it "
                     "as emulated: fp32) or unset it to let the CPU/GPU probe decide")


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


# CPU flags that change which kernels run (and so which precision or backend is fastest).
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni")


def cpu_description() -> tuple[str, list[str]]:
    """(CPU model name, the speed-relevant flags it has) from /proc/cpuinfo; platform fallbacks elsewhere."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                    break
    except OSError:
        pass
    return name, [f for f in SPEED_FLAGS if f in cpu_flags()]


def machine_key(device: str = "cpu", threads: int | None = None, *extra: str) -> str:
    """A short hash of what makes timings on this machine differ from another's: CPU model and speed flags,
    thread count, torch version, device, the native-bf16 decision (so the override measures anew), ``extra``."""
    import hashlib

    import torch

    name, flags = cpu_description()
    parts = [name, ",".join(flags), str(threads or os.cpu_count()), torch.__version__, str(device),
             f"bf16={native_bf16(device)}", *extra]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


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
    """THE capability probe: does ``device`` ("cpu", "cuda", "cuda:1", ...) run bf16 natively?
    On the CPU, ``POLYCOLOR_NATIVE_BF16=0|1`` answers instead of the flags."""
    kind = str(device).split(":", 1)[0].lower()
    if kind == "cpu":
        override = native_bf16_override()
        return cpu_has_native_bf16() if override is None else override
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
    if kind == "cpu" and native_bf16_override() is not None:
        out["override"] = f"{NATIVE_BF16_ENV}={os.environ[NATIVE_BF16_ENV].strip()}"
    if kind == "cpu":
        out["bf16_flags"] = sorted(CPU_BF16_FLAGS & cpu_flags())
    elif kind == "cuda":
        out["cuda_capability"] = cuda_capability(str(device))
    return out
