"""What the benchmarks say about the machine they ran on: CPU model and flags, the precision probe's decision,
and the matmul peak of every precision the CPU does natively (others are skipped, never timed: emulated bf16
on an AVX2 CPU measures ~0 GFLOP/s and would turn every "% of peak" into nonsense).
"""

from __future__ import annotations

import os
import platform
import time


def measure_peak(dtype, sizes=(1024, 2048), repeats: int = 3) -> float:
    """Best GFLOP/s of a square torch.mm in ``dtype`` with the current torch thread count."""
    import torch

    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def native_precisions(device: str = "cpu") -> list[str]:
    """The precisions worth timing here: fp32 always, bf16 only where the probe says it is native."""
    from polycolor.polycolor_core.precision import native_bf16

    return ["fp32", "bf16"] if native_bf16(device) else ["fp32"]


def machine_info(device: str = "cpu", peaks: bool = True) -> dict:
    """CPU model, speed-relevant flags, the probe's decision and (``peaks``) GFLOP/s per native precision."""
    import torch

    from polycolor.export.autotune import cpu_description
    from polycolor.polycolor_core.precision import describe

    name, flags = cpu_description()
    info = {
        "cpu": name, "flags": flags, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "machine": platform.machine(), "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "precision_probe": describe(device),
        "native_precisions": native_precisions(device),
        "skipped_precisions": {p: "not native on this CPU (emulated: slower than fp32)" for p in ("bf16",)
                               if p not in native_precisions(device)},
    }
    if peaks:
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
        info["peak_gflops"] = {p: round(measure_peak(dtypes[p]), 1) for p in info["native_precisions"]}
    return info


def describe_line(info: dict) -> str:
    peaks = ", ".join(f"{p} {v:.0f}" for p, v in info.get("peak_gflops", {}).items())
    skipped = "; ".join(f"{p} skipped: {why}" for p, why in info["skipped_precisions"].items())
    return (f"{info['cpu']} ({info['cores']} cores, flags: {' '.join(info['flags']) or 'none of note'}), torch "
            f"{info['torch']} {info['cpu_capability']}, precision auto -> {info['precision_probe']['auto']}"
            + (f"; matmul peak GFLOP/s: {peaks}" if peaks else "") + (f"; {skipped}" if skipped else ""))
