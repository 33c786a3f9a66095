"""The report of ``polycolor reproduce``: deviations from the study, loss curves, and ``report.md`` / ``report.json``.

``reproduce.py`` trains and scores; this module only turns what they produced (each model's saved settings and
metrics, the leaderboard, the colour table) into the report folder's files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .polycolor_core.atomic import write_text_atomic
from .polycolor_core.profiles import get_profile, profile_train_settings
from .polycolor_core.variants import get_variant

__all__ = ["read_metrics", "plot_loss_curves", "deviations", "write_report"]


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curves(runs: Path, models: list[str], dest: Path) -> Path | None:
    """One PNG: training loss and validation in-polygon ΔE per epoch, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for name in models:
        rows = read_metrics(runs / name)
        if not rows:
            continue
        drawn = True
        ep = [r["epoch"] for r in rows]
        a.plot(ep, [r["loss"] for r in rows], marker="o", label=name)
        b.plot(ep, [r.get("val_de76_polygon", float("nan")) for r in rows], marker="o", label=name)
    if not drawn:
        plt.close(fig)
        return None
    a.set(title="training loss (composite)", xlabel="epoch", yscale="log")
    b.set(title="validation ΔE76 inside the polygon", xlabel="epoch", yscale="log")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)
    return dest


def deviations(runs: Path, models: list[str], profile: str) -> list[str]:
    """Plain statements of every way this run differs from the study's setup (the ``report`` profile), from
    each model's saved settings (``ModelInfo``); the profile's settings stand in for a model not trained yet."""
    from .polycolor_core.modelinfo import ModelInfo

    notes: list[str] = []
    prof = get_profile(profile)
    study = get_profile("report").train
    for name in models:
        info = ModelInfo.find(runs / name)
        # a model's own saved settings win; the profile's are the fallback for a model with no checkpoint yet
        t = (info.train_config if info is not None else {}) or profile_train_settings(prof, name)
        weights = (info.loss_weights if info is not None else None) or dataclasses.asdict(get_variant(name).loss)
        precision = info.precision if info is not None else None
        has_lpips = weights.get("lpips", 0) > 0 and not (info is not None and info.lpips_dropped)
        notes += [f"{name}: {n}" for n in _setting_notes(t, has_ssim=weights.get("ssim", 0) > 0,
                                                         precision=precision, has_lpips=has_lpips)]
        if info is None:
            continue
        if info.lpips_dropped:
            notes.append(f"{name}: {info.lpips_note or 'LPIPS term dropped'}")
        enc = info.text_encoder.name
        study_enc = str(study.get("text_encoder", "clip-vit-b32")).split(":", 1)[0]
        if enc and enc != study_enc:
            notes.append(f"{name}: text encoder {enc} ({info.text_encoder.dim}-d) instead of CLIP ViT-B/32 "
                         f"(the `report` profile's {study_enc}; CLIP weights need a download; see `polycolor train "
                         "--help`).")
    return _dedupe_model_notes(notes, models)


