"""Several processes on one job: ``torchrun`` / ``accelerate launch`` ranks for ``polycolor infer``.

    torchrun --nproc_per_node 4 -m polycolor.cli infer runs/m8 --data big/ --colour cyan --out out/
    accelerate launch --num_processes 4 -m polycolor.cli infer runs/m8 --data big/ --colour cyan --out out/

Both launchers set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and the rendezvous address); ``join()`` reads them
and, when ``WORLD_SIZE > 1``, joins a gloo process group (CPU and GPU alike: inference only needs barriers).
Every rank builds the same item list, takes its contiguous block (``Shard.take``), loads the model once on its
own device (``cuda:LOCAL_RANK`` where CUDA is present; on a CPU, the physical cores split between the local
ranks) and writes its own outputs and journal (``outputs.OutputStore``). Rank 0 loads first (so ``backend="auto"``
measures and an ``onnx`` export is cached once, not by every rank at the same time), and after the last barrier
merges the per-rank reports (``merge_reports``) and the manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

from ..polycolor_core.runtime.atomic import write_json_atomic
from ..polycolor_core.runtime.devices import setup_distributed
from .outputs import PARTS_DIR

__all__ = ["Shard", "join", "merge_reports", "write_rank_report"]

T = TypeVar("T")
TIMEOUT_ENV = "POLYCOLOR_DIST_TIMEOUT_S"  # how long a rank waits for the others at a barrier (default 6 h)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise ValueError(f"{name}={os.environ[name]!r} is not an integer; unset it or launch with torchrun") from None


@dataclass
class Shard:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    joined: bool = False  # this process joined a group that ``close`` must leave

    @property
    def main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous block of ``items`` (sizes differ by at most one; the same on every run)."""
        n, w, r = len(items), self.world, self.rank
        start = r * (n // w) + min(r, n % w)
        return list(items[start : start + n // w + (1 if r < n % w else 0)])

    def device(self, device: str) -> str:
        """``cuda`` / ``auto`` -> ``cuda:LOCAL_RANK`` on a CUDA machine when there are several ranks."""
        if self.world == 1 or device not in ("cuda", "auto"):
            return device
        import torch

        if torch.cuda.is_available():
            return f"cuda:{self.local_rank % max(torch.cuda.device_count(), 1)}"
        return "cpu" if device == "auto" else device

    def threads(self, device: str, threads: int | None) -> int | None:
        """CPU threads for this rank: the physical cores shared between the ranks on this machine."""
        if threads or self.local_world == 1 or not device.startswith("cpu"):
            return threads
        from .ort_backend import physical_cores

        return max(1, physical_cores() // self.local_world)

    def barrier(self) -> None:
        if self.joined:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.joined:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.joined = False


def join() -> Shard:
    """This process's place in the job, from the launcher's environment; joins the process group if needed."""
    world = _env_int("WORLD_SIZE", 1)
    shard = Shard(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), _env_int("LOCAL_WORLD_SIZE", world))
    if world <= 1:
        return shard
    if not 0 <= shard.rank < world:
        raise ValueError(f"RANK={shard.rank} is outside WORLD_SIZE={world}; launch with torchrun or accelerate")
    import torch.distributed as dist

    joined_before = dist.is_initialized()
    setup_distributed("gloo", _env_int(TIMEOUT_ENV, 6 * 3600))  # gloo on GPUs too: only barriers and reports
    shard.joined = not joined_before
    return shard


def _rank_file(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / PARTS_DIR / f"report.rank{rank}.json"


def write_rank_report(out_dir: Path, rank: int, report: dict) -> None:
    write_json_atomic(_rank_file(out_dir, rank), report, sort_keys=False)


def merge_reports(out_dir: Path, world: int) -> dict:
    """One report from the ranks' reports (rank 0, after every rank wrote its own): lists joined in rank
    order, counts summed, ``per_rank`` img/s, and the job's img/s over the slowest rank's wall time."""
    parts = []
    for r in range(world):
        f = _rank_file(out_dir, r)
        try:
            parts.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise RuntimeError(f"rank {r} left no report at {f} ({exc}); did it crash? see its log") from exc
    merged = dict(parts[0])
    for key in ("written", "skipped", "already_done"):
        merged[key] = [x for p in parts for x in p.get(key, [])]
    merged["redo_reasons"] = {}
    for p in parts:
        for why, n in p.get("redo_reasons", {}).items():
            merged["redo_reasons"][why] = merged["redo_reasons"].get(why, 0) + n
    merged["notes"] = list(dict.fromkeys(n for p in parts for n in p.get("notes", [])))
    merged["counts"] = {k: sum(p["counts"].get(k, 0) for p in parts) for k in parts[0]["counts"]}
    merged["per_rank"] = [p["rank_stats"] for p in parts]
    merged["world_size"] = world
    merged["seconds"] = max(p["seconds"] for p in parts)
    merged["images_per_second"] = (round(len(merged["written"]) / merged["seconds"], 3)
                                   if merged["seconds"] > 0 else None)
    merged.pop("rank_stats", None)
    for r in range(world):
        _rank_file(out_dir, r).unlink(missing_ok=True)
    return merged
