"""What the benchmarks say about the machine they ran on: CPU model and flags, the precision probe's decision,
and the peak of every precision the CPU does natively (others are skipped, never timed: emulated bf16 on an
AVX2 CPU measures ~0 GFLOP/s and would turn every "% of peak" into nonsense).

The peak is an honest ceiling, so no "% peak" can pass 100%: the higher of (a) the best square/skinny torch.mm
over several shapes and thread counts and (b) the theoretical figure from the flags and the clock (cores x GHz x
FLOP/cycle, two FMA units assumed). A single 1024/2048 matmul at the benchmark's thread count (113 GFLOP/s on an
AVX512-BF16 EPYC) sat below what onnxruntime reached on a real model (239), which printed "110% peak"
(issue 22). ``ceiling(peak, rates)`` is the last guard: a rate above the peak raises the peak to it, and says so.
"""

from __future__ import annotations

import os
import platform
import time


# (m, k, n) of the matmuls timed for the measured peak: square, and the skinny shapes convolutions lower to
PEAK_SHAPES = ((512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (4096, 256, 1024), (256, 4096, 256))


def measure_peak(dtype, shapes=PEAK_SHAPES, repeats: int = 3, threads=None) -> float:
    """Best GFLOP/s of torch.mm in ``dtype`` over ``shapes`` and thread counts (default: the current count and
    every core); the caller's thread count is restored."""
    import torch

    before = torch.get_num_threads()
    best = 0.0
    try:
        for t in sorted(set(threads or (before, os.cpu_count() or before))):
            torch.set_num_threads(t)
            for m, k, n in shapes:
                a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
                torch.mm(a, b)
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    torch.mm(a, b)
                    best = max(best, 2 * m * k * n / (time.perf_counter() - t0) / 1e9)
    finally:
        torch.set_num_threads(before)
    return best


def clock_ghz() -> float | None:
    """The CPU's highest clock: cpufreq's maximum where the kernel exposes it, else /proc/cpuinfo's "cpu MHz"."""
    try:
        return int(open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read()) / 1e6
    except (OSError, ValueError):
        pass
    try:
        mhz = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
        return max(mhz) / 1000 if mhz else None
    except (OSError, ValueError):
        return None


def theoretical_peak(precision: str, flags, cores: int, ghz: float | None) -> tuple[float | None, str]:
    """(GFLOP/s, how it was computed) from the SIMD flags and the clock; (None, why) when the clock is unknown."""
    if not ghz:
        return None, "clock unknown"
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4  # fp32 lanes per vector
    per_cycle = lanes * 2 * 2  # x2 for the fused multiply-add, x2 FMA units
    if precision == "bf16":
        per_cycle = 1024 if "amx_bf16" in flags else 2 * per_cycle  # AMX tiles / vdpbf16ps (pairs of bf16)
    return cores * ghz * per_cycle, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle"


def ceiling(peak: float, rates) -> tuple[float, str | None]:
    """``peak`` unless a measured rate beats it: then that rate, and a note saying so."""
    top = max(rates, default=0.0)
    if top > peak:
        return top, f"peak raised to the best rate observed in this run ({top:.0f} GFLOP/s > {peak:.0f})"
    return peak, None


def native_precisions(device: str = "cpu") -> list[str]:
    """The precisions worth timing here: fp32 always, bf16 only where the probe says it is native."""
    from polycolor.polycolor_core.runtime.precision import native_bf16

    return ["fp32", "bf16"] if native_bf16(device) else ["fp32"]


def machine_info(device: str = "cpu", peaks: bool = True) -> dict:
    """CPU model, speed-relevant flags, the probe's decision and (``peaks``) GFLOP/s per native precision."""
    import torch

    from polycolor.polycolor_core.runtime.precision import cpu_description, cpu_flags
    from polycolor.polycolor_core.runtime.precision import describe

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
        info["peak_gflops"], info["peak_source"], info["matmul_gflops"] = {}, {}, {}
        all_flags = cpu_flags()
        for p in info["native_precisions"]:
            measured = measure_peak(dtypes[p])
            theory, how = theoretical_peak(p, all_flags, os.cpu_count() or 1, clock_ghz())
            info["matmul_gflops"][p] = round(measured, 1)
            if theory is not None and theory >= measured:
                info["peak_gflops"][p], info["peak_source"][p] = round(theory, 1), f"theoretical: {how}"
            else:
                info["peak_gflops"][p] = round(measured, 1)
                info["peak_source"][p] = f"best matmul over {len(PEAK_SHAPES)} shapes and thread counts"
    return info


def describe_line(info: dict) -> str:
    peaks = ", ".join(f"{p} {v:.0f} ({info['peak_source'][p]}; best matmul {info['matmul_gflops'][p]:.0f})"
                      for p, v in info.get("peak_gflops", {}).items())
    skipped = "; ".join(f"{p} skipped: {why}" for p, why in info["skipped_precisions"].items())
    return (f"{info['cpu']} ({info['cores']} cores, flags: {' '.join(info['flags']) or 'none of note'}), torch "
            f"{info['torch']} {info['cpu_capability']}, precision auto -> {info['precision_probe']['auto']}"
            + (f"; peak GFLOP/s: {peaks}" if peaks else "") + (f"; {skipped}" if skipped else ""))