def _setting_notes(t: dict, has_ssim: bool = True, precision: str | None = None,
                   has_lpips: bool = False) -> list[str]:
    """Deviations of one model's settings ``t`` from the study's (``PROFILES["report"]``)."""
    study = get_profile("report").train
    size, lr, batch = study["image_size"], study["lr"], study["batch_size"]
    notes = []
    if t.get("image_size", size) != size:
        notes.append(f"works at {t['image_size']} px (the study: {size} px); the leaderboard scores at 128 px by "
                     "resizing inputs down and predictions back up.")
    if t.get("size_schedule"):
        stages = ", ".join(f"{share:.0%} at {sz} px" for sz, share in t["size_schedule"])
        notes.append(f"progressive resizing: {stages}, the rest at {t['image_size']} px (the study: every step at "
                     f"{size} px), each stage with its own warm-up/cosine.")
    if t.get("lr", lr) != lr:
        notes.append(f"peak learning rate {t['lr']:g} (the study: {lr:g}), to converge within the CPU budget.")
    if t.get("batch_size", batch) != batch:
        notes.append(f"batch size {t['batch_size']} (the `report` profile: {batch}): more optimiser steps in the CPU "
                     "budget.")
    if precision is None and t.get("bf16"):  # settings of a run written before `precision`
        precision = "bf16"
    if precision is not None and precision != study.get("precision", "fp32"):
        why = (" (chosen by precision 'auto': the faster native precision here, timed, and not vetoed on quality)"
               if t.get("precision") == "auto" else "")
        notes.append(f"{precision} autocast in training{why} (the study: {study.get('precision', 'fp32')}).")
    if t.get("conditioning", "text") != study.get("conditioning", "text"):
        film = " that also scales and shifts every UNet block (FiLM)" if t["conditioning"] == "text+rgb+film" else ""
        notes.append(f"conditioning {t['conditioning']}: the text embedding plus one token of the resolved RGB{film} "
                     "(the study: the text embedding only); it measured best on held-out colour names and hex codes.")
    if t.get("colours"):
        notes.append(f"training palette {t['colours']} (the study: its 8 colour names); held-out names are never "
                     "drawn.")
    if t.get("lpips_warmup_frac") and has_lpips:
        notes.append(f"the LPIPS term's weight ramps from 0 to its value over the first {t['lpips_warmup_frac']:.0%} "
                     "of the steps (the study: constant). At its full weight from step 0, m2 stalls with every "
                     "polygon one mean colour (canonical dE00 42.9 vs 9.7 ramped).")
    if t.get("ssim_warmup_frac") and has_ssim:
        notes.append(f"the SSIM term's weight ramps from 0 to its value over the first {t['ssim_warmup_frac']:.0%} of "
                     "the steps (the study: constant). Short runs with SSIM at full weight from step 0 stall with "
                     "every polygon one mean colour.")
    return notes


def _dedupe_model_notes(notes: list[str], models: list[str]) -> list[str]:
    """Collapse "m1: X", "m2: X" ... into "m1, m2: X" ("all models: X" when every model shares it)."""
    grouped: dict[str, list[str]] = {}
    plain: list[str] = []
    for n in notes:
        head, sep, rest = n.partition(": ")
        if sep and head.startswith("m") and head[1:].isdigit():
            names = grouped.setdefault(rest, [])
            if head not in names:
                names.append(head)
        else:
            plain.append(n)
    out = []
    for rest, names in grouped.items():
        who = "all models" if len(models) > 1 and names == list(models) else ", ".join(names)
        out.append(f"{who}: {rest}")
    return plain + out


def _lpips_lines(runs: Path, models: list[str]) -> list[str]:
    """Which models trained with the LPIPS term and where its weights came from (each model's saved settings)."""
    from .polycolor_core.modelinfo import ModelInfo

    infos = {m: ModelInfo.find(runs / m) for m in models}
    used = [m for m, i in infos.items() if i is not None and i.lpips_source]
    if not used:
        return []
    sources = sorted({infos[m].lpips_source for m in used})
    return [f"LPIPS used in training for {', '.join(used)}; weights: {'; '.join(sources)}.", ""]


def _colour_lines(table: dict | None) -> list[str]:
    """The report's colour-generalisation section (``eval/colours.py``), for the wide-palette models."""
    if not table:
        return []
    from .eval.colours import THRESHOLD, render_markdown

    return ["## Colours beyond the eight", "",
            "Mean in-polygon CIEDE2000 of the composite and the share under " f"{THRESHOLD:g}, one generated polygon "
            "per colour: the 8 canonical names, CSS and XKCD names held out of every training palette, random "
            "evaluation hex codes; the report scores up to 40 names per set, `python -m polycolor.eval.colours MODEL` "
            "scores them all. Reference rows: the "
            "trained name nearest in text embedding, and the exact resolved RGB (the ceiling).", "",
            render_markdown(table), ""]


def precision_cell(info) -> str:
    """A run's training precision and how ``auto`` chose it (training_precision.py), for the per-model table."""
    if info is None:
        return "-"
    choice = info.meta.get("precision_choice") or {}
    if choice.get("requested") != "auto":
        return info.precision
    rates = ", ".join(f"{p} {r:.1f}" for p, r in (choice.get("rates") or {}).items())
    return f"{info.precision} (auto: {choice.get('reason', '').split(': ', 1)[-1]}{'; img/s ' + rates if rates else ''})"


