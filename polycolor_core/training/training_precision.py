"""Training's ``precision="auto"``, by measurement: time a few real steps of each native precision, keep the fastest
that quality allows, remember it per machine.

Why not read the answer off a CPU flag: on a 2-core EPYC with avx512_bf16 (issue 22), bf16 autocast +
channels_last trained m1-m4 and m8 at 0.83-0.91x the img/s of fp32, and m5 at 1.1-1.3x. So *native* is not
*faster*; and a faster precision must not cost quality, which only training and scoring can tell. The decision,
in order:

1. an explicit ``bf16`` / ``fp32`` is kept as given, nothing is timed;
2. candidates: fp32, plus bf16 where ``precision.native_bf16(device)`` says it is native
   (``POLYCOLOR_NATIVE_BF16=0|1`` overrides that probe);
3. quality vetoes (``QUALITY_VETOES``): a lower precision that measurably cost a variant quality is dropped,
   whatever the clock says (evidence: ``benchmarks/precision_quality.py``);
4. one candidate left: it is the choice, nothing is timed. Several: each trains a few steps of the real step
   (forward, composite loss, backward, clipping, AdamW) on a copy of the model at every size of the run's
   schedule, in interleaved rounds (best rate kept), and the fastest estimated run wins. The rates are stored
   in ``<cache>/train_precision.json`` under (machine, architecture, schedule sizes, batch, threads), so a
   later run of the same shape measures nothing. ``POLYCOLOR_AUTOTUNE=0`` turns timing off: the probe decides.

The choice (precision, rates, what was vetoed and why) is recorded in the checkpoint (``precision_choice``)
and shown in the reproduce report; a resumed run keeps the precision it started with.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from ..runtime.atomic import write_json_atomic
from ..runtime.cache import cache_dir, read_entries
from ..runtime.precision import autotune_budget_s, autotune_enabled, check_precision, cpu_description, machine_key, native_bf16

log = logging.getLogger("polycolor")

CACHE_FILE = "train_precision.json"
SCHEMA = "polycolor-train-precision/1"
ROUNDS = 3  # interleaved timing rounds: a burst of load from elsewhere hits one round of one candidate

# precision -> {variant name: evidence}. A lower precision listed for a variant is never chosen by ``auto`` for it;
# an entry is added when benchmarks/precision_quality.py says "veto" for that variant.
QUALITY_VETOES: dict[str, dict[str, str]] = {
    "bf16": {
        # everyday m8, cpu profile, 2 seeds each, 96 held-out images + 8 per user family, in-polygon dE00:
        # raw 2.00 +- 0.06 (bf16) vs 1.88 +- 0.09 (fp32), bf16 worse on 9 of 11 families; the composite hides it
        # (0.45 +- 0.09 vs 0.50 +- 0.06). Issue 22 saw the same direction with one seed each on native bf16.
        "m8": ("bf16-trained everyday m8s paint worse raw pictures than fp32 ones: in-polygon dE00 2.00 +- 0.06 vs "
               "1.88 +- 0.09 over 2 seeds, worse on 9 of 11 held-out families (benchmarks/precision_quality.py)"),
    },
}


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "bf16" | "fp32": what training uses
    requested: str  # "auto" | "bf16" | "fp32"
    reason: str  # one line for logs and reports
    rates: Mapping[str, float] = field(default_factory=dict)  # estimated img/s over the run's schedule, per timed candidate
    measured: bool = False  # timed in this call (False: explicit, single candidate, cached, or timing off)
    vetoed: Mapping[str, str] = field(default_factory=dict)  # candidate -> why quality rules it out

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping) -> "PrecisionChoice":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(d).items() if k in known})


def quality_vetoes(variant_name: str) -> dict[str, str]:
    """Lower precisions ruled out for ``variant_name`` (its tiny copy ``m8-tiny`` shares the base's vetoes)."""
    base = variant_name.split("-", 1)[0]
    return {p: by_variant[base] for p, by_variant in QUALITY_VETOES.items() if base in by_variant}


def candidates(device: str) -> list[str]:
    """fp32 always, bf16 where the device does it natively (``precision.native_bf16``)."""
    return ["fp32"] + (["bf16"] if native_bf16(device) else [])


def schedule_rate(rates_by_size: Mapping[int, float], shares: Mapping[int, float]) -> float:
    """Images/s over a whole run from per-size rates and each size's share of the steps (harmonic mean)."""
    return 1.0 / sum(share / rates_by_size[size] for size, share in shares.items())


def choose(requested: str, device: str, variant_name: str, key: str, timer: Callable[[str], float] | None,
           cache_path: Path | None = None) -> PrecisionChoice:
    """The precision to train with (see the module docstring). ``timer(precision) -> img/s`` times one candidate
    over the run's schedule; ``key`` names what sets the cost (architecture, sizes, batch: see ``cost_key``)."""
    requested = check_precision(requested)
    if requested != "auto":
        return PrecisionChoice(requested, requested, f"{requested} as requested")
    vetoes = quality_vetoes(variant_name)
    native = candidates(device)
    vetoed = {p: vetoes[p] for p in native if p in vetoes}
    left = [p for p in native if p not in vetoed]
    if len(left) == 1:
        why = "the only native precision" if len(native) == 1 else f"{', '.join(vetoed)} vetoed on quality"
        return PrecisionChoice(left[0], "auto", f"{left[0]}: {why}", vetoed=vetoed)
    if timer is None or not autotune_enabled():
        best = "bf16" if "bf16" in left else left[0]  # the capability rule, when nothing may be timed
        return PrecisionChoice(best, "auto", f"{best}: native (timing off)", vetoed=vetoed)
    path = cache_path or cache_dir() / CACHE_FILE
    data = read_entries(path, SCHEMA)
    entry = data["entries"].get(key)
    if entry and all(p in entry.get("rates", {}) for p in left):
        rates = {p: float(entry["rates"][p]) for p in left}
        best = max(rates, key=rates.get)
        return PrecisionChoice(best, "auto", f"{best}: fastest here (measured earlier)", rates, False, vetoed)
    rates: dict[str, float] = {}
    for _ in range(ROUNDS):
        for p in left:
            rates[p] = max(rates.get(p, 0.0), float(timer(p)))
    best = max(rates, key=rates.get)
    data["entries"][key] = {"rates": rates, "choice": best, "cpu": cpu_description()[0],
                            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(path, data)
    log.info("precision auto: %s -> %s (stored in %s)", ", ".join(f"{k} {v:.1f} img/s" for k, v in rates.items()),
             best, path)
    return PrecisionChoice(best, "auto", f"{best}: fastest here (measured)", rates, True, vetoed)


def cost_key(device: str, unet_config: Mapping, emb_shape: Sequence[int], shares: Mapping[int, float], batch: int,
             lpips: bool) -> str:
    """What sets a training step's cost on this machine: machine + threads, architecture, sizes, batch, LPIPS."""
    blob = json.dumps({"unet": unet_config, "emb": list(emb_shape), "sizes": {str(k): v for k, v in shares.items()},
                       "batch": int(batch), "lpips": bool(lpips)}, sort_keys=True)
    return f"{machine_key(device, torch.get_num_threads())}:{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


class StepTimer:
    """``timer(precision) -> img/s``: real training steps of a *copy* of ``model`` (the run's weights, optimiser and
    global RNG are untouched) on random data, at each size of ``shares`` ({size: share of the steps})."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, emb: torch.Tensor, shares: Mapping[int, float],
                 batch: int, grad_clip: float, device: torch.device, budget_s: float | None = None):
        self.model, self.loss_fn, self.emb, self.shares = model, loss_fn, emb, dict(shares)
        self.batch, self.grad_clip, self.device = batch, grad_clip, device
        # per candidate and size, split across the interleaved rounds
        self.budget_s = (budget_s or autotune_budget_s()) / ROUNDS / max(1, len(self.shares))
        self._runners: dict[str, Callable[[int], float]] = {}

    def __call__(self, precision: str) -> float:
        # forward passes in train mode draw from the global RNG: timing must not shift the run's random stream
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if precision not in self._runners:
                self._runners[precision] = self._runner(precision)
            run = self._runners[precision]
            return schedule_rate({s: run(s) for s in self.shares}, self.shares)

    def _runner(self, precision: str) -> Callable[[int], float]:
        bf16 = precision == "bf16"
        fmt = torch.channels_last if bf16 else torch.contiguous_format  # as train() lays the model out
        model = copy.deepcopy(self.model).to(memory_format=fmt).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        emb = self.emb[:1].expand(self.batch, -1, -1).contiguous().to(self.device)  # [B,L,D]
        data = {s: (torch.rand(self.batch, 3, s, s, device=self.device).contiguous(memory_format=fmt),
                    torch.rand(self.batch, 3, s, s, device=self.device)) for s in self.shares}
        autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

        def step(size: int) -> None:
            x, y = data[size]
            with autocast():
                pred = model(x, emb)
            loss = self.loss_fn(pred.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
            opt.step()

        warm: set[int] = set()

        def rate(size: int) -> float:
            if size not in warm:  # allocations, oneDNN primitives
                step(size)
                warm.add(size)
            n, t0 = 0, time.perf_counter()
            while True:
                step(size)
                n += 1
                elapsed = time.perf_counter() - t0
                if elapsed >= self.budget_s or n >= 20:
                    return n * self.batch / elapsed

        return rate