def write_report(out: Path, profile: str, models: list[str], board, curves: Path | None, notes: list[str],
                 runs: Path, train_seconds: dict[str, float], seconds: float, colours: dict | None = None) -> Path:
    from .polycolor_core import __version__
    from .polycolor_core.modelinfo import ModelInfo
    from .eval.report import family_markdown_table, markdown_table

    prof = get_profile(profile)
    lines = [
        "# polycolor: the eight-model study, reproduced",
        "",
        f"polycolor {__version__}, profile `{profile}` ({prof.description}). Total wall time {seconds / 60:.1f} min.",
        "",
        "## Setup",
        "",
        "Eight conditional UNets (diffusers `UNet2DConditionModel`, cross-attention on a frozen text embedding of "
        "the colour name) trained with the composite loss (MSE + 0.5 LPIPS + 0.2 (1-SSIM) + 0.3 L1 in CIE-LAB, "
        "per variant), AdamW (wd 1e-4), 10% linear warm-up then cosine decay, gradient clipping at 1.0, "
        "paired flips/rotations. Training data: " + prof.train.get("data", "") + ".",
        "",
        "Profile settings: " + ", ".join(f"`{k}={v}`" for k, v in prof.train.items()) + ".",
        "",
        *[f"{name} only: " + ", ".join(f"`{k}={v}`" for k, v in extra.items()) + "." for name, extra in
          prof.variants.items() if name in models],
        "",
        "## Deviations from the study",
        "",
        *([f"- {n}" for n in notes] or ["- none"]),
        "",
        *_lpips_lines(runs, models),
        f"## Leaderboard (held-out shapes, scored at {board.data.size or 128} px; user-input families at their own size)",
        "",
        f"Data: {board.data.description}. Sorted by in-polygon CIEDE2000 (lower is better).",
        "",
        markdown_table(board),
        "",
        "The `flood-fill (reference)` row is a classical algorithm (flood fill from the border, paint the rest "
        "with the named colour): it shows the ceiling on these clean images.",
        "",
        "## Per-family breakdown",
        "",
        family_markdown_table(board),
        "",
        *_colour_lines(colours),
        "## Pictures",
        "",
        "Contact sheet (rows = models, columns = the same held-out samples):",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
    ]
    if curves is not None:
        lines += ["Loss curves:", "", f"![loss curves]({curves.name})", ""]
    lines += ["## Per-model training", "",
              "| model | epochs | steps | precision | train time (s) | last loss | val ΔE76 polygon | sample grids |",
              "|---|---|---|---|---|---|---|---|"]
    for name in models:
        rows = read_metrics(runs / name)
        grids = sorted((runs / name / "samples").glob("epoch_*.png"))
        links = " ".join(f"[{g.stem.split('_')[1]}]({g.relative_to(out).as_posix()})" for g in grids)
        last = rows[-1] if rows else {}
        info = ModelInfo.find(runs / name)
        lines.append(f"| {name} | {last.get('epoch', '-')} | {last.get('step', '-')} | "
                     f"{precision_cell(info)} | "
                     f"{train_seconds.get(name, float('nan')):.0f} | {last.get('loss', float('nan')):.4f} | "
                     f"{last.get('val_de76_polygon', float('nan')):.2f} | {links} |")
    lines += ["", "Each model's last sample grid (input | prediction | target):", ""]
    for name in models:
        grids = sorted((runs / name / "samples").glob("epoch_*.png"))
        if grids:
            lines.append(f"**{name}** ![{name}]({grids[-1].relative_to(out).as_posix()})")
            lines.append("")
    report = write_text_atomic(out / "report.md", "\n".join(lines))
    summary = {"profile": profile, "models": models, "seconds": seconds, "train_seconds": train_seconds,
               "precision": {m: (i.precision if (i := ModelInfo.find(runs / m)) else None) for m in models},
               "precision_choice": {m: (i.meta.get("precision_choice") if (i := ModelInfo.find(runs / m)) else None)
                                    for m in models},
               "deviations": notes, "leaderboard": board.to_dict(), "colour_generalisation": colours,
               "training": {m: read_metrics(runs / m) for m in models}}
    write_text_atomic(out / "report.json", json.dumps(summary, indent=2, default=str))
    return report
